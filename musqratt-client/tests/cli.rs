//! `pub`, `sub` and the shell against a real broker (Mosquitto), with their flags parsed by clap
//! as the `musqratt` binary parses them.

mod common;

use core::time::Duration;
use std::time::Instant;

use clap::Parser;
use musqratt_client::{PubArgs, ShellArgs, SubArgs, pub_cmd_with, shell_with, sub_cmd_with};
use tokio::io::AsyncWriteExt;

#[derive(Parser)]
struct Pub {
    #[command(flatten)]
    args: PubArgs,
}

#[derive(Parser)]
struct Sub {
    #[command(flatten)]
    args: SubArgs,
}

#[derive(Parser)]
struct Shell {
    #[command(flatten)]
    args: ShellArgs,
}

fn pub_args(flags: &[&str]) -> PubArgs {
    Pub::try_parse_from(core::iter::once("pub").chain(flags.iter().copied())).unwrap().args
}

fn sub_args(flags: &[&str]) -> SubArgs {
    Sub::try_parse_from(core::iter::once("sub").chain(flags.iter().copied())).unwrap().args
}

fn shell_args(flags: &[&str]) -> ShellArgs {
    Shell::try_parse_from(core::iter::once("shell").chain(flags.iter().copied())).unwrap().args
}

#[test]
fn flags_parse_like_mosquitto() {
    let args = pub_args(&["-t", "a/b", "-m", "hi", "-q", "2", "-r", "-i", "me", "--v5"]);
    assert_eq!((args.topic.as_str(), args.message.as_deref()), ("a/b", Some("hi")));
    assert_eq!(args.qos, musqratt_proto::QoS::ExactlyOnce);
    assert!(args.retain);
    assert_eq!(args.conn.version(), musqratt_proto::ProtocolVersion::V5);
    assert_eq!(args.conn.client_id.as_deref(), Some("me"));
    let args = pub_args(&["-t", "a", "-l", "-V", "311", "--url", "mqtt://h:1"]);
    assert!(args.stdin_lines);
    assert_eq!(args.conn.version(), musqratt_proto::ProtocolVersion::V3_1_1);
    assert_eq!(args.conn.url, "mqtt://h:1");
    // A message source is required, and only one.
    assert!(Pub::try_parse_from(["pub", "-t", "a"]).is_err());
    assert!(Pub::try_parse_from(["pub", "-t", "a", "-m", "x", "-l"]).is_err());
    assert!(Pub::try_parse_from(["pub", "-t", "a", "-m", "x", "-q", "3"]).is_err());
    let args = sub_args(&["-t", "a/#", "-t", "b", "-v", "-C", "3", "-q", "1", "-V", "5"]);
    assert_eq!(args.topics, ["a/#", "b"]);
    assert!(args.verbose);
    assert_eq!(args.count, Some(3));
    assert!(Sub::try_parse_from(["sub"]).is_err());
}

#[tokio::test]
async fn sub_count_exits_after_one_message() {
    let Some(broker) = common::mosquitto() else { return };
    let url = broker.url();
    for version in ["311", "5"] {
        let args =
            sub_args(&["-t", "cli/one", "-C", "1", "-v", "-q", "1", "-V", version, "-L", &url]);
        let sub = tokio::spawn(async move {
            let mut out = Vec::new();
            let count = sub_cmd_with(args, &mut out).await.unwrap();
            (count, String::from_utf8(out).unwrap())
        });
        // The subscription may not be in place yet: publish until the subscriber is done.
        let start = Instant::now();
        while !sub.is_finished() {
            assert!(start.elapsed() < Duration::from_secs(10), "sub did not finish");
            let args = pub_args(&["-t", "cli/one", "-m", "hello there", "-q", "1", "-L", &url]);
            pub_cmd_with(args, tokio::io::empty()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (count, out) = sub.await.unwrap();
        assert_eq!(count, 1);
        assert_eq!(out, "cli/one hello there\n");
    }
}

#[tokio::test]
async fn pub_lines_file_and_stdin_reach_sub() {
    let Some(broker) = common::mosquitto() else { return };
    let url = broker.url();
    let out = common::SharedBuf::default();
    let args = sub_args(&["-t", "cli/ready", "-t", "cli/data/#", "-v", "-q", "2", "-L", &url]);
    let mut writer = out.clone();
    let sub = tokio::spawn(async move { sub_cmd_with(args, &mut writer).await });
    let start = Instant::now();
    while !out.text().contains("cli/ready") {
        assert!(start.elapsed() < Duration::from_secs(10), "sub never subscribed");
        let args = pub_args(&["-t", "cli/ready", "-m", "", "-L", &url]);
        pub_cmd_with(args, tokio::io::empty()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // -l: one message per line, blank lines skipped; QoS 2 over 5.0.
    let args = pub_args(&["-t", "cli/data/lines", "-l", "-q", "2", "--v5", "-L", &url]);
    pub_cmd_with(args, &b"first line\n\nsecond line\r\nthird"[..]).await.unwrap();
    // -s: all of stdin as one message.
    let args = pub_args(&["-t", "cli/data/whole", "-s", "-q", "1", "-L", &url]);
    pub_cmd_with(args, &b"whole"[..]).await.unwrap();
    // -f: a file.
    let path = std::env::temp_dir().join(format!("musqratt-pub-{}.txt", std::process::id()));
    std::fs::write(&path, "from a file").unwrap();
    let args = pub_args(&["-t", "cli/data/file", "-f", path.to_str().unwrap(), "-L", &url]);
    pub_cmd_with(args, tokio::io::empty()).await.unwrap();
    std::fs::remove_file(&path).unwrap();
    out.wait_for("cli/data/file from a file").await;
    let data: Vec<String> =
        out.text().lines().filter(|l| l.starts_with("cli/data")).map(str::to_owned).collect();
    assert_eq!(
        data,
        [
            "cli/data/lines first line",
            "cli/data/lines second line",
            "cli/data/lines third",
            "cli/data/whole whole",
            "cli/data/file from a file",
        ]
    );
    sub.abort();
    // A missing file is an error before connecting.
    let args = pub_args(&["-t", "x", "-f", "/nonexistent/file", "-L", &url]);
    assert!(pub_cmd_with(args, tokio::io::empty()).await.is_err());
}

#[tokio::test]
async fn shell_runs_a_script() {
    let Some(broker) = common::mosquitto() else { return };
    let script = "\
pub test/shell too early
connect shell-script
connect again
sub test/shell 1
pub test/shell hello  world
pub -q 2 test/shell second
unsub test/shell
pub test/shell not delivered
disconnect someone-else
disconnect
sub test/shell
bogus
help
";
    for version in ["311", "5"] {
        let mut out = Vec::new();
        let args = shell_args(&["-L", &broker.url(), "-V", version]);
        shell_with(args, script.as_bytes(), &mut out, false).await.unwrap();
        let out = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        let expected_start = [
            "error: not connected (use: connect [client_id])".to_owned(),
            format!(
                "connected to {} as shell-script (MQTT {})",
                broker.url(),
                if version == "5" { "5.0" } else { "3.1.1" }
            ),
            "error: already connected as shell-script (disconnect first)".to_owned(),
            "subscribed to test/shell (granted QoS 1)".to_owned(),
            "published 12 bytes to test/shell (QoS 0)".to_owned(),
        ];
        assert_eq!(lines[..5], expected_start, "{out}");
        let index = |needle: &str| {
            lines.iter().position(|l| *l == needle).unwrap_or_else(|| panic!("{needle:?} in {out}"))
        };
        let hello = index("[test/shell] hello  world");
        let second = index("[test/shell] second");
        let unsub = index("unsubscribed from test/shell");
        assert!(hello < second && second < unsub, "{out}");
        assert!(!out.contains("[test/shell] not delivered"), "{out}");
        index("error: connected as shell-script, not someone-else");
        let disconnected = index("disconnected");
        assert!(lines[disconnected + 1].starts_with("error: not connected"), "{out}");
        index("error: unknown command \"bogus\" (type help)");
        assert!(out.contains("connect [client_id]"), "help is printed: {out}");
    }
}

#[tokio::test]
async fn shell_prints_messages_while_waiting_for_input() {
    let Some(broker) = common::mosquitto() else { return };
    let url = broker.url();
    let (mut input, shell_input) = tokio::io::duplex(1024);
    let out = common::SharedBuf::default();
    let mut writer = out.clone();
    let args = shell_args(&["--url", &url, "-q", "2"]);
    let shell = tokio::spawn(async move {
        shell_with(args, tokio::io::BufReader::new(shell_input), &mut writer, false).await
    });
    input.write_all(b"connect watcher\nsub live/#\n").await.unwrap();
    out.wait_for("subscribed to live/# (granted QoS 2)").await;
    // No input is pending: the message is printed while the shell waits for the next line.
    let args = pub_args(&["-t", "live/feed", "-m", "breaking news", "-q", "2", "-L", &url]);
    pub_cmd_with(args, tokio::io::empty()).await.unwrap();
    out.wait_for("[live/feed] breaking news\n").await;
    input.write_all(b"quit\n").await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), shell).await.unwrap().unwrap().unwrap();
    assert!(out.text().ends_with("disconnected\n"), "{}", out.text());
}
