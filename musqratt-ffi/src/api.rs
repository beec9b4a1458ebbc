//! The engine's contract in C: create, feed inputs with the time, poll actions and the next
//! deadline, free. One function per [`Input`] a single-shard host produces.

use alloc::boxed::Box;
use core::time::Duration;

use bytes::{Bytes, BytesMut};
use musqratt_engine::proto::QoS;
use musqratt_engine::{Action, Config, ConnectionId, Engine, Event, Input, Instant};

use crate::MusqrattStatus;
use crate::buffers::{MusqrattBuf, MusqrattBytes};
use crate::guard::with_engine;

/// One broker engine (one shard), opaque to C. Single-owner: one thread at a time.
pub struct MusqrattEngine {
    engine: Engine,
    /// The bytes of the action last returned by [`musqratt_engine_poll_action`], which its
    /// `data` points into: kept alive here until the next call on this engine.
    current: Option<Bytes>,
    /// A call panicked (with `std`): the state is not trusted any more.
    pub(crate) poisoned: bool,
}

/// The engine's limits (a subset of `musqratt_engine::Config`; the rest keep their defaults).
/// Fill it with [`musqratt_config_default`], then change what you need.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct MusqrattConfig {
    /// The largest packet accepted from a client, fixed header included (Maximum Packet Size,
    /// MQTT 5.0 §3.2.2.3.6). At least 16.
    pub max_packet_size: u32,
    /// Unacknowledged QoS 1 and 2 publications a client may have towards the broker (Receive
    /// Maximum, §3.2.2.3.3). At least 1.
    pub receive_maximum: u16,
    /// Topic aliases a client may use towards the broker (§3.2.2.3.8); 0 turns them off.
    pub topic_alias_maximum: u16,
    /// Highest QoS the broker accepts (§3.2.2.3.4): 0, 1 or 2.
    pub maximum_qos: u8,
    /// Whether retained messages are supported (§3.2.2.3.5).
    pub retain_available: bool,
    /// Whether wildcard subscriptions are allowed (§3.2.2.3.11).
    pub wildcard_subscription_available: bool,
    /// Whether shared subscriptions are supported (§3.2.2.3.13).
    pub shared_subscription_available: bool,
    /// The longest session expiry granted, in seconds.
    pub max_session_expiry: u32,
    /// Session expiry, in seconds, of MQTT 3.x sessions with Clean Session 0.
    pub v3_session_expiry: u32,
    /// Messages queued per offline or congested session.
    pub max_queued_messages: usize,
    /// Payload bytes queued per session.
    pub max_queued_bytes: usize,
    /// Bytes handed to the host for a connection and not yet reported written
    /// ([`musqratt_engine_written`]) beyond which QoS 0 messages to it are dropped and QoS 1/2
    /// wait: what bounds the host's write queues.
    pub max_unwritten_bytes: usize,
    /// How long a new connection may take to send CONNECT, in milliseconds.
    pub connect_timeout_ms: u32,
    /// Seed for the identifiers the broker assigns to clients that send none.
    pub seed: u64,
}

/// What an action asks of the host ([`MusqrattAction::kind`]).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MusqrattActionKind {
    /// Write `data[0..len]` to connection `conn`, after everything handed before. A PUBLISH
    /// comes as two sends, header then payload (shared by every subscriber): consecutive sends
    /// of one connection may be written with one vectored write. Report what was written with
    /// [`musqratt_engine_written`].
    Send = 1,
    /// Close `conn` once everything sent before is written. The engine has forgotten it: no
    /// [`musqratt_engine_closed`] is needed (one is ignored).
    Close = 2,
    /// A client completed CONNECT on `conn`: `data` is its client identifier (UTF-8), `code`
    /// 1 when an existing session was resumed. For logs; nothing to do.
    Connected = 3,
    /// Connection `conn` ended; `code` is the MQTT 5.0 reason (0 when the client sent
    /// DISCONNECT). For logs; nothing to do.
    Disconnected = 4,
    /// A message was not delivered to the client whose identifier is `data`: `code` 1 its queue
    /// was full, 2 too large for it, 3 QoS 0 to a slow reader, 4 a topic backlog full. For logs.
    MessageDropped = 5,
}

/// One action, filled by [`musqratt_engine_poll_action`]. `data` (when not NULL) points into the
/// engine and is valid until the next call on that engine; keep it longer with
/// [`musqratt_engine_take_bytes`].
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct MusqrattAction {
    /// What to do.
    pub kind: MusqrattActionKind,
    /// The connection it concerns.
    pub conn: u64,
    /// The bytes (send), or the client identifier (events); NULL when there are none.
    pub data: *const u8,
    /// How many bytes `data` has.
    pub len: usize,
    /// The reason or flag of an event (see [`MusqrattActionKind`]), 0 otherwise.
    pub code: u8,
}

/// Connection ids are the host's, unique for the engine's life, below 2^63 (the upper half
/// numbers MQTT-SN peers inside the engine).
const CONN_LIMIT: u64 = 1 << 63;

/// Fills `config` with the engine's defaults.
///
/// # Safety
/// `config` is NULL or points to writable memory for a [`MusqrattConfig`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn musqratt_config_default(config: *mut MusqrattConfig) -> MusqrattStatus {
    if config.is_null() {
        return MusqrattStatus::ErrNull;
    }
    let defaults = Config::default();
    let filled = MusqrattConfig {
        max_packet_size: defaults.max_packet_size,
        receive_maximum: defaults.receive_maximum,
        topic_alias_maximum: defaults.topic_alias_maximum,
        maximum_qos: defaults.maximum_qos.bits(),
        retain_available: defaults.retain_available,
        wildcard_subscription_available: defaults.wildcard_subscription_available,
        shared_subscription_available: defaults.shared_subscription_available,
        max_session_expiry: defaults.max_session_expiry,
        v3_session_expiry: defaults.v3_session_expiry,
        max_queued_messages: defaults.max_queued_messages,
        max_queued_bytes: defaults.max_queued_bytes,
        max_unwritten_bytes: defaults.max_unwritten_bytes,
        connect_timeout_ms: u32::try_from(defaults.connect_timeout.as_millis()).unwrap_or(u32::MAX),
        seed: defaults.seed,
    };
    // SAFETY: checked non-NULL; the caller's contract makes it writable.
    unsafe { config.write(filled) };
    MusqrattStatus::Ok
}

/// The engine's configuration from the C one; `None` for a value it cannot take.
fn engine_config(config: &MusqrattConfig) -> Option<Config> {
    if config.max_packet_size < 16 || config.receive_maximum == 0 {
        return None;
    }
    let mut engine = Config::default();
    engine.max_packet_size = config.max_packet_size;
    engine.receive_maximum = config.receive_maximum;
    engine.topic_alias_maximum = config.topic_alias_maximum;
    engine.maximum_qos = QoS::from_bits(config.maximum_qos)?;
    engine.retain_available = config.retain_available;
    engine.wildcard_subscription_available = config.wildcard_subscription_available;
    engine.shared_subscription_available = config.shared_subscription_available;
    engine.max_session_expiry = config.max_session_expiry;
    engine.v3_session_expiry = config.v3_session_expiry;
    engine.max_queued_messages = config.max_queued_messages;
    engine.max_queued_bytes = config.max_queued_bytes;
    engine.max_unwritten_bytes = config.max_unwritten_bytes;
    engine.connect_timeout = Duration::from_millis(u64::from(config.connect_timeout_ms));
    engine.seed = config.seed;
    Some(engine)
}

/// A new engine with `config` (NULL: the defaults), or NULL when the configuration is invalid
/// (see [`MusqrattConfig`]). Free it with [`musqratt_engine_free`].
///
/// # Safety
/// `config` is NULL or points to an initialised [`MusqrattConfig`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn musqratt_engine_new(config: *const MusqrattConfig) -> *mut MusqrattEngine {
    // SAFETY: the caller's contract.
    let config = match unsafe { config.as_ref() } {
        None => Some(Config::default()),
        Some(config) => engine_config(config),
    };
    let Some(config) = config else {
        return core::ptr::null_mut();
    };
    let handle = MusqrattEngine { engine: Engine::new(config), current: None, poisoned: false };
    Box::into_raw(Box::new(handle))
}

/// Frees the engine and everything it holds (bytes taken with [`musqratt_engine_take_bytes`]
/// stay valid until freed themselves). NULL is ignored.
///
/// # Safety
/// `engine` is NULL or a live engine, used by no other thread and not afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn musqratt_engine_free(engine: *mut MusqrattEngine) {
    if !engine.is_null() {
        // SAFETY: the caller's contract: it came from Box::into_raw and is freed once.
        drop(unsafe { Box::from_raw(engine) });
    }
}

/// Feeds one input: drops the bytes of the last action (the host is done with them), checks
/// the connection id, and steps the engine.
///
/// # Safety
/// As [`with_engine`].
unsafe fn input(
    engine: *mut MusqrattEngine,
    now: u64,
    conn: Option<u64>,
    make: impl FnOnce(ConnectionId) -> Input,
) -> MusqrattStatus {
    // SAFETY: the caller's contract.
    unsafe {
        with_engine(engine, |handle| {
            handle.current = None;
            let conn = conn.unwrap_or(0);
            if conn >= CONN_LIMIT {
                return MusqrattStatus::ErrInvalid;
            }
            handle.engine.handle_input(Instant::from_micros(now), make(ConnectionId(conn)));
            MusqrattStatus::Ok
        })
    }
}

/// An input of no bytes: nothing for the engine, but the handle and the id are checked as for
/// any input, so a host's mistake is reported the same whatever was read.
///
/// # Safety
/// As [`with_engine`].
unsafe fn nothing_read(engine: *mut MusqrattEngine, conn: u64) -> MusqrattStatus {
    // SAFETY: the caller's contract.
    unsafe {
        with_engine(engine, |_| {
            if conn >= CONN_LIMIT { MusqrattStatus::ErrInvalid } else { MusqrattStatus::Ok }
        })
    }
}

/// The host accepted connection `conn` at `now` (microseconds). The engine expects CONNECT
/// within the configured connect timeout.
///
/// # Safety
/// `engine` is NULL or a live engine used by no other thread during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn musqratt_engine_open(
    engine: *mut MusqrattEngine,
    now: u64,
    conn: u64,
) -> MusqrattStatus {
    // SAFETY: the caller's contract.
    unsafe { input(engine, now, Some(conn), |conn| Input::Accepted { conn }) }
}

/// `len` bytes arrived on `conn`; they are copied. (To read straight into the engine's
/// memory, use [`musqratt_engine_input_buf`].)
///
/// # Safety
/// `engine` as in [`musqratt_engine_open`]; `bytes` points to `len` readable bytes (or is
/// anything when `len` is 0).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn musqratt_engine_input(
    engine: *mut MusqrattEngine,
    now: u64,
    conn: u64,
    bytes: *const u8,
    len: usize,
) -> MusqrattStatus {
    if len == 0 {
        // SAFETY: the caller's contract.
        return unsafe { nothing_read(engine, conn) };
    }
    if bytes.is_null() {
        return MusqrattStatus::ErrNull;
    }
    // SAFETY: the caller's contract: `len` readable bytes at `bytes`.
    let read = unsafe { core::slice::from_raw_parts(bytes, len) };
    // SAFETY: the caller's contract.
    unsafe {
        input(engine, now, Some(conn), |conn| Input::Data { conn, bytes: BytesMut::from(read) })
    }
}

/// The first `len` bytes of `buf` arrived on `conn`. The engine takes `buf` in every case
/// (also on error): do not use or free it afterwards. No copy is made: payloads decoded from it
/// are delivered to subscribers as slices of it.
///
/// # Safety
/// `engine` as in [`musqratt_engine_open`]; `buf` is NULL or a live buffer from
/// [`crate::musqratt_buf_new`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn musqratt_engine_input_buf(
    engine: *mut MusqrattEngine,
    now: u64,
    conn: u64,
    buf: *mut MusqrattBuf,
    len: usize,
) -> MusqrattStatus {
    if buf.is_null() {
        return MusqrattStatus::ErrNull;
    }
    // SAFETY: the caller's contract: a live buffer from Box::into_raw, handed over once.
    let mut bytes = unsafe { Box::from_raw(buf) }.bytes;
    if len > bytes.len() {
        return MusqrattStatus::ErrInvalid;
    }
    if len == 0 {
        // SAFETY: the caller's contract.
        return unsafe { nothing_read(engine, conn) };
    }
    bytes.truncate(len);
    // SAFETY: the caller's contract.
    unsafe { input(engine, now, Some(conn), |conn| Input::Data { conn, bytes }) }
}

/// The host wrote `bytes` bytes of what sends handed it for `conn` (the engine's measure of a
/// slow reader: see [`MusqrattConfig::max_unwritten_bytes`]).
///
/// # Safety
/// `engine` as in [`musqratt_engine_open`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn musqratt_engine_written(
    engine: *mut MusqrattEngine,
    now: u64,
    conn: u64,
    bytes: usize,
) -> MusqrattStatus {
    // SAFETY: the caller's contract.
    unsafe { input(engine, now, Some(conn), |conn| Input::Written { conn, bytes }) }
}

/// Connection `conn` is gone: the peer closed it or a read or write failed. Unless the client
/// sent DISCONNECT first, its will is due. Ignored for a connection the engine closed.
///
/// # Safety
/// `engine` as in [`musqratt_engine_open`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn musqratt_engine_closed(
    engine: *mut MusqrattEngine,
    now: u64,
    conn: u64,
) -> MusqrattStatus {
    // SAFETY: the caller's contract.
    unsafe { input(engine, now, Some(conn), |conn| Input::Closed { conn }) }
}

/// The host is stopping: MQTT 5.0 clients are sent DISCONNECT 0x8B (Server shutting down) and
/// every connection is closed. Drain the actions and write them before exiting.
///
/// # Safety
/// `engine` as in [`musqratt_engine_open`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn musqratt_engine_shutdown(
    engine: *mut MusqrattEngine,
    now: u64,
) -> MusqrattStatus {
    // SAFETY: the caller's contract.
    unsafe { input(engine, now, None, |_| Input::Shutdown) }
}

/// Fires every deadline due at `now`: connect and keep-alive timeouts, delayed wills, session
/// expiry. Call it when [`musqratt_engine_poll_timeout`]'s deadline comes (early is harmless).
///
/// # Safety
/// `engine` as in [`musqratt_engine_open`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn musqratt_engine_timeout(
    engine: *mut MusqrattEngine,
    now: u64,
) -> MusqrattStatus {
    // SAFETY: the caller's contract.
    unsafe {
        with_engine(engine, |handle| {
            handle.current = None;
            handle.engine.handle_timeout(Instant::from_micros(now));
            MusqrattStatus::Ok
        })
    }
}

/// The next action into `action`: [`MusqrattStatus::Ok`], or [`MusqrattStatus::None`] when
/// there is none left. Call it until `None` after every input and carry the actions out in the
/// order given. `action.data` is valid until the next call on this engine.
///
/// # Safety
/// `engine` as in [`musqratt_engine_open`]; `action` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn musqratt_engine_poll_action(
    engine: *mut MusqrattEngine,
    action: *mut MusqrattAction,
) -> MusqrattStatus {
    if action.is_null() {
        return MusqrattStatus::ErrNull;
    }
    // SAFETY: the caller's contract.
    unsafe {
        with_engine(engine, |handle| {
            handle.current = None;
            let Some(next) = next_action(handle) else {
                return MusqrattStatus::None;
            };
            // SAFETY: checked non-NULL; the caller's contract makes it writable.
            action.write(next);
            MusqrattStatus::Ok
        })
    }
}

/// The next action a C host deals with, its bytes kept in `handle.current`. Actions a
/// single-shard engine without persistence, MQTT-SN or authentication never emits (shard
/// messages, hand-offs, store records, datagrams, authentication requests) are skipped.
fn next_action(handle: &mut MusqrattEngine) -> Option<MusqrattAction> {
    loop {
        let (kind, conn, bytes, code) = match handle.engine.poll_action()? {
            Action::Send { conn, bytes } => (MusqrattActionKind::Send, conn, Some(bytes), 0),
            Action::Close { conn } => (MusqrattActionKind::Close, conn, None, 0),
            Action::Event(Event::Connected { conn, client_id, session_present }) => (
                MusqrattActionKind::Connected,
                conn,
                Some(client_id.into_bytes()),
                u8::from(session_present),
            ),
            Action::Event(Event::Disconnected { conn, reason }) => {
                (MusqrattActionKind::Disconnected, conn, None, reason.0)
            }
            Action::Event(Event::MessageDropped { client_id, reason }) => (
                MusqrattActionKind::MessageDropped,
                ConnectionId(0),
                Some(client_id.into_bytes()),
                drop_code(reason),
            ),
            _ => continue,
        };
        let (data, len) = bytes.as_ref().map_or((core::ptr::null(), 0), |b| (b.as_ptr(), b.len()));
        handle.current = bytes;
        return Some(MusqrattAction { kind, conn: conn.0, data, len, code });
    }
}

/// The number [`MusqrattActionKind::MessageDropped`] documents for each reason.
fn drop_code(reason: musqratt_engine::DropReason) -> u8 {
    use musqratt_engine::DropReason;
    match reason {
        DropReason::QueueFull => 1,
        DropReason::TooLargeForClient => 2,
        DropReason::SlowReader => 3,
        DropReason::BacklogFull => 4,
        _ => 0,
    }
}

/// The bytes of the action last polled, kept for as long as the host likes (a reference, not a
/// copy: free it with [`crate::musqratt_bytes_free`]). NULL when that action had no bytes or
/// they were taken already.
///
/// # Safety
/// `engine` as in [`musqratt_engine_open`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn musqratt_engine_take_bytes(
    engine: *mut MusqrattEngine,
) -> *mut MusqrattBytes {
    let mut taken = None;
    // SAFETY: the caller's contract.
    let status = unsafe {
        with_engine(engine, |handle| {
            taken = handle.current.take();
            MusqrattStatus::Ok
        })
    };
    match taken {
        Some(bytes) if status == MusqrattStatus::Ok => {
            Box::into_raw(Box::new(MusqrattBytes { bytes }))
        }
        _ => core::ptr::null_mut(),
    }
}

/// When [`musqratt_engine_timeout`] must be called next, into `deadline` (microseconds, the
/// host's clock): [`MusqrattStatus::Ok`], or [`MusqrattStatus::None`] when no deadline is set.
/// Ask again after every input: it moves.
///
/// # Safety
/// `engine` as in [`musqratt_engine_open`]; `deadline` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn musqratt_engine_poll_timeout(
    engine: *mut MusqrattEngine,
    deadline: *mut u64,
) -> MusqrattStatus {
    if deadline.is_null() {
        return MusqrattStatus::ErrNull;
    }
    // SAFETY: the caller's contract.
    unsafe {
        with_engine(engine, |handle| match handle.engine.poll_timeout() {
            // SAFETY: checked non-NULL; the caller's contract makes it writable.
            Some(at) => {
                deadline.write(at.as_micros());
                MusqrattStatus::Ok
            }
            None => MusqrattStatus::None,
        })
    }
}

/// Connections open on the engine; 0 for NULL or a poisoned engine.
///
/// # Safety
/// `engine` as in [`musqratt_engine_open`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn musqratt_engine_connections(engine: *mut MusqrattEngine) -> usize {
    let mut count = 0;
    // SAFETY: the caller's contract.
    unsafe {
        with_engine(engine, |handle| {
            count = handle.engine.connection_count();
            MusqrattStatus::Ok
        })
    };
    count
}

/// Sessions the engine holds, connected or not; 0 for NULL or a poisoned engine.
///
/// # Safety
/// `engine` as in [`musqratt_engine_open`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn musqratt_engine_sessions(engine: *mut MusqrattEngine) -> usize {
    let mut count = 0;
    // SAFETY: the caller's contract.
    unsafe {
        with_engine(engine, |handle| {
            count = handle.engine.session_count();
            MusqrattStatus::Ok
        })
    };
    count
}
