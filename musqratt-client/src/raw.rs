//! [`RawConnection`]: one TCP connection that sends and receives whole packets (or raw bytes),
//! with no protocol logic. The [`crate::Client`] runs on it, and a conformance suite uses it to
//! send malformed input and watch how a server reacts.

use core::time::Duration;

use bytes::BytesMut;
use musqratt_proto::ProtocolVersion;
use musqratt_proto::mqtt::{Decoder, Packet};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::ClientError;
use crate::url::ServerAddr;

/// The largest packet MQTT can express (fixed header included): the default receive limit.
pub const MAX_PACKET_SIZE: u32 = 268_435_460;

/// A TCP connection framed into MQTT packets by musqratt-proto's codec.
#[derive(Debug)]
pub struct RawConnection {
    stream: TcpStream,
    decoder: Decoder,
    version: ProtocolVersion,
    read_buf: BytesMut,
    write_buf: BytesMut,
}

impl RawConnection {
    /// Opens a TCP connection to `url` (see [`ServerAddr::parse`]) that decodes what it receives
    /// as `version` packets. Nothing is sent.
    ///
    /// # Errors
    /// An invalid URL, a connection failure, or no connection within `timeout`.
    pub async fn connect(
        url: &str,
        version: ProtocolVersion,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        let addr = ServerAddr::parse(url)?;
        let stream =
            tokio::time::timeout(timeout, TcpStream::connect(addr.socket_addr()))
                .await
                .map_err(|_| ClientError::Timeout { waiting_for: "TCP connection", timeout })??;
        stream.set_nodelay(true)?;
        Ok(Self::from_stream(stream, version, MAX_PACKET_SIZE))
    }

    /// Wraps a connected stream.
    #[must_use]
    pub fn from_stream(stream: TcpStream, version: ProtocolVersion, max_packet_size: u32) -> Self {
        Self {
            stream,
            decoder: Decoder::with_version(version, max_packet_size),
            version,
            read_buf: BytesMut::with_capacity(8 * 1024),
            write_buf: BytesMut::with_capacity(1024),
        }
    }

    /// The version packets are encoded and decoded in.
    #[must_use]
    pub const fn version(&self) -> ProtocolVersion {
        self.version
    }

    /// Changes the version used from now on (a CONNECT is always encoded in its own version).
    pub fn set_version(&mut self, version: ProtocolVersion) {
        self.version = version;
        self.decoder = Decoder::with_version(version, self.decoder.max_packet_size());
    }

    /// The underlying stream, for socket options or addresses.
    #[must_use]
    pub const fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Encodes and sends one packet.
    ///
    /// # Errors
    /// [`ClientError::Encode`] for a packet the version cannot carry,
    /// [`ClientError::ConnectionClosed`] when the peer has gone, or another I/O error.
    pub async fn send(&mut self, packet: &Packet) -> Result<(), ClientError> {
        self.write_buf.clear();
        packet.encode(self.version, &mut self.write_buf)?;
        self.stream.write_all(&self.write_buf).await?;
        Ok(())
    }

    /// Sends bytes as they are: malformed packets, partial packets, several packets at once.
    ///
    /// # Errors
    /// As [`RawConnection::send`].
    pub async fn send_bytes(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.stream.write_all(bytes).await?;
        Ok(())
    }

    /// Waits for the next packet. Cancel-safe: bytes already read stay buffered if the future is
    /// dropped (so it can be a branch of `tokio::select!`).
    ///
    /// # Errors
    /// [`ClientError::ConnectionClosed`] when the peer closes the connection (a partial packet
    /// left unread included), [`ClientError::Decode`] for bytes that break the specification.
    pub async fn recv(&mut self) -> Result<Packet, ClientError> {
        loop {
            if let Some(packet) = self.decoder.decode(&mut self.read_buf)? {
                return Ok(packet);
            }
            if self.read_buf.capacity() - self.read_buf.len() < 1024 {
                self.read_buf.reserve(8 * 1024);
            }
            if self.stream.read_buf(&mut self.read_buf).await? == 0 {
                return Err(ClientError::ConnectionClosed);
            }
        }
    }

    /// [`RawConnection::recv`] with a time limit.
    ///
    /// # Errors
    /// [`ClientError::Timeout`] when no whole packet came in time, else as `recv`.
    pub async fn recv_timeout(&mut self, timeout: Duration) -> Result<Packet, ClientError> {
        tokio::time::timeout(timeout, self.recv())
            .await
            .map_err(|_| ClientError::Timeout { waiting_for: "a packet", timeout })?
    }

    /// Waits until the peer closes the connection and returns the packets it sent before (for
    /// example a 5.0 DISCONNECT with a reason code). A reset connection counts as closed.
    ///
    /// # Errors
    /// [`ClientError::Timeout`] if the connection is still open after `timeout`;
    /// [`ClientError::Decode`] if the peer sent an invalid packet.
    pub async fn wait_closed(&mut self, timeout: Duration) -> Result<Vec<Packet>, ClientError> {
        let mut packets = Vec::new();
        let wait = async {
            loop {
                match self.recv().await {
                    Ok(packet) => packets.push(packet),
                    Err(ClientError::ConnectionClosed) => return Ok(()),
                    Err(error) => return Err(error),
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.map_err(|_| ClientError::Timeout {
            waiting_for: "the connection to close",
            timeout,
        })??;
        Ok(packets)
    }

    /// Closes the sending half (TCP FIN); packets can still be received.
    ///
    /// # Errors
    /// An I/O error from the socket.
    pub async fn shutdown(&mut self) -> Result<(), ClientError> {
        self.stream.shutdown().await?;
        Ok(())
    }
}
