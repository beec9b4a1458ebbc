//! One stored password in the forms `mosquitto_passwd` writes, so that a Mosquitto password file
//! works here unchanged and a file made by `musqratt passwd` works in Mosquitto.
//!
//! - `$6$<salt>$<hash>`: SHA-512 of the password followed by the salt, salt and hash in standard
//!   base64 (Mosquitto 1.4 to 1.6).
//! - `$7$<iterations>$<salt>$<hash>`: PBKDF2-HMAC-SHA512 with that many iterations, 64 bytes
//!   (Mosquitto 2.0's default). This is exactly SCRAM-SHA-512's `SaltedPassword` (RFC 5802 §3),
//!   so the same entry can serve enhanced authentication without a second store.
//! - `$argon2id$v=19$m=..,t=..,p=..$<salt>$<hash>`: Argon2id in the PHC string format
//!   (Mosquitto 2.1).
//! - `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (and `SCRAM-SHA-512$...`):
//!   RFC 5803's form of what a SCRAM server keeps (PostgreSQL's `pg_authid` uses it too). Not a
//!   Mosquitto form: it exists for SCRAM-SHA-256, which needs PBKDF2-HMAC-SHA256 of the
//!   password, something no `$7$` entry can give (docs/SECURITY.md). It serves plain CONNECT
//!   passwords as well (the password's StoredKey is recomputed and compared), and, unlike a
//!   `$7$` entry, a stolen one does not let anyone pass SCRAM (RFC 5802 §9).

use core::fmt;
use core::str::FromStr;

use argon2::password_hash::{PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;

use crate::scram::Mechanism;

/// Salt bytes of a new `$6$`/`$7$` entry: Mosquitto's length.
const SALT_LEN: usize = 12;
/// Bytes of a SHA-512 hash, which both `$6$` and `$7$` store.
const HASH_LEN: usize = 64;
/// Highest iteration count accepted in a file: an entry that costs minutes per login is a
/// mistake (or an attack on the broker's CPU), not a password.
pub const MAX_ITERATIONS: u32 = 10_000_000;
/// Iterations of a new `$7$` entry (`musqratt passwd` without `-I`). Mosquitto 2.0 writes 101,
/// which a GPU tries by the billion per second; 20,000 costs ~10 ms per login here, and
/// `-I` sets more (docs/SECURITY.md).
pub const DEFAULT_ITERATIONS: u32 = 20_000;

/// Why a stored password could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HashError {
    /// Not `$6$`, `$7$`, `$argon2id$` or RFC 5803 (a clear-text password, which Mosquitto 2.0 refuses
    /// too, or another scheme).
    #[error("not a $6$, $7$, $argon2id$ or SCRAM-SHA-256$ password hash")]
    UnknownForm,
    /// The salt or hash is not standard base64.
    #[error("salt or hash is not base64")]
    Base64,
    /// The hash is not the 64 bytes of a SHA-512.
    #[error("hash is not 64 bytes")]
    HashLength,
    /// The salt is empty.
    #[error("empty salt")]
    Salt,
    /// The iteration count is not a number from 1 to `MAX_ITERATIONS`.
    #[error("iteration count not in 1..=10000000")]
    Iterations,
    /// The Argon2id string does not parse (PHC format).
    #[error("malformed $argon2id$ string")]
    Argon2,
    /// An RFC 5803 entry that is not `SCRAM-SHA-<n>$<iterations>:<salt>$<StoredKey>:<ServerKey>`
    /// with keys the length of the hash.
    #[error("malformed SCRAM entry (RFC 5803: SCRAM-SHA-256$<i>:<salt>$<StoredKey>:<ServerKey>)")]
    Scram,
}

/// What a SCRAM server keeps of a user (RFC 5802 §3, written as RFC 5803 §3 says): enough to
/// check a proof or a password and to prove itself, not enough to log in as the user.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramEntry {
    pub(crate) mechanism: Mechanism,
    pub(crate) iterations: u32,
    pub(crate) salt: Vec<u8>,
    pub(crate) stored_key: Vec<u8>,
    pub(crate) server_key: Vec<u8>,
}

impl ScramEntry {
    /// The mechanism the entry serves.
    #[must_use]
    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }
}

/// A stored password: how to check one offered by a client.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoredPassword {
    /// `$6$`: one SHA-512 of password and salt.
    Sha512 {
        /// The salt.
        salt: Vec<u8>,
        /// SHA-512(password ‖ salt).
        hash: [u8; HASH_LEN],
    },
    /// `$7$`: PBKDF2-HMAC-SHA512.
    Pbkdf2Sha512 {
        /// Iterations.
        iterations: u32,
        /// The salt.
        salt: Vec<u8>,
        /// The derived key (= SCRAM-SHA-512 `SaltedPassword`).
        hash: [u8; HASH_LEN],
    },
    /// `$argon2id$...`: kept as its PHC string, which holds its parameters.
    Argon2id(String),
    /// `SCRAM-SHA-256$...` / `SCRAM-SHA-512$...` (RFC 5803).
    Scram(ScramEntry),
}

impl StoredPassword {
    /// A new `$7$` entry for `password`, with a random salt.
    ///
    /// # Errors
    /// `HashError::Iterations` when `iterations` is 0 or above [`MAX_ITERATIONS`].
    pub fn pbkdf2(password: &[u8], iterations: u32) -> Result<Self, HashError> {
        if iterations == 0 || iterations > MAX_ITERATIONS {
            return Err(HashError::Iterations);
        }
        let mut salt = vec![0; SALT_LEN];
        fill_random(&mut salt);
        let hash = pbkdf2_sha512(password, &salt, iterations);
        Ok(Self::Pbkdf2Sha512 { iterations, salt, hash })
    }

    /// A new RFC 5803 entry of `mechanism` for `password`, with a random 16-byte salt (the
    /// length scramp and PostgreSQL use).
    ///
    /// # Errors
    /// `HashError::Iterations` when `iterations` is 0 or above [`MAX_ITERATIONS`].
    pub fn scram(
        mechanism: Mechanism,
        password: &[u8],
        iterations: u32,
    ) -> Result<Self, HashError> {
        if iterations == 0 || iterations > MAX_ITERATIONS {
            return Err(HashError::Iterations);
        }
        let mut salt = vec![0; 16];
        fill_random(&mut salt);
        let salted = mechanism.salted_password(password, &salt, iterations);
        Ok(Self::Scram(ScramEntry {
            mechanism,
            iterations,
            salt,
            stored_key: mechanism.stored_key(&salted),
            server_key: mechanism.server_key(&salted),
        }))
    }

    /// A new `$argon2id$` entry for `password` (the argon2 crate's default parameters, which
    /// follow RFC 9106's second recommended option), with a random salt.
    pub fn argon2id(password: &[u8]) -> Self {
        let mut salt = [0; 16];
        fill_random(&mut salt);
        // The salt is 16 random bytes, within the PHC limits, and the default parameters are
        // valid: hashing cannot fail.
        let salt = SaltString::encode_b64(&salt).unwrap_or_else(|_| unreachable!("16-byte salt"));
        let phc = argon2::Argon2::default()
            .hash_password(password, &salt)
            .unwrap_or_else(|_| unreachable!("default Argon2 parameters"));
        Self::Argon2id(phc.to_string())
    }

    /// Whether `password` is this one. The comparison takes the same time whatever the
    /// offered password (`subtle`): a timing difference must not tell an attacker how much of
    /// a hash was right.
    #[must_use]
    pub fn verify(&self, password: &[u8]) -> bool {
        match self {
            Self::Sha512 { salt, hash } => {
                let mut digest = Sha512::new();
                digest.update(password);
                digest.update(salt);
                bool::from(digest.finalize().as_slice().ct_eq(hash))
            }
            Self::Pbkdf2Sha512 { iterations, salt, hash } => {
                bool::from(pbkdf2_sha512(password, salt, *iterations).ct_eq(hash))
            }
            Self::Argon2id(phc) => argon2::PasswordHash::new(phc).is_ok_and(|parsed| {
                argon2::Argon2::default().verify_password(password, &parsed).is_ok()
            }),
            // The password's StoredKey, recomputed (RFC 5802 §3): the entry keeps no more.
            Self::Scram(entry) => {
                let m = entry.mechanism;
                let salted = m.salted_password(password, &entry.salt, entry.iterations);
                bool::from(m.stored_key(&salted).ct_eq(&entry.stored_key))
            }
        }
    }

    /// Whether checking a password against this entry takes long enough (milliseconds) that a
    /// shard must not wait for it: `$7$` above a few hundred iterations and Argon2id.
    #[must_use]
    pub fn is_slow(&self) -> bool {
        match self {
            Self::Sha512 { .. } => false,
            Self::Pbkdf2Sha512 { iterations, .. } => *iterations > 500,
            Self::Scram(entry) => entry.iterations > 500,
            Self::Argon2id(_) => true,
        }
    }
}

/// PBKDF2-HMAC-SHA512 with a 64-byte output.
#[must_use]
pub fn pbkdf2_sha512(password: &[u8], salt: &[u8], iterations: u32) -> [u8; HASH_LEN] {
    let mut out = [0; HASH_LEN];
    pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out);
    out
}

/// Random bytes from the operating system. A broker that cannot get any cannot make salts,
/// and carrying on with predictable ones would be worse than stopping.
pub(crate) fn fill_random(buf: &mut [u8]) {
    if let Err(error) = getrandom::fill(buf) {
        panic!("no random bytes from the operating system: {error}");
    }
}

fn decode(text: &str) -> Result<Vec<u8>, HashError> {
    BASE64.decode(text).map_err(|_| HashError::Base64)
}

fn decode_hash(text: &str) -> Result<[u8; HASH_LEN], HashError> {
    decode(text)?.try_into().map_err(|_| HashError::HashLength)
}

fn decode_salt(text: &str) -> Result<Vec<u8>, HashError> {
    let salt = decode(text)?;
    if salt.is_empty() { Err(HashError::Salt) } else { Ok(salt) }
}

fn parse_iterations(text: &str) -> Result<u32, HashError> {
    let iterations: u32 = text.parse().map_err(|_| HashError::Iterations)?;
    if iterations == 0 || iterations > MAX_ITERATIONS {
        return Err(HashError::Iterations);
    }
    Ok(iterations)
}

/// RFC 5803 §3: `<iteration count>:<salt>$<StoredKey>:<ServerKey>` after the mechanism's name
/// and `$`.
fn parse_scram(mechanism: Mechanism, rest: &str) -> Result<ScramEntry, HashError> {
    let (parameters, keys) = rest.split_once('$').ok_or(HashError::Scram)?;
    let (iterations, salt) = parameters.split_once(':').ok_or(HashError::Scram)?;
    let (stored_key, server_key) = keys.split_once(':').ok_or(HashError::Scram)?;
    let key = |text: &str| {
        let key = decode(text)?;
        if key.len() == mechanism.output_len() { Ok(key) } else { Err(HashError::Scram) }
    };
    Ok(ScramEntry {
        mechanism,
        iterations: parse_iterations(iterations)?,
        salt: decode_salt(salt)?,
        stored_key: key(stored_key)?,
        server_key: key(server_key)?,
    })
}

impl FromStr for StoredPassword {
    type Err = HashError;

    fn from_str(text: &str) -> Result<Self, HashError> {
        if text.starts_with("$argon2id$") {
            let parsed = argon2::PasswordHash::new(text).map_err(|_| HashError::Argon2)?;
            if parsed.salt.is_none()
                || parsed.hash.is_none()
                || argon2::Params::try_from(&parsed).is_err()
            {
                return Err(HashError::Argon2);
            }
            return Ok(Self::Argon2id(text.to_owned()));
        }
        if let Some(rest) = text.strip_prefix("$6$") {
            let (salt, hash) = rest.split_once('$').ok_or(HashError::UnknownForm)?;
            return Ok(Self::Sha512 { salt: decode_salt(salt)?, hash: decode_hash(hash)? });
        }
        if let Some(rest) = text.strip_prefix("$7$") {
            let mut parts = rest.splitn(3, '$');
            let (Some(iterations), Some(salt), Some(hash)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return Err(HashError::UnknownForm);
            };
            return Ok(Self::Pbkdf2Sha512 {
                iterations: parse_iterations(iterations)?,
                salt: decode_salt(salt)?,
                hash: decode_hash(hash)?,
            });
        }
        for mechanism in [Mechanism::Sha256, Mechanism::Sha512] {
            if let Some(rest) =
                text.strip_prefix(mechanism.name()).and_then(|r| r.strip_prefix('$'))
            {
                return Ok(Self::Scram(parse_scram(mechanism, rest)?));
            }
        }
        Err(HashError::UnknownForm)
    }
}

impl fmt::Display for StoredPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sha512 { salt, hash } => {
                write!(f, "$6${}${}", BASE64.encode(salt), BASE64.encode(hash))
            }
            Self::Pbkdf2Sha512 { iterations, salt, hash } => {
                write!(f, "$7${iterations}${}${}", BASE64.encode(salt), BASE64.encode(hash))
            }
            Self::Argon2id(phc) => f.write_str(phc),
            Self::Scram(entry) => write!(
                f,
                "{}${}:{}${}:{}",
                entry.mechanism.name(),
                entry.iterations,
                BASE64.encode(&entry.salt),
                BASE64.encode(&entry.stored_key),
                BASE64.encode(&entry.server_key)
            ),
        }
    }
}

/// Never prints the hash: logs and panics must not carry what an offline attack needs.
impl fmt::Debug for StoredPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let form = match self {
            Self::Sha512 { .. } => "$6$",
            Self::Pbkdf2Sha512 { .. } => "$7$",
            Self::Argon2id(_) => "$argon2id$",
            Self::Scram(entry) => entry.mechanism.name(),
        };
        write!(f, "StoredPassword({form}..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Made by Python's hashlib, independently of this code: `$6$` is sha512(password + salt).
    #[test]
    fn sha512_entry_made_elsewhere_verifies() {
        let salt = b"0123456789ab";
        let mut digest = Sha512::new();
        digest.update(b"secret");
        digest.update(salt);
        let line = format!("$6${}${}", BASE64.encode(salt), BASE64.encode(digest.finalize()));
        let stored: StoredPassword = line.parse().unwrap();
        assert!(stored.verify(b"secret"));
        assert!(!stored.verify(b"Secret"));
        assert_eq!(stored.to_string(), line);
    }

    /// RFC 6070-style vector for PBKDF2-HMAC-SHA512 (password "password", salt "salt", 1
    /// iteration), as published for SHA-512 by the PBKDF2 test-vector collections.
    #[test]
    fn pbkdf2_sha512_known_vector() {
        let out = pbkdf2_sha512(b"password", b"salt", 1);
        assert_eq!(
            &out[..8],
            &[0x86, 0x7f, 0x70, 0xcf, 0x1a, 0xde, 0x02, 0xcf],
            "first bytes of the published PBKDF2-HMAC-SHA512 vector"
        );
    }

    #[test]
    fn new_entries_round_trip_and_verify() {
        let stored = StoredPassword::pbkdf2(b"pw", 1000).unwrap();
        let text = stored.to_string();
        assert!(text.starts_with("$7$1000$"));
        let parsed: StoredPassword = text.parse().unwrap();
        assert!(parsed.verify(b"pw") && !parsed.verify(b"pw2"));
        let argon = StoredPassword::argon2id(b"pw");
        let parsed: StoredPassword = argon.to_string().parse().unwrap();
        assert!(parsed.verify(b"pw") && !parsed.verify(b""));
    }

    #[test]
    fn malformed_entries_are_refused_with_their_reason() {
        assert_eq!("plain".parse::<StoredPassword>(), Err(HashError::UnknownForm));
        assert_eq!("$6$%%%$abc".parse::<StoredPassword>(), Err(HashError::Base64));
        assert_eq!("$6$c2FsdA==$c2FsdA==".parse::<StoredPassword>(), Err(HashError::HashLength));
        assert_eq!("$7$0$c2FsdA==$c2FsdA==".parse::<StoredPassword>(), Err(HashError::Iterations));
        assert_eq!(
            "$7$99999999999$c2FsdA==$c2FsdA==".parse::<StoredPassword>(),
            Err(HashError::Iterations)
        );
        assert_eq!("$argon2id$garbage".parse::<StoredPassword>(), Err(HashError::Argon2));
        assert_eq!(StoredPassword::pbkdf2(b"x", 0), Err(HashError::Iterations));
    }

    /// RFC 5803 entries made by Python's `scramp` (`make_auth_info("pencil",
    /// iteration_count=4096)`), independently of this code: they parse, print back unchanged,
    /// and check plain passwords by their StoredKey.
    #[test]
    fn scram_entries_made_elsewhere_verify() {
        let sha256 = "SCRAM-SHA-256$4096:onBawntGZ7vHAHpD9Pqon1hOZOi6D77KAgd1Xk4kxz0=$\
                      QEpL/tscDEmQNMrEP9NarY2fFS18aRYez18DatrQe64=:\
                      NO3ML6uX6b9cnW+cqpxxdNUSu2GgcT1nkA+5f2b5eug=";
        let sha512 = "SCRAM-SHA-512$4096:lFIi9y0xvVo2nHdE6haY2u/yl89uRLtYxDZhw7eYuF8=$\
                      ubSF91SFzEdV5TUaOoeLw0PAmbt6M/ahPamowa33SdBGZ9AwfYE2XW6WSICsjmeGCy+LOB9j4I\
                      ovNRf3wjGbUA==:2sLmW71np9x5bXdJeyhnKWo6LWRkmen1f5d7qiHRv20SCngUZ06UzE+FBSDvzh\
                      QyFM+GxLKziQizmju22OWp/w==";
        for (line, mechanism) in [(sha256, Mechanism::Sha256), (sha512, Mechanism::Sha512)] {
            let stored: StoredPassword = line.parse().unwrap();
            assert!(matches!(&stored, StoredPassword::Scram(e) if e.mechanism() == mechanism));
            assert!(stored.verify(b"pencil"), "{line}");
            assert!(!stored.verify(b"pencil2") && !stored.verify(b""));
            assert_eq!(stored.to_string(), line);
            assert!(stored.is_slow());
            assert_eq!(format!("{stored:?}"), format!("StoredPassword({}..)", mechanism.name()));
        }
        let made = StoredPassword::scram(Mechanism::Sha256, b"pw", 4096).unwrap();
        let text = made.to_string();
        assert!(text.starts_with("SCRAM-SHA-256$4096:"), "{text}");
        let parsed: StoredPassword = text.parse().unwrap();
        assert!(parsed.verify(b"pw") && !parsed.verify(b"pW"));
        assert_eq!(parsed, made);
    }

    #[test]
    fn malformed_scram_entries_are_refused() {
        let key32 = BASE64.encode([1; 32]);
        let key64 = BASE64.encode([1; 64]);
        let good = format!("SCRAM-SHA-256$4096:c2FsdA==${key32}:{key32}");
        assert!(good.parse::<StoredPassword>().is_ok());
        for (bad, error) in [
            // A SHA-512-sized key under SHA-256, and the other way round.
            (format!("SCRAM-SHA-256$4096:c2FsdA==${key64}:{key32}"), HashError::Scram),
            (format!("SCRAM-SHA-512$4096:c2FsdA==${key32}:{key32}"), HashError::Scram),
            (format!("SCRAM-SHA-256$4096c2FsdA==${key32}:{key32}"), HashError::Scram),
            (format!("SCRAM-SHA-256$4096:c2FsdA==${key32}{key32}"), HashError::Scram),
            ("SCRAM-SHA-256$4096:c2FsdA==".to_owned(), HashError::Scram),
            (format!("SCRAM-SHA-256$0:c2FsdA==${key32}:{key32}"), HashError::Iterations),
            (format!("SCRAM-SHA-256$4096:${key32}:{key32}"), HashError::Salt),
            (format!("SCRAM-SHA-256$4096:%%${key32}:{key32}"), HashError::Base64),
            (format!("SCRAM-SHA-1$4096:c2FsdA==${key32}:{key32}"), HashError::UnknownForm),
        ] {
            assert_eq!(bad.parse::<StoredPassword>(), Err(error), "{bad}");
        }
        assert_eq!(StoredPassword::scram(Mechanism::Sha256, b"x", 0), Err(HashError::Iterations));
    }

    #[test]
    fn debug_hides_the_hash() {
        let stored = StoredPassword::pbkdf2(b"pw", 1).unwrap();
        assert_eq!(format!("{stored:?}"), "StoredPassword($7$..)");
    }
}
