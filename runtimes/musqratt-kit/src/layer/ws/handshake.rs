//! The opening handshake (RFC 6455 §4): the server's answer to a client's HTTP upgrade
//! request, and the client's request and its check of the answer (for the test and bench
//! clients).

use core::net::IpAddr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use sha1::{Digest as _, Sha1};

use super::WsSettings;

/// The GUID every accept key is derived with (§1.3).
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The most a request or response head may take: bigger is refused (431), not buffered.
pub(crate) const MAX_HEAD: usize = 8 * 1024;

/// How many header lines a request may have.
const MAX_HEADERS: usize = 32;

/// Subprotocols, in order of preference: `mqtt` (MQTT 5.0 §6.0, MQTT-6.0.0-3/4) and
/// `mqttv3.1`, which MQTT 3.1 clients offer.
const SUBPROTOCOLS: [&str; 2] = ["mqtt", "mqttv3.1"];

/// The server's decision on a request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// `101 Switching Protocols`: the connection is a WebSocket from here on.
    Upgrade {
        /// The response to send.
        response: Bytes,
        /// The client's address as `X-Forwarded-For` gives it, if trusted and present.
        forwarded_for: Option<IpAddr>,
    },
    /// An HTTP error: the response to send before closing.
    Refuse(Bytes),
}

/// Where the head of an HTTP message ends (after its blank line), if it has.
pub(crate) fn head_end(bytes: &[u8]) -> Option<usize> {
    bytes.windows(4).position(|w| w == b"\r\n\r\n").map(|at| at + 4)
}

/// The `Sec-WebSocket-Accept` value for a `Sec-WebSocket-Key` (§4.2.2).
pub(crate) fn accept_key(key: &[u8]) -> String {
    let mut sha1 = Sha1::new();
    sha1.update(key);
    sha1.update(GUID);
    BASE64.encode(sha1.finalize())
}

/// An HTTP error response: the status, a line of explanation, and `extra` header lines.
pub(crate) fn refusal(status: u16, reason: &str, extra: &str, why: &str) -> Bytes {
    let body = format!("{why}\n");
    Bytes::from(format!(
        "HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: text/plain\r\n\
         Content-Length: {}\r\n{extra}\r\n{body}",
        body.len()
    ))
}

/// The server's answer to a request head (`head` ends with its blank line).
pub(crate) fn answer(head: &[u8], settings: &WsSettings) -> Answer {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) | Err(_) => {
            return Answer::Refuse(refusal(400, "Bad Request", "", "malformed HTTP request"));
        }
    }
    let header = |name: &'static str| {
        request
            .headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .filter_map(|h| core::str::from_utf8(h.value).ok())
    };
    let has_token = |name: &'static str, token: &str| {
        header(name).flat_map(|v| v.split(',')).any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    let path = request.path.unwrap_or("").split('?').next().unwrap_or("");
    if request.method != Some("GET") {
        return Answer::Refuse(refusal(
            405,
            "Method Not Allowed",
            "Allow: GET\r\n",
            "a WebSocket upgrade is a GET",
        ));
    }
    if path != settings.path {
        let why = format!("this is an MQTT WebSocket endpoint: {}", settings.path);
        return Answer::Refuse(refusal(404, "Not Found", "", &why));
    }
    // Not an upgrade at all, or to another version (§4.2.1, §4.4): say what is spoken here.
    let upgrade = has_token("upgrade", "websocket") && has_token("connection", "upgrade");
    if !upgrade || !has_token("sec-websocket-version", "13") {
        return Answer::Refuse(refusal(
            426,
            "Upgrade Required",
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n",
            "this endpoint speaks MQTT over WebSocket (RFC 6455, version 13) only",
        ));
    }
    let Some(key) = header("sec-websocket-key")
        .next()
        .map(str::trim)
        .filter(|key| BASE64.decode(key).is_ok_and(|k| k.len() == 16))
    else {
        return Answer::Refuse(refusal(400, "Bad Request", "", "no valid Sec-WebSocket-Key"));
    };
    if !settings.allowed_origins.is_empty() {
        // Browsers always send Origin; other clients do not, and could claim any: the list
        // keeps other sites' pages out, it does not authenticate (docs/SECURITY.md).
        if let Some(origin) = header("origin").next() {
            let origin = origin.trim();
            if !settings.allowed_origins.iter().any(|o| o.eq_ignore_ascii_case(origin)) {
                return Answer::Refuse(refusal(403, "Forbidden", "", "origin not allowed"));
            }
        }
    }
    let offered: Vec<&str> =
        header("sec-websocket-protocol").flat_map(|v| v.split(',')).map(str::trim).collect();
    let protocol = SUBPROTOCOLS.iter().find(|p| offered.iter().any(|o| o.eq_ignore_ascii_case(p)));
    if protocol.is_none() && !offered.is_empty() {
        return Answer::Refuse(refusal(
            400,
            "Bad Request",
            "",
            "no supported subprotocol offered: this endpoint speaks mqtt",
        ));
    }
    let forwarded_for = if settings.trust_forwarded_for {
        header("x-forwarded-for")
            .next()
            .and_then(|v| v.split(',').next())
            .and_then(|first| first.trim().parse().ok())
    } else {
        None
    };
    let protocol_line =
        protocol.map(|p| format!("Sec-WebSocket-Protocol: {p}\r\n")).unwrap_or_default();
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n{protocol_line}\r\n",
        accept_key(key.as_bytes())
    );
    Answer::Upgrade { response: Bytes::from(response), forwarded_for }
}

/// A client's upgrade request for `path` at `host`, offering `mqtt`, with `key` (16 random
/// bytes, base64).
pub(crate) fn request(host: &str, path: &str, key: &str) -> Bytes {
    Bytes::from(format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n"
    ))
}

/// Whether a server's response head accepts the upgrade requested with `key` (§4.1).
pub(crate) fn accepted(head: &[u8], key: &str) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    if !matches!(response.parse(head), Ok(httparse::Status::Complete(_)))
        || response.code != Some(101)
    {
        return false;
    }
    let expected = accept_key(key.as_bytes());
    response.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("sec-websocket-accept") && h.value == expected.as_bytes()
    })
}
