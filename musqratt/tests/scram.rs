//! SCRAM-SHA-512 enhanced authentication (MQTT 5.0 §4.12, RFC 5802) end to end, against an
//! independent SCRAM implementation: Python's `scramp` drives the exchange over a real socket
//! (`scram_client.py`, MQTT packets written by hand: paho-mqtt has no AUTH API) with the
//! musqratt binary on every runtime. The credentials are a password file made by Debian's
//! `mosquitto_passwd` (`$7$`, 101 iterations) plus a `musqratt passwd` entry (20,000): no other
//! store.

use core::time::Duration;
use std::io::Read as _;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/scram_client.py");

/// Whether the tools are here ([`musqratt_testkit::tool_available`]: skipped without them,
/// except in CI, which installs them). `mosquitto_passwd --help` exits 1, so its probe is `sh`.
fn tools_or_skip() -> bool {
    musqratt_testkit::tool_available(&["python3", "-c", "import scramp"])
        && musqratt_testkit::tool_available(&["sh", "-c", "command -v mosquitto_passwd"])
}

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("musqratt-scram-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn start(dir: &Path, runtime: &str, port: u16, passwords: &Path) -> Child {
    let config = dir.join("musqratt.toml");
    std::fs::write(
        &config,
        format!(
            "listeners = [\"mqtt://127.0.0.1:{port}\"]\n[auth]\npassword_file = {:?}\n\
             scram = [\"SCRAM-SHA-512\"]\n",
            passwords.display().to_string()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_musqratt"))
        .args(["broker", "--runtime", runtime, "--log-level", "info", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the broker exited: {status}");
        }
        assert!(Instant::now() < deadline, "the broker did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
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

#[test]
fn scramp_against_the_broker_on_every_runtime() {
    let _serial = musqratt_testkit::one_broker_process_at_a_time();
    if !tools_or_skip() {
        return;
    }
    let dir = scratch();
    let passwords = dir.join("passwords");
    let made = Command::new("mosquitto_passwd")
        .args(["-c", "-b"])
        .arg(&passwords)
        .args(["alice", "s3cret"])
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let made = Command::new(env!("CARGO_BIN_EXE_musqratt"))
        .args(["passwd", "-b"])
        .arg(&passwords)
        .args(["bob", "b0b-pass"])
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let file = std::fs::read_to_string(&passwords).unwrap();
    assert!(file.contains("alice:$7$101$") && file.contains("bob:$7$20000$"), "{file}");

    // scramp refuses fewer than 4096 iterations (RFC 7677 §4); mosquitto_passwd writes 101.
    let low = ["--min-iterations", "101"];
    let verified = "accepted server-final-verified reauth-verified";
    for runtime in ["tokio", "io-uring", "blocking"] {
        let port = free_port();
        let mut broker = start(&dir, runtime, port, &passwords);
        // Right passwords: CONNACK 0x00 whose server-final scramp verifies, then a
        // re-authentication (AUTH 0x19 ... AUTH 0x00 with a server-final) verified too.
        let mosquitto_made = [&["alice", "s3cret", "--reauth"][..], &low].concat();
        assert_eq!(scram(port, &mosquitto_made), verified, "{runtime}");
        assert_eq!(scram(port, &["bob", "b0b-pass", "--reauth"]), verified, "{runtime}");
        // Wrong password, unknown user: 0x86 Bad user name or password, at the proof.
        assert_eq!(scram(port, &["bob", "wrong"]), "refused 0x86", "{runtime}");
        assert_eq!(scram(port, &[&["alice", "wrong"][..], &low].concat()), "refused 0x86");
        assert_eq!(scram(port, &[&["mallory", "s3cret"][..], &low].concat()), "refused 0x86");
        // SCRAM-SHA-256 is not served ($7$ entries hold no SHA-256 salted password): 0x8C.
        let sha256 = ["alice", "s3cret", "--method", "SCRAM-SHA-256"];
        assert_eq!(scram(port, &sha256), "refused 0x8c", "{runtime}");
        let _ = broker.kill();
        let _ = broker.wait();
        let mut log = String::new();
        broker.stderr.take().unwrap().read_to_string(&mut log).unwrap();
        assert!(!log.contains("panicked"), "{runtime}: {log}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
