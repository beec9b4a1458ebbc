//! `[auth.http]` and `[auth.throttle]` end to end (issue 14 items 4 and 5): the musqratt binary
//! asks a small HTTP service written here (EMQX's protocol) on every runtime, with
//! `mosquitto_pub` and a raw MQTT client that can choose its source address (any 127/8 address
//! on Linux), so that the service sees, and the throttle counts, different peers.

use core::net::SocketAddr;
use core::time::Duration;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use musqratt_testkit::{BrokerProcess, Launch, free_port, have_program as have, scratch_dir};

/// The musqratt binary with `config` (written to `dir/musqratt.toml`), logging warnings only.
fn musqratt(dir: &Path, runtime: &str, config: &str) -> Launch {
    BrokerProcess::musqratt(env!("CARGO_BIN_EXE_musqratt"), dir, runtime, config).log_level("warn")
}

/// What the test service answers.
enum Answer {
    Json(&'static str),
    Status(u16),
    /// Never answers (holds the connection for 20 s).
    Hang,
}

/// The service's rules, by user name.
fn decide(body: &serde_json::Value) -> Answer {
    let user = body["username"].as_str().unwrap_or("");
    let password = body["password"].as_str().unwrap_or("");
    match (user, password) {
        ("alice", "right") => Answer::Json(
            r#"{"result":"allow","is_superuser":false,"acl":[
                {"permission":"deny","action":"all","topic":"allowed/secret"},
                {"permission":"allow","action":"all","topic":"allowed/#"}]}"#,
        ),
        ("alice", _) => Answer::Json(r#"{"result":"deny"}"#),
        ("root", "root") => Answer::Json(r#"{"result":"allow","is_superuser":true}"#),
        ("broken", _) => Answer::Status(500),
        ("garbage", _) => Answer::Json("this is not json"),
        ("hang", _) => Answer::Hang,
        _ => Answer::Json(r#"{"result":"ignore"}"#),
    }
}

/// A one-thread-per-request HTTP/1.1 service on a free port; returns its port and the bodies it
/// was sent.
fn service() -> (u16, Arc<Mutex<Vec<serde_json::Value>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let bodies = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let bodies = Arc::clone(&bodies);
            std::thread::spawn(move || serve(stream, &bodies));
        }
    });
    (port, seen)
}

fn serve(stream: TcpStream, bodies: &Mutex<Vec<serde_json::Value>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end().to_ascii_lowercase();
        if line.is_empty() {
            break;
        }
        if let Some(value) = line.strip_prefix("content-length:") {
            length = value.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let answer = decide(&body);
    bodies.lock().unwrap().push(body);
    let (status, text) = match answer {
        Answer::Json(text) => (200, text),
        Answer::Status(status) => (status, ""),
        Answer::Hang => return std::thread::sleep(Duration::from_secs(20)),
    };
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{text}",
        text.len()
    );
}

/// A raw MQTT client connected from `source` (an address of 127/8).
struct Client(TcpStream);

fn remaining_length(mut len: usize, out: &mut Vec<u8>) {
    loop {
        let byte = u8::try_from(len % 128).unwrap();
        len /= 128;
        out.push(if len > 0 { byte | 0x80 } else { byte });
        if len == 0 {
            return;
        }
    }
}

fn string(s: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&u16::try_from(s.len()).unwrap().to_be_bytes());
    out.extend_from_slice(s);
}

fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    remaining_length(body.len(), &mut out);
    out.extend_from_slice(body);
    out
}

impl Client {
    /// Connects from `source` with MQTT 3.1.1 (`v5`: 5.0) and returns the client and the
    /// CONNACK's return code (reason code for 5.0).
    fn connect(
        port: u16,
        source: [u8; 4],
        v5: bool,
        id: &str,
        credentials: Option<(&str, &[u8])>,
    ) -> (Self, u8) {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.bind(&SocketAddr::from((source, 0)).into()).unwrap();
        socket.connect(&SocketAddr::from(([127, 0, 0, 1], port)).into()).unwrap();
        let stream: TcpStream = socket.into();
        stream.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        stream.set_nodelay(true).unwrap();
        let mut body = Vec::new();
        string(b"MQTT", &mut body);
        body.push(if v5 { 5 } else { 4 });
        body.push(0x02 | credentials.map_or(0, |_| 0xC0));
        body.extend_from_slice(&60u16.to_be_bytes());
        if v5 {
            body.push(0); // no properties
        }
        string(id.as_bytes(), &mut body);
        if let Some((user, password)) = credentials {
            string(user.as_bytes(), &mut body);
            string(password, &mut body);
        }
        let mut client = Self(stream);
        client.0.write_all(&packet(0x10, &body)).unwrap();
        let (kind, connack) = client.read();
        assert_eq!(kind, 0x20, "CONNACK expected");
        (client, connack[1])
    }

    /// One packet: its first byte and its body.
    fn read(&mut self) -> (u8, Vec<u8>) {
        let mut first = [0; 1];
        self.0.read_exact(&mut first).unwrap();
        let (mut len, mut shift) = (0, 0);
        loop {
            let mut byte = [0; 1];
            self.0.read_exact(&mut byte).unwrap();
            len |= usize::from(byte[0] & 0x7F) << shift;
            shift += 7;
            if byte[0] & 0x80 == 0 {
                break;
            }
        }
        let mut body = vec![0; len];
        self.0.read_exact(&mut body).unwrap();
        (first[0], body)
    }

    /// SUBSCRIBE (3.1.1, QoS 0) and the SUBACK's return code.
    fn subscribe(&mut self, filter: &str) -> u8 {
        let mut body = vec![0, 1];
        string(filter.as_bytes(), &mut body);
        body.push(0);
        self.0.write_all(&packet(0x82, &body)).unwrap();
        let (kind, suback) = self.read();
        assert_eq!(kind, 0x90);
        suback[2]
    }

    fn publish(&mut self, topic: &str, payload: &[u8]) {
        let mut body = Vec::new();
        string(topic.as_bytes(), &mut body);
        body.extend_from_slice(payload);
        self.0.write_all(&packet(0x30, &body)).unwrap();
    }
}

/// `mosquitto_pub` once with MQTT 5.0, QoS 1.
fn mosquitto_pub(port: u16, user: &str, password: &str, topic: &str) -> Output {
    Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-V", "mqttv5", "-q", "1"])
        .args(["-u", user, "-P", password, "-t", topic, "-m", "hello"])
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).to_lowercase()
}

#[test]
fn http_service_on_every_runtime() {
    let _serial = musqratt_testkit::one_broker_process_at_a_time();
    if !have("mosquitto_pub") {
        return;
    }
    let dir = scratch_dir("http-service");
    let (service_port, bodies) = service();
    for runtime in ["tokio", "io-uring", "blocking"] {
        let port = free_port();
        // One shard: the client waiting for the hanging service shares it with the others.
        let broker = musqratt(
            &dir,
            runtime,
            &format!(
                "listeners = [\"mqtt://127.0.0.1:{port}\"]\nthreads = 1\n[auth]\n\
                 allow_anonymous = false\n[auth.http]\n\
                 url = \"http://127.0.0.1:{service_port}/mqtt/auth\"\ntimeout_ms = 1000\n"
            ),
        )
        .port(port)
        .start();

        // The service sees who asks, from where, with which protocol.
        let (_, code) =
            Client::connect(port, [127, 0, 0, 2], true, "c2", Some(("alice", b"right")));
        assert_eq!(code, 0, "{runtime}");
        let asked = bodies.lock().unwrap().last().cloned().unwrap();
        assert_eq!(
            asked,
            serde_json::json!({"clientid": "c2", "username": "alice", "password": "right",
                "peerhost": "127.0.0.2", "protocol": "5.0", "cert_cn": null}),
            "{runtime}"
        );
        // deny: 3.1.1 return code 5 (0x87); ignore with nothing after: 4 (0x86); a failing
        // or garbled service: 3 (0x88, try again later).
        for (user, expected) in
            [("alice", 5), ("nobody", 4), ("broken", 3), ("garbage", 3), ("root", 0)]
        {
            let password: &[u8] = if user == "root" { b"root" } else { b"wrong" };
            let (_, code) =
                Client::connect(port, [127, 0, 0, 3], false, "c3", Some((user, password)));
            assert_eq!(code, expected, "{runtime} {user}");
        }
        assert_eq!(bodies.lock().unwrap().last().unwrap()["protocol"], "3.1.1");

        // Its ACL: first match decides, anything else refused (5.0 PUBACK 0x87).
        assert!(mosquitto_pub(port, "alice", "right", "allowed/x").status.success(), "{runtime}");
        for topic in ["allowed/secret", "elsewhere"] {
            let refused = mosquitto_pub(port, "alice", "right", topic);
            assert!(stderr(&refused).contains("not authorized"), "{runtime} {topic}");
        }
        // A superuser has no rules.
        assert!(mosquitto_pub(port, "root", "root", "elsewhere").status.success(), "{runtime}");
        let refused = mosquitto_pub(port, "alice", "wrong", "allowed/x");
        assert!(stderr(&refused).contains("not authori"), "{runtime}: {}", stderr(&refused));

        // Credentials too long are refused (0x86) without asking the service.
        let asked_before = bodies.lock().unwrap().len();
        let long_user = "u".repeat(300);
        let (_, code) =
            Client::connect(port, [127, 0, 0, 4], false, "c4", Some((&long_user, b"x")));
        assert_eq!(code, 4, "{runtime}");
        let (_, code) =
            Client::connect(port, [127, 0, 0, 4], true, "c4", Some(("u", &[b'p'; 9000])));
        assert_eq!(code, 0x86, "{runtime}");
        assert_eq!(bodies.lock().unwrap().len(), asked_before, "{runtime}: the service was asked");

        // A service that never answers: the client is refused after timeout_ms while another
        // client of the same shard goes on publishing and receiving.
        let (mut busy, code) =
            Client::connect(port, [127, 0, 0, 5], false, "busy", Some(("alice", b"right")));
        assert_eq!(code, 0);
        assert_eq!(busy.subscribe("allowed/echo"), 0);
        let started = Instant::now();
        let waiting = std::thread::spawn(move || {
            let (_, code) = Client::connect(port, [127, 0, 0, 6], false, "h", Some(("hang", b"x")));
            (code, started.elapsed())
        });
        // A shard blocked by the service would hold one echo for the whole timeout (1 s).
        let mut slowest = Duration::ZERO;
        let mut echoes = 0;
        while started.elapsed() < Duration::from_millis(800) {
            let sent = Instant::now();
            busy.publish("allowed/echo", b"ping");
            let (kind, _) = busy.read();
            assert_eq!(kind & 0xF0, 0x30, "{runtime}: PUBLISH expected");
            slowest = slowest.max(sent.elapsed());
            echoes += 1;
        }
        let (code, took) = waiting.join().unwrap();
        assert_eq!(code, 3, "{runtime}: refused as unavailable");
        assert!(took >= Duration::from_millis(1000), "{runtime}: refused after {took:?}");
        assert!(took < Duration::from_secs(5), "{runtime}: refused after {took:?}");
        assert!(
            echoes > 10 && slowest < Duration::from_millis(500),
            "{runtime}: {echoes} echoes, slowest {slowest:?}"
        );
        drop(broker);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn guessing_is_slowed_down_per_address() {
    let _serial = musqratt_testkit::one_broker_process_at_a_time();
    let dir = scratch_dir("http-throttle");
    let file = dir.join("passwords");
    let made = Command::new(env!("CARGO_BIN_EXE_musqratt"))
        // Few iterations: a check costs nothing, so the time measured is the throttle's.
        .args(["passwd", "-c", "-b", "-I", "10"])
        .arg(&file)
        .args(["alice", "right"])
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let port = free_port();
    let broker = musqratt(
        &dir,
        "tokio",
        &format!(
            "listeners = [\"mqtt://127.0.0.1:{port}\"]\n[auth]\npassword_file = {:?}\n\
             [auth.throttle]\nfailures = 3\nfirst_delay_ms = 100\nmax_delay_ms = 400\n",
            file.display().to_string()
        ),
    )
    .port(port)
    .start();
    let attempt = |source: u8, password: &[u8]| {
        let started = Instant::now();
        let (_, code) =
            Client::connect(port, [127, 0, 0, source], false, "g", Some(("alice", password)));
        (code, started.elapsed())
    };
    // 20 wrong guesses from 127.0.0.2: 3 free, then 100, 200 and 400 ms each, ~5.9 s in all.
    let started = Instant::now();
    let mut free = Duration::ZERO;
    for i in 0..20 {
        let (code, took) = attempt(2, b"wrong");
        assert_eq!(code, 4);
        if i < 4 {
            free += took;
        }
    }
    let guessing = started.elapsed();
    // Unthrottled, 20 guesses would take about 5 times the 4 free ones.
    assert!(free < Duration::from_millis(400), "4 free guesses took {free:?}");
    assert!(guessing >= Duration::from_secs(5), "20 guesses took {guessing:?}");
    // Another address is answered at once; the guessing one waits even when right.
    let (code, took) = attempt(3, b"right");
    assert_eq!(code, 0);
    assert!(took < Duration::from_millis(300), "another address waited {took:?}");
    let (code, took) = attempt(2, b"right");
    assert_eq!(code, 0);
    assert!(took >= Duration::from_millis(350), "the guessing address waited {took:?}");
    drop(broker);
    std::fs::remove_dir_all(&dir).unwrap();
}
