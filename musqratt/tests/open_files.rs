//! Running out of file descriptors (issue 13 item 8): the broker says so once, with its limit
//! and what to raise, instead of once per failed accept, and serves again when descriptors
//! free up. The binary runs under `prlimit` with a small hard limit (it raises its soft limit to
//! the hard one at start, so the hard one is what counts).

use core::time::Duration;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Instant;

use musqratt_testkit::{BrokerProcess, free_port};

const LIMIT: usize = 40;

/// MQTT 3.1.1 CONNECT, clean session, keep alive 60, client id `c<i>`.
fn connect(i: usize) -> Vec<u8> {
    let id = format!("c{i}");
    let mut packet =
        vec![0x10, (10 + 2 + id.len()) as u8, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 60];
    packet.extend([0, id.len() as u8]);
    packet.extend(id.as_bytes());
    packet
}

#[test]
fn out_of_descriptors_is_said_once_and_the_broker_recovers() {
    if !musqratt_testkit::tool_available(&["prlimit", "--version"]) {
        return;
    }
    for runtime in ["tokio", "io-uring"] {
        on_runtime(runtime);
    }
}

fn on_runtime(runtime: &str) {
    let port = free_port();
    let mut command = Command::new("prlimit");
    command
        .arg(format!("--nofile={LIMIT}:{LIMIT}"))
        .arg(env!("CARGO_BIN_EXE_musqratt"))
        .args(["broker", "--runtime", runtime, "--threads", "1", "--log-level", "info"])
        .arg("--listen")
        .arg(format!("mqtt://127.0.0.1:{port}"));
    let broker = BrokerProcess::command(command).port(port).start();

    // Twice as many clients as descriptors: the later ones wait in the listen queue.
    let clients: Vec<TcpStream> = (0..2 * LIMIT)
        .map(|i| {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
            stream.write_all(&connect(i)).unwrap();
            stream
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500)); // ~15 back-offs of the accept loop
    drop(clients);

    // Descriptors free again: a new client is served.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        stream.write_all(&connect(999)).unwrap();
        let mut connack = [0; 4];
        if stream.read_exact(&mut connack).is_ok() {
            assert_eq!(connack, [0x20, 2, 0, 0]);
            break;
        }
        assert!(Instant::now() < deadline, "no CONNACK once descriptors were free");
    }

    let log = broker.stop();
    let warnings = log.matches("out of file descriptors").count();
    assert_eq!(warnings, 1, "{runtime}: said once, not per attempt:\n{log}");
    assert!(log.contains(&format!("limit={LIMIT}")), "{runtime}: the limit is given:\n{log}");
    assert!(log.contains("ulimit -n"), "{runtime}: what to raise is said:\n{log}");
    assert!(log.contains("accepting connections again"), "{runtime}: {log}");
}
