//! DISCONNECT (§3.14) and AUTH (§3.15): a reason code and properties, both omissible.

use bytes::{BufMut, Bytes, BytesMut};

use super::properties::{AuthProperties, DisconnectProperties};
use super::{PacketType, ReasonCode};
use crate::error::{DecodeError, EncodeError};
use crate::types::ProtocolVersion;
use crate::wire::read_u8;

/// DISCONNECT (§3.14). 3.1.1's DISCONNECT has no body: it decodes as Normal disconnection.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Disconnect {
    /// The Disconnect Reason Code (5.0).
    pub reason_code: ReasonCode,
    /// MQTT 5.0 properties.
    pub properties: DisconnectProperties,
}

/// AUTH (§3.15): a step of enhanced authentication, MQTT 5.0 only.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Auth {
    /// Success, Continue authentication or Re-authenticate.
    pub reason_code: ReasonCode,
    /// Authentication method and data, reason string, user properties.
    pub properties: AuthProperties,
}

impl Default for ReasonCode {
    fn default() -> Self {
        Self::SUCCESS
    }
}

impl Disconnect {
    /// A DISCONNECT with this reason and no properties.
    #[must_use]
    pub fn new(reason_code: ReasonCode) -> Self {
        Self { reason_code, properties: DisconnectProperties::default() }
    }

    pub(crate) fn decode(version: ProtocolVersion, mut body: Bytes) -> Result<Self, DecodeError> {
        let mut this = Self::default();
        if !version.is_v5() {
            return super::ensure_consumed(&body).map(|()| this);
        }
        // Remaining Length 0 means Normal disconnection without properties, 1 a reason code
        // without properties (§3.14.2.1, §3.14.2.2.1).
        if !body.is_empty() {
            this.reason_code = reason(&mut body, PacketType::Disconnect)?;
            if !body.is_empty() {
                this.properties = DisconnectProperties::decode(&mut body)?;
            }
        }
        super::ensure_consumed(&body).map(|()| this)
    }

    fn short_form(&self, version: ProtocolVersion) -> bool {
        !version.is_v5() || (self.reason_code == ReasonCode::SUCCESS && self.properties.is_empty())
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        if self.short_form(version) {
            return Ok(0);
        }
        Ok(1 + self.properties.encoded_len()?)
    }

    pub(crate) fn encode_body(
        &self,
        version: ProtocolVersion,
        dst: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        if !self.short_form(version) {
            dst.put_u8(self.reason_code.0);
            self.properties.encode(self.properties.body_len()?, dst);
        }
        Ok(())
    }
}

impl Auth {
    pub(crate) fn decode(mut body: Bytes) -> Result<Self, DecodeError> {
        let mut this = Self::default();
        // Remaining Length 0 means Success without properties (§3.15.2.1).
        if !body.is_empty() {
            this.reason_code = reason(&mut body, PacketType::Auth)?;
            if !body.is_empty() {
                this.properties = AuthProperties::decode(&mut body)?;
            }
        }
        super::ensure_consumed(&body).map(|()| this)
    }

    fn short_form(&self) -> bool {
        self.reason_code == ReasonCode::SUCCESS && self.properties.is_empty()
    }

    pub(crate) fn body_len(&self) -> Result<usize, EncodeError> {
        if self.short_form() {
            return Ok(0);
        }
        Ok(1 + self.properties.encoded_len()?)
    }

    pub(crate) fn encode_body(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        if !self.short_form() {
            dst.put_u8(self.reason_code.0);
            self.properties.encode(self.properties.body_len()?, dst);
        }
        Ok(())
    }
}

fn reason(body: &mut Bytes, packet: PacketType) -> Result<ReasonCode, DecodeError> {
    let code = read_u8(body)?;
    let reason = ReasonCode(code);
    if reason.allowed_in(packet) { Ok(reason) } else { Err(DecodeError::InvalidReasonCode(code)) }
}
