//! The dashboard page at `GET /` of the admin listener (issue 17, docs/OBSERVABILITY.md):
//! one HTML page, its script, and the WebAssembly build of `musqratt-proto` its MQTT client
//! speaks through (the `musqratt-wasm` crate; docs/adr/0020-dashboard-wasm.md). All embedded
//! in the binary: nothing is fetched from elsewhere, nothing is built by the user.

/// The page.
const INDEX: &str = include_str!("dashboard/index.html");
/// Its script: the plots, the tables, and the MQTT client's thin glue around the module.
const SCRIPT: &str = include_str!("dashboard/dashboard.js");
/// `musqratt-wasm` built for `wasm32-unknown-unknown` (committed; CI rebuilds it, ADR 20).
const WASM: &[u8] = include_bytes!("dashboard/musqratt.wasm");

/// The content type and body served at `path`, if it is one of the dashboard's.
#[must_use]
pub fn asset(path: &str) -> Option<(&'static str, &'static [u8])> {
    match path {
        "/" | "/index.html" => Some(("text/html; charset=utf-8", INDEX.as_bytes())),
        "/dashboard.js" => Some(("text/javascript; charset=utf-8", SCRIPT.as_bytes())),
        "/musqratt.wasm" => Some(("application/wasm", WASM)),
        _ => None,
    }
}
