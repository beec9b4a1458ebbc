//! MQTT over WebSocket (`ws://`, `wss://`, issue 15) with real clients on every runtime:
//! MQTT.js in headless Chromium and paho-mqtt over `transport="websockets"`, exchanging
//! messages with paho over plain TCP (tests/browser/ws_browser_check.py); a wss:// listener
//! with a certificate made here with rcgen (no private key is committed).

use std::path::{Path, PathBuf};
use std::process::Command;

use musqratt_testkit::pki::TestCa;
use musqratt_testkit::{BrokerProcess, free_port};

const RUNTIMES: [&str; 3] = ["tokio", "io-uring", "blocking"];

/// A CA and a server certificate it signs for localhost and 127.0.0.1, in `dir`.
fn server_certificate(dir: &Path) -> (PathBuf, PathBuf) {
    TestCa::new(dir, "ws-test-ca").server(dir, "server")
}

/// MQTT.js in Chromium over ws:// and wss://, with paho over TCP and over WebSocket, on
/// every runtime. The page screenshot of the last run is kept in the target directory.
#[test]
fn a_browser_and_paho_speak_mqtt_over_websocket_on_every_runtime() {
    let _one = musqratt_testkit::one_broker_process_at_a_time();
    let browser = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/browser");
    let script = browser.join("ws_browser_check.py");
    // MQTT.js comes from npm (`npm ci` in tests/browser, as .ci/run does).
    let bundle = browser.join("node_modules/mqtt/dist/mqtt.min.js");
    if !musqratt_testkit::tool_available(&["python3", "-c", "import playwright, paho.mqtt"])
        || !musqratt_testkit::tool_available(&["chromium", "--version"])
        || !musqratt_testkit::tool_available(&["test", "-f", &bundle.display().to_string()])
    {
        return;
    }
    let dir = std::env::temp_dir().join(format!("musqratt-ws-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = server_certificate(&dir);
    let screenshot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ws-browser.png");
    for runtime in RUNTIMES {
        let (tcp, ws, wss) = (free_port(), free_port(), free_port());
        let config = format!(
            "listeners = [\"mqtt://127.0.0.1:{tcp}\", \"ws://127.0.0.1:{ws}/mqtt\", \
             \"wss://127.0.0.1:{wss}\"]\nthreads = 2\n[tls]\ncert_file = {:?}\nkey_file = {:?}\n",
            cert.display().to_string(),
            key.display().to_string(),
        );
        let broker =
            BrokerProcess::musqratt(env!("CARGO_BIN_EXE_musqratt"), &dir, runtime, &config)
                .log_level("warn")
                .port(tcp)
                .port(ws)
                .port(wss)
                .start();
        let out = Command::new("python3")
            .arg(&script)
            .args([tcp.to_string(), ws.to_string(), wss.to_string()])
            .arg(&cert)
            .arg(&screenshot)
            .output()
            .unwrap();
        let log = broker.stop();
        assert!(
            out.status.success(),
            "{runtime}: {}\n{}\nbroker log:\n{log}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("{runtime}: {}", String::from_utf8_lossy(&out.stdout).trim());
    }
    let _ = std::fs::remove_dir_all(&dir);
}
