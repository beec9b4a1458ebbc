# Shell helpers the bench scripts share (sourced, not run).

# wait_port PORT: returns once something accepts TCP connections on 127.0.0.1:PORT, or fails
# after 10 s saying so.
wait_port() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on port $1" >&2
    return 1
}
