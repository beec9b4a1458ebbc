//! Arbitrary bytes through a server decoder (CONNECT first, then the session in its version) or
//! a 3.1.1 / 5.0 / 3.1 client decoder, chosen by the first byte: see
//! `musqratt_proto::fuzzing::Input`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| musqratt_proto::fuzzing::check_decode(data));
