//! The transcript script language (see `tests/transcripts/README.md`): parsing and running a
//! script on a [`Simulator`], and rendering what happened.

use core::time::Duration;

use bytes::{Bytes, BytesMut};
use musqratt_engine::acl::{Access, Acl, AclRule, Effect};
use musqratt_engine::proto::bytestring::ByteString;
use musqratt_engine::proto::mqtt::{
    Auth, Connect, Disconnect, LastWill, Packet, PubResponse, Publish, ReasonCode, RetainHandling,
    Subscribe, SubscriptionOptions, Unsubscribe, WillProperties,
};
use musqratt_engine::proto::{PacketId, ProtocolVersion, QoS};
use musqratt_engine::{AuthDecision, BacklogConfig, Config, Instant};

use musqratt_engine::proto::sn;

use crate::sim::{Line, Simulator, SnClient};

/// What a script produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Commands, client-visible lines and engine events: what is snapshotted.
    pub full: String,
    /// Commands and client-visible lines only: what must not depend on the shard count.
    pub client_visible: String,
}

/// Runs a script on `shards` shards. Connections without an explicit `shard=` go to the shards
/// round robin.
///
/// # Errors
/// A script line that does not parse, with its line number.
pub fn run(script: &str, shards: u16) -> Result<Output, String> {
    let mut runner = Runner { config: Config::default(), sim: None, shards, next_shard: 0 };
    let mut full = String::new();
    let mut visible = String::new();
    for (number, raw) in script.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let tokens = tokenize(line).map_err(|e| format!("line {}: {e}", number + 1))?;
        runner.command(&tokens).map_err(|e| format!("line {}: {e}: {line}", number + 1))?;
        let lines = runner.sim.as_mut().map(Simulator::take_lines).unwrap_or_default();
        full.push_str(&format!("> {line}\n"));
        visible.push_str(&format!("> {line}\n"));
        render(&lines, &mut full, &mut visible);
    }
    Ok(Output { full, client_visible: visible })
}

/// Groups lines by the instant they happened at and, within an instant, by client (the order
/// between different clients at one instant is not observable by any of them, and depends on
/// which shard each sits on); events come last.
fn render(lines: &[Line], full: &mut String, visible: &mut String) {
    let mut index = 0;
    while index < lines.len() {
        let at = lines[index].at;
        let end = lines[index..].iter().position(|l| l.at != at).map_or(lines.len(), |p| index + p);
        let group = &lines[index..end];
        let mut clients: Vec<&Line> = group.iter().filter(|l| l.client.is_some()).collect();
        clients.sort_by(|a, b| a.client.cmp(&b.client));
        if let Some(at) = at {
            let header = format!("@ {}\n", time(at));
            full.push_str(&header);
            if !clients.is_empty() {
                visible.push_str(&header);
            }
        }
        for line in &clients {
            full.push_str(&line.text);
            full.push('\n');
            visible.push_str(&line.text);
            visible.push('\n');
        }
        for line in group.iter().filter(|l| l.client.is_none()) {
            full.push_str(&line.text);
            full.push('\n');
        }
        index = end;
    }
}

fn time(at: Instant) -> String {
    let micros = at.as_micros();
    if micros % 1_000_000 == 0 {
        format!("{}s", micros / 1_000_000)
    } else {
        format!("{}.{:03}s", micros / 1_000_000, (micros % 1_000_000) / 1000)
    }
}

struct Runner {
    config: Config,
    sim: Option<Simulator>,
    shards: u16,
    next_shard: usize,
}

/// A token: `key=value` or a bare word; quoted values have their quotes removed.
#[derive(Debug, Clone)]
struct Token {
    key: Option<String>,
    value: String,
}

fn tokenize(line: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(tokens);
        }
        let mut key = None;
        let mut value = String::new();
        loop {
            match chars.peek().copied() {
                None => break,
                Some(c) if c.is_whitespace() => break,
                Some('=') if key.is_none() => {
                    chars.next();
                    key = Some(core::mem::take(&mut value));
                }
                Some('"') => {
                    chars.next();
                    loop {
                        match chars.next() {
                            None => return Err("unterminated string".into()),
                            Some('"') => break,
                            Some('\\') => match chars.next() {
                                Some('n') => value.push('\n'),
                                Some(c) => value.push(c),
                                None => return Err("unterminated escape".into()),
                            },
                            Some(c) => value.push(c),
                        }
                    }
                }
                Some(c) => {
                    chars.next();
                    value.push(c);
                }
            }
        }
        tokens.push(Token { key, value });
    }
}

fn number<T: core::str::FromStr>(text: &str) -> Result<T, String> {
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).map_err(|e| e.to_string())?.to_string(),
        None => text.to_owned(),
    };
    parsed.parse().map_err(|_| format!("not a number: {text}"))
}

fn flag(text: &str) -> Result<bool, String> {
    match text {
        "1" | "true" | "yes" => Ok(true),
        "0" | "false" | "no" => Ok(false),
        _ => Err(format!("not a boolean: {text}")),
    }
}

fn qos(text: &str) -> Result<QoS, String> {
    QoS::from_bits(number(text)?).ok_or_else(|| format!("bad QoS {text}"))
}

fn packet_id(text: &str) -> Result<PacketId, String> {
    PacketId::new(number(text)?).ok_or_else(|| "packet id 0".to_owned())
}

fn reason(text: &str) -> Result<ReasonCode, String> {
    number(text).map(ReasonCode)
}

/// `45s`, `500ms`, `2m`, `1h`.
fn duration(text: &str) -> Result<Duration, String> {
    let (digits, unit) =
        text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let value: u64 = number(digits)?;
    Ok(match unit {
        "ms" => Duration::from_millis(value),
        "s" | "" => Duration::from_secs(value),
        "m" => Duration::from_secs(value * 60),
        "h" => Duration::from_secs(value * 3600),
        _ => return Err(format!("bad duration {text}")),
    })
}

fn user_property(text: &str) -> (ByteString, ByteString) {
    let (name, value) = text.split_once(':').unwrap_or((text, ""));
    (name.into(), value.into())
}

fn bytes(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

impl Runner {
    fn sim(&mut self) -> &mut Simulator {
        let (config, shards) = (&self.config, self.shards);
        self.sim.get_or_insert_with(|| Simulator::new(config, shards))
    }

    fn command(&mut self, tokens: &[Token]) -> Result<(), String> {
        let word = |i: usize| tokens.get(i).map(|t| t.value.as_str()).unwrap_or_default();
        match word(0) {
            "config" => self.configure(&tokens[1..]),
            "connect" | "open" => self.connect(word(0) == "connect", word(1), &tokens[2..]),
            "send" => self.send(word(1), &tokens[2..]),
            "disconnect" => {
                let packet = disconnect(&tokens[2..])?;
                let name = word(1).to_owned();
                self.sim().send(&name, &packet);
                Ok(())
            }
            "close" => {
                let name = word(1).to_owned();
                self.sim().close(&name);
                Ok(())
            }
            "pause" => {
                let name = word(1).to_owned();
                self.sim().pause(&name);
                Ok(())
            }
            "resume" => {
                let name = word(1).to_owned();
                self.sim().resume(&name);
                Ok(())
            }
            "snconnect" | "snopen" => self.sn_open(word(0) == "snconnect", word(1), &tokens[2..]),
            "snport" => {
                let name = word(1).to_owned();
                let sim = self.sim();
                let client = sim.sn_client(&name).cloned().ok_or("unknown SN client")?;
                sim.sn_open(&name, client);
                Ok(())
            }
            "snsend" => self.sn_send(word(1), &tokens[2..]),
            "advance" => {
                let by = duration(word(1))?;
                self.sim().advance(by);
                Ok(())
            }
            "shutdown" => {
                self.sim().shutdown();
                Ok(())
            }
            "auth" => {
                let decision = match word(2) {
                    "accept" => AuthDecision::Accept,
                    "refuse" => AuthDecision::Refuse(reason(word(3))?),
                    "continue" => AuthDecision::Continue(bytes(word(3))),
                    "acl" => AuthDecision::AcceptWithAcl(acl(word(3))?),
                    "until" => AuthDecision::AcceptFor {
                        acl: if tokens.len() > 4 { Some(acl(word(4))?) } else { None },
                        valid_for: duration(word(3))?,
                    },
                    "final" => AuthDecision::AcceptWithData { acl: None, data: bytes(word(3)) },
                    other => return Err(format!("unknown auth decision {other}")),
                };
                let name = word(1).to_owned();
                self.sim().queue_auth(&name, decision);
                Ok(())
            }
            other => Err(format!("unknown command {other}")),
        }
    }

    fn configure(&mut self, tokens: &[Token]) -> Result<(), String> {
        if self.sim.is_some() {
            return Err("config must come before the first connection".into());
        }
        let c = &mut self.config;
        for token in tokens {
            let v = token.value.as_str();
            match token.key.as_deref().unwrap_or_default() {
                "max_packet_size" => c.max_packet_size = number(v)?,
                "receive_maximum" => c.receive_maximum = number(v)?,
                "topic_alias_maximum" => c.topic_alias_maximum = number(v)?,
                "maximum_qos" => c.maximum_qos = qos(v)?,
                "retain_available" => c.retain_available = flag(v)?,
                "wildcard_available" => c.wildcard_subscription_available = flag(v)?,
                "subscription_ids_available" => c.subscription_identifiers_available = flag(v)?,
                "shared_available" => c.shared_subscription_available = flag(v)?,
                "server_keep_alive" => c.server_keep_alive = Some(number(v)?),
                "max_session_expiry" => c.max_session_expiry = number(v)?,
                "v3_session_expiry" => c.v3_session_expiry = number(v)?,
                "max_queued_messages" => c.max_queued_messages = number(v)?,
                "max_queued_bytes" => c.max_queued_bytes = number(v)?,
                "max_unwritten_bytes" => c.max_unwritten_bytes = number(v)?,
                "connect_timeout" => c.connect_timeout = duration(v)?,
                "server_reference" => c.server_reference = Some(v.to_owned()),
                "authenticate" => c.authenticate = flag(v)?,
                "strict_v31_client_id" => c.strict_v31_client_id = flag(v)?,
                "backlog.max_messages_per_topic" => {
                    c.backlog = BacklogConfig::new(number(v)?, c.backlog.max_bytes_per_topic);
                    if c.backlog.max_bytes_per_topic == 0 {
                        c.backlog = BacklogConfig::new(c.backlog.max_messages_per_topic, 1 << 20);
                    }
                }
                "backlog.max_bytes_per_topic" => {
                    c.backlog = BacklogConfig::new(c.backlog.max_messages_per_topic, number(v)?);
                }
                "seed" => c.seed = number(v)?,
                "sn_predefined" => {
                    let (id, topic) = v.split_once(':').ok_or("sn_predefined=ID:TOPIC")?;
                    c.sn_predefined_topics.insert(number(id)?, topic.to_owned());
                }
                "sn_gateway_id" => c.sn_gateway_id = number(v)?,
                "sn_retry_interval" => c.sn_retry_interval = duration(v)?,
                "sn_max_retries" => c.sn_max_retries = number(v)?,
                "sn_advertise_interval" => c.sn_advertise_interval = Some(duration(v)?),
                "sn_max_registered_topics" => c.sn_max_registered_topics = number(v)?,
                "sn_max_inflight" => c.sn_max_inflight = number(v)?,
                other => return Err(format!("unknown config key {other}")),
            }
        }
        Ok(())
    }

    fn connect(&mut self, send: bool, name: &str, tokens: &[Token]) -> Result<(), String> {
        let mut version = ProtocolVersion::V5;
        let mut connect = Connect::new(version, name);
        let mut shard = None;
        let mut will_properties = WillProperties::default();
        let mut max_packet = u32::MAX;
        for token in tokens {
            let v = token.value.as_str();
            let p = &mut connect.properties;
            match token.key.as_deref() {
                None => {
                    version = match v {
                        "v3.1" | "v31" => ProtocolVersion::V3_1,
                        "v3.1.1" | "v311" | "v4" => ProtocolVersion::V3_1_1,
                        "v5" => ProtocolVersion::V5,
                        other => return Err(format!("unknown version {other}")),
                    }
                }
                Some("id") => connect.client_id = v.into(),
                Some("clean") => connect.clean_start = flag(v)?,
                Some("keepalive") => connect.keep_alive = number(v)?,
                Some("session_expiry") => p.session_expiry_interval = Some(number(v)?),
                Some("receive_max") => p.receive_maximum = Some(number(v)?),
                Some("max_packet") => {
                    max_packet = number(v)?;
                    p.maximum_packet_size = Some(max_packet);
                }
                Some("alias_max") => p.topic_alias_maximum = Some(number(v)?),
                Some("auth_method") => p.authentication_method = Some(v.into()),
                Some("auth_data") => p.authentication_data = Some(bytes(v)),
                Some("user") => connect.username = Some(v.into()),
                Some("pass") => connect.password = Some(bytes(v)),
                Some("will") => {
                    let parts: Vec<&str> = v.split(':').collect();
                    let [topic, payload, q, retain, rest @ ..] = parts.as_slice() else {
                        return Err("will=topic:payload:qos:retain[:delay]".into());
                    };
                    if let Some(delay) = rest.first() {
                        will_properties.will_delay_interval = Some(number(delay)?);
                    }
                    connect.will = Some(LastWill {
                        topic: (*topic).into(),
                        payload: bytes(payload),
                        qos: qos(q)?,
                        retain: flag(retain)?,
                        properties: WillProperties::default(),
                    });
                }
                Some("will_expiry") => will_properties.message_expiry_interval = Some(number(v)?),
                Some("shard") => shard = Some(number::<usize>(v)?),
                Some(other) => return Err(format!("unknown connect option {other}")),
            }
        }
        connect.protocol = version;
        if let Some(will) = &mut connect.will {
            will.properties = will_properties;
        }
        let shard = shard.unwrap_or_else(|| {
            self.next_shard += 1;
            self.next_shard - 1
        });
        let sim = self.sim();
        sim.open(name, shard, version, max_packet);
        if send {
            sim.send(name, &Packet::Connect(Box::new(connect)));
        }
        Ok(())
    }

    fn send(&mut self, name: &str, tokens: &[Token]) -> Result<(), String> {
        let kind = tokens.first().map(|t| t.value.as_str()).unwrap_or_default();
        let rest = tokens.get(1..).unwrap_or_default();
        let positional = |i: usize| rest.iter().filter(|t| t.key.is_none()).nth(i);
        let packet = match kind {
            "raw" => {
                let mut raw = BytesMut::new();
                for token in rest {
                    raw.extend_from_slice(&[u8::from_str_radix(&token.value, 16)
                        .map_err(|_| format!("bad hex byte {}", token.value))?]);
                }
                self.sim().send_raw(name, raw);
                return Ok(());
            }
            "PUBLISH" => publish(rest)?,
            "PUBACK" | "PUBREC" | "PUBREL" | "PUBCOMP" => {
                let id = packet_id(&positional(0).ok_or("packet id missing")?.value)?;
                let mut response = PubResponse::new(id);
                for token in rest.iter().filter(|t| t.key.as_deref() == Some("reason")) {
                    response.reason_code = reason(&token.value)?;
                }
                match kind {
                    "PUBACK" => Packet::PubAck(response),
                    "PUBREC" => Packet::PubRec(response),
                    "PUBREL" => Packet::PubRel(response),
                    _ => Packet::PubComp(response),
                }
            }
            "SUBSCRIBE" => subscribe(rest)?,
            "UNSUBSCRIBE" => {
                let mut unsubscribe = Unsubscribe {
                    packet_id: PacketId::MIN,
                    filters: Vec::new(),
                    properties: Default::default(),
                };
                for token in rest {
                    match token.key.as_deref() {
                        Some("id") => unsubscribe.packet_id = packet_id(&token.value)?,
                        None => unsubscribe.filters.push(token.value.as_str().into()),
                        Some(other) => return Err(format!("unknown option {other}")),
                    }
                }
                Packet::Unsubscribe(unsubscribe)
            }
            "PINGREQ" => Packet::PingReq,
            "DISCONNECT" => disconnect(rest)?,
            "AUTH" => {
                let mut auth = Auth::default();
                for token in rest {
                    let v = token.value.as_str();
                    match token.key.as_deref() {
                        Some("reason") => auth.reason_code = reason(v)?,
                        Some("method") => auth.properties.authentication_method = Some(v.into()),
                        Some("data") => auth.properties.authentication_data = Some(bytes(v)),
                        _ => return Err(format!("unknown AUTH option {v}")),
                    }
                }
                Packet::Auth(auth)
            }
            "CONNECT" => {
                // A second CONNECT on the same connection: a minimal one of its version.
                let version = positional(0).map_or("v5", |t| t.value.as_str());
                let version = match version {
                    "v3.1.1" => ProtocolVersion::V3_1_1,
                    "v3.1" => ProtocolVersion::V3_1,
                    _ => ProtocolVersion::V5,
                };
                Packet::Connect(Box::new(Connect::new(version, name)))
            }
            other => return Err(format!("unknown packet {other}")),
        };
        self.sim().send(name, &packet);
        Ok(())
    }
}

fn disconnect(tokens: &[Token]) -> Result<Packet, String> {
    let mut disconnect = Disconnect::new(ReasonCode::SUCCESS);
    for token in tokens {
        match token.key.as_deref() {
            Some("reason") => disconnect.reason_code = reason(&token.value)?,
            Some("session_expiry") => {
                disconnect.properties.session_expiry_interval = Some(number(&token.value)?);
            }
            _ => return Err(format!("unknown DISCONNECT option {}", token.value)),
        }
    }
    Ok(Packet::Disconnect(disconnect))
}

fn publish(tokens: &[Token]) -> Result<Packet, String> {
    let mut publish = Publish::new(ByteString::new(), Bytes::new());
    let mut id = None;
    for token in tokens {
        let v = token.value.as_str();
        let p = &mut publish.properties;
        match token.key.as_deref() {
            None | Some("topic") => publish.topic = v.into(),
            Some("qos") => publish.qos = qos(v)?,
            Some("id") => id = Some(packet_id(v)?),
            Some("retain") => publish.retain = flag(v)?,
            Some("dup") => publish.dup = flag(v)?,
            Some("payload") => publish.payload = bytes(v),
            Some("expiry") => p.message_expiry_interval = Some(number(v)?),
            Some("alias") => p.topic_alias = Some(number(v)?),
            Some("response_topic") => p.response_topic = Some(v.into()),
            Some("correlation") => p.correlation_data = Some(bytes(v)),
            Some("content_type") => p.content_type = Some(v.into()),
            Some("format") => p.payload_format_indicator = Some(flag(v)?),
            Some("user") => p.user_properties.push(user_property(v)),
            Some(other) => return Err(format!("unknown PUBLISH option {other}")),
        }
    }
    if publish.qos != QoS::AtMostOnce {
        publish.packet_id = Some(id.unwrap_or(PacketId::MIN));
    }
    Ok(Packet::Publish(publish))
}

fn subscribe(tokens: &[Token]) -> Result<Packet, String> {
    let mut subscribe =
        Subscribe { packet_id: PacketId::MIN, filters: Vec::new(), properties: Default::default() };
    for token in tokens {
        let v = token.value.as_str();
        let last = subscribe.filters.last_mut().map(|(_, options)| options);
        match (token.key.as_deref(), last) {
            (None, _) => subscribe.filters.push((v.into(), SubscriptionOptions::default())),
            (Some("id"), _) => subscribe.packet_id = packet_id(v)?,
            (Some("subid"), _) => subscribe.properties.subscription_identifier = Some(number(v)?),
            (Some("qos"), Some(o)) => o.qos = qos(v)?,
            (Some("nl"), Some(o)) => o.no_local = flag(v)?,
            (Some("rap"), Some(o)) => o.retain_as_published = flag(v)?,
            (Some("rh"), Some(o)) => {
                o.retain_handling = match v {
                    "0" => RetainHandling::SendAtSubscribe,
                    "1" => RetainHandling::SendIfNew,
                    "2" => RetainHandling::DoNotSend,
                    _ => return Err(format!("bad retain handling {v}")),
                };
            }
            (Some(other), _) => return Err(format!("unknown SUBSCRIBE option {other}")),
        }
    }
    Ok(Packet::Subscribe(subscribe))
}

impl Runner {
    fn sn_open(&mut self, send: bool, name: &str, tokens: &[Token]) -> Result<(), String> {
        let mut connect =
            sn::Connect { will: false, clean_session: true, duration: 0, client_id: name.into() };
        let mut client = SnClient {
            peer: musqratt_engine::PeerId(0),
            shard: 0,
            node: None,
            will: None,
            auto_regack: true,
        };
        let mut shard = None;
        for token in tokens {
            let v = token.value.as_str();
            match token.key.as_deref() {
                Some("id") => connect.client_id = v.into(),
                Some("clean") => connect.clean_session = flag(v)?,
                Some("duration" | "keepalive") => connect.duration = number(v)?,
                Some("willflag") => connect.will = flag(v)?,
                Some("will") => {
                    let parts: Vec<&str> = v.split(':').collect();
                    let [topic, payload, q, retain] = parts.as_slice() else {
                        return Err("will=topic:payload:qos:retain".into());
                    };
                    connect.will = true;
                    let topic = sn::WillTopic {
                        qos: qos(q)?,
                        retain: flag(retain)?,
                        topic: (*topic).into(),
                    };
                    client.will = Some((topic, bytes(payload)));
                }
                Some("node") => client.node = Some(bytes(v)),
                Some("autoregack") => client.auto_regack = flag(v)?,
                Some("shard") => shard = Some(number::<usize>(v)?),
                _ => return Err(format!("unknown snconnect option {v}")),
            }
        }
        client.shard = shard.unwrap_or_else(|| {
            self.next_shard += 1;
            self.next_shard - 1
        });
        let sim = self.sim();
        sim.sn_open(name, client);
        if send {
            sim.sn_send(name, &sn::Message::Connect(connect));
        }
        Ok(())
    }

    fn sn_send(&mut self, name: &str, tokens: &[Token]) -> Result<(), String> {
        let kind = tokens.first().map(|t| t.value.as_str()).unwrap_or_default();
        let rest = tokens.get(1..).unwrap_or_default();
        let get = |key: &str| {
            rest.iter().find(|t| t.key.as_deref() == Some(key)).map(|t| t.value.as_str())
        };
        let num = |key: &str| -> Result<u16, String> { get(key).map_or(Ok(0), number) };
        let msg_id = || num("msg_id").map(sn::MsgId);
        let rc = || -> Result<sn::ReturnCode, String> {
            sn::ReturnCode::from_u8(get("rc").map_or(Ok(0), number)?).map_err(|e| e.to_string())
        };
        let short = |v: &str| -> Result<[u8; 2], String> {
            v.as_bytes().try_into().map_err(|_| "a short topic has 2 characters".to_owned())
        };
        let sub_topic = || -> Result<sn::SubscribeTopic, String> {
            Ok(if let Some(name) = get("name") {
                sn::SubscribeTopic::Name(name.into())
            } else if let Some(id) = get("predefined") {
                sn::SubscribeTopic::Predefined(sn::TopicId(number(id)?))
            } else {
                sn::SubscribeTopic::Short(short(
                    get("short").ok_or("name=, predefined= or short=")?,
                )?)
            })
        };
        let message = match kind {
            "raw" => {
                let mut raw = BytesMut::new();
                for token in rest {
                    raw.extend_from_slice(&[u8::from_str_radix(&token.value, 16)
                        .map_err(|_| format!("bad hex byte {}", token.value))?]);
                }
                self.sim().sn_send_raw(name, raw.freeze());
                return Ok(());
            }
            "CONNECT" => sn::Message::Connect(sn::Connect {
                will: get("willflag").map_or(Ok(false), flag)?,
                clean_session: get("clean").map_or(Ok(true), flag)?,
                duration: num("duration")?,
                client_id: get("id").unwrap_or(name).into(),
            }),
            "SEARCHGW" => {
                sn::Message::SearchGw(sn::SearchGw { radius: get("radius").map_or(Ok(0), number)? })
            }
            "WILLTOPIC" | "WILLTOPICUPD" => {
                let topic = match get("topic") {
                    Some(topic) => Some(sn::WillTopic {
                        qos: qos(get("qos").unwrap_or("0"))?,
                        retain: get("retain").map_or(Ok(false), flag)?,
                        topic: topic.into(),
                    }),
                    None => None,
                };
                if kind == "WILLTOPIC" {
                    sn::Message::WillTopic(topic)
                } else {
                    sn::Message::WillTopicUpd(topic)
                }
            }
            "WILLMSG" => sn::Message::WillMsg(bytes(get("payload").unwrap_or_default())),
            "WILLMSGUPD" => sn::Message::WillMsgUpd(bytes(get("payload").unwrap_or_default())),
            "REGISTER" => sn::Message::Register(sn::Register {
                topic_id: sn::TopicId(num("topic_id")?),
                msg_id: msg_id()?,
                topic_name: get("topic").ok_or("topic= missing")?.into(),
            }),
            "REGACK" => sn::Message::RegAck(sn::RegAck {
                topic_id: sn::TopicId(num("topic_id")?),
                msg_id: msg_id()?,
                return_code: rc()?,
            }),
            "PUBLISH" => {
                let topic = if let Some(id) = get("topic_id") {
                    sn::PublishTopic::Normal(sn::TopicId(number(id)?))
                } else if let Some(id) = get("predefined") {
                    sn::PublishTopic::Predefined(sn::TopicId(number(id)?))
                } else {
                    sn::PublishTopic::Short(short(
                        get("short").ok_or("topic_id=, predefined= or short=")?,
                    )?)
                };
                let q = match get("qos").unwrap_or("0") {
                    "-1" => sn::SnQoS::MinusOne,
                    other => sn::SnQoS::from_bits(number(other)?),
                };
                sn::Message::Publish(sn::Publish {
                    dup: get("dup").map_or(Ok(false), flag)?,
                    qos: q,
                    retain: get("retain").map_or(Ok(false), flag)?,
                    topic,
                    msg_id: msg_id()?,
                    data: bytes(get("data").unwrap_or_default()),
                })
            }
            "PUBACK" => sn::Message::PubAck(sn::PubAck {
                topic_id: sn::TopicId(num("topic_id")?),
                msg_id: msg_id()?,
                return_code: rc()?,
            }),
            "PUBREC" => sn::Message::PubRec(msg_id()?),
            "PUBREL" => sn::Message::PubRel(msg_id()?),
            "PUBCOMP" => sn::Message::PubComp(msg_id()?),
            "SUBSCRIBE" => sn::Message::Subscribe(sn::Subscribe {
                dup: false,
                qos: qos(get("qos").unwrap_or("0"))?,
                msg_id: msg_id()?,
                topic: sub_topic()?,
            }),
            "UNSUBSCRIBE" => {
                sn::Message::Unsubscribe(sn::Unsubscribe { msg_id: msg_id()?, topic: sub_topic()? })
            }
            "PINGREQ" => sn::Message::PingReq(get("id").map(Into::into)),
            "DISCONNECT" => sn::Message::Disconnect(get("duration").map(number).transpose()?),
            other => return Err(format!("unknown MQTT-SN message {other}")),
        };
        self.sim().sn_send(name, &message);
        Ok(())
    }
}

/// An ACL written `effect:access:filter,...`: effect `allow`/`deny`, access `pub`/`sub`/`all`.
fn acl(text: &str) -> Result<std::sync::Arc<Acl>, String> {
    let mut rules = Vec::new();
    for rule in text.split(',').filter(|r| !r.is_empty()) {
        let mut parts = rule.splitn(3, ':');
        let (Some(effect), Some(access), Some(filter)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(format!("ACL rule {rule}: expected effect:access:filter"));
        };
        let effect = match effect {
            "allow" => Effect::Allow,
            "deny" => Effect::Deny,
            other => return Err(format!("ACL effect {other}")),
        };
        let access = match access {
            "pub" => Access::PUBLISH,
            "sub" => Access::SUBSCRIBE,
            "all" => Access::ALL,
            other => return Err(format!("ACL access {other}")),
        };
        rules.push(AclRule { effect, access, filter: filter.into() });
    }
    Ok(std::sync::Arc::new(Acl::new(rules)))
}
