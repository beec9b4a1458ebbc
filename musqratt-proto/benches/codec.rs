//! PUBLISH decode and encode throughput of musqratt-proto next to rumqttc's `mqttbytes` codecs
//! (v4 for MQTT 3.1.1, v5 for 5.0), on the same bytes.
//!
//! Each case is a stream of PUBLISH packets (64 B or 1 KiB payloads, QoS 0 or 1) of about
//! 256 KiB, encoded once; both codecs must produce identical bytes for it.
//! - decode: a fresh `BytesMut` copy of the stream (made outside the timing) is split into owned
//!   packets whose payload is a `Bytes` slice of it, until it is empty;
//! - encode: the same packets, already built, are written into one reused `BytesMut`.
//!
//! Throughput is in stream bytes. Run: `cargo bench -p musqratt-proto --bench codec`.
#![allow(missing_docs)]

use core::hint::black_box;

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use musqratt_proto::mqtt::{Decoder, Packet, Publish};
use musqratt_proto::{PacketId, ProtocolVersion, QoS};
use rumqttc::mqttbytes::v4 as rv4;
use rumqttc::v5::mqttbytes::v5 as rv5;

const STREAM_BYTES: usize = 256 * 1024;
const TOPIC: &str = "sensors/building-7/floor-3/room-12/temperature";
const MAX: usize = 1 << 20;

struct Case {
    name: String,
    version: ProtocolVersion,
    ours: Vec<Publish>,
    wire: Bytes,
}

fn case(version: ProtocolVersion, payload_len: usize, qos: QoS) -> Case {
    let payload = Bytes::from((0..payload_len).map(|i| i as u8).collect::<Vec<u8>>());
    let mut ours = Vec::new();
    let mut wire = BytesMut::new();
    let mut id = PacketId::MIN;
    while wire.len() < STREAM_BYTES {
        let mut publish = Publish::new(ByteString::from_static(TOPIC), payload.clone());
        publish.qos = qos;
        if qos != QoS::AtMostOnce {
            publish.packet_id = Some(id);
            id = id.next();
        }
        publish.encode(version, &mut wire).unwrap();
        ours.push(publish);
    }
    let v = if version.is_v5() { "v5" } else { "v311" };
    let size = if payload_len >= 1024 { "1KiB" } else { "64B" };
    let name = format!("{v}/{size}/qos{}", qos.bits());
    Case { name, version, ours, wire: wire.freeze() }
}

fn rumqttc_v4(ours: &[Publish]) -> Vec<rv4::Publish> {
    ours.iter()
        .map(|p| {
            let qos = rumqttc::mqttbytes::qos(p.qos.bits()).unwrap();
            let mut publish = rv4::Publish::from_bytes(&*p.topic, qos, p.payload.clone());
            publish.pkid = p.packet_id.map_or(0, PacketId::get);
            publish
        })
        .collect()
}

fn rumqttc_v5(ours: &[Publish]) -> Vec<rv5::Publish> {
    ours.iter()
        .map(|p| {
            let qos = rumqttc::v5::mqttbytes::qos(p.qos.bits()).unwrap();
            let mut publish = rv5::Publish::new(&*p.topic, qos, p.payload.clone(), None);
            publish.pkid = p.packet_id.map_or(0, PacketId::get);
            publish
        })
        .collect()
}

fn decode_ours(version: ProtocolVersion, mut buf: BytesMut) -> usize {
    let mut decoder = Decoder::with_version(version, MAX as u32);
    let mut n = 0;
    while let Some(packet) = decoder.decode(&mut buf).unwrap() {
        debug_assert!(matches!(packet, Packet::Publish(_)));
        black_box(packet);
        n += 1;
    }
    assert!(buf.is_empty());
    n
}

fn decode_v4(mut buf: BytesMut) -> usize {
    let mut n = 0;
    while !buf.is_empty() {
        black_box(rv4::Packet::read(&mut buf, MAX).unwrap());
        n += 1;
    }
    n
}

fn decode_v5(mut buf: BytesMut) -> usize {
    let mut n = 0;
    while !buf.is_empty() {
        black_box(rv5::Packet::read(&mut buf, Some(MAX as u32)).unwrap());
        n += 1;
    }
    n
}

fn codec(c: &mut Criterion) {
    let mut cases = Vec::new();
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        for payload in [64, 1024] {
            for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
                cases.push(case(version, payload, qos));
            }
        }
    }
    for case in &cases {
        let Case { name, version, ours, wire } = case;
        let version = *version;
        let count = ours.len();
        let fresh = || BytesMut::from(&wire[..]);

        // Same bytes on both sides, and both decoders read them back.
        let mut dst = BytesMut::new();
        let (theirs_v4, theirs_v5) = if version.is_v5() {
            let theirs = rumqttc_v5(ours);
            for p in &theirs {
                p.write(&mut dst).unwrap();
            }
            assert_eq!(decode_v5(fresh()), count);
            (Vec::new(), theirs)
        } else {
            let theirs = rumqttc_v4(ours);
            for p in &theirs {
                p.write(&mut dst).unwrap();
            }
            assert_eq!(decode_v4(fresh()), count);
            (theirs, Vec::new())
        };
        assert_eq!(&dst[..], &wire[..], "{name}: rumqttc encodes other bytes");
        assert_eq!(decode_ours(version, fresh()), count);

        let mut group = c.benchmark_group(format!("decode/{name}"));
        group.throughput(Throughput::Bytes(wire.len() as u64));
        group.bench_function("musqratt", |b| {
            b.iter_batched(fresh, |buf| decode_ours(version, buf), BatchSize::LargeInput);
        });
        group.bench_function("rumqttc", |b| {
            if version.is_v5() {
                b.iter_batched(fresh, decode_v5, BatchSize::LargeInput);
            } else {
                b.iter_batched(fresh, decode_v4, BatchSize::LargeInput);
            }
        });
        group.finish();

        let mut group = c.benchmark_group(format!("encode/{name}"));
        group.throughput(Throughput::Bytes(wire.len() as u64));
        let mut buf = BytesMut::with_capacity(wire.len());
        group.bench_function("musqratt", |b| {
            b.iter(|| {
                buf.clear();
                for p in ours {
                    p.encode(version, &mut buf).unwrap();
                }
                black_box(buf.len())
            });
        });
        group.bench_function("rumqttc", |b| {
            b.iter(|| {
                buf.clear();
                for p in &theirs_v4 {
                    p.write(&mut buf).unwrap();
                }
                for p in &theirs_v5 {
                    p.write(&mut buf).unwrap();
                }
                black_box(buf.len())
            });
        });
        group.finish();
    }
}

criterion_group!(benches, codec);
criterion_main!(benches);
