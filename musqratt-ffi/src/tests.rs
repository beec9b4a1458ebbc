//! The C functions called as C would call them: raw pointers, status codes, MQTT bytes.

use alloc::vec::Vec;
use core::ptr;

use crate::*;

/// MQTT 3.1.1 CONNECT, clean session, keep alive 60, client id `id` (one byte).
fn connect(id: u8) -> [u8; 15] {
    let mut packet = *b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x3c\x00\x01?";
    packet[14] = id;
    packet
}

/// SUBSCRIBE packet id 1 to `a` at QoS 1.
const SUBSCRIBE_A: &[u8] = b"\x82\x06\x00\x01\x00\x01a\x01";
/// PUBLISH QoS 0 to `a`, payload `hello`.
const PUBLISH_A: &[u8] = b"\x30\x08\x00\x01ahello";

/// An action as owned data, its bytes copied out before the next call.
#[derive(Debug, PartialEq)]
struct Seen {
    kind: MusqrattActionKind,
    conn: u64,
    data: Vec<u8>,
    code: u8,
}

fn drain(engine: *mut MusqrattEngine) -> Vec<Seen> {
    let mut seen = Vec::new();
    let mut action = blank();
    // SAFETY: a live engine and a local action.
    while unsafe { musqratt_engine_poll_action(engine, &mut action) } == MusqrattStatus::Ok {
        let data = if action.data.is_null() {
            Vec::new()
        } else {
            // SAFETY: valid until the next call on the engine, which comes after this copy.
            unsafe { core::slice::from_raw_parts(action.data, action.len) }.to_vec()
        };
        seen.push(Seen { kind: action.kind, conn: action.conn, data, code: action.code });
    }
    seen
}

fn blank() -> MusqrattAction {
    MusqrattAction { kind: MusqrattActionKind::Close, conn: 0, data: ptr::null(), len: 0, code: 0 }
}

/// What was sent to `conn`, the sends joined.
fn sent_to(seen: &[Seen], conn: u64) -> Vec<u8> {
    seen.iter()
        .filter(|s| s.kind == MusqrattActionKind::Send && s.conn == conn)
        .flat_map(|s| s.data.iter().copied())
        .collect()
}

fn connected(engine: *mut MusqrattEngine, conn: u64, id: u8) {
    let packet = connect(id);
    // SAFETY: a live engine; the packet outlives the call.
    unsafe {
        assert_eq!(musqratt_engine_open(engine, 0, conn), MusqrattStatus::Ok);
        assert_eq!(
            musqratt_engine_input(engine, 0, conn, packet.as_ptr(), packet.len()),
            MusqrattStatus::Ok
        );
    }
    let seen = drain(engine);
    // MQTT-3.2.0-1: the first packet from the server is CONNACK; 0x00 accepted.
    assert_eq!(sent_to(&seen, conn), b"\x20\x02\x00\x00");
    assert!(seen.iter().any(|s| s.kind == MusqrattActionKind::Connected && s.data == [id]));
}

#[test]
fn connect_gets_connack_and_an_event() {
    // SAFETY: NULL asks for the defaults.
    let engine = unsafe { musqratt_engine_new(ptr::null()) };
    assert!(!engine.is_null());
    connected(engine, 1, b'a');
    // SAFETY: live engine.
    unsafe {
        assert_eq!(musqratt_engine_connections(engine), 1);
        assert_eq!(musqratt_engine_sessions(engine), 1);
        musqratt_engine_free(engine);
    }
}

#[test]
fn a_publish_reaches_the_subscriber_without_a_copy_of_its_payload() {
    // SAFETY: NULL asks for the defaults.
    let engine = unsafe { musqratt_engine_new(ptr::null()) };
    connected(engine, 1, b's');
    connected(engine, 2, b'p');
    // SAFETY: live engine, slices that outlive the calls.
    unsafe {
        musqratt_engine_input(engine, 0, 1, SUBSCRIBE_A.as_ptr(), SUBSCRIBE_A.len());
    }
    assert_eq!(sent_to(&drain(engine), 1), b"\x90\x03\x00\x01\x01"); // SUBACK, granted QoS 1

    let buf = musqratt_buf_new(2048);
    // SAFETY: a live buffer of 2048 bytes; the engine takes it.
    let (start, end) = unsafe {
        let data = musqratt_buf_data(buf);
        assert_eq!(musqratt_buf_capacity(buf), 2048);
        ptr::copy_nonoverlapping(PUBLISH_A.as_ptr(), data, PUBLISH_A.len());
        assert_eq!(
            musqratt_engine_input_buf(engine, 0, 2, buf, PUBLISH_A.len()),
            MusqrattStatus::Ok
        );
        (data as usize, data as usize + 2048)
    };
    // The payload is sent as its own action pointing into the buffer the publisher's bytes
    // were read into: the engine's "bytes in as read" across the C boundary.
    let mut action = blank();
    let mut payload_in_place = false;
    let mut to_subscriber = Vec::new();
    // SAFETY: live engine; data read before the next call.
    while unsafe { musqratt_engine_poll_action(engine, &mut action) } == MusqrattStatus::Ok {
        if action.kind == MusqrattActionKind::Send && action.conn == 1 {
            let at = action.data as usize;
            payload_in_place |= at >= start && at + action.len <= end && action.len == 5;
            // SAFETY: valid until the next call.
            to_subscriber
                .extend_from_slice(unsafe { core::slice::from_raw_parts(action.data, action.len) });
        }
    }
    assert_eq!(to_subscriber, PUBLISH_A, "MQTT-3.3.5-1: the subscriber gets the message");
    assert!(payload_in_place, "the payload was copied");
    // SAFETY: live engine.
    unsafe { musqratt_engine_free(engine) };
}

#[test]
fn taken_bytes_outlive_the_next_call_and_the_engine() {
    // SAFETY: NULL asks for the defaults.
    let engine = unsafe { musqratt_engine_new(ptr::null()) };
    let packet = connect(b'k');
    let mut action = blank();
    // SAFETY: live engine, local buffers; the taken bytes are read after the engine is freed,
    // which their contract allows.
    unsafe {
        musqratt_engine_open(engine, 0, 7);
        musqratt_engine_input(engine, 0, 7, packet.as_ptr(), packet.len());
        loop {
            assert_eq!(musqratt_engine_poll_action(engine, &mut action), MusqrattStatus::Ok);
            if action.kind == MusqrattActionKind::Send {
                break;
            }
        }
        let kept = musqratt_engine_take_bytes(engine);
        assert!(!kept.is_null());
        assert!(musqratt_engine_take_bytes(engine).is_null(), "taken once");
        drain(engine);
        musqratt_engine_free(engine);
        let kept_bytes =
            core::slice::from_raw_parts(musqratt_bytes_data(kept), musqratt_bytes_len(kept));
        assert_eq!(kept_bytes, b"\x20\x02\x00\x00");
        musqratt_bytes_free(kept);
    }
}

#[test]
fn the_connect_deadline_is_polled_and_fires() {
    let mut config = blank_config();
    // SAFETY: local config.
    unsafe { assert_eq!(musqratt_config_default(&mut config), MusqrattStatus::Ok) };
    config.connect_timeout_ms = 500;
    // SAFETY: an initialised config.
    let engine = unsafe { musqratt_engine_new(&config) };
    let mut deadline = 0;
    // SAFETY: live engine, local out-parameter.
    unsafe {
        assert_eq!(musqratt_engine_poll_timeout(engine, &mut deadline), MusqrattStatus::None);
        musqratt_engine_open(engine, 1_000, 3);
        assert_eq!(musqratt_engine_poll_timeout(engine, &mut deadline), MusqrattStatus::Ok);
        assert_eq!(deadline, 1_000 + 500_000);
        musqratt_engine_timeout(engine, deadline - 1);
        assert!(drain(engine).is_empty(), "not due yet");
        musqratt_engine_timeout(engine, deadline);
    }
    let seen = drain(engine);
    assert!(seen.iter().any(|s| s.kind == MusqrattActionKind::Close && s.conn == 3), "{seen:?}");
    // SAFETY: live engine.
    unsafe {
        assert_eq!(musqratt_engine_connections(engine), 0);
        musqratt_engine_free(engine);
    }
}

#[test]
fn a_network_close_is_reported_as_a_disconnect() {
    // SAFETY: NULL asks for the defaults.
    let engine = unsafe { musqratt_engine_new(ptr::null()) };
    connected(engine, 4, b'c');
    // SAFETY: live engine.
    unsafe {
        assert_eq!(musqratt_engine_written(engine, 0, 4, 4), MusqrattStatus::Ok);
        assert_eq!(musqratt_engine_closed(engine, 0, 4), MusqrattStatus::Ok);
    }
    let seen = drain(engine);
    // 0x80 Unspecified error: a network close without DISCONNECT.
    assert_eq!(
        seen,
        [Seen { kind: MusqrattActionKind::Disconnected, conn: 4, data: Vec::new(), code: 0x80 }]
    );
    // SAFETY: live engine.
    unsafe { musqratt_engine_free(engine) };
}

#[test]
fn bad_arguments_are_refused_not_trusted() {
    let mut config = blank_config();
    let mut action = blank();
    let mut deadline = 0;
    // SAFETY: NULL and out-of-range arguments are what is tested; everything else is live.
    unsafe {
        assert_eq!(musqratt_config_default(ptr::null_mut()), MusqrattStatus::ErrNull);
        musqratt_config_default(&mut config);
        config.maximum_qos = 3;
        assert!(musqratt_engine_new(&config).is_null(), "QoS 3 does not exist");
        musqratt_config_default(&mut config);
        config.max_packet_size = 1;
        assert!(musqratt_engine_new(&config).is_null());

        let none = ptr::null_mut();
        assert_eq!(musqratt_engine_open(none, 0, 1), MusqrattStatus::ErrNull);
        assert_eq!(musqratt_engine_poll_action(none, &mut action), MusqrattStatus::ErrNull);
        assert_eq!(musqratt_engine_poll_timeout(none, &mut deadline), MusqrattStatus::ErrNull);
        assert!(musqratt_engine_take_bytes(none).is_null());
        musqratt_engine_free(none);
        musqratt_buf_free(ptr::null_mut());
        musqratt_bytes_free(ptr::null_mut());
        assert!(musqratt_buf_new(0).is_null());

        assert_eq!(musqratt_engine_input(none, 0, 1, ptr::null(), 0), MusqrattStatus::ErrNull);
        let engine = musqratt_engine_new(ptr::null());
        assert_eq!(musqratt_engine_open(engine, 0, 1 << 63), MusqrattStatus::ErrInvalid);
        assert_eq!(
            musqratt_engine_input(engine, 0, 1 << 63, ptr::null(), 0),
            MusqrattStatus::ErrInvalid
        );
        assert_eq!(musqratt_engine_input(engine, 0, 1, ptr::null(), 0), MusqrattStatus::Ok);
        assert_eq!(musqratt_engine_input(engine, 0, 1, ptr::null(), 3), MusqrattStatus::ErrNull);
        assert_eq!(
            musqratt_engine_input_buf(engine, 0, 1, ptr::null_mut(), 3),
            MusqrattStatus::ErrNull
        );
        let buf = musqratt_buf_new(4);
        assert_eq!(musqratt_engine_input_buf(engine, 0, 1, buf, 5), MusqrattStatus::ErrInvalid);
        assert_eq!(musqratt_engine_poll_action(engine, ptr::null_mut()), MusqrattStatus::ErrNull);
        assert_eq!(musqratt_engine_connections(engine), 0, "nothing was opened");
        musqratt_engine_free(engine);
    }
}

#[test]
fn garbage_from_a_client_closes_it_without_a_panic() {
    // SAFETY: NULL asks for the defaults.
    let engine = unsafe { musqratt_engine_new(ptr::null()) };
    let garbage = [0xF0_u8, 0xFF, 0xFF, 0xFF, 0xFF, 0x01];
    // SAFETY: live engine, local bytes.
    unsafe {
        musqratt_engine_open(engine, 0, 9);
        assert_eq!(
            musqratt_engine_input(engine, 0, 9, garbage.as_ptr(), garbage.len()),
            MusqrattStatus::Ok
        );
    }
    // MQTT-4.8.0-1: a malformed packet closes the connection.
    assert!(drain(engine).iter().any(|s| s.kind == MusqrattActionKind::Close && s.conn == 9));
    // SAFETY: live engine.
    unsafe { musqratt_engine_free(engine) };
}

#[cfg(feature = "std")]
#[test]
fn a_panic_is_caught_and_poisons_the_engine() {
    // SAFETY: NULL asks for the defaults.
    let engine = unsafe { musqratt_engine_new(ptr::null()) };
    // SAFETY: live engine, used by this thread only.
    let status = unsafe { crate::guard::with_engine(engine, |_| panic!("a bug in a step")) };
    assert_eq!(status, MusqrattStatus::ErrPanic);
    let mut deadline = 0;
    // SAFETY: live (poisoned) engine.
    unsafe {
        assert_eq!(musqratt_engine_open(engine, 0, 1), MusqrattStatus::ErrPoisoned);
        assert_eq!(
            musqratt_engine_poll_timeout(engine, &mut deadline),
            MusqrattStatus::ErrPoisoned
        );
        musqratt_engine_free(engine);
    }
}

fn blank_config() -> MusqrattConfig {
    MusqrattConfig {
        max_packet_size: 0,
        receive_maximum: 0,
        topic_alias_maximum: 0,
        maximum_qos: 0,
        retain_available: false,
        wildcard_subscription_available: false,
        shared_subscription_available: false,
        max_session_expiry: 0,
        v3_session_expiry: 0,
        max_queued_messages: 0,
        max_queued_bytes: 0,
        max_unwritten_bytes: 0,
        connect_timeout_ms: 0,
        seed: 0,
    }
}
