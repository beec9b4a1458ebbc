//! Byte-stream layers between a connection's socket and the engine: TLS, WebSocket framing,
//! and the identity layer that proves the seam (docs/adr/0015-byte-stream-layers.md).
//!
//! A layer is sans-IO like the engine: bytes in, bytes out, no socket, no clock, no thread.
//! Written once here, it runs on every runtime, which calls a connection's [`Stack`] at three
//! places only:
//!
//! - bytes read from the socket go through [`Stack::read`], which returns what the engine gets
//!   as `Input::Data` and hands the runtime whatever the layers must send back at once (a TLS
//!   handshake flight, a WebSocket pong) for the connection's write queue;
//! - bytes of an `Action::Send` go through [`Stack::write`] before they join the write queue:
//!   the queue holds socket bytes, so the runtime's write paths (vectored writes, the direct
//!   writes at the end of a step of ADR 10-12, the writer tasks and threads) do not change;
//! - bytes the socket took are turned back into the engine's count with [`Stack::written`],
//!   for `Input::Written` (the engine's slow-reader bound counts its own bytes, not the
//!   layers' overhead).
//!
//! `Action::Close` asks [`Stack::close`] for the last bytes (TLS close_notify, a WebSocket
//! close frame) before the runtime flushes and closes.
//!
//! A plain TCP listener has no stack at all ([`Layers`] is `None` in the runtime), so its
//! connections take the runtime's direct path and pay nothing for this module.

use core::fmt;
use core::net::SocketAddr;
use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use musqratt_engine::AuthRequest;
use musqratt_engine::proto::bytestring::ByteString;

/// Why a layer gave up on a connection. Small and `Copy`, like the codec's errors: the runtime
/// logs it and closes the connection, the engine hears `Input::Closed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LayerError {
    /// The peer's bytes break the layer's protocol (a bad TLS record, an unmasked WebSocket
    /// frame from a client).
    #[error("protocol violation")]
    Protocol,
    /// The handshake failed (no common cipher suite, a certificate refused, a bad HTTP
    /// upgrade request).
    #[error("handshake failed")]
    Handshake,
    /// A record or frame larger than the layer accepts.
    #[error("frame too large")]
    TooLarge,
    /// Data the layer does not carry: a WebSocket text frame (MQTT is binary, MQTT-6.0.0-1).
    #[error("unsupported data")]
    Unsupported,
    /// The peer closed the layer (TLS close_notify, WebSocket close): nothing more will come.
    #[error("closed by the peer")]
    PeerClosed,
}

/// A [`LayerError`] and the layer it came from, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{layer} layer: {error}")]
pub struct StackError {
    /// [`StreamLayer::name`] of the layer that failed.
    pub layer: &'static str,
    /// What went wrong.
    pub error: LayerError,
}

/// What the layers learned about the peer, for authentication: a TLS client certificate's
/// subject, the address a proxy says the client has (WebSocket behind a reverse proxy).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerIdentity {
    /// The socket's peer address.
    pub addr: Option<SocketAddr>,
    /// The common name of the client certificate, once a TLS handshake verified one.
    pub certificate_cn: Option<String>,
    /// The client's address as a trusted proxy forwarded it (`X-Forwarded-For`).
    pub forwarded_for: Option<core::net::IpAddr>,
    /// The user name a layer vouches for: the client certificate's common name on a TLS
    /// listener with `identity_as_username`. It replaces the CONNECT's ([`PeerIdentity::fill`]).
    pub username: Option<String>,
}

impl PeerIdentity {
    /// The client's address as authentication should see it: the one a trusted proxy
    /// forwarded (`X-Forwarded-For` on a WebSocket listener with `trust_forwarded_for`; port 0,
    /// the client's port being unknown), else the socket's peer, `socket`.
    #[must_use]
    pub fn client_addr(&self, socket: Option<SocketAddr>) -> Option<SocketAddr> {
        self.forwarded_for.map(|ip| SocketAddr::new(ip, 0)).or(socket)
    }

    /// Puts what the layers proved into the authenticator's request, which the engine made
    /// from the CONNECT alone (it has no TLS): every runtime calls this at
    /// `Action::Authenticate` for a layered connection, so that a client gets the same
    /// verdict on each. The certificate's CN always goes in `cert_cn` (an HTTP service reads
    /// it); a user name a layer vouches for replaces the CONNECT's User Name and drops its
    /// Password (Mosquitto's `use_identity_as_username` ignores both), so the ACL file's
    /// `user` sections and `%u` patterns apply to the certificate's name.
    pub fn fill(&self, request: &mut AuthRequest) {
        request.cert_cn = self.certificate_cn.as_deref().map(ByteString::from);
        if let Some(username) = &self.username {
            request.username = Some(ByteString::from(username.as_str()));
            request.password = None;
            request.username_verified = true;
        }
    }
}

/// One sans-IO layer of a connection's byte stream. "Down" is towards the socket, "up"
/// towards the engine.
///
/// A layer never blocks and never does I/O: it transforms the bytes it is given and leaves
/// its output in the vectors it is given. It keeps whatever it cannot use yet (half a TLS
/// record, half a WebSocket frame: "wants more input" is simply no output), and bytes the
/// engine writes before the layer can carry them (before a handshake ends) until it can.
///
/// Shapes it is meant for: rustls' unbuffered connection (`UnbufferedServerConnection`:
/// decrypts records in place in the bytes read, encrypts into a buffer it is lent; handshake
/// records come out of a read) and a WebSocket frame codec (tungstenite's `FrameCodec`: an
/// HTTP upgrade first, then frames; pings are answered from the read path).
pub trait StreamLayer: Send + fmt::Debug {
    /// A short name for logs and errors (`"tls"`, `"ws"`, `"identity"`).
    fn name(&self) -> &'static str;

    /// Bytes from below. Appends what they decode to, for the layer above, to `up` (empty
    /// chunks are not wanted), and what must go back down at once (handshake bytes, a pong)
    /// to `down`; both in order.
    ///
    /// # Errors
    /// The connection cannot go on: the runtime closes it.
    fn read(
        &mut self,
        bytes: BytesMut,
        up: &mut Vec<BytesMut>,
        down: &mut Vec<Bytes>,
    ) -> Result<(), LayerError>;

    /// Bytes from above: appends their encoding (or nothing yet, if the layer holds them until
    /// its handshake ends) to `down`, in order.
    ///
    /// # Errors
    /// The connection cannot go on: the runtime closes it.
    fn write(&mut self, bytes: Bytes, down: &mut Vec<Bytes>) -> Result<(), LayerError>;

    /// The connection is closing: appends the layer's last bytes (close_notify, a close frame)
    /// to `down`. Nothing is written after it.
    fn close(&mut self, down: &mut Vec<Bytes>) {
        let _ = down;
    }

    /// Adds what this layer knows of the peer (a certificate, a forwarded address).
    fn identify(&self, peer: &mut PeerIdentity) {
        let _ = peer;
    }
}

/// The identity layer: passes every chunk through as it is, moving it (no copy). It does what
/// a real layer does to a runtime (a stack per connection, a call per read and per send, the
/// byte count mapped back) and nothing else, so that a listener using it measures the seam's
/// cost against plain TCP (`mqtt+identity://` in the broker's configuration).
#[derive(Debug, Clone, Copy, Default)]
pub struct Identity;

impl StreamLayer for Identity {
    fn name(&self) -> &'static str {
        "identity"
    }

    fn read(
        &mut self,
        bytes: BytesMut,
        up: &mut Vec<BytesMut>,
        _down: &mut Vec<Bytes>,
    ) -> Result<(), LayerError> {
        up.push(bytes);
        Ok(())
    }

    fn write(&mut self, bytes: Bytes, down: &mut Vec<Bytes>) -> Result<(), LayerError> {
        down.push(bytes);
        Ok(())
    }
}

/// A listener's recipe for the stack of each connection it accepts; cloned into every shard.
/// A runtime holds an `Option<Layers>` per listener: `None` is plain TCP, with no stack.
#[derive(Clone)]
pub struct Layers {
    name: String,
    build: Arc<dyn Fn(SocketAddr) -> Vec<Box<dyn StreamLayer>> + Send + Sync>,
}

impl fmt::Debug for Layers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Layers").field(&self.name).finish()
    }
}

impl Layers {
    /// Layers built by `build` for each connection, from the socket up (the first is next to
    /// the socket: TLS under WebSocket is `[tls, ws]`). `name` is for logs.
    pub fn new(
        name: impl Into<String>,
        build: impl Fn(SocketAddr) -> Vec<Box<dyn StreamLayer>> + Send + Sync + 'static,
    ) -> Self {
        Self { name: name.into(), build: Arc::new(build) }
    }

    /// One [`Identity`] layer: the seam's cost, nothing else.
    #[must_use]
    pub fn identity() -> Self {
        Self::new("identity", |_| vec![Box::new(Identity)])
    }

    /// The layers' name, as given to [`Layers::new`].
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A new connection's stack.
    #[must_use]
    pub fn stack(&self, peer: SocketAddr) -> Stack {
        Stack::new((self.build)(peer), Some(peer))
    }
}

/// What [`Stack::read`] gave: bytes for the engine, and whether the stream ended.
#[derive(Debug, PartialEq, Eq)]
#[must_use]
pub struct StackRead {
    /// What the read decoded to for the engine (`None`: nothing yet).
    pub data: Option<BytesMut>,
    /// A layer gave up or the peer closed it: feed `data`, then close the connection.
    pub end: Option<StackError>,
}

impl StackRead {
    /// The data, or the end if there was one (dropping the data before it): for callers that
    /// stop at the first error, as tests do.
    ///
    /// # Errors
    /// The stream ended.
    pub fn into_result(self) -> Result<Option<BytesMut>, StackError> {
        match self.end {
            Some(end) => Err(end),
            None => Ok(self.data),
        }
    }
}

/// A connection's layers, composed: what a runtime keeps per layered connection (boxed, so a
/// plain connection's slot grows by no more than a pointer or a flag), and moves with the
/// socket when the connection is handed to another shard.
#[derive(Debug)]
pub struct Stack {
    /// From the socket up.
    layers: Vec<Box<dyn StreamLayer>>,
    peer: Option<SocketAddr>,
    /// Socket bytes queued and not yet reported written, with how many engine bytes each
    /// batch carried (0 for the layers' own: handshakes, pongs), oldest first.
    sent: VecDeque<(usize, usize)>,
    /// Socket bytes written of the oldest batch in `sent`.
    written_of_front: usize,
    closed: bool,
}

impl Stack {
    /// A stack of `layers`, from the socket up.
    #[must_use]
    pub fn new(layers: Vec<Box<dyn StreamLayer>>, peer: Option<SocketAddr>) -> Self {
        Self { layers, peer, sent: VecDeque::new(), written_of_front: 0, closed: false }
    }

    /// What the layers know of the peer.
    #[must_use]
    pub fn identity(&self) -> PeerIdentity {
        let mut peer = PeerIdentity { addr: self.peer, ..PeerIdentity::default() };
        for layer in &self.layers {
            layer.identify(&mut peer);
        }
        peer
    }

    /// Bytes read from the socket: returns what they decode to for the engine, and calls
    /// `to_socket` with each chunk the layers answer with at once (to queue before anything the
    /// engine then sends). Several chunks for the engine from one read are joined into one (a
    /// copy, only then), so that the runtime feeds one `Input::Data` per read as on a plain
    /// connection and a handoff after CONNECT keeps every byte.
    ///
    /// When a layer gives up or the peer closes it, [`StackRead::end`] says so, and the bytes
    /// decoded before it still come in [`StackRead::data`]: a client's last DISCONNECT before
    /// its WebSocket close frame must reach the engine (or its will is published). The runtime
    /// feeds them, then flushes what `to_socket` was given (an HTTP error, a close frame) and
    /// closes.
    pub fn read(&mut self, bytes: BytesMut, mut to_socket: impl FnMut(Bytes)) -> StackRead {
        let mut scratch = Scratch::take();
        let [mut input, mut output] = core::mem::take(&mut scratch.up);
        input.clear();
        input.push(bytes);
        let mut result = Ok(());
        for level in 0..self.layers.len() {
            output.clear();
            let mut answers = core::mem::take(&mut scratch.down[0]);
            answers.clear();
            // A layer that gives up decodes nothing more, but what it decoded before still goes
            // up through the layers above it (which may end the stream too: the first end is
            // the one reported).
            for chunk in input.drain(..) {
                let layer = &mut self.layers[level];
                if let Err(error) = layer.read(chunk, &mut output, &mut answers) {
                    result = result.and(Err(StackError { layer: layer.name(), error }));
                    break;
                }
            }
            // What a layer answers goes down through the layers below it.
            for answer in answers.drain(..) {
                if let Err(error) =
                    self.pass_down(&mut scratch.down, level, answer, 0, &mut to_socket)
                {
                    result = result.and(Err(error));
                }
            }
            scratch.down[0] = answers;
            core::mem::swap(&mut input, &mut output);
        }
        let decoded = match input.len() {
            0 => None,
            1 => input.pop(),
            _ => {
                let mut joined = BytesMut::with_capacity(input.iter().map(BytesMut::len).sum());
                for chunk in input.drain(..) {
                    joined.extend_from_slice(&chunk);
                }
                Some(joined)
            }
        };
        input.clear();
        output.clear();
        scratch.up = [input, output];
        scratch.put();
        StackRead { data: decoded.filter(|bytes| !bytes.is_empty()), end: result.err() }
    }

    /// Bytes of an `Action::Send`: calls `to_socket` with what the layers make of them, in
    /// order, for the connection's write queue.
    ///
    /// # Errors
    /// A layer gave up: close the connection.
    pub fn write(
        &mut self,
        bytes: Bytes,
        mut to_socket: impl FnMut(Bytes),
    ) -> Result<(), StackError> {
        if self.closed || bytes.is_empty() {
            return Ok(());
        }
        let plain = bytes.len();
        let level = self.layers.len();
        let mut scratch = Scratch::take();
        let result = self.pass_down(&mut scratch.down, level, bytes, plain, &mut to_socket);
        scratch.put();
        result
    }

    /// The connection closes: calls `to_socket` with the layers' last bytes, the top layer's
    /// first (its close frame goes through the layers under it). Writes after it are dropped.
    pub fn close(&mut self, mut to_socket: impl FnMut(Bytes)) {
        if core::mem::replace(&mut self.closed, true) {
            return;
        }
        let mut scratch = Scratch::take();
        for level in (0..self.layers.len()).rev() {
            let mut last = core::mem::take(&mut scratch.down[0]);
            last.clear();
            self.layers[level].close(&mut last);
            for chunk in last.drain(..) {
                // A layer failing to encode a close frame: the connection closes anyway.
                let _ = self.pass_down(&mut scratch.down, level, chunk, 0, &mut to_socket);
            }
            scratch.down[0] = last;
        }
        scratch.put();
    }

    /// `socket` more bytes of the queue were written: returns how many of the engine's bytes
    /// that completes (for `Input::Written`). A batch counts once all its socket bytes are out.
    pub fn written(&mut self, socket: usize) -> usize {
        let mut engine = 0;
        let mut left = self.written_of_front + socket;
        while let Some(&(len, plain)) = self.sent.front() {
            if len > left {
                break;
            }
            left -= len;
            engine += plain;
            self.sent.pop_front();
        }
        self.written_of_front = if self.sent.is_empty() { 0 } else { left };
        engine
    }

    /// Passes `bytes` down through the layers below `level` (all of them when `level` is the
    /// stack's height) to `to_socket`, and records the batch: `plain` engine bytes in it.
    fn pass_down(
        &mut self,
        scratch: &mut [Vec<Bytes>; 2],
        level: usize,
        bytes: Bytes,
        plain: usize,
        to_socket: &mut impl FnMut(Bytes),
    ) -> Result<(), StackError> {
        let [mut input, mut output] = core::mem::take(scratch);
        input.clear();
        input.push(bytes);
        let mut result = Ok(());
        for below in (0..level).rev() {
            output.clear();
            let layer = &mut self.layers[below];
            for chunk in input.drain(..) {
                if let Err(error) = layer.write(chunk, &mut output) {
                    result = Err(StackError { layer: layer.name(), error });
                    break;
                }
            }
            core::mem::swap(&mut input, &mut output);
            if result.is_err() {
                input.clear();
                break;
            }
        }
        let socket: usize = input.iter().map(Bytes::len).sum();
        if socket > 0 || plain > 0 {
            self.sent.push_back((socket, plain));
        }
        for chunk in input.drain(..) {
            if !chunk.is_empty() {
                to_socket(chunk);
            }
        }
        *scratch = [input, output];
        result
    }
}

/// The vectors a stack passes chunks in between its layers, one set per thread rather than per
/// connection: kept in every stack they cost ~600 B per idle connection once grown (an identity
/// layer measured 1,866 B per idle connection against 914 plain); a thread runs one step at a
/// time, so one set serves all its connections and a steady stream still allocates nothing.
#[derive(Default)]
struct Scratch {
    up: [Vec<BytesMut>; 2],
    down: [Vec<Bytes>; 2],
}

std::thread_local! {
    static SCRATCH: core::cell::Cell<Scratch> = core::cell::Cell::new(Scratch::default());
}

impl Scratch {
    /// This thread's set (an empty one if a call up the stack holds it).
    fn take() -> Self {
        SCRATCH.with(core::cell::Cell::take)
    }

    /// Gives the set back for the thread's next call.
    fn put(self) {
        SCRATCH.with(|cell| cell.set(self));
    }
}

/// XOR with a one-byte key, both ways: a layer that changes every byte, so that a runtime's
/// test can tell that a connection's bytes really pass through its stack (its client XORs
/// too). Not a cipher: for tests only.
#[derive(Debug, Clone, Copy)]
pub struct Xor(pub u8);

impl Xor {
    /// `bytes` XORed with the key, in place.
    pub fn apply(self, bytes: &mut [u8]) {
        for byte in bytes {
            *byte ^= self.0;
        }
    }
}

impl StreamLayer for Xor {
    fn name(&self) -> &'static str {
        "xor"
    }

    fn read(
        &mut self,
        mut bytes: BytesMut,
        up: &mut Vec<BytesMut>,
        _down: &mut Vec<Bytes>,
    ) -> Result<(), LayerError> {
        self.apply(&mut bytes);
        up.push(bytes);
        Ok(())
    }

    fn write(&mut self, bytes: Bytes, down: &mut Vec<Bytes>) -> Result<(), LayerError> {
        // A copy: the engine's chunks are shared (a PUBLISH payload goes to every subscriber).
        let mut out = BytesMut::from(&bytes[..]);
        self.apply(&mut out);
        down.push(out.freeze());
        Ok(())
    }
}

#[cfg(test)]
mod tests;

#[cfg(feature = "tls")]
pub mod tls;

#[cfg(feature = "ws")]
pub mod ws;
