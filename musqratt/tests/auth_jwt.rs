//! `[auth.jwt]` end to end (issue 14 item 4), on every runtime: the musqratt binary with an
//! HS256 secret, clients presenting tokens as their password. `mosquitto_pub` shows a valid
//! token publishing, expired, forged and other users' tokens refused (0x86 / return code 4),
//! and an `acl` claim refusing a 5.0 publish (0x87). A raw MQTT client shows a connection
//! whose token expires being ended at `exp`: DISCONNECT 0xA0 Maximum connect time for 5.0, a
//! plain close for 3.1.1.

use core::time::Duration;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{EncodingKey, Header, encode};
use musqratt_testkit::{BrokerProcess, free_port, have_program as have, scratch_dir};
use serde_json::{Value, json};

const SECRET: &str = "jwt-test-secret-0123456789";
const RUNTIMES: [&str; 3] = ["tokio", "io-uring", "blocking"];

fn now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn token(secret: &str, claims: &Value) -> String {
    encode(&Header::default(), claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
}

/// Starts the musqratt binary with `[auth.jwt]` (HS256 secret, no leeway, `sub` must be the
/// user name) and waits until it accepts connections.
fn broker(dir: &Path, runtime: &str, port: u16) -> BrokerProcess {
    let config = format!(
        "listeners = [\"mqtt://127.0.0.1:{port}\"]\n[auth]\nallow_anonymous = false\n\
         [auth.jwt]\nsecret = \"{SECRET}\"\nleeway_s = 0\n\
         [auth.jwt.verify_claims]\nsub = \"%u\"\n"
    );
    BrokerProcess::musqratt(env!("CARGO_BIN_EXE_musqratt"), dir, runtime, &config)
        .port(port)
        .start()
}

/// `mosquitto_pub` once, QoS 1: success means the broker accepted and acknowledged it.
fn publish(port: u16, version: &str, user: &str, password: &str, topic: &str) -> Output {
    Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-V", version, "-q", "1"])
        .args(["-t", topic, "-m", "hello", "-u", user, "-P", password])
        .output()
        .unwrap()
}

fn refused_with(output: &Output, words: &str, context: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr).to_lowercase();
    assert!(!output.status.success(), "{context}: accepted; stderr: {stderr}");
    assert!(stderr.contains(words), "{context}: expected {words:?} in: {stderr}");
}

#[test]
fn tokens_with_mosquitto_pub_on_every_runtime() {
    let _serial = musqratt_testkit::one_broker_process_at_a_time();
    if !have("mosquitto_pub") {
        eprintln!("SKIP: mosquitto_pub not installed");
        return;
    }
    let dir = scratch_dir("jwt-pub");
    let exp = now_s() + 600;
    let valid = token(SECRET, &json!({ "sub": "alice", "exp": exp }));
    let expired = token(SECRET, &json!({ "sub": "alice", "exp": now_s() - 10 }));
    let forged = token("another secret", &json!({ "sub": "alice", "exp": exp }));
    let limited = token(
        SECRET,
        &json!({ "sub": "alice", "exp": exp, "acl": [
            { "permission": "deny", "action": "publish", "topic": "jwt/secret/#" },
            { "permission": "allow", "action": "all", "topic": "#" },
        ]}),
    );
    for runtime in RUNTIMES {
        let port = free_port();
        let child = broker(&dir, runtime, port);
        for version in ["mqttv311", "mqttv5"] {
            let context = format!("{runtime} {version}");
            let ok = publish(port, version, "alice", &valid, "jwt/open");
            assert!(ok.status.success(), "{context}: {ok:?}");
            for (what, user, password) in [
                ("expired", "alice", &expired),
                ("forged", "alice", &forged),
                ("other user", "bob", &valid),
            ] {
                refused_with(
                    &publish(port, version, user, password, "jwt/open"),
                    "bad user name or password",
                    &format!("{context} {what}"),
                );
            }
            let ok = publish(port, version, "alice", &limited, "jwt/open");
            assert!(ok.status.success(), "{context} acl allows: {ok:?}");
        }
        // 5.0: PUBACK 0x87 Not authorized for a topic the acl claim denies (§3.4.2.1).
        // mosquitto_pub only warns (its exit status stays 0): the warning is the evidence.
        let denied = publish(port, "mqttv5", "alice", &limited, "jwt/secret/x");
        let said = String::from_utf8_lossy(&denied.stderr).to_lowercase();
        assert!(said.contains("publish 1 failed: not authorized"), "{runtime}: {said}");
        drop(child);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// MQTT Variable Byte Integer (§1.5.5).
fn remaining_length(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let mut byte = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if n == 0 {
            return;
        }
    }
}

fn string(s: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(&u16::try_from(s.len()).unwrap().to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// CONNECT with user name and password, Clean Start, Keep Alive 60 s.
fn connect_packet(v5: bool, client_id: &str, user: &str, password: &str) -> Vec<u8> {
    let mut body = Vec::new();
    string("MQTT", &mut body);
    body.push(if v5 { 5 } else { 4 });
    body.push(0xC2); // user name, password, clean start
    body.extend_from_slice(&60u16.to_be_bytes());
    if v5 {
        body.push(0); // no properties
    }
    string(client_id, &mut body);
    string(user, &mut body);
    string(password, &mut body);
    let mut packet = vec![0x10];
    remaining_length(body.len(), &mut packet);
    packet.extend_from_slice(&body);
    packet
}

/// One packet: its first byte and its body; `None` when the broker closed the connection.
fn read_packet(stream: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut first = [0u8; 1];
    if stream.read(&mut first).unwrap() == 0 {
        return None;
    }
    let (mut length, mut shift) = (0usize, 0);
    loop {
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).unwrap();
        length |= usize::from(byte[0] & 0x7F) << shift;
        shift += 7;
        if byte[0] & 0x80 == 0 {
            break;
        }
    }
    let mut body = vec![0; length];
    stream.read_exact(&mut body).unwrap();
    Some((first[0], body))
}

/// Connects with a token expiring in about 3 s and reads what comes after CONNACK: the time it
/// came and the packet (5.0: DISCONNECT 0xA0) or `None` (3.1.1: the connection closed).
fn until_expiry(port: u16, v5: bool) -> (Duration, Option<(u8, Vec<u8>)>) {
    let exp = now_s() + 3;
    let jwt = token(SECRET, &json!({ "sub": "carol", "exp": exp }));
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    stream.write_all(&connect_packet(v5, "expiring", "carol", &jwt)).unwrap();
    let (kind, body) = read_packet(&mut stream).expect("CONNACK");
    assert_eq!(kind, 0x20, "CONNACK expected");
    assert_eq!(body[1], 0, "accepted");
    let connected = SystemTime::now();
    let started = Instant::now();
    let next = read_packet(&mut stream);
    let elapsed = started.elapsed();
    // The broker ends the connection at `exp`: not before (less a little rounding of the
    // clocks), and not long after.
    let due = (UNIX_EPOCH + Duration::from_secs(exp)).duration_since(connected).unwrap_or_default();
    assert!(
        elapsed + Duration::from_millis(200) >= due && elapsed < due + Duration::from_secs(2),
        "ended after {elapsed:?}, due after {due:?}"
    );
    if next.is_some() {
        // After DISCONNECT the broker closes (§3.14.4: MUST close the Network Connection).
        assert!(read_packet(&mut stream).is_none(), "closed after DISCONNECT");
    }
    (elapsed, next)
}

#[test]
fn an_expiring_token_ends_the_connection_on_every_runtime() {
    let _serial = musqratt_testkit::one_broker_process_at_a_time();
    let dir = scratch_dir("jwt-expiry");
    for runtime in RUNTIMES {
        let port = free_port();
        let child = broker(&dir, runtime, port);
        let (after, packet) = until_expiry(port, true);
        // DISCONNECT (type 14) with reason 0xA0 Maximum connect time (§3.14.2.1).
        let (kind, body) = packet.unwrap_or_else(|| panic!("{runtime}: closed without DISCONNECT"));
        assert_eq!((kind, body.first().copied()), (0xE0, Some(0xA0)), "{runtime} after {after:?}");
        // 3.1.1 has no DISCONNECT from the server: the connection is just closed.
        let (after, packet) = until_expiry(port, false);
        assert!(packet.is_none(), "{runtime}: 3.1.1 got {packet:?} after {after:?}");
        drop(child);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `public_key_file` is re-read on SIGHUP (an identity service rotating its signing key): a
/// token signed by the new key is let in once the file holds it and the broker got SIGHUP,
/// the old key's tokens no longer are; a file holding no key afterwards keeps the key in use.
/// ES256 key pairs made here with rcgen.
#[test]
fn public_key_file_reloads_on_sighup() {
    let _serial = musqratt_testkit::one_broker_process_at_a_time();
    if !have("mosquitto_pub") {
        return;
    }
    let dir = scratch_dir("jwt-reload");
    let public = dir.join("jwt-public.pem");
    let pair = || {
        let key = rcgen::KeyPair::generate().unwrap();
        let signing = EncodingKey::from_ec_pem(key.serialize_pem().as_bytes()).unwrap();
        (signing, key.public_key_pem())
    };
    let ((old_key, old_public), (new_key, new_public)) = (pair(), pair());
    std::fs::write(&public, &old_public).unwrap();
    let port = free_port();
    let config = format!(
        "listeners = [\"mqtt://127.0.0.1:{port}\"]\n[auth]\nallow_anonymous = false\n\
         [auth.jwt]\npublic_key_file = {:?}\n",
        public.display().to_string()
    );
    let broker = BrokerProcess::musqratt(env!("CARGO_BIN_EXE_musqratt"), &dir, "tokio", &config)
        .port(port)
        .start();
    let es256 = Header::new(jsonwebtoken::Algorithm::ES256);
    let claims = json!({ "sub": "alice", "exp": now_s() + 600 });
    let by_old = encode(&es256, &claims, &old_key).unwrap();
    let by_new = encode(&es256, &claims, &new_key).unwrap();
    let accepted = |token: &str| publish(port, "mqttv5", "alice", token, "jwt/k").status.success();
    assert!(accepted(&by_old), "the key of the file at start");
    refused_with(&publish(port, "mqttv5", "alice", &by_new, "jwt/k"), "bad user name", "new");

    std::fs::write(&public, &new_public).unwrap();
    broker.reload();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !accepted(&by_new) {
        assert!(Instant::now() < deadline, "the new key not taken after SIGHUP: {}", broker.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    refused_with(&publish(port, "mqttv5", "alice", &by_old, "jwt/k"), "bad user name", "old");

    std::fs::write(&public, "not a key\n").unwrap();
    broker.reload();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !broker.log().contains("JWT key not reloaded") {
        assert!(Instant::now() < deadline, "no word of the broken key: {}", broker.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(accepted(&by_new), "the key in use stays");
    let log = broker.stop();
    assert!(log.contains("JWT public key reloaded"), "{log}");
    std::fs::remove_dir_all(&dir).unwrap();
}
