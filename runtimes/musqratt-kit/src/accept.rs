//! What every runtime does with an accepted socket, and with a failed accept.

use core::time::Duration;
use std::io;
use std::os::fd::AsFd;

/// The shortest interval between two warnings that descriptors ran out.
pub const SHORTAGE_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Sets the options every accepted MQTT connection gets: `TCP_NODELAY` (a PUBLISH goes out
/// when written, not after Nagle's delay) and `SO_KEEPALIVE` (a peer that vanished behind a
/// NAT with MQTT keep alive 0 would otherwise hold its session and descriptor forever). A
/// failure is logged and the connection served anyway.
pub fn configure_accepted(socket: &impl AsFd) {
    let socket = socket2::SockRef::from(socket);
    if let Err(error) = socket.set_tcp_nodelay(true) {
        tracing::debug!(%error, "TCP_NODELAY not set");
    }
    if let Err(error) = socket.set_keepalive(true) {
        tracing::debug!(%error, "SO_KEEPALIVE not set");
    }
}

/// An accept loop's answer to failed accepts: how long to wait before the next, and one log
/// line per shortage of descriptors rather than one per attempt (20,000 clients against a
/// 20,000 limit logged 1,600 lines in 40 s).
#[derive(Debug, Default)]
pub struct AcceptErrors {
    last_said: Option<std::time::Instant>,
    announced: bool,
}

impl AcceptErrors {
    /// An accept failed: says so if it should, and returns how long to wait before accepting
    /// again (out of descriptors: let some connections end; otherwise: do not spin).
    pub fn failed(&mut self, error: &io::Error) -> Duration {
        // EMFILE or ENFILE: the process or the system has no descriptor left.
        if !matches!(error.raw_os_error(), Some(23 | 24)) {
            tracing::debug!(%error, "accept failed");
            return Duration::from_millis(10);
        }
        if self.last_said.is_none_or(|at| at.elapsed() >= SHORTAGE_LOG_INTERVAL) {
            self.last_said = Some(std::time::Instant::now());
            self.announced = true;
            let limit = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(0, |(soft, _)| soft);
            tracing::warn!(
                limit,
                "out of file descriptors: new connections wait in the listen queue; raise the \
                 open files limit (ulimit -n, systemd LimitNOFILE)"
            );
        }
        Duration::from_millis(100)
    }

    /// An accept succeeded: says so once after a shortage was reported.
    pub fn accepted(&mut self) {
        if core::mem::take(&mut self.announced) {
            tracing::info!("accepting connections again");
        }
    }
}
