//! Instructions per packet of the codec bench's cases (`common::Case`), for counting under
//! callgrind, which is deterministic where wall time on a shared machine is not.
//!
//! `codec_instr <encode|decode> <musqratt|rumqttc> <case> [rounds]` runs the operation once to
//! warm up, then `rounds` times (default 4) inside `measured`, the one function callgrind
//! collects (`--toggle-collect='*measured*'`); the copies of the stream a decode consumes are
//! made before it. Printed: the packet count and rounds, to divide the collected total by.
//! `bench/codec-instr.sh` runs every case for both libraries and prints the table.
#![allow(missing_docs)]

mod common;

use core::hint::black_box;

use bytes::BytesMut;
use common::{Case, decode_ours};

#[derive(Clone, Copy)]
enum Op {
    EncodeOurs,
    EncodeTheirs,
    DecodeOurs,
    DecodeTheirs,
}

/// One pass over the stream.
#[inline(never)]
fn run(op: Op, case: &Case, buf: &mut BytesMut, input: BytesMut) -> usize {
    match op {
        Op::EncodeOurs => case.encode_ours(buf),
        Op::EncodeTheirs => case.encode_theirs(buf),
        Op::DecodeOurs => decode_ours(case.version, input),
        Op::DecodeTheirs => case.decode_theirs(input),
    }
}

/// The rounds callgrind counts.
#[inline(never)]
fn measured(op: Op, case: &Case, buf: &mut BytesMut, inputs: Vec<BytesMut>) -> usize {
    inputs.into_iter().map(|input| run(op, case, buf, input)).sum()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let usage =
        "usage: codec_instr <encode|decode> <musqratt|rumqttc> <case, e.g. v5/64B/qos0> [rounds]";
    // Anything else (`cargo bench` with no arguments or a criterion filter) is not for this
    // driver: say how to use it and succeed, so that running all benches still works.
    let [op, lib, name, rest @ ..] = &args[..] else {
        eprintln!("{usage}");
        return;
    };
    if !matches!(op.as_str(), "encode" | "decode") {
        eprintln!("{usage}");
        return;
    }
    let rounds: usize = rest.first().map_or(4, |r| r.parse().expect(usage));
    let op = match (op.as_str(), lib.as_str()) {
        ("encode", "musqratt") => Op::EncodeOurs,
        ("encode", "rumqttc") => Op::EncodeTheirs,
        ("decode", "musqratt") => Op::DecodeOurs,
        ("decode", "rumqttc") => Op::DecodeTheirs,
        _ => panic!("{usage}"),
    };
    let case = Case::all().into_iter().find(|c| c.name == *name).expect("no such case");
    let mut buf = BytesMut::with_capacity(case.wire.len());
    let is_decode = matches!(op, Op::DecodeOurs | Op::DecodeTheirs);
    let input = |_| if is_decode { case.fresh() } else { BytesMut::new() };
    black_box(run(op, &case, &mut buf, input(0)));
    let inputs: Vec<BytesMut> = (0..rounds).map(input).collect();
    black_box(measured(op, &case, &mut buf, inputs));
    println!("packets {} rounds {rounds}", case.ours.len());
}
