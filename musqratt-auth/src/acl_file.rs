//! Mosquitto's ACL file, with Mosquitto's documented meaning (`docs/SECURITY.md`):
//!
//! ```text
//! # anonymous clients (lines before the first `user` line)
//! topic read public/#
//! user alice
//! topic readwrite alice/#
//! topic deny alice/secret
//! # every client; %c is its client id, %u its user name
//! pattern write devices/%c/status
//! ```
//!
//! `topic` and `pattern` take an access (`read`, `write`, `readwrite`, `deny`; none means
//! `readwrite`) and a topic filter, the rest of the line. A client's rules are its user's (or
//! the anonymous ones), then the patterns; within each, denials come first, as in Mosquitto,
//! and the first rule that matches decides ([`musqratt_engine::acl`]).

use std::collections::HashMap;
use std::path::Path;

use musqratt_engine::acl::{Access, Acl, AclRule, Effect};
use musqratt_engine::proto::bytestring::ByteString;
use musqratt_engine::proto::topic::validate_topic_filter;

/// Why an ACL file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AclFileError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not one of the file's forms.
    #[error("line {line}: {reason}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// One `topic` or `pattern` line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Line {
    effect: Effect,
    access: Access,
    filter: String,
}

/// A parsed ACL file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AclFile {
    anonymous: Vec<Line>,
    users: HashMap<String, Vec<Line>>,
    patterns: Vec<Line>,
}

impl AclFile {
    /// Reads and parses the file at `path`.
    ///
    /// # Errors
    /// The file cannot be read, or a line does not parse (its number is in the error).
    pub fn load(path: &Path) -> Result<Self, AclFileError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| AclFileError::Io { path: path.display().to_string(), source })?;
        Self::parse(&text)
    }

    /// Parses an ACL file's text.
    ///
    /// # Errors
    /// The first line that does not parse, with its number.
    pub fn parse(text: &str) -> Result<Self, AclFileError> {
        let mut file = Self::default();
        let mut user: Option<String> = None;
        for (number, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fail = |reason| AclFileError::Line { line: number + 1, reason };
            let (keyword, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            let rest = rest.trim();
            match keyword {
                "user" => {
                    if rest.is_empty() {
                        return Err(fail("`user` needs a user name"));
                    }
                    user = Some(rest.to_owned());
                    file.users.entry(rest.to_owned()).or_default();
                }
                "topic" | "pattern" => {
                    let parsed = parse_rule(rest).map_err(fail)?;
                    if keyword == "pattern" {
                        file.patterns.push(parsed);
                    } else if let Some(user) = &user {
                        file.users.entry(user.clone()).or_default().push(parsed);
                    } else {
                        file.anonymous.push(parsed);
                    }
                }
                _ => return Err(fail("expected `user`, `topic` or `pattern`")),
            }
        }
        Ok(file)
    }

    /// The rules of a client with this user name (none: anonymous) and client id.
    ///
    /// A user name or client id holding `+` or `#` gets no rules at all, so everything is
    /// refused, as Mosquitto does: substituted into a pattern, it would be a wildcard that
    /// opens other clients' topics.
    #[must_use]
    pub fn acl_for(&self, username: Option<&str>, client_id: &str) -> Acl {
        let wild = |s: &str| s.contains(['+', '#']);
        if wild(client_id) || username.is_some_and(wild) {
            return Acl::default();
        }
        let own = match username {
            Some(name) => self.users.get(name).map_or(&[][..], Vec::as_slice),
            None => &self.anonymous,
        };
        let substituted: Vec<Line> = self
            .patterns
            .iter()
            .filter_map(|line| {
                // A pattern naming the user name does not apply to a client without one.
                if username.is_none() && line.filter.contains("%u") {
                    return None;
                }
                let filter =
                    line.filter.replace("%c", client_id).replace("%u", username.unwrap_or(""));
                Some(Line { filter, ..line.clone() })
            })
            .collect();
        let mut rules = Vec::with_capacity(own.len() + substituted.len());
        for lines in [own, &substituted[..]] {
            for effect in [Effect::Deny, Effect::Allow] {
                rules.extend(lines.iter().filter(|l| l.effect == effect).map(|l| AclRule {
                    effect: l.effect,
                    access: l.access,
                    filter: ByteString::from(l.filter.as_str()),
                }));
            }
        }
        Acl::new(rules)
    }
}

fn parse_rule(rest: &str) -> Result<Line, &'static str> {
    let (first, after) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let (effect, access, filter) = match first {
        "read" => (Effect::Allow, Access::SUBSCRIBE, after.trim()),
        "write" => (Effect::Allow, Access::PUBLISH, after.trim()),
        "readwrite" => (Effect::Allow, Access::ALL, after.trim()),
        "deny" => (Effect::Deny, Access::ALL, after.trim()),
        _ => (Effect::Allow, Access::ALL, rest),
    };
    if filter.is_empty() {
        return Err("needs a topic filter");
    }
    // Placeholders are filled per client; check the filter with them as plain levels.
    validate_topic_filter(&filter.replace("%c", "c").replace("%u", "u"))
        .map_err(|_| "not a valid topic filter")?;
    Ok(Line { effect, access, filter: filter.to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "\
# comment
topic read public/#

user alice
topic readwrite alice/#
topic deny alice/secret
topic sensors/+/temp

user bob
topic write bob/out

pattern write devices/%c/status
pattern read users/%u/inbox
";

    #[test]
    fn mosquitto_meaning() {
        let file = AclFile::parse(FILE).unwrap();
        let anon = file.acl_for(None, "dev1");
        assert!(anon.may_receive("public/news"));
        assert!(!anon.may_publish("public/news"));
        assert!(anon.may_publish("devices/dev1/status"));
        assert!(!anon.may_publish("devices/dev2/status"));
        // %u patterns do not apply without a user name.
        assert!(!anon.may_receive("users//inbox"));

        let alice = file.acl_for(Some("alice"), "a1");
        assert!(alice.may_publish("alice/x") && alice.may_receive("alice/x"));
        assert!(!alice.may_publish("alice/secret"), "deny comes first whatever the order");
        assert!(alice.may_publish("sensors/k/temp"), "no access keyword means readwrite");
        assert!(alice.may_receive("users/alice/inbox"));
        assert!(!alice.may_receive("users/bob/inbox"));
        assert!(!alice.may_receive("public/news"), "anonymous rules are not alice's");

        let bob = file.acl_for(Some("bob"), "b1");
        assert!(bob.may_publish("bob/out") && !bob.may_receive("bob/out"));
        // A user the file does not name gets the patterns only.
        let carol = file.acl_for(Some("carol"), "c1");
        assert!(carol.may_publish("devices/c1/status") && !carol.may_publish("alice/x"));
    }

    /// `+`/`#` in a user name or client id (issue 14 item 5): substituted into `pattern`
    /// rules they would reach other clients' topics (`devices/+/status` is every device's), so
    /// such a client gets nothing, its own `topic` rules included, as Mosquitto 2.0 does.
    #[test]
    fn wildcards_in_identities_get_nothing() {
        let file = AclFile::parse(FILE).unwrap();
        // What the patterns give well-named clients, for contrast.
        assert!(file.acl_for(None, "dev2").may_publish("devices/dev2/status"));
        assert!(file.acl_for(Some("bob"), "x").may_receive("users/bob/inbox"));
        for (user, client_id) in [(None, "+"), (None, "#"), (None, "dev+"), (Some("alice"), "+")] {
            let acl = file.acl_for(user, client_id);
            assert!(!acl.may_publish("devices/dev2/status"), "{user:?} {client_id}");
            assert!(!acl.may_publish("devices/+/status"), "{user:?} {client_id}");
            assert!(!acl.may_receive("public/news"), "{user:?} {client_id}: own rules too");
        }
        for user in ["+", "#", "a+", "bo#"] {
            let acl = file.acl_for(Some(user), "x");
            assert!(!acl.may_receive("users/bob/inbox"), "{user}");
            assert!(!acl.may_subscribe("users/+/inbox"), "{user}");
            assert!(!acl.may_publish("devices/x/status"), "{user}");
        }
        assert!(!file.acl_for(Some("alice"), "+").may_publish("alice/x"), "alice's own rules");
    }

    #[test]
    fn bad_lines_are_refused_with_their_number() {
        for (text, line) in [
            ("topic read a/#\nuser\n", 2),
            ("tpoic read a\n", 1),
            ("user a\ntopic read a/#/b\n", 2),
            ("topic deny\n", 1),
        ] {
            match AclFile::parse(text) {
                Err(AclFileError::Line { line: l, .. }) => assert_eq!(l, line, "{text:?}"),
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }
}
