//! The TLS layer (`mqtts://`): rustls on the ring provider, TLS 1.2 and 1.3 only, no OpenSSL.
//!
//! Driven through rustls' buffered [`ServerConnection`] over in-memory buffers: the bytes read
//! go in with `read_tls`, the plaintext comes out of `reader()` for the engine, the engine's
//! chunks go in through `writer()` and the records come out of `write_tls` for the write queue.
//! ADR 15 meant to use the unbuffered API; why this one was taken instead is its amendment
//! (docs/adr/0015-byte-stream-layers.md, "Amendment: TLS").
//!
//! What a deployment gets wrong is refused at start, naming the file ([`TlsSettings::load`]):
//! an unreadable certificate or key, a file with no PEM item of the kind expected, a key that
//! is not the certificate's.
//!
//! Certificates expire and are renewed (Let's Encrypt every 60 to 90 days): [`TlsConfig::reload`]
//! re-reads the files while the broker runs (SIGHUP), so that a renewal needs no restart and
//! drops no client. Connections made before keep the session they negotiated.

use core::fmt;
use core::net::SocketAddr;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use bytes::{Bytes, BytesMut};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection};

use super::{LayerError, Layers, PeerIdentity, StreamLayer};

/// A listener's TLS settings as the configuration gives them (the `[tls]` table).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsSettings {
    /// The server's certificate chain, PEM, the server's own certificate first.
    pub cert_file: PathBuf,
    /// The certificate's private key, PEM: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
    pub key_file: PathBuf,
    /// CA certificates, PEM, that client certificates are verified against. Without it, the
    /// broker asks for no client certificate.
    pub ca_file: Option<PathBuf>,
    /// Refuse clients without a certificate signed by `ca_file` (mutual TLS).
    pub require_client_cert: bool,
    /// The client certificate's common name is the client's user name
    /// ([`PeerIdentity::username`]).
    pub identity_as_username: bool,
    /// ALPN protocol names offered (`"mqtt"`); empty: no ALPN.
    pub alpn: Vec<String>,
}

/// Why the TLS settings cannot be used: the file concerned and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", file.display())]
pub struct TlsSettingsError {
    /// The file at fault (the key file when a key does not match its certificate).
    pub file: PathBuf,
    /// What is wrong.
    pub message: String,
}

impl TlsSettingsError {
    fn new(file: &Path, message: impl Into<String>) -> Self {
        Self { file: file.to_owned(), message: message.into() }
    }
}

impl TlsSettings {
    /// Settings with a certificate chain and its key, and nothing else.
    #[must_use]
    pub fn new(cert_file: impl Into<PathBuf>, key_file: impl Into<PathBuf>) -> Self {
        Self { cert_file: cert_file.into(), key_file: key_file.into(), ..Self::default() }
    }

    /// Reads the files and builds the rustls configuration every connection of the listener
    /// shares (loaded once, at start).
    ///
    /// # Errors
    /// A file cannot be read or holds no PEM item of the kind expected, the key does not
    /// match the certificate, or a client certificate is required without `ca_file`.
    pub fn load(&self) -> Result<TlsConfig, TlsSettingsError> {
        let chain = certificates(&self.cert_file)?;
        let key_pem = read(&self.key_file)?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
            TlsSettingsError::new(
                &self.key_file,
                format!("no PKCS#8, PKCS#1 or SEC1 private key in PEM ({e})"),
            )
        })?;
        let provider = provider();
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsSettingsError::new(&self.cert_file, e.to_string()))?;
        let builder = match &self.ca_file {
            None if self.require_client_cert => {
                return Err(TlsSettingsError::new(
                    Path::new("tls.require_client_cert"),
                    "needs tls.ca_file, the CA that client certificates are verified against",
                ));
            }
            None => builder.with_no_client_auth(),
            Some(ca_file) => {
                let mut roots = RootCertStore::empty();
                for ca in certificates(ca_file)? {
                    roots.add(ca).map_err(|e| TlsSettingsError::new(ca_file, e.to_string()))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                let verifier = if self.require_client_cert {
                    verifier
                } else {
                    verifier.allow_unauthenticated()
                };
                let verifier =
                    verifier.build().map_err(|e| TlsSettingsError::new(ca_file, e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_single_cert(chain, key).map_err(|e| {
            let message = match e {
                rustls::Error::InconsistentKeys(_) => format!(
                    "this key is not the key of the certificate in {}",
                    self.cert_file.display()
                ),
                e => e.to_string(),
            };
            TlsSettingsError::new(&self.key_file, message)
        })?;
        config.alpn_protocols = self.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        Ok(TlsConfig {
            server: Arc::new(RwLock::new(Arc::new(config))),
            identity_as_username: self.identity_as_username,
        })
    }
}

/// The ring provider. rustls 0.23.48 deprecates it for lacking post-quantum key exchange; the
/// alternative, aws-lc-rs, needs a C toolchain and CMake to build and is what "ring, no
/// OpenSSL" was chosen against. X25519, P-256 and P-384 remain what MQTT clients offer.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(file: &Path) -> Result<Vec<u8>, TlsSettingsError> {
    std::fs::read(file).map_err(|e| TlsSettingsError::new(file, format!("cannot read: {e}")))
}

/// Every certificate of a PEM file; at least one.
fn certificates(file: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSettingsError> {
    let pem = read(file)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsSettingsError::new(file, format!("bad PEM: {e}")))?;
    if chain.is_empty() {
        return Err(TlsSettingsError::new(file, "no CERTIFICATE in PEM"));
    }
    Ok(chain)
}

/// A listener's loaded TLS configuration, shared by its connections. Clones share it, a
/// [`TlsConfig::reload`] included.
#[derive(Clone)]
pub struct TlsConfig {
    /// Swapped whole by a reload; a new connection clones the `Arc` it finds.
    server: Arc<RwLock<Arc<ServerConfig>>>,
    identity_as_username: bool,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("alpn", &self.current().alpn_protocols)
            .field("identity_as_username", &self.identity_as_username)
            .finish_non_exhaustive()
    }
}

impl TlsConfig {
    /// Re-reads the files of `settings` (SIGHUP) and serves every new connection of every
    /// listener sharing this configuration with them; connections already made keep their
    /// session. `identity_as_username` stays as it was at start.
    ///
    /// # Errors
    /// As [`TlsSettings::load`]: the configuration in use stays.
    pub fn reload(&self, settings: &TlsSettings) -> Result<(), TlsSettingsError> {
        let fresh = settings.load()?.current();
        *self.server.write().unwrap_or_else(PoisonError::into_inner) = fresh;
        Ok(())
    }

    fn current(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.server.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// A new connection's layer.
    ///
    /// # Errors
    /// rustls refused to start a connection (it does not with a configuration that loaded).
    pub fn layer(&self, peer: Option<SocketAddr>) -> Result<Tls, LayerError> {
        let conn = ServerConnection::new(self.current()).map_err(|_| LayerError::Handshake)?;
        Ok(Tls { conn, peer, identity_as_username: self.identity_as_username, closed: false })
    }
}

impl Layers {
    /// One [`Tls`] layer per connection (`mqtts://`).
    #[must_use]
    pub fn tls(config: TlsConfig) -> Self {
        Self::new("tls", move |peer| match config.layer(Some(peer)) {
            Ok(layer) => vec![Box::new(layer) as Box<dyn StreamLayer>],
            // Not expected; a stack that refuses every byte closes the connection at once.
            Err(error) => vec![Box::new(Refuse(error))],
        })
    }
}

/// A layer that fails on the first byte: a connection whose TLS layer could not be made.
#[derive(Debug)]
struct Refuse(LayerError);

impl StreamLayer for Refuse {
    fn name(&self) -> &'static str {
        "tls"
    }

    fn read(
        &mut self,
        _: BytesMut,
        _: &mut Vec<BytesMut>,
        _: &mut Vec<Bytes>,
    ) -> Result<(), LayerError> {
        Err(self.0)
    }

    fn write(&mut self, _: Bytes, _: &mut Vec<Bytes>) -> Result<(), LayerError> {
        Err(self.0)
    }
}

/// One connection's TLS session, server side.
pub struct Tls {
    conn: ServerConnection,
    /// For the log line of a refused client certificate.
    peer: Option<SocketAddr>,
    identity_as_username: bool,
    /// The peer's close_notify came: nothing more is read.
    closed: bool,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls").field("handshaking", &self.conn.is_handshaking()).finish()
    }
}

impl Tls {
    /// What rustls has for the socket (handshake records, alerts, encrypted data), as one chunk.
    fn flush(&mut self, down: &mut Vec<Bytes>) {
        if !self.conn.wants_write() {
            return;
        }
        let mut out = Vec::new();
        while self.conn.wants_write() {
            // Writing to a Vec does not fail.
            if self.conn.write_tls(&mut out).is_err() {
                break;
            }
        }
        if !out.is_empty() {
            down.push(Bytes::from(out));
        }
    }
}

impl StreamLayer for Tls {
    fn name(&self) -> &'static str {
        "tls"
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
        let mut came_up = false;
        while !rest.is_empty() && !self.closed {
            // rustls takes as much as its buffer holds; what it decrypts is taken out at once,
            // so that its plaintext buffer never fills. 0 taken: its buffer is full of an
            // incomplete record larger than TLS allows.
            let taken = self.conn.read_tls(&mut rest).map_err(|_| LayerError::TooLarge)?;
            let handshaking = self.conn.is_handshaking();
            let state = match self.conn.process_new_packets() {
                Ok(state) => state,
                Err(error) => {
                    let peer = self.peer.map(|p| p.to_string()).unwrap_or_default();
                    match error {
                        // What an operator can act on (a client's certificate expired or is
                        // from another CA) is said at info; scanners' noise stays at debug.
                        rustls::Error::InvalidCertificate(_)
                        | rustls::Error::NoCertificatesPresented => {
                            tracing::info!(peer, %error, "TLS client certificate refused");
                        }
                        _ => tracing::debug!(peer, %error, "TLS refused"),
                    }
                    // rustls queued an alert saying why: the peer gets it before the close.
                    self.flush(down);
                    return Err(if handshaking {
                        LayerError::Handshake
                    } else {
                        LayerError::Protocol
                    });
                }
            };
            self.flush(down);
            let plaintext = state.plaintext_bytes_to_read();
            if plaintext > 0 {
                let mut chunk = BytesMut::zeroed(plaintext);
                self.conn.reader().read_exact(&mut chunk).map_err(|_| LayerError::Protocol)?;
                up.push(chunk);
                came_up = true;
            }
            self.closed = state.peer_has_closed();
            if taken == 0 && !self.closed {
                return Err(LayerError::TooLarge);
            }
        }
        // After close_notify nothing more is read. What came with it (a DISCONNECT, which
        // must reach the engine so that no will is published) goes up first; the socket's end
        // follows. A close_notify alone closes the connection now.
        if self.closed && !came_up {
            return Err(LayerError::PeerClosed);
        }
        Ok(())
    }

    fn write(&mut self, bytes: Bytes, down: &mut Vec<Bytes>) -> Result<(), LayerError> {
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            // Before the handshake ends rustls keeps at most 64 KiB of plaintext; the engine
            // writes nothing before CONNECT, which comes after it.
            let n = self.conn.writer().write(rest).map_err(|_| LayerError::Protocol)?;
            if n == 0 {
                if self.conn.wants_write() {
                    self.flush(down);
                    continue;
                }
                return Err(LayerError::TooLarge);
            }
            rest = &rest[n..];
            self.flush(down);
        }
        Ok(())
    }

    fn close(&mut self, down: &mut Vec<Bytes>) {
        self.conn.send_close_notify();
        self.flush(down);
    }

    fn identify(&self, peer: &mut PeerIdentity) {
        let cn = self
            .conn
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|cert| common_name(cert));
        if self.identity_as_username {
            peer.username.clone_from(&cn);
        }
        peer.certificate_cn = cn;
    }
}

/// One DER item: its tag, its contents and what follows it.
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (bytes, after) = rest.split_at(count);
        rest = after;
        bytes.iter().fold(0usize, |len, &b| (len << 8) | usize::from(b))
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The first common name (OID 2.5.4.3) of a certificate's subject, if it has one. A few lines
/// of DER walking rather than an X.509 crate: this is all the broker reads of a certificate
/// (rustls and webpki verified it).
fn common_name(cert: &[u8]) -> Option<String> {
    const SEQUENCE: u8 = 0x30;
    const SET: u8 = 0x31;
    let (SEQUENCE, cert, _) = der(cert)? else { return None };
    let (SEQUENCE, mut tbs, _) = der(cert)? else { return None };
    // [0] version, when present; then serial, signature algorithm, issuer, validity.
    if tbs.first() == Some(&0xa0) {
        tbs = der(tbs)?.2;
    }
    for _ in 0..4 {
        tbs = der(tbs)?.2;
    }
    let (SEQUENCE, mut names, _) = der(tbs)? else { return None };
    while !names.is_empty() {
        let (SET, mut set, next) = der(names)? else { return None };
        names = next;
        while !set.is_empty() {
            let (SEQUENCE, pair, next) = der(set)? else { return None };
            set = next;
            let (0x06, oid, value) = der(pair)? else { return None };
            if oid == [0x55, 0x04, 0x03] {
                let (tag, value, _) = der(value)?;
                return match tag {
                    // UTF8String, PrintableString, IA5String, TeletexString (ASCII in practice).
                    0x0c | 0x13 | 0x16 | 0x14 => String::from_utf8(value.to_vec()).ok(),
                    // BMPString: UTF-16 big-endian.
                    0x1e => {
                        let units = value.chunks_exact(2).map(|u| u16::from_be_bytes([u[0], u[1]]));
                        char::decode_utf16(units).collect::<Result<String, _>>().ok()
                    }
                    _ => None,
                };
            }
        }
    }
    None
}

#[cfg(test)]
mod tests;
