//! `retained`: N retained messages on N distinct topics (issue 19's retained curve). One
//! publisher stores them (QoS 1, a bounded window, every one acknowledged); with the broker's
//! pid, its resident memory per retained message (`VmRSS` after minus before, over N, read
//! before anyone subscribes so that no delivery buffer is counted); then one subscriber of
//! `PREFIX/#` (a `#` filter over the run's own topics, so that nothing else a broker retains,
//! `$SYS` or an earlier run's messages, is counted) and the time from its SUBSCRIBE to the last
//! retained message received. Every message must arrive; what does not within `--drain` of
//! silence is reported as lost, not waited for.

use core::time::Duration;

use bytes::BytesMut;
use tokio::time::Instant;

use crate::durable::{publish_acked, receive};
use crate::transport::{AsyncConn, Target};
use crate::wire;

/// Parameters of one run.
#[derive(Debug, Clone)]
pub(crate) struct RetainedCfg {
    pub(crate) target: Target,
    pub(crate) login: wire::Login,
    /// Retained messages, each on its own topic.
    pub(crate) topics: u64,
    pub(crate) payload: usize,
    /// Unacknowledged publications allowed at once.
    pub(crate) window: usize,
    /// QoS of the `#` subscription (the messages are published at QoS 1).
    pub(crate) qos: u8,
    /// How long the broker is left alone after the last acknowledgement before RSS is read.
    pub(crate) hold: Duration,
    /// The subscriber stops waiting after this long without a new message.
    pub(crate) drain: Duration,
    pub(crate) pid: Option<u32>,
}

/// What one run measured.
#[derive(Debug)]
pub(crate) struct RetainedOut {
    /// From the first publication to the last acknowledgement.
    pub(crate) publish_time: Duration,
    /// From the SUBSCRIBE to the last retained message received.
    pub(crate) receive_time: Duration,
    pub(crate) received: u64,
    pub(crate) duplicates: u64,
    pub(crate) rss_before: Option<u64>,
    pub(crate) rss_after: Option<u64>,
}

/// The topic of retained message `i`: two levels under the run's prefix, 1,000 topics per
/// branch, as a fleet's `site/device` tree would be.
pub(crate) fn topic(prefix: &str, i: u64, name: &mut String) {
    use core::fmt::Write;
    let _ = write!(name, "{prefix}/r/{}/{}", i / 1000, i % 1000);
}

/// Runs one measurement.
pub(crate) async fn run(cfg: &RetainedCfg) -> anyhow::Result<RetainedOut> {
    let prefix = format!("mqb/{}", wire::client_id("t", 0));
    let rss = || cfg.pid.and_then(|pid| crate::sys::proc_status(pid, "VmRSS").ok());
    let rss_before = rss();
    let publish_time = publish_acked(
        &cfg.target,
        &cfg.login,
        cfg.topics,
        cfg.window,
        cfg.payload,
        true,
        |i, name| topic(&prefix, i, name),
    )
    .await?;
    tokio::time::sleep(cfg.hold).await;
    let rss_after = rss();

    let mut sub =
        AsyncConn::connect(&cfg.target, &wire::client_id("rsub", 0), wire::KEEP_ALIVE, &cfg.login)
            .await?;
    let mut out = BytesMut::new();
    // Not `AsyncConn::subscribe`: a broker may send matching PUBLISH packets before the SUBACK
    // (§3.8.4), which `receive` takes in any order (it skips the SUBACK).
    wire::subscribe(&mut out, 1, &format!("{prefix}/r/#"), cfg.qos);
    let start = Instant::now();
    sub.write_all(&out).await?;
    let (seen, last) = receive(sub, cfg.topics, cfg.drain.max(Duration::from_millis(100))).await?;
    Ok(RetainedOut {
        publish_time,
        receive_time: last.saturating_duration_since(start),
        received: seen.distinct,
        duplicates: seen.duplicates,
        rss_before,
        rss_after,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn topics_are_distinct_and_two_levels_deep() {
        let mut a = String::new();
        super::topic("p", 1234, &mut a);
        assert_eq!(a, "p/r/1/234");
        let mut b = String::new();
        super::topic("p", 234, &mut b);
        assert_eq!(b, "p/r/0/234");
    }
}
