//! What a client may publish, subscribe to and receive: its access-control list, handed to the
//! engine with the decision that let it in (`AuthDecision::AcceptWithAcl`) and checked
//! by the engine on every PUBLISH, SUBSCRIBE and delivery, without a call out.
//!
//! One rule shape serves every source: Mosquitto's ACL file (`read`/`write`/`readwrite`/`deny`,
//! denials first), EMQX-style rule lists from an HTTP service or a JWT claim (`allow`/`deny`,
//! `publish`/`subscribe`/`all`). The first rule that applies to the action and matches the topic
//! decides; when none does, the action is refused (an ACL lists what is allowed).

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;

use musqratt_proto::bytestring::ByteString;
use musqratt_proto::topic;

use crate::router::SubscriptionTrie;

/// What a rule is about: publishing, and subscribing (which includes receiving what the
/// subscription matches).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Access(u8);

impl Access {
    /// Sending PUBLISH to the broker (Mosquitto's `write`).
    pub const PUBLISH: Self = Self(1);
    /// SUBSCRIBE and receiving messages (Mosquitto's `read`).
    pub const SUBSCRIBE: Self = Self(2);
    /// Both.
    pub const ALL: Self = Self(3);

    /// Whether this access includes `other`.
    #[must_use]
    pub const fn includes(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

/// Whether a rule allows or denies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Effect {
    /// The action is allowed.
    Allow,
    /// The action is refused.
    Deny,
}

/// One rule: for `access` on topics matching `filter`, `effect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclRule {
    /// Allow or deny.
    pub effect: Effect,
    /// The actions the rule is about.
    pub access: Access,
    /// A topic filter (wildcards allowed; `$` topics only by a filter starting with `$`,
    /// MQTT-4.7.2-1).
    pub filter: ByteString,
}

/// Above this many rules, publish and delivery checks walk a trie of the filters instead of
/// trying every rule: one walk per check whatever the number of rules (a client with 1,000
/// rules tried one by one delivered ~11 k msg/s in a smoke run, 1.3 M with the trie,
/// docs/BENCHMARKS.md).
const INDEX_ABOVE: usize = 8;

/// A client's rules, in the order they are tried.
#[derive(Debug, Clone, Default)]
pub struct Acl {
    rules: Vec<AclRule>,
    /// The rules' filters, keyed by rule index, when there are many.
    index: Option<SubscriptionTrie<u32, ()>>,
}

impl PartialEq for Acl {
    fn eq(&self, other: &Self) -> bool {
        self.rules == other.rules
    }
}

impl Eq for Acl {}

impl Acl {
    /// An ACL trying `rules` in order. An empty list refuses everything.
    #[must_use]
    pub fn new(rules: Vec<AclRule>) -> Self {
        let index = (rules.len() > INDEX_ABOVE).then(|| {
            let mut trie = SubscriptionTrie::new();
            for (i, rule) in rules.iter().enumerate() {
                // A filter that is not valid matches nothing, as in the linear check.
                let _ = trie.insert(&rule.filter, u32::try_from(i).unwrap_or(u32::MAX), ());
            }
            trie
        });
        Self { rules, index }
    }

    /// The rules, in order.
    #[must_use]
    pub fn rules(&self) -> &[AclRule] {
        &self.rules
    }

    /// Whether the client may publish to `topic`.
    #[must_use]
    pub fn may_publish(&self, topic: &str) -> bool {
        self.decide(Access::PUBLISH, topic)
    }

    /// Whether the client may receive a message published to `topic` (checked for every
    /// delivery, retained messages included: a subscription to `#` receives only what the
    /// rules let it read).
    #[must_use]
    pub fn may_receive(&self, topic: &str) -> bool {
        self.decide(Access::SUBSCRIBE, topic)
    }

    /// Whether the client may subscribe to `filter` (a plain filter, without `$share/...`).
    ///
    /// Refused when a denying rule covers the whole filter (nothing it matches could be read),
    /// or when no allowing rule overlaps it. A filter only partly readable (`#` with a rule for
    /// `sensors/#`) is accepted: what it may not read is filtered out per delivery, which keeps
    /// Mosquitto configurations where clients subscribe wide working.
    #[must_use]
    pub fn may_subscribe(&self, filter: &str) -> bool {
        for rule in &self.rules {
            if !rule.access.includes(Access::SUBSCRIBE) {
                continue;
            }
            match rule.effect {
                Effect::Deny if topic::covers(&rule.filter, filter) => return false,
                Effect::Allow if topic::overlaps(&rule.filter, filter) => return true,
                _ => {}
            }
        }
        false
    }

    fn decide(&self, access: Access, topic_name: &str) -> bool {
        if let Some(index) = &self.index {
            // The first rule in order among those that match and are about this access.
            let mut first = u32::MAX;
            index.for_each_subscriber(topic_name, |i, ()| {
                if i < first && self.rules[i as usize].access.includes(access) {
                    first = i;
                }
            });
            return self.rules.get(first as usize).is_some_and(|r| r.effect == Effect::Allow);
        }
        self.rules
            .iter()
            .find(|rule| rule.access.includes(access) && rule_matches(&rule.filter, topic_name))
            .is_some_and(|rule| rule.effect == Effect::Allow)
    }
}

/// A session's ACL, with the last publish and the last receive decision remembered: a client
/// mostly publishes to, and receives from, the same few topics, and a long ACL (1,000 rules,
/// walked as a trie) cost up to 17 % of QoS 0 throughput when asked twice per message
/// (docs/BENCHMARKS.md). Boxed in the session: the session itself grows by no more than the
/// `Arc` it held before, and only sessions with an ACL pay for the rest.
#[derive(Debug, Clone)]
pub(crate) struct SessionAcl {
    acl: Arc<Acl>,
    publish: LastDecision,
    receive: LastDecision,
}

/// The longest topic whose decision is remembered; longer ones are decided every time.
const REMEMBERED_TOPIC: usize = 46;

/// One remembered decision: the topic (its bytes, compared whole: no hash that a client could
/// collide) and the answer. `len` 0 remembers nothing (a topic name is never empty,
/// MQTT-4.7.3-1).
#[derive(Debug, Clone, Copy)]
struct LastDecision {
    len: u8,
    allowed: bool,
    topic: [u8; REMEMBERED_TOPIC],
}

impl LastDecision {
    const NONE: Self = Self { len: 0, allowed: false, topic: [0; REMEMBERED_TOPIC] };

    fn decide(&mut self, topic_name: &str, decide: impl FnOnce() -> bool) -> bool {
        let bytes = topic_name.as_bytes();
        let len = usize::from(self.len);
        if len != 0 && bytes.len() == len && self.topic[..len] == *bytes {
            return self.allowed;
        }
        let allowed = decide();
        if let Ok(len) = u8::try_from(bytes.len())
            && usize::from(len) <= REMEMBERED_TOPIC
        {
            self.topic[..bytes.len()].copy_from_slice(bytes);
            self.len = len;
            self.allowed = allowed;
        }
        allowed
    }
}

impl SessionAcl {
    /// A session's view of `acl`, remembering nothing yet.
    pub(crate) fn new(acl: Arc<Acl>) -> Box<Self> {
        Box::new(Self { acl, publish: LastDecision::NONE, receive: LastDecision::NONE })
    }

    /// [`Acl::may_publish`], answered from memory for the topic asked last.
    pub(crate) fn may_publish(&mut self, topic_name: &str) -> bool {
        let acl = &self.acl;
        self.publish.decide(topic_name, || acl.may_publish(topic_name))
    }

    /// [`Acl::may_receive`], answered from memory for the topic asked last.
    pub(crate) fn may_receive(&mut self, topic_name: &str) -> bool {
        let acl = &self.acl;
        self.receive.decide(topic_name, || acl.may_receive(topic_name))
    }

    /// [`Acl::may_subscribe`] (asked once per SUBSCRIBE: nothing remembered).
    pub(crate) fn may_subscribe(&self, filter: &str) -> bool {
        self.acl.may_subscribe(filter)
    }
}

/// `topic::matches` with the shapes most rules have taken first, without splitting the topic
/// into levels: a filter without wildcards (equal strings) and one whose only wildcard is its
/// final `#` (a prefix). Each message is checked twice (publish, then each delivery), which
/// made the general matcher a measurable share of QoS 0 throughput (docs/BENCHMARKS.md).
fn rule_matches(filter: &str, topic_name: &str) -> bool {
    let bytes = filter.as_bytes();
    match filter.find(['+', '#']) {
        None => filter == topic_name,
        // `#` alone: every topic but the `$` ones (MQTT-4.7.2-1).
        Some(0) if filter.len() == 1 && bytes[0] == b'#' => !topic_name.starts_with('$'),
        // `prefix/#`: the prefix itself and everything below it.
        Some(at) if at + 1 == filter.len() && bytes[at] == b'#' && bytes[at - 1] == b'/' => {
            let prefix = &filter[..at - 1];
            topic_name.starts_with(prefix)
                && (topic_name.len() == prefix.len() || topic_name.as_bytes()[prefix.len()] == b'/')
        }
        _ => topic::matches(filter, topic_name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(effect: Effect, access: Access, filter: &'static str) -> AclRule {
        AclRule { effect, access, filter: ByteString::from_static(filter) }
    }

    #[test]
    fn first_applicable_rule_decides() {
        let acl = Acl::new(alloc::vec![
            rule(Effect::Deny, Access::ALL, "secret/#"),
            rule(Effect::Allow, Access::SUBSCRIBE, "sensors/#"),
            rule(Effect::Allow, Access::PUBLISH, "sensors/me/+"),
        ]);
        assert!(acl.may_publish("sensors/me/t"));
        assert!(!acl.may_publish("sensors/other/t"));
        assert!(acl.may_receive("sensors/other/t"));
        assert!(!acl.may_receive("secret/x"));
        assert!(!acl.may_publish("secret/x"));
        assert!(!acl.may_publish("elsewhere"));
        // A wide subscription is accepted and filtered per delivery; one wholly denied or
        // matching nothing allowed is refused.
        assert!(acl.may_subscribe("#"));
        assert!(acl.may_subscribe("sensors/+/t"));
        assert!(!acl.may_subscribe("secret/+"));
        assert!(!acl.may_subscribe("other/#"));
        assert!(!Acl::default().may_subscribe("#"));
    }

    /// The trie index answers as the rules tried in order do, over many rules and topics.
    #[test]
    fn index_agrees_with_rules_in_order() {
        use alloc::format;
        use alloc::string::String;
        let filters = ["a/#", "a/+/c", "+/b", "#", "a/b", "$s/#", "+/+/c", "b/#", "a", "+"];
        let effects = [Effect::Allow, Effect::Deny];
        let accesses = [Access::PUBLISH, Access::SUBSCRIBE, Access::ALL];
        let mut rules = Vec::new();
        for i in 0..30 {
            rules.push(AclRule {
                effect: effects[i % 2],
                access: accesses[i % 3],
                filter: ByteString::from(filters[(i * 7) % filters.len()]),
            });
        }
        let topics: Vec<String> = ["a", "b", "c", "$s"]
            .iter()
            .flat_map(|x| ["", "/b", "/b/c", "/x/c", "/a"].iter().map(move |y| format!("{x}{y}")))
            .collect();
        for n in [9, 12, 20, 30] {
            let indexed = Acl::new(rules[..n].to_vec());
            assert!(indexed.index.is_some());
            let linear = Acl { rules: rules[..n].to_vec(), index: None };
            for topic_name in &topics {
                assert_eq!(indexed.may_publish(topic_name), linear.may_publish(topic_name));
                assert_eq!(indexed.may_receive(topic_name), linear.may_receive(topic_name));
            }
        }
    }

    /// The fast shapes of `rule_matches` agree with the reference matcher, over every filter
    /// of up to three levels and every topic of up to three levels of a small alphabet.
    #[test]
    fn rule_matches_agrees_with_topic_matches() {
        use alloc::string::String;
        fn words(alphabet: &[&str], max: usize) -> Vec<String> {
            let mut all: Vec<String> = alphabet.iter().map(|l| String::from(*l)).collect();
            let mut frontier = all.clone();
            for _ in 1..max {
                let next: Vec<String> = frontier
                    .iter()
                    .filter(|w| !w.ends_with('#'))
                    .flat_map(|w| alphabet.iter().map(move |l| alloc::format!("{w}/{l}")))
                    .collect();
                all.extend(next.iter().cloned());
                frontier = next;
            }
            all
        }
        let filters = words(&["a", "ab", "+", "#", "$s", ""], 3);
        let topics = words(&["a", "ab", "b", "$s", ""], 3);
        for filter in &filters {
            for topic_name in &topics {
                assert_eq!(
                    rule_matches(filter, topic_name),
                    topic::matches(filter, topic_name),
                    "{filter} / {topic_name}"
                );
            }
        }
    }

    /// A remembered decision is the decision: over a sequence of topics that repeat, change,
    /// differ in their last byte or are too long to remember, the session's answers are the
    /// ACL's.
    #[test]
    fn remembered_decisions_agree_with_the_acl() {
        use alloc::format;
        use alloc::string::String;
        let long = "a/".repeat(30);
        let mut rules = Vec::new();
        for i in 0..20 {
            rules.push(rule(
                Effect::Allow,
                Access::PUBLISH,
                Box::leak(format!("p/{i}/+").into_boxed_str()),
            ));
        }
        rules.push(rule(Effect::Deny, Access::ALL, "a/#"));
        rules.push(rule(Effect::Allow, Access::SUBSCRIBE, "r/#"));
        let acl = Arc::new(Acl::new(rules));
        let mut session = SessionAcl::new(acl.clone());
        let topics: Vec<String> = [
            "p/1/x", "p/1/x", "p/1/y", "p/10/x", "p/1/x", "r/1", "r/1", "r/2", "p/2/x", "p/2/xx",
            "p/2/x", &long, &long, "a/b", "r/1",
        ]
        .iter()
        .map(|t| String::from(*t))
        .collect();
        for topic_name in topics.iter().chain(topics.iter().rev()) {
            assert_eq!(
                session.may_publish(topic_name),
                acl.may_publish(topic_name),
                "{topic_name}"
            );
            assert_eq!(
                session.may_receive(topic_name),
                acl.may_receive(topic_name),
                "{topic_name}"
            );
        }
    }

    #[test]
    fn dollar_topics_need_a_dollar_rule() {
        let acl = Acl::new(alloc::vec![rule(Effect::Allow, Access::ALL, "#")]);
        assert!(!acl.may_receive("$SYS/broker/uptime"));
        assert!(!acl.may_subscribe("$SYS/#"));
        let acl = Acl::new(alloc::vec![rule(Effect::Allow, Access::SUBSCRIBE, "$SYS/#")]);
        assert!(acl.may_receive("$SYS/broker/uptime"));
    }
}
