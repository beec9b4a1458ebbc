//! An HTTP authentication service as a [`Source`] (`[auth.http]`), speaking EMQX's protocol so
//! that services written for EMQX work unchanged.
//!
//! The broker POSTs `{"clientid", "username", "password", "peerhost", "protocol", "cert_cn"}`
//! (`cert_cn` the common name of the client's verified TLS certificate, else null; `protocol`
//! `"3.1"`, `"3.1.1"` or `"5.0"`) and reads `{"result": "allow" | "deny" | "ignore", "is_superuser": bool, "acl":
//! [{"permission": "allow" | "deny", "action": "publish" | "subscribe" | "all", "topic":
//! filter}]}`:
//!
//! - `allow` with `is_superuser` true: [`Verdict::Superuser`], no rules at all, `$` topics
//!   included (the ACL file is not consulted);
//! - `allow` with `acl`: those rules in the given order, the first that applies deciding, and
//!   anything no rule allows refused; without `acl`: the ACL file's rules, if any;
//! - `deny`: 0x87 Not authorized (3.1.1 return code 5), EMQX's answer;
//! - `ignore`: the next source decides.
//!
//! Rule fields this broker cannot enforce (`qos`, `retain`, a topic written `eq filter`) never
//! widen access: an allowing rule that has them is left out, a denying one applies to every
//! QoS and retain flag. Other fields of the answer (`client_attrs`, `expire_at`) are ignored.
//!
//! Fail closed: a timeout, a connection error, a status outside 2xx or a body that is not such
//! an answer refuses with 0x88 Server unavailable (3.1.1 return code 3), not 0x86/0x87: the
//! client's credentials were not judged, so it should retry rather than change them, and the
//! brute-force throttle does not count it against the client's address.
//!
//! The shards never wait for the service: [`Source::check`] hands the request to a small pool
//! of worker threads (a blocking HTTP client with a timeout, on those threads only) through a
//! bounded queue; a full queue refuses as busy (0x88). Answers may be cached for
//! `cache_ttl` (allow, deny and ignore alike, never failures), keyed by client id, user name, a
//! hash of the password and the client's IP address, in a bounded table.
//!
//! Only `http://` URLs for now: `https://` needs the TLS stack that issue 13 brings.

use core::net::SocketAddr;
use core::time::Duration;
use std::collections::HashMap;
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use crate::emqx_rules::{EmqxRule, emqx_acl};
use musqratt_engine::AuthRequest;
use musqratt_engine::proto::ProtocolVersion;
use musqratt_engine::proto::mqtt::ReasonCode;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::chain::{Source, Verdict, VerdictReply};

/// Requests waiting for a worker before new ones are refused as busy.
const QUEUE: usize = 256;
/// Worker threads: requests to the service in flight at once.
const WORKERS: usize = 4;
/// Answers cached at most.
const CACHE_MAX: usize = 16 * 1024;
/// Largest answer read from the service.
const MAX_BODY: u64 = 64 * 1024;

/// `[auth.http]`: where the service is and how long to trust it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// The service's URL (`http://host:port/path`), POSTed to.
    pub url: String,
    /// How long one request may take, connecting included.
    pub timeout: Duration,
    /// How long an answer is reused for the same credentials and address; zero: never.
    pub cache_ttl: Duration,
}

/// Why the source could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpConfigError {
    /// The URL is not `http://...`.
    #[error("auth.http.url `{0}`: only http:// URLs are supported (https:// comes with TLS)")]
    Url(String),
    /// A worker thread could not be started.
    #[error("cannot start the HTTP authentication workers: {0}")]
    Threads(#[from] std::io::Error),
}

type Job = Box<dyn FnOnce(&ureq::Agent) + Send>;

/// The HTTP service as a source. Cheap to share (`Arc`); its workers end when it is dropped.
pub struct HttpSource {
    url: Arc<str>,
    jobs: SyncSender<Job>,
    cache: Option<Arc<Cache>>,
}

impl core::fmt::Debug for HttpSource {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HttpSource").field("url", &self.url).finish_non_exhaustive()
    }
}

impl HttpSource {
    /// Starts the worker threads for `config`.
    ///
    /// # Errors
    /// The URL is not `http://`, or a thread could not be started.
    pub fn start(config: &HttpConfig) -> Result<Self, HttpConfigError> {
        if !config.url.starts_with("http://") {
            return Err(HttpConfigError::Url(config.url.clone()));
        }
        let (jobs, queue) = sync_channel::<Job>(QUEUE);
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..WORKERS {
            let queue = Arc::clone(&queue);
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .timeout_global(Some(config.timeout))
                .http_status_as_error(false)
                .build()
                .into();
            std::thread::Builder::new().name(format!("musqratt-http-auth-{i}")).spawn(
                move || {
                    loop {
                        let job = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
                        match job {
                            Ok(job) => job(&agent),
                            Err(_) => return, // the source is gone
                        }
                    }
                },
            )?;
        }
        let cache = (!config.cache_ttl.is_zero()).then(|| {
            Arc::new(Cache { ttl: config.cache_ttl, answers: Mutex::new(HashMap::new()) })
        });
        Ok(Self { url: config.url.as_str().into(), jobs, cache })
    }
}

impl Source for HttpSource {
    fn check(&self, request: &AuthRequest, reply: VerdictReply) {
        // Enhanced authentication (§4.12) is not the service's protocol.
        if request.method.is_some() {
            return reply.answer(Verdict::Ignore);
        }
        let peer = reply.peer();
        let key = self.cache.as_ref().map(|_| cache_key(request, peer));
        if let (Some(cache), Some(key)) = (&self.cache, &key) {
            if let Some(verdict) = cache.get(key) {
                return reply.answer(verdict);
            }
        }
        let body = body(request, peer);
        let (url, cache) = (Arc::clone(&self.url), self.cache.clone());
        let job: Job = Box::new(move |agent| {
            let verdict = ask(agent, &url, &body);
            if let (Some(cache), Some(key), Some(verdict)) = (cache, key, &verdict) {
                cache.put(key, verdict.clone());
            }
            reply.answer(verdict.unwrap_or(Verdict::Deny(ReasonCode::SERVER_UNAVAILABLE)));
        });
        match self.jobs.try_send(job) {
            Ok(()) => {}
            // The job comes back and drops its reply, which denies (0x88): the client retries.
            Err(TrySendError::Full(_job)) => {
                tracing::warn!("HTTP authentication requests queued beyond {QUEUE}: refusing");
            }
            Err(TrySendError::Disconnected(_job)) => {}
        }
    }
}

/// `"3.1"`, `"3.1.1"` or `"5.0"`.
fn protocol_name(protocol: ProtocolVersion) -> &'static str {
    match protocol {
        ProtocolVersion::V3_1 => "3.1",
        ProtocolVersion::V3_1_1 => "3.1.1",
        ProtocolVersion::V5 => "5.0",
        _ => "unknown",
    }
}

/// The JSON POSTed for `request` (a password that is not UTF-8 is sent with replacement
/// characters: EMQX's protocol has strings only).
fn body(request: &AuthRequest, peer: Option<SocketAddr>) -> String {
    serde_json::json!({
        "clientid": &*request.client_id,
        "username": request.username.as_deref(),
        "password": request.password.as_deref().map(String::from_utf8_lossy),
        "peerhost": peer.map(|peer| peer.ip().to_string()),
        "protocol": protocol_name(request.protocol),
        "cert_cn": request.cert_cn.as_deref(),
    })
    .to_string()
}

/// One POST: the verdict, or `None` when the service failed to give one.
fn ask(agent: &ureq::Agent, url: &str, body: &str) -> Option<Verdict> {
    let response = agent.post(url).header("content-type", "application/json").send(body);
    let mut response = match response {
        Ok(response) => response,
        Err(error) => {
            tracing::warn!(url, %error, "HTTP authentication service failed: refusing");
            return None;
        }
    };
    let status = response.status().as_u16();
    if !(200..300).contains(&status) {
        tracing::warn!(url, status, "HTTP authentication service refused the request");
        return None;
    }
    let text = response.body_mut().with_config().limit(MAX_BODY).read_to_string();
    let verdict = text.ok().and_then(|text| verdict(&text));
    if verdict.is_none() {
        tracing::warn!(url, "HTTP authentication service answered something else: refusing");
    }
    verdict
}

#[derive(Deserialize)]
struct Answer {
    result: String,
    #[serde(default)]
    is_superuser: bool,
    #[serde(default)]
    acl: Option<Vec<EmqxRule>>,
}

/// The verdict an answer's body gives, `None` if it is not an answer.
fn verdict(text: &str) -> Option<Verdict> {
    let answer: Answer = serde_json::from_str(text).ok()?;
    match answer.result.as_str() {
        "allow" if answer.is_superuser => Some(Verdict::Superuser),
        "allow" => match answer.acl {
            None => Some(Verdict::Allow(None)),
            Some(rules) => Some(Verdict::Allow(Some(Arc::new(emqx_acl(rules).ok()?)))),
        },
        "deny" => Some(Verdict::Deny(ReasonCode::NOT_AUTHORIZED)),
        "ignore" => Some(Verdict::Ignore),
        _ => None,
    }
}

/// What an answer is cached under: a hash of client id, user name, password and IP address
/// (the password itself is never kept).
fn cache_key(request: &AuthRequest, peer: Option<SocketAddr>) -> [u8; 32] {
    let mut hash = Sha256::new();
    let mut field = |bytes: Option<&[u8]>| {
        let bytes = bytes.unwrap_or_default();
        hash.update(u64::try_from(bytes.len()).unwrap_or(u64::MAX).to_le_bytes());
        hash.update(bytes);
    };
    field(Some(request.client_id.as_bytes()));
    field(request.username.as_deref().map(str::as_bytes));
    field(request.password.as_deref());
    field(peer.map(|peer| peer.ip().to_string()).as_deref().map(str::as_bytes));
    field(Some(protocol_name(request.protocol).as_bytes()));
    // The service may decide on the certificate: another one is another question.
    field(request.cert_cn.as_deref().map(str::as_bytes));
    hash.finalize().into()
}

/// Answers kept for `ttl`.
struct Cache {
    ttl: Duration,
    answers: Mutex<HashMap<[u8; 32], (Instant, Verdict)>>,
}

impl Cache {
    fn get(&self, key: &[u8; 32]) -> Option<Verdict> {
        let answers = self.answers.lock().unwrap_or_else(PoisonError::into_inner);
        let (expires, verdict) = answers.get(key)?;
        (*expires > Instant::now()).then(|| verdict.clone())
    }

    /// Keeps `verdict`; when the table is full, expired answers go, and if none has expired the
    /// new one is not kept (the service is asked again: slower, never wrong).
    fn put(&self, key: [u8; 32], verdict: Verdict) {
        let now = Instant::now();
        let mut answers = self.answers.lock().unwrap_or_else(PoisonError::into_inner);
        if answers.len() >= CACHE_MAX {
            answers.retain(|_, (expires, _)| *expires > now);
            if answers.len() >= CACHE_MAX {
                return;
            }
        }
        answers.insert(key, (now + self.ttl, verdict));
    }
}

#[cfg(test)]
mod tests {
    use core::sync::atomic::{AtomicUsize, Ordering};
    use std::io::{Read as _, Write as _};
    use std::net::TcpListener;
    use std::sync::mpsc;

    use super::*;

    fn request() -> AuthRequest {
        AuthRequest {
            client_id: "c1".into(),
            username: Some("u".into()),
            password: Some(musqratt_engine::bytes::Bytes::from_static(b"p")),
            method: None,
            data: None,
            protocol: ProtocolVersion::V3_1_1,
            cert_cn: None,
            username_verified: false,
        }
    }

    /// A service answering `allow` to every request (`answer`), or never (`!answer`); returns
    /// its URL and how many requests it got.
    fn service(answer: bool) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/auth", listener.local_addr().unwrap());
        let count = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&count);
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                counter.fetch_add(1, Ordering::SeqCst);
                if !answer {
                    std::thread::spawn(move || {
                        std::thread::sleep(Duration::from_secs(5));
                        drop(stream);
                    });
                    continue;
                }
                let mut buf = [0; 4096];
                let _ = stream.read(&mut buf);
                let body = r#"{"result":"allow"}"#;
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        (url, count)
    }

    fn check(source: &HttpSource) -> mpsc::Receiver<Verdict> {
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let reply = VerdictReply::new(move |v| _ = tx.lock().unwrap().send(v));
        source.check(&request(), reply.with_peer("127.0.0.2:1".parse().ok()));
        rx
    }

    fn config(url: String, timeout_ms: u64, cache_ttl_s: u64) -> HttpConfig {
        HttpConfig {
            url,
            timeout: Duration::from_millis(timeout_ms),
            cache_ttl: Duration::from_secs(cache_ttl_s),
        }
    }

    #[test]
    fn answers_are_cached_when_asked_to() {
        let wait = Duration::from_secs(5);
        for (ttl, requests) in [(0, 2), (60, 1)] {
            let (url, count) = service(true);
            let source = HttpSource::start(&config(url, 2000, ttl)).unwrap();
            for _ in 0..2 {
                assert_eq!(check(&source).recv_timeout(wait).unwrap(), Verdict::Allow(None));
            }
            assert_eq!(count.load(Ordering::SeqCst), requests, "cache_ttl_s = {ttl}");
        }
        assert!(HttpSource::start(&config("https://x/".into(), 1, 0)).is_err());
    }

    #[test]
    fn failures_and_a_full_queue_refuse_as_unavailable() {
        let unavailable = Verdict::Deny(ReasonCode::SERVER_UNAVAILABLE);
        let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let source = HttpSource::start(&config(format!("http://{closed}/"), 2000, 0)).unwrap();
        let answer = check(&source).recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(answer, unavailable, "connection refused");

        // Four workers wait for a silent service, 256 requests queue, the rest are refused
        // at once.
        let (url, _) = service(false);
        let source = HttpSource::start(&config(url, 3000, 0)).unwrap();
        let pending: Vec<_> = (0..300).map(|_| check(&source)).collect();
        let at_once = pending.iter().filter(|rx| rx.try_recv() == Ok(unavailable.clone())).count();
        // (Fewer than four may have been taken by the workers yet.)
        assert!((300 - QUEUE - WORKERS..=300 - QUEUE).contains(&at_once), "{at_once}");
    }

    #[test]
    fn answers_become_verdicts() {
        assert_eq!(verdict(r#"{"result":"allow"}"#), Some(Verdict::Allow(None)));
        assert_eq!(
            verdict(r#"{"result":"allow","is_superuser":true,"acl":[]}"#),
            Some(Verdict::Superuser)
        );
        assert_eq!(
            verdict(r#"{"result":"deny"}"#),
            Some(Verdict::Deny(ReasonCode::NOT_AUTHORIZED))
        );
        assert_eq!(verdict(r#"{"result":"ignore","client_attrs":{}}"#), Some(Verdict::Ignore));
        for bad in ["", "{}", r#"{"result":"yes"}"#, "[1]", r#"{"result":"allow","acl":[{}]}"#] {
            assert_eq!(verdict(bad), None, "{bad}");
        }
        let bad_filter =
            r#"{"result":"allow","acl":[{"permission":"allow","action":"all","topic":"a/#/b"}]}"#;
        assert_eq!(verdict(bad_filter), None);
    }

    #[test]
    fn rules_keep_their_order_and_never_widen() {
        let text = r#"{"result":"allow","acl":[
            {"permission":"deny","action":"publish","topic":"eq a/#","qos":[2]},
            {"permission":"allow","action":"publish","topic":"b/#","qos":[0]},
            {"permission":"allow","action":"subscribe","topic":"a/+"},
            {"permission":"allow","action":"all","topic":"c/#"}]}"#;
        let Some(Verdict::Allow(Some(acl))) = verdict(text) else { panic!("{text}") };
        assert_eq!(acl.rules().len(), 3, "the allow rule with a QoS is left out");
        assert!(!acl.may_publish("a/x"), "the denial applies to every QoS");
        assert!(!acl.may_publish("b/x"));
        assert!(acl.may_receive("a/x") && !acl.may_publish("d"));
        assert!(acl.may_publish("c/1") && acl.may_subscribe("c/#"));
    }

    #[test]
    fn the_body_is_emqx_shaped() {
        let request = request();
        let body: serde_json::Value =
            serde_json::from_str(&body(&request, "127.0.0.2:5000".parse().ok())).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"clientid": "c1", "username": "u", "password": "p",
                "peerhost": "127.0.0.2", "protocol": "3.1.1", "cert_cn": null})
        );
        let other = AuthRequest { password: None, ..request.clone() };
        assert_ne!(cache_key(&request, None), cache_key(&other, None));
        let certified = AuthRequest { cert_cn: Some("sensor-7".into()), ..request.clone() };
        let body: serde_json::Value = serde_json::from_str(&super::body(&certified, None)).unwrap();
        assert_eq!(body["cert_cn"], "sensor-7");
        assert_ne!(cache_key(&request, None), cache_key(&certified, None));
        assert_ne!(cache_key(&request, None), cache_key(&request, "127.0.0.2:1".parse().ok()));
    }
}
