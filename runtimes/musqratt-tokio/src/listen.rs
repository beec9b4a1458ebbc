//! Listening sockets: one per shard and address, sharing the port with `SO_REUSEPORT`.

use core::net::SocketAddr;
use std::io;
use std::net::TcpListener;

use socket2::{Domain, Protocol, Socket, Type};

/// Pending connections the kernel keeps per listening socket.
const BACKLOG: i32 = 1024;

/// Binds every address once per shard. Returns the listeners of each shard and the bound
/// addresses (port 0 resolved: every shard gets the port the first bind picked).
pub(crate) fn bind_all(
    addrs: &[SocketAddr],
    shards: usize,
) -> io::Result<(Vec<Vec<TcpListener>>, Vec<SocketAddr>)> {
    let mut per_shard: Vec<Vec<TcpListener>> = (0..shards).map(|_| Vec::new()).collect();
    let mut bound = Vec::with_capacity(addrs.len());
    for addr in addrs {
        if addr.port() != 0 {
            probe(*addr).map_err(|e| annotate(e, *addr))?;
        }
        let first = bind(*addr).map_err(|e| annotate(e, *addr))?;
        let local = first.local_addr()?;
        bound.push(local);
        for listeners in per_shard.iter_mut().skip(1) {
            listeners.push(bind_again(&first, local).map_err(|e| annotate(e, local))?);
        }
        per_shard[0].push(first);
    }
    Ok((per_shard, bound))
}

fn annotate(error: io::Error, addr: SocketAddr) -> io::Error {
    io::Error::new(error.kind(), format!("cannot listen on {addr}: {error}"))
}

/// Fails when something already listens on `addr`. `SO_REUSEPORT` would otherwise let a second
/// broker (of the same user) share the port with the first, each getting half the clients.
fn probe(addr: SocketAddr) -> io::Result<()> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())
}

fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    #[cfg(all(
        unix,
        not(any(target_os = "solaris", target_os = "illumos", target_os = "cygwin"))
    ))]
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// Another listener on the same address: its own socket where `SO_REUSEPORT` lets the kernel
/// balance connections between them, otherwise a duplicate of the first.
fn bind_again(first: &TcpListener, addr: SocketAddr) -> io::Result<TcpListener> {
    #[cfg(all(unix, not(any(target_os = "solaris", target_os = "illumos", target_os = "cygwin"))))]
    {
        let _ = first;
        bind(addr)
    }
    #[cfg(not(all(
        unix,
        not(any(target_os = "solaris", target_os = "illumos", target_os = "cygwin"))
    )))]
    {
        let _ = addr;
        first.try_clone()
    }
}
