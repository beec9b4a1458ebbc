//! Every MQTT-SN datagram that decodes must re-encode to an equal message with a stable
//! encoding: see `musqratt_proto::fuzzing::check_sn_roundtrip`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| musqratt_proto::fuzzing::check_sn_roundtrip(data));
