//! PUBLISH decode and encode throughput of musqratt-proto next to rumqttc's `mqttbytes` codecs
//! (v4 for MQTT 3.1.1, v5 for 5.0), on the same bytes.
//!
//! Each case is a stream of PUBLISH packets (64 B or 1 KiB payloads, QoS 0 or 1) of about
//! 256 KiB, encoded once; both codecs must produce identical bytes for it (`common::Case`).
//! - decode: a fresh `BytesMut` copy of the stream (made outside the timing) is split into owned
//!   packets whose payload is a `Bytes` slice of it, until it is empty;
//! - encode: the same packets, already built, are written into one reused `BytesMut`.
//!
//! Throughput is in stream bytes. Run: `cargo bench -p musqratt-proto --bench codec`.
//! `codec_instr.rs` counts instructions per packet for the same cases (under callgrind).
#![allow(missing_docs)]

mod common;

use bytes::BytesMut;
use common::{Case, decode_ours};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

fn codec(c: &mut Criterion) {
    for case in &Case::all() {
        let version = case.version;
        let bytes = case.wire.len() as u64;
        let fresh = || case.fresh();

        let mut group = c.benchmark_group(format!("decode/{}", case.name));
        group.throughput(Throughput::Bytes(bytes));
        group.bench_function("musqratt", |b| {
            b.iter_batched(fresh, |buf| decode_ours(version, buf), BatchSize::LargeInput);
        });
        group.bench_function("rumqttc", |b| {
            b.iter_batched(fresh, |buf| case.decode_theirs(buf), BatchSize::LargeInput);
        });
        group.finish();

        let mut group = c.benchmark_group(format!("encode/{}", case.name));
        group.throughput(Throughput::Bytes(bytes));
        let mut buf = BytesMut::with_capacity(case.wire.len());
        group.bench_function("musqratt", |b| b.iter(|| case.encode_ours(&mut buf)));
        group.bench_function("rumqttc", |b| b.iter(|| case.encode_theirs(&mut buf)));
        group.finish();
    }
}

criterion_group!(benches, codec);
criterion_main!(benches);
