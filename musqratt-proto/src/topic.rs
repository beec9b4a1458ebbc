//! Topic names and topic filters (MQTT 5.0 §4.7, shared subscriptions §4.8.2).
//!
//! Shared by the MQTT and MQTT-SN codecs and by the broker's router, so that every layer agrees on
//! what a valid topic is.

/// Why a topic name or topic filter is not valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum TopicError {
    /// Topic names and filters are at least one character long (MQTT-4.7.3-1).
    #[error("topic is empty")]
    Empty,
    /// A topic name carries no wildcard characters (MQTT-3.3.2-2, MQTT-4.7.0-1).
    #[error("topic name contains a wildcard")]
    WildcardInName,
    /// `#` stands alone as the last level (MQTT-4.7.1-1).
    #[error("'#' is not alone in the last level")]
    MisplacedMultiLevelWildcard,
    /// `+` occupies a whole level (MQTT-4.7.1-2).
    #[error("'+' does not occupy a whole level")]
    MisplacedSingleLevelWildcard,
    /// A share name is at least one character without `/`, `+` or `#` (MQTT-4.8.2-1).
    #[error("invalid share name")]
    InvalidShareName,
    /// `$share/{ShareName}` is followed by `/` and a topic filter (MQTT-4.8.2-2).
    #[error("shared subscription has no topic filter")]
    MissingSharedFilter,
}

/// The prefix of a shared subscription's filter (MQTT 5.0 §4.8.2).
pub const SHARED_PREFIX: &str = "$share/";

/// Checks a topic name as PUBLISH carries it: non-empty, no `+` or `#`.
///
/// # Errors
/// [`TopicError::Empty`] or [`TopicError::WildcardInName`].
pub fn validate_topic_name(name: &str) -> Result<(), TopicError> {
    if name.is_empty() {
        return Err(TopicError::Empty);
    }
    if name.bytes().any(|b| b == b'+' || b == b'#') {
        return Err(TopicError::WildcardInName);
    }
    Ok(())
}

/// Checks a topic filter as SUBSCRIBE and UNSUBSCRIBE carry it, shared subscriptions included.
///
/// # Errors
/// The first rule of §4.7.1 or §4.8.2 the filter breaks.
pub fn validate_topic_filter(filter: &str) -> Result<(), TopicError> {
    match split_shared(filter) {
        Some(shared) => shared.map(|_| ()),
        None => validate_plain_filter(filter),
    }
}

/// A filter that is not a shared subscription: the wildcard placement rules of §4.7.1.
fn validate_plain_filter(filter: &str) -> Result<(), TopicError> {
    if filter.is_empty() {
        return Err(TopicError::Empty);
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        if level.contains('#') && (level != "#" || levels.peek().is_some()) {
            return Err(TopicError::MisplacedMultiLevelWildcard);
        }
        if level.contains('+') && level != "+" {
            return Err(TopicError::MisplacedSingleLevelWildcard);
        }
    }
    Ok(())
}

/// Splits `$share/{group}/{filter}` into the group and the filter, checking both; `None` when the
/// filter is not a shared subscription.
///
/// # Errors
/// [`TopicError::InvalidShareName`], [`TopicError::MissingSharedFilter`], or the inner filter's
/// error.
pub fn split_shared(filter: &str) -> Option<Result<(&str, &str), TopicError>> {
    let rest = filter.strip_prefix(SHARED_PREFIX)?;
    Some(match rest.split_once('/') {
        None if rest.is_empty() || rest.contains(['+', '#']) => Err(TopicError::InvalidShareName),
        None => Err(TopicError::MissingSharedFilter),
        Some((group, _)) if group.is_empty() || group.contains(['+', '#']) => {
            Err(TopicError::InvalidShareName)
        }
        Some((_, "")) => Err(TopicError::MissingSharedFilter),
        Some((group, inner)) => validate_plain_filter(inner).map(|()| (group, inner)),
    })
}

/// Whether a topic name matches a (non-shared) topic filter, by the rules of §4.7: `+` matches one
/// level, `#` the parent and any number of levels below, and a filter starting with a wildcard
/// does not match a topic starting with `$` (MQTT-4.7.2-1).
///
/// This is the plain reference matcher; the broker's router uses a trie and is tested against it.
#[must_use]
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut filter_levels = filter.split('/');
    let mut topic_levels = topic.split('/');
    loop {
        match (filter_levels.next(), topic_levels.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(f), Some(t)) if f == t => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether every topic that `inner` matches is also matched by `outer` (both non-shared
/// filters): `a/#` covers `a/b/+`, `+/b` covers `x/b`, `a/+` does not cover `a/#`. An
/// authorization rule that covers a subscription decides for everything it can receive.
#[must_use]
pub fn covers(outer: &str, inner: &str) -> bool {
    // MQTT-4.7.2-1: a filter starting with a wildcard matches no `$` topic, so it covers a
    // filter only if that one cannot match `$` topics either.
    if inner.starts_with('$') && (outer.starts_with('+') || outer.starts_with('#')) {
        return false;
    }
    // `#` alone matches every topic, all of which have a first level: `+/#` matches them all
    // too (its `#` matching the parent level).
    if inner == "#" {
        return outer == "#" || outer == "+/#";
    }
    let mut outer_levels = outer.split('/');
    let mut inner_levels = inner.split('/');
    loop {
        match (outer_levels.next(), inner_levels.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(i)) if i != "#" => {}
            (Some(o), Some(i)) if o == i && o != "+" && o != "#" => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether some topic is matched by both filters (non-shared): `a/+` and `+/b` overlap (`a/b`),
/// `a/b` and `a/c` do not.
#[must_use]
pub fn overlaps(a: &str, b: &str) -> bool {
    let a_wild_first = a.starts_with('+') || a.starts_with('#');
    let b_wild_first = b.starts_with('+') || b.starts_with('#');
    // A `$` level first on one side needs a literal `$` level on the other (MQTT-4.7.2-1).
    if (a.starts_with('$') && b_wild_first) || (b.starts_with('$') && a_wild_first) {
        return false;
    }
    let mut a_levels = a.split('/');
    let mut b_levels = b.split('/');
    loop {
        match (a_levels.next(), b_levels.next()) {
            (Some("#"), _) | (_, Some("#")) => return true,
            (Some("+"), Some(_)) | (Some(_), Some("+")) => {}
            (Some(x), Some(y)) if x == y => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covering_and_overlapping() {
        for (outer, inner) in [
            ("#", "a/b"),
            ("a/#", "a"),
            ("a/#", "a/+/c"),
            ("a/+", "a/b"),
            ("+/+", "+/b"),
            ("a/b", "a/b"),
            ("$SYS/#", "$SYS/x"),
        ] {
            assert!(covers(outer, inner), "{outer} covers {inner}");
        }
        for (outer, inner) in
            [("a/+", "a/#"), ("a/b", "a/+"), ("a", "a/b"), ("#", "$SYS/x"), ("+/x", "$SYS/x")]
        {
            assert!(!covers(outer, inner), "{outer} does not cover {inner}");
        }
        for (a, b) in [("a/+", "+/b"), ("#", "x"), ("a/#", "a"), ("$SYS/+", "$SYS/#"), ("x", "x")] {
            assert!(overlaps(a, b) && overlaps(b, a), "{a} overlaps {b}");
        }
        for (a, b) in [("a/b", "a/c"), ("a/+", "a"), ("#", "$SYS/x"), ("a/+/c", "a/b")] {
            assert!(!overlaps(a, b) && !overlaps(b, a), "{a} does not overlap {b}");
        }
    }

    /// `covers` and `overlaps` against their definitions through `matches`, over every filter of
    /// up to three levels and every topic of up to four levels of a small alphabet (`c` stands
    /// for any other level, `$s` for a `$` level).
    #[test]
    fn covering_and_overlapping_agree_with_matching() {
        use alloc::string::String;
        use alloc::vec::Vec;
        fn words(alphabet: &[&str], max: usize, last_only: &str) -> Vec<String> {
            let mut all: Vec<Vec<&str>> = alphabet.iter().map(|l| alloc::vec![*l]).collect();
            let mut frontier = all.clone();
            for _ in 1..max {
                let mut next = Vec::new();
                for w in &frontier {
                    if w.last() == Some(&last_only) {
                        continue;
                    }
                    for l in alphabet {
                        let mut longer = w.clone();
                        longer.push(l);
                        next.push(longer);
                    }
                }
                all.extend(next.iter().cloned());
                frontier = next;
            }
            all.into_iter().map(|w| w.join("/")).collect()
        }
        let filters = words(&["a", "b", "+", "#", "$s"], 3, "#");
        let topics = words(&["a", "b", "c", "$s", ""], 4, "\0");
        for x in &filters {
            for y in &filters {
                let some_topic = topics.iter().any(|t| matches(x, t) && matches(y, t));
                assert_eq!(overlaps(x, y), some_topic, "overlaps({x}, {y})");
                let all_topics = topics.iter().all(|t| !matches(y, t) || matches(x, t));
                assert_eq!(covers(x, y), all_topics, "covers({x}, {y})");
            }
        }
    }

    #[test]
    fn names() {
        assert_eq!(validate_topic_name("a/b"), Ok(()));
        assert_eq!(validate_topic_name("/"), Ok(()));
        // MQTT-4.7.3-1
        assert_eq!(validate_topic_name(""), Err(TopicError::Empty));
        // MQTT-3.3.2-2
        assert_eq!(validate_topic_name("a/+"), Err(TopicError::WildcardInName));
        assert_eq!(validate_topic_name("a#"), Err(TopicError::WildcardInName));
    }

    #[test]
    fn filters() {
        for ok in ["#", "+", "a/#", "+/+", "/+", "a/+/b", "$SYS/#", "$share/g/a/#", "$share/g//"] {
            assert_eq!(validate_topic_filter(ok), Ok(()), "{ok}");
        }
        // MQTT-4.7.1-1
        assert_eq!(validate_topic_filter("a/#/b"), Err(TopicError::MisplacedMultiLevelWildcard));
        assert_eq!(validate_topic_filter("a#"), Err(TopicError::MisplacedMultiLevelWildcard));
        // MQTT-4.7.1-2
        assert_eq!(validate_topic_filter("a+"), Err(TopicError::MisplacedSingleLevelWildcard));
        assert_eq!(validate_topic_filter("+a/b"), Err(TopicError::MisplacedSingleLevelWildcard));
        assert_eq!(validate_topic_filter(""), Err(TopicError::Empty));
        // MQTT-4.8.2-1
        assert_eq!(validate_topic_filter("$share//a"), Err(TopicError::InvalidShareName));
        assert_eq!(validate_topic_filter("$share/g+/a"), Err(TopicError::InvalidShareName));
        // MQTT-4.8.2-2
        assert_eq!(validate_topic_filter("$share/g"), Err(TopicError::MissingSharedFilter));
        assert_eq!(validate_topic_filter("$share/g/"), Err(TopicError::MissingSharedFilter));
        assert_eq!(split_shared("$share/g/a/+"), Some(Ok(("g", "a/+"))));
        assert_eq!(split_shared("$shared/g/a"), None);
    }

    #[test]
    fn matching() {
        assert!(matches("a/b", "a/b"));
        assert!(matches("a/+", "a/b"));
        assert!(!matches("a/+", "a/b/c"));
        assert!(matches("a/#", "a"), "# matches the parent level (MQTT-4.7.1-1 note)");
        assert!(matches("a/#", "a/b/c"));
        assert!(matches("+/+", "/x"));
        assert!(matches("#", "a/b"));
        // MQTT-4.7.2-1
        assert!(!matches("#", "$SYS/x"));
        assert!(!matches("+/x", "$SYS/x"));
        assert!(matches("$SYS/#", "$SYS/x"));
        assert!(!matches("a/b", "a/b/c"));
        assert!(!matches("a/b/c", "a/b"));
    }
}
