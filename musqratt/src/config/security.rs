//! The `[tls]` and `[auth]` tables of the configuration file (docs/CONFIG.md, docs/SECURITY.md):
//! who may connect and how the `mqtts://` listeners prove themselves, and what `FileConfig`
//! derives from them for the runtimes and the authenticator.

use core::time::Duration;
use std::collections::BTreeMap;
use std::path::PathBuf;

use musqratt_engine::Config;
use musqratt_kit::layer::tls::{TlsSettings, TlsSettingsError};
use musqratt_kit::layer::ws::WsSettings;
use serde::Deserialize;

use super::FileConfig;

table! {
    /// The `[tls]` table, for every `mqtts://` listener: read at start, where a file that
    /// cannot be used stops the broker naming it.
    pub struct TlsSection from engine {
        /// The server's certificate chain (PEM), its own certificate first.
        cert_file: Option<PathBuf> = None => |_, _| {};
        /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
        key_file: Option<PathBuf> = None => |_, _| {};
        /// CA certificates (PEM) that client certificates are verified against; absent: no
        /// client certificate is asked for.
        ca_file: Option<PathBuf> = None => |_, _| {};
        /// Refuse clients without a certificate signed by `ca_file` (mutual TLS).
        require_client_cert: bool = false => |_, _| {};
        /// The client certificate's common name is the client's user name.
        identity_as_username: bool = false => |_, _| {};
        /// ALPN protocol names offered; empty: no ALPN.
        alpn: Vec<String> = Vec::new() => |_, _| {};
    }
}

table! {
    /// The `[websocket]` table, for every `ws://` and `wss://` listener (MQTT 5.0 §6).
    pub struct WebsocketSection from engine {
        /// `Origin`s browser pages may connect from (e.g. `"https://app.example.com"`); empty:
        /// any. Requests without `Origin` (not from a browser) are not refused for it.
        allowed_origins: Vec<String> = Vec::new() => |_, _| {};
        /// The client's address reported to authentication and logs is the first address of
        /// `X-Forwarded-For`: only behind a reverse proxy that sets it (anyone can send one).
        trust_forwarded_for: bool = false => |_, _| {};
    }
}

table! {
    /// The `[auth]` table (docs/SECURITY.md): Mosquitto's password and ACL files, and whether
    /// clients without a user name may connect.
    pub struct AuthSection from engine {
        /// Clients without a user name are let in. Absent: only when every listener is a
        /// loopback address (Mosquitto 2.0's rule: a broker reachable from the network is not
        /// open to anyone unless it says so).
        allow_anonymous: Option<bool> = None => |_, _| {};
        /// A `mosquitto_passwd` password file (`musqratt passwd` makes one).
        password_file: Option<PathBuf> = None => |_, _| {};
        /// A Mosquitto ACL file: what each client may publish and subscribe to.
        acl_file: Option<PathBuf> = None => |_, _| {};
        /// MQTT 5.0 enhanced authentication methods served (§4.12): `"SCRAM-SHA-512"` and/or
        /// `"SCRAM-SHA-256"`, with the password file's entries as credentials.
        scram: Vec<ScramMethod> = Vec::new() => |_, _| {};
        /// JSON Web Tokens in the password (`[auth.jwt]`).
        jwt: JwtSection = JwtSection::default() => |v, c| v.apply(c);
        /// An HTTP authentication service, asked after the password file.
        http: HttpAuthSection = HttpAuthSection::default() => |v, c| v.apply(c);
        /// How password guessing is slowed down per client address.
        throttle: ThrottleSection = ThrottleSection::default() => |v, c| v.apply(c);
    }
}

table! {
    /// The `[auth.http]` table: an HTTP service speaking EMQX's protocol (docs/CONFIG.md).
    pub struct HttpAuthSection from engine {
        /// The service's `http://` URL; absent: no HTTP service.
        url: Option<String> = None => |_, _| {};
        /// Milliseconds one request may take before the client is refused (0x88).
        timeout_ms: u64 = 5000 => |_, _| {};
        /// Seconds an answer is reused for the same credentials and address; 0: never.
        cache_ttl_s: u64 = 0 => |_, _| {};
    }
}

table! {
    /// The `[auth.throttle]` table: failures per client address before its attempts wait.
    pub struct ThrottleSection from engine {
        /// Failures an address may have within `window_s` before its attempts are delayed.
        failures: u32 = 5 => |_, _| {};
        /// Seconds failures are remembered.
        window_s: u64 = 300 => |_, _| {};
        /// Delay of the first delayed attempt, doubled with each further failure.
        first_delay_ms: u64 = 250 => |_, _| {};
        /// Longest delay; 0 turns the throttle off.
        max_delay_ms: u64 = 10_000 => |_, _| {};
    }
}

table! {
    /// The `[auth.jwt]` table: JSON Web Tokens in the CONNECT password (`musqratt_auth::jwt`),
    /// asked after the password file. Off unless `secret` or `public_key_file` is set.
    pub struct JwtSection from engine {
        /// HMAC secret: HS256, HS384 and HS512 tokens.
        secret: Option<String> = None => |_, _| {};
        /// PEM public key: RS256/384/512 (RSA), ES256/384 (EC) or EdDSA (Ed25519) tokens.
        public_key_file: Option<PathBuf> = None => |_, _| {};
        /// Seconds of clock difference allowed when checking `exp` and `nbf`.
        leeway_s: u64 = musqratt_auth::jwt::DEFAULT_LEEWAY_S => |_, _| {};
        /// Claims that must have a value (`%u` the user name, `%c` the client identifier).
        verify_claims: BTreeMap<String, String> = BTreeMap::new() => |_, _| {};
    }
}

impl JwtSection {
    /// The JWT source's settings, when a key is configured.
    #[must_use]
    pub fn source_config(&self) -> Option<musqratt_auth::JwtConfig> {
        if self.secret.is_none() && self.public_key_file.is_none() {
            return None;
        }
        Some(musqratt_auth::JwtConfig {
            secret: self.secret.clone(),
            public_key_file: self.public_key_file.clone(),
            leeway_s: self.leeway_s,
            verify_claims: self.verify_claims.clone(),
        })
    }
}

/// A SCRAM method of `auth.scram`: `SCRAM-SHA-512` (credentials from `$7$` entries, a
/// PBKDF2-HMAC-SHA512 SaltedPassword, or `SCRAM-SHA-512$` RFC 5803 entries) or `SCRAM-SHA-256`
/// (credentials from `SCRAM-SHA-256$` RFC 5803 entries only: docs/SECURITY.md, SCRAM).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct ScramMethod(pub musqratt_auth::Mechanism);

impl TryFrom<String> for ScramMethod {
    type Error = String;

    fn try_from(name: String) -> Result<Self, String> {
        musqratt_auth::Mechanism::from_name(&name).map(Self).ok_or_else(|| {
            format!(
                "unknown SCRAM method `{name}`: \"SCRAM-SHA-512\" and \"SCRAM-SHA-256\" are \
                 served"
            )
        })
    }
}

impl FileConfig {
    /// Whether every listener (MQTT and MQTT-SN) is on a loopback address, so that only this
    /// machine can reach the broker.
    #[must_use]
    pub fn loopback_only(&self) -> bool {
        self.listeners.iter().all(|l| l.addr.ip().is_loopback())
    }

    /// Where the `[auth]` files are and whether anonymous clients are let in, with the default
    /// of `allow_anonymous` resolved (see [`AuthSection::allow_anonymous`]).
    #[must_use]
    pub fn file_auth_config(&self) -> musqratt_auth::FileAuthConfig {
        musqratt_auth::FileAuthConfig {
            allow_anonymous: self.auth.allow_anonymous.unwrap_or_else(|| self.loopback_only()),
            password_file: self.auth.password_file.clone(),
            acl_file: self.auth.acl_file.clone(),
        }
    }

    /// The `[auth.http]` service, if a URL is set.
    #[must_use]
    pub fn http_auth_config(&self) -> Option<musqratt_auth::HttpConfig> {
        let http = &self.auth.http;
        Some(musqratt_auth::HttpConfig {
            url: http.url.clone()?,
            timeout: Duration::from_millis(http.timeout_ms),
            cache_ttl: Duration::from_secs(http.cache_ttl_s),
        })
    }

    /// The `[auth.throttle]` settings.
    #[must_use]
    pub fn throttle_config(&self) -> musqratt_auth::ThrottleConfig {
        let throttle = &self.auth.throttle;
        musqratt_auth::ThrottleConfig {
            failures: throttle.failures,
            window: Duration::from_secs(throttle.window_s),
            first_delay: Duration::from_millis(throttle.first_delay_ms),
            max_delay: Duration::from_millis(throttle.max_delay_ms),
            ..musqratt_auth::ThrottleConfig::default()
        }
    }

    /// Whether clients are let in without any check: anonymous clients allowed and no file
    /// or service configured. Then the engine asks nothing at CONNECT (no cost at all).
    #[must_use]
    pub fn open_access(&self) -> bool {
        let auth = self.file_auth_config();
        auth.allow_anonymous
            && auth.password_file.is_none()
            && auth.acl_file.is_none()
            && self.auth.jwt.source_config().is_none()
            && self.auth.http.url.is_none()
    }

    /// What to say at start when the broker refuses anonymous clients only because a listener
    /// is not on loopback (no `[auth]` key chose it): one line saying what to set.
    #[must_use]
    pub fn anonymous_refused_notice(&self) -> Option<String> {
        if self.auth.allow_anonymous.is_some()
            || self.auth.password_file.is_some()
            || self.auth.jwt.source_config().is_some()
            || self.auth.http.url.is_some()
            || self.loopback_only()
        {
            return None;
        }
        // A `mqtts://` listener with identity_as_username names every client by its
        // certificate: nobody there is anonymous.
        let named = |l: &super::ListenUrl| {
            self.tls.identity_as_username && l.layer == Some(super::ListenLayer::Tls)
        };
        let exposed = self.listeners.iter().find(|l| !l.addr.ip().is_loopback() && !named(l))?;
        Some(format!(
            "clients without a user name are refused: listener {} is not a loopback address; \
             set auth.password_file (and auth.acl_file), or auth.allow_anonymous = true to let \
             anyone in (docs/SECURITY.md)",
            exposed.addr
        ))
    }
}

impl WebsocketSection {
    /// The layer's settings for a listener at `path` (`/mqtt` if none).
    pub(super) fn settings(&self, path: Option<&str>) -> WsSettings {
        let mut settings = WsSettings::with_path(path.unwrap_or("/mqtt"));
        settings.allowed_origins.clone_from(&self.allowed_origins);
        settings.trust_forwarded_for = self.trust_forwarded_for;
        settings
    }
}

impl TlsSection {
    /// The layer's settings; both files are needed.
    pub(super) fn settings(&self) -> Result<TlsSettings, TlsSettingsError> {
        let (Some(cert), Some(key)) = (&self.cert_file, &self.key_file) else {
            return Err(TlsSettingsError {
                file: PathBuf::from("[tls]"),
                message: "a mqtts:// or wss:// listener needs tls.cert_file and tls.key_file"
                    .into(),
            });
        };
        let mut settings = TlsSettings::new(cert, key);
        settings.ca_file.clone_from(&self.ca_file);
        settings.require_client_cert = self.require_client_cert;
        settings.identity_as_username = self.identity_as_username;
        settings.alpn.clone_from(&self.alpn);
        Ok(settings)
    }
}

#[cfg(test)]
mod auth_tests {
    use super::*;

    /// Issue 14 item 1, Mosquitto 2.0's rule: anonymous clients are let in by default only when
    /// no listener is reachable from another machine.
    #[test]
    fn anonymous_default_follows_the_listeners() {
        let local =
            FileConfig::parse("listeners = [\"mqtt://127.0.0.1:1883\", \"mqtt://[::1]:1883\"]")
                .unwrap();
        assert!(local.file_auth_config().allow_anonymous && local.open_access());
        assert_eq!(local.anonymous_refused_notice(), None);

        let exposed = FileConfig::parse(
            "listeners = [\"mqtt://127.0.0.1:1883\", \"mqtt-sn://0.0.0.0:1884\"]",
        )
        .unwrap();
        assert!(!exposed.file_auth_config().allow_anonymous && !exposed.open_access());
        let notice = exposed.anonymous_refused_notice().unwrap();
        assert!(notice.contains("0.0.0.0:1884") && notice.contains("auth.allow_anonymous"));

        let opened = FileConfig::parse(
            "listeners = [\"mqtt://0.0.0.0:1883\"]\n[auth]\nallow_anonymous = true\n",
        )
        .unwrap();
        assert!(opened.open_access() && opened.anonymous_refused_notice().is_none());

        let files = FileConfig::parse(
            "listeners = [\"mqtt://0.0.0.0:1883\"]\n[auth]\npassword_file = \"/p\"\n",
        )
        .unwrap();
        assert!(!files.open_access() && files.anonymous_refused_notice().is_none());
        assert!(FileConfig::parse("[auth]\nallow_anonymus = true\n").is_err(), "typos refused");
    }
    /// A `mqtts://` listener with `identity_as_username` names every client by its certificate:
    /// no notice about anonymous clients for it, still one for a plain listener beside it.
    #[test]
    fn certificate_names_are_not_anonymous() {
        let tls = "[tls]\nrequire_client_cert = true\nidentity_as_username = true\n";
        let named = FileConfig::parse(&format!("listeners = [\"mqtts://0.0.0.0:8883\"]\n{tls}"));
        assert_eq!(named.unwrap().anonymous_refused_notice(), None);
        let both = FileConfig::parse(&format!(
            "listeners = [\"mqtts://0.0.0.0:8883\", \"mqtt://0.0.0.0:1883\"]\n{tls}"
        ));
        let notice = both.unwrap().anonymous_refused_notice().unwrap();
        assert!(notice.contains("0.0.0.0:1883"), "{notice}");
        let unnamed = FileConfig::parse("listeners = [\"mqtts://0.0.0.0:8883\"]\n");
        assert!(unnamed.unwrap().anonymous_refused_notice().is_some());
    }

    /// `[auth.jwt]` is on only with a key, and then the engine must ask at every CONNECT even
    /// on loopback (a token is checked whether or not anonymous clients are let in).
    #[test]
    fn jwt_is_on_with_a_key() {
        let off = FileConfig::parse("[auth.jwt]\nleeway_s = 1\n").unwrap();
        assert!(off.auth.jwt.source_config().is_none() && off.open_access());
        let on = FileConfig::parse(
            "[auth.jwt]\nsecret = \"s\"\n[auth.jwt.verify_claims]\nsub = \"%u\"\n",
        )
        .unwrap();
        let jwt = on.auth.jwt.source_config().unwrap();
        assert_eq!(jwt.leeway_s, musqratt_auth::jwt::DEFAULT_LEEWAY_S);
        assert_eq!(jwt.verify_claims.get("sub").map(String::as_str), Some("%u"));
        assert!(!on.open_access(), "tokens are checked on loopback too");
        assert!(FileConfig::parse("[auth.jwt]\nsecrt = \"s\"\n").is_err(), "typos refused");
    }

    /// `auth.scram`: both SCRAM methods, and only with a password file to take credentials from.
    #[test]
    fn scram_methods() {
        use musqratt_auth::Mechanism::{Sha256, Sha512};
        let config = FileConfig::parse(
            "[auth]\npassword_file = \"/p\"\nscram = [\"SCRAM-SHA-512\", \"SCRAM-SHA-256\"]\n",
        )
        .unwrap();
        assert_eq!(config.auth.scram, [ScramMethod(Sha512), ScramMethod(Sha256)]);
        let error =
            FileConfig::parse("[auth]\npassword_file = \"/p\"\nscram = [\"PLAIN\"]").unwrap_err();
        assert!(error.message.contains("unknown SCRAM method `PLAIN`"), "{error}");
        let error = FileConfig::parse("[auth]\nscram = [\"SCRAM-SHA-256\"]\n").unwrap_err();
        assert!(error.line == 2 && error.message.contains("auth.password_file"), "{error}");
    }
}
