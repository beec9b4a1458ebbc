//! Listener URLs: what each listener serves and where (`mqtt://`, `mqtts://`, `ws://`,
//! `wss://`, `mqtt-sn://`, and `mqtt+identity://` for measuring the layer seam).

use core::fmt;
use core::net::SocketAddr;
use core::str::FromStr;
use std::net::ToSocketAddrs;

use serde::Deserialize;

/// A listener address: `mqtt://host:port` (MQTT over TCP, `:1883` when no port is given),
/// `mqtts://` (TLS, `:8883`), `ws://host:port/path` (WebSocket, `:8083`, path `/mqtt`),
/// `wss://` (WebSocket over TLS, `:8084`) or `mqtt-sn://host:port` (MQTT-SN 1.2 over UDP,
/// `:1884`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
#[non_exhaustive]
pub struct ListenUrl {
    /// The URL as written.
    pub url: String,
    /// The protocol served there.
    pub scheme: Scheme,
    /// The address it resolves to.
    pub addr: SocketAddr,
    /// The byte-stream layers its connections pass through; none: plain.
    pub layer: Option<ListenLayer>,
    /// The HTTP path of a WebSocket listener's upgrade request (`/mqtt` when the URL has none);
    /// `None` for the others.
    pub path: Option<String>,
}

/// The byte-stream layers of a listener, named in its URL's scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ListenLayer {
    /// `mqtt+identity://`: the identity layer, which passes bytes through unchanged; what a
    /// layer costs a connection compared with `mqtt://` (docs/adr/0015-byte-stream-layers.md).
    Identity,
    /// `mqtts://`: MQTT over TLS (the `[tls]` table), port 8883 by default.
    Tls,
    /// `ws://`: MQTT over WebSocket (MQTT 5.0 §6, the `[websocket]` table), port 8083.
    Ws,
    /// `wss://`: MQTT over WebSocket over TLS (`[tls]` and `[websocket]`), port 8084.
    Wss,
}

impl ListenLayer {
    fn default_port(self) -> Option<u16> {
        match self {
            Self::Identity => None,
            Self::Tls => Some(8883),
            Self::Ws => Some(8083),
            Self::Wss => Some(8084),
        }
    }

    /// Whether the layers include TLS (and need the `[tls]` files).
    #[must_use]
    pub fn is_tls(self) -> bool {
        matches!(self, Self::Tls | Self::Wss)
    }

    /// Whether the connections speak WebSocket.
    #[must_use]
    pub fn is_ws(self) -> bool {
        matches!(self, Self::Ws | Self::Wss)
    }
}

/// The protocol of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Scheme {
    /// `mqtt://` and the layered schemes: MQTT 3.1, 3.1.1 and 5.0 over a byte stream.
    Mqtt,
    /// `mqtt-sn://`: MQTT-SN 1.2 over UDP.
    MqttSn,
}

impl Scheme {
    fn default_port(self) -> u16 {
        match self {
            Self::Mqtt => 1883,
            Self::MqttSn => 1884,
        }
    }
}

impl Default for ListenUrl {
    fn default() -> Self {
        Self {
            url: "mqtt://127.0.0.1:1883".into(),
            scheme: Scheme::Mqtt,
            addr: SocketAddr::from(([127, 0, 0, 1], 1883)),
            layer: None,
            path: None,
        }
    }
}

impl FromStr for ListenUrl {
    type Err = String;

    fn from_str(url: &str) -> Result<Self, String> {
        let Some((name, rest)) = url.split_once("://") else {
            return Err(format!("`{url}` is not a URL: write mqtt://host:port"));
        };
        let (scheme, layer) = match name {
            "mqtt" => (Scheme::Mqtt, None),
            "mqtt+identity" => (Scheme::Mqtt, Some(ListenLayer::Identity)),
            "mqtts" => (Scheme::Mqtt, Some(ListenLayer::Tls)),
            "ws" => (Scheme::Mqtt, Some(ListenLayer::Ws)),
            "wss" => (Scheme::Mqtt, Some(ListenLayer::Wss)),
            "mqtt-sn" => (Scheme::MqttSn, None),
            _ => {
                return Err(format!(
                    "unsupported scheme `{name}://` in `{url}`: mqtt:// (MQTT over TCP), \
                     mqtts:// (MQTT over TLS), ws:// and wss:// (MQTT over WebSocket, plain and \
                     over TLS), mqtt-sn:// (MQTT-SN over UDP) and mqtt+identity:// (MQTT over \
                     TCP through the identity layer) are supported"
                ));
            }
        };
        let is_ws = layer.is_some_and(ListenLayer::is_ws);
        let (authority, path) = match rest.find('/') {
            Some(at) if is_ws => (&rest[..at], Some(&rest[at..])),
            Some(at) if at + 1 == rest.len() => (&rest[..at], None),
            None => (rest, None),
            Some(_) => return Err(format!("`{url}`: expected {name}://host:port")),
        };
        if authority.is_empty() {
            return Err(format!("`{url}`: expected {name}://host:port"));
        }
        let path = is_ws.then(|| match path {
            None | Some("/") => "/mqtt".to_owned(),
            Some(path) => path.to_owned(),
        });
        let has_port = authority.rsplit_once(':').is_some_and(|(host, port)| {
            !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && !host.ends_with(':')
        }) && !authority.ends_with(']');
        let with_port = if has_port {
            authority.to_owned()
        } else {
            let port =
                layer.and_then(ListenLayer::default_port).unwrap_or_else(|| scheme.default_port());
            format!("{authority}:{port}")
        };
        let addr = match with_port.parse::<SocketAddr>() {
            Ok(addr) => addr,
            Err(_) => with_port
                .to_socket_addrs()
                .ok()
                .and_then(|mut addrs| addrs.next())
                .ok_or_else(|| format!("`{url}`: cannot resolve `{authority}`"))?,
        };
        Ok(Self { url: url.to_owned(), scheme, addr, layer, path })
    }
}

impl TryFrom<String> for ListenUrl {
    type Error = String;

    fn try_from(url: String) -> Result<Self, String> {
        url.parse()
    }
}

impl fmt::Display for ListenUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_urls_have_their_ports_and_paths() {
        let url: ListenUrl = "ws://127.0.0.1".parse().unwrap();
        assert_eq!(
            (url.addr.port(), url.layer, url.path.as_deref()),
            (8083, Some(ListenLayer::Ws), Some("/mqtt"))
        );
        let url: ListenUrl = "wss://127.0.0.1/".parse().unwrap();
        assert_eq!(
            (url.addr.port(), url.layer, url.path.as_deref()),
            (8084, Some(ListenLayer::Wss), Some("/mqtt"))
        );
        let url: ListenUrl = "ws://[::1]:9001/broker/mqtt".parse().unwrap();
        assert_eq!((url.addr.port(), url.path.as_deref()), (9001, Some("/broker/mqtt")));
        assert!("mqtt://127.0.0.1:1883/mqtt".parse::<ListenUrl>().is_err());
        assert!("ws:///mqtt".parse::<ListenUrl>().is_err());
        let url: ListenUrl = "mqtt://127.0.0.1/".parse().unwrap();
        assert_eq!((url.addr.port(), url.path), (1883, None));
    }
}
