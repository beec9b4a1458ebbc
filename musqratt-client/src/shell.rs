//! `musqratt shell`: the user's command interface, one command a line.
//!
//! ```text
//! connect [client_id]         connect to the server (as client_id, or a generated one)
//! disconnect [client_id]      disconnect (normal disconnection: no will)
//! sub <topic> [qos]           subscribe to a topic filter
//! unsub <topic>               unsubscribe
//! pub [-q N] [-r] <topic> [payload...]
//! help, quit
//! ```
//!
//! Messages are printed as `[topic] payload` as soon as they arrive, also while the shell waits
//! for input. It reads stdin line by line, so it runs a script from a pipe as well as at a
//! terminal (the prompt is shown only at a terminal). End of input, `quit` and Ctrl-C disconnect
//! cleanly and leave.

use std::io::{IsTerminal, Write};

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use clap::Args;
use musqratt_proto::QoS;
use musqratt_proto::mqtt::Publish;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, BufReader};

use crate::Client;
use crate::cli::{ConnArgs, parse_qos};

/// `musqratt shell` flags: how `connect` connects, and the default QoS of `sub` and `pub`.
#[derive(Debug, Clone, Default, Args)]
pub struct ShellArgs {
    /// Default quality of service of sub and pub: 0, 1 or 2
    #[arg(short = 'q', long, default_value = "0", value_parser = parse_qos)]
    pub qos: QoS,
    /// Connection flags used by `connect` (its client_id argument overrides -i).
    #[command(flatten)]
    pub conn: ConnArgs,
}

const HELP: &str = "\
commands:
  connect [client_id]                    connect to the server
  disconnect [client_id]                 disconnect from the server
  sub <topic> [qos]                      subscribe to a topic filter
  unsub <topic>                          unsubscribe from a topic filter
  pub [-q qos] [-r] <topic> [payload...] publish a message (-r: retain)
  help                                   show this help
  quit                                   disconnect and leave
messages arrive as: [topic] payload";

/// Runs the shell on stdin and stdout; the prompt is shown when stdin is a terminal.
///
/// # Errors
/// Only when stdin or stdout fail: command errors are printed and the shell goes on.
pub async fn shell(args: ShellArgs) -> Result<()> {
    let interactive = std::io::stdin().is_terminal();
    let input = BufReader::new(tokio::io::stdin());
    shell_with(args, input, &mut std::io::stdout(), interactive).await
}

/// Runs the shell on any input and output (tests drive it with a script).
///
/// # Errors
/// As [`shell`].
pub async fn shell_with<R, W>(
    args: ShellArgs,
    input: R,
    out: &mut W,
    interactive: bool,
) -> Result<()>
where
    R: AsyncBufRead + Unpin,
    W: Write,
{
    let mut shell = Shell { args, out, client: None, interactive };
    if interactive {
        writeln!(shell.out, "musqratt shell: type help for the commands")?;
    }
    let mut lines = input.lines();
    let ctrl_c = crate::cli::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        if shell.interactive {
            write!(shell.out, "musqratt> ")?;
            shell.out.flush()?;
        }
        let event = {
            let message = async {
                match shell.client.as_mut() {
                    Some(client) => client.next_message().await,
                    None => core::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                message = message => Event::Message(message.map(Box::new)),
                line = lines.next_line() => Event::Line(line.context("cannot read input")?),
                () = &mut ctrl_c => Event::Line(None),
            }
        };
        match event {
            Event::Message(Some(message)) => shell.print_message(&message)?,
            Event::Message(None) => {
                let reason = shell.client.take().and_then(|client| client.close_reason());
                let reason = reason.map_or_else(|| "connection closed".into(), |r| r.to_string());
                shell.line(&format!("connection lost: {reason}"))?;
            }
            Event::Line(None) => break,
            Event::Line(Some(line)) => match shell.execute(&line).await {
                Ok(true) => {}
                Ok(false) => break,
                Err(error) => shell.line(&format!("error: {error:#}"))?,
            },
        }
    }
    if let Some(client) = shell.client.take() {
        // Messages that arrived before the end of the input are still shown.
        let mut client = client;
        while let Some(message) = client.try_next_message() {
            shell.print_message(&message)?;
        }
        client.disconnect().await?;
        shell.line("disconnected")?;
    }
    Ok(())
}

enum Event {
    Message(Option<Box<Publish>>),
    Line(Option<String>),
}

struct Shell<'a, W> {
    args: ShellArgs,
    out: &'a mut W,
    client: Option<Client>,
    interactive: bool,
}

impl<W: Write> Shell<'_, W> {
    fn line(&mut self, text: &str) -> Result<()> {
        if self.interactive {
            write!(self.out, "\r")?;
        }
        writeln!(self.out, "{text}")?;
        self.out.flush()?;
        Ok(())
    }

    fn print_message(&mut self, message: &Publish) -> Result<()> {
        let payload = String::from_utf8_lossy(&message.payload);
        self.line(&format!("[{}] {payload}", message.topic))
    }

    fn client(&self) -> Result<&Client> {
        self.client.as_ref().ok_or_else(|| anyhow!("not connected (use: connect [client_id])"))
    }

    /// Runs one command line; `false` to leave the shell.
    async fn execute(&mut self, line: &str) -> Result<bool> {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return Ok(true);
        }
        let (command, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let rest = rest.trim_start();
        let words: Vec<&str> = rest.split_whitespace().collect();
        match command.to_ascii_lowercase().as_str() {
            "help" | "?" => self.line(HELP)?,
            "quit" | "exit" => return Ok(false),
            "connect" => self.connect(&words).await?,
            "disconnect" => self.disconnect(&words).await?,
            "sub" | "subscribe" => {
                let (topic, qos) = match words[..] {
                    [topic] => (topic, self.args.qos),
                    [topic, qos] => (topic, parse_qos(qos).map_err(|e| anyhow!(e))?),
                    _ => bail!("usage: sub <topic> [qos]"),
                };
                let granted = self.client()?.subscribe(topic, qos).await?;
                self.line(&format!("subscribed to {topic} (granted QoS {})", granted.bits()))?;
            }
            "unsub" | "unsubscribe" => {
                let [topic] = words[..] else { bail!("usage: unsub <topic>") };
                self.client()?.unsubscribe(topic).await?;
                self.line(&format!("unsubscribed from {topic}"))?;
            }
            "pub" | "publish" => self.publish(rest).await?,
            other => bail!("unknown command {other:?} (type help)"),
        }
        Ok(true)
    }

    async fn connect(&mut self, words: &[&str]) -> Result<()> {
        if let Some(client) = &self.client {
            bail!("already connected as {} (disconnect first)", client.client_id());
        }
        let id = match words {
            [] => None,
            [id] => Some(*id),
            _ => bail!("usage: connect [client_id]"),
        };
        let options = self.args.conn.options("shell", id);
        let url = options.url.clone();
        let (client, ack) =
            Client::connect(options).await.with_context(|| format!("cannot connect to {url}"))?;
        let present = if ack.session_present { ", session present" } else { "" };
        let text = format!(
            "connected to {url} as {} (MQTT {}{present})",
            client.client_id(),
            client.version()
        );
        self.client = Some(client);
        self.line(&text)
    }

    async fn disconnect(&mut self, words: &[&str]) -> Result<()> {
        let client = self.client()?;
        match words {
            [] => {}
            [id] if *id == client.client_id() => {}
            [id] => bail!("connected as {}, not {id}", client.client_id()),
            _ => bail!("usage: disconnect [client_id]"),
        }
        if let Some(mut client) = self.client.take() {
            while let Some(message) = client.try_next_message() {
                self.print_message(&message)?;
            }
            client.disconnect().await?;
        }
        self.line("disconnected")
    }

    async fn publish(&mut self, rest: &str) -> Result<()> {
        const USAGE: &str = "usage: pub [-q qos] [-r] <topic> [payload...]";
        let mut qos = self.args.qos;
        let mut retain = false;
        let mut rest = rest;
        loop {
            let (word, after) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            let after = after.trim_start();
            match word {
                "-r" => retain = true,
                "-q" => {
                    let (value, after) =
                        after.split_once(char::is_whitespace).unwrap_or((after, ""));
                    qos = parse_qos(value).map_err(|e| anyhow!("{e}; {USAGE}"))?;
                    rest = after.trim_start();
                    continue;
                }
                _ => break,
            }
            rest = after;
        }
        let (topic, payload) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        if topic.is_empty() {
            bail!(USAGE);
        }
        let payload = Bytes::copy_from_slice(payload.trim_start().as_bytes());
        let len = payload.len();
        self.client()?.publish(topic, payload, qos, retain).await?;
        self.line(&format!("published {len} bytes to {topic} (QoS {})", qos.bits()))
    }
}
