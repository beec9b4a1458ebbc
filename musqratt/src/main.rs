//! The `musqratt` command: `musqratt` alone runs a broker on 127.0.0.1:1883 with the embedded
//! defaults; `musqratt broker` takes a configuration file and overrides; `pub`, `sub` and
//! `shell` are MQTT clients that work against any broker.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use musqratt::Broker;
use musqratt::config::{FileConfig, ListenUrl};
use musqratt::http::HttpServer;
use musqratt_auth::scram::{self, ScramSource};
use musqratt_auth::{FileAuth, Files, HttpSource, JwtSource, SharedFiles, Source};
use musqratt_kit::layer::tls::TlsConfig;
use tracing_subscriber::EnvFilter;

/// jemalloc instead of glibc's malloc (docs/adr/0008-jemalloc.md): size classes without a header
/// per chunk cut an idle connection's RSS by ~13 % (it is about eight small allocations), and
/// QoS 1 4→2 throughput rose ~40 % (not profiled: messages freed on another shard than the one
/// that allocated them are the likely glibc cost).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Exit code of a configuration that cannot be used (the same as a command-line error).
const EXIT_CONFIG: u8 = 2;

/// MusQraTT: an MQTT broker for the edge.
#[derive(Debug, Parser)]
#[command(name = "musqratt", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the broker (the default when no command is given).
    Broker(BrokerArgs),
    /// Publish messages (like mosquitto_pub).
    Pub(musqratt_client::PubArgs),
    /// Subscribe and print messages (like mosquitto_sub).
    Sub(musqratt_client::SubArgs),
    /// An interactive client: connect, disconnect, sub, unsub, pub, help.
    Shell(musqratt_client::ShellArgs),
    /// Measure any broker: latency, throughput, fanout, conns, floor (docs/BENCHMARKS.md).
    Bench(musqratt_bench::Args),
    /// Create or edit a password file (like mosquitto_passwd; Mosquitto reads it too).
    Passwd(PasswdArgs),
    /// A running broker's numbers in the terminal, like htop (from its `[http]` listener).
    Top(TopArgs),
}

/// `musqratt top [--url URL] [--interval-ms N] [--once]`.
#[derive(Debug, Args)]
struct TopArgs {
    /// The broker's admin listener (`[http] listen`): `http://[user:password@]host:port`.
    #[arg(long, default_value = "http://127.0.0.1:9090")]
    url: String,
    /// Time between two frames, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
    /// Print one frame (after two reads one interval apart, for the rates) and exit.
    #[arg(long)]
    once: bool,
}

/// `musqratt passwd [-c] [-b] [-D] FILE USER [PASSWORD]`.
#[derive(Debug, Args)]
struct PasswdArgs {
    /// Create a new file, replacing any existing one.
    #[arg(short = 'c', conflicts_with = "delete")]
    create: bool,
    /// Take the password from the command line (it shows in the shell history and `ps`).
    #[arg(short = 'b', conflicts_with = "delete")]
    batch: bool,
    /// Delete the user.
    #[arg(short = 'D')]
    delete: bool,
    /// The hash of the new entry.
    #[arg(short = 'H', value_enum, default_value = "sha512-pbkdf2")]
    hash: musqratt::passwd::HashKind,
    /// PBKDF2 iterations of the new entry.
    #[arg(short = 'I', default_value_t = musqratt::passwd::default_iterations())]
    iterations: u32,
    /// The password file.
    file: PathBuf,
    /// The user name.
    user: String,
    /// The password, with `-b`.
    password: Option<String>,
}

/// Which runtime serves the broker (docs/RUNTIMES.md).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Runtime {
    /// Thread per core on tokio.
    #[default]
    Tokio,
    /// Thread per core on io_uring (compio), with an epoll fallback.
    IoUring,
    /// Blocking sockets and threads only: the stand-in for CompositeOS.
    Blocking,
}

#[derive(Debug, Default, Args)]
struct BrokerArgs {
    /// TOML configuration file (keys in docs/CONFIG.md).
    #[arg(long, short, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where to listen: mqtt://host:port (MQTT over TCP), mqtts://host:port (MQTT over TLS, the
    /// file's [tls] table) or mqtt-sn://host:port (MQTT-SN over UDP); mqtt+identity://host:port is MQTT over TCP through the identity byte-stream layer
    /// (to measure the layers' cost). Repeat for several. Replaces the file's `listeners`.
    #[arg(long = "listen", short, value_name = "URL")]
    listen: Vec<ListenUrl>,
    /// Shards (threads); default: one per core. Replaces the file's `threads`.
    #[arg(long, short, value_name = "N")]
    threads: Option<usize>,
    /// Log filter: a level (error, warn, info, debug, trace) or tracing directives. Default:
    /// RUST_LOG, else info.
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
    /// The runtime serving the broker.
    #[arg(long, value_enum, default_value_t = Runtime::Tokio)]
    runtime: Runtime,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let args = match cli.command {
        None => BrokerArgs::default(),
        Some(Command::Broker(args)) => args,
        Some(Command::Pub(args)) => return client(musqratt_client::pub_cmd(args)),
        Some(Command::Sub(args)) => return client(musqratt_client::sub_cmd(args)),
        Some(Command::Shell(args)) => return client(musqratt_client::shell(args)),
        Some(Command::Bench(args)) => return bench(args),
        Some(Command::Passwd(args)) => return passwd(args),
        Some(Command::Top(args)) => {
            let every = core::time::Duration::from_millis(args.interval_ms.max(100));
            return match musqratt::top::run(&args.url, every, args.once) {
                Ok(()) => ExitCode::SUCCESS,
                Err(message) => {
                    eprintln!("musqratt top: {message}");
                    ExitCode::FAILURE
                }
            };
        }
    };
    if let Err(message) = init_logging(args.log_level.as_deref()) {
        eprintln!("musqratt: {message}");
        return ExitCode::from(EXIT_CONFIG);
    }
    // jemalloc purges dirty pages only when threads allocate or free, unless its background
    // thread does it: the memory of connections going idle (their tasks and I/O registrations,
    // freed by hibernation) stayed resident in a quiet broker without it (docs/adr/0009). One
    // such thread: jemalloc would start one per core, competing with the shards for them.
    let _ = tikv_jemalloc_ctl::max_background_threads::write(1);
    if let Err(error) = tikv_jemalloc_ctl::background_thread::write(true) {
        tracing::warn!(%error, "jemalloc's background purging not enabled");
    }
    raise_open_files_limit();
    let mut config = match &args.config {
        None => FileConfig::default(),
        Some(path) => match load(path) {
            Ok(config) => config,
            Err(message) => {
                eprintln!("musqratt: {message}");
                return ExitCode::from(EXIT_CONFIG);
            }
        },
    };
    if !args.listen.is_empty() {
        config.listeners = args.listen;
    }
    if let Some(threads) = args.threads {
        config.threads = threads;
    }
    let auth = match authentication(&config) {
        Ok(auth) => auth,
        Err(message) => {
            eprintln!("musqratt: {message}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    // The [tls] files are read here: one that cannot be used stops the broker, naming it.
    let tls = config.tls_config();
    let broker = tls.and_then(|tls| Ok((config.broker_config_with(tls.as_ref())?, tls)));
    let (broker, tls) = match broker {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("musqratt: TLS: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match run(&config, broker, args.runtime, auth.as_ref(), tls) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("musqratt: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a client command to completion on a small tokio runtime.
fn client(command: impl Future<Output = anyhow::Result<()>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("musqratt: cannot start the client runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("musqratt: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the bench on a multi-threaded runtime: the load generator must not be the bottleneck.
fn bench(args: musqratt_bench::Args) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("musqratt: cannot start the bench runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(musqratt_bench::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("musqratt bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// `musqratt passwd`: without `-b`, the password is asked twice on the terminal (not echoed),
/// or read as one line from standard input when that is not a terminal (scripts).
fn passwd(args: PasswdArgs) -> ExitCode {
    use musqratt::passwd::PasswdAction;
    let action = if args.delete {
        PasswdAction::Delete { user: args.user }
    } else {
        let password = match (args.batch, args.password) {
            (true, Some(password)) => password,
            (true, None) => {
                eprintln!("musqratt passwd: -b needs the password after the user name");
                return ExitCode::from(EXIT_CONFIG);
            }
            (false, Some(_)) => {
                eprintln!("musqratt passwd: a password on the command line needs -b");
                return ExitCode::from(EXIT_CONFIG);
            }
            (false, None) => match read_password() {
                Ok(password) => password,
                Err(message) => {
                    eprintln!("musqratt passwd: {message}");
                    return ExitCode::FAILURE;
                }
            },
        };
        PasswdAction::Set {
            user: args.user,
            password,
            create: args.create,
            hash: args.hash,
            iterations: args.iterations,
        }
    };
    match action.apply(&args.file) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("musqratt passwd: {error}");
            ExitCode::FAILURE
        }
    }
}

fn read_password() -> Result<String, String> {
    if !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map_err(|e| format!("cannot read stdin: {e}"))?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_owned());
    }
    let first = rpassword::prompt_password("Password: ").map_err(|e| e.to_string())?;
    let again = rpassword::prompt_password("Reenter password: ").map_err(|e| e.to_string())?;
    if first != again {
        return Err("passwords do not match".into());
    }
    Ok(first)
}

fn init_logging(level: Option<&str>) -> Result<(), String> {
    let filter = match level {
        Some(level) => {
            EnvFilter::try_new(level).map_err(|e| format!("--log-level {level}: {e}"))?
        }
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    Ok(())
}

fn load(path: &PathBuf) -> Result<FileConfig, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config {}: {e}", path.display()))?;
    FileConfig::parse(&text).map_err(|e| format!("invalid config {}: {e}", path.display()))
}

/// The authenticator, and what SIGHUP reloads besides its files: the JWT source, whose
/// `public_key_file` is re-read.
struct Authentication {
    auth: FileAuth,
    jwt: Option<Arc<JwtSource>>,
}

/// The `[auth]` files, loaded; `None` when everyone is let in unchecked (no file, anonymous
/// clients allowed), which costs nothing per CONNECT.
fn authentication(config: &FileConfig) -> Result<Option<Authentication>, String> {
    if let Some(notice) = config.anonymous_refused_notice() {
        tracing::warn!("{notice}");
    }
    if config.open_access() {
        return Ok(None);
    }
    let files = Files::load(&config.file_auth_config()).map_err(|e| e.to_string())?;
    let threads = std::thread::available_parallelism().map_or(1, core::num::NonZeroUsize::get);
    let files = SharedFiles::new(files);
    // Tried in this order after the password file.
    let mut sources: Vec<Arc<dyn Source>> = Vec::new();
    if !config.auth.scram.is_empty() {
        // SCRAM reads the same (reloaded) password file; an exchange lasts at most as long as a
        // client has to connect.
        let methods: Vec<_> = config.auth.scram.iter().map(|m| m.0).collect();
        let timeout = config.engine_config().connect_timeout;
        let scram = ScramSource::new(files.clone(), &methods, timeout, scram::MAX_EXCHANGES);
        sources.push(Arc::new(scram));
    }
    let jwt = jwt_source(config)?;
    if let Some(jwt) = &jwt {
        sources.push(Arc::clone(jwt) as Arc<dyn Source>);
    }
    // The HTTP service last: it is remote, the others decide locally.
    if let Some(http) = config.http_auth_config() {
        sources.push(Arc::new(HttpSource::start(&http).map_err(|e| e.to_string())?));
    }
    FileAuth::with_shared(files, threads, sources)
        .and_then(|auth| auth.throttled(config.throttle_config()))
        .map(|auth| Some(Authentication { auth, jwt }))
        .map_err(|e| format!("cannot start the authentication threads: {e}"))
}

/// The `[auth.jwt]` source, when configured: asked after the password file (a user that file
/// has is decided there), before the anonymous rule. Its key is read at start and on SIGHUP.
fn jwt_source(config: &FileConfig) -> Result<Option<Arc<JwtSource>>, String> {
    let Some(jwt) = config.auth.jwt.source_config() else { return Ok(None) };
    let source = JwtSource::new(&jwt).map_err(|e| e.to_string())?;
    Ok(Some(Arc::new(source)))
}

/// Reloads the `[auth]` files, the JWT public key and the `[tls]` files on every SIGHUP: new
/// clients are decided by the new files and key and get the new certificate, connected ones
/// keep their access and session; a file that no longer loads keeps the old one. Each reload
/// stands alone: a broken ACL file does not hold back a renewed certificate.
#[cfg(unix)]
fn reload_on_hangup(
    signals: &tokio::runtime::Runtime,
    config: &FileConfig,
    authentication: Option<&Authentication>,
    tls: Option<TlsConfig>,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let _guard = signals.enter();
    let mut hangup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    let files = config.file_auth_config();
    let auth = authentication.map(|a| a.auth.clone());
    let jwt = authentication.and_then(|a| a.jwt.clone());
    signals.spawn(async move {
        while hangup.recv().await.is_some() {
            match auth.as_ref().map(|auth| Files::load(&files).map(|loaded| auth.reload(loaded))) {
                Some(Ok(())) => tracing::info!("SIGHUP: password and ACL files reloaded"),
                Some(Err(error)) => {
                    tracing::error!(%error, "SIGHUP: files not reloaded, the old ones stay")
                }
                None => {}
            }
            // Read on this thread: a few files, while the shards go on serving.
            match tls.as_ref().map(TlsConfig::reload) {
                Some(Ok(())) => tracing::info!("SIGHUP: TLS certificate and key reloaded"),
                Some(Err(error)) => {
                    tracing::error!(%error, "SIGHUP: TLS files not reloaded, the old ones stay")
                }
                None => {}
            }
            match jwt.as_deref().map(JwtSource::reload) {
                Some(Ok(true)) => tracing::info!("SIGHUP: JWT public key reloaded"),
                Some(Err(error)) => {
                    tracing::error!(%error, "SIGHUP: JWT key not reloaded, the old one stays")
                }
                None | Some(Ok(false)) => {}
            }
        }
    });
    Ok(())
}

/// Runs the broker until SIGTERM or SIGINT, then stops it gracefully.
fn run(
    config: &FileConfig,
    mut broker: musqratt::BrokerConfig,
    runtime: Runtime,
    auth: Option<&Authentication>,
    tls: Option<TlsConfig>,
) -> anyhow::Result<()> {
    let signals = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the signal runtime")?;
    // Handlers first: a signal arriving while the broker starts must already stop it gracefully.
    let stop = signals.block_on(async { stop_signal() })?;
    if let Some(auth) = auth {
        broker.auth = musqratt_kit::Auth::new(auth.auth.clone());
        broker.engine.authenticate = true;
    }
    #[cfg(unix)]
    if auth.is_some() || tls.is_some() {
        reload_on_hangup(&signals, config, auth, tls)?;
    }
    let shards = broker.shard_count();
    let sn_listeners = broker.sn_listeners.clone();
    match runtime {
        Runtime::Tokio => {
            let broker = Broker::start(broker).context("cannot start the broker")?;
            let source = broker.metrics_source();
            let _http = http_server(config, source, broker.local_addrs())?;
            log_listening(broker.local_addrs(), "mqtt", "tokio", shards);
            log_listening(broker.sn_local_addrs(), "mqtt-sn", "tokio", shards);
            let handle = broker.shutdown_handle();
            let reason = signals.block_on(async {
                tokio::select! {
                    name = stop => name,
                    () = handle.stopping() => "shard failure",
                }
            });
            tracing::info!(reason, "shutting down");
            broker.shutdown().context("broker failed")?;
        }
        Runtime::IoUring => {
            if !sn_listeners.is_empty() {
                anyhow::bail!(
                    "the io-uring runtime does not serve MQTT-SN (mqtt-sn://) yet: use \
                     --runtime tokio or --runtime blocking (docs/MQTT-SN.md)"
                );
            }
            let broker = musqratt_compio::start(broker).context("cannot start the broker")?;
            let source = broker.metrics_source();
            let _http = http_server(config, source, broker.local_addrs())?;
            log_listening(broker.local_addrs(), "mqtt", "io-uring", shards);
            let reason = signals.block_on(stop);
            tracing::info!(reason, "shutting down");
            broker.shutdown();
        }
        Runtime::Blocking => {
            if config.mqtt_sn.broadcast.is_some() {
                tracing::warn!(
                    "the blocking runtime sends no ADVERTISE: mqtt_sn.broadcast ignored"
                );
            }
            let broker = musqratt_blocking::start(broker).context("cannot start the broker")?;
            let source = broker.metrics_source();
            let _http = http_server(config, source, broker.local_addrs())?;
            log_listening(broker.local_addrs(), "mqtt", "blocking", shards);
            log_listening(broker.sn_local_addrs(), "mqtt-sn", "blocking", shards);
            let reason = signals.block_on(stop);
            tracing::info!(reason, "shutting down");
            broker.shutdown();
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// The `[http]` admin listener, when `http.listen` is set, serving what `source` reads.
/// `bound`: the addresses the stream listeners were bound to, in the order of the
/// configuration (for the WebSocket listener's port when it was given as 0).
fn http_server(
    config: &FileConfig,
    source: musqratt_kit::MetricsSource,
    bound: &[core::net::SocketAddr],
) -> anyhow::Result<Option<HttpServer>> {
    let Some(listen) = config.http.listen else { return Ok(None) };
    let admin = musqratt::http::Admin { source, websocket: websocket_endpoint(config, bound) };
    let server = HttpServer::start(listen, config.http.basic_auth(), admin)
        .with_context(|| format!("cannot listen on http.listen {listen}"))?;
    Ok(Some(server))
}

/// The first `ws://` (else `wss://`) listener, for the dashboard page's MQTT client.
fn websocket_endpoint(
    config: &FileConfig,
    bound: &[core::net::SocketAddr],
) -> Option<musqratt::http::WebSocketEndpoint> {
    use musqratt::config::{ListenLayer, Scheme};
    let streams: Vec<_> =
        config.listeners.iter().filter(|l| l.scheme == Scheme::Mqtt).enumerate().collect();
    let (index, listener) = streams
        .iter()
        .find(|(_, l)| l.layer == Some(ListenLayer::Ws))
        .or_else(|| streams.iter().find(|(_, l)| l.layer == Some(ListenLayer::Wss)))?;
    let addr = bound.get(*index).copied().unwrap_or(listener.addr);
    Some(musqratt::http::WebSocketEndpoint {
        scheme: if listener.layer == Some(ListenLayer::Wss) { "wss" } else { "ws" },
        host: (!addr.ip().is_unspecified()).then(|| addr.ip().to_string()),
        port: addr.port(),
        path: listener.path.clone().unwrap_or_else(|| "/mqtt".to_owned()),
    })
}

/// Every client costs an open file: take the hard limit rather than the shell's soft default
/// (often 1,024), as Mosquitto's packages do with `LimitNOFILE`, and say what it is.
fn raise_open_files_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open files limit"),
        Err(error) => tracing::warn!(%error, "open files limit not raised"),
    }
}

fn log_listening(addrs: &[core::net::SocketAddr], protocol: &str, runtime: &str, shards: usize) {
    for addr in addrs {
        tracing::info!(%addr, protocol, runtime, shards, "listening");
    }
}

/// A future that completes with the name of the first stop signal received.
#[cfg(unix)]
fn stop_signal() -> anyhow::Result<impl Future<Output = &'static str>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    })
}

/// A future that completes with the name of the first stop signal received.
#[cfg(not(unix))]
fn stop_signal() -> anyhow::Result<impl Future<Output = &'static str>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    })
}
