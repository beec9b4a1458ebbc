//! The `[http]` table (docs/CONFIG.md, docs/OBSERVABILITY.md): the admin listener serving
//! `/metrics`, `/healthz` and `/api/v1/stats`. Off unless `listen` is set.

use core::net::SocketAddr;

use musqratt_engine::Config;
use serde::Deserialize;

table! {
    /// The `[http]` table.
    pub struct HttpSection from engine {
        /// Where the admin listener listens, `host:port`; absent: no listener.
        listen: Option<SocketAddr> = None => |_, _| {};
        /// With `basic_auth_password`, the user every request must give (HTTP Basic, RFC 7617).
        basic_auth_user: Option<String> = None => |_, _| {};
        /// The password of `basic_auth_user`.
        basic_auth_password: Option<String> = None => |_, _| {};
    }
}

impl HttpSection {
    /// The user and password requests must carry, when both are set.
    #[must_use]
    pub fn basic_auth(&self) -> Option<(&str, &str)> {
        Some((self.basic_auth_user.as_deref()?, self.basic_auth_password.as_deref()?))
    }

    /// Refuses a listener other hosts can reach without credentials: the numbers (client
    /// counts, traffic) are the operator's, as with Mosquitto 2.0's rule for MQTT listeners
    /// beyond loopback. Also refuses half a credential.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.basic_auth_user.is_some() != self.basic_auth_password.is_some() {
            return Err("`http.basic_auth_user` and `http.basic_auth_password` go together".into());
        }
        match self.listen {
            Some(addr) if !addr.ip().is_loopback() && self.basic_auth().is_none() => Err(format!(
                "`http.listen = \"{addr}\"` is reachable from other hosts: set \
                 `http.basic_auth_user` and `http.basic_auth_password`, or listen on 127.0.0.1"
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::FileConfig;

    #[test]
    fn beyond_loopback_needs_credentials() {
        let local = FileConfig::parse("[http]\nlisten = \"127.0.0.1:9090\"\n").unwrap();
        assert_eq!(local.http.listen, Some(([127, 0, 0, 1], 9090).into()));
        assert_eq!(local.sys_interval_s, 10);
        let open = FileConfig::parse("[http]\nlisten = \"0.0.0.0:9090\"\n").unwrap_err();
        assert!(open.message.contains("basic_auth_user"), "{open:?}");
        assert_eq!(open.line, 1);
        let half = "[http]\nlisten = \"127.0.0.1:9090\"\nbasic_auth_user = \"a\"\n";
        assert!(FileConfig::parse(half).is_err());
        let guarded = "[http]\nlisten = \"[::]:9090\"\nbasic_auth_user = \"a\"\n\
                       basic_auth_password = \"b\"\n";
        assert_eq!(FileConfig::parse(guarded).unwrap().http.basic_auth(), Some(("a", "b")));
    }

    #[cfg(feature = "tokio")]
    #[test]
    fn sys_interval_reaches_the_runtime() {
        let off = FileConfig::parse("sys_interval_s = 0\n").unwrap();
        assert_eq!(off.broker_config().unwrap().sys_interval, None);
        let on = FileConfig::default().broker_config().unwrap();
        assert_eq!(on.sys_interval, Some(core::time::Duration::from_secs(10)));
    }
}
