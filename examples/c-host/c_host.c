/*
 * A MusQraTT broker in plain C11 + POSIX: the engine (libmusqratt_ffi.a, include/musqratt.h)
 * driven over blocking sockets with a thread per connection, shaped like CompositeOS's network
 * manager: blocking accept, read and write, 2 KiB reads, no poll, select or epoll anywhere.
 * This is the program a CompositeOS component would become (docs/PORTING.md).
 *
 *   c-host [-p PORT] [-v]     listen on 127.0.0.1:PORT (default 1883); -v logs engine events
 *
 * Threads:
 *   - main: binds, starts the others, then waits for SIGINT/SIGTERM and shuts the engine down;
 *   - accept: blocking accept(); numbers each connection, opens it in the engine, starts its
 *     two threads;
 *   - reader (one per connection): blocking read() of at most 2 KiB straight into an engine
 *     buffer (no copy), then one engine step with it;
 *   - writer (one per connection): blocking send() of what the engine asked to send to it,
 *     then one engine step to report it written (the engine's measure of a slow reader);
 *   - timer: sleeps until the engine's next deadline (keep-alive, connect timeout, will delay,
 *     session expiry) and fires it.
 *
 * The engine is single-owner: one mutex (`struct host.lock`) is held for each step (an input,
 * then every action drained) and for nothing else; no socket call happens under it. Sends are
 * queued on their connection as references to the engine's bytes (musqratt_engine_take_bytes),
 * never copied, and written by that connection's writer thread.
 */
#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "musqratt.h"

/* One read, as netmgr's shared-memory buffer (the blocking Rust runtime's CHUNK). */
#define READ_CHUNK 2048
/* Buckets of the connection table (a connection's id modulo this). */
#define BUCKETS 1024
/* Sends written by one sendmsg() at most (well under any IOV_MAX). */
#define IOV_BATCH 64
/* Threads per connection need little stack: no recursion, buffers on the heap. */
#define THREAD_STACK (128 * 1024)

/* A send waiting for its connection's writer thread: a reference to the engine's bytes. */
struct out {
    MusqrattBytes *bytes;
    struct out *next;
};

struct host;

/* One TCP connection. Freed when its reader, its writer and the table have let it go. */
struct conn {
    struct host *host;
    uint64_t id;
    int fd;
    pthread_mutex_t lock; /* guards the fields below */
    pthread_cond_t ready; /* the writer waits on it for sends or for closing */
    struct out *head, *tail;
    bool closing; /* the engine closed it, or its reader saw the end: write what is queued, then shut down */
    int refs;     /* reader, writer, table */
    struct conn *next_in_bucket; /* the table's, under host.lock */
};

/* The broker: one engine and the table of its connections, under one lock held for a step. */
struct host {
    pthread_mutex_t lock;
    pthread_cond_t timer; /* the timer thread sleeps on it until the next deadline */
    MusqrattEngine *engine;
    struct conn *table[BUCKETS];
    uint64_t next_id;
    int listener;
    bool verbose;
};

/* The engine's clock: microseconds of the monotonic clock (its epoch is the host's to pick). */
static uint64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* A failed engine call is a bug in the host (a NULL, a bad id) or in the engine (a caught
 * panic, after which it is poisoned): stop rather than serve on from a state nobody trusts. */
static void check(MusqrattStatus status, const char *what) {
    if (status < 0) {
        fprintf(stderr, "c-host: %s failed with status %d\n", what, (int)status);
        abort();
    }
}

static struct conn **bucket(struct host *h, uint64_t id) {
    return &h->table[id % BUCKETS];
}

/* The connection with this id, if the table has it. Under host.lock. */
static struct conn *find(struct host *h, uint64_t id) {
    for (struct conn *c = *bucket(h, id); c != NULL; c = c->next_in_bucket) {
        if (c->id == id) return c;
    }
    return NULL;
}

/* Takes the connection out of the table; whether it was there. Under host.lock. */
static bool unlink_conn(struct host *h, struct conn *c) {
    for (struct conn **at = bucket(h, c->id); *at != NULL; at = &(*at)->next_in_bucket) {
        if (*at == c) {
            *at = c->next_in_bucket;
            return true;
        }
    }
    return false;
}

/* Drops one reference; the last one closes the socket and frees the connection. */
static void release(struct conn *c) {
    pthread_mutex_lock(&c->lock);
    int left = --c->refs;
    pthread_mutex_unlock(&c->lock);
    if (left > 0) return;
    for (struct out *o = c->head; o != NULL;) {
        struct out *next = o->next;
        musqratt_bytes_free(o->bytes);
        free(o);
        o = next;
    }
    close(c->fd);
    pthread_cond_destroy(&c->ready);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

/* Tells the writer to write what is queued and then shut the socket down. */
static void start_closing(struct conn *c) {
    pthread_mutex_lock(&c->lock);
    c->closing = true;
    pthread_cond_signal(&c->ready);
    pthread_mutex_unlock(&c->lock);
}

static void enqueue(struct conn *c, MusqrattBytes *bytes) {
    struct out *o = malloc(sizeof *o);
    if (o == NULL) {
        fprintf(stderr, "c-host: out of memory\n");
        abort();
    }
    o->bytes = bytes;
    o->next = NULL;
    pthread_mutex_lock(&c->lock);
    if (c->tail != NULL) c->tail->next = o; else c->head = o;
    c->tail = o;
    pthread_cond_signal(&c->ready);
    pthread_mutex_unlock(&c->lock);
}

/* Carries out every action the engine has, in order. Under host.lock: the second half of a
 * step. Sends go to their connection's queue; nothing here touches a socket. */
static void drain(struct host *h) {
    MusqrattAction action;
    MusqrattStatus status;
    while ((status = musqratt_engine_poll_action(h->engine, &action)) == MUSQRATT_STATUS_OK) {
        struct conn *c;
        switch (action.kind) {
        case MUSQRATT_ACTION_KIND_SEND:
            c = find(h, action.conn);
            if (c != NULL) enqueue(c, musqratt_engine_take_bytes(h->engine));
            break;
        case MUSQRATT_ACTION_KIND_CLOSE:
            c = find(h, action.conn);
            if (c != NULL && unlink_conn(h, c)) {
                start_closing(c);
                release(c); /* the table's reference */
            }
            break;
        case MUSQRATT_ACTION_KIND_CONNECTED:
            if (h->verbose)
                fprintf(stderr, "c-host: c%llu connected as %.*s%s\n", (unsigned long long)action.conn,
                        (int)action.len, (const char *)action.data, action.code ? " (session resumed)" : "");
            break;
        case MUSQRATT_ACTION_KIND_DISCONNECTED:
            if (h->verbose)
                fprintf(stderr, "c-host: c%llu disconnected, reason 0x%02x\n",
                        (unsigned long long)action.conn, action.code);
            break;
        case MUSQRATT_ACTION_KIND_MESSAGE_DROPPED:
            if (h->verbose)
                fprintf(stderr, "c-host: a message for %.*s dropped (%d)\n", (int)action.len,
                        (const char *)action.data, action.code);
            break;
        }
    }
    check(status, "musqratt_engine_poll_action");
    pthread_cond_signal(&h->timer); /* the next deadline may have moved */
}

/* Writes the sends of `batch` (at most IOV_BATCH of them) with vectored sendmsg() calls until all
 * is written: the engine's header and the shared payload of a PUBLISH leave in one call. Returns
 * the bytes written; fewer than asked means the connection is broken. MSG_NOSIGNAL: a closed
 * peer is EPIPE, not SIGPIPE. */
static size_t send_batch(int fd, struct out *batch, size_t count) {
    struct iovec iov[IOV_BATCH];
    size_t total = 0, written = 0;
    for (size_t i = 0; i < count; i++, batch = batch->next) {
        iov[i].iov_base = (void *)musqratt_bytes_data(batch->bytes);
        iov[i].iov_len = musqratt_bytes_len(batch->bytes);
        total += iov[i].iov_len;
    }
    struct iovec *next = iov;
    size_t left = count;
    while (written < total) {
        struct msghdr message;
        memset(&message, 0, sizeof message);
        message.msg_iov = next;
        message.msg_iovlen = left;
        ssize_t n = sendmsg(fd, &message, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        written += (size_t)n;
        /* Skip what went out: whole entries, then part of one. */
        size_t sent = (size_t)n;
        while (left > 0 && sent >= next->iov_len) {
            sent -= next->iov_len;
            next++;
            left--;
        }
        if (left > 0) {
            next->iov_base = (uint8_t *)next->iov_base + sent;
            next->iov_len -= sent;
        }
    }
    return written;
}

static void *writer(void *arg) {
    struct conn *c = arg;
    struct host *h = c->host;
    bool broken = false;
    for (;;) {
        pthread_mutex_lock(&c->lock);
        while (c->head == NULL && !c->closing) pthread_cond_wait(&c->ready, &c->lock);
        /* Up to IOV_BATCH queued sends at once: a PUBLISH's header and payload together. */
        struct out *batch = c->head, *last = c->head;
        size_t count = batch != NULL;
        while (count < IOV_BATCH && last != NULL && last->next != NULL) {
            last = last->next;
            count++;
        }
        if (last != NULL) {
            c->head = last->next;
            if (c->head == NULL) c->tail = NULL;
            last->next = NULL;
        }
        pthread_mutex_unlock(&c->lock);
        if (batch == NULL) break; /* closing, and everything written */
        size_t written = 0, expected = 0;
        for (struct out *o = batch; o != NULL; o = o->next) expected += musqratt_bytes_len(o->bytes);
        if (!broken) written = send_batch(c->fd, batch, count);
        broken = broken || written < expected;
        while (batch != NULL) {
            struct out *next = batch->next;
            musqratt_bytes_free(batch->bytes);
            free(batch);
            batch = next;
        }
        if (broken) {
            /* The reader's read now fails too and reports the close to the engine. */
            shutdown(c->fd, SHUT_RDWR);
            pthread_mutex_lock(&c->lock);
            while (!c->closing) pthread_cond_wait(&c->ready, &c->lock);
            pthread_mutex_unlock(&c->lock);
            break;
        }
        pthread_mutex_lock(&h->lock);
        check(musqratt_engine_written(h->engine, now_us(), c->id, written), "musqratt_engine_written");
        drain(h);
        pthread_mutex_unlock(&h->lock);
    }
    /* After the engine's Close (or the peer's end): the peer sees the end of the stream, and a
     * reader still blocked in read() returns. */
    shutdown(c->fd, SHUT_RDWR);
    release(c);
    return NULL;
}

static void *reader(void *arg) {
    struct conn *c = arg;
    struct host *h = c->host;
    for (;;) {
        MusqrattBuf *buf = musqratt_buf_new(READ_CHUNK);
        if (buf == NULL) abort();
        ssize_t n;
        do n = read(c->fd, musqratt_buf_data(buf), READ_CHUNK);
        while (n < 0 && errno == EINTR);
        if (n <= 0) {
            musqratt_buf_free(buf);
            break;
        }
        pthread_mutex_lock(&h->lock);
        /* The engine takes the buffer: decoded payloads are slices of it. */
        check(musqratt_engine_input_buf(h->engine, now_us(), c->id, buf, (size_t)n), "musqratt_engine_input_buf");
        drain(h);
        pthread_mutex_unlock(&h->lock);
    }
    /* End of stream or an error: unless the engine closed it already, it must hear of it (a
     * close without DISCONNECT: the client's will is due). */
    pthread_mutex_lock(&h->lock);
    if (unlink_conn(h, c)) {
        check(musqratt_engine_closed(h->engine, now_us(), c->id), "musqratt_engine_closed");
        drain(h);
        release(c); /* the table's reference */
    }
    pthread_mutex_unlock(&h->lock);
    start_closing(c);
    release(c);
    return NULL;
}

static void *timer(void *arg) {
    struct host *h = arg;
    pthread_mutex_lock(&h->lock);
    for (;;) {
        uint64_t deadline;
        MusqrattStatus status = musqratt_engine_poll_timeout(h->engine, &deadline);
        check(status, "musqratt_engine_poll_timeout");
        if (status == MUSQRATT_STATUS_NONE) {
            pthread_cond_wait(&h->timer, &h->lock);
            continue;
        }
        uint64_t now = now_us();
        if (deadline <= now) {
            check(musqratt_engine_timeout(h->engine, now), "musqratt_engine_timeout");
            drain(h);
            continue;
        }
        /* The condition variable runs on CLOCK_MONOTONIC, the engine's clock. */
        struct timespec at = {.tv_sec = (time_t)(deadline / 1000000u), .tv_nsec = (long)(deadline % 1000000u) * 1000};
        pthread_cond_timedwait(&h->timer, &h->lock, &at);
    }
    return NULL;
}

static bool spawn(void *(*run)(void *), void *arg) {
    pthread_attr_t attr;
    pthread_t thread;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, THREAD_STACK);
    int error = pthread_create(&thread, &attr, run, arg);
    pthread_attr_destroy(&attr);
    return error == 0;
}

static void *acceptor(void *arg) {
    struct host *h = arg;
    for (;;) {
        int fd = accept(h->listener, NULL, NULL);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* Out of descriptors: wait for connections to end rather than spin. */
                struct timespec pause = {.tv_sec = 0, .tv_nsec = 100 * 1000 * 1000};
                nanosleep(&pause, NULL);
            }
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct conn *c = calloc(1, sizeof *c);
        if (c == NULL) {
            close(fd);
            continue;
        }
        c->host = h;
        c->fd = fd;
        c->refs = 3; /* reader, writer, table */
        pthread_mutex_init(&c->lock, NULL);
        pthread_cond_init(&c->ready, NULL);

        pthread_mutex_lock(&h->lock);
        c->id = h->next_id++;
        c->next_in_bucket = *bucket(h, c->id);
        *bucket(h, c->id) = c;
        check(musqratt_engine_open(h->engine, now_us(), c->id), "musqratt_engine_open");
        drain(h);
        pthread_mutex_unlock(&h->lock);

        if (!spawn(writer, c)) {
            fprintf(stderr, "c-host: cannot start a writer thread\n");
            abort();
        }
        if (!spawn(reader, c)) {
            fprintf(stderr, "c-host: cannot start a reader thread\n");
            abort();
        }
    }
    return NULL;
}

static int listen_on(uint16_t port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(fd, 1024) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int main(int argc, char **argv) {
    static struct host host; /* zeroed: an empty table */
    struct host *h = &host;
    long port = 1883;
    int opt;
    while ((opt = getopt(argc, argv, "p:v")) != -1) {
        switch (opt) {
        case 'p':
            port = strtol(optarg, NULL, 10);
            break;
        case 'v':
            h->verbose = true;
            break;
        default:
            fprintf(stderr, "usage: %s [-p PORT] [-v]\n", argv[0]);
            return 2;
        }
    }
    if (port <= 0 || port > 65535) {
        fprintf(stderr, "c-host: bad port\n");
        return 2;
    }

    /* SIGINT and SIGTERM are taken by sigwait below, in no other thread. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);

    MusqrattConfig config;
    check(musqratt_config_default(&config), "musqratt_config_default");
    h->engine = musqratt_engine_new(&config);
    if (h->engine == NULL) {
        fprintf(stderr, "c-host: the engine refused its configuration\n");
        return 1;
    }
    h->next_id = 1;
    pthread_mutex_init(&h->lock, NULL);
    pthread_condattr_t monotonic;
    pthread_condattr_init(&monotonic);
    pthread_condattr_setclock(&monotonic, CLOCK_MONOTONIC);
    pthread_cond_init(&h->timer, &monotonic);

    h->listener = listen_on((uint16_t)port);
    if (h->listener < 0) {
        fprintf(stderr, "c-host: cannot listen on 127.0.0.1:%ld: %s\n", port, strerror(errno));
        return 1;
    }
    if (!spawn(timer, h) || !spawn(acceptor, h)) {
        fprintf(stderr, "c-host: cannot start threads\n");
        return 1;
    }
    fprintf(stderr, "c-host: listening on 127.0.0.1:%ld\n", port);

    int signal_number;
    sigwait(&stop, &signal_number);
    /* Stop: MQTT 5.0 clients are told 0x8B Server shutting down, every connection is closed;
     * the writers get a moment to write that before the process ends. */
    pthread_mutex_lock(&h->lock);
    check(musqratt_engine_shutdown(h->engine, now_us()), "musqratt_engine_shutdown");
    drain(h);
    pthread_mutex_unlock(&h->lock);
    struct timespec flush = {.tv_sec = 0, .tv_nsec = 200 * 1000 * 1000};
    nanosleep(&flush, NULL);
    fprintf(stderr, "c-host: stopped\n");
    return 0;
}
