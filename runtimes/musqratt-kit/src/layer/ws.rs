//! The WebSocket layer (`ws://`, and `wss://` on top of the TLS layer): MQTT over WebSocket as
//! MQTT 5.0 §6 defines it, on RFC 6455. What browsers speak.
//!
//! Server side: an HTTP/1.1 upgrade request first (answered `101` with the `mqtt` subprotocol,
//! or refused with the HTTP error that says why: 400, 403, 404, 405, 426, 431), then binary
//! frames both ways. The payload of the frames a client sends is unmasked in place and handed
//! to the engine as it arrives: an MQTT packet may span frames and a frame may hold several
//! packets (MQTT-6.0.0-2), the MQTT decoder above does not care. Pings are answered with pongs
//! from the read path, a close frame is answered with one, a text frame closes the connection
//! with status 1003 (MQTT-6.0.0-1). What the engine sends goes out as one binary frame per
//! chunk, unmasked (servers do not mask, RFC 6455 §5.1): small chunks copied behind their
//! header, large ones sent after it without a copy.
//!
//! No crate offered this sans-IO and without copies: tungstenite's frames and messages are
//! read from an `io::Read` into its own buffers (docs/adr/0015-byte-stream-layers.md,
//! "Amendment: WebSocket"). `httparse` parses the request and `sha1` makes the accept key.

mod frame;
mod handshake;
#[cfg(test)]
mod tests;

use core::net::IpAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::{LayerError, Layers, PeerIdentity, StreamLayer};
use frame::{BINARY, Event, FrameReader, NORMAL, PONG, PROTOCOL_ERROR, UNSUPPORTED_DATA};
use handshake::Answer;

/// Chunks up to this size are copied into one buffer with their frame header (one write);
/// larger ones follow their header as a chunk of their own (no copy).
const COPY_UP_TO: usize = 1024;

/// A WebSocket listener's settings (the `[websocket]` table and the listener's path).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WsSettings {
    /// The path of the upgrade request (`/mqtt` by default); others get 404.
    pub path: String,
    /// `Origin`s a browser page may connect from; empty: any. A request without `Origin`
    /// (not from a browser) is not refused for it.
    pub allowed_origins: Vec<String>,
    /// Report the first address of `X-Forwarded-For` as the client's
    /// ([`PeerIdentity::forwarded_for`]): only behind a proxy that sets it, since anyone can.
    pub trust_forwarded_for: bool,
}

impl Default for WsSettings {
    fn default() -> Self {
        Self { path: "/mqtt".into(), allowed_origins: Vec::new(), trust_forwarded_for: false }
    }
}

impl WsSettings {
    /// Settings for the upgrade path `path`, nothing else.
    #[must_use]
    pub fn with_path(path: impl Into<String>) -> Self {
        Self { path: path.into(), ..Self::default() }
    }
}

impl Layers {
    /// One [`WsServer`] layer per connection (`ws://`).
    #[must_use]
    pub fn ws(settings: WsSettings) -> Self {
        let settings = Arc::new(settings);
        Self::new("ws", move |_| {
            vec![Box::new(WsServer::new(settings.clone())) as Box<dyn StreamLayer>]
        })
    }

    /// These layers with a [`WsServer`] on top: `Layers::tls(..).with_ws(..)` is `wss://`.
    #[must_use]
    pub fn with_ws(self, settings: WsSettings) -> Self {
        let settings = Arc::new(settings);
        let below = self.build;
        Self::new(format!("{}+ws", self.name), move |peer| {
            let mut layers = below(peer);
            layers.push(Box::new(WsServer::new(settings.clone())));
            layers
        })
    }
}

/// Where a connection's WebSocket is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the HTTP upgrade (server) or its answer (client).
    Handshake,
    /// Frames both ways.
    Open,
    /// A close frame was sent: nothing more goes out, what comes in is ignored.
    Closed,
}

/// The server side of a WebSocket connection (one per connection of a `ws://` listener).
#[derive(Debug)]
pub struct WsServer {
    settings: Arc<WsSettings>,
    state: State,
    /// The request head, until its blank line.
    head: BytesMut,
    frames: FrameReader,
    /// What the engine wrote before the upgrade was answered (nothing, in practice: it answers
    /// a CONNECT, which comes in frames).
    held: Vec<Bytes>,
    forwarded_for: Option<IpAddr>,
}

impl WsServer {
    /// A connection's layer, before its upgrade request.
    #[must_use]
    pub fn new(settings: Arc<WsSettings>) -> Self {
        Self {
            settings,
            state: State::Handshake,
            head: BytesMut::new(),
            frames: FrameReader::new(true),
            held: Vec::new(),
            forwarded_for: None,
        }
    }

    fn upgrade(
        &mut self,
        bytes: BytesMut,
        up: &mut Vec<BytesMut>,
        down: &mut Vec<Bytes>,
    ) -> Result<(), LayerError> {
        if self.head.is_empty() {
            self.head = bytes;
        } else {
            self.head.extend_from_slice(&bytes);
        }
        let Some(end) = handshake::head_end(&self.head) else {
            if self.head.len() > handshake::MAX_HEAD {
                self.state = State::Closed;
                let why = "request head too large";
                down.push(handshake::refusal(431, "Request Header Fields Too Large", "", why));
                return Err(LayerError::TooLarge);
            }
            return Ok(());
        };
        let rest = self.head.split_off(end);
        let head = core::mem::take(&mut self.head);
        match handshake::answer(&head, &self.settings) {
            Answer::Upgrade { response, forwarded_for } => {
                down.push(response);
                self.forwarded_for = forwarded_for;
                self.state = State::Open;
                for bytes in core::mem::take(&mut self.held) {
                    self.write(bytes, down)?;
                }
                if rest.is_empty() { Ok(()) } else { self.frames(rest, up, down) }
            }
            Answer::Refuse(response) => {
                down.push(response);
                self.state = State::Closed;
                Err(LayerError::Handshake)
            }
        }
    }

    fn frames(
        &mut self,
        bytes: BytesMut,
        up: &mut Vec<BytesMut>,
        down: &mut Vec<Bytes>,
    ) -> Result<(), LayerError> {
        let mut closing = false;
        let result = self.frames.read(bytes, &mut |event| match event {
            Event::Data(bytes) => {
                up.push(bytes);
                Ok(())
            }
            Event::Ping(payload) => {
                down.push(frame::frame(PONG, &payload, None));
                Ok(())
            }
            Event::Close(code) => {
                // The closing handshake (§5.5.1): answer with the peer's code (1000 if it
                // gave none), and send nothing after.
                down.push(frame::close_frame(code.unwrap_or(NORMAL), None));
                closing = true;
                Err(LayerError::PeerClosed)
            }
        });
        if closing {
            self.state = State::Closed;
        } else if let Err(error) = result {
            let code =
                if error == LayerError::Unsupported { UNSUPPORTED_DATA } else { PROTOCOL_ERROR };
            down.push(frame::close_frame(code, None));
            self.state = State::Closed;
        }
        result
    }
}

impl StreamLayer for WsServer {
    fn name(&self) -> &'static str {
        "ws"
    }

    fn read(
        &mut self,
        bytes: BytesMut,
        up: &mut Vec<BytesMut>,
        down: &mut Vec<Bytes>,
    ) -> Result<(), LayerError> {
        match self.state {
            State::Handshake => self.upgrade(bytes, up, down),
            State::Open => self.frames(bytes, up, down),
            State::Closed => Ok(()),
        }
    }

    fn write(&mut self, bytes: Bytes, down: &mut Vec<Bytes>) -> Result<(), LayerError> {
        match self.state {
            State::Handshake => self.held.push(bytes),
            State::Open if bytes.len() <= COPY_UP_TO => {
                down.push(frame::frame(BINARY, &bytes, None));
            }
            State::Open => {
                let mut header = BytesMut::with_capacity(10);
                frame::put_header(&mut header, BINARY, bytes.len(), None);
                down.push(header.freeze());
                down.push(bytes);
            }
            State::Closed => {}
        }
        Ok(())
    }

    fn close(&mut self, down: &mut Vec<Bytes>) {
        if self.state == State::Open {
            down.push(frame::close_frame(NORMAL, None));
        }
        self.state = State::Closed;
    }

    fn identify(&self, peer: &mut PeerIdentity) {
        if self.forwarded_for.is_some() {
            peer.forwarded_for = self.forwarded_for;
        }
    }
}

/// The client side of a WebSocket connection: for the test bridge and `musqratt bench`
/// against `ws://` listeners (ours and other brokers'). It sends the upgrade request with its
/// first write, and masks every frame it sends (RFC 6455 §5.3).
#[derive(Debug)]
pub struct WsClient {
    host: String,
    path: String,
    key: String,
    requested: bool,
    state: State,
    head: BytesMut,
    frames: FrameReader,
    held: Vec<Bytes>,
    /// xorshift64 state for the mask keys: masking protects intermediaries from chosen
    /// plaintext (§10.3), not secrets; a seed from the OS and a cheap generator serve a client
    /// that exists to test and measure.
    masks: u64,
}

impl WsClient {
    /// A client upgrading to a WebSocket at `path` of `host` (`Host` header value).
    #[must_use]
    pub fn new(host: impl Into<String>, path: impl Into<String>) -> Self {
        use base64::Engine as _;
        let mut seed = [0u8; 24];
        // Without the OS's randomness the masks are still masks (the bench and tests need no
        // secrecy): a fixed seed then.
        let _ = getrandom::fill(&mut seed);
        let key = base64::engine::general_purpose::STANDARD.encode(&seed[..16]);
        let mut masks = [0u8; 8];
        masks.copy_from_slice(&seed[16..]);
        Self {
            host: host.into(),
            path: path.into(),
            key,
            requested: false,
            state: State::Handshake,
            head: BytesMut::new(),
            frames: FrameReader::new(false),
            held: Vec::new(),
            masks: u64::from_ne_bytes(masks) | 1,
        }
    }

    fn mask(&mut self) -> [u8; 4] {
        self.masks ^= self.masks << 13;
        self.masks ^= self.masks >> 7;
        self.masks ^= self.masks << 17;
        let [a, b, c, d, ..] = self.masks.to_ne_bytes();
        [a, b, c, d]
    }
}

impl StreamLayer for WsClient {
    fn name(&self) -> &'static str {
        "ws-client"
    }

    fn read(
        &mut self,
        bytes: BytesMut,
        up: &mut Vec<BytesMut>,
        down: &mut Vec<Bytes>,
    ) -> Result<(), LayerError> {
        let bytes = match self.state {
            State::Closed => return Ok(()),
            State::Open => bytes,
            State::Handshake => {
                self.head.extend_from_slice(&bytes);
                let Some(end) = handshake::head_end(&self.head) else {
                    return if self.head.len() > handshake::MAX_HEAD {
                        Err(LayerError::Handshake)
                    } else {
                        Ok(())
                    };
                };
                let rest = self.head.split_off(end);
                if !handshake::accepted(&self.head, &self.key) {
                    self.state = State::Closed;
                    return Err(LayerError::Handshake);
                }
                self.head = BytesMut::new();
                self.state = State::Open;
                for bytes in core::mem::take(&mut self.held) {
                    self.write(bytes, down)?;
                }
                rest
            }
        };
        let mut close = None;
        let mut pongs = Vec::new();
        let result = self.frames.read(bytes, &mut |event| match event {
            Event::Data(bytes) => {
                up.push(bytes);
                Ok(())
            }
            Event::Ping(payload) => {
                pongs.push(payload);
                Ok(())
            }
            Event::Close(code) => {
                close = Some(code.unwrap_or(NORMAL));
                Err(LayerError::PeerClosed)
            }
        });
        for payload in pongs {
            let mask = self.mask();
            down.push(frame::frame(PONG, &payload, Some(mask)));
        }
        if let Some(code) = close {
            let mask = self.mask();
            down.push(frame::close_frame(code, Some(mask)));
            self.state = State::Closed;
        }
        result
    }

    fn write(&mut self, bytes: Bytes, down: &mut Vec<Bytes>) -> Result<(), LayerError> {
        if !core::mem::replace(&mut self.requested, true) {
            down.push(handshake::request(&self.host, &self.path, &self.key));
        }
        match self.state {
            State::Handshake => self.held.push(bytes),
            State::Open => {
                let mask = self.mask();
                down.push(frame::frame(BINARY, &bytes, Some(mask)));
            }
            State::Closed => {}
        }
        Ok(())
    }

    fn close(&mut self, down: &mut Vec<Bytes>) {
        if self.state == State::Open {
            let mask = self.mask();
            down.push(frame::close_frame(NORMAL, Some(mask)));
        }
        self.state = State::Closed;
    }
}
