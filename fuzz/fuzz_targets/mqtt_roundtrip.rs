//! Every packet decoded from arbitrary bytes must decode again from its encoding to an equal
//! packet whose encoding is byte-identical: see `musqratt_proto::fuzzing::check_roundtrip`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| musqratt_proto::fuzzing::check_roundtrip(data));
