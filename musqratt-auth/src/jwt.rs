//! JSON Web Tokens in the CONNECT password (issue 14 item 4): the `[auth.jwt]` source.
//!
//! A client proves who it is with a token some identity service signed (RFC 7519), sent as its
//! MQTT password, as EMQX and mosquitto-go-auth accept them. The broker checks:
//!
//! - the signature: HS256/HS384/HS512 with a shared `secret`, or RS256/384/512, ES256/384 or
//!   EdDSA with the PEM public key in `public_key_file` (only the algorithms of the configured
//!   key: a token signed with HS256 cannot pass with the RSA public key as its "secret", the
//!   classic algorithm-confusion attack);
//! - `exp` and `nbf` when the token has them (RFC 7519 §4.1.4, §4.1.5), allowing `leeway`
//!   seconds of clock difference between the issuer and the broker;
//! - `verify_claims`: claims that must have a given value, `%u` standing for the CONNECT user
//!   name and `%c` for the client identifier (`sub = "%u"`: the token is this user's).
//!
//! Which passwords are tokens: a password that has the shape of a compact JWS (three parts,
//! exactly two dots, UTF-8) is this source's to decide; any other password, or none, or an
//! enhanced authentication, has no opinion here and goes to the next source. So a password file
//! and tokens serve side by side; a token that does not verify is refused at once (0x86 Bad user
//! name or password, 3.1.1 return code 4) rather than handed on: a source after this one must
//! not let a forged or expired token in.
//!
//! What the client may do: the token's `acl` claim, in EMQX's rule format
//! `[{"permission": "allow"|"deny", "action": "publish"|"subscribe"|"all", "topic": FILTER}]`,
//! becomes its [`Acl`] (the first rule that applies decides, and what no rule allows is refused,
//! as in an ACL file; EMQX would instead pass an unmatched action to its next authorizer: end
//! the list with `{"permission": "allow", "action": "all", "topic": "#"}` for that). A rule this
//! source does not understand (another key such as EMQX's `qos`, an unknown action, an invalid
//! filter) refuses the client (0x87 Not authorized) rather than granting more than meant.
//! Without an `acl` claim the ACL file's rules apply, if there is one.
//!
//! How long: a token with `exp` lets its client in until `exp` + `leeway`; then the engine
//! closes the connection (5.0: DISCONNECT 0xA0 Maximum connect time; see
//! [`musqratt_engine::AuthDecision::AcceptFor`]).
//!
//! SIGHUP re-reads `public_key_file` ([`JwtSource::reload`]): an identity service rotating its
//! signing key is followed without a restart. New tokens are checked against the new key at
//! once; connected clients keep their connection until their token's `exp`, as after a
//! password-file reload. A file that no longer holds a usable key keeps the old key, and the
//! error is logged. A `secret` lives in the configuration file, which SIGHUP does not re-read.
//!
//! Verification runs on the shard's thread that asks: an HMAC takes microseconds, an RSA or
//! ECDSA verification tens to hundreds of microseconds in release builds, far below a
//! `$7$` password hash, which is why those, not these, go to the verifier threads.

use core::time::Duration;
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::UNIX_EPOCH;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use musqratt_engine::AuthRequest;
use musqratt_engine::proto::mqtt::ReasonCode;
use serde_json::{Map, Value};

use crate::chain::{Source, Verdict, VerdictReply};

/// Seconds of clock difference allowed by default when checking `exp` and `nbf`: enough for
/// machines kept in time by NTP, short enough that an expired token is not honoured for long.
pub const DEFAULT_LEEWAY_S: u64 = 2;

/// The largest `leeway_s` accepted: a day. More would not be a clock difference but a way to
/// honour expired tokens, and the token library computes `now - leeway` unchecked.
pub const MAX_LEEWAY_S: u64 = 86_400;

/// The `[auth.jwt]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtConfig {
    /// HMAC secret (HS256, HS384, HS512), as UTF-8 bytes.
    pub secret: Option<String>,
    /// PEM public key (RSA: RS256/384/512; EC: ES256/384; Ed25519: EdDSA).
    pub public_key_file: Option<PathBuf>,
    /// Seconds of clock difference allowed for `exp` and `nbf`.
    pub leeway_s: u64,
    /// Claims that must have a value: `%u` the user name, `%c` the client identifier, anything
    /// else literally.
    pub verify_claims: BTreeMap<String, String>,
}

impl Default for JwtConfig {
    fn default() -> Self {
        Self {
            secret: None,
            public_key_file: None,
            leeway_s: DEFAULT_LEEWAY_S,
            verify_claims: BTreeMap::new(),
        }
    }
}

/// Why the JWT source could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JwtError {
    /// Neither or both keys given.
    #[error("[auth.jwt] needs exactly one of `secret` and `public_key_file`")]
    Key,
    /// `leeway_s` above [`MAX_LEEWAY_S`].
    #[error("[auth.jwt] leeway_s = {0}: at most {MAX_LEEWAY_S} seconds")]
    Leeway(u64),
    /// The public key file cannot be read or is not a PEM public key.
    #[error("[auth.jwt] public key file {path}: {reason}")]
    PublicKey {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

/// What a verified claim must equal.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expected {
    /// `%u`: the CONNECT user name (a client without one never matches).
    UserName,
    /// `%c`: the client identifier.
    ClientId,
    /// This text.
    Literal(String),
}

/// A key and the validation of its algorithms: what a reload replaces, whole.
struct Key {
    key: DecodingKey,
    validation: Validation,
}

/// The JWT [`Source`].
pub struct JwtSource {
    /// Swapped whole by [`JwtSource::reload`]; a verification clones the `Arc` and never holds
    /// the lock while it verifies.
    key: RwLock<Arc<Key>>,
    public_key_file: Option<PathBuf>,
    leeway: Duration,
    verify_claims: Vec<(String, Expected)>,
}

impl core::fmt::Debug for JwtSource {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Never the key: a secret must not reach a log.
        f.debug_struct("JwtSource")
            .field("algorithms", &self.key().validation.algorithms)
            .field("leeway", &self.leeway)
            .field("verify_claims", &self.verify_claims)
            .finish_non_exhaustive()
    }
}

impl JwtSource {
    /// The source `config` describes, its key loaded.
    ///
    /// # Errors
    /// Not exactly one key, a leeway above [`MAX_LEEWAY_S`], or a public key file that cannot
    /// be read or parsed.
    pub fn new(config: &JwtConfig) -> Result<Self, JwtError> {
        if config.leeway_s > MAX_LEEWAY_S {
            return Err(JwtError::Leeway(config.leeway_s));
        }
        let (key, algorithms) = match (&config.secret, &config.public_key_file) {
            (Some(secret), None) => (
                DecodingKey::from_secret(secret.as_bytes()),
                vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512],
            ),
            (None, Some(path)) => public_key(path)?,
            _ => return Err(JwtError::Key),
        };
        let key = Key::new(key, algorithms, config.leeway_s);
        let verify_claims = config
            .verify_claims
            .iter()
            .map(|(claim, value)| {
                let expected = match value.as_str() {
                    "%u" => Expected::UserName,
                    "%c" => Expected::ClientId,
                    literal => Expected::Literal(literal.to_owned()),
                };
                (claim.clone(), expected)
            })
            .collect();
        Ok(Self {
            key: RwLock::new(Arc::new(key)),
            public_key_file: config.public_key_file.clone(),
            leeway: Duration::from_secs(config.leeway_s),
            verify_claims,
        })
    }

    /// Re-reads `public_key_file` (SIGHUP): tokens are checked against the key it holds now.
    /// `Ok(false)` for a `secret`, which has no file to re-read.
    ///
    /// # Errors
    /// The file cannot be read or holds no usable public key: the key in use stays.
    pub fn reload(&self) -> Result<bool, JwtError> {
        let Some(path) = &self.public_key_file else { return Ok(false) };
        let (key, algorithms) = public_key(path)?;
        let leeway = self.leeway.as_secs();
        *self.key.write().unwrap_or_else(PoisonError::into_inner) =
            Arc::new(Key::new(key, algorithms, leeway));
        Ok(true)
    }

    fn key(&self) -> Arc<Key> {
        Arc::clone(&self.key.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The verdict on `password` presented by `request`'s client: [`Verdict::Ignore`] when it
    /// is not shaped like a token.
    #[must_use]
    pub fn verdict(&self, request: &AuthRequest) -> Verdict {
        let Some(token) = request
            .password
            .as_deref()
            .filter(|_| request.method.is_none())
            .and_then(|p| core::str::from_utf8(p).ok())
            .filter(|p| p.bytes().filter(|b| *b == b'.').count() == 2)
        else {
            return Verdict::Ignore;
        };
        let key = self.key();
        let claims =
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &key.validation) {
                Ok(data) => data.claims,
                Err(error) => {
                    tracing::debug!(client_id = %request.client_id, %error, "JWT refused");
                    return Verdict::Deny(ReasonCode::BAD_USERNAME_OR_PASSWORD);
                }
            };
        for (claim, expected) in &self.verify_claims {
            let wanted = match expected {
                Expected::UserName => match &request.username {
                    Some(user) => &**user,
                    None => return Verdict::Deny(ReasonCode::BAD_USERNAME_OR_PASSWORD),
                },
                Expected::ClientId => &*request.client_id,
                Expected::Literal(text) => text.as_str(),
            };
            if !claim_equals(claims.get(claim), wanted) {
                tracing::debug!(client_id = %request.client_id, claim, "JWT claim mismatch");
                return Verdict::Deny(ReasonCode::BAD_USERNAME_OR_PASSWORD);
            }
        }
        let acl = match claims.get("acl").map(crate::emqx_rules::emqx_acl_from_value).transpose() {
            Ok(acl) => acl.map(Arc::new),
            Err(error) => {
                tracing::debug!(client_id = %request.client_id, error, "JWT acl claim refused");
                return Verdict::Deny(ReasonCode::NOT_AUTHORIZED);
            }
        };
        // `exp` is a NumericDate (RFC 7519 §2): seconds, possibly with a fraction. decode()
        // has checked it is not past (with the leeway).
        // Checked arithmetic: an `exp` beyond what the clock can hold (u64::MAX seconds) must
        // not panic a shard; it means "never" in practice.
        let until = claims
            .get("exp")
            .and_then(Value::as_f64)
            .and_then(|exp| Duration::try_from_secs_f64(exp).ok())
            .and_then(|exp| UNIX_EPOCH.checked_add(exp)?.checked_add(self.leeway));
        match until {
            Some(until) => Verdict::AllowUntil(acl, until),
            None => Verdict::Allow(acl),
        }
    }
}

impl Source for JwtSource {
    fn check(&self, request: &AuthRequest, reply: VerdictReply) {
        reply.answer(self.verdict(request));
    }
}

impl Key {
    fn new(key: DecodingKey, algorithms: Vec<Algorithm>, leeway_s: u64) -> Self {
        let mut validation = Validation::new(algorithms[0]);
        validation.algorithms = algorithms;
        validation.leeway = leeway_s;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        // `exp` is checked when present, not required: the issuer decides whether its tokens
        // expire. No audience is configured, so none is checked.
        validation.required_spec_claims = HashSet::new();
        validation.validate_aud = false;
        Self { key, validation }
    }
}

/// The decoding key in a PEM file and the algorithms it verifies.
fn public_key(path: &PathBuf) -> Result<(DecodingKey, Vec<Algorithm>), JwtError> {
    let error = |reason: String| JwtError::PublicKey { path: path.display().to_string(), reason };
    let pem = std::fs::read(path).map_err(|e| error(e.to_string()))?;
    if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
        return Ok((key, vec![Algorithm::RS256, Algorithm::RS384, Algorithm::RS512]));
    }
    if let Ok(key) = DecodingKey::from_ec_pem(&pem) {
        return Ok((key, vec![Algorithm::ES256, Algorithm::ES384]));
    }
    if let Ok(key) = DecodingKey::from_ed_pem(&pem) {
        return Ok((key, vec![Algorithm::EdDSA]));
    }
    Err(error("not a PEM RSA, EC or Ed25519 public key".into()))
}

/// Whether a claim has the value `wanted`: a string equal to it, or a number or boolean
/// written the same way (`"42"` for `42`).
fn claim_equals(claim: Option<&Value>, wanted: &str) -> bool {
    match claim {
        Some(Value::String(text)) => text == wanted,
        Some(value @ (Value::Number(_) | Value::Bool(_))) => *value.to_string() == *wanted,
        _ => false,
    }
}

#[cfg(test)]
mod tests;
