//! Slowing down password guessing per client address (issue 14 item 5).
//!
//! The whole chain's final answer is counted: a client refused for its credentials (0x86,
//! 0x87, 0x8C; not 0x88, which is the broker's fault) is a failure of its address. Once an
//! address has more than [`ThrottleConfig::failures`] failures within
//! [`ThrottleConfig::window`], each of its next attempts waits its turn before it is even
//! checked: the first `first_delay`, doubling with each further failure up to `max_delay`.
//! Turns are taken one after the other (the next one starts when the previous one's delay has
//! passed), so opening many connections at once does not buy an attacker more guesses, and
//! waiting for a quick answer tells nothing either: right and wrong passwords wait alike. No
//! thread sleeps per attempt and no shard ever waits: attempts wait in a timer queue and their
//! answer comes later through the reply. Other addresses are not affected.
//!
//! A success does not clear the count (an attacker holding one valid account could otherwise
//! reset it between guesses); the count lapses after a `window` without failures.
//!
//! Memory is bounded: [`ThrottleConfig::max_peers`] addresses are remembered (when full, those
//! whose count has lapsed go first, then the one whose last failure is oldest), and at most
//! [`ThrottleConfig::max_waiting`] attempts wait; beyond that an attempt is refused at once as
//! busy (0x88). IPv6 clients are counted per /64 network, the block one subscriber usually
//! holds: counting per address would give an attacker 2^64 fresh counters.

use core::cmp::Reverse;
use core::net::{IpAddr, Ipv6Addr, SocketAddr};
use core::time::Duration;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Instant;

/// How guessing is slowed down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThrottleConfig {
    /// Failures an address may have within `window` before its attempts are delayed.
    pub failures: u32,
    /// How long failures are remembered: the count lapses after this long without one.
    pub window: Duration,
    /// Delay of the first delayed attempt; doubled with each failure after that.
    pub first_delay: Duration,
    /// Longest delay; zero turns the throttle off.
    pub max_delay: Duration,
    /// Addresses remembered at most.
    pub max_peers: usize,
    /// Attempts waiting for their turn at most; more are refused as busy.
    pub max_waiting: usize,
}

impl Default for ThrottleConfig {
    /// Five free failures per five minutes, then 250 ms doubling up to 10 s: a user who
    /// mistypes a few times never notices, a guesser gets about six guesses a minute.
    fn default() -> Self {
        Self {
            failures: 5,
            window: Duration::from_secs(300),
            first_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(10),
            max_peers: 4096,
            max_waiting: 1024,
        }
    }
}

/// What is remembered of one address.
#[derive(Debug, Clone, Copy)]
struct Peer {
    failures: u32,
    last_failure: Instant,
    /// When the last delayed attempt's turn came (or comes): the next one waits after it.
    turn: Instant,
}

/// An attempt waiting for its turn.
struct Waiting {
    at: Instant,
    seq: u64,
    job: Box<dyn FnOnce() + Send>,
}

impl PartialEq for Waiting {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Waiting {}
impl PartialOrd for Waiting {
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Waiting {
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

#[derive(Default)]
struct State {
    peers: HashMap<IpAddr, Peer>,
    waiting: BinaryHeap<Reverse<Waiting>>,
    seq: u64,
}

/// The per-address throttle, with its timer thread. Shared by every shard.
pub struct Throttle {
    config: ThrottleConfig,
    state: Mutex<State>,
    wake: Condvar,
}

impl core::fmt::Debug for Throttle {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Throttle").field("config", &self.config).finish_non_exhaustive()
    }
}

/// The address a client is counted under: IPv4 as is (IPv4-mapped IPv6 too), IPv6 per /64.
fn key(peer: SocketAddr) -> IpAddr {
    match peer.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 @ IpAddr::V4(_) => v4,
    }
}

impl Throttle {
    /// A throttle and its timer thread (which ends when the throttle is dropped).
    ///
    /// # Errors
    /// The timer thread could not be started.
    pub fn start(config: ThrottleConfig) -> std::io::Result<Arc<Self>> {
        let throttle =
            Arc::new(Self { config, state: Mutex::new(State::default()), wake: Condvar::new() });
        let weak = Arc::downgrade(&throttle);
        std::thread::Builder::new().name("musqratt-throttle".into()).spawn(move || {
            while let Some(throttle) = weak.upgrade() {
                throttle.run_due();
            }
        })?;
        Ok(throttle)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs the attempts whose turn has come, or waits (a second at most, so that the thread
    /// notices when the throttle is gone) for the next one.
    fn run_due(&self) {
        let mut state = self.lock();
        let now = Instant::now();
        let mut due = Vec::new();
        while state.waiting.peek().is_some_and(|Reverse(w)| w.at <= now) {
            if let Some(Reverse(waiting)) = state.waiting.pop() {
                due.push(waiting.job);
            }
        }
        if due.is_empty() {
            let next = state.waiting.peek().map_or(Duration::from_secs(1), |Reverse(w)| {
                w.at.saturating_duration_since(now).min(Duration::from_secs(1))
            });
            drop(self.wake.wait_timeout(state, next).unwrap_or_else(PoisonError::into_inner));
            return;
        }
        drop(state);
        for job in due {
            job();
        }
    }

    /// Runs `attempt` now, or when the turn of `peer`'s address comes. An attempt that cannot
    /// wait (too many do) is dropped: its reply then refuses as busy.
    pub fn admit(&self, peer: Option<SocketAddr>, attempt: impl FnOnce() + Send + 'static) {
        let Some(delay) = peer.map(|peer| self.delay(key(peer))) else { return attempt() };
        let Some(at) = delay else { return attempt() };
        let mut state = self.lock();
        if state.waiting.len() >= self.config.max_waiting {
            tracing::warn!(peer = ?peer, "too many throttled attempts waiting: refusing as busy");
            return;
        }
        state.seq += 1;
        let seq = state.seq;
        state.waiting.push(Reverse(Waiting { at, seq, job: Box::new(attempt) }));
        drop(state);
        self.wake.notify_one();
    }

    /// When an attempt from `key` may be checked, if it must wait at all; takes its turn.
    fn delay(&self, key: IpAddr) -> Option<Instant> {
        let now = Instant::now();
        let mut state = self.lock();
        let peer = state.peers.get_mut(&key)?;
        if now.duration_since(peer.last_failure) > self.config.window {
            return None;
        }
        let excess = peer.failures.checked_sub(self.config.failures).filter(|&e| e > 0)?;
        let doubled = self.config.first_delay.saturating_mul(1 << (excess - 1).min(20));
        let delay = doubled.min(self.config.max_delay);
        if delay.is_zero() {
            return None;
        }
        let at = peer.turn.max(now) + delay;
        peer.turn = at;
        Some(at)
    }

    /// Counts the final answer to an attempt from `peer`: `failed` when its credentials were
    /// refused.
    pub fn record(&self, peer: Option<SocketAddr>, failed: bool) {
        let (Some(peer), true) = (peer, failed) else { return };
        if self.config.max_delay.is_zero() {
            return;
        }
        let key = key(peer);
        let now = Instant::now();
        let window = self.config.window;
        let mut state = self.lock();
        if !state.peers.contains_key(&key) && state.peers.len() >= self.config.max_peers {
            state.peers.retain(|_, p| now.duration_since(p.last_failure) <= window || p.turn > now);
            if state.peers.len() >= self.config.max_peers {
                let oldest =
                    state.peers.iter().min_by_key(|(_, p)| p.last_failure).map(|(k, _)| *k);
                if let Some(oldest) = oldest {
                    state.peers.remove(&oldest);
                }
            }
        }
        let entry =
            state.peers.entry(key).or_insert(Peer { failures: 0, last_failure: now, turn: now });
        if now.duration_since(entry.last_failure) > window {
            entry.failures = 0;
        }
        entry.failures = entry.failures.saturating_add(1);
        entry.last_failure = now;
    }

    /// Addresses remembered now (for tests and metrics).
    #[must_use]
    pub fn peers(&self) -> usize {
        self.lock().peers.len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    fn config() -> ThrottleConfig {
        ThrottleConfig {
            failures: 2,
            first_delay: Duration::from_millis(40),
            max_delay: Duration::from_millis(100),
            max_peers: 4,
            ..ThrottleConfig::default()
        }
    }

    fn addr(last: u8) -> Option<SocketAddr> {
        Some(SocketAddr::from(([127, 0, 0, last], 1000)))
    }

    /// How long an attempt from `peer` waits for its turn.
    fn wait(throttle: &Throttle, peer: Option<SocketAddr>) -> Duration {
        let (tx, rx) = mpsc::channel();
        let start = Instant::now();
        throttle.admit(peer, move || tx.send(()).unwrap());
        rx.recv_timeout(Duration::from_secs(5)).unwrap();
        start.elapsed()
    }

    #[test]
    fn failures_beyond_the_free_ones_delay_doubling_up_to_the_cap() {
        let throttle = Throttle::start(config()).unwrap();
        let mut delays = Vec::new();
        for _ in 0..6 {
            delays.push(wait(&throttle, addr(2)));
            throttle.record(addr(2), true);
        }
        let ms: Vec<u128> = delays.iter().map(Duration::as_millis).collect();
        assert!(ms[..3].iter().all(|&d| d < 30), "two free failures, then 40 ms: {ms:?}");
        assert!((40..90).contains(&ms[3]) && (80..150).contains(&ms[4]), "{ms:?}");
        assert!((100..170).contains(&ms[5]), "capped at 100 ms: {ms:?}");
        // Another address, and an unknown one, are not affected.
        assert!(wait(&throttle, addr(3)) < Duration::from_millis(30));
        assert!(wait(&throttle, None) < Duration::from_millis(30));
        // IPv6 is counted per /64.
        assert_eq!(
            key("[2001:db8:1:2:3:4:5:6]:1".parse().unwrap()),
            key("[2001:db8:1:2:ff::1]:9".parse().unwrap())
        );
        assert_eq!(key("[::ffff:10.0.0.1]:1".parse().unwrap()), IpAddr::from([10, 0, 0, 1]));
    }

    #[test]
    fn attempts_at_once_take_turns() {
        let throttle = Throttle::start(config()).unwrap();
        for _ in 0..3 {
            throttle.record(addr(2), true);
        }
        let (tx, rx) = mpsc::channel();
        let start = Instant::now();
        for _ in 0..4 {
            let tx = tx.clone();
            throttle.admit(addr(2), move || tx.send(start.elapsed()).unwrap());
        }
        let last = (0..4).map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap()).max();
        assert!(last.unwrap() >= Duration::from_millis(160), "4 turns of 40 ms: {last:?}");
    }

    #[test]
    fn memory_is_bounded() {
        let throttle = Throttle::start(config()).unwrap();
        for last in 0..50 {
            throttle.record(addr(last), true);
        }
        assert_eq!(throttle.peers(), 4);
        // Successes are not remembered.
        throttle.record(addr(99), false);
        assert_eq!(throttle.peers(), 4);
    }
}
