//! SIGHUP re-reads the `[tls]` files (issue 14 item 2: "and, once the transport issue lands,
//! certificates"): a renewed certificate is served to new clients without a restart, on every
//! runtime, and files that no longer load keep the certificate in use. `mosquitto_pub` verifies
//! the broker against one CA or the other. Certificates are made here with rcgen.
//!
//! (Beside tests/tls.rs rather than in it, which is being extended elsewhere; the small CA
//! below can join tls.rs's in the testkit once both have landed.)

use core::time::Duration;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use musqratt_testkit::pki::TestCa;
use musqratt_testkit::{BrokerProcess, free_port, have_program, scratch_dir};

/// Writes `NAME-ca.pem`, and a server certificate for localhost it signs as `server.pem` and
/// `server.key` (replacing those of another CA: a renewal).
fn issue(dir: &Path, name: &str) {
    let _ = TestCa::new(dir, &format!("{name}-ca")).server(dir, "server");
}

/// Whether `mosquitto_pub` trusting `NAME-ca.pem` publishes (QoS 1: acknowledged).
fn trusted(dir: &Path, port: u16, name: &str) -> bool {
    let ca = dir.join(format!("{name}-ca.pem"));
    Command::new("mosquitto_pub")
        .args(["-h", "localhost", "-p", &port.to_string(), "-t", "tls/reload", "-m", "m"])
        .args(["-q", "1", "--cafile"])
        .arg(ca)
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn sighup_serves_a_renewed_certificate_on_every_runtime() {
    let _serial = musqratt_testkit::one_broker_process_at_a_time();
    if !have_program("mosquitto_pub") {
        return;
    }
    let dir = scratch_dir("tls-reload");
    for runtime in ["tokio", "io-uring", "blocking"] {
        issue(&dir, "old");
        let port = free_port();
        let config = format!(
            "listeners = [\"mqtts://127.0.0.1:{port}\"]\n[tls]\ncert_file = {:?}\nkey_file = {:?}\n",
            dir.join("server.pem").display().to_string(),
            dir.join("server.key").display().to_string()
        );
        let broker =
            BrokerProcess::musqratt(env!("CARGO_BIN_EXE_musqratt"), &dir, runtime, &config)
                .port(port)
                .start();
        assert!(trusted(&dir, port, "old"), "{runtime}: the certificate at start");

        issue(&dir, "new");
        assert!(trusted(&dir, port, "old"), "{runtime}: nothing changes before SIGHUP");
        broker.reload();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !trusted(&dir, port, "new") {
            assert!(Instant::now() < deadline, "{runtime}: not renewed: {}", broker.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(!trusted(&dir, port, "old"), "{runtime}: the old certificate still served");

        std::fs::write(dir.join("server.pem"), "-----BEGIN NOTHING-----\n").unwrap();
        broker.reload();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !broker.log().contains("TLS files not reloaded") {
            assert!(Instant::now() < deadline, "{runtime}: no word: {}", broker.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(trusted(&dir, port, "new"), "{runtime}: the certificate in use stays");
        let log = broker.stop();
        assert!(log.contains("TLS certificate and key reloaded"), "{runtime}: {log}");
        assert!(log.contains("server.pem"), "{runtime}: the broken file is named: {log}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
