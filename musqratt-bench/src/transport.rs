//! Where and how the bench's clients connect: the broker URL's transport (`mqtt://`,
//! `mqtts://`, `ws://`, `wss://`), and the one connection type of each kind every scenario uses
//! (blocking for `latency`, tokio for the others), so that the same scenarios measure every
//! transport.
//!
//! TLS and WebSocket are the runtime kit's sans-IO layers (`TlsClient`, `WsClient`) in a
//! [`Stack`], the same code the broker's listeners run, from the socket up: `mqtts` is
//! `[TlsClient]`, `ws` is `[WsClient]`, `wss` is `[TlsClient, WsClient]`. A layered connection's
//! reader and writers share its stack behind a mutex held from encoding to the socket write:
//! TLS records must reach the socket in the order they were encrypted, and what a read answers
//! (a handshake flight, a pong) goes out between them. A plain `mqtt://` connection has no
//! stack and no mutex: its reads and writes are the socket's, as before layers existed.

use core::time::Duration;
use std::io::{self, Read, Write};
use std::net::TcpStream as StdStream;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{Context, bail};
use bytes::{Bytes, BytesMut};
use musqratt_kit::Stack;
use musqratt_kit::layer::tls::TlsClientConfig;
use musqratt_kit::layer::ws::WsClient;
use musqratt_kit::layer::{LayerError, StackError, StackRead, StreamLayer};
use musqratt_proto::mqtt::{Decoder, Packet};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::wire::{Login, connect, connect_session, decoder, subscribe};

/// The URL's transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    Mqtt,
    Mqtts,
    Ws,
    Wss,
}

/// A broker to connect to: its address, resolved once so that every connection goes to the
/// same one, and what its transport needs (server name, WebSocket path, trusted CA).
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) addr: String,
    pub(crate) scheme: Scheme,
    /// The URL's host: the TLS server name (a DNS name or an IP address).
    host: String,
    /// `host:port` as the URL has it: the WebSocket `Host` header.
    authority: String,
    /// The WebSocket path (`/mqtt` when the URL has none).
    path: String,
    tls: Option<TlsClientConfig>,
}

impl Target {
    /// `mqtt://`, `mqtts://`, `ws://` or `wss://` `[user:password@]host[:port][/path]` (ports
    /// 1883, 8883, 8083, 8084 by default, as the broker's listeners). `cafile` is the CA (PEM) the broker's certificate is
    /// checked against, needed by `mqtts` and `wss`.
    pub(crate) fn parse(url: &str, cafile: Option<&Path>) -> anyhow::Result<Self> {
        let (scheme, rest) = url.split_once("://").unwrap_or(("mqtt", url));
        let (scheme, port) = match scheme {
            "mqtt" | "tcp" => (Scheme::Mqtt, 1883),
            "mqtts" => (Scheme::Mqtts, 8883),
            "ws" => (Scheme::Ws, 8083),
            "wss" => (Scheme::Wss, 8084),
            _ => bail!("unsupported URL {url}: use mqtt://, mqtts://, ws:// or wss://host:port"),
        };
        let (authority, path) = rest.find('/').map_or((rest, ""), |at| rest.split_at(at));
        let authority = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
        anyhow::ensure!(!authority.is_empty(), "no host in {url}");
        let (host, with_port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (host, after) = bracketed.split_once(']').with_context(|| format!("bad {url}"))?;
            let with_port =
                if after.is_empty() { format!("[{host}]:{port}") } else { authority.to_owned() };
            (host, with_port)
        } else if let Some((host, _)) = authority.rsplit_once(':') {
            (host, authority.to_owned())
        } else {
            (authority, format!("{authority}:{port}"))
        };
        use std::net::ToSocketAddrs;
        let addr = with_port
            .to_socket_addrs()
            .with_context(|| format!("resolving {with_port}"))?
            .next()
            .with_context(|| format!("no address for {with_port}"))?;
        let tls = match scheme {
            Scheme::Mqtts | Scheme::Wss => {
                let cafile = cafile.with_context(|| {
                    format!(
                        "{url} needs --cafile PATH: the CA certificate (PEM) that signed the \
                         broker's certificate"
                    )
                })?;
                Some(TlsClientConfig::from_ca_file(cafile)?)
            }
            Scheme::Mqtt | Scheme::Ws => None,
        };
        Ok(Self {
            addr: addr.to_string(),
            scheme,
            host: host.to_owned(),
            authority: authority.to_owned(),
            path: if path.is_empty() { "/mqtt".to_owned() } else { path.to_owned() },
            tls,
        })
    }

    /// Plain TCP to `addr` (the `floor` relay).
    pub(crate) fn plain(addr: String) -> Self {
        Self {
            host: String::new(),
            authority: addr.clone(),
            addr,
            scheme: Scheme::Mqtt,
            path: String::new(),
            tls: None,
        }
    }

    /// A new connection's layers; `None` for plain TCP.
    fn stack(&self) -> anyhow::Result<Option<Stack>> {
        let tls = || -> anyhow::Result<Box<dyn StreamLayer>> {
            let config = self.tls.as_ref().context("no TLS configuration")?;
            let layer = config
                .layer(&self.host)
                .map_err(|_| anyhow::anyhow!("{:?} is not a TLS server name", self.host))?;
            Ok(Box::new(layer))
        };
        let ws = || Box::new(WsClient::new(self.authority.clone(), self.path.clone()));
        let layers: Vec<Box<dyn StreamLayer>> = match self.scheme {
            Scheme::Mqtt => return Ok(None),
            Scheme::Mqtts => vec![tls()?],
            Scheme::Ws => vec![ws()],
            Scheme::Wss => vec![tls()?, ws()],
        };
        Ok(Some(Stack::new(layers, None)))
    }
}

/// The chunks a stack gave for the socket as one buffer: one write, one segment with
/// TCP_NODELAY (a WebSocket upgrade request and the first frame, say).
pub(crate) fn joined(chunks: &mut Vec<Bytes>) -> Bytes {
    match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.pop().unwrap_or_default(),
        _ => {
            let mut all = BytesMut::with_capacity(chunks.iter().map(Bytes::len).sum());
            for chunk in chunks.drain(..) {
                all.extend_from_slice(&chunk);
            }
            all.freeze()
        }
    }
}

/// Appends what a stack read decoded to the decoder's buffer: `false` when the broker closed
/// the layer (close_notify, a close frame), an error when a layer gave up.
pub(crate) fn decoded(read: StackRead, buf: &mut BytesMut) -> io::Result<bool> {
    if let Some(data) = read.data {
        buf.extend_from_slice(&data);
    }
    match read.end {
        None => Ok(true),
        Some(StackError { error: LayerError::PeerClosed, .. }) => Ok(false),
        Some(error) => Err(io::Error::other(error)),
    }
}

// ---- blocking sockets (latency and floor) ----

/// A blocking connection with its decoder state.
pub(crate) struct SyncConn {
    stream: StdStream,
    writer: SyncWriter,
    decoder: Decoder,
    pub(crate) buf: BytesMut,
}

impl SyncConn {
    /// Connects (TCP_NODELAY), sends CONNECT and waits for a successful CONNACK (the TLS
    /// handshake and the WebSocket upgrade happen on the way).
    pub(crate) fn connect(
        target: &Target,
        client_id: &str,
        keep_alive: u16,
        login: &Login,
    ) -> anyhow::Result<Self> {
        let addr = &target.addr;
        let stream = StdStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let writer = SyncWriter::new(stream.try_clone()?, target.stack()?);
        let mut conn =
            Self { stream, writer, decoder: decoder(), buf: BytesMut::with_capacity(64 * 1024) };
        let mut out = BytesMut::new();
        connect(&mut out, client_id, keep_alive, login);
        conn.writer.write_all(&out)?;
        match conn.recv()? {
            Packet::ConnAck(ack) if !ack.reason_code.is_error() => Ok(conn),
            other => bail!("expected a successful CONNACK, got {other:?}"),
        }
    }

    /// Subscribes to one filter and waits for SUBACK.
    pub(crate) fn subscribe(&mut self, filter: &str, qos: u8) -> anyhow::Result<()> {
        let mut out = BytesMut::new();
        subscribe(&mut out, 1, filter, qos);
        self.writer.write_all(&out)?;
        match self.recv()? {
            Packet::SubAck(ack) if ack.reason_codes.iter().all(|c| !c.is_error()) => Ok(()),
            other => bail!("expected a successful SUBACK, got {other:?}"),
        }
    }

    /// Another writer to this connection (for another thread).
    pub(crate) fn writer(&self) -> io::Result<SyncWriter> {
        self.writer.try_clone()
    }

    /// Writes `bytes` (encoded by the layers, if any).
    pub(crate) fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.writer.write_all(bytes)
    }

    /// How long [`Self::fill`] waits for the broker.
    pub(crate) fn set_read_timeout(&self, timeout: Duration) -> io::Result<()> {
        self.stream.set_read_timeout(Some(timeout))
    }

    /// The next packet (blocking, within the read timeout).
    pub(crate) fn recv(&mut self) -> anyhow::Result<Packet> {
        loop {
            if let Some(packet) = self.decoder.decode(&mut self.buf)? {
                return Ok(packet);
            }
            if !self.fill()? {
                bail!("connection closed by the broker");
            }
        }
    }

    /// Decodes one packet already buffered.
    pub(crate) fn try_decode(&mut self) -> anyhow::Result<Option<Packet>> {
        Ok(self.decoder.decode(&mut self.buf)?)
    }

    /// Reads what is available into the buffer: `false` on end of stream. A read timeout is
    /// returned as an error of kind `WouldBlock`/`TimedOut`. On a layered connection a read
    /// may decode to nothing yet (handshake bytes, half a record): `true`, and the buffer as
    /// it was.
    pub(crate) fn fill(&mut self) -> io::Result<bool> {
        let mut chunk = [0u8; 16 * 1024];
        self.writer.read(&self.stream, &mut chunk, &mut self.buf)
    }
}

/// The writing side of a [`SyncConn`], for a thread of its own.
pub(crate) struct SyncWriter {
    stream: StdStream,
    /// The connection's layers, shared with its reader; `None` for plain TCP.
    stack: Option<Arc<Mutex<Stack>>>,
}

impl SyncWriter {
    /// A connection's writer: `stream` (a clone of the socket), and its layers if any.
    pub(crate) fn new(stream: StdStream, stack: Option<Stack>) -> Self {
        Self { stream, stack: stack.map(|stack| Arc::new(Mutex::new(stack))) }
    }

    /// Reads what is available from `stream` (this connection's socket) onto `plain`, through
    /// the layers if any, with `chunk` as the read buffer: `false` at the end of the stream. A
    /// read may decode to nothing yet (handshake bytes, half a record): `true`, `plain` as it
    /// was. What the layers answer (a handshake flight, a pong) is written under the stack's
    /// lock, before anything a writer encrypts after it.
    pub(crate) fn read(
        &self,
        mut stream: &StdStream,
        chunk: &mut [u8],
        plain: &mut BytesMut,
    ) -> io::Result<bool> {
        let n = stream.read(chunk)?;
        let Some(stack) = &self.stack else {
            plain.extend_from_slice(&chunk[..n]);
            return Ok(n > 0);
        };
        if n == 0 {
            return Ok(false);
        }
        let mut answers = Vec::new();
        let mut stack = stack.lock().unwrap_or_else(PoisonError::into_inner);
        let read = stack.read(BytesMut::from(&chunk[..n]), |c| answers.push(c));
        stream.write_all(&joined(&mut answers))?;
        drop(stack);
        decoded(read, plain)
    }

    /// Writes `bytes`: straight to the socket on plain TCP; through the layers otherwise,
    /// holding the stack's lock until the socket took the result.
    pub(crate) fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        let Some(stack) = &self.stack else { return self.stream.write_all(bytes) };
        let mut chunks = Vec::new();
        let mut stack = stack.lock().unwrap_or_else(PoisonError::into_inner);
        stack.write(Bytes::copy_from_slice(bytes), |c| chunks.push(c)).map_err(io::Error::other)?;
        self.stream.write_all(&joined(&mut chunks))
    }

    /// Another writer to the same connection.
    pub(crate) fn try_clone(&self) -> io::Result<Self> {
        Ok(Self { stream: self.stream.try_clone()?, stack: self.stack.clone() })
    }
}

// ---- tokio sockets (throughput, fan-out, conns) ----

/// A layered async connection's stack and write half: one lock, held from encoding to the end
/// of the socket write.
pub(crate) struct Layered {
    stack: Stack,
    write: OwnedWriteHalf,
    chunks: Vec<Bytes>,
}

impl Layered {
    async fn send(&mut self, bytes: Bytes) -> io::Result<()> {
        let chunks = &mut self.chunks;
        self.stack.write(bytes, |c| chunks.push(c)).map_err(io::Error::other)?;
        self.write.write_all(&joined(chunks)).await
    }
}

/// An async connection with its decoder state.
pub(crate) struct AsyncConn {
    reader: AsyncReader,
    writer: AsyncWriter,
}

impl AsyncConn {
    /// Connects (TCP_NODELAY), sends CONNECT and waits for a successful CONNACK (the TLS
    /// handshake and the WebSocket upgrade happen on the way).
    pub(crate) async fn connect(
        target: &Target,
        client_id: &str,
        keep_alive: u16,
        login: &Login,
    ) -> anyhow::Result<Self> {
        let mut out = BytesMut::new();
        connect(&mut out, client_id, keep_alive, login);
        Ok(Self::connect_with(target, &out).await?.0)
    }

    /// As [`Self::connect`], with Clean Session as `clean` says; also returns the CONNACK's
    /// session present flag.
    pub(crate) async fn connect_session(
        target: &Target,
        client_id: &str,
        login: &Login,
        clean: bool,
    ) -> anyhow::Result<(Self, bool)> {
        let mut out = BytesMut::new();
        connect_session(&mut out, client_id, crate::wire::KEEP_ALIVE, login, clean);
        Self::connect_with(target, &out).await
    }

    /// As [`Self::connect_session`] with the keep alive given, from the local address
    /// `source` if any (port chosen by the kernel): many loopback connections need several
    /// source addresses, as one has only the ~28k ports of the ephemeral range.
    pub(crate) async fn connect_from(
        target: &Target,
        source: Option<core::net::IpAddr>,
        client_id: &str,
        keep_alive: u16,
        login: &Login,
        clean: bool,
    ) -> anyhow::Result<(Self, bool)> {
        let mut out = BytesMut::new();
        connect_session(&mut out, client_id, keep_alive, login, clean);
        let Some(source) = source else { return Self::connect_with(target, &out).await };
        let addr: core::net::SocketAddr =
            target.addr.parse().with_context(|| format!("bad address {}", target.addr))?;
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket
            .bind(core::net::SocketAddr::new(source, 0))
            .with_context(|| format!("binding to {source}"))?;
        let stream = socket.connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
        Self::handshake(target, stream, &out).await
    }

    /// Connects and sends `connect` (a CONNECT packet); the CONNACK's session present flag.
    async fn connect_with(target: &Target, connect: &[u8]) -> anyhow::Result<(Self, bool)> {
        let addr = &target.addr;
        let stream =
            TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
        Self::handshake(target, stream, connect).await
    }

    /// Sets up a connected socket's layers, sends `connect` and waits for a successful CONNACK.
    async fn handshake(
        target: &Target,
        stream: TcpStream,
        connect: &[u8],
    ) -> anyhow::Result<(Self, bool)> {
        stream.set_nodelay(true)?;
        let (read, write) = stream.into_split();
        let (layered, writer) = match target.stack()? {
            None => (None, AsyncWriter::Plain(write)),
            Some(stack) => {
                let layered =
                    Arc::new(tokio::sync::Mutex::new(Layered { stack, write, chunks: Vec::new() }));
                (Some(layered.clone()), AsyncWriter::Layered(layered))
            }
        };
        let reader = AsyncReader {
            read,
            decoder: decoder(),
            buf: BytesMut::with_capacity(4096),
            layered,
            raw: BytesMut::new(),
        };
        let mut conn = Self { reader, writer };
        conn.writer.write_all(connect).await?;
        match conn.recv_timeout().await? {
            Packet::ConnAck(ack) if !ack.reason_code.is_error() => Ok((conn, ack.session_present)),
            other => bail!("expected a successful CONNACK, got {other:?}"),
        }
    }

    /// Subscribes to one filter and waits for SUBACK.
    pub(crate) async fn subscribe(&mut self, filter: &str, qos: u8) -> anyhow::Result<()> {
        let mut out = BytesMut::new();
        subscribe(&mut out, 1, filter, qos);
        self.writer.write_all(&out).await?;
        match self.recv_timeout().await? {
            Packet::SubAck(ack) if ack.reason_codes.iter().all(|c| !c.is_error()) => Ok(()),
            other => bail!("expected a successful SUBACK, got {other:?}"),
        }
    }

    async fn recv_timeout(&mut self) -> anyhow::Result<Packet> {
        tokio::time::timeout(Duration::from_secs(10), self.recv())
            .await
            .context("no answer from the broker within 10 s")?
    }

    /// The next packet.
    pub(crate) async fn recv(&mut self) -> anyhow::Result<Packet> {
        loop {
            if let Some(packet) = self.reader.try_decode()? {
                return Ok(packet);
            }
            if !self.reader.fill().await? {
                bail!("connection closed by the broker");
            }
        }
    }

    /// Writes `bytes` (encoded by the layers, if any).
    pub(crate) async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.writer.write_all(bytes).await
    }

    /// Decodes one packet already buffered.
    pub(crate) fn try_decode(&mut self) -> anyhow::Result<Option<Packet>> {
        self.reader.try_decode()
    }

    /// Reads what is available: `false` on end of stream. Cancel-safe (see
    /// [`AsyncReader::fill`]).
    pub(crate) async fn fill(&mut self) -> io::Result<bool> {
        self.reader.fill().await
    }

    /// Puts the halves of [`Self::into_split`] back together.
    pub(crate) fn from_split(reader: AsyncReader, writer: AsyncWriter) -> Self {
        Self { reader, writer }
    }

    /// Splits into the decoder half and the write half.
    pub(crate) fn into_split(self) -> (AsyncReader, AsyncWriter) {
        (self.reader, self.writer)
    }
}

/// The read half of an [`AsyncConn`].
pub(crate) struct AsyncReader {
    read: OwnedReadHalf,
    decoder: Decoder,
    buf: BytesMut,
    /// The connection's layers and write half, shared with its writer; `None` for plain TCP.
    layered: Option<Arc<tokio::sync::Mutex<Layered>>>,
    /// Socket bytes not yet through the layers (layered connections only).
    raw: BytesMut,
}

impl AsyncReader {
    /// Decodes one packet already buffered.
    pub(crate) fn try_decode(&mut self) -> anyhow::Result<Option<Packet>> {
        Ok(self.decoder.decode(&mut self.buf)?)
    }

    /// Reads what is available: `false` on end of stream. Cancel-safe on plain TCP; on a
    /// layered connection up to the layers' answers (a pong, a TLS key update), which a
    /// cancelled read may leave half written: the scenarios cancel reads only when they stop.
    pub(crate) async fn fill(&mut self) -> io::Result<bool> {
        let Some(layered) = &self.layered else {
            if self.buf.capacity() - self.buf.len() < 8 * 1024 {
                self.buf.reserve(64 * 1024);
            }
            return Ok(self.read.read_buf(&mut self.buf).await? > 0);
        };
        // Bytes read before a cancellation are kept in `raw` and go through the layers first.
        if self.raw.is_empty() {
            self.raw.reserve(16 * 1024);
            if self.read.read_buf(&mut self.raw).await? == 0 {
                return Ok(false);
            }
        }
        let mut layered = layered.lock().await;
        let Layered { stack, write, chunks } = &mut *layered;
        let read = stack.read(self.raw.split(), |c| chunks.push(c));
        if !chunks.is_empty() {
            write.write_all(&joined(chunks)).await?;
        }
        drop(layered);
        decoded(read, &mut self.buf)
    }
}

/// The write half of an [`AsyncConn`]: the socket's on plain TCP, the layers' otherwise.
pub(crate) enum AsyncWriter {
    Plain(OwnedWriteHalf),
    Layered(Arc<tokio::sync::Mutex<Layered>>),
}

impl AsyncWriter {
    /// Writes `bytes`: straight to the socket on plain TCP; through the layers otherwise,
    /// holding the connection's lock until the socket took the result, so that the records of
    /// one connection go out in the order they were encrypted.
    pub(crate) async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Self::Plain(write) => write.write_all(bytes).await,
            Self::Layered(layered) => {
                layered.lock().await.send(Bytes::copy_from_slice(bytes)).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = Target::parse("mqtt://u:p@127.0.0.1", None).unwrap();
        assert_eq!((t.addr.as_str(), t.scheme), ("127.0.0.1:1883", Scheme::Mqtt));
        assert!(t.stack().unwrap().is_none());
        let t = Target::parse("ws://127.0.0.1:8083", None).unwrap();
        assert_eq!((t.addr.as_str(), t.path.as_str()), ("127.0.0.1:8083", "/mqtt"));
        assert_eq!(t.authority, "127.0.0.1:8083");
        let t = Target::parse("ws://u@[::1]/x/y", None).unwrap();
        assert_eq!(
            (t.addr.as_str(), t.host.as_str(), t.path.as_str()),
            ("[::1]:8083", "::1", "/x/y")
        );
        let error = Target::parse("mqtts://127.0.0.1", None).unwrap_err();
        assert!(format!("{error:#}").contains("--cafile"), "{error:#}");
        let error = Target::parse("wss://127.0.0.1", None).unwrap_err();
        assert!(format!("{error:#}").contains("--cafile"), "{error:#}");
        let missing = Path::new("/nonexistent/ca.pem");
        let error = Target::parse("mqtts://127.0.0.1", Some(missing)).unwrap_err();
        assert!(format!("{error:#}").contains("/nonexistent/ca.pem"), "{error:#}");
        assert!(Target::parse("http://127.0.0.1", None).is_err());
    }
}
