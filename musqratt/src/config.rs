//! The broker's configuration file (TOML), documented key by key in `docs/CONFIG.md`.
//!
//! Every key is optional; a missing key keeps the default, an unknown key is an error (a typo
//! must not silently fall back to a default).
//!
//! Each key is declared once, in the `table!` lists below: its type in the file, its default
//! (taken from the engine's `Config::default()` where the engine has the setting, so that the two
//! cannot drift) and how it sets the engine's `Config`. The struct, its `Default` and the
//! conversion are generated from that one line (issue 13, "Config written once").
//!
//! ```
//! let config = musqratt::config::FileConfig::parse(
//!     "listeners = [\"mqtt://0.0.0.0:1883\"]\nmax_queued_messages = 500\n",
//! )
//! .unwrap();
//! assert_eq!(config.engine_config().max_queued_messages, 500);
//! ```

use core::fmt;
use core::net::SocketAddr;
use core::num::NonZeroU16;
use core::time::Duration;
use std::collections::BTreeMap;

use musqratt_engine::{BacklogConfig, Config};
use musqratt_kit::layer::tls::{TlsConfig, TlsSettingsError};
use musqratt_proto::QoS;
use serde::Deserialize;

/// Declares a table of the file once: the struct (deserialized with serde, unknown keys refused,
/// missing keys defaulted), its `Default` and `apply`, which sets the engine settings the table
/// holds in a `Config`.
///
/// Each key is written `name: Type = default_expression => |value, config| statement;`. The
/// default expression may read the engine's defaults through the identifier given after `from`.
/// Keys that are not engine settings (listeners, threads, runtime options) apply nothing.
macro_rules! table {
    (
        $(#[$meta:meta])*
        pub struct $name:ident from $engine:ident {
            $(
                $(#[doc = $doc:literal])*
                $field:ident: $ty:ty = $default:expr => $apply:expr;
            )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
        #[serde(deny_unknown_fields, default)]
        #[non_exhaustive]
        pub struct $name {
            $( $(#[doc = $doc])* pub $field: $ty, )*
        }

        impl Default for $name {
            fn default() -> Self {
                #[allow(unused_variables)]
                let $engine = Config::default();
                Self { $( $field: $default, )* }
            }
        }

        impl $name {
            /// Sets the engine settings of this table in `config`.
            pub(crate) fn apply(&self, config: &mut Config) {
                $(
                    let apply: fn(&$ty, &mut Config) = $apply;
                    apply(&self.$field, config);
                )*
            }
        }
    };
}

mod http;
mod listen;
mod persistence;
mod security;
pub use http::HttpSection;
pub use listen::{ListenLayer, ListenUrl, Scheme};
pub use persistence::{FsyncSetting, PersistenceSection};
pub use security::{
    AuthSection, HttpAuthSection, JwtSection, ScramMethod, ThrottleSection, TlsSection,
    WebsocketSection,
};

/// Milliseconds of a duration, saturated: the file writes durations in ms.
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

table! {
    /// The configuration file: listeners, threads and the engine's limits.
    pub struct FileConfig from engine {
        /// Where to accept clients: `mqtt://host:port` (MQTT over TCP) and `mqtt-sn://host:port`
        /// (MQTT-SN 1.2 over UDP) URLs; `mqtt+identity://host:port` is MQTT over TCP through
        /// the identity byte-stream layer, to measure the layers' seam (docs/adr/0015).
        listeners: Vec<ListenUrl> = vec![ListenUrl::default()] => |_, _| {};
        /// Shards (threads); 0 means one per core.
        threads: usize = 0 => |_, _| {};
        /// Largest packet accepted from a client, fixed header included.
        max_packet_size: u32 = engine.max_packet_size => |v, c| c.max_packet_size = *v;
        /// Unacknowledged QoS 1/2 publications a client may have towards the broker.
        receive_maximum: NonZeroU16 =
            NonZeroU16::new(engine.receive_maximum).unwrap_or(NonZeroU16::MAX)
            => |v, c| c.receive_maximum = v.get();
        /// Topic aliases a client may use towards the broker; 0 turns them off.
        topic_alias_maximum: u16 = engine.topic_alias_maximum
            => |v, c| c.topic_alias_maximum = *v;
        /// Highest QoS accepted: 0, 1 or 2.
        maximum_qos: MaximumQos = MaximumQos(engine.maximum_qos) => |v, c| c.maximum_qos = v.0;
        /// Whether retained messages are supported.
        retain_available: bool = engine.retain_available => |v, c| c.retain_available = *v;
        /// Whether wildcard subscriptions are allowed.
        wildcard_subscription_available: bool = engine.wildcard_subscription_available
            => |v, c| c.wildcard_subscription_available = *v;
        /// Whether subscription identifiers are supported.
        subscription_identifiers_available: bool = engine.subscription_identifiers_available
            => |v, c| c.subscription_identifiers_available = *v;
        /// Whether shared subscriptions are supported.
        shared_subscription_available: bool = engine.shared_subscription_available
            => |v, c| c.shared_subscription_available = *v;
        /// Keep alive imposed on clients, in seconds; absent keeps the client's.
        server_keep_alive: Option<u16> = engine.server_keep_alive
            => |v, c| c.server_keep_alive = *v;
        /// Longest session expiry granted, in seconds.
        max_session_expiry: u32 = engine.max_session_expiry => |v, c| c.max_session_expiry = *v;
        /// Session expiry of MQTT 3.x clients connecting with Clean Session 0, in seconds.
        v3_session_expiry: u32 = engine.v3_session_expiry => |v, c| c.v3_session_expiry = *v;
        /// Messages kept per offline or congested session.
        max_queued_messages: usize = engine.max_queued_messages
            => |v, c| c.max_queued_messages = *v;
        /// Payload bytes kept per session.
        max_queued_bytes: usize = engine.max_queued_bytes => |v, c| c.max_queued_bytes = *v;
        /// Unwritten bytes per connection beyond which QoS 0 messages to it are dropped.
        max_unwritten_bytes: usize = engine.max_unwritten_bytes
            => |v, c| c.max_unwritten_bytes = *v;
        /// Milliseconds a new connection has to send CONNECT.
        connect_timeout_ms: u64 = millis(engine.connect_timeout)
            => |v, c| c.connect_timeout = Duration::from_millis(*v);
        /// Milliseconds of silence (once to twice this) after which a connection hibernates: the
        /// tokio runtime frees its task and I/O registration until it is needed again
        /// (docs/adr/0009-hibernation.md); 0 never. The other runtimes ignore it.
        // musqratt_tokio::DEFAULT_HIBERNATE_AFTER (a test checks they agree).
        hibernate_after_ms: u64 = 5000 => |_, _| {};
        /// When set, MQTT 5.0 clients are redirected there (CONNACK 0x9C Use another server).
        server_reference: Option<String> = engine.server_reference
            => |v, c| c.server_reference.clone_from(v);
        /// Refuse MQTT 3.1 client identifiers longer than 23 characters (3.1's letter).
        strict_v31_client_id: bool = engine.strict_v31_client_id
            => |v, c| c.strict_v31_client_id = *v;
        /// The topic backlog.
        backlog: BacklogSection = BacklogSection::default() => |v, c| v.apply(c);
        /// MQTT-SN settings.
        mqtt_sn: MqttSnSection = MqttSnSection::default() => |v, c| v.apply(c);
        /// Who may connect (docs/SECURITY.md).
        auth: AuthSection = AuthSection::default() => |v, c| v.apply(c);
        /// The `mqtts://` and `wss://` listeners' certificate and key, and client certificates.
        tls: TlsSection = TlsSection::default() => |v, c| v.apply(c);
        /// The `ws://` and `wss://` listeners' browser origins and proxy trust.
        websocket: WebsocketSection = WebsocketSection::default() => |v, c| v.apply(c);
        /// Where sessions, queues and retained messages are kept (docs/PERSISTENCE.md).
        persistence: PersistenceSection = PersistenceSection::default() => |v, c| v.apply(c);
        /// Seconds between two publications of the `$SYS` tree (docs/OBSERVABILITY.md); 0 never.
        /// Mosquitto's default period.
        sys_interval_s: u64 = 10 => |_, _| {};
        /// The admin listener: `/metrics`, `/healthz`, `/api/v1/stats` (docs/OBSERVABILITY.md).
        http: HttpSection = HttpSection::default() => |v, c| v.apply(c);
    }
}

table! {
    /// The `[mqtt_sn]` table (docs/MQTT-SN.md).
    pub struct MqttSnSection from engine {
        /// Predefined topic ids (1 to 65534) and their topic names, the same for every client:
        /// `[mqtt_sn.predefined_topics]` with lines like `1 = "factory/line1/temp"`.
        // Checked by `FileConfig::parse`; a config built in code with a bad entry leaves it out.
        predefined_topics: BTreeMap<String, String> = BTreeMap::new()
            => |v, c| c.sn_predefined_topics = predefined_topics(v).unwrap_or_default();
        /// GwId in ADVERTISE and GWINFO.
        gateway_id: u8 = engine.sn_gateway_id => |v, c| c.sn_gateway_id = *v;
        /// Tretry: milliseconds before an unacknowledged message is sent again.
        retry_interval_ms: u64 = millis(engine.sn_retry_interval)
            => |v, c| c.sn_retry_interval = Duration::from_millis(*v);
        /// Nretry: retransmissions before a client is considered lost.
        max_retries: u8 = engine.sn_max_retries => |v, c| c.sn_max_retries = *v;
        /// T_ADV in seconds: ADVERTISE this often to `broadcast`; absent: never.
        advertise_interval_s: Option<u64> = engine.sn_advertise_interval.map(|d| d.as_secs())
            => |v, c| c.sn_advertise_interval = v.map(Duration::from_secs);
        /// Where ADVERTISE goes, `host:port` (a broadcast address of the clients' network).
        broadcast: Option<SocketAddr> = None => |_, _| {};
        /// Topic ids one client may register (both directions).
        max_registered_topics: usize = engine.sn_max_registered_topics
            => |v, c| c.sn_max_registered_topics = *v;
    }
}

table! {
    /// The `[backlog]` table. Its byte bound defaults to 1 MiB, so that setting
    /// `max_messages_per_topic` alone turns a bounded backlog on (the engine's own default has
    /// no backlog and no bound).
    pub struct BacklogSection from engine {
        /// Messages kept per topic that has no subscriber; 0 turns the backlog off.
        max_messages_per_topic: usize = engine.backlog.max_messages_per_topic
            => |v, c| c.backlog = BacklogConfig::new(*v, c.backlog.max_bytes_per_topic);
        /// Payload bytes kept per topic.
        max_bytes_per_topic: usize = 1024 * 1024
            => |v, c| c.backlog = BacklogConfig::new(c.backlog.max_messages_per_topic, *v);
    }
}

/// `[mqtt_sn.predefined_topics]` as ids and topic names, checked: ids 1 to 65534 (§5.3.11:
/// 0x0000 and 0xFFFF are reserved), names valid topic names.
fn predefined_topics(table: &BTreeMap<String, String>) -> Result<BTreeMap<u16, String>, String> {
    let mut topics = BTreeMap::new();
    for (id, name) in table {
        let number = id.parse::<u16>().ok().filter(|n| (1..=0xFFFE).contains(n));
        let Some(number) = number else {
            return Err(format!(
                "`mqtt_sn.predefined_topics`: `{id}` is not a topic id (1 to 65534)"
            ));
        };
        if name.is_empty() || name.contains(['+', '#', '\0']) {
            return Err(format!(
                "`mqtt_sn.predefined_topics`: `{name}` (id {id}) is not a topic name"
            ));
        }
        topics.insert(number, name.clone());
    }
    Ok(topics)
}

impl FileConfig {
    /// Parses a configuration file's text.
    ///
    /// # Errors
    /// The text is not TOML, has an unknown key, or a value of the wrong type or out of range;
    /// the error says where.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text).map_err(|e| ConfigError::from_toml(text, &e))?;
        if config.listeners.is_empty() {
            let line = text
                .lines()
                .position(|l| l.trim_start().starts_with("listeners"))
                .map_or(1, |i| i + 1);
            return Err(ConfigError {
                line,
                column: 1,
                message: "`listeners` is empty: give at least one mqtt://host:port".into(),
            });
        }
        if let Err(message) = predefined_topics(&config.mqtt_sn.predefined_topics) {
            let line = text
                .lines()
                .position(|l| l.trim_start().starts_with("[mqtt_sn.predefined_topics]"))
                .map_or(1, |i| i + 1);
            return Err(ConfigError { line, column: 1, message });
        }
        if !config.auth.scram.is_empty() && config.auth.password_file.is_none() {
            let line =
                text.lines().position(|l| l.trim_start().starts_with("scram")).map_or(1, |i| i + 1);
            let message = "`auth.scram` takes its credentials from `auth.password_file`: set it \
                           too"
            .into();
            return Err(ConfigError { line, column: 1, message });
        }
        if let Err(message) = config.http.check() {
            let line = text
                .lines()
                .position(|l| l.trim_start().starts_with("[http]"))
                .map_or(1, |i| i + 1);
            return Err(ConfigError { line, column: 1, message });
        }
        Ok(config)
    }

    /// The engine configuration these settings describe (shard 0 of 1: the runtime sets the
    /// shard fields).
    #[must_use]
    pub fn engine_config(&self) -> Config {
        let mut config = Config::default();
        self.apply(&mut config);
        config
    }

    /// The TCP (MQTT) listener addresses.
    #[must_use]
    pub fn mqtt_addrs(&self) -> Vec<SocketAddr> {
        self.addrs_of(Scheme::Mqtt)
    }

    /// The UDP (MQTT-SN) listener addresses.
    #[must_use]
    pub fn sn_addrs(&self) -> Vec<SocketAddr> {
        self.addrs_of(Scheme::MqttSn)
    }

    /// The `[tls]` files, loaded, when a listener needs them (`mqtts://`, `wss://`): what
    /// [`FileConfig::broker_config_with`] gives the listeners and a SIGHUP reloads
    /// ([`TlsConfig::reload`]).
    ///
    /// # Errors
    /// As [`FileConfig::listener_layers`].
    pub fn tls_config(&self) -> Result<Option<TlsConfig>, TlsSettingsError> {
        if !self.listeners.iter().any(|l| l.layer.is_some_and(ListenLayer::is_tls)) {
            return Ok(None);
        }
        self.tls.settings()?.load().map(Some)
    }

    /// The byte-stream layers of the MQTT listeners that have some (`mqtts://`, `ws://`,
    /// `wss://`, `mqtt+identity://`). The TLS listeners share `tls` when given (so that
    /// reloading it reaches them all), else the `[tls]` files are read here.
    ///
    /// # Errors
    /// A `mqtts://` or `wss://` listener without `tls.cert_file` and `tls.key_file`, or a
    /// `[tls]` file that cannot be used (the error names it).
    pub fn listener_layers(
        &self,
        tls: Option<&TlsConfig>,
    ) -> Result<Vec<(SocketAddr, musqratt_kit::Layers)>, TlsSettingsError> {
        let mut tls = tls.cloned();
        let mut layers = Vec::new();
        for listener in &self.listeners {
            let Some(kind) = listener.layer else { continue };
            let below = if kind.is_tls() {
                if tls.is_none() {
                    tls = Some(self.tls.settings()?.load()?);
                }
                tls.clone().map(musqratt_kit::Layers::tls)
            } else {
                None
            };
            let layer = match (kind, below) {
                (ListenLayer::Identity, _) => musqratt_kit::Layers::identity(),
                (ListenLayer::Ws, _) => {
                    musqratt_kit::Layers::ws(self.websocket.settings(listener.path.as_deref()))
                }
                (ListenLayer::Wss, Some(tls)) => {
                    tls.with_ws(self.websocket.settings(listener.path.as_deref()))
                }
                (_, Some(tls)) => tls,
                (_, None) => continue,
            };
            layers.push((listener.addr, layer));
        }
        Ok(layers)
    }

    fn addrs_of(&self, scheme: Scheme) -> Vec<SocketAddr> {
        self.listeners.iter().filter(|l| l.scheme == scheme).map(|l| l.addr).collect()
    }

    /// The runtime configuration: listeners (with their layers), threads and the engine's
    /// settings.
    ///
    /// # Errors
    /// The `[tls]` files of a `mqtts://` listener cannot be used.
    #[cfg(feature = "tokio")]
    pub fn broker_config(&self) -> Result<musqratt_tokio::BrokerConfig, TlsSettingsError> {
        self.broker_config_with(None)
    }

    /// [`FileConfig::broker_config`] with the `[tls]` files already loaded
    /// ([`FileConfig::tls_config`]), which the broker keeps to reload them.
    ///
    /// # Errors
    /// As [`FileConfig::broker_config`].
    #[cfg(feature = "tokio")]
    pub fn broker_config_with(
        &self,
        tls: Option<&TlsConfig>,
    ) -> Result<musqratt_tokio::BrokerConfig, TlsSettingsError> {
        let mut config = musqratt_tokio::BrokerConfig::default();
        config.listeners = self.mqtt_addrs();
        config.listener_layers = self.listener_layers(tls)?;
        config.sn_listeners = self.sn_addrs();
        config.sn_broadcast = self.mqtt_sn.broadcast;
        config.threads = self.threads;
        config.engine = self.engine_config();
        config.hibernate_after =
            (self.hibernate_after_ms > 0).then(|| Duration::from_millis(self.hibernate_after_ms));
        config.persistence = self.persistence.settings();
        config.sys_interval =
            (self.sys_interval_s > 0).then(|| Duration::from_secs(self.sys_interval_s));
        Ok(config)
    }
}

/// A configuration that cannot be used, and where in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub column: usize,
    /// What is wrong, naming the key.
    pub message: String,
}

impl ConfigError {
    fn from_toml(text: &str, error: &toml::de::Error) -> Self {
        let (line, column) = match error.span() {
            Some(span) => {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                (line, column)
            }
            None => (1, 1),
        };
        let mut message = error.message().trim().to_owned();
        // Name the key when the message does not: toml reports a bad value by the value's span.
        match key_on_line(text, line) {
            Some(key) if !message.contains(&key) => message = format!("`{key}`: {message}"),
            _ => {}
        }
        Self { line, column, message }
    }
}

/// The key assigned on a line (`key = value`), if the line is one.
fn key_on_line(text: &str, line: usize) -> Option<String> {
    let (key, _) = text.lines().nth(line - 1)?.split_once('=')?;
    let key = key.trim().trim_matches('"');
    (!key.is_empty() && !key.starts_with('[')).then(|| key.to_owned())
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}: {}", self.line, self.column, self.message)
    }
}

impl core::error::Error for ConfigError {}

/// The highest QoS the broker accepts: `0`, `1` or `2` in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "u8")]
pub struct MaximumQos(pub QoS);

impl TryFrom<u8> for MaximumQos {
    type Error = String;

    fn try_from(value: u8) -> Result<Self, String> {
        QoS::from_bits(value)
            .map(Self)
            .ok_or_else(|| format!("maximum_qos must be 0, 1 or 2, not {value}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The file's default hibernation is the runtime's, and 0 turns it off.
    #[cfg(feature = "tokio")]
    #[test]
    fn hibernation_default_and_off() {
        let runtime = musqratt_tokio::BrokerConfig::default();
        assert_eq!(
            FileConfig::default().broker_config().unwrap().hibernate_after,
            runtime.hibernate_after
        );
        let off = FileConfig::parse("hibernate_after_ms = 0\n").unwrap();
        assert_eq!(off.broker_config().unwrap().hibernate_after, None);
    }

    #[test]
    fn urls() {
        let url: ListenUrl = "mqtt://127.0.0.1:1884".parse().unwrap();
        assert_eq!(url.addr, SocketAddr::from(([127, 0, 0, 1], 1884)));
        let url: ListenUrl = "mqtt://[::1]:1885".parse().unwrap();
        assert_eq!(url.addr.port(), 1885);
        let url: ListenUrl = "mqtt://[::1]".parse().unwrap();
        assert_eq!(url.addr.port(), 1883);
        let url: ListenUrl = "mqtt://0.0.0.0".parse().unwrap();
        assert_eq!(url.addr.port(), 1883);
        let error = "mqttx://0.0.0.0:8883".parse::<ListenUrl>().unwrap_err();
        assert!(error.contains("mqtt-sn://") && error.contains("mqtts://"), "{error}");
        let url: ListenUrl = "mqtts://127.0.0.1".parse().unwrap();
        assert_eq!((url.addr.port(), url.layer), (8883, Some(ListenLayer::Tls)));
        let error =
            FileConfig::parse("listeners = [\"mqtts://127.0.0.1\"]\n[tls]\nca_file = \"a\"\n")
                .unwrap()
                .listener_layers(None)
                .unwrap_err();
        assert!(error.to_string().contains("tls.cert_file and tls.key_file"), "{error}");
        // The [tls] files are read only for a mqtts:// listener (a SIGHUP then reloads them).
        let plain = FileConfig::parse("[tls]\ncert_file = \"/nowhere\"\n").unwrap();
        assert!(plain.tls_config().unwrap().is_none());
        assert!("0.0.0.0:1883".parse::<ListenUrl>().is_err());
        let url: ListenUrl = "mqtt-sn://127.0.0.1".parse().unwrap();
        assert_eq!((url.scheme, url.addr.port()), (Scheme::MqttSn, 1884));
        assert_eq!("mqtt://127.0.0.1:1".parse::<ListenUrl>().map(|u| u.scheme), Ok(Scheme::Mqtt));
        let url: ListenUrl = "mqtt+identity://127.0.0.1:1890".parse().unwrap();
        assert_eq!((url.scheme, url.layer), (Scheme::Mqtt, Some(ListenLayer::Identity)));
        let config = FileConfig::parse(
            "listeners = [\"mqtt://127.0.0.1:1883\", \"mqtt+identity://127.0.0.1:1890\"]\n",
        )
        .unwrap();
        assert_eq!(config.mqtt_addrs().len(), 2);
        let layers = config.listener_layers(None).unwrap();
        assert_eq!(layers.len(), 1);
        assert_eq!((layers[0].0.port(), layers[0].1.name()), (1890, "identity"));
    }

    #[test]
    fn mqtt_sn_section() {
        let text = "listeners = [\"mqtt://127.0.0.1:1883\", \"mqtt-sn://127.0.0.1:1884\"]\n\
                    [mqtt_sn]\ngateway_id = 7\nretry_interval_ms = 500\n\
                    [mqtt_sn.predefined_topics]\n1 = \"factory/temp\"\n65534 = \"x\"\n";
        let config = FileConfig::parse(text).unwrap();
        assert_eq!(config.mqtt_addrs(), [SocketAddr::from(([127, 0, 0, 1], 1883))]);
        assert_eq!(config.sn_addrs(), [SocketAddr::from(([127, 0, 0, 1], 1884))]);
        let engine = config.engine_config();
        assert_eq!(engine.sn_gateway_id, 7);
        assert_eq!(engine.sn_retry_interval, Duration::from_millis(500));
        assert_eq!(engine.sn_predefined_topics.get(&1).map(String::as_str), Some("factory/temp"));
        // §5.3.11: ids 0x0000 and 0xFFFF are reserved.
        for bad in ["0 = \"a\"", "65535 = \"a\"", "x = \"a\"", "2 = \"a/#\""] {
            let text = format!("[mqtt_sn.predefined_topics]\n{bad}\n");
            let error = FileConfig::parse(&text).unwrap_err();
            assert_eq!(error.line, 1, "{bad}: {error}");
            assert!(error.message.contains("mqtt_sn.predefined_topics"), "{error}");
        }
    }

    #[test]
    fn defaults_are_the_engines() {
        let config = FileConfig::parse("").unwrap();
        assert_eq!(config, FileConfig::default());
        let mut engine = Config::default();
        engine.backlog = BacklogConfig::new(0, 1024 * 1024);
        assert_eq!(config.engine_config(), engine);
    }

    /// Every engine key of the file reaches the engine: a file changing them all gives the
    /// configuration written out here field by field (a key whose `apply` forgot its field, or
    /// set another, fails).
    #[test]
    fn every_key_reaches_the_engine() {
        let text = "max_packet_size = 1000\nreceive_maximum = 7\ntopic_alias_maximum = 3\n\
                    maximum_qos = 1\nretain_available = false\n\
                    wildcard_subscription_available = false\n\
                    subscription_identifiers_available = false\n\
                    shared_subscription_available = false\nserver_keep_alive = 60\n\
                    max_session_expiry = 100\nv3_session_expiry = 50\nmax_queued_messages = 9\n\
                    max_queued_bytes = 999\nmax_unwritten_bytes = 888\n\
                    connect_timeout_ms = 1500\nserver_reference = \"elsewhere:1883\"\n\
                    strict_v31_client_id = true\n\
                    [backlog]\nmax_messages_per_topic = 5\nmax_bytes_per_topic = 4096\n\
                    [mqtt_sn]\ngateway_id = 9\nretry_interval_ms = 250\nmax_retries = 2\n\
                    advertise_interval_s = 60\nmax_registered_topics = 10\n\
                    [mqtt_sn.predefined_topics]\n3 = \"a/b\"\n";
        let mut want = Config::default();
        want.max_packet_size = 1000;
        want.receive_maximum = 7;
        want.topic_alias_maximum = 3;
        want.maximum_qos = QoS::AtLeastOnce;
        want.retain_available = false;
        want.wildcard_subscription_available = false;
        want.subscription_identifiers_available = false;
        want.shared_subscription_available = false;
        want.server_keep_alive = Some(60);
        want.max_session_expiry = 100;
        want.v3_session_expiry = 50;
        want.max_queued_messages = 9;
        want.max_queued_bytes = 999;
        want.max_unwritten_bytes = 888;
        want.connect_timeout = Duration::from_millis(1500);
        want.server_reference = Some("elsewhere:1883".into());
        want.strict_v31_client_id = true;
        want.backlog = BacklogConfig::new(5, 4096);
        want.sn_gateway_id = 9;
        want.sn_retry_interval = Duration::from_millis(250);
        want.sn_max_retries = 2;
        want.sn_advertise_interval = Some(Duration::from_secs(60));
        want.sn_max_registered_topics = 10;
        want.sn_predefined_topics.insert(3, "a/b".into());
        assert_eq!(FileConfig::parse(text).unwrap().engine_config(), want);
    }

    #[test]
    fn errors_name_key_and_line() {
        let error = FileConfig::parse("threads = 2\nmaximum_qos = 3\n").unwrap_err();
        assert_eq!(error.line, 2);
        assert!(error.message.contains("maximum_qos"), "{error}");
        let error = FileConfig::parse("threads = 2\n\nmax_packet_sise = 10\n").unwrap_err();
        assert_eq!(error.line, 3);
        assert!(error.message.contains("max_packet_sise"), "{error}");
        // Engine settings that are not file keys stay unknown keys.
        for key in ["seed = 1", "shard_count = 2", "authenticate = true"] {
            let error = FileConfig::parse(key).unwrap_err();
            assert!(error.message.contains("unknown field"), "{key}: {error}");
        }
        let error = FileConfig::parse("receive_maximum = 0\n").unwrap_err();
        assert!(error.message.contains("receive_maximum"), "{error}");
        let error = FileConfig::parse("[backlog]\nmax_messages = 1\n").unwrap_err();
        assert_eq!(error.line, 2);
        let error = FileConfig::parse("listeners = [\"http://a:1\"]").unwrap_err();
        assert!(error.message.contains("unsupported scheme `http://`"), "{error}");
        let error = FileConfig::parse("\nlisteners = []").unwrap_err();
        assert_eq!(error.line, 2);
    }
}
