//! The client API in one page: connect, subscribe, publish at each QoS, receive, disconnect.
//!
//! Run a broker first (`musqratt broker`, or `mosquitto -p 1883`), then:
//!
//! ```sh
//! cargo run -p musqratt-client --example client -- mqtt://127.0.0.1:1883
//! ```

use core::time::Duration;

use musqratt_client::{Client, ClientError, ConnectOptions};
use musqratt_proto::{ProtocolVersion, QoS};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), ClientError> {
    let url = std::env::args().nth(1).unwrap_or_else(|| "mqtt://127.0.0.1:1883".into());
    let options = ConnectOptions::new("example-client")
        .url(url)
        .version(ProtocolVersion::V5)
        .keep_alive(30)
        .will("example/status", "offline", QoS::AtLeastOnce, true, None);
    let (mut client, connack) = Client::connect(options).await?;
    println!("connected (session present: {})", connack.session_present);

    let granted = client.subscribe("example/#", QoS::ExactlyOnce).await?;
    println!("subscribed to example/# with QoS {}", granted.bits());

    // Each call returns once the broker has acknowledged (QoS 1: PUBACK; QoS 2: PUBCOMP).
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let payload = format!("hello at QoS {}", qos.bits());
        client.publish("example/greeting", payload, qos, false).await?;
    }

    // Our own messages come back; each is acknowledged to the broker before we see it.
    for _ in 0..3 {
        match tokio::time::timeout(Duration::from_secs(5), client.next_message()).await {
            Ok(Some(message)) => println!(
                "received on {} (QoS {}): {}",
                message.topic,
                message.qos.bits(),
                String::from_utf8_lossy(&message.payload)
            ),
            Ok(None) => return Err(client.close_reason().unwrap_or(ClientError::ConnectionClosed)),
            Err(_) => break,
        }
    }

    client.unsubscribe("example/#").await?;
    client.disconnect().await?; // a normal disconnection: the will is not published
    Ok(())
}
