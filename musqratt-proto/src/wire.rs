//! The data representations of MQTT 5.0 §1.5 (integers, Variable Byte Integers, UTF-8 Encoded
//! Strings, Binary Data), read from an owned [`Bytes`] so that strings and binaries are zero-copy
//! slices of the received frame.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use crate::error::{DecodeError, EncodeError};

/// The largest value a Variable Byte Integer holds (§1.5.5).
pub(crate) const MAX_VARINT: u32 = 268_435_455;

pub(crate) fn read_u8(buf: &mut Bytes) -> Result<u8, DecodeError> {
    if buf.is_empty() {
        return Err(DecodeError::Truncated);
    }
    Ok(buf.get_u8())
}

pub(crate) fn read_u16(buf: &mut Bytes) -> Result<u16, DecodeError> {
    if buf.len() < 2 {
        return Err(DecodeError::Truncated);
    }
    Ok(buf.get_u16())
}

pub(crate) fn read_u32(buf: &mut Bytes) -> Result<u32, DecodeError> {
    if buf.len() < 4 {
        return Err(DecodeError::Truncated);
    }
    Ok(buf.get_u32())
}

/// Decodes a Variable Byte Integer at the start of `bytes`: `Ok(None)` when more bytes are needed,
/// otherwise the value and how many bytes it took. Rejects a fifth byte and non-minimal encodings
/// (MQTT-1.5.5-1).
pub(crate) fn parse_varint(bytes: &[u8]) -> Result<Option<(u32, usize)>, DecodeError> {
    let mut value: u32 = 0;
    for (i, &byte) in bytes.iter().enumerate() {
        if i == 4 {
            return Err(DecodeError::MalformedVarInt);
        }
        value |= u32::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            // A last byte of 0 after a continuation byte is a longer encoding than needed.
            if i > 0 && byte == 0 {
                return Err(DecodeError::MalformedVarInt);
            }
            return Ok(Some((value, i + 1)));
        }
    }
    if bytes.len() >= 4 { Err(DecodeError::MalformedVarInt) } else { Ok(None) }
}

pub(crate) fn read_varint(buf: &mut Bytes) -> Result<u32, DecodeError> {
    match parse_varint(buf)? {
        Some((value, len)) => {
            buf.advance(len);
            Ok(value)
        }
        None => Err(DecodeError::Truncated),
    }
}

/// Binary Data (§1.5.6): a two-byte length, then that many bytes, sliced without copying.
pub(crate) fn read_binary(buf: &mut Bytes) -> Result<Bytes, DecodeError> {
    let len = usize::from(read_u16(buf)?);
    if buf.len() < len {
        return Err(DecodeError::Truncated);
    }
    Ok(buf.split_to(len))
}

/// A UTF-8 Encoded String (§1.5.4): well-formed UTF-8 without surrogates (MQTT-1.5.4-1; Rust's
/// UTF-8 validation rejects encoded surrogates) and without U+0000 (MQTT-1.5.4-2).
pub(crate) fn read_string(buf: &mut Bytes) -> Result<ByteString, DecodeError> {
    let bytes = read_binary(buf)?;
    if bytes.contains(&0) {
        return Err(DecodeError::NullCharacter);
    }
    ByteString::try_from(bytes).map_err(|_| DecodeError::InvalidUtf8)
}

/// The number of bytes the Variable Byte Integer encoding of `value` takes.
#[must_use]
pub(crate) const fn varint_len(value: u32) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Writes `value` as a Variable Byte Integer. The caller has checked `value <= MAX_VARINT`.
pub(crate) fn write_varint(dst: &mut BytesMut, mut value: u32) {
    debug_assert!(value <= MAX_VARINT);
    loop {
        let byte = (value & 0x7F) as u8;
        value >>= 7;
        if value == 0 {
            dst.put_u8(byte);
            return;
        }
        dst.put_u8(byte | 0x80);
    }
}

/// The encoded size of a string or binary field, checking the 65,535-byte limit (§1.5.4).
pub(crate) fn binary_len(bytes: &[u8]) -> Result<usize, EncodeError> {
    if bytes.len() > usize::from(u16::MAX) {
        return Err(EncodeError::FieldTooLong);
    }
    Ok(2 + bytes.len())
}

/// Writes a string or binary field whose length [`binary_len`] has checked.
pub(crate) fn write_binary(dst: &mut BytesMut, bytes: &[u8]) {
    debug_assert!(bytes.len() <= usize::from(u16::MAX));
    dst.put_u16(bytes.len() as u16);
    dst.put_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_boundaries() {
        for (value, len) in
            [(0, 1), (127, 1), (128, 2), (16_383, 2), (16_384, 3), (2_097_151, 3), (2_097_152, 4)]
        {
            let mut dst = BytesMut::new();
            write_varint(&mut dst, value);
            assert_eq!(dst.len(), len);
            assert_eq!(varint_len(value), len);
            assert_eq!(parse_varint(&dst), Ok(Some((value, len))));
        }
        let mut dst = BytesMut::new();
        write_varint(&mut dst, MAX_VARINT);
        assert_eq!(&dst[..], &[0xFF, 0xFF, 0xFF, 0x7F]);
    }

    #[test]
    fn varint_malformed() {
        // MQTT-1.5.5-1: at most four bytes, and the minimum number of bytes.
        assert_eq!(
            parse_varint(&[0xFF, 0xFF, 0xFF, 0xFF, 0x01]),
            Err(DecodeError::MalformedVarInt)
        );
        assert_eq!(parse_varint(&[0x80, 0x00]), Err(DecodeError::MalformedVarInt));
        assert_eq!(parse_varint(&[0xFF, 0x80, 0x00]), Err(DecodeError::MalformedVarInt));
        assert_eq!(parse_varint(&[0x80, 0x80]), Ok(None));
        assert_eq!(parse_varint(&[]), Ok(None));
    }

    #[test]
    fn strings() {
        let mut ok = Bytes::from_static(b"\x00\x02hi");
        assert_eq!(read_string(&mut ok).as_deref(), Ok("hi"));
        // MQTT-1.5.4-2
        assert_eq!(
            read_string(&mut Bytes::from_static(b"\x00\x01\x00")),
            Err(DecodeError::NullCharacter)
        );
        // MQTT-1.5.4-1: U+D800 encoded as UTF-8 is a surrogate and ill-formed.
        assert_eq!(
            read_string(&mut Bytes::from_static(b"\x00\x03\xED\xA0\x80")),
            Err(DecodeError::InvalidUtf8)
        );
        assert_eq!(
            read_string(&mut Bytes::from_static(b"\x00\x05ab")),
            Err(DecodeError::Truncated)
        );
    }
}
