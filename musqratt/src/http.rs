//! The `[http]` admin listener (issue 17, docs/OBSERVABILITY.md): `GET /metrics` (Prometheus
//! text format 0.0.4), `GET /healthz`, `GET /api/v1/stats` and `GET /api/v1/clients` (JSON),
//! and the dashboard page at `GET /` (`crate::dashboard`).
//!
//! A std thread and `httparse`, one request per connection (`Connection: close`), one
//! connection at a time: an admin endpoint scraped every few seconds needs no executor, and
//! this keeps it apart from the shards' threads and usable with every runtime. Requests are
//! bounded (8 KiB of head, a 5 s timeout), so a stuck client delays the next scrape by at most
//! that; it cannot grow memory.

use core::net::SocketAddr;
use core::sync::atomic::{AtomicBool, Ordering};
use core::time::Duration;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;

use base64::Engine as _;
use musqratt_kit::{MetricsSource, Order, metrics};

use crate::dashboard;

/// What the listener serves: the broker's numbers and clients, read per request, and where
/// the dashboard's MQTT client connects.
#[derive(Debug, Clone)]
pub struct Admin {
    /// The running broker's numbers and clients.
    pub source: MetricsSource,
    /// The WebSocket listener the dashboard page connects to, if the broker has one.
    pub websocket: Option<WebSocketEndpoint>,
}

/// A WebSocket listener as the dashboard page needs it (`websocket` of `/api/v1/stats`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSocketEndpoint {
    /// `ws` or `wss`.
    pub scheme: &'static str,
    /// Its host, or `None` when it listens on every address (the page then uses the host it
    /// was loaded from).
    pub host: Option<String>,
    /// Its port.
    pub port: u16,
    /// The HTTP path of its upgrade request (`/mqtt`).
    pub path: String,
}

impl WebSocketEndpoint {
    fn json(&self) -> String {
        let host = match &self.host {
            Some(host) => format!("\"{}\"", metrics::json_escape(host)),
            None => "null".to_owned(),
        };
        format!(
            "{{\"scheme\":\"{}\",\"host\":{host},\"port\":{},\"path\":\"{}\"}}",
            self.scheme,
            self.port,
            metrics::json_escape(&self.path)
        )
    }
}

/// The default page size of `/api/v1/clients`.
const DEFAULT_PAGE_LIMIT: usize = 100;

/// The longest request head read.
const MAX_HEAD: usize = 8 * 1024;
/// How long a client has to send its request and read the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A running admin listener; stopped when dropped.
#[derive(Debug)]
pub struct HttpServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// Binds `listen` and serves from a thread. `basic_auth`: the user and password every
    /// request must carry (RFC 7617), or `None` to serve anyone who can connect.
    ///
    /// # Errors
    /// The address cannot be bound, or the thread cannot start.
    pub fn start(
        listen: SocketAddr,
        basic_auth: Option<(&str, &str)>,
        admin: Admin,
    ) -> io::Result<Self> {
        let listener = TcpListener::bind(listen)?;
        let addr = listener.local_addr()?;
        let expected = basic_auth.map(|(user, password)| {
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            format!("Basic {token}")
        });
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new().name("musqratt-http".into()).spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                if let Err(error) = serve(stream, expected.as_deref(), &admin) {
                    tracing::debug!(%error, "http request failed");
                }
            }
        })?;
        tracing::info!(%addr, "http admin listener (/, /metrics, /healthz, /api/v1/stats, /api/v1/clients)");
        Ok(Self { addr, stop, thread: Some(thread) })
    }

    /// The address it listens on (with the port picked for 0).
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the blocking accept, which then sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads one request and answers it.
fn serve(mut stream: TcpStream, expected: Option<&str>, admin: &Admin) -> io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let (method, path, authorization) = loop {
        let read = stream.read(&mut chunk)?;
        if read == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..read]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => {
                let authorization = request
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("authorization"))
                    .map(|h| String::from_utf8_lossy(h.value).into_owned());
                let method = request.method.unwrap_or_default().to_owned();
                break (method, request.path.unwrap_or_default().to_owned(), authorization);
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {}
            Ok(httparse::Status::Partial) | Err(_) => {
                return respond(&mut stream, "400 Bad Request", "text/plain", "bad request\n");
            }
        }
    };
    if let Some(expected) = expected
        && !authorization.as_deref().is_some_and(|given| constant_time_eq(given, expected))
    {
        let head = "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"musqratt\"\r\n\
                    Content-Length: 0\r\nConnection: close\r\n\r\n";
        return stream.write_all(head.as_bytes());
    }
    if method != "GET" {
        return respond(&mut stream, "405 Method Not Allowed", "text/plain", "GET only\n");
    }
    let version = env!("CARGO_PKG_VERSION");
    let (route, query) = path.split_once('?').unwrap_or((&path, ""));
    let source = &admin.source;
    match route {
        "/healthz" => respond(&mut stream, "200 OK", "text/plain", "ok\n"),
        "/metrics" => {
            let body = metrics::prometheus(&source.metrics(), source.uptime());
            respond(&mut stream, "200 OK", "text/plain; version=0.0.4; charset=utf-8", &body)
        }
        "/api/v1/stats" => {
            let body = metrics::json(&source.metrics(), source.uptime(), version);
            // The dashboard learns where to connect from here.
            let websocket =
                admin.websocket.as_ref().map_or("null".to_owned(), WebSocketEndpoint::json);
            let body = format!("{{\"websocket\":{websocket},{}", &body[1..]);
            respond(&mut stream, "200 OK", "application/json", &body)
        }
        "/api/v1/clients" => {
            let page = query_number(query, "page").unwrap_or(1);
            let limit = query_number(query, "limit").unwrap_or(DEFAULT_PAGE_LIMIT);
            let order = match query_value(query, "sort") {
                Some("queued") => Order::Queued,
                _ => Order::ClientId,
            };
            let body = metrics::clients_json(&source.clients(page, limit, order));
            respond(&mut stream, "200 OK", "application/json", &body)
        }
        _ => match dashboard::asset(route) {
            Some((kind, body)) => respond_bytes(&mut stream, "200 OK", kind, body),
            None => respond(&mut stream, "404 Not Found", "text/plain", "not found\n"),
        },
    }
}

/// The value of `name=...` in a query string.
fn query_value<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// The value of `name=N` in a query string, if it is a number.
fn query_number(query: &str, name: &str) -> Option<usize> {
    query_value(query, name).and_then(|value| value.parse().ok())
}

fn respond(stream: &mut TcpStream, status: &str, kind: &str, body: &str) -> io::Result<()> {
    respond_bytes(stream, status, kind, body.as_bytes())
}

fn respond_bytes(stream: &mut TcpStream, status: &str, kind: &str, body: &[u8]) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()
}

/// Compares the whole of both strings whatever their first difference, so the time taken does
/// not tell a client how much of a guessed credential was right.
fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut diff = u8::from(a.len() != b.len());
    for (x, y) in a.iter().zip(b.iter()) {
        diff |= x ^ y;
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(addr: SocketAddr, path: &str, auth: Option<&str>) -> String {
        let mut stream = TcpStream::connect(addr).unwrap();
        let auth = auth.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n{auth}\r\n").unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    }

    /// One shard, an engine with nobody connected.
    struct OneEngine(std::sync::Mutex<musqratt_engine::Engine>);

    impl musqratt_kit::Shards for OneEngine {
        fn count(&self) -> usize {
            1
        }
        fn each(&self, visit: &mut dyn FnMut(&musqratt_engine::Engine, musqratt_kit::PeerOf<'_>)) {
            visit(&self.0.lock().unwrap(), &|_| None);
        }
    }

    fn source() -> Admin {
        let engine = musqratt_engine::Engine::new(musqratt_engine::Config::default());
        let shards = Arc::new(OneEngine(std::sync::Mutex::new(engine)));
        Admin { source: MetricsSource::new(shards, musqratt_kit::Clock::new()), websocket: None }
    }

    #[test]
    fn serves_the_three_paths() {
        let server = HttpServer::start(([127, 0, 0, 1], 0).into(), None, source()).unwrap();
        let addr = server.local_addr();
        assert!(get(addr, "/healthz", None).ends_with("\r\n\r\nok\n"));
        let metrics = get(addr, "/metrics", None);
        assert!(metrics.starts_with("HTTP/1.1 200 OK\r\n"), "{metrics}");
        assert!(metrics.contains("\nmusqratt_clients_connected 0\n"), "{metrics}");
        let stats = get(addr, "/api/v1/stats", None);
        assert!(stats.contains("{\"websocket\":null,\"version\":"), "{stats}");
        assert!(stats.contains("\"clients\":{\"connected\":0,"), "{stats}");
        let clients = get(addr, "/api/v1/clients?page=2&limit=5", None);
        assert!(
            clients.ends_with("{\"total\":0,\"page\":2,\"limit\":5,\"clients\":[]}"),
            "{clients}"
        );
        let page = get(addr, "/", None);
        assert!(page.starts_with("HTTP/1.1 200 OK\r\nContent-Type: text/html"), "{page}");
        assert!(get(addr, "/nope", None).starts_with("HTTP/1.1 404"));
    }

    #[test]
    fn basic_auth_is_required_when_set() {
        let credentials = Some(("admin", "s3cret"));
        let server = HttpServer::start(([127, 0, 0, 1], 0).into(), credentials, source()).unwrap();
        let addr = server.local_addr();
        assert!(get(addr, "/metrics", None).starts_with("HTTP/1.1 401"));
        // "admin:wrong" and "admin:s3cret" in base64.
        assert!(get(addr, "/metrics", Some("Basic YWRtaW46d3Jvbmc=")).starts_with("HTTP/1.1 401"));
        let ok = get(addr, "/metrics", Some("Basic YWRtaW46czNjcmV0"));
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    }
}
