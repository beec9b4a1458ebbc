//! The C host (`examples/c-host`) built with `make` and `cc` against this crate's static
//! library, started, and used by real clients (Mosquitto's): publications at QoS 0, 1 and 2
//! reach a subscriber, a retained message reaches a later one, and a client killed without
//! DISCONNECT has its will published. Skipped where `cc`, `make` or Mosquitto's clients are
//! missing — except in CI, which installs them and fails instead.

use core::time::Duration;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Instant;

use musqratt_testkit::{BrokerProcess, free_port, have_program, scratch_dir, tool_available};

/// How long a line a client should print may take: generous, as processes here may be paused.
const PATIENCE: Duration = Duration::from_secs(20);

/// Builds the C host into a scratch directory with the library cargo built for this test.
fn build_c_host() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace");
    // This test runs from target/<profile>/deps/, where `cargo test` leaves the library it
    // built for it; `cargo build` copies it up to target/<profile>/.
    let exe = std::env::current_exe().expect("the test's path");
    let deps = exe.parent().expect("the test's directory");
    let lib_dir = [Some(deps), deps.parent()]
        .into_iter()
        .flatten()
        .find(|dir| dir.join("libmusqratt_ffi.a").exists())
        .unwrap_or_else(|| panic!("no static library in {} or above", deps.display()));
    let out = scratch_dir("c-host").join("c-host");
    let make = Command::new("make")
        .arg("-C")
        .arg(root.join("examples/c-host"))
        .arg(format!("LIB_DIR={}", lib_dir.display()))
        .arg(format!("OUT={}", out.display()))
        .output()
        .expect("make runs");
    assert!(
        make.status.success(),
        "make failed:\n{}{}",
        String::from_utf8_lossy(&make.stdout),
        String::from_utf8_lossy(&make.stderr)
    );
    out
}

/// A `mosquitto_sub` whose printed lines (`-v`: topic and payload) arrive on a channel.
struct Subscriber {
    child: Child,
    lines: Receiver<String>,
}

impl Subscriber {
    fn start(port: u16, args: &[&str]) -> Self {
        let mut child = Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-v"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto_sub starts");
        let stdout = child.stdout.take().expect("piped");
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    /// The next line that is not a probe.
    fn next(&self) -> String {
        loop {
            let line = self.lines.recv_timeout(PATIENCE).expect("the subscriber prints a line");
            if !line.starts_with("ffi/probe") {
                return line;
            }
        }
    }

    /// Publishes probes until one arrives: the subscription is in place.
    fn wait_subscribed(&self, port: u16) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            publish(port, &["-t", "ffi/probe", "-m", "probe"]);
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(300)) {
                assert!(line.starts_with("ffi/probe"), "unexpected first line {line}");
                return;
            }
            assert!(Instant::now() < deadline, "the subscription never took effect");
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn publish(port: u16, args: &[&str]) {
    let status = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .status()
        .expect("mosquitto_pub runs");
    assert!(status.success(), "mosquitto_pub {args:?} failed");
}

#[test]
fn mosquitto_clients_through_the_c_host() {
    if !tool_available(&["cc", "--version"])
        || !tool_available(&["make", "--version"])
        || !have_program("mosquitto_sub")
        || !have_program("mosquitto_pub")
    {
        return;
    }
    let host = build_c_host();
    let port = free_port();
    let mut command = Command::new(&host);
    command.args(["-p", &port.to_string(), "-v"]);
    let broker = BrokerProcess::command(command).port(port).start();

    for version in ["mqttv311", "mqttv5"] {
        let sub = Subscriber::start(port, &["-V", version, "-q", "2", "-t", "ffi/#"]);
        sub.wait_subscribed(port);
        // MQTT-4.6.0-6 (ordered topics) and the QoS of each flow: every message once, in order.
        for qos in ["0", "1", "2"] {
            publish(port, &["-V", version, "-q", qos, "-t", "ffi/q", "-m", &format!("qos {qos}")]);
        }
        for qos in ["0", "1", "2"] {
            assert_eq!(sub.next(), format!("ffi/q qos {qos}"), "{version}");
        }
    }

    // MQTT-3.3.1-6: a new subscription gets the retained message.
    publish(port, &["-q", "1", "-r", "-t", "ffi/retained", "-m", "kept"]);
    let late = Subscriber::start(port, &["-q", "1", "-t", "ffi/retained", "-C", "1"]);
    assert_eq!(late.next(), "ffi/retained kept");

    // A message far larger than a socket buffer (written in many partial vectored writes)
    // arrives whole: retained, so the subscriber that comes after it receives it.
    let payload: Vec<u8> = (0..800_000_u32).map(|i| (i * 31 % 251) as u8).collect();
    let file = scratch_dir("c-host").join("large.bin");
    std::fs::write(&file, &payload).expect("the payload file is written");
    let path = file.display().to_string();
    publish(port, &["-q", "1", "-r", "-t", "ffi/large", "-f", &path]);
    let large = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", "ffi/large", "-C", "1", "-N"])
        .args(["-W", "20"])
        .output()
        .expect("mosquitto_sub runs");
    assert!(large.stdout == payload, "the large message arrived with {} bytes", large.stdout.len());

    // MQTT-3.1.2-8: a connection closed without DISCONNECT has its will published.
    let watcher = Subscriber::start(port, &["-q", "1", "-t", "ffi/will", "-t", "ffi/probe"]);
    watcher.wait_subscribed(port);
    let mut doomed = Subscriber::start(
        port,
        &[
            "-i",
            "doomed",
            "-t",
            "ffi/nothing",
            "--will-topic",
            "ffi/will",
            "--will-payload",
            "gone",
        ],
    );
    let deadline = Instant::now() + PATIENCE;
    while !broker.log().contains("connected as doomed") {
        assert!(Instant::now() < deadline, "the doomed client never connected:\n{}", broker.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    doomed.child.kill().expect("the client is killed");
    assert_eq!(watcher.next(), "ffi/will gone");

    let log = broker.stop();
    assert!(log.contains("listening on 127.0.0.1"), "{log}");
}
