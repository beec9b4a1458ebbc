//! The TLS layer (`mqtts://`): rustls on the ring provider, TLS 1.2 and 1.3 only, no OpenSSL.
//!
//! The server side drives rustls' unbuffered [`UnbufferedServerConnection`]: records are
//! decrypted in the bytes read, only an incomplete record is kept between reads, and each chunk
//! the engine writes is encrypted into one buffer of exactly its records' size. An idle
//! connection thus holds no buffer; the buffered `ServerConnection` it replaced kept a 4 KiB
//! deframer buffer for the connection's life (docs/adr/0015-byte-stream-layers.md, "Amendment:
//! the server's TLS over the unbuffered connection"). The client side ([`TlsClient`], for the
//! bench) stays on the buffered connection.
//!
//! What a deployment gets wrong is refused at start, naming the file ([`TlsSettings::load`]):
//! an unreadable certificate or key, a file with no PEM item of the kind expected, a key that
//! is not the certificate's.

use core::fmt;
use core::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use bytes::{Buf as _, Bytes, BytesMut};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ServerConnectionData, UnbufferedServerConnection, WebPkiClientVerifier};
use rustls::unbuffered::{ConnectionState, EncodeError, EncodeTlsData, EncryptError};
use rustls::{RootCertStore, ServerConfig};

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
    /// shares, until [`TlsConfig::reload`] reads them again.
    ///
    /// # Errors
    /// A file cannot be read or holds no PEM item of the kind expected, the key does not
    /// match the certificate, a client certificate is required without `ca_file`, or
    /// `identity_as_username` is set without `require_client_cert`.
    pub fn load(&self) -> Result<TlsConfig, TlsSettingsError> {
        Ok(TlsConfig {
            server: Arc::new(RwLock::new(self.server_config()?)),
            settings: Arc::new(self.clone()),
        })
    }

    fn server_config(&self) -> Result<Arc<ServerConfig>, TlsSettingsError> {
        if self.identity_as_username && !self.require_client_cert {
            // A client without a certificate would have no user name but the one it claims.
            return Err(TlsSettingsError::new(
                Path::new("tls.identity_as_username"),
                "needs tls.require_client_cert: every client must then have a certificate, \
                 whose common name is its user name",
            ));
        }
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
        Ok(Arc::new(config))
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

/// The loaded TLS configuration of the listeners, shared by their connections. Clones share
/// one cell: [`TlsConfig::reload`] on any of them changes what every listener's next
/// connection gets.
#[derive(Clone)]
pub struct TlsConfig {
    /// Read once per accepted connection (an uncontended read lock, a reference count),
    /// replaced whole by a reload: a connection keeps the configuration it started with, so
    /// established sessions are not disturbed by a renewed certificate. A `RwLock` rather
    /// than a lock-free swap cell: one read per connection does not justify a dependency.
    server: Arc<RwLock<Arc<ServerConfig>>>,
    settings: Arc<TlsSettings>,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("alpn", &self.settings.alpn)
            .field("identity_as_username", &self.settings.identity_as_username)
            .finish_non_exhaustive()
    }
}

impl TlsConfig {
    /// A new connection's layer, with the configuration loaded last.
    ///
    /// # Errors
    /// rustls refused to start a connection (it does not with a configuration that loaded).
    pub fn layer(&self, peer: Option<SocketAddr>) -> Result<Tls, LayerError> {
        let server = self.server.read().unwrap_or_else(PoisonError::into_inner).clone();
        let conn = UnbufferedServerConnection::new(server).map_err(|_| LayerError::Handshake)?;
        let identity_as_username = self.settings.identity_as_username;
        Ok(Tls {
            conn,
            pending: BytesMut::new(),
            held: Vec::new(),
            peer,
            identity_as_username,
            closed: false,
        })
    }

    /// Reads the files again (a renewed certificate and key, a new client CA), for the
    /// connections accepted from now on; those established keep theirs (the broker's SIGHUP).
    /// The files' paths and the other settings are those of [`TlsSettings::load`].
    ///
    /// # Errors
    /// As [`TlsSettings::load`], naming the file; the configuration in use is kept.
    pub fn reload(&self) -> Result<(), TlsSettingsError> {
        let fresh = self.settings.server_config()?;
        *self.server.write().unwrap_or_else(PoisonError::into_inner) = fresh;
        Ok(())
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
    conn: UnbufferedServerConnection,
    /// The bytes read that rustls has not consumed: the start of a record, or of a handshake
    /// message over several records, that the last read ended in the middle of. Empty, with
    /// no capacity, when the reads end at a record's end: an idle connection holds no buffer.
    pending: BytesMut,
    /// Chunks written before the handshake ended, sent when it does (the engine writes nothing
    /// before CONNECT, which comes after the handshake; the trait allows it), at most
    /// [`MAX_HELD`] bytes.
    held: Vec<Bytes>,
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

/// The most bytes kept unconsumed between reads: a handshake message may span records up to
/// 64 KiB (rustls' limit), plus a record in flight. rustls refuses a larger record at its
/// header; this bounds what a peer that never completes one can make us hold.
const MAX_PENDING: usize = 0x1_0000 + 0x4805;

/// The most bytes held for a handshake to end, as rustls' buffered connection held.
const MAX_HELD: usize = 0x1_0000;

/// Where rustls stopped processing the bytes given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// The handshake needs more bytes.
    Handshaking,
    /// Application data may go out; more bytes may complete a record.
    Ready,
    /// The peer's close_notify came.
    PeerClosed,
}

impl Tls {
    /// Feeds `buf` to rustls until it needs more bytes, consuming from `buf` what rustls is
    /// done with: decrypted application data goes to `up`, handshake records and alerts to
    /// `down` (one chunk per flight). On an error, the alert rustls queued saying why is sent
    /// before the error is returned.
    fn process(
        &mut self,
        buf: &mut BytesMut,
        up: &mut Vec<BytesMut>,
        down: &mut Vec<Bytes>,
    ) -> Result<Stop, rustls::Error> {
        let mut out = Vec::new();
        let result = loop {
            let status = self.conn.process_tls_records(&mut buf[..]);
            let mut discard = status.discard;
            let step = match status.state {
                Err(error) => Err(error),
                Ok(ConnectionState::ReadTraffic(mut traffic)) => loop {
                    match traffic.next_record() {
                        None => break Ok(None),
                        Some(Err(error)) => break Err(error),
                        Some(Ok(record)) => {
                            discard += record.discard;
                            up.push(BytesMut::from(record.payload));
                        }
                    }
                },
                Ok(ConnectionState::EncodeTlsData(mut data)) => {
                    encode(&mut data, &mut out);
                    Ok(None)
                }
                Ok(ConnectionState::TransmitTlsData(transmit)) => {
                    send(&mut out, down);
                    transmit.done();
                    Ok(None)
                }
                Ok(ConnectionState::BlockedHandshake) => Ok(Some(Stop::Handshaking)),
                Ok(ConnectionState::WriteTraffic(_)) => Ok(Some(Stop::Ready)),
                Ok(ConnectionState::PeerClosed | ConnectionState::Closed) => {
                    Ok(Some(Stop::PeerClosed))
                }
                // Early data is not enabled (`max_early_data_size` 0): rustls refuses it.
                Ok(_) => Err(rustls::Error::General("unexpected TLS state".into())),
            };
            buf.advance(discard.min(buf.len()));
            match step {
                Ok(None) => {}
                Ok(Some(stop)) => break Ok(stop),
                Err(error) => break Err(error),
            }
        };
        if result.is_err() {
            self.alert(buf, &mut out);
        }
        send(&mut out, down);
        result
    }

    /// Encodes the alert rustls queued on an error, saying why, into `out`. `buf` is what
    /// rustls left unconsumed: it must see the same bytes again, its handshake joiner holds
    /// positions in them. One call only: rustls hands out queued records before it deframes,
    /// and a second call would deframe the bad record again and queue a second alert. The
    /// alert is the one record queued: rustls sends what it has before deframing, and its
    /// handlers fail before they queue a flight.
    fn alert(&mut self, buf: &mut BytesMut, out: &mut Vec<u8>) {
        if let Ok(ConnectionState::EncodeTlsData(mut data)) =
            self.conn.process_tls_records(&mut buf[..]).state
        {
            encode(&mut data, out);
        }
    }

    /// Encrypts `plain` into one buffer of exactly the records' size.
    fn encrypt(&mut self, plain: &[u8], down: &mut Vec<Bytes>) -> Result<(), LayerError> {
        let Ok(ConnectionState::WriteTraffic(mut traffic)) =
            self.conn.process_tls_records(&mut self.pending[..]).state
        else {
            return Err(LayerError::Protocol);
        };
        // Asked with no room, rustls says how much the records take (and changes nothing).
        let size = match traffic.encrypt(plain, &mut []) {
            Ok(_) => return Ok(()),
            Err(EncryptError::InsufficientSize(e)) => e.required_size,
            Err(_) => return Err(LayerError::Protocol),
        };
        let mut out = vec![0; size];
        let n = traffic.encrypt(plain, &mut out).map_err(|_| LayerError::Protocol)?;
        out.truncate(n);
        down.push(Bytes::from(out));
        Ok(())
    }

    /// The handshake is over: the client's name is checked, and what was written waiting for
    /// it goes out.
    fn handshake_done(&mut self, down: &mut Vec<Bytes>) -> Result<(), LayerError> {
        if self.identity_as_username {
            self.named_client()?;
        }
        for chunk in core::mem::take(&mut self.held) {
            self.encrypt(&chunk, down)?;
        }
        Ok(())
    }
}

/// Appends the handshake record rustls has ready to `out`, sized as rustls asks.
fn encode(data: &mut EncodeTlsData<'_, ServerConnectionData>, out: &mut Vec<u8>) {
    let at = out.len();
    if let Err(EncodeError::InsufficientSize(e)) = data.encode(&mut []) {
        out.resize(at + e.required_size, 0);
        let n = data.encode(&mut out[at..]).unwrap_or(0);
        out.truncate(at + n);
    }
}

/// `out`, if not empty, as one chunk for the socket.
fn send(out: &mut Vec<u8>, down: &mut Vec<Bytes>) {
    if !out.is_empty() {
        down.push(Bytes::from(core::mem::take(out)));
    }
}

impl Tls {
    /// The client certificate's common name; a handshake with `identity_as_username` that
    /// verified a certificate without one is refused, as Mosquitto refuses such a client
    /// (there would be no user name but the one the client claims).
    fn named_client(&self) -> Result<(), LayerError> {
        if self.common_name().is_some() {
            return Ok(());
        }
        let peer = self.peer.map(|p| p.to_string()).unwrap_or_default();
        tracing::info!(
            peer,
            "TLS client certificate refused: no common name (identity_as_username)"
        );
        Err(LayerError::Handshake)
    }

    fn common_name(&self) -> Option<String> {
        let chain = self.conn.peer_certificates()?;
        common_name(chain.first()?)
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
        // rustls decrypts in the bytes read; only a record they end in the middle of is kept.
        let owned = !self.pending.is_empty();
        let mut buf = if owned {
            let mut pending = core::mem::take(&mut self.pending);
            pending.extend_from_slice(&bytes);
            pending
        } else {
            bytes
        };
        let given = buf.len();
        let handshaking = self.conn.is_handshaking();
        let before = up.len();
        let stop = match self.process(&mut buf, up, down) {
            Ok(stop) => stop,
            Err(error) => {
                let peer = self.peer.map(|p| p.to_string()).unwrap_or_default();
                match error {
                    // What an operator can act on (a client's certificate expired or is from
                    // another CA) is said at info; scanners' noise stays at debug.
                    rustls::Error::InvalidCertificate(_)
                    | rustls::Error::NoCertificatesPresented => {
                        tracing::info!(peer, %error, "TLS client certificate refused");
                    }
                    _ => tracing::debug!(peer, %error, "TLS refused"),
                }
                return Err(if handshaking { LayerError::Handshake } else { LayerError::Protocol });
            }
        };
        if stop == Stop::PeerClosed {
            self.closed = true;
        } else if buf.len() > MAX_PENDING {
            return Err(LayerError::TooLarge);
        } else if !buf.is_empty() {
            // A record arriving in many reads grows one buffer of ours; otherwise the rest is
            // copied out, so that neither the runtime's read buffer nor a large one of ours
            // stays alive for a few bytes of it.
            self.pending = if owned && buf.len() == given { buf } else { BytesMut::from(&buf[..]) };
        }
        if handshaking && !self.conn.is_handshaking() {
            self.handshake_done(down)?;
        }
        // After close_notify nothing more is read. What came with it (a DISCONNECT, which
        // must reach the engine so that no will is published) goes up first; the socket's end
        // follows. A close_notify alone closes the connection now.
        if self.closed && up.len() == before {
            return Err(LayerError::PeerClosed);
        }
        Ok(())
    }

    fn write(&mut self, bytes: Bytes, down: &mut Vec<Bytes>) -> Result<(), LayerError> {
        if bytes.is_empty() {
            return Ok(());
        }
        if self.conn.is_handshaking() {
            if self.held.iter().map(Bytes::len).sum::<usize>() + bytes.len() > MAX_HELD {
                return Err(LayerError::TooLarge);
            }
            self.held.push(bytes);
            return Ok(());
        }
        self.encrypt(&bytes, down)
    }

    fn close(&mut self, down: &mut Vec<Bytes>) {
        let Ok(ConnectionState::WriteTraffic(mut traffic)) =
            self.conn.process_tls_records(&mut self.pending[..]).state
        else {
            return;
        };
        if let Err(EncryptError::InsufficientSize(e)) = traffic.queue_close_notify(&mut []) {
            let mut out = vec![0; e.required_size];
            if let Ok(n) = traffic.queue_close_notify(&mut out) {
                out.truncate(n);
                down.push(Bytes::from(out));
            }
        }
    }

    fn identify(&self, peer: &mut PeerIdentity) {
        let cn = self.common_name();
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

mod client;
#[cfg(test)]
mod tests;

pub use client::{TlsClient, TlsClientConfig};
