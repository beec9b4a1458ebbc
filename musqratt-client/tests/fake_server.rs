//! The client against a scripted server built on `RawConnection`: the cases a well-behaved
//! broker does not produce on demand (duplicates, silence, refusals).

use core::time::Duration;

use musqratt_client::{Client, ClientError, ConnectOptions, RawConnection};
use musqratt_proto::mqtt::{ConnAck, Packet, PubResponse, Publish, ReasonCode};
use musqratt_proto::{PacketId, ProtocolVersion, QoS};
use tokio::net::TcpListener;

const WAIT: Duration = Duration::from_secs(5);

/// Listens on a free port; returns the listener and the URL to give the client.
async fn listen() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("mqtt://{}", listener.local_addr().unwrap());
    (listener, url)
}

/// Accepts one client, reads its CONNECT and answers CONNACK with `reason`.
async fn accept(
    listener: &TcpListener,
    version: ProtocolVersion,
    reason: ReasonCode,
) -> RawConnection {
    let (stream, _) = listener.accept().await.unwrap();
    let mut conn = RawConnection::from_stream(stream, version, 1 << 20);
    let Packet::Connect(connect) = conn.recv_timeout(WAIT).await.unwrap() else {
        panic!("CONNECT")
    };
    assert_eq!(connect.protocol, version);
    let ack =
        ConnAck { session_present: false, reason_code: reason, properties: Default::default() };
    conn.send(&Packet::ConnAck(Box::new(ack))).await.unwrap();
    conn
}

fn id(value: u16) -> PacketId {
    PacketId::new(value).unwrap()
}

fn publish(qos: QoS, packet_id: Option<u16>, payload: &'static str) -> Packet {
    let mut message = Publish::new("t".into(), payload.into());
    message.qos = qos;
    message.packet_id = packet_id.map(id);
    Packet::Publish(message)
}

#[tokio::test]
async fn inbound_qos_1_and_2_are_acknowledged_and_duplicates_suppressed() {
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let (listener, url) = listen().await;
        let server = tokio::spawn(async move {
            let mut conn = accept(&listener, version, ReasonCode::SUCCESS).await;
            conn.send(&publish(QoS::AtLeastOnce, Some(7), "one")).await.unwrap();
            assert_eq!(
                conn.recv_timeout(WAIT).await.unwrap(),
                Packet::PubAck(PubResponse::new(id(7)))
            );
            conn.send(&publish(QoS::ExactlyOnce, Some(9), "two")).await.unwrap();
            assert_eq!(
                conn.recv_timeout(WAIT).await.unwrap(),
                Packet::PubRec(PubResponse::new(id(9)))
            );
            // A re-sent PUBLISH before PUBREL: acknowledged again, not delivered again.
            let Packet::Publish(mut again) = publish(QoS::ExactlyOnce, Some(9), "two") else {
                unreachable!()
            };
            again.dup = true;
            conn.send(&Packet::Publish(again)).await.unwrap();
            assert_eq!(
                conn.recv_timeout(WAIT).await.unwrap(),
                Packet::PubRec(PubResponse::new(id(9)))
            );
            conn.send(&Packet::PubRel(PubResponse::new(id(9)))).await.unwrap();
            assert_eq!(
                conn.recv_timeout(WAIT).await.unwrap(),
                Packet::PubComp(PubResponse::new(id(9)))
            );
            // After PUBREL the identifier is free: the same id is a new message.
            conn.send(&publish(QoS::ExactlyOnce, Some(9), "three")).await.unwrap();
            assert_eq!(
                conn.recv_timeout(WAIT).await.unwrap(),
                Packet::PubRec(PubResponse::new(id(9)))
            );
            conn.send(&publish(QoS::AtMostOnce, None, "end")).await.unwrap();
            let closing = conn.wait_closed(WAIT).await.unwrap();
            assert!(matches!(closing[..], [Packet::Disconnect(_)]), "{closing:?}");
        });
        let options = ConnectOptions::new("c").url(url).version(version);
        let (mut client, _) = Client::connect(options).await.unwrap();
        let mut payloads = Vec::new();
        while let Some(message) = tokio::time::timeout(WAIT, client.next_message()).await.unwrap() {
            payloads.push(String::from_utf8(message.payload.to_vec()).unwrap());
            if payloads.last().unwrap() == "end" {
                break;
            }
        }
        assert_eq!(payloads, ["one", "two", "three", "end"]);
        client.disconnect().await.unwrap();
        server.await.unwrap();
    }
}

#[tokio::test]
async fn outbound_qos_2_flow_and_refusals() {
    let (listener, url) = listen().await;
    let server = tokio::spawn(async move {
        let mut conn = accept(&listener, ProtocolVersion::V5, ReasonCode::SUCCESS).await;
        let Packet::Publish(first) = conn.recv_timeout(WAIT).await.unwrap() else { panic!() };
        let first_id = first.packet_id.unwrap();
        conn.send(&Packet::PubRec(PubResponse::new(first_id))).await.unwrap();
        assert_eq!(
            conn.recv_timeout(WAIT).await.unwrap(),
            Packet::PubRel(PubResponse::new(first_id))
        );
        conn.send(&Packet::PubComp(PubResponse::new(first_id))).await.unwrap();
        // The next request gets the next identifier, and a refusal is reported.
        let Packet::Publish(second) = conn.recv_timeout(WAIT).await.unwrap() else { panic!() };
        assert_eq!(second.packet_id, Some(first_id.next()));
        let mut refusal = PubResponse::new(first_id.next());
        refusal.reason_code = ReasonCode::NOT_AUTHORIZED;
        conn.send(&Packet::PubAck(refusal)).await.unwrap();
        // No answer at all to the third.
        let Packet::Publish(_) = conn.recv_timeout(WAIT).await.unwrap() else { panic!() };
        conn.wait_closed(WAIT).await.unwrap();
    });
    let options = ConnectOptions::new("c")
        .url(url)
        .version(ProtocolVersion::V5)
        .timeout(Duration::from_millis(500));
    let (client, _) = Client::connect(options).await.unwrap();
    client.publish("t", "exactly once", QoS::ExactlyOnce, false).await.unwrap();
    match client.publish("t", "refused", QoS::AtLeastOnce, false).await {
        Err(ClientError::Refused { operation: "publish", reason, .. }) => {
            assert_eq!(reason, ReasonCode::NOT_AUTHORIZED);
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let error = client.publish("t", "ignored", QoS::AtLeastOnce, false).await.unwrap_err();
    assert!(matches!(error, ClientError::Timeout { waiting_for: "PUBACK", .. }), "{error}");
    drop(client);
    server.await.unwrap();
}

#[tokio::test]
async fn silent_server_times_out_and_missing_pingresp_closes() {
    // No CONNACK.
    let (listener, url) = listen().await;
    let silent = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        tokio::time::sleep(WAIT).await;
        drop(stream);
    });
    let options = ConnectOptions::new("c").url(url).timeout(Duration::from_millis(300));
    let error = Client::connect(options).await.unwrap_err();
    assert!(matches!(error, ClientError::Timeout { waiting_for: "CONNACK", .. }), "{error}");
    silent.abort();

    // CONNACK refused (3.1.1 return code 5).
    let (listener, url) = listen().await;
    tokio::spawn(async move {
        let _conn = accept(&listener, ProtocolVersion::V3_1_1, ReasonCode::NOT_AUTHORIZED).await;
        tokio::time::sleep(WAIT).await;
    });
    let error = Client::connect(ConnectOptions::new("c").url(url)).await.unwrap_err();
    assert!(matches!(
        error,
        ClientError::ConnectionRefused { reason: ReasonCode::NOT_AUTHORIZED, .. }
    ));

    // PINGREQ without PINGRESP.
    let (listener, url) = listen().await;
    let server = tokio::spawn(async move {
        let mut conn = accept(&listener, ProtocolVersion::V3_1_1, ReasonCode::SUCCESS).await;
        assert_eq!(conn.recv_timeout(WAIT).await.unwrap(), Packet::PingReq);
        conn.wait_closed(WAIT).await.unwrap();
    });
    let (mut client, _) =
        Client::connect(ConnectOptions::new("c").url(url).keep_alive(1)).await.unwrap();
    assert!(tokio::time::timeout(WAIT, client.next_message()).await.unwrap().is_none());
    assert!(matches!(client.close_reason(), Some(ClientError::KeepAliveTimeout)));
    server.await.unwrap();
}
