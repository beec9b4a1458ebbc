//! Several sources of authentication tried in order (issue 14 item 4): the password file, then
//! third-party services (HTTP, JWT) and enhanced methods (SCRAM). Each answers allow, deny or
//! "no opinion"; the first that has an opinion decides, and one without lets the next decide.
//!
//! A source may answer at once or later from another thread (a remote service), through the
//! [`VerdictReply`] it is given: the chain goes on from there, on that thread, without ever
//! blocking a shard. A reply dropped unanswered denies (0x88 Server unavailable): a source that
//! fails or times out never lets anyone in.
//!
//! Where the client connects from is on the reply ([`VerdictReply::peer`]) rather than a
//! parameter of [`Source::check`], so that sources that do not care keep their one signature.

use core::net::SocketAddr;
use std::sync::Arc;

use musqratt_engine::acl::Acl;
use musqratt_engine::proto::bytestring::ByteString;
use musqratt_engine::proto::mqtt::ReasonCode;
use musqratt_engine::{AuthRequest, ConnectionId};

/// What one source says about a client.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// Let it in; with these rules, or with the ACL file's (if any) when `None`.
    Allow(Option<Arc<Acl>>),
    /// Let it in as [`Verdict::Allow`] does, until this wall-clock time (credentials that
    /// expire, such as a JWT's `exp`): then the broker disconnects it (5.0: 0xA0 Maximum
    /// connect time). Wall-clock, since that is what a credential carries; the authenticator
    /// turns it into the engine's time ([`musqratt_engine::AuthDecision::AcceptFor`]).
    AllowUntil(Option<Arc<Acl>>, std::time::SystemTime),
    /// Let it in with no rules at all, the ACL file not consulted: it may publish and
    /// subscribe to anything, `$` topics included (an HTTP service's `is_superuser`; no rule
    /// list can say this, as no filter matches every `$` topic).
    Superuser,
    /// Refuse it with this reason code (0x86 Bad user name or password, 0x87 Not authorized).
    Deny(ReasonCode),
    /// Enhanced authentication goes on (§4.12): AUTH 0x18 with this data.
    Continue(musqratt_engine::bytes::Bytes),
    /// Enhanced authentication succeeded for `username` (the name the method proved, which an
    /// AUTH packet does not carry): let it in with the ACL file's rules for that user, and give
    /// the client the method's last word, `data` (SCRAM's server-final message, RFC 5802 §3),
    /// in the CONNACK or the AUTH 0x00 of a re-authentication (§4.12).
    AllowAs {
        /// The user name the exchange proved.
        username: ByteString,
        /// Final Authentication Data, if the method has some.
        data: Option<musqratt_engine::bytes::Bytes>,
    },
    /// No opinion: the next source decides.
    Ignore,
}

/// One source of verdicts. Called on a shard's thread or on the thread that answered the
/// previous source: answer at once if the verdict is local, or keep `reply` and answer later.
pub trait Source: Send + Sync + 'static {
    /// Gives a verdict on `request` through `reply`.
    fn check(&self, request: &AuthRequest, reply: VerdictReply);
}

/// The way back for one source's verdict. Dropped unanswered, it denies (0x88).
pub struct VerdictReply {
    then: Option<Box<dyn FnOnce(Verdict) + Send>>,
    conn: Option<ConnectionId>,
    peer: Option<SocketAddr>,
}

impl VerdictReply {
    /// A reply that calls `then` with the verdict (for a client whose address is unknown).
    pub fn new(then: impl FnOnce(Verdict) + Send + 'static) -> Self {
        Self { then: Some(Box::new(then)), conn: None, peer: None }
    }

    /// The same reply, for the request of connection `conn`.
    #[must_use]
    pub fn for_connection(mut self, conn: Option<ConnectionId>) -> Self {
        self.conn = conn;
        self
    }

    /// The connection that asks, when known: a source whose exchange spans several steps
    /// (SCRAM, §4.12) keeps its state under it between them.
    #[must_use]
    pub fn conn(&self) -> Option<ConnectionId> {
        self.conn
    }

    /// The same reply, for a client connecting from `peer`.
    #[must_use]
    pub fn with_peer(mut self, peer: Option<SocketAddr>) -> Self {
        self.peer = peer;
        self
    }

    /// Where the client connects from, when the runtime knows it (not for MQTT-SN clients).
    #[must_use]
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// Gives the verdict.
    pub fn answer(mut self, verdict: Verdict) {
        if let Some(then) = self.then.take() {
            then(verdict);
        }
    }
}

impl Drop for VerdictReply {
    fn drop(&mut self) {
        if let Some(then) = self.then.take() {
            then(Verdict::Deny(ReasonCode::SERVER_UNAVAILABLE));
        }
    }
}

/// Asks `sources` in order from `first` about a client at `peer` until one has an opinion;
/// `done` gets that verdict, or [`Verdict::Ignore`] when none has one.
pub fn ask_in_order(
    sources: Arc<[Arc<dyn Source>]>,
    first: usize,
    request: Arc<AuthRequest>,
    peer: Option<SocketAddr>,
    done: impl FnOnce(Verdict) + Send + 'static,
) {
    ask_in_order_for(None, peer, sources, first, request, done);
}

/// [`ask_in_order`] for the request of connection `conn`, which every source's
/// [`VerdictReply::conn`] gives.
pub fn ask_in_order_for(
    conn: Option<ConnectionId>,
    peer: Option<SocketAddr>,
    sources: Arc<[Arc<dyn Source>]>,
    first: usize,
    request: Arc<AuthRequest>,
    done: impl FnOnce(Verdict) + Send + 'static,
) {
    let Some(source) = sources.get(first).cloned() else { return done(Verdict::Ignore) };
    let asked = Arc::clone(&request);
    source.check(
        &asked,
        VerdictReply::new(move |verdict| match verdict {
            Verdict::Ignore => ask_in_order_for(conn, peer, sources, first + 1, request, done),
            decided => done(decided),
        })
        .for_connection(conn)
        .with_peer(peer),
    );
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    struct Fixed(Verdict);
    impl Source for Fixed {
        fn check(&self, _: &AuthRequest, reply: VerdictReply) {
            reply.answer(self.0.clone());
        }
    }
    struct Later;
    impl Source for Later {
        fn check(&self, _: &AuthRequest, reply: VerdictReply) {
            std::thread::spawn(move || reply.answer(Verdict::Ignore));
        }
    }
    struct Drops;
    impl Source for Drops {
        fn check(&self, _: &AuthRequest, _reply: VerdictReply) {}
    }

    fn request() -> Arc<AuthRequest> {
        Arc::new(AuthRequest {
            client_id: "c".into(),
            username: None,
            password: None,
            method: None,
            data: None,
            protocol: musqratt_engine::proto::ProtocolVersion::V5,
            cert_cn: None,
            username_verified: false,
        })
    }

    fn run(sources: Vec<Arc<dyn Source>>) -> Verdict {
        let (tx, rx) = std::sync::mpsc::channel();
        let tx = Mutex::new(tx);
        ask_in_order(sources.into(), 0, request(), None, move |v| {
            tx.lock().unwrap().send(v).unwrap();
        });
        rx.recv_timeout(core::time::Duration::from_secs(5)).unwrap()
    }

    /// Passes, remembering the peer it was told of.
    struct Peer(Mutex<Vec<Option<SocketAddr>>>);
    impl Source for Peer {
        fn check(&self, _: &AuthRequest, reply: VerdictReply) {
            self.0.lock().unwrap().push(reply.peer());
            reply.answer(Verdict::Ignore);
        }
    }

    #[test]
    fn every_source_sees_the_peer() {
        let seen = Arc::new(Peer(Mutex::new(Vec::new())));
        let peer: Option<SocketAddr> = "127.0.0.2:4000".parse().ok();
        let sources: Vec<Arc<dyn Source>> = vec![seen.clone(), Arc::new(Later), seen.clone()];
        let (tx, rx) = std::sync::mpsc::channel();
        let tx = Mutex::new(tx);
        ask_in_order(sources.into(), 0, request(), peer, move |v| {
            tx.lock().unwrap().send(v).unwrap();
        });
        assert_eq!(rx.recv_timeout(core::time::Duration::from_secs(5)).unwrap(), Verdict::Ignore);
        assert_eq!(*seen.0.lock().unwrap(), vec![peer, peer]);
    }

    #[test]
    fn first_opinion_decides_and_failures_deny() {
        let deny = Verdict::Deny(ReasonCode::NOT_AUTHORIZED);
        assert_eq!(run(vec![]), Verdict::Ignore);
        assert_eq!(
            run(vec![
                Arc::new(Fixed(Verdict::Ignore)),
                Arc::new(Later),
                Arc::new(Fixed(deny.clone()))
            ]),
            deny
        );
        assert_eq!(
            run(vec![Arc::new(Fixed(Verdict::Allow(None))), Arc::new(Fixed(deny))]),
            Verdict::Allow(None)
        );
        assert_eq!(
            run(vec![Arc::new(Drops), Arc::new(Fixed(Verdict::Allow(None)))]),
            Verdict::Deny(ReasonCode::SERVER_UNAVAILABLE)
        );
    }
}
