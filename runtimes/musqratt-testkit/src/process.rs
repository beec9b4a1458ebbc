//! Brokers as processes, for the tests that run the `musqratt` binary (or Mosquitto) the way a
//! user does: [`BrokerProcess`] starts one with a configuration file, waits until its ports
//! accept connections, and kills it when dropped, so that a failing assertion (a panic) leaves
//! no broker behind holding a port or a CPU. The helpers those tests share ([`scratch_dir`],
//! [`free_port`], [`have_program`]) are here too, once.
//!
//! ```no_run
//! use musqratt_testkit::{BrokerProcess, free_port, scratch_dir};
//!
//! let dir = scratch_dir("example");
//! let port = free_port();
//! let config = format!("listeners = [\"mqtt://127.0.0.1:{port}\"]\n");
//! let broker = BrokerProcess::musqratt("target/debug/musqratt", &dir, "tokio", &config)
//!     .port(port)
//!     .start();
//! broker.reload(); // SIGHUP
//! let log = broker.stop();
//! assert!(!log.contains("panicked"));
//! ```

use core::time::Duration;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::{JoinHandle, ThreadId};
use std::time::Instant;

/// How long a broker gets to accept connections on its ports.
const START_WITHIN: Duration = Duration::from_secs(10);

/// Which test thread holds the broker-process lock, and how many times.
struct Holder {
    thread: Option<ThreadId>,
    depth: usize,
}

static HOLDER: Mutex<Holder> = Mutex::new(Holder { thread: None, depth: 0 });
static RELEASED: Condvar = Condvar::new();

/// The lock of [`one_broker_process_at_a_time`]; released when dropped.
#[derive(Debug)]
#[must_use = "the lock is released when this is dropped"]
pub struct Serial(());

impl Drop for Serial {
    fn drop(&mut self) {
        let mut holder = HOLDER.lock().unwrap_or_else(PoisonError::into_inner);
        holder.depth -= 1;
        if holder.depth == 0 {
            holder.thread = None;
            RELEASED.notify_all();
        }
    }
}

/// Runs the tests of one test binary that start broker processes one at a time: hold the
/// guard for the test's whole body ([`BrokerProcess`] holds it too, for its lifetime). Each
/// picks a free port by binding port 0 and letting it go; two tests running at once could be
/// given the same port, and since every shard binds with `SO_REUSEPORT`, both brokers would
/// then share it and take each other's clients.
///
/// The thread holding it may take it again (a test holding it starts brokers, which take it
/// too); other threads wait. A panicking test releases it as it unwinds.
pub fn one_broker_process_at_a_time() -> Serial {
    let me = std::thread::current().id();
    let mut holder = HOLDER.lock().unwrap_or_else(PoisonError::into_inner);
    while holder.thread.is_some_and(|thread| thread != me) {
        holder = RELEASED.wait(holder).unwrap_or_else(PoisonError::into_inner);
    }
    holder.thread = Some(me);
    holder.depth += 1;
    Serial(())
}

/// A directory of its own for a test's files (configuration, password files, certificates):
/// `musqratt-NAME-PID` under the temporary directory, created. The process id keeps two test
/// binaries apart; `name` keeps the tests of one binary apart.
///
/// # Panics
/// When the directory cannot be created.
#[must_use]
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("musqratt-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    dir
}

/// A TCP port on 127.0.0.1 that nothing listens on now (bound to port 0 and let go). Another
/// process may take it before the broker does: start brokers under
/// [`one_broker_process_at_a_time`].
///
/// # Panics
/// When no port can be bound.
#[must_use]
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}

/// Whether `program` can be started at all (whatever `--help` exits with: Mosquitto's tools
/// exit 1 on it). A missing one is reported and the test should return early, except in CI,
/// where it fails ([`crate::tool_available`]).
#[must_use]
pub fn have_program(program: &str) -> bool {
    let runs = Command::new(program).arg("--help").output().is_ok();
    runs || crate::tool_available(&[program, "--help"])
}

/// A broker process about to start: what to run and which ports to wait for.
#[derive(Debug)]
pub struct Launch {
    command: Command,
    /// `--log-level` of a musqratt broker (added to the command at start).
    log_level: Option<String>,
    config: Option<PathBuf>,
    ports: Vec<u16>,
}

impl Launch {
    /// The `--log-level` filter of a musqratt broker (`info` unless set).
    #[must_use]
    pub fn log_level(mut self, filter: &str) -> Self {
        self.log_level = Some(filter.to_owned());
        self
    }

    /// Waits at start until `port` on 127.0.0.1 accepts connections (one call per listener).
    #[must_use]
    pub fn port(mut self, port: u16) -> Self {
        self.ports.push(port);
        self
    }

    /// Starts the broker and waits for its ports.
    ///
    /// # Panics
    /// When it cannot be started, exits before its ports accept connections, or is not
    /// listening within 10 s (the panic message carries its log).
    pub fn start(self) -> BrokerProcess {
        let ports = self.ports.clone();
        let mut broker = self.spawn();
        let deadline = Instant::now() + START_WITHIN;
        for port in ports {
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                if let Ok(Some(status)) = broker.child.try_wait() {
                    panic!("the broker exited: {status}\n{}", broker.stop());
                }
                assert!(Instant::now() < deadline, "the broker did not start: {}", broker.log());
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        broker
    }

    /// Starts the broker without waiting for anything: for brokers expected to refuse their
    /// configuration and exit ([`BrokerProcess::wait_exit`]).
    ///
    /// # Panics
    /// When it cannot be started.
    pub fn spawn(mut self) -> BrokerProcess {
        let serial = one_broker_process_at_a_time();
        if let Some(config) = &self.config {
            let level = self.log_level.as_deref().unwrap_or("info");
            self.command.args(["--log-level", level, "--config"]).arg(config);
        }
        let mut child = self
            .command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {:?}: {error}", self.command));
        // Drained as it comes: a broker logging at info must never block on a full pipe.
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&log);
        let reader = std::thread::spawn(move || {
            let mut chunk = [0; 4096];
            while let Ok(n @ 1..) = stderr.read(&mut chunk) {
                let text = String::from_utf8_lossy(&chunk[..n]);
                sink.lock().unwrap_or_else(PoisonError::into_inner).push_str(&text);
            }
        });
        BrokerProcess { child, log, reader: Some(reader), _serial: serial }
    }
}

/// A broker process running for a test, killed when dropped (a panicking test included), and
/// holding [`one_broker_process_at_a_time`] meanwhile. Its stderr (the log) is collected.
#[derive(Debug)]
pub struct BrokerProcess {
    child: Child,
    log: Arc<Mutex<String>>,
    reader: Option<JoinHandle<()>>,
    _serial: Serial,
}

impl BrokerProcess {
    /// `BINARY broker --runtime RUNTIME --log-level info --config DIR/musqratt.toml`, with
    /// `config` written to that file. `binary` is the test's `env!("CARGO_BIN_EXE_musqratt")`.
    ///
    /// # Panics
    /// When the file cannot be written.
    #[must_use]
    pub fn musqratt(binary: &str, dir: &Path, runtime: &str, config: &str) -> Launch {
        let path = dir.join("musqratt.toml");
        std::fs::write(&path, config).expect("the configuration file is written");
        let mut command = Command::new(binary);
        command.args(["broker", "--runtime", runtime]);
        Launch { command, log_level: None, config: Some(path), ports: Vec::new() }
    }

    /// Any other broker (Mosquitto as a peer), run as `command` says.
    #[must_use]
    pub fn command(command: Command) -> Launch {
        Launch { command, log_level: None, config: None, ports: Vec::new() }
    }

    /// The process id.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGHUP: musqratt (and Mosquitto) reload their password, ACL and key files. Returns
    /// at once; the reload happens on the broker's own time.
    ///
    /// # Panics
    /// When the signal cannot be sent.
    pub fn reload(&self) {
        let sent = Command::new("kill").args(["-HUP", &self.pid().to_string()]).status();
        assert!(sent.is_ok_and(|status| status.success()), "SIGHUP not sent");
    }

    /// What the broker has logged so far.
    #[must_use]
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Waits up to `within` for the broker to exit by itself: its status, or `None` if it is
    /// still running.
    ///
    /// # Panics
    /// When the process cannot be waited for.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("the broker can be waited for") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the broker (if it still runs) and gives its whole log.
    #[must_use = "the log is the broker's account of the test"]
    pub fn stop(mut self) -> String {
        self.kill();
        self.log()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `GET path` over HTTP/1.1 on 127.0.0.1:`port` (a broker's admin listener), read until the
/// server closes: the status line and the body.
///
/// # Panics
/// When nothing answers or the answer is not HTTP.
#[must_use]
pub fn http_get(port: u16, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("the admin listener answers");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").expect("a request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("an answer");
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    (head.lines().next().unwrap_or_default().to_owned(), body.to_owned())
}

/// [`http_get`] of a path that must answer `200 OK`: its body.
///
/// # Panics
/// As [`http_get`], or when the status is not 200.
#[must_use]
pub fn http_get_ok(port: u16, path: &str) -> String {
    let (status, body) = http_get(port, path);
    assert!(status.starts_with("HTTP/1.1 200 OK"), "{path}: {status}");
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process that listens (Python's one-line server stands in for a broker) is waited for,
    /// its output collected, and killed on drop: the port is free again afterwards.
    #[test]
    fn starts_waits_collects_and_kills_on_drop() {
        if !crate::tool_available(&["python3", "-c", "pass"]) {
            return;
        }
        let port = free_port();
        let script = format!(
            "import socket,sys,time\nsys.stderr.write('listening\\n');sys.stderr.flush()\n\
             s=socket.socket();s.bind(('127.0.0.1',{port}));s.listen()\ntime.sleep(60)"
        );
        let mut command = Command::new("python3");
        command.args(["-c", &script]);
        let broker = BrokerProcess::command(command).port(port).start();
        assert!(TcpStream::connect(("127.0.0.1", port)).is_ok());
        let pid = broker.pid();
        drop(broker);
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err(), "{pid} still listens");

        let mut command = Command::new("python3");
        command.args(["-c", "import sys; sys.stderr.write('bye'); sys.exit(3)"]);
        let mut exiting = BrokerProcess::command(command).spawn();
        assert_eq!(exiting.wait_exit(Duration::from_secs(10)).and_then(|s| s.code()), Some(3));
        assert_eq!(exiting.stop(), "bye");
    }

    /// The lock is re-entrant on one thread and exclusive across threads.
    #[test]
    fn the_lock_serializes_threads_not_a_thread() {
        let outer = one_broker_process_at_a_time();
        let inner = one_broker_process_at_a_time();
        let (sent, got) = std::sync::mpsc::channel();
        let other = std::thread::spawn(move || {
            let _lock = one_broker_process_at_a_time();
            sent.send(()).unwrap();
        });
        drop(inner);
        assert!(got.recv_timeout(Duration::from_millis(200)).is_err(), "taken while held");
        drop(outer);
        assert!(got.recv_timeout(Duration::from_secs(10)).is_ok(), "never released");
        other.join().unwrap();
    }

    /// A test panicking while a broker runs kills it as it unwinds.
    #[test]
    fn a_panicking_test_leaks_no_broker() {
        if !crate::tool_available(&["python3", "-c", "pass"]) {
            return;
        }
        let port = free_port();
        let script = format!(
            "import socket,time\ns=socket.socket();s.bind(('127.0.0.1',{port}));s.listen()\n\
             time.sleep(60)"
        );
        let panicked = std::thread::spawn(move || {
            let mut command = Command::new("python3");
            command.args(["-c", &script]);
            let _broker = BrokerProcess::command(command).port(port).start();
            panic!("an assertion fails");
        })
        .join();
        assert!(panicked.is_err());
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err(), "the broker outlived its test");
    }
}
