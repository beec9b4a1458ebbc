//! `Action::Authenticate` on the blocking runtime, over real sockets: the runtime kit's
//! `Authenticator` decides (docs/adr/0013-runtime-kit.md), here answering later from another
//! thread (the runtime is woken for it), and a reply dropped unanswered refuses with 0x88
//! (fail closed). MQTT 5.0 §3.2.2.2; MQTT-3.2.2-5: a refusing CONNACK is followed by the close.

#[allow(dead_code)] // the helpers this file does not use
mod common;

use core::net::SocketAddr;
use core::time::Duration;
use std::io::Write;

use common::{Client, encode};
use musqratt_blocking::{Auth, AuthReply, Authenticator, BrokerConfig, BrokerHandle, start_config};
use musqratt_engine::{AuthDecision, AuthRequest};
use musqratt_proto::ProtocolVersion;
use musqratt_proto::mqtt::{Connect, Packet, ReasonCode};

/// Lets in `alice`, 20 ms later, from another thread.
struct AliceLater;

impl Authenticator for AliceLater {
    fn authenticate(&self, request: &AuthRequest, reply: AuthReply) {
        let decision = if request.username.as_deref() == Some("alice") {
            AuthDecision::Accept
        } else {
            AuthDecision::Refuse(ReasonCode::BAD_USERNAME_OR_PASSWORD)
        };
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            reply.answer(Ok(decision));
        });
    }
}

/// Loses every request.
struct Lost;

impl Authenticator for Lost {
    fn authenticate(&self, _: &AuthRequest, reply: AuthReply) {
        std::thread::spawn(move || drop(reply));
    }
}

fn start(auth: Auth) -> BrokerHandle {
    let mut config = BrokerConfig::default();
    config.listeners = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
    config.threads = 2;
    config.engine.authenticate = true;
    config.auth = auth;
    start_config(&config).unwrap()
}

fn connack(broker: &BrokerHandle, user: &str) -> ReasonCode {
    let version = ProtocolVersion::V5;
    let mut client = Client::open(broker.local_addrs()[0], version);
    let mut connect = Connect::new(version, "auth-client");
    connect.username = Some(user.into());
    client.stream.write_all(&encode(&Packet::Connect(Box::new(connect)), version)).unwrap();
    let Packet::ConnAck(ack) = client.recv() else { panic!("expected CONNACK") };
    if ack.reason_code.is_error() {
        assert!(client.expect_closed(Duration::from_secs(2)).is_empty(), "closed after CONNACK");
    }
    ack.reason_code
}

#[test]
fn a_late_answer_decides_and_a_lost_one_refuses() {
    let broker = start(Auth::new(AliceLater));
    assert_eq!(connack(&broker, "alice"), ReasonCode::SUCCESS);
    assert_eq!(connack(&broker, "mallory"), ReasonCode::BAD_USERNAME_OR_PASSWORD);
    broker.shutdown();
    let broker = start(Auth::new(Lost));
    assert_eq!(connack(&broker, "alice"), ReasonCode::SERVER_UNAVAILABLE);
    broker.shutdown();
}
