//! MQTT over TLS (`mqtts://`, issue 15) end to end with real clients over real sockets:
//! Mosquitto's `mosquitto_pub`/`mosquitto_sub` verifying the broker's certificate, with and
//! without client certificates, on every runtime; plain MQTT at the TLS port and TLS at the
//! plain port closed without harming others; a stalled handshake closed by the CONNECT
//! timeout; unusable `[tls]` files refused at start naming the file. Certificates are made
//! here with rcgen (no private key is committed).

use core::time::Duration;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Instant;

use musqratt_testkit::{BrokerProcess, Launch, free_port, have_program, scratch_dir};

use musqratt_testkit::pki::TestCa;

const RUNTIMES: [&str; 3] = ["tokio", "io-uring", "blocking"];

/// The test PKI: `server-ca.pem` signs the broker's certificate, `client-ca.pem` the clients',
/// `other-ca.pem` a client the broker must refuse.
struct Pki {
    dir: PathBuf,
    server: (PathBuf, PathBuf),
    client: (PathBuf, PathBuf),
    stranger: (PathBuf, PathBuf),
    expired: (PathBuf, PathBuf),
}

impl Pki {
    fn new(name: &str) -> Self {
        let dir = scratch_dir(name);
        let server_ca = TestCa::new(&dir, "server-ca");
        let client_ca = TestCa::new(&dir, "client-ca");
        let other_ca = TestCa::new(&dir, "other-ca");
        Self {
            server: server_ca.server(&dir, "broker"),
            client: client_ca.client(&dir, "sensor-1", false),
            stranger: other_ca.client(&dir, "mallory", false),
            expired: client_ca.client(&dir, "old-sensor", true),
            dir,
        }
    }

    fn file(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// A `[tls]` table with the broker's certificate, client certificates checked against the
    /// client CA.
    fn table(&self, require: bool) -> String {
        format!(
            "[tls]\ncert_file = {:?}\nkey_file = {:?}\nca_file = {:?}\n\
             require_client_cert = {require}\n",
            self.server.0.display().to_string(),
            self.server.1.display().to_string(),
            self.file("client-ca.pem"),
        )
    }
}

/// The binary with `config` (written to `dir/musqratt.toml`), not started yet.
fn musqratt(dir: &Path, runtime: &str, config: &str) -> Launch {
    BrokerProcess::musqratt(env!("CARGO_BIN_EXE_musqratt"), dir, runtime, config)
        .log_level("info,musqratt_tokio::hibernate=trace")
}

/// `mosquitto_pub` once at QoS 1 over TLS (success means the broker acknowledged), verifying
/// the broker's certificate against the server CA and its host name against the SAN.
fn publish(pki: &Pki, port: u16, version: &str, identity: Option<&(PathBuf, PathBuf)>) -> Output {
    let mut command = Command::new("mosquitto_pub");
    command.args(["-h", "localhost", "-p", &port.to_string(), "-V", version]);
    command.args(["--cafile", &pki.file("server-ca.pem")]);
    command.args(["-q", "1", "-t", "tls/test", "-m", "over tls"]);
    if let Some((cert, key)) = identity {
        command.arg("--cert").arg(cert).arg("--key").arg(key);
    }
    command.output().unwrap()
}

/// A subscriber over TLS waiting for one message; publishes until it has it (so that the
/// subscription is surely in place before the message that counts), then checks it.
fn round_trip(pki: &Pki, port: u16, identity: Option<&(PathBuf, PathBuf)>, what: &str) {
    let mut sub = Command::new("mosquitto_sub");
    sub.args(["-h", "localhost", "-p", &port.to_string(), "-V", "mqttv5", "-q", "1"]);
    sub.args(["--cafile", &pki.file("server-ca.pem"), "-t", "tls/test", "-C", "1", "-W", "20"]);
    if let Some((cert, key)) = identity {
        sub.arg("--cert").arg(cert).arg("--key").arg(key);
    }
    let mut sub = sub.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while sub.try_wait().unwrap().is_none() {
        let published = publish(pki, port, "mqttv311", identity);
        assert!(published.status.success(), "{what}: {published:?}");
        assert!(Instant::now() < deadline, "{what}: the subscriber got nothing");
        std::thread::sleep(Duration::from_millis(200));
    }
    let output = sub.wait_with_output().unwrap();
    assert!(output.status.success(), "{what}: {output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "over tls", "{what}");
}

/// The CONNECT of a 3.1.1 client `c`, clean session, keep alive 60 s.
const CONNECT: [u8; 15] = [0x10, 0x0d, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 60, 0, 1, b'c'];

/// Reads until the broker closes the connection; how long that took (None: still open after
/// `within`).
fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    stream.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Some(start.elapsed());
            }
            Err(_) => return None,
        }
        if start.elapsed() > within {
            return None;
        }
    }
}

#[test]
fn mosquitto_clients_over_tls_on_every_runtime() {
    let _serial = musqratt_testkit::one_broker_process_at_a_time();
    if !have_program("mosquitto_pub") || !have_program("mosquitto_sub") {
        return;
    }
    let pki = Pki::new("clients");
    for runtime in RUNTIMES {
        let (plain, tls) = (free_port(), free_port());
        let config = format!(
            "listeners = [\"mqtt://127.0.0.1:{plain}\", \"mqtts://127.0.0.1:{tls}\"]\n\
             connect_timeout_ms = 1000\nhibernate_after_ms = 100\n{}",
            pki.table(false)
        );
        let broker = musqratt(&pki.dir, runtime, &config).port(plain).port(tls).start();
        // A TLS session held open across the misbehaving clients below: they must not harm it.
        // Silent meanwhile, it hibernates on tokio (after 100 ms) and wakes with its TLS state.
        let mut held = Command::new("mosquitto_sub");
        held.args(["-h", "localhost", "-p", &tls.to_string(), "-t", "tls/held", "-C", "1"]);
        held.args(["--cafile", &pki.file("server-ca.pem"), "-W", "30"]);
        let held = held.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();

        round_trip(&pki, tls, None, &format!("{runtime}: server-verified TLS"));
        round_trip(&pki, tls, Some(&pki.client), &format!("{runtime}: mutual TLS"));
        for version in ["mqttv31", "mqttv311", "mqttv5"] {
            let out = publish(&pki, tls, version, None);
            assert!(out.status.success(), "{runtime} {version}: {out:?}");
        }

        // Plain MQTT at the TLS port: closed, whatever it sends.
        let mut stream = TcpStream::connect(("127.0.0.1", tls)).unwrap();
        stream.write_all(&CONNECT).unwrap();
        let took = closed_within(&mut stream, Duration::from_secs(5));
        assert!(took.is_some(), "{runtime}: plain MQTT at the TLS port left open");
        // TLS at the plain port: refused (the ClientHello is no CONNECT), and the port still
        // serves plain clients.
        let out = publish(&pki, plain, "mqttv311", None);
        assert!(!out.status.success(), "{runtime}: TLS at the plain port: {out:?}");
        let out = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &plain.to_string(), "-q", "1", "-t", "tls/x"])
            .args(["-m", "plain"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{runtime}: plain after TLS: {out:?}");
        // A handshake that stalls after a few bytes is closed by the CONNECT timeout (1 s).
        let mut stalled = TcpStream::connect(("127.0.0.1", tls)).unwrap();
        stalled.write_all(&[0x16, 0x03, 0x01, 0x00, 0x80, 0x01]).unwrap();
        let took = closed_within(&mut stalled, Duration::from_secs(5));
        assert!(
            took.is_some_and(|t| t >= Duration::from_millis(500)),
            "{runtime}: stalled handshake closed after {took:?}"
        );
        // So is a TCP connection that never starts one.
        let mut silent = TcpStream::connect(("127.0.0.1", tls)).unwrap();
        let took = closed_within(&mut silent, Duration::from_secs(5));
        assert!(
            took.is_some_and(|t| t >= Duration::from_millis(500)),
            "{runtime}: silent connection closed after {took:?}"
        );

        // The session opened before all this still gets what is published now.
        let out = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &plain.to_string(), "-q", "1", "-t", "tls/held"])
            .args(["-m", "still here"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{runtime}: {out:?}");
        let out = held.wait_with_output().unwrap();
        assert!(out.status.success(), "{runtime}: the held session: {out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "still here", "{runtime}");
        let log = broker.stop();
        if runtime == "tokio" {
            assert!(log.contains("hibernating"), "no TLS connection hibernated: {log}");
        }
    }
    std::fs::remove_dir_all(&pki.dir).unwrap();
}

#[test]
fn mutual_tls_refuses_strangers_on_every_runtime() {
    let _serial = musqratt_testkit::one_broker_process_at_a_time();
    if !have_program("mosquitto_pub") {
        return;
    }
    let pki = Pki::new("mutual");
    for runtime in RUNTIMES {
        let port = free_port();
        let config = format!("listeners = [\"mqtts://127.0.0.1:{port}\"]\n{}", pki.table(true));
        let broker = musqratt(&pki.dir, runtime, &config).port(port).start();
        let ok = publish(&pki, port, "mqttv5", Some(&pki.client));
        assert!(ok.status.success(), "{runtime}: {ok:?}");
        for (what, identity) in [
            ("no certificate", None),
            ("a certificate from another CA", Some(&pki.stranger)),
            ("an expired certificate", Some(&pki.expired)),
        ] {
            let refused = publish(&pki, port, "mqttv5", identity);
            assert!(!refused.status.success(), "{runtime}: {what} accepted: {refused:?}");
        }
        let ok = publish(&pki, port, "mqttv311", Some(&pki.client));
        assert!(ok.status.success(), "{runtime}: after the refusals: {ok:?}");
        // The operator is told why, once per refused client.
        let log = broker.stop();
        assert_eq!(log.matches("TLS client certificate refused").count(), 3, "{runtime}: {log}");
    }
    std::fs::remove_dir_all(&pki.dir).unwrap();
}

/// An unreadable certificate or key, one that is not PEM, or a key that is not the
/// certificate's: the broker does not start, exits 2 and names the file.
#[test]
fn unusable_tls_files_stop_the_broker_naming_them() {
    let _serial = musqratt_testkit::one_broker_process_at_a_time();
    let pki = Pki::new("files");
    let missing = pki.dir.join("missing.pem").display().to_string();
    let garbage = pki.dir.join("garbage.pem");
    std::fs::write(&garbage, "-----BEGIN NOTHING-----\n").unwrap();
    let garbage = garbage.display().to_string();
    let (cert, key) = (pki.server.0.display().to_string(), pki.server.1.display().to_string());
    let other_key = pki.client.1.display().to_string();
    for (what, cert_file, key_file, named) in [
        ("missing certificate", &missing, &key, &missing),
        ("missing key", &cert, &missing, &missing),
        ("certificate not PEM", &garbage, &key, &garbage),
        ("key not PEM", &cert, &garbage, &garbage),
        ("key of another certificate", &cert, &other_key, &other_key),
    ] {
        let config = format!(
            "listeners = [\"mqtts://127.0.0.1:{}\"]\n[tls]\ncert_file = {cert_file:?}\n\
             key_file = {key_file:?}\n",
            free_port()
        );
        let mut broker = musqratt(&pki.dir, "tokio", &config).spawn();
        let status = broker.wait_exit(Duration::from_secs(10));
        let status = status.unwrap_or_else(|| panic!("{what}: the broker started"));
        let log = broker.stop();
        assert_eq!(status.code(), Some(2), "{what}: {log}");
        assert!(log.contains(named.as_str()), "{what}: {named} not named in {log}");
    }
    std::fs::remove_dir_all(&pki.dir).unwrap();
}

/// paho-mqtt (Python) with `tls_set` as a second client: 3.1.1 and 5.0, server-verified and
/// mutual TLS, on every runtime.
#[test]
fn paho_over_tls_on_every_runtime() {
    let _serial = musqratt_testkit::one_broker_process_at_a_time();
    if !musqratt_testkit::tool_available(&["python3", "-c", "import paho.mqtt"]) {
        return;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/real_clients/paho_tls_check.py");
    let pki = Pki::new("paho");
    for runtime in RUNTIMES {
        let port = free_port();
        let config = format!("listeners = [\"mqtts://127.0.0.1:{port}\"]\n{}", pki.table(false));
        let broker = musqratt(&pki.dir, runtime, &config).port(port).start();
        let ca = pki.file("server-ca.pem");
        let (cert, key) = (&pki.client.0, &pki.client.1);
        for args in [vec![], vec![cert.as_os_str(), key.as_os_str()]] {
            let out = Command::new("python3")
                .args([script, "localhost", &port.to_string(), &ca])
                .args(&args)
                .output()
                .unwrap();
            assert!(out.status.success(), "{runtime} {args:?}: {out:?}");
            assert_eq!(String::from_utf8_lossy(&out.stdout).matches("ok   paho tls").count(), 2);
        }
        drop(broker);
    }
    std::fs::remove_dir_all(&pki.dir).unwrap();
}

/// A one-thread HTTP/1.1 authentication service answering `{"result": "ignore"}` (the
/// decision is left to the ACL file): returns its port and the bodies the broker POSTed.
fn http_service() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>) {
    use std::io::BufRead as _;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = std::sync::Arc::clone(&bodies);
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 && !line.trim_end().is_empty() {
                let lower = line.to_ascii_lowercase();
                if let Some(value) = lower.strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap();
                }
                line.clear();
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            seen.lock().unwrap().push(serde_json::from_slice(&body).unwrap());
            let text = r#"{"result":"ignore"}"#;
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                 connection: close\r\n\r\n{text}",
                text.len()
            );
        }
    });
    (port, bodies)
}

/// `mosquitto_sub` over TLS with a client certificate, printing `topic payload`.
fn subscriber(port: u16, ca: &str, identity: &(PathBuf, PathBuf), topics: &[&str]) -> Child {
    let mut sub = Command::new("mosquitto_sub");
    sub.args(["-h", "localhost", "-p", &port.to_string(), "-V", "mqttv5", "-q", "1", "-v"]);
    sub.args(["--cafile", ca, "-C", "1", "-W", "20"]);
    sub.arg("--cert").arg(&identity.0).arg("--key").arg(&identity.1);
    for topic in topics {
        sub.args(["-t", topic]);
    }
    sub.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
}

/// Issue 15, `tls.identity_as_username` (Mosquitto's `use_identity_as_username`), on every
/// runtime: a client whose CONNECT has no user name, with a certificate for `sensor-7`, is let
/// in as `sensor-7` though anonymous clients are refused and the password file has another
/// password for that name (the certificate is the credential); the ACL file's `user sensor-7`
/// section and `%u` pattern apply to it, and nothing else; the HTTP service is told the CN.
#[test]
fn certificate_name_is_the_user_name_for_the_acl_on_every_runtime() {
    if !have_program("mosquitto_pub") || !have_program("mosquitto_sub") {
        return;
    }
    let dir = scratch_dir("tls-identity");
    let (server_ca, client_ca) = (TestCa::new(&dir, "server-ca"), TestCa::new(&dir, "client-ca"));
    let server = server_ca.server(&dir, "broker");
    let sensor = client_ca.client(&dir, "sensor-7", false);
    let ca = dir.join("server-ca.pem").display().to_string();
    let passwd = dir.join("passwd");
    for (options, user, password) in
        [(&["-c", "-b"][..], "watcher", "watch"), (&["-b"][..], "sensor-7", "not-given")]
    {
        let out = Command::new(env!("CARGO_BIN_EXE_musqratt"))
            .arg("passwd")
            .args(options)
            .arg(&passwd)
            .args([user, password])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    let acl = dir.join("acl");
    std::fs::write(
        &acl,
        "user sensor-7\ntopic readwrite sensors/7/#\n\nuser watcher\ntopic read #\n\n\
         pattern readwrite users/%u/#\n",
    )
    .unwrap();
    let (http, bodies) = http_service();
    for runtime in RUNTIMES {
        let (plain, tls) = (free_port(), free_port());
        let config = format!(
            "listeners = [\"mqtt://127.0.0.1:{plain}\", \"mqtts://127.0.0.1:{tls}\"]\n\
             [auth]\nallow_anonymous = false\npassword_file = {:?}\nacl_file = {:?}\n\
             [auth.http]\nurl = \"http://127.0.0.1:{http}/auth\"\n\
             [tls]\ncert_file = {:?}\nkey_file = {:?}\nca_file = {:?}\n\
             require_client_cert = true\nidentity_as_username = true\n",
            passwd.display().to_string(),
            acl.display().to_string(),
            server.0.display().to_string(),
            server.1.display().to_string(),
            dir.join("client-ca.pem").display().to_string(),
        );
        let broker = musqratt(&dir, runtime, &config).port(plain).port(tls).start();
        let publish = |topic: &str, message: &str| {
            let mut command = Command::new("mosquitto_pub");
            command.args(["-h", "localhost", "-p", &tls.to_string(), "-V", "mqttv311"]);
            command.args(["--cafile", &ca, "-q", "1", "-t", topic, "-m", message]);
            command.arg("--cert").arg(&sensor.0).arg("--key").arg(&sensor.1);
            let out = command.output().unwrap();
            // 3.1.1: a denied PUBLISH is acknowledged too (and dropped), so this is success.
            assert!(out.status.success(), "{runtime}: sensor-7 not let in: {out:?}");
        };

        // Its own topics, through the `user` section and the `%u` pattern.
        let deadline = Instant::now() + Duration::from_secs(20);
        for topic in ["sensors/7/temp", "users/sensor-7/inbox"] {
            let mut waiting = subscriber(tls, &ca, &sensor, &["sensors/7/#", "users/sensor-7/#"]);
            while waiting.try_wait().unwrap().is_none() {
                publish(topic, "mine");
                assert!(Instant::now() < deadline, "{runtime}: nothing on {topic}");
                std::thread::sleep(Duration::from_millis(200));
            }
            let out = waiting.wait_with_output().unwrap();
            assert!(out.status.success(), "{runtime} {topic}: {out:?}");
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("{topic} mine"));
        }

        // Elsewhere: what it publishes is dropped (a watcher allowed to read everything sees
        // only the allowed message that follows), and a subscription there is refused.
        let mut watcher = Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &plain.to_string(), "-u", "watcher", "-P", "watch"])
            .args(["-t", "#", "-v", "-C", "1", "-W", "20"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        while watcher.try_wait().unwrap().is_none() {
            publish("users/sensor-8/inbox", "not mine");
            publish("other/topic", "not mine");
            publish("sensors/7/after", "mine");
            assert!(Instant::now() < deadline, "{runtime}: the watcher got nothing");
            std::thread::sleep(Duration::from_millis(100));
        }
        let out = watcher.wait_with_output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "sensors/7/after mine");
        let denied = subscriber(tls, &ca, &sensor, &["other/#"]).wait_with_output().unwrap();
        let said = String::from_utf8_lossy(&denied.stderr).to_string();
        assert!(said.contains("denied"), "{runtime}: other/# not refused: {denied:?}");

        let log = broker.stop();
        let bodies = core::mem::take(&mut *bodies.lock().unwrap());
        let certified: Vec<_> = bodies.iter().filter(|b| b["cert_cn"] == "sensor-7").collect();
        assert!(!certified.is_empty(), "{runtime}: no cert_cn in {bodies:?}\n{log}");
        assert!(
            certified.iter().all(|b| b["username"] == "sensor-7" && b["password"].is_null()),
            "{runtime}: {certified:?}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
