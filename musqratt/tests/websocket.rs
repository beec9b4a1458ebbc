//! MQTT over WebSocket (`ws://`, `wss://`, issue 15) with real clients on every runtime:
//! MQTT.js in headless Chromium and paho-mqtt over `transport="websockets"`, exchanging
//! messages with paho over plain TCP (tests/browser/ws_browser_check.py); a wss:// listener
//! with a certificate made here with rcgen (no private key is committed).

use core::time::Duration;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Instant;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

const RUNTIMES: [&str; 3] = ["tokio", "io-uring", "blocking"];

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A CA and a server certificate it signs for localhost and 127.0.0.1, in `dir`.
fn server_certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "ws-test-ca");
    let ca = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, "localhost");
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    let (cert_file, key_file) = (dir.join("server.pem"), dir.join("server.key"));
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    (cert_file, key_file)
}

/// The broker binary on `runtime` with `config`; waits until every port in `ports` accepts.
fn musqratt(dir: &Path, runtime: &str, config: &str, ports: &[u16]) -> Child {
    let path = dir.join("musqratt.toml");
    std::fs::write(&path, config).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_musqratt"))
        .args(["broker", "--runtime", runtime, "--log-level", "warn", "--config"])
        .arg(&path)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    for port in ports {
        while TcpStream::connect(("127.0.0.1", *port)).is_err() {
            assert!(Instant::now() < deadline, "{runtime}: port {port} never opened");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    child
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
        let mut broker = musqratt(&dir, runtime, &config, &[tcp, ws, wss]);
        let out = Command::new("python3")
            .arg(&script)
            .args([tcp.to_string(), ws.to_string(), wss.to_string()])
            .arg(&cert)
            .arg(&screenshot)
            .output()
            .unwrap();
        broker.kill().unwrap();
        broker.wait().unwrap();
        assert!(
            out.status.success(),
            "{runtime}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("{runtime}: {}", String::from_utf8_lossy(&out.stdout).trim());
    }
    let _ = std::fs::remove_dir_all(&dir);
}
