//! The one answer to `Action::Authenticate` for every runtime.
//!
//! The engine asks (when `Config::authenticate` is set) with the CONNECT's client id, user name,
//! password and, for MQTT 5.0 enhanced authentication, method and data (§4.12); the runtime
//! answers with `Input::AuthDecision` when the answer is known, and the engine serves the
//! shard's other connections meanwhile. Every runtime asks through [`Auth::ask`], so a client
//! gets the same verdict whichever runtime serves it, and an authenticator may answer at once
//! (a password file) or later from another thread (an HTTP service): the [`AuthReply`] it is
//! given carries the answer back to the shard either way.

use core::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use musqratt_engine::proto::mqtt::ReasonCode;
use musqratt_engine::{AuthDecision, AuthRequest, ConnectionId};

/// Decides who may connect. Called on a shard's thread, between two engine steps of that
/// shard: answer at once if the decision is local, or keep the [`AuthReply`] and answer from
/// elsewhere (another thread, a task) when it needs a remote service.
pub trait Authenticator: Send + Sync + 'static {
    /// Decides on one CONNECT or AUTH step and answers through `reply`. Dropping `reply`
    /// without answering refuses the client, as an error does: nothing lets anyone in by
    /// accident.
    fn authenticate(&self, request: &AuthRequest, reply: AuthReply);
}

/// Why an [`Authenticator`] could not decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The service or data the decision depends on is not available.
    #[error("authentication backend unavailable")]
    Unavailable,
}

/// Lets every client in: the broker's behaviour when no authentication is configured.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAnonymous;

impl Authenticator for AllowAnonymous {
    fn authenticate(&self, _request: &AuthRequest, reply: AuthReply) {
        reply.answer(Ok(AuthDecision::Accept));
    }
}

/// Where a shard's late answers wait until the shard takes them ([`Decisions::take`]), and how
/// the shard is told there are some. One per shard.
#[derive(Clone)]
pub struct Decisions(Arc<DecisionsInner>);

struct DecisionsInner {
    queue: Mutex<Vec<(ConnectionId, AuthDecision)>>,
    wake: Box<dyn Fn() + Send + Sync>,
}

impl Decisions {
    /// A shard's decisions; `wake` tells the shard (from any thread) to call [`Decisions::take`].
    pub fn new(wake: impl Fn() + Send + Sync + 'static) -> Self {
        Self(Arc::new(DecisionsInner { queue: Mutex::new(Vec::new()), wake: Box::new(wake) }))
    }

    /// The answers that came since the last call, in the order they came, for
    /// `Input::AuthDecision`.
    #[must_use]
    pub fn take(&self) -> Vec<(ConnectionId, AuthDecision)> {
        core::mem::take(&mut *self.0.queue.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn push(&self, conn: ConnectionId, decision: AuthDecision) {
        self.0.queue.lock().unwrap_or_else(PoisonError::into_inner).push((conn, decision));
        (self.0.wake)();
    }
}

impl core::fmt::Debug for Decisions {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Decisions(..)")
    }
}

/// The way back for one decision. Answer once with [`AuthReply::answer`]; dropped unanswered,
/// it refuses the client.
pub struct AuthReply {
    conn: ConnectionId,
    /// Where the client connects from (for an HTTP service, per-address throttling).
    peer: Option<SocketAddr>,
    client_id: musqratt_engine::proto::bytestring::ByteString,
    state: Arc<Mutex<Reply>>,
    decisions: Decisions,
    answered: bool,
}

/// Whether [`Auth::ask`] is still waiting inside `authenticate` for an answer.
enum Reply {
    Waiting,
    Answered(AuthDecision),
    /// `authenticate` returned without an answer: it goes through [`Decisions`].
    Late,
}

impl AuthReply {
    /// The connection this decision is for: what an enhanced authentication that spans several
    /// steps (SCRAM's nonces and messages, §4.12) keys its state by between them. Unique among
    /// a running broker's MQTT connections (MQTT-SN ones, which have no enhanced
    /// authentication, may repeat across shards).
    #[must_use]
    pub fn conn(&self) -> ConnectionId {
        self.conn
    }

    /// The client's address, when the runtime knows it (a TCP client; not an MQTT-SN one).
    #[must_use]
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// Gives the decision. Fails closed: an error refuses with 0x88 Server unavailable (3.1.1:
    /// return code 3, the same meaning), so that the client retries rather than changes its
    /// credentials.
    pub fn answer(mut self, decision: Result<AuthDecision, AuthError>) {
        self.answered = true;
        let decision = decision.unwrap_or_else(|error| {
            tracing::warn!(client_id = &*self.client_id, %error, "client refused");
            AuthDecision::Refuse(ReasonCode::SERVER_UNAVAILABLE)
        });
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match *state {
            Reply::Waiting => *state = Reply::Answered(decision),
            Reply::Late => {
                drop(state);
                self.decisions.push(self.conn, decision);
            }
            // Answered is unreachable: `answer` takes `self`.
            Reply::Answered(_) => {}
        }
    }
}

impl Drop for AuthReply {
    fn drop(&mut self) {
        if !self.answered {
            let reply = AuthReply {
                conn: self.conn,
                peer: self.peer,
                client_id: self.client_id.clone(),
                state: self.state.clone(),
                decisions: self.decisions.clone(),
                answered: true,
            };
            reply.answer(Err(AuthError::Unavailable));
        }
    }
}

/// The broker's authenticator, shared by every shard of every runtime.
#[derive(Clone)]
pub struct Auth(Arc<dyn Authenticator>);

impl Auth {
    /// Wraps an authenticator.
    pub fn new(authenticator: impl Authenticator) -> Self {
        Self(Arc::new(authenticator))
    }

    /// Asks the authenticator about `Action::Authenticate { conn, request }` from a client at
    /// `peer` (`None` when the runtime does not know it). The decision, if the authenticator
    /// gave it at once; otherwise it comes later through `decisions` (whose wake-up is then
    /// called).
    #[must_use]
    pub fn ask(
        &self,
        conn: ConnectionId,
        peer: Option<SocketAddr>,
        request: &AuthRequest,
        decisions: &Decisions,
    ) -> Option<AuthDecision> {
        let state = Arc::new(Mutex::new(Reply::Waiting));
        let reply = AuthReply {
            conn,
            peer,
            client_id: request.client_id.clone(),
            state: state.clone(),
            decisions: decisions.clone(),
            answered: false,
        };
        self.0.authenticate(request, reply);
        let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
        match core::mem::replace(&mut *state, Reply::Late) {
            Reply::Answered(decision) => Some(decision),
            Reply::Waiting | Reply::Late => None,
        }
    }

    /// [`Auth::ask`] for `Action::Authenticate` on a connection whose bytes pass through
    /// `stack` (a layered listener's): what the layers proved goes with the CONNECT's
    /// credentials first (a client certificate, [`PeerIdentity::fill`]), and the address asked
    /// about is the client's as they report it (a trusted proxy's `X-Forwarded-For`,
    /// [`PeerIdentity::client_addr`]) rather than the socket's peer `socket`. Every runtime
    /// answers `Action::Authenticate` through this, so a client gets the same verdict on each.
    ///
    /// [`PeerIdentity::fill`]: crate::PeerIdentity::fill
    /// [`PeerIdentity::client_addr`]: crate::PeerIdentity::client_addr
    #[must_use]
    pub fn ask_for(
        &self,
        conn: ConnectionId,
        socket: Option<SocketAddr>,
        stack: Option<&crate::Stack>,
        mut request: AuthRequest,
        decisions: &Decisions,
    ) -> Option<AuthDecision> {
        let mut peer = socket;
        if let Some(identity) = stack.map(crate::Stack::identity) {
            identity.fill(&mut request);
            peer = identity.client_addr(socket);
        }
        self.ask(conn, peer, &request, decisions)
    }
}

impl Default for Auth {
    fn default() -> Self {
        Self::new(AllowAnonymous)
    }
}

impl core::fmt::Debug for Auth {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Auth(..)")
    }
}

#[cfg(test)]
mod tests {
    use core::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    use super::*;

    fn request() -> AuthRequest {
        AuthRequest {
            client_id: "c".into(),
            username: None,
            password: None,
            method: None,
            data: None,
            protocol: musqratt_engine::proto::ProtocolVersion::V5,
            cert_cn: None,
            username_verified: false,
        }
    }

    fn decisions() -> (Decisions, Arc<AtomicUsize>) {
        let wakes = Arc::new(AtomicUsize::new(0));
        let counter = wakes.clone();
        (Decisions::new(move || _ = counter.fetch_add(1, Ordering::SeqCst)), wakes)
    }

    const REFUSED: AuthDecision = AuthDecision::Refuse(ReasonCode::SERVER_UNAVAILABLE);

    struct Broken;
    impl Authenticator for Broken {
        fn authenticate(&self, _: &AuthRequest, reply: AuthReply) {
            reply.answer(Err(AuthError::Unavailable));
        }
    }

    struct Forgetful;
    impl Authenticator for Forgetful {
        fn authenticate(&self, _: &AuthRequest, _reply: AuthReply) {}
    }

    /// Keeps the reply, as one waiting for a remote service would.
    #[derive(Default)]
    struct Later(Arc<Mutex<Vec<AuthReply>>>);
    impl Authenticator for Later {
        fn authenticate(&self, _: &AuthRequest, reply: AuthReply) {
            self.0.lock().unwrap().push(reply);
        }
    }

    #[test]
    fn the_default_lets_anonymous_clients_in_at_once() {
        let (decisions, wakes) = decisions();
        let decision = Auth::default().ask(ConnectionId(1), None, &request(), &decisions);
        assert_eq!(decision, Some(AuthDecision::Accept));
        assert_eq!(wakes.load(Ordering::SeqCst), 0, "an answer given at once wakes nothing");
    }

    #[test]
    fn an_authenticator_error_refuses() {
        let (decisions, _) = decisions();
        assert_eq!(
            Auth::new(Broken).ask(ConnectionId(1), None, &request(), &decisions),
            Some(REFUSED)
        );
    }

    #[test]
    fn a_reply_dropped_unanswered_refuses() {
        let (decisions, _) = decisions();
        let decision = Auth::new(Forgetful).ask(ConnectionId(1), None, &request(), &decisions);
        assert_eq!(decision, Some(REFUSED));
    }

    #[test]
    fn a_late_answer_reaches_the_shard_and_wakes_it() {
        let (decisions, wakes) = decisions();
        let later = Later::default();
        let replies = later.0.clone();
        let auth = Auth::new(later);
        assert_eq!(auth.ask(ConnectionId(1), None, &request(), &decisions), None);
        assert_eq!(auth.ask(ConnectionId(2), None, &request(), &decisions), None);
        let mut pending = core::mem::take(&mut *replies.lock().unwrap());
        let second = pending.pop().unwrap();
        let first = pending.pop().unwrap();
        std::thread::spawn(move || second.answer(Ok(AuthDecision::Accept))).join().unwrap();
        drop(first); // unanswered: refused
        assert_eq!(wakes.load(Ordering::SeqCst), 2);
        assert_eq!(
            decisions.take(),
            vec![(ConnectionId(2), AuthDecision::Accept), (ConnectionId(1), REFUSED)]
        );
        assert!(decisions.take().is_empty());
    }
}
