//! SCRAM-SHA-512 and SCRAM-SHA-256 enhanced authentication (MQTT 5.0 §4.12, RFC 5802, RFC
//! 7677) end to end, against an independent SCRAM implementation: Python's `scramp` drives the
//! exchange over a real socket (`scram_client.py`, MQTT packets written by hand: paho-mqtt has
//! no AUTH API) with the musqratt binary on every runtime. The credentials are one password
//! file: `$7$` entries made by Debian's `mosquitto_passwd` (101 iterations) and `musqratt
//! passwd` (20,000) for SHA-512; RFC 5803 `SCRAM-SHA-256$` entries made by `musqratt passwd -H
//! scram-sha-256` and by scramp itself (`make_auth_info`) for SHA-256.

use core::time::Duration;
use std::path::Path;
use std::process::Command;

use musqratt_testkit::{BrokerProcess, free_port, scratch_dir};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/scram_client.py");

/// Whether the tools are here ([`musqratt_testkit::tool_available`]: skipped without them,
/// except in CI, which installs them). `mosquitto_passwd --help` exits 1, so its probe is `sh`.
fn tools_or_skip() -> bool {
    musqratt_testkit::tool_available(&["python3", "-c", "import scramp"])
        && musqratt_testkit::tool_available(&["sh", "-c", "command -v mosquitto_passwd"])
        && musqratt_testkit::have_program("mosquitto_pub")
}

fn start(dir: &Path, runtime: &str, port: u16, passwords: &Path, methods: &str) -> BrokerProcess {
    let config = format!(
        "listeners = [\"mqtt://127.0.0.1:{port}\"]\n[auth]\npassword_file = {:?}\n\
         scram = [{methods}]\n",
        passwords.display().to_string()
    );
    BrokerProcess::musqratt(env!("CARGO_BIN_EXE_musqratt"), dir, runtime, &config)
        .port(port)
        .start()
}

/// Runs `scram_client.py` and gives its one line of outcome.
fn scram(port: u16, args: &[&str]) -> String {
    let out = Command::new("python3").arg(SCRIPT).arg(port.to_string()).args(args).output();
    let out = out.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        out.status.success(),
        "scram_client.py {args:?}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `musqratt passwd -b [OPTIONS] FILE USER PASSWORD`, which must succeed.
fn passwd(options: &[&str], file: &Path, user: &str, password: &str) {
    let made = Command::new(env!("CARGO_BIN_EXE_musqratt"))
        .args(["passwd", "-b"])
        .args(options)
        .arg(file)
        .args([user, password])
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
}

/// The password file: SHA-512 users alice ($7$, mosquitto_passwd) and bob ($7$, musqratt
/// passwd); SHA-256 users carol (musqratt passwd -H scram-sha-256) and dave (a line scramp
/// wrote: the store made by the other implementation, read by this one).
fn password_file(dir: &Path) -> std::path::PathBuf {
    let passwords = dir.join("passwords");
    let made = Command::new("mosquitto_passwd")
        .args(["-c", "-b"])
        .arg(&passwords)
        .args(["alice", "s3cret"])
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    passwd(&[], &passwords, "bob", "b0b-pass");
    passwd(&["-H", "scram-sha-256", "-I", "4096"], &passwords, "carol", "c4rol");
    let line = Command::new("python3")
        .args([
            "-c",
            "import base64, scramp\n\
                      b = lambda v: base64.b64encode(v).decode()\n\
                      s, st, sv, i = scramp.ScramMechanism('SCRAM-SHA-256')\
                      .make_auth_info('d4ve', iteration_count=8192)\n\
                      print(f'dave:SCRAM-SHA-256${i}:{b(s)}${b(st)}:{b(sv)}')",
        ])
        .output()
        .unwrap();
    assert!(line.status.success(), "{line:?}");
    let mut file = std::fs::read_to_string(&passwords).unwrap();
    file.push_str(&String::from_utf8(line.stdout).unwrap());
    std::fs::write(&passwords, &file).unwrap();
    assert!(file.contains("alice:$7$101$") && file.contains("bob:$7$20000$"), "{file}");
    assert!(file.contains("carol:SCRAM-SHA-256$4096:"), "{file}");
    assert!(file.contains("dave:SCRAM-SHA-256$8192:"), "{file}");
    passwords
}

#[test]
fn scramp_against_the_broker_on_every_runtime() {
    let _serial = musqratt_testkit::one_broker_process_at_a_time();
    if !tools_or_skip() {
        return;
    }
    let dir = scratch_dir("scram");
    let passwords = password_file(&dir);

    // scramp refuses fewer than 4096 iterations (RFC 7677 §4); mosquitto_passwd writes 101.
    let low = ["--min-iterations", "101"];
    let sha256 = ["--method", "SCRAM-SHA-256"];
    let verified = "accepted server-final-verified reauth-verified";
    for runtime in ["tokio", "io-uring", "blocking"] {
        let port = free_port();
        let methods = "\"SCRAM-SHA-512\", \"SCRAM-SHA-256\"";
        let broker = start(&dir, runtime, port, &passwords, methods);
        // Right passwords: CONNACK 0x00 whose server-final scramp verifies, then a
        // re-authentication (AUTH 0x19 ... AUTH 0x00 with a server-final) verified too.
        let mosquitto_made = [&["alice", "s3cret", "--reauth"][..], &low].concat();
        assert_eq!(scram(port, &mosquitto_made), verified, "{runtime}");
        assert_eq!(scram(port, &["bob", "b0b-pass", "--reauth"]), verified, "{runtime}");
        // SCRAM-SHA-256 from RFC 5803 entries, ours and scramp's.
        for (user, password) in [("carol", "c4rol"), ("dave", "d4ve")] {
            let args = [&[user, password, "--reauth"][..], &sha256].concat();
            assert_eq!(scram(port, &args), verified, "{runtime} {user}");
        }
        // Wrong password, unknown user: 0x86 Bad user name or password, at the proof.
        assert_eq!(scram(port, &["bob", "wrong"]), "refused 0x86", "{runtime}");
        assert_eq!(scram(port, &[&["alice", "wrong"][..], &low].concat()), "refused 0x86");
        assert_eq!(scram(port, &[&["mallory", "s3cret"][..], &low].concat()), "refused 0x86");
        assert_eq!(scram(port, &[&["carol", "wrong"][..], &sha256].concat()), "refused 0x86");
        assert_eq!(scram(port, &[&["mallory", "x"][..], &sha256].concat()), "refused 0x86");
        // Each entry serves its own hash: a $7$ user asking SHA-256, a SHA-256 user SHA-512.
        let args = [&["alice", "s3cret"][..], &sha256, &low].concat();
        assert_eq!(scram(port, &args), "refused 0x86", "{runtime}");
        assert_eq!(scram(port, &["carol", "c4rol"]), "refused 0x86", "{runtime}");
        // An RFC 5803 entry checks a plain CONNECT password too (mosquitto_pub -u/-P).
        for (password, accepted) in [("c4rol", true), ("wrong", false)] {
            let out = Command::new("mosquitto_pub")
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-V", "mqttv5", "-q", "1"])
                .args(["-t", "scram/plain", "-m", "hi", "-u", "carol", "-P", password])
                .output()
                .unwrap();
            assert_eq!(out.status.success(), accepted, "{runtime} {password}: {out:?}");
        }
        let log = broker.stop();
        assert!(!log.contains("panicked"), "{runtime}: {log}");
    }

    // A broker serving SHA-512 alone leaves SHA-256 to no one: 0x8C Bad authentication method.
    let port = free_port();
    let broker = start(&dir, "tokio", port, &passwords, "\"SCRAM-SHA-512\"");
    let args = [&["carol", "c4rol"][..], &sha256].concat();
    assert_eq!(scram(port, &args), "refused 0x8c");
    drop(broker);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `auth.scram` naming a method that does not exist stops the broker at start (exit 2).
#[test]
fn unknown_scram_method_is_refused_at_start() {
    let dir = scratch_dir("scram-config");
    std::fs::write(dir.join("passwords"), "").unwrap();
    let config = format!(
        "[auth]\npassword_file = {:?}\nscram = [\"SCRAM-SHA-1\"]\n",
        dir.join("passwords").display().to_string()
    );
    let mut broker =
        BrokerProcess::musqratt(env!("CARGO_BIN_EXE_musqratt"), &dir, "tokio", &config).spawn();
    let status = broker.wait_exit(Duration::from_secs(10));
    let log = broker.stop();
    assert_eq!(status.and_then(|s| s.code()), Some(2), "{log}");
    assert!(log.contains("unknown SCRAM method `SCRAM-SHA-1`"), "{log}");
    std::fs::remove_dir_all(&dir).unwrap();
}
