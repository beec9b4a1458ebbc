//! Incremental decoding of a byte stream into packets (§2.1, §4.2).

use bytes::{Buf, Bytes, BytesMut};

use super::{Connect, Packet};
use crate::error::DecodeError;
use crate::types::ProtocolVersion;
use crate::wire::parse_varint;

/// Splits a byte stream into packets as bytes arrive.
///
/// A server creates it without a version: the first packet must be CONNECT (MQTT-3.1.0-1) and
/// fixes the version for the rest of the connection. A client creates it with the version of the
/// CONNECT it sent.
#[derive(Debug, Clone)]
pub struct Decoder {
    version: Option<ProtocolVersion>,
    max_packet_size: u32,
}

impl Decoder {
    /// The decoder of a server: the version comes from the connection's CONNECT. Packets larger
    /// than `max_packet_size` bytes (fixed header included) are refused.
    #[must_use]
    pub const fn new(max_packet_size: u32) -> Self {
        Self { version: None, max_packet_size }
    }

    /// The decoder of a client that connected with `version`.
    #[must_use]
    pub const fn with_version(version: ProtocolVersion, max_packet_size: u32) -> Self {
        Self { version: Some(version), max_packet_size }
    }

    /// The version of the connection, once its CONNECT has been decoded, or once a CONNECT that
    /// failed to decode announced a supported protocol name and level (see
    /// [`Connect::announced_version`]).
    #[must_use]
    pub const fn version(&self) -> Option<ProtocolVersion> {
        self.version
    }

    /// The largest packet accepted.
    #[must_use]
    pub const fn max_packet_size(&self) -> u32 {
        self.max_packet_size
    }

    /// Takes one packet off the front of `buf`: `Ok(None)` when more bytes are needed.
    ///
    /// The size announced by the fixed header is checked against the maximum before the body
    /// is waited for, so an oversize packet is refused after at most five bytes and never
    /// buffered. The decoded packet's strings and payload share `buf`'s allocation.
    ///
    /// # Errors
    /// [`DecodeError::PacketTooLarge`], [`DecodeError::FirstPacketNotConnect`] or the first rule
    /// the packet breaks. The stream cannot be resumed after an error: close the connection.
    #[inline]
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Packet>, DecodeError> {
        Ok(self.decode_inner(buf, false)?.map(|(packet, _)| packet))
    }

    /// As [`Decoder::decode`], also giving the whole packet as received, fixed header included:
    /// a view into `buf`'s allocation (no copy), which the decoded payload shares. A broker
    /// forwarding a PUBLISH can send the part before the payload unchanged when the header it
    /// would encode is the same bytes.
    ///
    /// # Errors
    /// As [`Decoder::decode`].
    #[inline]
    pub fn decode_frame(
        &mut self,
        buf: &mut BytesMut,
    ) -> Result<Option<(Packet, Bytes)>, DecodeError> {
        Ok(self.decode_inner(buf, true)?.map(|(packet, frame)| (packet, frame.unwrap_or_default())))
    }

    /// The decoder behind both: the frame is kept (a reference count taken on `buf`'s
    /// allocation, and given back when dropped) only when the caller wants it, or while the
    /// version is unknown, for [`Connect::announced_version`] on a failed CONNECT.
    #[inline(always)]
    fn decode_inner(
        &mut self,
        buf: &mut BytesMut,
        keep_frame: bool,
    ) -> Result<Option<(Packet, Option<Bytes>)>, DecodeError> {
        // MQTT-3.1.0-1: a server knows from the first byte whether the first packet is CONNECT,
        // so junk (an HTTP request, say) is refused at once instead of waiting for its "body".
        match buf.first() {
            None => return Ok(None),
            Some(header) if self.version.is_none() && header >> 4 != 1 => {
                return Err(DecodeError::FirstPacketNotConnect);
            }
            Some(_) if buf.len() < 2 => return Ok(None),
            Some(_) => {}
        }
        let Some((remaining, len_bytes)) = parse_varint(&buf[1..])? else {
            return Ok(None);
        };
        let total = 1 + len_bytes + remaining as usize;
        if total > self.max_packet_size as usize {
            let size = u32::try_from(total).unwrap_or(u32::MAX);
            return Err(DecodeError::PacketTooLarge { size, max: self.max_packet_size });
        }
        if buf.len() < total {
            buf.reserve(total - buf.len());
            return Ok(None);
        }
        let header = buf[0];
        // CONNECT carries its own version; the one given here is not used for it.
        let version = self.version.unwrap_or(ProtocolVersion::V5);
        let mut body = buf.split_to(total).freeze();
        let frame = (keep_frame || self.version.is_none()).then(|| body.clone());
        body.advance(1 + len_bytes);
        let packet = match Packet::decode(version, header, body) {
            Ok(packet) => packet,
            Err(error) => {
                // A CONNECT that names its version and then breaks a rule: keep the version, so
                // that a server can answer a 5.0 client with a CONNACK reason code before closing
                // (§4.13.1, §3.2.2.2) instead of closing silently.
                if let (None, Some(frame)) = (self.version, &frame)
                    && header >> 4 == 1
                {
                    self.version = Connect::announced_version(&frame[1 + len_bytes..]);
                }
                return Err(error);
            }
        };
        if let (None, Packet::Connect(connect)) = (self.version, &packet) {
            self.version = Some(connect.protocol);
        }
        Ok(Some((packet, frame)))
    }
}
