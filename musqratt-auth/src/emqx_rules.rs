//! EMQX's rule lists, as an HTTP service answers them and a JWT `acl` claim carries them:
//! `[{"permission": "allow"|"deny", "action": "publish"|"subscribe"|"all", "topic": "filter"}]`,
//! tried in order (the first matching rule decides, [`musqratt_engine::acl`]).
//!
//! Fields this broker cannot enforce (`qos`, `retain`, a topic written `eq filter`) never widen
//! access: an allow rule narrowed by one is left out, a deny rule applies to the whole filter.
//! Any other field makes the list malformed (it might narrow a rule in a way not understood),
//! and a malformed list refuses the client.

use musqratt_engine::acl::{Access, Acl, AclRule, Effect};
use musqratt_engine::proto::topic::validate_topic_filter;
use serde::Deserialize;

/// One rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EmqxRule {
    permission: String,
    action: String,
    topic: String,
    #[serde(default)]
    qos: Option<serde_json::Value>,
    #[serde(default)]
    retain: Option<serde_json::Value>,
}

/// The client's ACL from a rule list, or why the list is malformed.
pub(crate) fn emqx_acl(rules: Vec<EmqxRule>) -> Result<Acl, String> {
    let mut acl = Vec::with_capacity(rules.len());
    for rule in rules {
        let effect = match rule.permission.as_str() {
            "allow" => Effect::Allow,
            "deny" => Effect::Deny,
            other => return Err(format!("permission `{other}`")),
        };
        let access = match rule.action.as_str() {
            "publish" => Access::PUBLISH,
            "subscribe" => Access::SUBSCRIBE,
            "all" => Access::ALL,
            other => return Err(format!("action `{other}`")),
        };
        let (exact, filter) = match rule.topic.strip_prefix("eq ") {
            Some(filter) => (true, filter),
            None => (false, rule.topic.as_str()),
        };
        validate_topic_filter(filter).map_err(|e| format!("topic `{}`: {e}", rule.topic))?;
        let narrowed = exact || rule.qos.is_some() || rule.retain.is_some();
        if effect == Effect::Allow && narrowed {
            continue;
        }
        acl.push(AclRule { effect, access, filter: filter.into() });
    }
    Ok(Acl::new(acl))
}

/// The rules of a JSON value holding a rule list.
pub(crate) fn emqx_acl_from_value(value: &serde_json::Value) -> Result<Acl, String> {
    let rules: Vec<EmqxRule> = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
    emqx_acl(rules)
}
