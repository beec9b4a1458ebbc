//! Issue 17, the admin listener's lists and MQTT-SN counts on the `musqratt` binary (each
//! runtime): `GET /api/v1/clients` lists the clients a test connected, paged, with what they
//! presented; `/metrics`, `/api/v1/stats` and `$SYS` count MQTT-SN peers and sleeping clients
//! of real MQTT-SN clients (the testkit's).

use core::time::Duration;

use musqratt_proto::sn::Message;
use musqratt_testkit::sn::{connect as sn_connect, recv, send, sn_client};
use musqratt_testkit::{BrokerProcess, free_port, http_get_ok, scratch_dir};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use serde_json::Value;

fn json(port: u16, path: &str) -> Value {
    let body = http_get_ok(port, path);
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

/// Connects and polls until the CONNACK; the event loop then runs on a task of its own.
async fn connected(options: MqttOptions) -> (AsyncClient, tokio::task::JoinHandle<()>) {
    let (client, mut events) = AsyncClient::new(options, 16);
    loop {
        if let Event::Incoming(Packet::ConnAck(_)) = events.poll().await.unwrap() {
            break;
        }
    }
    (client, tokio::spawn(poll_forever(events)))
}

async fn poll_forever(mut events: EventLoop) {
    while events.poll().await.is_ok() {}
}

const N_CLIENTS: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clients_list_shows_the_connected_clients_on_tokio() {
    clients_list("tokio").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clients_list_shows_the_connected_clients_on_io_uring() {
    clients_list("io-uring").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clients_list_shows_the_connected_clients_on_blocking() {
    clients_list("blocking").await;
}

async fn clients_list(runtime: &str) {
    let (port, http) = (free_port(), free_port());
    let dir = scratch_dir(&format!("admin-clients-{runtime}"));
    let config = format!(
        "listeners = [\"mqtt://127.0.0.1:{port}\"]\nthreads = 2\n\
         [http]\nlisten = \"127.0.0.1:{http}\"\n"
    );
    let broker = BrokerProcess::musqratt(env!("CARGO_BIN_EXE_musqratt"), &dir, runtime, &config)
        .port(port)
        .port(http)
        .start();
    let empty = json(http, "/api/v1/clients");
    assert_eq!(empty["total"], 0, "{empty}");

    // N clients over two shards (by their ids), each with a user name of its own.
    let mut clients = Vec::new();
    for i in 0..N_CLIENTS {
        let mut options = MqttOptions::new(format!("client-{i}"), "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(30));
        options.set_credentials(format!("user-{i}"), "secret");
        clients.push(connected(options).await);
    }
    let all = json(http, "/api/v1/clients?limit=100");
    assert_eq!(all["total"], N_CLIENTS, "{all}");
    let list = all["clients"].as_array().unwrap();
    assert_eq!(list.len(), N_CLIENTS, "{all}");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    for (i, client) in list.iter().enumerate() {
        // In the order of their ids, whatever shard holds them.
        assert_eq!(client["client_id"], format!("client-{i}"), "{all}");
        assert_eq!(client["username"], format!("user-{i}"), "{all}");
        // rumqttc speaks MQTT 3.1.1 (protocol level 4).
        assert_eq!(client["protocol"], "3.1.1", "{all}");
        let peer = client["peer"].as_str().unwrap_or_else(|| panic!("no peer: {all}"));
        assert!(peer.starts_with("127.0.0.1:"), "{all}");
        assert_eq!(client["queued"], 0, "{all}");
        let since = client["connected_since"].as_u64().unwrap();
        assert!(since <= now.as_secs() && since + 60 > now.as_secs(), "{all}");
    }
    // Pages: 2 a page, the second holds the third and fourth clients, the third the last.
    let page = json(http, "/api/v1/clients?page=2&limit=2");
    let ids: Vec<_> =
        page["clients"].as_array().unwrap().iter().map(|c| c["client_id"].clone()).collect();
    assert_eq!(ids, ["client-2", "client-3"], "{page}");
    assert_eq!((page["page"].as_u64(), page["limit"].as_u64()), (Some(2), Some(2)), "{page}");
    let last = json(http, "/api/v1/clients?page=3&limit=2");
    assert_eq!(last["clients"].as_array().unwrap().len(), 1, "{last}");
    assert_eq!(json(http, "/api/v1/clients?page=9&limit=2")["clients"], Value::Array(vec![]));

    // One leaves: the list says so.
    let (gone, _) = clients.remove(0);
    gone.disconnect().await.unwrap();
    let after = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let list = json(http, "/api/v1/clients");
            if list["total"] == N_CLIENTS - 1 {
                return list;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the disconnected client leaves the list");
    assert_eq!(after["clients"][0]["client_id"], "client-1", "{after}");
    let log = broker.stop();
    assert!(!log.contains("panicked"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_sn_peers_and_sleepers_are_counted_on_tokio() {
    sn_counts("tokio").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_sn_peers_and_sleepers_are_counted_on_blocking() {
    sn_counts("blocking").await;
}

/// Three MQTT-SN clients, one of them asleep (§6.14: DISCONNECT with a duration): the three
/// ways of looking say 3 peers, 1 sleeping. (The io-uring runtime serves no MQTT-SN.)
async fn sn_counts(runtime: &str) {
    let (port, sn_port, http) = (free_port(), free_port(), free_port());
    let dir = scratch_dir(&format!("admin-sn-{runtime}"));
    let config = format!(
        "listeners = [\"mqtt://127.0.0.1:{port}\", \"mqtt-sn://127.0.0.1:{sn_port}\"]\n\
         threads = 2\nsys_interval_s = 1\n[http]\nlisten = \"127.0.0.1:{http}\"\n"
    );
    let broker = BrokerProcess::musqratt(env!("CARGO_BIN_EXE_musqratt"), &dir, runtime, &config)
        .port(port)
        .port(http)
        .start();
    let mut options = MqttOptions::new("sys-watcher", "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    let (watcher, mut events) = AsyncClient::new(options, 64);
    watcher.subscribe("$SYS/broker/mqtt-sn/#", QoS::AtMostOnce).await.unwrap();

    let udp = ([127, 0, 0, 1], sn_port).into();
    let sockets: Vec<_> = (0..3).map(|_| sn_client(udp)).collect();
    for (i, socket) in sockets.iter().enumerate() {
        sn_connect(socket, &format!("sn-{i}"));
    }
    send(&sockets[0], &Message::Disconnect(Some(60)));
    assert_eq!(recv(&sockets[0]), Message::Disconnect(None));

    let metrics = http_get_ok(http, "/metrics");
    assert!(metrics.contains("\nmusqratt_sn_peers 3\n"), "{metrics}");
    assert!(metrics.contains("\nmusqratt_sn_sleeping_clients 1\n"), "{metrics}");
    let stats = json(http, "/api/v1/stats");
    assert_eq!(stats["mqtt_sn"]["peers"], 3, "{stats}");
    assert_eq!(stats["mqtt_sn"]["sleeping"], 1, "{stats}");
    // The MQTT-SN clients are in the list too, with their UDP address.
    let list = json(http, "/api/v1/clients");
    let sn: Vec<_> = list["clients"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["protocol"] == "MQTT-SN 1.2")
        .collect();
    assert_eq!(sn.len(), 3, "{list}");
    let local = sockets[1].local_addr().unwrap().to_string();
    assert!(sn.iter().any(|c| c["client_id"] == "sn-1" && c["peer"] == local.as_str()), "{list}");

    let (mut peers, mut sleeping) = (None, None);
    tokio::time::timeout(Duration::from_secs(10), async {
        while peers.as_deref() != Some("3") || sleeping.as_deref() != Some("1") {
            if let Event::Incoming(Packet::Publish(p)) = events.poll().await.unwrap() {
                let value = Some(String::from_utf8_lossy(&p.payload).into_owned());
                match p.topic.as_str() {
                    "$SYS/broker/mqtt-sn/peers" => peers = value,
                    "$SYS/broker/mqtt-sn/clients/sleeping" => sleeping = value,
                    _ => {}
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("$SYS said peers {peers:?}, sleeping {sleeping:?}"));
    let log = broker.stop();
    assert!(!log.contains("panicked"), "{log}");
}
