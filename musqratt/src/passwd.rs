//! `musqratt passwd`: creates and edits password files in the form Mosquitto also reads, with the
//! options of `mosquitto_passwd` that users already type (`-c`, `-b`, `-D`, `-H`, `-I`).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use musqratt_auth::password::DEFAULT_ITERATIONS;
use musqratt_auth::{PasswordFile, StoredPassword};

/// The hash a new entry gets.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "tokio", derive(clap::ValueEnum))]
pub enum HashKind {
    /// `$7$`: PBKDF2-HMAC-SHA512 (Mosquitto 2.0 reads it; it also serves SCRAM-SHA-512).
    #[default]
    #[cfg_attr(feature = "tokio", value(name = "sha512-pbkdf2"))]
    Pbkdf2,
    /// `$argon2id$` (Mosquitto 2.1 reads it).
    #[cfg_attr(feature = "tokio", value(name = "argon2id"))]
    Argon2id,
    /// `SCRAM-SHA-256$` (RFC 5803): serves SCRAM-SHA-256 and plain passwords; Mosquitto does
    /// not read it (docs/SECURITY.md, SCRAM).
    #[cfg_attr(feature = "tokio", value(name = "scram-sha-256"))]
    ScramSha256,
}

/// What `musqratt passwd` was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswdAction {
    /// Add the user or change the password (`create`: start a new file, replacing any).
    Set {
        /// The user.
        user: String,
        /// The password.
        password: String,
        /// Start a new file.
        create: bool,
        /// The hash.
        hash: HashKind,
        /// PBKDF2 iterations.
        iterations: u32,
    },
    /// Remove the user.
    Delete {
        /// The user.
        user: String,
    },
}

/// Why `musqratt passwd` failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PasswdError {
    /// The file exists but cannot be read or parsed.
    #[error("{0}")]
    Read(#[from] musqratt_auth::password_file::PasswordFileError),
    /// The file cannot be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The user name cannot be stored in the file.
    #[error("user name must be non-empty and hold no `:` or line break")]
    BadUser,
    /// `-D` for a user the file does not have.
    #[error("user {0} not in the file")]
    NoSuchUser(String),
    /// An iteration count out of range.
    #[error("{0}")]
    Hash(#[from] musqratt_auth::password::HashError),
}

impl PasswdAction {
    /// Carries the action out on the file at `path`, written atomically (a new file next to it,
    /// renamed over it) with permissions 0600 for a new file.
    ///
    /// # Errors
    /// The file cannot be read, parsed or written, or the user is not valid.
    pub fn apply(&self, path: &Path) -> Result<(), PasswdError> {
        let create = matches!(self, Self::Set { create: true, .. });
        let mut file = if create || !path.exists() {
            PasswordFile::default()
        } else {
            PasswordFile::load(path)?
        };
        match self {
            Self::Set { user, password, hash, iterations, .. } => {
                if user.is_empty() || user.contains([':', '\n', '\r']) {
                    return Err(PasswdError::BadUser);
                }
                let stored = match hash {
                    HashKind::Pbkdf2 => StoredPassword::pbkdf2(password.as_bytes(), *iterations)?,
                    HashKind::Argon2id => StoredPassword::argon2id(password.as_bytes()),
                    HashKind::ScramSha256 => StoredPassword::scram(
                        musqratt_auth::Mechanism::Sha256,
                        password.as_bytes(),
                        *iterations,
                    )?,
                };
                file.set(user, stored);
            }
            Self::Delete { user } => {
                if !file.remove(user) {
                    return Err(PasswdError::NoSuchUser(user.clone()));
                }
            }
        }
        write_atomically(path, file.to_text().as_bytes())
            .map_err(|source| PasswdError::Write { path: path.to_owned(), source })
    }
}

/// The default iteration count of a new `$7$` entry.
#[must_use]
pub const fn default_iterations() -> u32 {
    DEFAULT_ITERATIONS
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let result = (|| {
        let mut out = options.open(&tmp)?;
        out.write_all(bytes)?;
        out.sync_all()?;
        // An existing file keeps its permissions (an admin may have made it group-readable
        // for the broker's user).
        if let Ok(meta) = std::fs::metadata(path) {
            std::fs::set_permissions(&tmp, meta.permissions())?;
        }
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_change_and_delete() {
        let dir = std::env::temp_dir().join(format!("musqratt-passwd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("pw");
        let set = |user: &str, password: &str, create| PasswdAction::Set {
            user: user.into(),
            password: password.into(),
            create,
            hash: HashKind::Pbkdf2,
            iterations: 10,
        };
        set("a", "1", true).apply(&path).unwrap();
        set("b", "2", false).apply(&path).unwrap();
        set("a", "3", false).apply(&path).unwrap();
        let file = PasswordFile::load(&path).unwrap();
        assert!(file.get("a").unwrap().verify(b"3") && file.get("b").unwrap().verify(b"2"));
        PasswdAction::Delete { user: "a".into() }.apply(&path).unwrap();
        assert!(matches!(
            PasswdAction::Delete { user: "a".into() }.apply(&path),
            Err(PasswdError::NoSuchUser(_))
        ));
        assert!(matches!(set("x:y", "1", false).apply(&path), Err(PasswdError::BadUser)));
        // `-H scram-sha-256`: an RFC 5803 line next to the $7$ one, checking plain passwords.
        let scram = PasswdAction::Set {
            user: "s".into(),
            password: "4".into(),
            create: false,
            hash: HashKind::ScramSha256,
            iterations: 10,
        };
        scram.apply(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("b:$7$10$") && text.contains("s:SCRAM-SHA-256$10:"), "{text}");
        assert!(PasswordFile::load(&path).unwrap().get("s").unwrap().verify(b"4"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
