//! [`ConnectOptions`]: everything [`crate::Client::connect`] puts in CONNECT.

use core::time::Duration;

use bytes::Bytes;
use musqratt_proto::mqtt::{LastWill, WillProperties};
use musqratt_proto::{ProtocolVersion, QoS};

/// How to connect: server, protocol version and the fields of CONNECT.
///
/// ```
/// use musqratt_client::ConnectOptions;
/// use musqratt_proto::ProtocolVersion;
///
/// let options = ConnectOptions::new("sensor-1")
///     .url("mqtt://127.0.0.1:1883")
///     .version(ProtocolVersion::V5)
///     .keep_alive(30)
///     .session_expiry(3600);
/// assert_eq!(options.client_id, "sensor-1");
/// ```
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Server URL: `mqtt://[user[:password]@]host[:port]`; default `mqtt://127.0.0.1:1883`.
    pub url: String,
    /// Protocol version; default 3.1.1.
    pub version: ProtocolVersion,
    /// Client Identifier; empty asks the server to assign one (5.0) or is allowed with a clean
    /// session (3.1.1).
    pub client_id: String,
    /// Clean Start (5.0) / Clean Session (3.1.1); default true.
    pub clean_start: bool,
    /// Keep Alive in seconds, 0 for none; the client sends PINGREQ when it has been idle that
    /// long. Default 60.
    pub keep_alive: u16,
    /// Session Expiry Interval in seconds (5.0 only; `None` leaves it out, meaning 0).
    pub session_expiry: Option<u32>,
    /// User Name; a user name in the URL is used when this is `None`.
    pub username: Option<String>,
    /// Password; a password in the URL is used when this is `None`.
    pub password: Option<Bytes>,
    /// The Will Message.
    pub will: Option<LastWill>,
    /// How long to wait for the TCP connection, CONNACK and each acknowledgement; default 10 s.
    pub timeout: Duration,
    /// The largest packet accepted from the server (announced as Maximum Packet Size in 5.0
    /// when below the protocol's limit).
    pub max_packet_size: u32,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            url: "mqtt://127.0.0.1:1883".to_owned(),
            version: ProtocolVersion::V3_1_1,
            client_id: String::new(),
            clean_start: true,
            keep_alive: 60,
            session_expiry: None,
            username: None,
            password: None,
            will: None,
            timeout: Duration::from_secs(10),
            max_packet_size: crate::raw::MAX_PACKET_SIZE,
        }
    }
}

impl ConnectOptions {
    /// Default options with this client identifier.
    #[must_use]
    pub fn new(client_id: impl Into<String>) -> Self {
        Self { client_id: client_id.into(), ..Self::default() }
    }

    /// Sets the server URL.
    #[must_use]
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = url.into();
        self
    }

    /// Sets the protocol version.
    #[must_use]
    pub const fn version(mut self, version: ProtocolVersion) -> Self {
        self.version = version;
        self
    }

    /// Sets Clean Start / Clean Session.
    #[must_use]
    pub const fn clean_start(mut self, clean_start: bool) -> Self {
        self.clean_start = clean_start;
        self
    }

    /// Sets the Keep Alive in seconds (0 turns it off).
    #[must_use]
    pub const fn keep_alive(mut self, seconds: u16) -> Self {
        self.keep_alive = seconds;
        self
    }

    /// Sets the Session Expiry Interval in seconds (5.0).
    #[must_use]
    pub const fn session_expiry(mut self, seconds: u32) -> Self {
        self.session_expiry = Some(seconds);
        self
    }

    /// Sets user name and password.
    #[must_use]
    pub fn credentials(mut self, username: impl Into<String>, password: Option<Bytes>) -> Self {
        self.username = Some(username.into());
        self.password = password;
        self
    }

    /// Sets a Will Message; `delay` is the 5.0 Will Delay Interval in seconds.
    #[must_use]
    pub fn will(
        mut self,
        topic: &str,
        payload: impl Into<Bytes>,
        qos: QoS,
        retain: bool,
        delay: Option<u32>,
    ) -> Self {
        let mut properties = WillProperties::default();
        properties.will_delay_interval = delay;
        self.will = Some(LastWill {
            topic: topic.into(),
            payload: payload.into(),
            qos,
            retain,
            properties,
        });
        self
    }

    /// Sets the time limit for the connection and each acknowledgement.
    #[must_use]
    pub const fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}
