//! The client API against a real broker (Mosquitto).

mod common;

use core::time::Duration;

use musqratt_client::{Client, ClientError, ConnectOptions, RawConnection};
use musqratt_proto::mqtt::{Packet, ReasonCode};
use musqratt_proto::{ProtocolVersion, QoS};

const WAIT: Duration = Duration::from_secs(5);

async fn next(client: &mut Client) -> musqratt_proto::mqtt::Publish {
    tokio::time::timeout(WAIT, client.next_message())
        .await
        .expect("a message in time")
        .expect("connection open")
}

async fn qos_round_trip(version: ProtocolVersion) {
    let Some(broker) = common::mosquitto() else { return };
    let options = |id: &str| ConnectOptions::new(id).url(broker.url()).version(version);
    let (mut sub, ack) = Client::connect(options("sub")).await.unwrap();
    assert!(!ack.session_present);
    let (publisher, _) = Client::connect(options("pub")).await.unwrap();
    assert_eq!(sub.subscribe("qos/#", QoS::ExactlyOnce).await.unwrap(), QoS::ExactlyOnce);
    assert_eq!(sub.subscribe("low/#", QoS::AtLeastOnce).await.unwrap(), QoS::AtLeastOnce);

    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let topic = format!("qos/{}", qos.bits());
        publisher.publish(&topic, format!("payload {}", qos.bits()), qos, false).await.unwrap();
        let message = next(&mut sub).await;
        assert_eq!(&*message.topic, topic);
        assert_eq!(&message.payload[..], format!("payload {}", qos.bits()).as_bytes());
        assert_eq!(message.qos, qos);
    }
    // The subscription's maximum QoS caps the delivery.
    publisher.publish("low/x", "capped", QoS::ExactlyOnce, false).await.unwrap();
    let message = next(&mut sub).await;
    assert_eq!((&message.payload[..], message.qos), (&b"capped"[..], QoS::AtLeastOnce));

    // A client receives its own messages, QoS 2 both ways on one connection.
    sub.publish("qos/self", "echo", QoS::ExactlyOnce, false).await.unwrap();
    assert_eq!(&next(&mut sub).await.payload[..], b"echo");

    sub.unsubscribe("qos/#").await.unwrap();
    publisher.publish("qos/gone", "nobody", QoS::AtLeastOnce, false).await.unwrap();
    publisher.publish("low/after", "still", QoS::AtLeastOnce, false).await.unwrap();
    assert_eq!(&next(&mut sub).await.payload[..], b"still");

    publisher.disconnect().await.unwrap();
    sub.disconnect().await.unwrap();
}

#[tokio::test]
async fn qos_0_1_2_v311() {
    qos_round_trip(ProtocolVersion::V3_1_1).await;
}

#[tokio::test]
async fn qos_0_1_2_v5() {
    qos_round_trip(ProtocolVersion::V5).await;
}

#[tokio::test]
async fn retained_message_and_many_packet_ids() {
    let Some(broker) = common::mosquitto() else { return };
    let (client, _) = Client::connect(ConnectOptions::new("r").url(broker.url())).await.unwrap();
    client.publish("keep/me", "kept", QoS::AtLeastOnce, true).await.unwrap();
    for i in 0..200 {
        client.publish("busy", format!("{i}"), QoS::ExactlyOnce, false).await.unwrap();
    }
    let (mut late, _) =
        Client::connect(ConnectOptions::new("late").url(broker.url()).version(ProtocolVersion::V5))
            .await
            .unwrap();
    late.subscribe("keep/#", QoS::AtLeastOnce).await.unwrap();
    let message = next(&mut late).await;
    assert!(message.retain);
    assert_eq!(&message.payload[..], b"kept");
    client.disconnect().await.unwrap();
    late.disconnect().await.unwrap();
}

#[tokio::test]
async fn v5_assigned_client_id_and_session_present() {
    let Some(broker) = common::mosquitto() else { return };
    let options = ConnectOptions::new("").url(broker.url()).version(ProtocolVersion::V5);
    let (client, ack) = Client::connect(options).await.unwrap();
    assert!(!client.client_id().is_empty(), "the server assigns an identifier");
    assert!(ack.properties.assigned_client_identifier.is_some());
    client.disconnect().await.unwrap();

    let keep = || {
        ConnectOptions::new("keeper")
            .url(broker.url())
            .version(ProtocolVersion::V5)
            .clean_start(false)
            .session_expiry(60)
    };
    let (first, _) = Client::connect(keep()).await.unwrap();
    first.subscribe("s/#", QoS::AtLeastOnce).await.unwrap();
    first.disconnect().await.unwrap();
    let (mut second, ack) = Client::connect(keep()).await.unwrap();
    assert!(ack.session_present);
    let (other, _) = Client::connect(ConnectOptions::new("o").url(broker.url())).await.unwrap();
    other.publish("s/1", "for the stored session", QoS::AtLeastOnce, false).await.unwrap();
    assert_eq!(&next(&mut second).await.payload[..], b"for the stored session");
    other.disconnect().await.unwrap();
    second.disconnect().await.unwrap();
}

#[tokio::test]
async fn refused_connect_is_a_typed_error() {
    let Some(broker) = common::mosquitto() else { return };
    // 3.1.1: an empty client identifier needs a clean session (MQTT-3.1.3-7, -8).
    let options = ConnectOptions::new("").url(broker.url()).clean_start(false);
    match Client::connect(options).await {
        Err(ClientError::ConnectionRefused { reason, .. }) => {
            assert_eq!(reason, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // Nothing listens on this port.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let options = ConnectOptions::new("x").url(format!("mqtt://127.0.0.1:{port}"));
    assert!(matches!(Client::connect(options).await, Err(ClientError::Io(_))));
    // Invalid topics are refused before anything is sent.
    let (client, _) = Client::connect(ConnectOptions::new("t").url(broker.url())).await.unwrap();
    let error = client.publish("a/+", "x", QoS::AtMostOnce, false).await.unwrap_err();
    assert!(matches!(error, ClientError::InvalidTopic { .. }), "{error}");
    let error = client.subscribe("a/#/b", QoS::AtMostOnce).await.unwrap_err();
    assert!(matches!(error, ClientError::InvalidTopic { .. }), "{error}");
    client.disconnect().await.unwrap();
}

#[tokio::test]
async fn keep_alive_pings_keep_the_connection_open() {
    let Some(broker) = common::mosquitto() else { return };
    let (mut client, _) =
        Client::connect(ConnectOptions::new("ka").url(broker.url()).keep_alive(1)).await.unwrap();
    client.subscribe("ka", QoS::AtMostOnce).await.unwrap();
    // Mosquitto closes a connection idle for 1.5 keep alive intervals without PINGREQ.
    tokio::time::sleep(Duration::from_millis(2600)).await;
    assert!(!client.is_closed(), "closed: {:?}", client.close_reason());
    client.publish("ka", "alive", QoS::AtLeastOnce, false).await.unwrap();
    assert_eq!(&next(&mut client).await.payload[..], b"alive");
    client.disconnect().await.unwrap();
}

#[tokio::test]
async fn will_is_published_when_the_client_vanishes() {
    let Some(broker) = common::mosquitto() else { return };
    let (mut watcher, _) =
        Client::connect(ConnectOptions::new("w").url(broker.url())).await.unwrap();
    watcher.subscribe("wills/#", QoS::AtLeastOnce).await.unwrap();
    let options = ConnectOptions::new("dying").url(broker.url()).will(
        "wills/dying",
        "gone",
        QoS::AtLeastOnce,
        false,
        None,
    );
    let (dying, _) = Client::connect(options).await.unwrap();
    drop(dying); // no DISCONNECT
    assert_eq!(&next(&mut watcher).await.payload[..], b"gone");
    watcher.disconnect().await.unwrap();
}

#[tokio::test]
async fn next_message_ends_when_the_server_closes() {
    let Some(broker) = common::mosquitto() else { return };
    let options = || ConnectOptions::new("same").url(broker.url()).version(ProtocolVersion::V5);
    let (mut first, _) = Client::connect(options()).await.unwrap();
    // A second connection with the same identifier takes the session over: the first is closed
    // (a 5.0 server may first send DISCONNECT 0x8E Session taken over; Mosquitto 2.0.11 just
    // closes the socket).
    let (second, _) = Client::connect(options()).await.unwrap();
    let end = tokio::time::timeout(WAIT, first.next_message()).await.unwrap();
    assert!(end.is_none());
    match first.close_reason() {
        Some(ClientError::DisconnectedByServer { reason, .. }) => {
            assert_eq!(reason, ReasonCode::SESSION_TAKEN_OVER);
        }
        Some(ClientError::ConnectionClosed) => {}
        other => panic!("unexpected close reason {other:?}"),
    }
    let error = first.publish("x", "y", QoS::AtLeastOnce, false).await.unwrap_err();
    assert!(
        matches!(error, ClientError::DisconnectedByServer { .. } | ClientError::ConnectionClosed),
        "{error}"
    );
    second.disconnect().await.unwrap();
}

#[tokio::test]
async fn raw_connection_sends_packets_and_bytes() {
    let Some(broker) = common::mosquitto() else { return };
    let url = broker.url();
    let mut raw = RawConnection::connect(&url, ProtocolVersion::V3_1_1, WAIT).await.unwrap();
    // CONNECT "raw" 3.1.1 with clean session, as bytes.
    raw.send_bytes(b"\x10\x0f\x00\x04MQTT\x04\x02\x00\x3c\x00\x03raw").await.unwrap();
    let Packet::ConnAck(ack) = raw.recv_timeout(WAIT).await.unwrap() else { panic!("CONNACK") };
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    raw.send(&Packet::PingReq).await.unwrap();
    assert_eq!(raw.recv_timeout(WAIT).await.unwrap(), Packet::PingResp);
    // Nothing more comes.
    assert!(matches!(
        raw.recv_timeout(Duration::from_millis(200)).await,
        Err(ClientError::Timeout { .. })
    ));
    // Reserved packet type 0: the server must close the connection.
    raw.send_bytes(b"\x00\x00").await.unwrap();
    raw.wait_closed(WAIT).await.unwrap();
    assert!(matches!(raw.recv().await, Err(ClientError::ConnectionClosed)));
}
