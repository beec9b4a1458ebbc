//! The socket layer, shaped like CompositeOS's netmgr: blocking calls only, at most 2 KiB per
//! read, no readiness API, no timeouts.

use core::net::SocketAddr;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};

/// The most a single [`Transport::read`] returns, and the most the writer hands to one
/// [`Transport::write`]: the size of netmgr's shared-memory buffers.
pub const CHUNK: usize = 2048;

/// Blocking stream sockets, as netmgr offers them to a CompositeOS component.
///
/// The runtime calls these from many threads at once (one accept thread per listener, one reader
/// and one writer thread per connection, and whichever thread steps the connection's shard, for
/// [`try_write`](Transport::try_write)) and never asks whether a call would block: there is no
/// poll, select or epoll, and no socket timeout. A call blocks until it can complete or fails,
/// except `try_write`, which returns instead of waiting.
///
/// # Mapping onto netmgr
///
/// netmgr is a server component reached by synchronous RPC (Composite's `sinv`/`asnd` thread
/// migration); each connection's data crosses a pair of shared-memory pages of 2 KiB. A
/// netmgr-backed implementation would be:
///
/// | method | netmgr |
/// |---|---|
/// | [`bind`](Transport::bind) | `netmgr_bind` + `netmgr_listen` RPCs; the listener is the returned descriptor |
/// | [`local_addr`](Transport::local_addr) | remember the address asked for, or a `getsockname`-like RPC when the port was 0 |
/// | [`accept`](Transport::accept) | the blocking `netmgr_accept` RPC: the calling thread migrates into netmgr and sleeps there until a peer arrives |
/// | [`try_clone`](Transport::try_clone) | copy the descriptor (an integer): the reader and the writer thread of a connection each hold one, and its shard a third for `try_write`; each thread maps its own shared-memory page |
/// | [`read`](Transport::read) | the blocking `netmgr_read` RPC, which copies at most 2 KiB into the caller's shared page; this method copies it out into `buf` |
/// | [`write`](Transport::write) | copy at most 2 KiB into the shared page, then the blocking `netmgr_write` RPC; returns how much netmgr took |
/// | [`try_write`](Transport::try_write) | the same with a don't-wait flag, if netmgr has one; the default (nothing taken) keeps every send on the writer thread |
/// | [`shutdown`](Transport::shutdown) | `netmgr_shutdown`/`close` on the descriptor: a thread blocked in `netmgr_read` on it returns 0 |
/// | [`unblock_accept`](Transport::unblock_accept) | close the listening descriptor, so a thread blocked in `netmgr_accept` returns an error; or connect to it, as [`StdTransport`] does |
///
/// The methods are associated functions without `self`: netmgr is a process-wide service, and
/// the runtime's threads are generic over the transport type.
pub trait Transport: 'static {
    /// A listening socket, shared by reference with the thread that accepts on it.
    type Listener: Send + Sync + 'static;
    /// A connected stream socket.
    type Stream: Send + 'static;

    /// Binds a listening socket to `addr` (port 0: any free port) and starts listening.
    ///
    /// # Errors
    /// The address is taken or not local.
    fn bind(addr: SocketAddr) -> io::Result<Self::Listener>;

    /// The address the listener is bound to, with the real port when 0 was asked for.
    ///
    /// # Errors
    /// As the platform's `getsockname`.
    fn local_addr(listener: &Self::Listener) -> io::Result<SocketAddr>;

    /// Waits for the next connection, blocking the calling thread.
    ///
    /// # Errors
    /// The listener failed or was unblocked by [`Transport::unblock_accept`].
    fn accept(listener: &Self::Listener) -> io::Result<(Self::Stream, SocketAddr)>;

    /// Makes a blocked [`Transport::accept`] on this listener return, so that its thread can
    /// notice that the broker is shutting down.
    ///
    /// # Errors
    /// The listener could not be reached.
    fn unblock_accept(listener: &Self::Listener) -> io::Result<()>;

    /// A second handle on the same connection, for the writer thread.
    ///
    /// # Errors
    /// Out of descriptors.
    fn try_clone(stream: &Self::Stream) -> io::Result<Self::Stream>;

    /// Reads at most [`CHUNK`] bytes, blocking until at least one is there; `Ok(0)` when the
    /// peer closed the connection or [`Transport::shutdown`] was called on it.
    ///
    /// # Errors
    /// The connection failed.
    fn read(stream: &mut Self::Stream, buf: &mut [u8; CHUNK]) -> io::Result<usize>;

    /// Writes some of `bytes` (the runtime never passes more than [`CHUNK`]), blocking until at
    /// least one byte is taken; returns how many were.
    ///
    /// # Errors
    /// The connection failed.
    fn write(stream: &mut Self::Stream, bytes: &[u8]) -> io::Result<usize>;

    /// Writes some of `bytes` (never more than [`CHUNK`]) if the connection takes them without
    /// waiting, and returns how many it took; [`io::ErrorKind::WouldBlock`] when it would have
    /// to wait for the first. The thread that ran an engine step writes its sends with this, so
    /// that the connection's writer thread need not be woken; whatever is not taken goes to the
    /// writer thread, which writes it with [`Transport::write`].
    ///
    /// The default takes nothing: every send then goes through the writer thread, as for a
    /// netmgr without a non-blocking write. On netmgr this would be a `netmgr_write` RPC with a
    /// flag telling netmgr to return rather than wait when its buffers are full.
    ///
    /// # Errors
    /// `WouldBlock` when nothing can be written now; otherwise the connection failed.
    fn try_write(stream: &mut Self::Stream, bytes: &[u8]) -> io::Result<usize> {
        let _ = (stream, bytes);
        Err(io::ErrorKind::WouldBlock.into())
    }

    /// Shuts the connection down both ways: the peer sees the end of the stream and a read
    /// blocked on any handle of it returns. Errors are ignored (the connection may be gone).
    fn shutdown(stream: &Self::Stream);
}

/// Flags for a write that does not wait (and raises no SIGPIPE where that can be said per call).
#[cfg(any(target_os = "linux", target_os = "android"))]
const DONTWAIT: libc::c_int = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
#[cfg(all(unix, not(any(target_os = "linux", target_os = "android"))))]
const DONTWAIT: libc::c_int = libc::MSG_DONTWAIT;

/// [`Transport`] over `std::net`: blocking TCP sockets with the runtime kit's options
/// (`TCP_NODELAY`, `SO_KEEPALIVE`: `configure_accepted`), no timeouts; on Unix,
/// [`Transport::try_write`] is a `send` with `MSG_DONTWAIT` (through `socket2`, no `unsafe`).
#[derive(Debug, Clone, Copy, Default)]
pub struct StdTransport;

impl Transport for StdTransport {
    type Listener = TcpListener;
    type Stream = TcpStream;

    fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
        TcpListener::bind(addr)
    }

    fn local_addr(listener: &TcpListener) -> io::Result<SocketAddr> {
        listener.local_addr()
    }

    fn accept(listener: &TcpListener) -> io::Result<(TcpStream, SocketAddr)> {
        let (stream, peer) = listener.accept()?;
        musqratt_kit::configure_accepted(&stream);
        Ok((stream, peer))
    }

    fn unblock_accept(listener: &TcpListener) -> io::Result<()> {
        // std offers no way to close a listener another thread is blocked on: connect to it.
        let mut addr = listener.local_addr()?;
        if addr.ip().is_unspecified() {
            let loopback: core::net::IpAddr = match addr {
                SocketAddr::V4(_) => core::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => core::net::Ipv6Addr::LOCALHOST.into(),
            };
            addr.set_ip(loopback);
        }
        TcpStream::connect(addr).map(drop)
    }

    fn try_clone(stream: &TcpStream) -> io::Result<TcpStream> {
        stream.try_clone()
    }

    fn read(stream: &mut TcpStream, buf: &mut [u8; CHUNK]) -> io::Result<usize> {
        loop {
            match stream.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => return other,
            }
        }
    }

    fn write(stream: &mut TcpStream, bytes: &[u8]) -> io::Result<usize> {
        loop {
            match stream.write(bytes) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => return other,
            }
        }
    }

    /// `send` with `MSG_DONTWAIT` on the blocking socket (the other handles of it stay
    /// blocking: the flag is for this call only, unlike `O_NONBLOCK`).
    #[cfg(unix)]
    fn try_write(stream: &mut TcpStream, bytes: &[u8]) -> io::Result<usize> {
        socket2::SockRef::from(&*stream).send_with_flags(bytes, DONTWAIT)
    }

    fn shutdown(stream: &TcpStream) {
        let _ = stream.shutdown(Shutdown::Both);
    }
}
