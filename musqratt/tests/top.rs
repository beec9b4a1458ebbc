//! `musqratt top --once` against a real broker (issue 17): the frame says how many clients are
//! connected and puts the client with the longest queue first, with its queue's length.

use core::net::SocketAddr;
use std::process::Command;

use musqratt_proto::mqtt::{Connect, Packet};
use musqratt_proto::{ProtocolVersion, QoS};
use musqratt_testkit::{BrokerProcess, encode, free_port, open, publish, scratch_dir, subscribe};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_once_prints_clients_rates_and_the_longest_queue() {
    let (port, http) = (free_port(), free_port());
    let dir = scratch_dir("top");
    let config = format!(
        "listeners = [\"mqtt://127.0.0.1:{port}\"]\nthreads = 2\n\
         [http]\nlisten = \"127.0.0.1:{http}\"\n"
    );
    let broker = BrokerProcess::musqratt(env!("CARGO_BIN_EXE_musqratt"), &dir, "tokio", &config)
        .port(port)
        .port(http)
        .start();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    // A 5.0 subscriber taking one message in flight at a time (Receive Maximum 1,
    // §3.1.2.11.3) that never acknowledges: the broker queues the rest for it.
    let mut slow = open(addr, ProtocolVersion::V5).await;
    let mut connect = Connect::new(ProtocolVersion::V5, "slow-reader");
    connect.properties.receive_maximum = Some(1);
    slow.write_all(&encode(&Packet::Connect(Box::new(connect)), ProtocolVersion::V5)).await;
    assert!(matches!(slow.recv().await, Packet::ConnAck(_)));
    subscribe(&mut slow, "top/queue", QoS::AtLeastOnce).await;
    let mut publisher = musqratt_testkit::connect(addr, "publisher", ProtocolVersion::V5).await;
    for id in 1..=5 {
        publish(&mut publisher, "top/queue", b"m", QoS::AtLeastOnce, id).await;
    }

    let out = Command::new(env!("CARGO_BIN_EXE_musqratt"))
        .args(["top", "--once", "--interval-ms", "200", "--url"])
        .arg(format!("http://127.0.0.1:{http}"))
        .output()
        .unwrap();
    let frame = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{frame}{}", String::from_utf8_lossy(&out.stderr));
    assert!(frame.starts_with("musqratt "), "{frame}");
    assert!(!frame.contains('\x1b'), "--once prints no escapes: {frame}");
    assert!(frame.contains("Clients   2 connected, 2 sessions"), "{frame}");
    assert!(frame.contains("(total in 5, out 1)"), "{frame}");
    // 1 in flight, 4 waiting.
    let table = frame.split("Longest queues\n").nth(1).unwrap();
    let first = table.lines().nth(1).unwrap();
    assert!(first.starts_with("slow-reader "), "{frame}");
    assert_eq!(first.split_whitespace().nth(1), Some("4"), "{frame}");
    assert!(first.contains(" 5.0 ") && first.contains("127.0.0.1:"), "{frame}");

    // A broker that is not there: a clear error, not a panic.
    let out = Command::new(env!("CARGO_BIN_EXE_musqratt"))
        .args(["top", "--once", "--url", &format!("http://127.0.0.1:{}", free_port())])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let error = String::from_utf8_lossy(&out.stderr);
    assert!(error.starts_with("musqratt top: http://127.0.0.1:"), "{error}");
    drop(slow);
    let log = broker.stop();
    assert!(!log.contains("panicked"), "{log}");
}
