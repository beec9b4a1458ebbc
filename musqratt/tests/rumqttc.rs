//! rumqttc, a real Rust client, publishes and subscribes through an in-process broker at QoS 0,
//! 1 and 2, over MQTT 3.1.1 (`rumqttc::AsyncClient`) and 5.0 (`rumqttc::v5::AsyncClient`).

use core::net::SocketAddr;
use core::time::Duration;

use musqratt::{Broker, BrokerConfig};

fn start() -> Broker {
    let mut config = BrokerConfig::default();
    config.listeners = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
    config.threads = 2;
    Broker::start(config).expect("broker starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rumqttc_v311_qos_0_1_2() {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let broker = start();
    let addr = broker.local_addr();
    let options = |id: &str| {
        let mut o = MqttOptions::new(id, addr.ip().to_string(), addr.port());
        o.set_keep_alive(Duration::from_secs(30));
        o
    };
    let (sub, mut sub_loop) = AsyncClient::new(options("rumqttc-sub"), 16);
    let (publisher, mut pub_loop) = AsyncClient::new(options("rumqttc-pub"), 16);
    tokio::spawn(async move { while pub_loop.poll().await.is_ok() {} });
    sub.subscribe("rumqttc/#", QoS::ExactlyOnce).await.unwrap();
    // Wait for the SUBACK before publishing.
    loop {
        if let Event::Incoming(Packet::SubAck(_)) = sub_loop.poll().await.unwrap() {
            break;
        }
    }
    for (i, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce].into_iter().enumerate() {
        publisher.publish(format!("rumqttc/{i}"), qos, false, vec![i as u8]).await.unwrap();
    }
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), async {
        while got.len() < 3 {
            if let Event::Incoming(Packet::Publish(p)) = sub_loop.poll().await.unwrap() {
                got.push((p.topic.clone(), p.qos, p.payload.to_vec()));
            }
        }
    })
    .await
    .expect("three messages");
    got.sort_by(|a, b| a.0.cmp(&b.0));
    let want: Vec<_> = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
        .into_iter()
        .enumerate()
        .map(|(i, qos)| (format!("rumqttc/{i}"), qos, vec![i as u8]))
        .collect();
    assert_eq!(got, want);
    broker.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rumqttc_v5_qos_0_1_2() {
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::mqttbytes::v5::Packet;
    use rumqttc::v5::{AsyncClient, Event, MqttOptions};
    let broker = start();
    let addr = broker.local_addr();
    let options = |id: &str| {
        let mut o = MqttOptions::new(id, addr.ip().to_string(), addr.port());
        o.set_keep_alive(Duration::from_secs(30));
        o
    };
    let (sub, mut sub_loop) = AsyncClient::new(options("rumqttc5-sub"), 16);
    let (publisher, mut pub_loop) = AsyncClient::new(options("rumqttc5-pub"), 16);
    tokio::spawn(async move { while pub_loop.poll().await.is_ok() {} });
    sub.subscribe("rumqttc5/#", QoS::ExactlyOnce).await.unwrap();
    loop {
        if let Event::Incoming(Packet::SubAck(_)) = sub_loop.poll().await.unwrap() {
            break;
        }
    }
    for (i, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce].into_iter().enumerate() {
        publisher.publish(format!("rumqttc5/{i}"), qos, false, vec![i as u8]).await.unwrap();
    }
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), async {
        while got.len() < 3 {
            if let Event::Incoming(Packet::Publish(p)) = sub_loop.poll().await.unwrap() {
                got.push((p.topic.to_vec(), p.qos, p.payload.to_vec()));
            }
        }
    })
    .await
    .expect("three messages");
    got.sort_by(|a, b| a.0.cmp(&b.0));
    let want: Vec<_> = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
        .into_iter()
        .enumerate()
        .map(|(i, qos)| (format!("rumqttc5/{i}").into_bytes(), qos, vec![i as u8]))
        .collect();
    assert_eq!(got, want);
    broker.shutdown().unwrap();
}
