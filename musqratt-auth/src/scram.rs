//! SCRAM (RFC 5802, RFC 7677) as MQTT 5.0 enhanced authentication (§4.12): the client proves it
//! knows the password without sending it, and the server proves it knows the stored key.
//!
//! The exchange, method `SCRAM-SHA-512` or `SCRAM-SHA-256` (one implementation for both:
//! [`Mechanism`] picks the hash, RFC 7677 §3):
//!
//! 1. CONNECT, Authentication Data = client-first (`n,,n=user,r=<client nonce>`);
//! 2. AUTH 0x18 Continue authentication = server-first (`r=<nonce>,s=<salt>,i=<iterations>`):
//!    a [`Verdict::Continue`];
//! 3. AUTH 0x18 from the client = client-final (`c=biws,r=<nonce>,p=<ClientProof>`);
//! 4. the proof checked: CONNACK 0x00 with server-final (`v=<ServerSignature>`) as its
//!    Authentication Data ([`Verdict::AllowAs`]), or CONNACK 0x86 Bad user name or password.
//!
//! A re-authentication (AUTH 0x19 with a client-first, §4.12.1) runs the same steps and ends
//! with AUTH 0x00 carrying the server-final.
//!
//! Credentials: a `$7$` entry of the password file is PBKDF2-HMAC-SHA512(password, salt, i), which
//! is exactly SCRAM-SHA-512's SaltedPassword (RFC 5802 §3): ClientKey, StoredKey and ServerKey
//! follow from it, and its salt and iteration count are what server-first sends. A file made by
//! `mosquitto_passwd` serves SCRAM-SHA-512 as it is, with no second store. The price: RFC 5802
//! stores StoredKey and ServerKey so that a stolen store does not let anyone in, while a `$7$`
//! entry holds the SaltedPassword they come from, enough to pass SCRAM without the password
//! (docs/SECURITY.md says to guard the file accordingly).
//!
//! SCRAM-SHA-256 needs PBKDF2-HMAC-SHA256 of the password, which no `$7$` entry can give (the
//! hash is one-way). Its credentials are password-file entries in RFC 5803's form,
//! `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (`musqratt passwd -H
//! scram-sha-256`, or PostgreSQL's and scramp's output as it is): the same file, reloaded with
//! it, no second store to keep in step. Such an entry holds only StoredKey and ServerKey, as RFC
//! 5802 §3 intends, and also checks plain CONNECT passwords. Each entry serves its own mechanism
//! only: a `$7$` user asking SCRAM-SHA-256 fails like an unknown user.
//!
//! Unknown users (and users whose entry does not serve the mechanism asked) go through the same
//! exchange with a salt derived from their name under a secret of this process, and the
//! iteration count and salt length most entries serving that mechanism have, and fail at the
//! proof (0x86): RFC 5802 §9 recommends not telling an attacker which user names exist, and the
//! same name gets the same salt every time it is tried.
//!
//! Malformed messages (not the RFC 5802 §7 grammar, a channel binding this server does not
//! offer, a nonce or GS2 header that does not match, an authorization identity other than the
//! user) refuse with 0x87 Not authorized: they are the client's authentication failing, not an
//! MQTT protocol violation. No SASLprep is applied: the password bytes the `$7$` entry was made
//! from must be the ones the client derives from (the same for ASCII passwords).
//!
//! State between the steps (nonces, messages, keys) is kept per connection
//! ([`VerdictReply::conn`]), removed when the exchange ends, expires after the connect timeout,
//! and is bounded: beyond `max_exchanges` unfinished exchanges new ones are refused with 0x89
//! Server busy.

use core::time::Duration;
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use musqratt_engine::bytes::Bytes;
use musqratt_engine::proto::bytestring::ByteString;
use musqratt_engine::proto::mqtt::ReasonCode;
use musqratt_engine::{AuthRequest, ConnectionId};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

use crate::chain::{Source, Verdict, VerdictReply};
use crate::file_auth::SharedFiles;
use crate::password::{DEFAULT_ITERATIONS, StoredPassword};

/// Unfinished exchanges kept at most, by default.
pub const MAX_EXCHANGES: usize = 4096;
/// Salt bytes given to unknown users: the length of Mosquitto's salts.
const FAKE_SALT_LEN: usize = 12;
/// Random bytes of the server's part of the nonce (RFC 5802 §5.1: "at least ... sufficient").
const NONCE_BYTES: usize = 18;

/// A SCRAM mechanism: the hash function of the exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Mechanism {
    /// `SCRAM-SHA-256` (RFC 7677): credentials from `SCRAM-SHA-256$` (RFC 5803) entries.
    Sha256,
    /// `SCRAM-SHA-512`: credentials from `$7$` entries (and `SCRAM-SHA-512$` ones).
    Sha512,
}

impl Mechanism {
    /// The Authentication Method name (the SASL mechanism name, RFC 7677 §4).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "SCRAM-SHA-256",
            Self::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// The mechanism called `name`, if this module knows it.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Sha256, Self::Sha512].into_iter().find(|m| m.name() == name)
    }

    /// Bytes of this mechanism's hash, which are also those of its SaltedPassword, StoredKey
    /// and ServerKey (RFC 5802 §2.2: `Hi` gives one block of the HMAC's output).
    #[must_use]
    pub fn output_len(self) -> usize {
        match self {
            Self::Sha256 => 32,
            Self::Sha512 => 64,
        }
    }

    /// HMAC(key, data) (RFC 2104), with this mechanism's hash.
    pub(crate) fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => hmac_with::<Hmac<Sha256>>(key, data),
            Self::Sha512 => hmac_with::<Hmac<Sha512>>(key, data),
        }
    }

    /// H(data).
    pub(crate) fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => Sha256::digest(data).to_vec(),
            Self::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// SaltedPassword = Hi(password, salt, i), PBKDF2 with this mechanism's HMAC (RFC 5802 §3).
    #[must_use]
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut out = vec![0; self.output_len()];
        match self {
            Self::Sha256 => pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out),
            Self::Sha512 => pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out),
        }
        out
    }

    /// StoredKey = H(HMAC(SaltedPassword, "Client Key")) (RFC 5802 §3).
    #[must_use]
    pub fn stored_key(self, salted: &[u8]) -> Vec<u8> {
        self.hash(&self.hmac(salted, b"Client Key"))
    }

    /// ServerKey = HMAC(SaltedPassword, "Server Key") (RFC 5802 §3).
    #[must_use]
    pub fn server_key(self, salted: &[u8]) -> Vec<u8> {
        self.hmac(salted, b"Server Key")
    }
}

/// HMAC with any hash: the one body both mechanisms' HMACs run (`M` is `Hmac<Sha256>` or
/// `Hmac<Sha512>`).
fn hmac_with<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length: `new_from_slice` cannot fail.
    let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC keys of any length"));
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// What the server keeps of a user (RFC 5802 §3): enough to check a proof and to prove itself,
/// not enough to log in as the user.
#[derive(Clone)]
pub struct ServerKeys {
    salt: Vec<u8>,
    iterations: u32,
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
}

impl ServerKeys {
    /// The keys derived from a SaltedPassword made with `salt` and `iterations`.
    #[must_use]
    pub fn from_salted(mechanism: Mechanism, salted: &[u8], salt: &[u8], iterations: u32) -> Self {
        Self {
            salt: salt.to_vec(),
            iterations,
            stored_key: mechanism.stored_key(salted),
            server_key: mechanism.server_key(salted),
        }
    }

    /// The keys `stored` gives for `mechanism`, if it serves it: a `$7$` entry (a
    /// PBKDF2-HMAC-SHA512 SaltedPassword) serves SCRAM-SHA-512, an RFC 5803 entry
    /// (`SCRAM-SHA-256$...`) the mechanism it names; other forms hold no SCRAM credentials.
    #[must_use]
    pub fn from_stored(stored: &StoredPassword, mechanism: Mechanism) -> Option<Self> {
        match stored {
            StoredPassword::Pbkdf2Sha512 { iterations, salt, hash }
                if mechanism == Mechanism::Sha512 =>
            {
                Some(Self::from_salted(mechanism, hash, salt, *iterations))
            }
            StoredPassword::Scram(entry) if entry.mechanism == mechanism => Some(Self {
                salt: entry.salt.clone(),
                iterations: entry.iterations,
                stored_key: entry.stored_key.clone(),
                server_key: entry.server_key.clone(),
            }),
            _ => None,
        }
    }
}

/// The iteration count and salt length of `stored` if it serves `mechanism` (without deriving
/// its keys): what an unknown user's server-first must look like.
fn shape_for(stored: &StoredPassword, mechanism: Mechanism) -> Option<(u32, usize)> {
    match stored {
        StoredPassword::Pbkdf2Sha512 { iterations, salt, .. } if mechanism == Mechanism::Sha512 => {
            Some((*iterations, salt.len()))
        }
        StoredPassword::Scram(entry) if entry.mechanism == mechanism => {
            Some((entry.iterations, entry.salt.len()))
        }
        _ => None,
    }
}

/// One exchange between its first and its last step.
struct Exchange {
    started: Instant,
    client_id: ByteString,
    mechanism: Mechanism,
    username: String,
    /// `None` for an unknown user: the exchange runs and fails at the proof.
    keys: Option<ServerKeys>,
    /// The decoy keys' stand-in comparison target when `keys` is `None`.
    decoy_stored_key: Vec<u8>,
    server_key: Vec<u8>,
    gs2_header: String,
    nonce: String,
    client_first_bare: String,
    server_first: String,
}

/// Why a step failed, as the reason code of the CONNACK (or DISCONNECT) that ends it.
fn malformed(why: &str) -> ReasonCode {
    tracing::debug!("SCRAM: malformed message: {why}");
    ReasonCode::NOT_AUTHORIZED
}

/// The first step's parse (RFC 5802 §7, `client-first-message`).
struct ClientFirst {
    gs2_header: String,
    username: String,
    client_nonce: String,
    bare: String,
}

fn parse_client_first(text: &str) -> Result<ClientFirst, ReasonCode> {
    let mut parts = text.splitn(3, ',');
    let (Some(flag), Some(authzid), Some(bare)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(malformed("no GS2 header"));
    };
    match flag {
        // "y": the client could bind to the channel but thinks the server cannot; it cannot.
        "n" | "y" => {}
        _ => return Err(malformed("channel binding is not offered")),
    }
    let mut attributes = bare.split(',');
    let username = attributes
        .next()
        .and_then(|a| a.strip_prefix("n="))
        .ok_or_else(|| malformed("no user name (or a reserved m= extension)"))?;
    let username = decode_saslname(username).ok_or_else(|| malformed("bad user name"))?;
    let client_nonce = attributes
        .next()
        .and_then(|a| a.strip_prefix("r="))
        .filter(|n| !n.is_empty() && n.bytes().all(|b| (0x21..=0x7e).contains(&b)))
        .ok_or_else(|| malformed("no nonce"))?;
    if !authzid.is_empty() {
        // Acting as another user is not offered: only an authorization identity equal to the
        // authenticated one is accepted (RFC 5802 §5.1 leaves the policy to the server).
        let as_user = authzid.strip_prefix("a=").and_then(decode_saslname);
        if as_user.as_deref() != Some(&username) {
            return Err(malformed("authorization identity of another user"));
        }
    }
    Ok(ClientFirst {
        gs2_header: format!("{flag},{authzid},"),
        username,
        client_nonce: client_nonce.to_owned(),
        bare: bare.to_owned(),
    })
}

/// `saslname` (RFC 5802 §7): `,` and `=` written `=2C` and `=3D`, any other `=` invalid.
fn decode_saslname(text: &str) -> Option<String> {
    if text.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        match rest.get(at..at + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return None,
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// The unfinished exchanges, by connection.
#[derive(Default)]
struct Exchanges(HashMap<ConnectionId, Exchange>);

/// SCRAM as a [`Source`]: answers CONNECTs and AUTHs whose method is one of its mechanisms and
/// leaves every other request to the next source.
pub struct ScramSource {
    files: SharedFiles,
    mechanisms: Vec<Mechanism>,
    timeout: Duration,
    max_exchanges: usize,
    /// Key of the salts given to unknown users: random per process, so that they cannot be told
    /// from real ones, and constant for a name while the broker runs.
    secret: [u8; 32],
    exchanges: Mutex<Exchanges>,
}

impl ScramSource {
    /// A source serving `mechanisms` with the password file of `files`; an exchange not
    /// finished within `timeout` (the connect timeout) is forgotten, and at most
    /// `max_exchanges` are kept at once.
    #[must_use]
    pub fn new(
        files: SharedFiles,
        mechanisms: &[Mechanism],
        timeout: Duration,
        max_exchanges: usize,
    ) -> Self {
        let mut secret = [0; 32];
        crate::password::fill_random(&mut secret);
        Self {
            files,
            mechanisms: mechanisms.to_vec(),
            timeout,
            max_exchanges,
            secret,
            exchanges: Mutex::new(Exchanges::default()),
        }
    }

    /// How many exchanges are unfinished (for tests and metrics).
    #[must_use]
    pub fn pending(&self) -> usize {
        self.exchanges.lock().unwrap_or_else(PoisonError::into_inner).0.len()
    }

    /// The keys of `username` for `mechanism`, or `None` and a decoy salt and iteration count.
    fn keys_for(&self, mechanism: Mechanism, username: &str) -> (Option<ServerKeys>, ServerKeys) {
        let files = self.files.get();
        let passwords = files.passwords();
        let stored = passwords.and_then(|p| p.get(username));
        let keys = stored.and_then(|stored| ServerKeys::from_stored(stored, mechanism));
        let derived = mechanism.hmac(&self.secret, format!("salt\0{username}").as_bytes());
        // The decoy's iteration count and salt length: those most entries serving this
        // mechanism have (Mosquitto's salts are 12 bytes, scramp's and PostgreSQL's 16), so
        // that an unknown user's server-first looks like a known one's.
        let default = (DEFAULT_ITERATIONS, FAKE_SALT_LEN);
        let (iterations, salt_len) = passwords.map_or(default, |p| {
            let mut counts: HashMap<(u32, usize), usize> = HashMap::new();
            for (_, stored) in p.iter() {
                if let Some(shape) = shape_for(stored, mechanism) {
                    *counts.entry(shape).or_default() += 1;
                }
            }
            counts.into_iter().max_by_key(|&(shape, n)| (n, shape)).map_or(default, |(s, _)| s)
        });
        let salted = mechanism.hmac(&self.secret, format!("key\0{username}").as_bytes());
        let salt = &derived[..salt_len.min(derived.len())];
        let decoy = ServerKeys::from_salted(mechanism, &salted, salt, iterations);
        (keys, decoy)
    }

    fn first(
        &self,
        conn: ConnectionId,
        request: &AuthRequest,
        mechanism: Mechanism,
        text: &str,
    ) -> Verdict {
        let first = match parse_client_first(text) {
            Ok(first) => first,
            Err(code) => return self.end(conn, Verdict::Deny(code)),
        };
        if request.username.as_deref().is_some_and(|user| user != first.username) {
            // The CONNECT names one user and SCRAM proves another: which one would it be?
            return self.end(conn, Verdict::Deny(malformed("User Name is not the SCRAM user")));
        }
        let (keys, decoy) = self.keys_for(mechanism, &first.username);
        let mut random = [0; NONCE_BYTES];
        crate::password::fill_random(&mut random);
        let nonce = format!("{}{}", first.client_nonce, BASE64.encode(random));
        let shown = keys.as_ref().unwrap_or(&decoy);
        let server_first = server_first_message(&nonce, shown);
        let exchange = Exchange {
            started: Instant::now(),
            client_id: request.client_id.clone(),
            mechanism,
            server_key: shown.server_key.clone(),
            decoy_stored_key: decoy.stored_key,
            keys,
            username: first.username,
            gs2_header: first.gs2_header,
            nonce,
            client_first_bare: first.bare,
            server_first: server_first.clone(),
        };
        let mut exchanges = self.exchanges.lock().unwrap_or_else(PoisonError::into_inner);
        exchanges.0.remove(&conn);
        if exchanges.0.len() >= self.max_exchanges {
            let timeout = self.timeout;
            exchanges.0.retain(|_, e| e.started.elapsed() < timeout);
            if exchanges.0.len() >= self.max_exchanges {
                tracing::warn!(
                    "SCRAM: {} exchanges unfinished: refusing as busy",
                    exchanges.0.len()
                );
                return Verdict::Deny(ReasonCode::SERVER_BUSY);
            }
        }
        exchanges.0.insert(conn, exchange);
        Verdict::Continue(Bytes::from(server_first))
    }

    fn last(&self, conn: ConnectionId, request: &AuthRequest, text: &str) -> Verdict {
        let exchange =
            self.exchanges.lock().unwrap_or_else(PoisonError::into_inner).0.remove(&conn);
        let Some(exchange) = exchange
            .filter(|e| e.client_id == request.client_id && e.started.elapsed() < self.timeout)
        else {
            return Verdict::Deny(malformed("client-final without a client-first"));
        };
        match check_final(&exchange, text) {
            Ok(data) => {
                let username = ByteString::from(exchange.username);
                Verdict::AllowAs { username, data: Some(Bytes::from(data)) }
            }
            Err(code) => Verdict::Deny(code),
        }
    }

    /// Forgets the exchange of `conn` and gives `verdict`.
    fn end(&self, conn: ConnectionId, verdict: Verdict) -> Verdict {
        self.exchanges.lock().unwrap_or_else(PoisonError::into_inner).0.remove(&conn);
        verdict
    }
}

/// The server-first message (RFC 5802 §7): the combined nonce, the salt and iteration count.
fn server_first_message(nonce: &str, keys: &ServerKeys) -> String {
    format!("r={nonce},s={},i={}", BASE64.encode(&keys.salt), keys.iterations)
}

/// Checks the client-final message (RFC 5802 §3, §7): the server-final message if the proof is
/// right.
fn check_final(exchange: &Exchange, text: &str) -> Result<String, ReasonCode> {
    // The proof is the last attribute; what precedes it is part of the AuthMessage.
    let (without_proof, proof) =
        text.rsplit_once(",p=").ok_or_else(|| malformed("no proof in client-final"))?;
    let mut attributes = without_proof.split(',');
    let binding = attributes
        .next()
        .and_then(|a| a.strip_prefix("c="))
        .and_then(|c| BASE64.decode(c).ok())
        .ok_or_else(|| malformed("no channel binding"))?;
    if binding != exchange.gs2_header.as_bytes() {
        return Err(malformed("channel binding is not the GS2 header"));
    }
    if attributes.next().and_then(|a| a.strip_prefix("r=")) != Some(&exchange.nonce) {
        return Err(malformed("nonce is not the server's"));
    }
    let mechanism = exchange.mechanism;
    let proof = BASE64.decode(proof).map_err(|_| malformed("proof is not base64"))?;
    let auth_message =
        format!("{},{},{without_proof}", exchange.client_first_bare, exchange.server_first);
    let stored_key = exchange.keys.as_ref().map_or(&exchange.decoy_stored_key, |k| &k.stored_key);
    let signature = mechanism.hmac(stored_key, auth_message.as_bytes());
    if proof.len() != signature.len() {
        return Err(malformed("proof of the wrong length"));
    }
    let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
    // In constant time: how much of the key was right must not show in the answer's timing.
    let matched = bool::from(mechanism.hash(&client_key).ct_eq(stored_key));
    if !(matched && exchange.keys.is_some()) {
        tracing::debug!(user = exchange.username, "SCRAM: wrong proof");
        return Err(ReasonCode::BAD_USERNAME_OR_PASSWORD);
    }
    let server_signature = mechanism.hmac(&exchange.server_key, auth_message.as_bytes());
    Ok(format!("v={}", BASE64.encode(server_signature)))
}

impl Source for ScramSource {
    fn check(&self, request: &AuthRequest, reply: VerdictReply) {
        let Some(mechanism) = request
            .method
            .as_deref()
            .and_then(Mechanism::from_name)
            .filter(|m| self.mechanisms.contains(m))
        else {
            return reply.answer(Verdict::Ignore);
        };
        let Some(conn) = reply.conn() else {
            // Asked outside a broker's connection: no way to know the next step's exchange.
            return reply.answer(Verdict::Deny(ReasonCode::IMPLEMENTATION_SPECIFIC_ERROR));
        };
        let text = request.data.as_deref().and_then(|d| core::str::from_utf8(d).ok());
        let verdict = match text {
            None => self.end(conn, Verdict::Deny(malformed("no data, or not UTF-8"))),
            Some(text) if text.starts_with("c=") => self.last(conn, request, text),
            Some(text) => self.first(conn, request, mechanism, text),
        };
        reply.answer(verdict);
    }
}

#[cfg(test)]
mod tests;
