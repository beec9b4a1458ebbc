//! `Action::Authenticate` over real sockets: the runtime kit's `Authenticator` (its one
//! interface, docs/adr/0013-runtime-kit.md) decides, at once or later from another thread (the
//! runtime is woken for the answer), and one that fails or never answers refuses (fail
//! closed). CONNACK reason codes per MQTT 5.0 §3.2.2.2 (0x86, 0x88) and 3.1.1 §3.2.2.3 (return
//! codes 4 and 3), MQTT-3.2.2-5: a refusing CONNACK is followed by closing the connection.
//! [`crate::auth_cases`] runs them.

use core::time::Duration;

use musqratt_engine::{AuthDecision, AuthRequest};
use musqratt_kit::{Auth, AuthError, AuthReply, Authenticator};
use musqratt_proto::ProtocolVersion;
use musqratt_proto::mqtt::{Connect, Packet, ReasonCode};

use crate::{Broker, Start, launch, open};

/// Lets in `alice` with password `secret`, refuses everyone else.
struct OneUser;

fn one_user(request: &AuthRequest) -> AuthDecision {
    let known = request.username.as_deref() == Some("alice")
        && request.password.as_deref() == Some(&b"secret"[..]);
    if known {
        AuthDecision::Accept
    } else {
        AuthDecision::Refuse(ReasonCode::BAD_USERNAME_OR_PASSWORD)
    }
}

impl Authenticator for OneUser {
    fn authenticate(&self, request: &AuthRequest, reply: AuthReply) {
        reply.answer(Ok(one_user(request)));
    }
}

/// The same, answered 20 ms later from another thread, as a remote service would.
struct OneUserLater;

impl Authenticator for OneUserLater {
    fn authenticate(&self, request: &AuthRequest, reply: AuthReply) {
        let decision = one_user(request);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            reply.answer(Ok(decision));
        });
    }
}

/// Cannot decide: its backend is down.
struct Down;

impl Authenticator for Down {
    fn authenticate(&self, _: &AuthRequest, reply: AuthReply) {
        reply.answer(Err(AuthError::Unavailable));
    }
}

/// Loses the request (drops the reply from another thread without answering).
struct Lost;

impl Authenticator for Lost {
    fn authenticate(&self, _: &AuthRequest, reply: AuthReply) {
        std::thread::spawn(move || drop(reply));
    }
}

/// A broker of two shards that asks `auth` about every CONNECT.
fn with_auth(start: Start, auth: Auth) -> Broker {
    let mut config = crate::config(2);
    config.engine.authenticate = true;
    config.auth = auth;
    launch(start, config)
}

/// Sends CONNECT with these credentials and returns the CONNACK's reason code, after checking
/// that a refusal closes the connection.
async fn connack(
    broker: &Broker,
    version: ProtocolVersion,
    user: Option<&str>,
    password: &'static [u8],
) -> ReasonCode {
    let mut client = open(broker.addr(), version).await;
    let mut connect = Connect::new(version, "auth-client");
    connect.username = user.map(Into::into);
    connect.password = user.map(|_| password.into());
    client.send(&Packet::Connect(Box::new(connect)));
    let Packet::ConnAck(ack) = client.recv().await else { panic!("expected CONNACK") };
    if ack.reason_code.is_error() {
        let after = client.packets_until_closed(Duration::from_secs(2)).await;
        assert!(after.is_empty(), "closed after CONNACK: {after:?}");
    }
    ack.reason_code
}

/// `alice` with her password gets in, a wrong password and no username are refused, whether the
/// authenticator answers at once or 20 ms later from another thread; in 5.0 and 3.1.1.
pub async fn the_authenticator_decides_who_connects_at_once_or_later(start: Start) {
    for auth in [Auth::new(OneUser), Auth::new(OneUserLater)] {
        let broker = with_auth(start, auth);
        for version in [ProtocolVersion::V5, ProtocolVersion::V3_1_1] {
            assert_eq!(
                connack(&broker, version, Some("alice"), b"secret").await,
                ReasonCode::SUCCESS
            );
            // 3.1.1 has no reason codes: return code 4 decodes as the same reason.
            let refused = connack(&broker, version, Some("alice"), b"wrong").await;
            assert_eq!(refused, ReasonCode::BAD_USERNAME_OR_PASSWORD, "{version:?}");
            let anonymous = connack(&broker, version, None, b"").await;
            assert_eq!(anonymous, ReasonCode::BAD_USERNAME_OR_PASSWORD, "{version:?}");
        }
        broker.shutdown();
    }
}

/// An authenticator whose backend is down, or that drops the reply unanswered, refuses with
/// Server unavailable (0x88; 3.1.1 return code 3): fail closed.
pub async fn an_authenticator_that_cannot_decide_or_forgets_refuses(start: Start) {
    for auth in [Auth::new(Down), Auth::new(Lost)] {
        let broker = with_auth(start, auth);
        for version in [ProtocolVersion::V5, ProtocolVersion::V3_1_1] {
            let code = connack(&broker, version, Some("alice"), b"secret").await;
            assert_eq!(code, ReasonCode::SERVER_UNAVAILABLE, "{version:?}");
        }
        broker.shutdown();
    }
}
