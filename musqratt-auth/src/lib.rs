//! Who may connect, and what they may publish and subscribe to, from the sources users of
//! Mosquitto already have: its password file (every hash form `mosquitto_passwd` writes) and
//! its ACL file.
//!
//! - [`password`]: one stored password (`$6$`, `$7$`, `$argon2id$`), checked in constant time.
//! - [`password_file`]: the `username:hash` file, read, edited (`musqratt passwd`) and written.
//! - [`acl_file`]: the ACL file, turned into each client's [`musqratt_engine::acl::Acl`].
//! - [`chain`]: sources tried in order (password file, HTTP, JWT, SCRAM), each allowing,
//!   denying or passing.
//! - [`jwt`]: JSON Web Tokens in the password (HMAC or public key, `exp`/`nbf`, required
//!   claims, an EMQX-style `acl` claim).
//! - [`scram`]: SCRAM-SHA-512 and SCRAM-SHA-256 enhanced authentication (MQTT 5.0 §4.12, RFC
//!   5802, RFC 7677) from the password file's `$7$` and RFC 5803 entries.
//! - [`http`]: an HTTP service speaking EMQX's protocol, asked from worker threads.
//! - [`throttle`]: password guessing slowed down per client address.
//! - [`file_auth`]: the runtime kit's [`musqratt_kit::Authenticator`] deciding from both, slow
//!   hashes checked off the shards.

pub mod acl_file;
pub mod chain;
mod emqx_rules;
pub mod file_auth;
pub mod http;
pub mod jwt;
pub mod password;
pub mod password_file;
pub mod scram;
pub mod throttle;

pub use acl_file::AclFile;
pub use chain::{Source, Verdict, VerdictReply};
pub use file_auth::{FileAuth, FileAuthConfig, Files, SharedFiles};
pub use http::{HttpConfig, HttpSource};
pub use jwt::{JwtConfig, JwtSource};
pub use password::StoredPassword;
pub use password_file::PasswordFile;
pub use scram::{Mechanism, ScramSource};
pub use throttle::ThrottleConfig;
