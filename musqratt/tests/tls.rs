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

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};

const RUNTIMES: [&str; 3] = ["tokio", "io-uring", "blocking"];

/// Whether a client tool is installed; CI installs them all (.ci/run), so there a missing one
/// fails the test rather than skipping it.
/// `check` runs it: found when it starts and, for a check that asks something (Python's
/// `-c import`), exits with success (`--help` of the Mosquitto clients exits 1).
fn have(tool: &str, check: &[&str]) -> bool {
    let output = Command::new(tool).args(check).output();
    let found = output.is_ok_and(|o| check == ["--help"] || o.status.success());
    assert!(found || std::env::var_os("CI").is_none(), "{tool} not installed");
    if !found {
        eprintln!("SKIP: {tool} not installed");
    }
    found
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("musqratt-tls-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A CA; `sign` makes certificates it signs, written as `NAME.pem` and `NAME.key` in a dir.
struct Ca {
    cert: Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(dir: &Path, name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        Self { cert, key }
    }

    /// A server certificate (SAN localhost and 127.0.0.1) or a client one, maybe expired.
    fn sign(&self, dir: &Path, cn: &str, client: bool, expired: bool) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().unwrap();
        let names = if client { vec![] } else { vec!["localhost".into(), "127.0.0.1".into()] };
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![if client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        if expired {
            params.not_before = rcgen::date_time_ymd(2001, 1, 1);
            params.not_after = rcgen::date_time_ymd(2002, 1, 1);
        }
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let (cert_file, key_file) = (dir.join(format!("{cn}.pem")), dir.join(format!("{cn}.key")));
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        (cert_file, key_file)
    }
}

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
        let dir = scratch(name);
        let server_ca = Ca::new(&dir, "server-ca");
        let client_ca = Ca::new(&dir, "client-ca");
        let other_ca = Ca::new(&dir, "other-ca");
        Self {
            server: server_ca.sign(&dir, "broker", false, false),
            client: client_ca.sign(&dir, "sensor-1", true, false),
            stranger: other_ca.sign(&dir, "mallory", true, false),
            expired: client_ca.sign(&dir, "old-sensor", true, true),
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

/// Starts the binary with `config` (written to `dir/musqratt.toml`).
fn musqratt(dir: &Path, runtime: &str, config: &str) -> Child {
    let path = dir.join("musqratt.toml");
    std::fs::write(&path, config).unwrap();
    Command::new(env!("CARGO_BIN_EXE_musqratt"))
        .args(["broker", "--runtime", runtime])
        .args(["--log-level", "info,musqratt_tokio::hibernate=trace", "--config"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_for(port: u16, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the broker exited: {status}");
        }
        assert!(Instant::now() < deadline, "the broker did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stop(mut child: Child) -> String {
    let _ = child.kill();
    let _ = child.wait();
    let mut log = String::new();
    child.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    log
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
    if !have("mosquitto_pub", &["--help"]) || !have("mosquitto_sub", &["--help"]) {
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
        let mut broker = musqratt(&pki.dir, runtime, &config);
        wait_for(plain, &mut broker);
        wait_for(tls, &mut broker);
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
        let log = stop(broker);
        if runtime == "tokio" {
            assert!(log.contains("hibernating"), "no TLS connection hibernated: {log}");
        }
    }
    std::fs::remove_dir_all(&pki.dir).unwrap();
}

#[test]
fn mutual_tls_refuses_strangers_on_every_runtime() {
    let _serial = musqratt_testkit::one_broker_process_at_a_time();
    if !have("mosquitto_pub", &["--help"]) {
        return;
    }
    let pki = Pki::new("mutual");
    for runtime in RUNTIMES {
        let port = free_port();
        let config = format!("listeners = [\"mqtts://127.0.0.1:{port}\"]\n{}", pki.table(true));
        let mut broker = musqratt(&pki.dir, runtime, &config);
        wait_for(port, &mut broker);
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
        let log = stop(broker);
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
        let mut broker = musqratt(&pki.dir, "tokio", &config);
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = broker.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "{what}: the broker started");
            std::thread::sleep(Duration::from_millis(20));
        };
        let log = stop(broker);
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
    if !have("python3", &["-c", "import paho.mqtt"]) {
        return;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/real_clients/paho_tls_check.py");
    let pki = Pki::new("paho");
    for runtime in RUNTIMES {
        let port = free_port();
        let config = format!("listeners = [\"mqtts://127.0.0.1:{port}\"]\n{}", pki.table(false));
        let mut broker = musqratt(&pki.dir, runtime, &config);
        wait_for(port, &mut broker);
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
        stop(broker);
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
    let _serial = musqratt_testkit::one_broker_process_at_a_time();
    if !have("mosquitto_pub", &["--help"]) || !have("mosquitto_sub", &["--help"]) {
        return;
    }
    let dir = scratch("identity");
    let (server_ca, client_ca) = (Ca::new(&dir, "server-ca"), Ca::new(&dir, "client-ca"));
    let server = server_ca.sign(&dir, "broker", false, false);
    let sensor = client_ca.sign(&dir, "sensor-7", true, false);
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
        let mut broker = musqratt(&dir, runtime, &config);
        wait_for(plain, &mut broker);
        wait_for(tls, &mut broker);
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

        let log = stop(broker);
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

/// Issue 15, SIGHUP: the broker reads the certificate and key again for the connections it
/// accepts afterwards (a certificate from another CA here, so that only the new one can
/// verify), while one established before keeps its session; files that no longer load leave
/// the certificate in use as it was, and the log names the file.
#[test]
fn sighup_reloads_the_certificate_for_new_connections() {
    let _serial = musqratt_testkit::one_broker_process_at_a_time();
    if !have("mosquitto_pub", &["--help"]) || !have("mosquitto_sub", &["--help"]) {
        return;
    }
    let dir = scratch("reload");
    let (ca_a, ca_b) = (Ca::new(&dir, "ca-a"), Ca::new(&dir, "ca-b"));
    let (cert, key) = ca_a.sign(&dir, "broker", false, false);
    let (trusts_a, trusts_b) = (dir.join("ca-a.pem"), dir.join("ca-b.pem"));
    let port = free_port();
    let config = format!(
        "listeners = [\"mqtts://127.0.0.1:{port}\"]\n[tls]\ncert_file = {:?}\nkey_file = {:?}\n",
        cert.display().to_string(),
        key.display().to_string(),
    );
    let mut broker = musqratt(&dir, "tokio", &config);
    wait_for(port, &mut broker);
    let publish_as = |cafile: &Path, topic: &str, message: &str| {
        Command::new("mosquitto_pub")
            .args(["-h", "localhost", "-p", &port.to_string(), "-q", "1", "-t", topic])
            .args(["-m", message, "--cafile"])
            .arg(cafile)
            .output()
            .unwrap()
    };
    let publish = |cafile: &Path, topic: &str| publish_as(cafile, topic, "hello");
    // A subscriber connected with certificate A: a first message shows it is subscribed, the
    // one published after the reload must reach it over the same connection.
    let mut held = Command::new("mosquitto_sub")
        .args(["-h", "localhost", "-p", &port.to_string(), "-q", "1", "-t", "tls/held"])
        .args(["-W", "30", "--cafile"])
        .arg(&trusts_a)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines, received) = std::sync::mpsc::channel();
    let stdout = held.stdout.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stdout).lines() {
            let _ = lines.send(line.unwrap());
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(publish(&trusts_a, "tls/held").status.success());
        if let Ok(line) = received.recv_timeout(Duration::from_millis(200)) {
            assert_eq!(line, "hello");
            break;
        }
        assert!(Instant::now() < deadline, "the held subscriber got nothing");
    }

    // Replace both files (another CA's certificate), then SIGHUP.
    let (new_cert, new_key) = ca_b.sign(&dir, "broker-b", false, false);
    std::fs::rename(&new_cert, &cert).unwrap();
    std::fs::rename(&new_key, &key).unwrap();
    let pid = broker.id().to_string();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !publish(&trusts_b, "tls/other").status.success() {
        assert!(Instant::now() < deadline, "the new certificate not served after SIGHUP");
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = publish(&trusts_a, "tls/other");
    assert!(!out.status.success(), "a new connection still got the old certificate: {out:?}");

    // The connection made before the reload still works: it gets what is published now.
    assert!(publish_as(&trusts_b, "tls/held", "after the reload").status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while received.recv_timeout(Duration::from_secs(1)).as_deref() != Ok("after the reload") {
        assert!(Instant::now() < deadline, "the held session got nothing after the reload");
    }
    assert!(held.try_wait().unwrap().is_none(), "the held session ended");
    let _ = held.kill();
    let _ = held.wait();

    // A key that no longer loads: the error names it, new connections keep certificate B.
    std::fs::write(&key, "-----BEGIN NOTHING-----\n").unwrap();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    std::thread::sleep(Duration::from_millis(500));
    let out = publish(&trusts_b, "tls/other");
    assert!(out.status.success(), "the certificate in use was lost: {out:?}");
    let log = stop(broker);
    assert!(log.contains("TLS certificate and key reloaded"), "{log}");
    let failed = log.lines().find(|l| l.contains("TLS files not reloaded"));
    let failed = failed.unwrap_or_else(|| panic!("no reload error in {log}"));
    assert!(failed.contains(&key.display().to_string()), "the key not named: {failed}");
    std::fs::remove_dir_all(&dir).unwrap();
}
