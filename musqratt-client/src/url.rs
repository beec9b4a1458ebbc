//! Server addresses: `mqtt://[user[:password]@]host[:port][/]`, `tcp://host:port`, `host:port` or
//! `host`. Parsed by hand; the default port is 1883.

use crate::ClientError;

/// The default MQTT port over plain TCP.
pub const DEFAULT_PORT: u16 = 1883;

/// A parsed server address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAddr {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// User name given in the URL.
    pub username: Option<String>,
    /// Password given in the URL.
    pub password: Option<String>,
}

impl ServerAddr {
    /// Parses a server URL.
    ///
    /// # Errors
    /// [`ClientError::InvalidUrl`] for an unknown scheme (TLS and WebSockets are not supported
    /// by this client), an empty host or a bad port.
    pub fn parse(url: &str) -> Result<Self, ClientError> {
        let invalid = |reason| ClientError::InvalidUrl { url: url.to_owned(), reason };
        let rest = match url.split_once("://") {
            Some(("mqtt" | "tcp", rest)) => rest,
            Some(_) => return Err(invalid("unsupported scheme: use mqtt:// or tcp://")),
            None => url,
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((userinfo, hostport)) => (Some(userinfo), hostport),
            None => (None, authority),
        };
        let (username, password) = match userinfo {
            Some(info) => match info.split_once(':') {
                Some((user, pass)) => (Some(user.to_owned()), Some(pass.to_owned())),
                None => (Some(info.to_owned()), None),
            },
            None => (None, None),
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| invalid("unclosed '['"))?;
            match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None if after.is_empty() => (host, None),
                None => return Err(invalid("unexpected text after the IPv6 address")),
            }
        } else {
            match hostport.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err(invalid("missing host"));
        }
        let port = match port {
            Some(port) => port.parse().map_err(|_| invalid("bad port number"))?,
            None => DEFAULT_PORT,
        };
        Ok(Self { host: host.to_owned(), port, username, password })
    }

    /// `host:port` for [`tokio::net::TcpStream::connect`].
    #[must_use]
    pub fn socket_addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let addr = ServerAddr::parse("mqtt://localhost:1884").unwrap();
        assert_eq!((addr.host.as_str(), addr.port), ("localhost", 1884));
        let addr = ServerAddr::parse("127.0.0.1").unwrap();
        assert_eq!(addr.socket_addr(), "127.0.0.1:1883");
        let addr = ServerAddr::parse("tcp://u:p@[::1]:2000/x").unwrap();
        assert_eq!(addr.socket_addr(), "[::1]:2000");
        assert_eq!(addr.username.as_deref(), Some("u"));
        assert_eq!(addr.password.as_deref(), Some("p"));
        assert!(ServerAddr::parse("mqtts://h").is_err());
        assert!(ServerAddr::parse("mqtt://h:x").is_err());
        assert!(ServerAddr::parse("mqtt://:1").is_err());
    }
}
