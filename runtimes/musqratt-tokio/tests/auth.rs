//! `Action::Authenticate` over real sockets: the broker's `Authenticator` (the runtime kit's
//! one interface, docs/adr/0013-runtime-kit.md) decides, at once or later from another thread,
//! and one that fails or never answers refuses (fail closed). CONNACK reason codes per MQTT 5.0 §3.2.2.2 (0x86, 0x88) and 3.1.1 §3.2.2.3 (return
//! codes 4 and 3), MQTT-3.2.2-5: a refusing CONNACK is followed by closing the connection.

#[allow(dead_code)] // the helpers this file does not use
#[path = "../../musqratt-blocking/tests/common/mod.rs"]
mod common;

use core::net::SocketAddr;
use core::time::Duration;
use std::io::Write;

use common::{Client, encode};
use musqratt_engine::{AuthDecision, AuthRequest};
use musqratt_proto::ProtocolVersion;
use musqratt_proto::mqtt::{Connect, Packet, ReasonCode};
use musqratt_tokio::{Auth, AuthError, AuthReply, Authenticator, Broker, BrokerConfig};

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

fn start(auth: Auth) -> Broker {
    let mut config = BrokerConfig::default();
    config.listeners = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
    config.threads = 2;
    config.engine.authenticate = true;
    config.auth = auth;
    Broker::start(config).unwrap()
}

/// Sends CONNECT with these credentials and returns the CONNACK's reason code, after checking
/// that a refusal closes the connection.
fn connack(
    broker: &Broker,
    version: ProtocolVersion,
    user: Option<&str>,
    password: &'static [u8],
) -> ReasonCode {
    let mut client = Client::open(broker.local_addr(), version);
    let mut connect = Connect::new(version, "auth-client");
    connect.username = user.map(Into::into);
    connect.password = user.map(|_| password.into());
    client.stream.write_all(&encode(&Packet::Connect(Box::new(connect)), version)).unwrap();
    let Packet::ConnAck(ack) = client.recv() else { panic!("expected CONNACK") };
    if ack.reason_code.is_error() {
        assert!(client.expect_closed(Duration::from_secs(2)).is_empty(), "closed after CONNACK");
    }
    ack.reason_code
}

#[test]
fn the_authenticator_decides_who_connects_at_once_or_later() {
    for auth in [Auth::new(OneUser), Auth::new(OneUserLater)] {
        let broker = start(auth);
        for version in [ProtocolVersion::V5, ProtocolVersion::V3_1_1] {
            assert_eq!(connack(&broker, version, Some("alice"), b"secret"), ReasonCode::SUCCESS);
            // 3.1.1 has no reason codes: return code 4 decodes as the same reason.
            let refused = connack(&broker, version, Some("alice"), b"wrong");
            assert_eq!(refused, ReasonCode::BAD_USERNAME_OR_PASSWORD, "{version:?}");
            let anonymous = connack(&broker, version, None, b"");
            assert_eq!(anonymous, ReasonCode::BAD_USERNAME_OR_PASSWORD, "{version:?}");
        }
        broker.shutdown().unwrap();
    }
}

#[test]
fn an_authenticator_that_cannot_decide_or_forgets_refuses() {
    for auth in [Auth::new(Down), Auth::new(Lost)] {
        let broker = start(auth);
        for version in [ProtocolVersion::V5, ProtocolVersion::V3_1_1] {
            let code = connack(&broker, version, Some("alice"), b"secret");
            assert_eq!(code, ReasonCode::SERVER_UNAVAILABLE, "{version:?}");
        }
        broker.shutdown().unwrap();
    }
}
