//! Property: random sequences of valid client operations give the same client-visible
//! transcript with 1 shard and with 3 shards (DESIGN.md, "Many cores": sharding must be
//! invisible to clients).

use core::fmt::Write;

use musqratt_tests::script::run;
use quickcheck::{Arbitrary, Gen, QuickCheck, TestResult};

const CLIENTS: [&str; 4] = ["c0", "c1", "c2", "c3"];
/// No shared subscriptions: which member of a group gets a message is the server's choice
/// (§4.8.2), and round robin cursors kept per publishing shard cannot pick the same member as
/// one global cursor (a known, permitted difference between shard counts).
const FILTERS: [&str; 4] = ["t/a", "t/+", "t/#", "+/b"];
const TOPICS: [&str; 3] = ["t/a", "t/b", "u/b"];

#[derive(Debug, Clone)]
enum Op {
    Connect { client: usize, v5: bool, clean: bool, expiry: u8, will: bool },
    Subscribe { client: usize, filter: usize, qos: u8 },
    Unsubscribe { client: usize, filter: usize },
    Publish { client: usize, topic: usize, qos: u8, retain: bool, payload: u8 },
    Close { client: usize },
    Disconnect { client: usize },
    Ping { client: usize },
    Advance { seconds: u8 },
}

impl Arbitrary for Op {
    fn arbitrary(g: &mut Gen) -> Self {
        let client = usize::arbitrary(g) % CLIENTS.len();
        match u8::arbitrary(g) % 10 {
            0 | 1 => Op::Connect {
                client,
                v5: bool::arbitrary(g),
                clean: bool::arbitrary(g),
                expiry: u8::arbitrary(g) % 3 * 30,
                will: bool::arbitrary(g),
            },
            2 | 3 => Op::Subscribe {
                client,
                filter: usize::arbitrary(g) % FILTERS.len(),
                qos: u8::arbitrary(g) % 3,
            },
            4 => Op::Unsubscribe { client, filter: usize::arbitrary(g) % FILTERS.len() },
            5 | 6 => Op::Publish {
                client,
                topic: usize::arbitrary(g) % TOPICS.len(),
                qos: u8::arbitrary(g) % 3,
                retain: u8::arbitrary(g) % 4 == 0,
                payload: u8::arbitrary(g) % 3,
            },
            7 => Op::Close { client },
            8 => {
                if bool::arbitrary(g) {
                    Op::Disconnect { client }
                } else {
                    Op::Ping { client }
                }
            }
            _ => Op::Advance { seconds: u8::arbitrary(g) % 40 },
        }
    }
}

/// A script that only a well-behaved client would send: every client connects first, QoS 2
/// publications are released right away.
fn script(ops: &[Op]) -> String {
    let mut out = String::new();
    for name in CLIENTS {
        let _ = writeln!(out, "connect {name} v5 keepalive=0");
    }
    for (index, op) in ops.iter().enumerate() {
        let id = index + 1;
        let _ = match op {
            Op::Connect { client, v5, clean, expiry, will } => {
                let name = CLIENTS[*client];
                let version = if *v5 { "v5" } else { "v3.1.1" };
                let will = if *will { format!(" will=w/{name}:gone:1:0") } else { String::new() };
                writeln!(
                    out,
                    "connect {name} {version} clean={} session_expiry={expiry}{will}",
                    u8::from(*clean)
                )
            }
            Op::Subscribe { client, filter, qos } => writeln!(
                out,
                "send {} SUBSCRIBE id={id} {} qos={qos}",
                CLIENTS[*client], FILTERS[*filter]
            ),
            Op::Unsubscribe { client, filter } => {
                writeln!(out, "send {} UNSUBSCRIBE id={id} {}", CLIENTS[*client], FILTERS[*filter])
            }
            Op::Publish { client, topic, qos, retain, payload } => {
                let name = CLIENTS[*client];
                let payload = ["", "p", "payload"][usize::from(*payload)];
                let line = writeln!(
                    out,
                    "send {name} PUBLISH {} qos={qos} id={id} retain={} payload=\"{payload}\"",
                    TOPICS[*topic],
                    u8::from(*retain)
                );
                if *qos == 2 { writeln!(out, "send {name} PUBREL {id}") } else { line }
            }
            Op::Close { client } => writeln!(out, "close {}", CLIENTS[*client]),
            Op::Disconnect { client } => writeln!(out, "disconnect {}", CLIENTS[*client]),
            Op::Ping { client } => writeln!(out, "send {} PINGREQ", CLIENTS[*client]),
            Op::Advance { seconds } => writeln!(out, "advance {seconds}s"),
        };
    }
    out
}

fn same_with_1_and_3_shards(ops: Vec<Op>) -> TestResult {
    let script = script(&ops);
    let (Ok(one), Ok(three)) = (run(&script, 1), run(&script, 3)) else {
        return TestResult::error(format!("script does not run:\n{script}"));
    };
    if one.client_visible == three.client_visible {
        TestResult::passed()
    } else {
        TestResult::error(format!(
            "1 shard:\n{}\n3 shards:\n{}",
            one.client_visible, three.client_visible
        ))
    }
}

#[test]
fn sharding_is_invisible_to_clients() {
    // QUICKCHECK_TESTS and QUICKCHECK_GENERATOR_SIZE scale the search (default 100 cases).
    QuickCheck::new().quickcheck(same_with_1_and_3_shards as fn(Vec<Op>) -> TestResult);
}
