//! The dashboard page (issue 17) in headless Chromium on every runtime
//! (tests/browser/dashboard_check.py): it loads without console errors, lists the paho
//! clients this test connected and their number, shows a retained message in its topic
//! tree, and its MQTT client — musqratt-proto built for WebAssembly (musqratt-wasm), over the
//! broker's ws:// listener — exchanges messages with paho both ways. The screenshot of the
//! last run goes to `target/artifacts/dashboard.png`.

use std::path::Path;
use std::process::Command;

use musqratt_testkit::{BrokerProcess, free_port, http_get_ok, scratch_dir, tool_available};

/// Clients the test connects besides the page's own two.
const N_CLIENTS: usize = 3;

#[test]
fn the_dashboard_shows_the_broker_and_speaks_mqtt_over_websocket_on_every_runtime() {
    let _one = musqratt_testkit::one_broker_process_at_a_time();
    if !tool_available(&["python3", "-c", "import playwright, paho.mqtt"])
        || !tool_available(&["chromium", "--version"])
    {
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/browser/dashboard_check.py");
    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("../artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let screenshot = artifacts.join("dashboard.png");
    for runtime in ["tokio", "io-uring", "blocking"] {
        let (tcp, ws, http) = (free_port(), free_port(), free_port());
        let dir = scratch_dir(&format!("dashboard-{runtime}"));
        let config = format!(
            "listeners = [\"mqtt://127.0.0.1:{tcp}\", \"ws://127.0.0.1:{ws}/mqtt\"]\n\
             threads = 2\nsys_interval_s = 1\n[http]\nlisten = \"127.0.0.1:{http}\"\n"
        );
        let broker =
            BrokerProcess::musqratt(env!("CARGO_BIN_EXE_musqratt"), &dir, runtime, &config)
                .port(tcp)
                .port(ws)
                .port(http)
                .start();
        let out = Command::new("python3")
            .arg(&script)
            .args([http.to_string(), tcp.to_string(), N_CLIENTS.to_string()])
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
        assert!(!log.contains("panicked"), "{log}");
        eprintln!("{runtime}: {}", String::from_utf8_lossy(&out.stdout).trim());
    }
    let screenshot = screenshot.canonicalize().unwrap();
    println!("dashboard screenshot: {}", screenshot.display());
}

/// Without a WebSocket listener the page says so, and `/api/v1/stats` says `"websocket":null`;
/// with one, where it is (the page connects there).
#[test]
fn stats_tell_the_page_where_the_websocket_listener_is() {
    for (listeners, want) in [
        (String::new(), "{\"websocket\":null,".to_owned()),
        (", \"ws://127.0.0.1:{ws}/mqtt\"".to_owned(), String::new()),
    ] {
        let (tcp, ws, http) = (free_port(), free_port(), free_port());
        let listeners = listeners.replace("{ws}", &ws.to_string());
        let dir = scratch_dir("dashboard-ws-field");
        let config = format!(
            "listeners = [\"mqtt://127.0.0.1:{tcp}\"{listeners}]\n\
             [http]\nlisten = \"127.0.0.1:{http}\"\n"
        );
        let broker =
            BrokerProcess::musqratt(env!("CARGO_BIN_EXE_musqratt"), &dir, "tokio", &config)
                .port(tcp)
                .port(http)
                .start();
        let stats = http_get_ok(http, "/api/v1/stats");
        let want = if want.is_empty() {
            format!(
                "{{\"websocket\":{{\"scheme\":\"ws\",\"host\":\"127.0.0.1\",\"port\":{ws},\"path\":\"/mqtt\"}},"
            )
        } else {
            want
        };
        assert!(stats.starts_with(&want), "{stats}");
        let page = http_get_ok(http, "/");
        assert!(page.contains("<script src=\"/dashboard.js\">"), "{page}");
        assert!(http_get_ok(http, "/dashboard.js").contains("no WebSocket listener configured"));
        let _ = broker.stop();
    }
}
