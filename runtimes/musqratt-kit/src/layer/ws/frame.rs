//! RFC 6455 §5 framing, both roles, without copies: a frame's payload is unmasked in place in
//! the bytes read and handed on as it arrives, so a frame never has to be held whole (an MQTT
//! packet split across frames, or several packets in one frame, are just byte chunks to the
//! MQTT decoder above, MQTT 5.0 §6.0).

use bytes::{BufMut as _, Bytes, BytesMut};

use crate::layer::LayerError;

/// Opcodes (RFC 6455 §5.2).
pub(crate) const CONTINUATION: u8 = 0x0;
pub(crate) const TEXT: u8 = 0x1;
pub(crate) const BINARY: u8 = 0x2;
pub(crate) const CLOSE: u8 = 0x8;
pub(crate) const PING: u8 = 0x9;
pub(crate) const PONG: u8 = 0xA;

/// Close status codes (RFC 6455 §7.4.1).
pub(crate) const NORMAL: u16 = 1000;
pub(crate) const PROTOCOL_ERROR: u16 = 1002;
pub(crate) const UNSUPPORTED_DATA: u16 = 1003;

/// The largest control frame payload (RFC 6455 §5.5).
const MAX_CONTROL: u64 = 125;

/// What a [`FrameReader`] found in the bytes it was given.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// Payload bytes of a binary message, unmasked, in order (a frame may come in pieces).
    Data(BytesMut),
    /// A ping with its payload, to be answered with a pong carrying the same (§5.5.2).
    Ping(Bytes),
    /// A close frame, with its status code if it had one (§5.5.1).
    Close(Option<u16>),
}

/// The frame being read.
#[derive(Debug, Clone, Copy)]
struct Frame {
    opcode: u8,
    remaining: u64,
    mask: Option<[u8; 4]>,
    /// How many payload bytes were unmasked already, modulo 4: where the mask key resumes.
    phase: usize,
}

/// Reads frames from a byte stream that arrives in arbitrary pieces.
#[derive(Debug, Default)]
pub(crate) struct FrameReader {
    /// Frames from a client must be masked, frames from a server must not be (§5.1).
    from_client: bool,
    /// A header that arrived in pieces (at most 14 bytes).
    header: [u8; 14],
    header_len: usize,
    frame: Option<Frame>,
    /// Inside a fragmented binary message: only continuation (and control) frames may come.
    in_message: bool,
    /// A control frame's payload, gathered (at most 125 bytes).
    control: BytesMut,
}

impl FrameReader {
    /// A reader for the frames a client sends (`true`, masked) or a server sends.
    pub(crate) fn new(from_client: bool) -> Self {
        Self { from_client, ..Self::default() }
    }

    /// Reads `bytes`, calling `event` with what they complete, in order.
    ///
    /// # Errors
    /// The bytes break RFC 6455 §5: an unmasked frame from a client (§5.1), reserved bits or
    /// opcodes (§5.2), a text frame (`Unsupported`: MQTT is binary), a fragmented or oversized control frame (§5.5), a continuation with
    /// no message to continue or a new message inside one (§5.4). Or `event` failed.
    pub(crate) fn read(
        &mut self,
        mut bytes: BytesMut,
        event: &mut impl FnMut(Event) -> Result<(), LayerError>,
    ) -> Result<(), LayerError> {
        loop {
            let mut frame = match self.frame {
                Some(frame) => frame,
                None => match self.header(&mut bytes)? {
                    Some(frame) => frame,
                    None => return Ok(()),
                },
            };
            let take = usize::try_from(frame.remaining).map_or(bytes.len(), |r| r.min(bytes.len()));
            let mut payload = bytes.split_to(take);
            if let Some(mask) = frame.mask {
                unmask(&mut payload, mask, frame.phase);
            }
            frame.phase = (frame.phase + take) % 4;
            frame.remaining -= take as u64;
            let done = frame.remaining == 0;
            self.frame = (!done).then_some(frame);
            if frame.opcode < CLOSE {
                if !payload.is_empty() {
                    event(Event::Data(payload))?;
                }
            } else {
                self.control.extend_from_slice(&payload);
                if done {
                    let control = self.control.split().freeze();
                    match frame.opcode {
                        PING => event(Event::Ping(control))?,
                        CLOSE => {
                            let code = (control.len() >= 2)
                                .then(|| u16::from_be_bytes([control[0], control[1]]));
                            event(Event::Close(code))?;
                        }
                        _ => {} // a pong: nothing to do (§5.5.3)
                    }
                }
            }
            if bytes.is_empty() && self.frame.is_some() {
                return Ok(());
            }
        }
    }

    /// Gathers the next header from `bytes` (keeping a partial one): the frame it starts, or
    /// `None` if more bytes are needed.
    fn header(&mut self, bytes: &mut BytesMut) -> Result<Option<Frame>, LayerError> {
        // Needed so far: 2 bytes, then as many as the second one says.
        loop {
            let need = if self.header_len < 2 { 2 } else { header_len(&self.header) };
            if self.header_len >= need {
                break;
            }
            if bytes.is_empty() {
                return Ok(None);
            }
            let take = (need - self.header_len).min(bytes.len());
            self.header[self.header_len..self.header_len + take]
                .copy_from_slice(&bytes.split_to(take));
            self.header_len += take;
        }
        let header = &self.header[..self.header_len];
        self.header_len = 0;
        let (first, second) = (header[0], header[1]);
        let fin = first & 0x80 != 0;
        let opcode = first & 0x0f;
        if first & 0x70 != 0 {
            return Err(LayerError::Protocol); // no extension was negotiated (§5.2)
        }
        let masked = second & 0x80 != 0;
        if masked != self.from_client {
            return Err(LayerError::Protocol);
        }
        let length = match second & 0x7f {
            126 => u64::from(u16::from_be_bytes([header[2], header[3]])),
            127 => {
                let mut eight = [0; 8];
                eight.copy_from_slice(&header[2..10]);
                let length = u64::from_be_bytes(eight);
                if length >> 63 != 0 {
                    return Err(LayerError::Protocol); // the most significant bit must be 0
                }
                length
            }
            short => u64::from(short),
        };
        let mask = masked.then(|| {
            let at = header.len() - 4;
            [header[at], header[at + 1], header[at + 2], header[at + 3]]
        });
        match opcode {
            CLOSE | PING | PONG if !fin || length > MAX_CONTROL => {
                return Err(LayerError::Protocol);
            }
            CLOSE | PING | PONG => {}
            CONTINUATION if !self.in_message => return Err(LayerError::Protocol),
            CONTINUATION => self.in_message = !fin,
            TEXT | BINARY if self.in_message => return Err(LayerError::Protocol),
            // MQTT travels in binary frames only (MQTT-6.0.0-1): a text frame ends the connection.
            TEXT => return Err(LayerError::Unsupported),
            BINARY => self.in_message = !fin,
            _ => return Err(LayerError::Protocol),
        }
        let frame = Frame { opcode, remaining: length, mask, phase: 0 };
        if length == 0 && opcode < CLOSE {
            // An empty data frame: nothing to hand on, the next header follows.
            return self.header(bytes);
        }
        Ok(Some(frame))
    }
}

/// A header's length from its first two bytes (§5.2).
fn header_len(header: &[u8; 14]) -> usize {
    let extended = match header[1] & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask = if header[1] & 0x80 != 0 { 4 } else { 0 };
    2 + extended + mask
}

/// XORs `payload` with the mask key, starting at byte `phase` of the key (§5.3). Eight bytes at
/// a time: the same operation, with the key repeated twice in a word.
pub(crate) fn unmask(payload: &mut [u8], mask: [u8; 4], phase: usize) {
    let mut key = mask;
    key.rotate_left(phase % 4);
    let word = u64::from_ne_bytes([key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3]]);
    let mut chunks = payload.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut eight = [0; 8];
        eight.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(eight) ^ word).to_ne_bytes());
    }
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= key[i % 4];
    }
}

/// Appends a frame header to `out`: final, no extension, `opcode`, `length` bytes of payload,
/// masked with `mask` when the sender is a client (§5.2).
pub(crate) fn put_header(out: &mut BytesMut, opcode: u8, length: usize, mask: Option<[u8; 4]>) {
    out.put_u8(0x80 | opcode);
    let masked = if mask.is_some() { 0x80 } else { 0 };
    match length {
        0..=125 => out.put_u8(masked | length as u8),
        126..=0xffff => {
            out.put_u8(masked | 126);
            out.put_u16(length as u16);
        }
        _ => {
            out.put_u8(masked | 127);
            out.put_u64(length as u64);
        }
    }
    if let Some(mask) = mask {
        out.put_slice(&mask);
    }
}

/// A whole frame carrying `payload`, masked with `mask` if given: one buffer (a copy of the
/// payload). For control frames and for small data frames, where one write beats two chunks.
pub(crate) fn frame(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Bytes {
    let mut out = BytesMut::with_capacity(14 + payload.len());
    put_header(&mut out, opcode, payload.len(), mask);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(mask) = mask {
        unmask(&mut out[start..], mask, 0);
    }
    out.freeze()
}

/// A close frame with `code` (§5.5.1).
pub(crate) fn close_frame(code: u16, mask: Option<[u8; 4]>) -> Bytes {
    frame(CLOSE, &code.to_be_bytes(), mask)
}
