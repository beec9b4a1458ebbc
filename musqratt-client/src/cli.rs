//! `musqratt pub` and `musqratt sub`: publish and subscribe from the command line, with the flags
//! of mosquitto_pub and mosquitto_sub where they exist. They work against any MQTT broker.

use core::time::Duration;
use std::io::Write;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::{ArgGroup, Args};
use musqratt_proto::{ProtocolVersion, QoS};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, BufReader};

use crate::{Client, ConnectOptions};

/// Connection flags shared by `pub`, `sub` and `shell`.
#[derive(Debug, Clone, Args)]
pub struct ConnArgs {
    /// Server URL: mqtt://[user[:password]@]host[:port]
    #[arg(short = 'L', long, default_value = "mqtt://127.0.0.1:1883")]
    pub url: String,
    /// Client identifier (default: generated)
    #[arg(short = 'i', long = "id")]
    pub client_id: Option<String>,
    /// MQTT protocol version: 5, 311 (3.1.1) or 31 (3.1)
    #[arg(short = 'V', long = "protocol-version", default_value = "311", value_parser = parse_version)]
    pub protocol_version: ProtocolVersion,
    /// Use MQTT 5.0 (same as -V 5)
    #[arg(long = "v5")]
    pub v5: bool,
    /// Keep alive in seconds (0 = off)
    #[arg(short = 'k', long, default_value_t = 60)]
    pub keepalive: u16,
    /// User name
    #[arg(short = 'u', long)]
    pub username: Option<String>,
    /// Password
    #[arg(short = 'P', long)]
    pub password: Option<String>,
    /// Keep the session: connect without Clean Start / Clean Session
    #[arg(short = 'c', long = "no-clean-start")]
    pub no_clean_start: bool,
    /// Session Expiry Interval in seconds (MQTT 5.0)
    #[arg(short = 'x', long = "session-expiry")]
    pub session_expiry: Option<u32>,
    /// Will topic
    #[arg(long = "will-topic")]
    pub will_topic: Option<String>,
    /// Will payload
    #[arg(long = "will-payload", default_value = "")]
    pub will_payload: String,
    /// Will QoS
    #[arg(long = "will-qos", default_value = "0", value_parser = parse_qos)]
    pub will_qos: QoS,
    /// Retain the will
    #[arg(long = "will-retain")]
    pub will_retain: bool,
    /// Seconds to wait for the server's answers
    #[arg(long = "timeout", default_value_t = 10)]
    pub timeout: u64,
}

impl Default for ConnArgs {
    fn default() -> Self {
        Self {
            url: "mqtt://127.0.0.1:1883".into(),
            client_id: None,
            protocol_version: ProtocolVersion::V3_1_1,
            v5: false,
            keepalive: 60,
            username: None,
            password: None,
            no_clean_start: false,
            session_expiry: None,
            will_topic: None,
            will_payload: String::new(),
            will_qos: QoS::AtMostOnce,
            will_retain: false,
            timeout: 10,
        }
    }
}

/// Parses `5`, `5.0`, `311`, `3.1.1`, `31` or `3.1`.
///
/// # Errors
/// Any other text.
pub(crate) fn parse_version(text: &str) -> Result<ProtocolVersion, String> {
    match text {
        "5" | "5.0" | "mqttv5" => Ok(ProtocolVersion::V5),
        "311" | "3.1.1" | "4" | "mqttv311" => Ok(ProtocolVersion::V3_1_1),
        "31" | "3.1" | "3" | "mqttv31" => Ok(ProtocolVersion::V3_1),
        _ => Err(format!("unknown protocol version {text:?}: use 5, 311 or 31")),
    }
}

/// Parses a QoS 0, 1 or 2.
///
/// # Errors
/// Any other text.
pub(crate) fn parse_qos(text: &str) -> Result<QoS, String> {
    text.parse::<u8>()
        .ok()
        .and_then(QoS::from_bits)
        .ok_or_else(|| format!("invalid QoS {text:?}: use 0, 1 or 2"))
}

/// A client identifier nobody else is likely to use.
pub(crate) fn generated_id(tool: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("musqratt-{tool}-{}-{nanos:x}", std::process::id())
}

impl ConnArgs {
    /// The protocol version asked for (`--v5` wins).
    #[must_use]
    pub const fn version(&self) -> ProtocolVersion {
        if self.v5 { ProtocolVersion::V5 } else { self.protocol_version }
    }

    /// The connect options these flags describe; `client_id` overrides `-i`, and a generated
    /// identifier is used when neither is given.
    #[must_use]
    pub fn options(&self, tool: &str, client_id: Option<&str>) -> ConnectOptions {
        let id = client_id
            .map(str::to_owned)
            .or_else(|| self.client_id.clone())
            .unwrap_or_else(|| generated_id(tool));
        let mut options = ConnectOptions::new(id)
            .url(self.url.clone())
            .version(self.version())
            .keep_alive(self.keepalive)
            .clean_start(!self.no_clean_start)
            .timeout(Duration::from_secs(self.timeout.max(1)));
        options.session_expiry = self.session_expiry;
        options.username = self.username.clone();
        options.password = self.password.clone().map(Bytes::from);
        if let Some(topic) = &self.will_topic {
            let payload = Bytes::from(self.will_payload.clone());
            options = options.will(topic, payload, self.will_qos, self.will_retain, None);
        }
        options
    }

    pub(crate) async fn connect(&self, tool: &str) -> Result<Client> {
        let options = self.options(tool, None);
        let (client, _ack) = Client::connect(options)
            .await
            .with_context(|| format!("cannot connect to {}", self.url))?;
        Ok(client)
    }
}

/// `musqratt pub`: publish one message, a file, or stdin.
#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("source").required(true)
    .args(["message", "file", "stdin_lines", "stdin_file", "null_message"])))]
pub struct PubArgs {
    /// Topic to publish to
    #[arg(short = 't', long)]
    pub topic: String,
    /// Message payload
    #[arg(short = 'm', long)]
    pub message: Option<String>,
    /// Send the contents of a file as the message
    #[arg(short = 'f', long)]
    pub file: Option<std::path::PathBuf>,
    /// Read stdin and send each line as a message (blank lines are skipped)
    #[arg(short = 'l', long = "stdin-line")]
    pub stdin_lines: bool,
    /// Read stdin to its end and send it as one message
    #[arg(short = 's', long = "stdin-file")]
    pub stdin_file: bool,
    /// Send an empty message
    #[arg(short = 'n', long = "null-message")]
    pub null_message: bool,
    /// Quality of service: 0, 1 or 2
    #[arg(short = 'q', long, default_value = "0", value_parser = parse_qos)]
    pub qos: QoS,
    /// Ask the server to retain the message
    #[arg(short = 'r', long)]
    pub retain: bool,
    /// Connection flags.
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// Runs `musqratt pub`, reading stdin for `-l` and `-s`.
///
/// # Errors
/// A connection failure, an unreadable file, or a refused publication.
pub async fn pub_cmd(args: PubArgs) -> Result<()> {
    pub_cmd_with(args, BufReader::new(tokio::io::stdin())).await
}

/// [`pub_cmd`] with `input` in place of stdin.
///
/// # Errors
/// As [`pub_cmd`].
pub async fn pub_cmd_with<R: AsyncBufRead + Unpin>(args: PubArgs, mut input: R) -> Result<()> {
    // Read a file before connecting, so a missing file does not leave a connection behind.
    let file = match &args.file {
        Some(path) => {
            Some(std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?)
        }
        None => None,
    };
    let client = args.conn.connect("pub").await?;
    let publish = |payload: Bytes| client.publish(&args.topic, payload, args.qos, args.retain);
    if let Some(message) = &args.message {
        publish(Bytes::from(message.clone())).await?;
    } else if let Some(contents) = file {
        publish(Bytes::from(contents)).await?;
    } else if args.null_message {
        publish(Bytes::new()).await?;
    } else if args.stdin_file {
        let mut contents = Vec::new();
        input.read_to_end(&mut contents).await.context("cannot read stdin")?;
        publish(Bytes::from(contents)).await?;
    } else if args.stdin_lines {
        let mut lines = input.lines();
        while let Some(line) = lines.next_line().await.context("cannot read stdin")? {
            let line = line.strip_suffix('\r').unwrap_or(&line);
            if !line.is_empty() {
                publish(Bytes::copy_from_slice(line.as_bytes())).await?;
            }
        }
    } else {
        bail!("nothing to publish: give -m, -f, -l, -s or -n");
    }
    client.disconnect().await?;
    Ok(())
}

/// `musqratt sub`: print the messages of one or more topic filters.
#[derive(Debug, Clone, Args)]
pub struct SubArgs {
    /// Topic filter to subscribe to (repeatable)
    #[arg(short = 't', long = "topic", required = true)]
    pub topics: Vec<String>,
    /// Maximum quality of service: 0, 1 or 2
    #[arg(short = 'q', long, default_value = "0", value_parser = parse_qos)]
    pub qos: QoS,
    /// Print the topic before each payload
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// Exit after this many messages
    #[arg(short = 'C', long = "count")]
    pub count: Option<u64>,
    /// Connection flags.
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// Runs `musqratt sub`, printing to stdout until COUNT messages or Ctrl-C.
///
/// # Errors
/// A connection failure, refused subscriptions, or a connection lost.
pub async fn sub_cmd(args: SubArgs) -> Result<()> {
    sub_cmd_with(args, &mut std::io::stdout()).await.map(drop)
}

/// [`sub_cmd`] writing to `out`; returns how many messages were printed.
///
/// # Errors
/// As [`sub_cmd`].
pub async fn sub_cmd_with<W: Write>(args: SubArgs, out: &mut W) -> Result<u64> {
    let mut client = args.conn.connect("sub").await?;
    let filters: Vec<(&str, QoS)> = args.topics.iter().map(|t| (t.as_str(), args.qos)).collect();
    let codes = client.subscribe_many(&filters).await.context("cannot subscribe")?;
    let mut refused = 0;
    for ((filter, _), code) in filters.iter().zip(&codes) {
        if code.is_error() {
            eprintln!("warning: subscription to {filter:?} refused: {code}");
            refused += 1;
        }
    }
    if refused == filters.len() {
        bail!("every subscription was refused");
    }
    let mut received = 0;
    if args.count == Some(0) {
        client.disconnect().await?;
        return Ok(0);
    }
    let ctrl_c = ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            message = client.next_message() => {
                let Some(message) = message else {
                    let reason = client.close_reason();
                    return Err(anyhow::anyhow!(reason.unwrap_or(crate::ClientError::ConnectionClosed)))
                        .context("connection lost");
                };
                if args.verbose {
                    out.write_all(message.topic.as_bytes())?;
                    out.write_all(b" ")?;
                }
                out.write_all(&message.payload)?;
                out.write_all(b"\n")?;
                out.flush()?;
                received += 1;
                if args.count.is_some_and(|count| received >= count) {
                    break;
                }
            }
            () = &mut ctrl_c => break,
        }
    }
    client.disconnect().await?;
    Ok(received)
}

/// Completes on Ctrl-C; never, if the signal handler cannot be installed.
pub(crate) async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        core::future::pending::<()>().await;
    }
}
