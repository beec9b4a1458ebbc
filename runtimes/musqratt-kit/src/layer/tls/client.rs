//! The client side of the TLS layer: for `musqratt bench` against `mqtts://` and `wss://`
//! listeners (ours and other brokers'), so that the same scenarios measure every transport.
//!
//! Driven through rustls' buffered [`ClientConnection`]: the ClientHello goes out with the
//! first write (as the WebSocket layer's `WsClient` sends its upgrade request with its first
//! write), application bytes written during the handshake wait in rustls' plaintext buffer and
//! go out as soon as it ends (a read that completes the handshake answers with the client's
//! Finished and them, in order). The server side ([`super::Tls`]) moved to the unbuffered
//! connection for a broker's idle memory; a bench client is measured for its speed, not its
//! memory, and the buffered connection holds its early writes for it.

use core::fmt;
use std::io::{Read as _, Write as _};
use std::path::Path;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore};

use super::{TlsSettingsError, certificates, provider};
use crate::layer::{LayerError, StreamLayer};

/// What a TLS client trusts, loaded once and shared by its connections.
#[derive(Clone)]
pub struct TlsClientConfig {
    config: Arc<ClientConfig>,
}

impl fmt::Debug for TlsClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsClientConfig").finish_non_exhaustive()
    }
}

impl TlsClientConfig {
    /// Trusts the CA certificates (PEM) of `ca_file`, and nothing else: a bench or test points
    /// at the CA that signed the broker's certificate, not at the system's roots. TLS 1.2 and
    /// 1.3, rustls' default suites on ring, as the server side.
    ///
    /// # Errors
    /// The file cannot be read, holds no certificate, or rustls refuses one of them.
    pub fn from_ca_file(ca_file: &Path) -> Result<Self, TlsSettingsError> {
        let mut roots = RootCertStore::empty();
        for ca in certificates(ca_file)? {
            roots.add(ca).map_err(|e| TlsSettingsError::new(ca_file, e.to_string()))?;
        }
        let config = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsSettingsError::new(ca_file, e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self { config: Arc::new(config) })
    }

    /// A connection's layer to the server `server_name`: a DNS name the certificate must carry,
    /// or an IP address (`127.0.0.1`, `::1`: verified against the certificate's IP SANs).
    ///
    /// # Errors
    /// `server_name` is neither a DNS name nor an IP address.
    pub fn layer(&self, server_name: &str) -> Result<TlsClient, LayerError> {
        let name =
            ServerName::try_from(server_name.to_owned()).map_err(|_| LayerError::Handshake)?;
        let conn =
            ClientConnection::new(self.config.clone(), name).map_err(|_| LayerError::Handshake)?;
        Ok(TlsClient { conn, closed: false })
    }
}

/// One connection's TLS session, client side.
pub struct TlsClient {
    conn: ClientConnection,
    /// The server's close_notify came: nothing more is read.
    closed: bool,
}

impl fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsClient").field("handshaking", &self.conn.is_handshaking()).finish()
    }
}

impl StreamLayer for TlsClient {
    fn name(&self) -> &'static str {
        "tls-client"
    }

    fn read(
        &mut self,
        bytes: BytesMut,
        up: &mut Vec<BytesMut>,
        down: &mut Vec<Bytes>,
    ) -> Result<(), LayerError> {
        if self.closed {
            return Err(LayerError::PeerClosed);
        }
        let mut rest = &bytes[..];
        while !rest.is_empty() && !self.closed {
            let taken = self.conn.read_tls(&mut rest).map_err(|_| LayerError::TooLarge)?;
            let handshaking = self.conn.is_handshaking();
            let state = match self.conn.process_new_packets() {
                Ok(state) => state,
                Err(error) => {
                    tracing::debug!(%error, "TLS server refused");
                    // The alert saying why (an unknown CA, a name not in the certificate).
                    flush(&mut self.conn, down);
                    return Err(if handshaking {
                        LayerError::Handshake
                    } else {
                        LayerError::Protocol
                    });
                }
            };
            // The client's handshake flight, then whatever was written while it lasted.
            flush(&mut self.conn, down);
            let plaintext = state.plaintext_bytes_to_read();
            if plaintext > 0 {
                let mut chunk = BytesMut::zeroed(plaintext);
                self.conn.reader().read_exact(&mut chunk).map_err(|_| LayerError::Protocol)?;
                up.push(chunk);
            }
            self.closed = state.peer_has_closed();
            if taken == 0 && !self.closed {
                return Err(LayerError::TooLarge);
            }
        }
        // What came with the close_notify went up; the end is reported at the next read.
        Ok(())
    }

    fn write(&mut self, bytes: Bytes, down: &mut Vec<Bytes>) -> Result<(), LayerError> {
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            // During the handshake rustls keeps up to 64 KiB of plaintext (a bench client
            // writes one CONNECT before the CONNACK that needs the handshake done).
            let n = self.conn.writer().write(rest).map_err(|_| LayerError::Protocol)?;
            if n == 0 {
                if self.conn.wants_write() {
                    flush(&mut self.conn, down);
                    continue;
                }
                return Err(LayerError::TooLarge);
            }
            rest = &rest[n..];
        }
        // The first write sends the ClientHello rustls queued at creation.
        flush(&mut self.conn, down);
        Ok(())
    }

    fn close(&mut self, down: &mut Vec<Bytes>) {
        self.conn.send_close_notify();
        flush(&mut self.conn, down);
    }
}

/// What the client connection has for the socket (handshake records, alerts, encrypted data),
/// as one chunk.
fn flush(
    conn: &mut rustls::ConnectionCommon<rustls::client::ClientConnectionData>,
    down: &mut Vec<Bytes>,
) {
    if !conn.wants_write() {
        return;
    }
    let mut out = Vec::new();
    while conn.wants_write() {
        // Writing to a Vec does not fail.
        if conn.write_tls(&mut out).is_err() {
            break;
        }
    }
    if !out.is_empty() {
        down.push(Bytes::from(out));
    }
}
