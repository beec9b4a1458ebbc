//! Mosquitto's password file: one `username:hash` per line (`docs/SECURITY.md`).
//!
//! Read at start and on SIGHUP. A line that does not parse refuses the whole file with its line
//! number: a broker that silently skipped a user's line would lock that user out (or, for a
//! line meant to replace an older password, keep the old one working) without a word.

use std::collections::HashMap;
use std::path::Path;

use crate::password::{HashError, StoredPassword};

/// Why a password file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PasswordFileError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not `username:hash` with a hash this broker knows.
    #[error("line {line}: {reason}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: LineError,
    },
}

/// What is wrong with a line of a password file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LineError {
    /// No `:` between user name and hash.
    #[error("expected `username:hash`")]
    NoColon,
    /// The user name is empty.
    #[error("empty user name")]
    EmptyUser,
    /// The user name appears on an earlier line too.
    #[error("user name given twice")]
    Duplicate,
    /// The hash does not parse.
    #[error("{0}")]
    Hash(HashError),
}

/// The users of a password file and their stored passwords, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PasswordFile {
    entries: Vec<(String, StoredPassword)>,
    index: HashMap<String, usize>,
}

impl PasswordFile {
    /// Reads and parses the file at `path`.
    ///
    /// # Errors
    /// The file cannot be read, or a line does not parse (its number is in the error).
    pub fn load(path: &Path) -> Result<Self, PasswordFileError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| PasswordFileError::Io { path: path.display().to_string(), source })?;
        Self::parse(&text)
    }

    /// Parses a password file's text. Empty lines and lines starting with `#` are skipped, as
    /// Mosquitto does; trailing `\r` (a file edited on Windows) is ignored.
    ///
    /// # Errors
    /// The first line that does not parse, with its number.
    pub fn parse(text: &str) -> Result<Self, PasswordFileError> {
        let mut file = Self::default();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let fail = |reason| PasswordFileError::Line { line: number + 1, reason };
            let (user, hash) = line.split_once(':').ok_or_else(|| fail(LineError::NoColon))?;
            if user.is_empty() {
                return Err(fail(LineError::EmptyUser));
            }
            let stored: StoredPassword =
                hash.trim_end().parse().map_err(|e| fail(LineError::Hash(e)))?;
            if file.index.contains_key(user) {
                return Err(fail(LineError::Duplicate));
            }
            file.set(user, stored);
        }
        Ok(file)
    }

    /// The stored password of `user`, if the file has the user.
    #[must_use]
    pub fn get(&self, user: &str) -> Option<&StoredPassword> {
        self.index.get(user).map(|&i| &self.entries[i].1)
    }

    /// Adds `user`, or replaces the user's password where it stands.
    pub fn set(&mut self, user: &str, stored: StoredPassword) {
        match self.index.get(user) {
            Some(&i) => self.entries[i].1 = stored,
            None => {
                self.index.insert(user.to_owned(), self.entries.len());
                self.entries.push((user.to_owned(), stored));
            }
        }
    }

    /// Removes `user`; false if the file did not have the user.
    pub fn remove(&mut self, user: &str) -> bool {
        let Some(at) = self.index.remove(user) else { return false };
        self.entries.remove(at);
        for (i, (name, _)) in self.entries.iter().enumerate().skip(at) {
            self.index.insert(name.clone(), i);
        }
        true
    }

    /// The users and their stored passwords, in file order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &StoredPassword)> {
        self.entries.iter().map(|(user, stored)| (user.as_str(), stored))
    }

    /// How many users the file has.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the file has no users.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The file's text: one `username:hash` line per user, in order.
    #[must_use]
    pub fn to_text(&self) -> String {
        self.entries.iter().map(|(user, stored)| format!("{user}:{stored}\n")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_corrupt_line_is_refused_with_its_number() {
        let good = StoredPassword::pbkdf2(b"pw", 1).unwrap();
        let text = format!("# users\n\nalice:{good}\nbob:plaintext\n");
        match PasswordFile::parse(&text) {
            Err(PasswordFileError::Line {
                line: 4,
                reason: LineError::Hash(HashError::UnknownForm),
            }) => {}
            other => panic!("{other:?}"),
        }
        let text = format!("alice:{good}\nalice:{good}\n");
        assert!(matches!(
            PasswordFile::parse(&text),
            Err(PasswordFileError::Line { line: 2, reason: LineError::Duplicate })
        ));
        assert!(matches!(
            PasswordFile::parse("nocolon\n"),
            Err(PasswordFileError::Line { line: 1, reason: LineError::NoColon })
        ));
    }

    #[test]
    fn set_remove_and_text_keep_order() {
        let mut file = PasswordFile::default();
        for user in ["a", "b", "c"] {
            file.set(user, StoredPassword::pbkdf2(user.as_bytes(), 1).unwrap());
        }
        assert!(file.remove("b") && !file.remove("b"));
        file.set("a", StoredPassword::pbkdf2(b"new", 1).unwrap());
        let parsed = PasswordFile::parse(&file.to_text()).unwrap();
        assert_eq!(parsed.len(), 2);
        assert!(parsed.get("a").unwrap().verify(b"new"));
        assert!(parsed.get("c").unwrap().verify(b"c"));
        assert!(parsed.get("b").is_none());
        assert!(parsed.to_text().starts_with("a:$7$1$"));
    }
}
