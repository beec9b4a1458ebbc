//! MusQraTT's persistence store: writes the engine's [`Record`]s ([`musqratt_engine::Action::Store`])
//! to one SQLite database in WAL mode and reads them back at start (docs/PERSISTENCE.md; the
//! choice and its measurements: docs/adr/0017-persistence-store.md).
//!
//! Runtime-neutral (std threads only), for every runtime: a runtime collects the records of
//! one step, calls [`Store::write`] once, then writes the step's packets. A write is handed to
//! the operating system when it returns (a `kill -9` loses nothing written); what reaches the
//! disk and when is [`Fsync`]'s choice.
//!
//! One broker per store: the database is opened with an exclusive lock, and a second broker on
//! the same path is refused with [`StoreError::Locked`].

mod codec;
mod reserve;
mod runtime;

use core::sync::atomic::{AtomicBool, Ordering};
use core::time::Duration;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use musqratt_engine::proto::PacketId;
use musqratt_engine::{Instant, Record, StoredDelivery};
use rusqlite::{Connection, ErrorCode, params};

pub use codec::Corrupt;
use codec::TimeBase;
pub use reserve::RESERVE_BYTES;
use reserve::Reserve;
pub use runtime::{Durable, Steps};

/// The on-disk format this crate writes and reads (docs/PERSISTENCE.md, "Format").
pub const FORMAT_VERSION: i64 = 1;

/// When writes reach the disk, beyond the operating system (`[persistence] fsync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fsync {
    /// Never synced by the broker: survives a crash of the broker (`kill -9`), not of the
    /// machine (power loss may lose or corrupt the store).
    Never,
    /// Synced this often: a power loss loses at most about this much.
    Interval(Duration),
    /// Every write is synced before [`Store::write`] returns (and so before the
    /// acknowledgements it holds go out).
    Always,
}

/// Why the store could not be opened, written or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Another process (a second broker) holds the store.
    #[error("{0}: another broker is using this store")]
    Locked(PathBuf),
    /// The store was written by another version of the format.
    #[error("{path}: store format version {found}, this broker reads version {FORMAT_VERSION}")]
    Version {
        /// The database file.
        path: PathBuf,
        /// The version found.
        found: i64,
    },
    /// SQLite refused (not a database, corrupt, disk full...).
    #[error("{path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
}

/// What [`Store::load`] found.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The state to restore, in the order [`musqratt_engine::Engine::restore`] takes it:
    /// retained messages, sessions, then each session's messages in order.
    pub records: Vec<Record>,
    /// Records that did not decode, with what was wrong: skipped (and left in the store).
    pub corrupt: Vec<(&'static str, Corrupt)>,
}

struct Inner {
    conn: Connection,
    path: PathBuf,
    buf: BytesMut,
    reserve: Reserve,
}

/// An open store; cheap to clone (shared by every shard).
#[derive(Clone)]
pub struct Store {
    inner: Arc<Mutex<Inner>>,
    time: TimeBase,
    /// The last write failed and there has not been room since ([`Store::is_full`]); read
    /// without the lock by every shard after each step.
    full: Arc<AtomicBool>,
    /// Dropped with the last clone: stops the sync thread.
    _stop: Option<Arc<mpsc::Sender<()>>>,
}

impl core::fmt::Debug for Store {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS retained (topic BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sessions (client_id BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS queue (client_id BLOB NOT NULL, seq INTEGER NOT NULL, value BLOB NOT NULL,
    PRIMARY KEY (client_id, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS inbound_qos2 (client_id BLOB NOT NULL, packet_id INTEGER NOT NULL,
    PRIMARY KEY (client_id, packet_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS wills (client_id BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbound_qos2 (client_id BLOB NOT NULL, seq INTEGER NOT NULL,
    packet_id INTEGER NOT NULL, released INTEGER NOT NULL,
    PRIMARY KEY (client_id, seq)) WITHOUT ROWID;
";

impl Store {
    /// Opens (or creates) the store at `path`. `epoch` is the wall-clock time of the engine's
    /// `Instant::ZERO` (the runtime's clock start), to keep message expiry in wall-clock time.
    ///
    /// # Errors
    /// [`StoreError`]: locked by another broker, another format version, not a database.
    pub fn open(path: &Path, fsync: Fsync, epoch: SystemTime) -> Result<Self, StoreError> {
        let err = |source| StoreError::Sqlite { path: path.to_owned(), source };
        let conn = Connection::open(path).map_err(err)?;
        // The exclusive lock is taken by the first write below and kept.
        let pragmas = format!(
            "PRAGMA locking_mode = EXCLUSIVE; PRAGMA busy_timeout = 0; \
             PRAGMA journal_mode = WAL; PRAGMA synchronous = {}; PRAGMA wal_autocheckpoint = {};",
            if fsync == Fsync::Always { "FULL" } else { "OFF" },
            if matches!(fsync, Fsync::Interval(_)) { 0 } else { 1000 },
        );
        let locked = |e: rusqlite::Error| match e.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
                StoreError::Locked(path.to_owned())
            }
            _ => err(e),
        };
        conn.execute_batch(&pragmas).map_err(locked)?;
        conn.execute_batch(SCHEMA).map_err(locked)?;
        let found: Option<i64> = conn
            .query_row("SELECT value FROM meta WHERE key = 'format'", [], |row| row.get(0))
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(err(e)),
            })?;
        match found {
            None => {
                conn.execute("INSERT INTO meta VALUES ('format', ?1)", [FORMAT_VERSION])
                    .map_err(locked)?;
            }
            Some(FORMAT_VERSION) => {
                conn.execute("UPDATE meta SET value = value WHERE key = 'format'", [])
                    .map_err(locked)?;
            }
            Some(found) => return Err(StoreError::Version { path: path.to_owned(), found }),
        }
        let epoch = epoch.duration_since(UNIX_EPOCH).unwrap_or_default().as_micros();
        let time = TimeBase { epoch_unix_micros: u64::try_from(epoch).unwrap_or(u64::MAX) };
        let mut reserve = Reserve::new(path, RESERVE_BYTES);
        let full = match reserve.make() {
            Ok(()) => false,
            Err(error) => {
                tracing::error!(path = %path.display(), %error, "persistence: no room for the \
                    reserve; new QoS 1 and 2 messages for durable sessions are refused until there is");
                true
            }
        };
        let inner = Arc::new(Mutex::new(Inner {
            conn,
            path: path.to_owned(),
            buf: BytesMut::new(),
            reserve,
        }));
        let stop = match fsync {
            Fsync::Interval(every) => Some(Arc::new(spawn_sync(inner.clone(), path, every))),
            _ => None,
        };
        Ok(Self { inner, time, full: Arc::new(AtomicBool::new(full)), _stop: stop })
    }

    /// Writes one step's records in one transaction, in order. When it returns they are with
    /// the operating system (and on disk with [`Fsync::Always`]).
    ///
    /// # Errors
    /// [`StoreError::Sqlite`]: the write failed (disk full, I/O error); nothing of it is kept.
    ///
    /// A write that fails marks the store full ([`Store::is_full`]). When it failed for want
    /// of space and the reserve is still there, the reserve is deleted and the write tried
    /// again at once: what the engine accepted before it heard that the store is full is
    /// written, and the shard goes on (docs/PERSISTENCE.md, "A full disk").
    pub fn write(&self, records: &[Record]) -> Result<(), StoreError> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let Inner { conn, path, buf, reserve } = &mut *inner;
        let err = |source| StoreError::Sqlite { path: path.clone(), source };
        let first = write_tx(conn, self.time, records, buf);
        let Err(error) = first else { return Ok(()) };
        if !self.full.swap(true, Ordering::Relaxed) {
            tracing::error!(path = %path.display(), %error, "persistence: the store cannot write; \
                new QoS 1 and 2 messages for durable sessions are refused until it can");
        }
        if error.sqlite_error_code() != Some(ErrorCode::DiskFull) || !reserve.release() {
            return Err(err(error));
        }
        tracing::warn!(path = %path.display(), "persistence: disk full, the reserve released");
        write_tx(conn, self.time, records, buf).map_err(err)
    }

    /// Whether the store cannot write (its last write failed, or there was no room for the
    /// reserve): the runtime tells its engine ([`musqratt_engine::Engine::set_store_full`]).
    /// While it is, this tries at most once a second to make the reserve
    /// again (with as much room again to spare); once it can, the store is writable again (the next write says if not).
    #[must_use]
    pub fn is_full(&self) -> bool {
        if !self.full.load(Ordering::Relaxed) {
            return false;
        }
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if !self.full.load(Ordering::Relaxed) {
            return false;
        }
        if !inner.reserve.due() {
            return true;
        }
        match inner.reserve.make_again() {
            Ok(()) => {
                self.full.store(false, Ordering::Relaxed);
                tracing::warn!(path = %inner.path.display(), "persistence: room again, the \
                    reserve made; new messages are accepted");
                false
            }
            Err(_) => true,
        }
    }

    /// Reads the state to restore at `now` (the engine's time). Records that do not decode are
    /// reported in [`Loaded::corrupt`] and skipped, never a panic.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`]: the database cannot be read.
    ///
    /// Of each session's queue, at most `head` messages are read (its head); a
    /// [`Record::QueueTail`] says where the rest ends.
    pub fn load(&self, head: usize) -> Result<Loaded, StoreError> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let err = |source| StoreError::Sqlite { path: inner.path.clone(), source };
        let mut loaded = Loaded::default();
        let conn = &inner.conn;
        let mut retained =
            conn.prepare("SELECT topic, value FROM retained ORDER BY topic").map_err(err)?;
        let mut rows = retained.query([]).map_err(err)?;
        while let Some(row) = rows.next().map_err(err)? {
            let value: Vec<u8> = row.get(1).map_err(err)?;
            match codec::decode_message(self.time, &value) {
                Ok(message) => {
                    let topic = message.topic().clone();
                    loaded.records.push(Record::Retained { topic, message: Some(message) });
                }
                Err(corrupt) => loaded.corrupt.push(("retained", corrupt)),
            }
        }
        let mut sessions = conn
            .prepare("SELECT client_id, value FROM sessions ORDER BY client_id")
            .map_err(err)?;
        let mut rows = sessions.query([]).map_err(err)?;
        while let Some(row) = rows.next().map_err(err)? {
            let (id, value): (Vec<u8>, Vec<u8>) =
                (row.get(0).map_err(err)?, row.get(1).map_err(err)?);
            let client_id = String::from_utf8(id).map_err(|_| Corrupt("client id"));
            match client_id.and_then(|c| codec::decode_session(self.time, c.into(), &value)) {
                Ok(session) => loaded.records.push(Record::Session(session)),
                Err(corrupt) => loaded.corrupt.push(("session", corrupt)),
            }
        }
        // Each session's queue: its head, at most `head` messages, and where its tail ends
        // (`Record::QueueTail`); the tail is read when the queue drains (`Store::load_queue`).
        // Index seeks per session: a million queued messages are not read at start.
        let clients: Vec<musqratt_engine::proto::bytestring::ByteString> = loaded
            .records
            .iter()
            .filter_map(|r| match r {
                Record::Session(s) => Some(s.client_id.clone()),
                _ => None,
            })
            .collect();
        for client_id in clients {
            let mut deliveries = self.read_queue(conn, &client_id, 0, head, &mut loaded.corrupt)?;
            // QoS 2 messages in flight are restored in flight under their packet ids
            // (`Record::OutboundQos2`): the head reaches at least the last of them, however
            // many the client's Receive Maximum let out.
            let in_flight: Option<i64> = conn
                .prepare_cached("SELECT MAX(seq) FROM outbound_qos2 WHERE client_id = ?1")
                .and_then(|mut s| s.query_row([key(&client_id)], |row| row.get(0)))
                .map_err(err)?;
            let in_flight = in_flight.and_then(|l| u64::try_from(l).ok()).unwrap_or(0);
            while let Some(last) = deliveries.last().map(|d| d.seq).filter(|l| *l < in_flight) {
                let more = self.read_queue(conn, &client_id, last, head, &mut loaded.corrupt)?;
                if more.is_empty() {
                    break;
                }
                deliveries.extend(more);
            }
            let last_read = deliveries.last().map_or(0, |d| d.seq);
            loaded.records.extend(deliveries.into_iter().map(Record::Queued));
            let last: Option<i64> = conn
                .prepare_cached("SELECT MAX(seq) FROM queue WHERE client_id = ?1")
                .and_then(|mut s| s.query_row([key(&client_id)], |row| row.get(0)))
                .map_err(err)?;
            let last = last.and_then(|l| u64::try_from(l).ok()).unwrap_or(0);
            if last > last_read {
                loaded.records.push(Record::QueueTail { client_id, last_seq: last });
            }
        }
        let mut awaiting = conn
            .prepare("SELECT client_id, packet_id FROM inbound_qos2 ORDER BY client_id, packet_id")
            .map_err(err)?;
        let mut rows = awaiting.query([]).map_err(err)?;
        while let Some(row) = rows.next().map_err(err)? {
            let id: Vec<u8> = row.get(0).map_err(err)?;
            let packet_id: i64 = row.get(1).map_err(err)?;
            let client_id = String::from_utf8(id).map_err(|_| Corrupt("client id"));
            let packet_id =
                u16::try_from(packet_id).ok().and_then(PacketId::new).ok_or(Corrupt("packet id"));
            match client_id.and_then(|c| Ok((c, packet_id?))) {
                Ok((client_id, packet_id)) => loaded
                    .records
                    .push(Record::AwaitingRelease { client_id: client_id.into(), packet_id }),
                Err(corrupt) => loaded.corrupt.push(("QoS 2 packet id", corrupt)),
            }
        }
        let mut outbound = conn
            .prepare(
                "SELECT client_id, seq, packet_id, released FROM outbound_qos2 \
                 ORDER BY client_id, seq",
            )
            .map_err(err)?;
        let mut rows = outbound.query([]).map_err(err)?;
        while let Some(row) = rows.next().map_err(err)? {
            let id: Vec<u8> = row.get(0).map_err(err)?;
            let seq: i64 = row.get(1).map_err(err)?;
            let packet_id: i64 = row.get(2).map_err(err)?;
            let released: bool = row.get(3).map_err(err)?;
            let client_id = String::from_utf8(id).map_err(|_| Corrupt("client id"));
            let seq = u64::try_from(seq).map_err(|_| Corrupt("seq"));
            let packet_id =
                u16::try_from(packet_id).ok().and_then(PacketId::new).ok_or(Corrupt("packet id"));
            match client_id.and_then(|c| Ok((c, seq?, packet_id?))) {
                Ok((client_id, seq, packet_id)) => loaded.records.push(Record::OutboundQos2 {
                    client_id: client_id.into(),
                    seq,
                    packet_id,
                    released,
                }),
                Err(corrupt) => loaded.corrupt.push(("outbound QoS 2 state", corrupt)),
            }
        }
        let mut wills =
            conn.prepare("SELECT client_id, value FROM wills ORDER BY client_id").map_err(err)?;
        let mut rows = wills.query([]).map_err(err)?;
        while let Some(row) = rows.next().map_err(err)? {
            let (id, value): (Vec<u8>, Vec<u8>) =
                (row.get(0).map_err(err)?, row.get(1).map_err(err)?);
            let client_id = String::from_utf8(id).map_err(|_| Corrupt("client id"));
            match client_id.and_then(|c| codec::decode_will(self.time, c.into(), &value)) {
                Ok(will) => loaded.records.push(Record::Will(will)),
                Err(corrupt) => loaded.corrupt.push(("will", corrupt)),
            }
        }
        Ok(loaded)
    }
}

impl Store {
    /// Up to `max` queued messages of `client_id` numbered above `after`, in order
    /// ([`musqratt_engine::Action::LoadQueue`]). Records that do not decode are logged and
    /// skipped.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`]: the database cannot be read.
    pub fn load_queue(
        &self,
        client_id: &musqratt_engine::proto::bytestring::ByteString,
        after: u64,
        max: usize,
    ) -> Result<Vec<StoredDelivery>, StoreError> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let mut corrupt = Vec::new();
        let read = self.read_queue(&inner.conn, client_id, after, max, &mut corrupt);
        for (what, corrupt) in corrupt {
            tracing::warn!(path = %inner.path.display(), what, %corrupt, "persistence: record skipped");
        }
        read
    }

    fn read_queue(
        &self,
        conn: &Connection,
        client_id: &musqratt_engine::proto::bytestring::ByteString,
        after: u64,
        max: usize,
        corrupt: &mut Vec<(&'static str, Corrupt)>,
    ) -> Result<Vec<StoredDelivery>, StoreError> {
        let path = || conn.path().map(PathBuf::from).unwrap_or_default();
        let err = |source| StoreError::Sqlite { path: path(), source };
        let mut statement = conn
            .prepare_cached(
                "SELECT seq, value FROM queue WHERE client_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            )
            .map_err(err)?;
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        let mut rows = statement.query(params![key(client_id), after, limit]).map_err(err)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(err)? {
            let seq: i64 = row.get(0).map_err(err)?;
            let value: Vec<u8> = row.get(1).map_err(err)?;
            let seq = u64::try_from(seq).map_err(|_| Corrupt("seq"));
            match seq.and_then(|seq| Ok((seq, codec::decode_delivery(self.time, &value)?))) {
                Ok((seq, (qos, retain, ids, message))) => {
                    out.push(StoredDelivery::new(client_id.clone(), seq, qos, retain, ids, message))
                }
                Err(bad) => corrupt.push(("queued message", bad)),
            }
        }
        Ok(out)
    }
}

/// The engine's time now, for a runtime's `Clock`: `Instant::ZERO` is `epoch`.
#[must_use]
pub fn epoch_of(now: Instant) -> SystemTime {
    SystemTime::now() - Duration::from_micros(now.as_micros())
}

/// A topic or client identifier as a key: its UTF-8 bytes.
fn key(s: &musqratt_engine::proto::bytestring::ByteString) -> &[u8] {
    let s: &str = s;
    s.as_bytes()
}

/// One transaction of `records`; rolled back whole if any fails.
fn write_tx(
    conn: &mut Connection,
    time: TimeBase,
    records: &[Record],
    buf: &mut BytesMut,
) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    for record in records {
        buf.clear();
        write_record(&tx, time, record, buf)?;
    }
    tx.commit()
}

fn write_record(
    tx: &rusqlite::Transaction<'_>,
    time: TimeBase,
    record: &Record,
    buf: &mut BytesMut,
) -> rusqlite::Result<()> {
    match record {
        Record::Retained { topic, message: Some(message) } => {
            codec::encode_message(time, message, buf);
            tx.prepare_cached("INSERT OR REPLACE INTO retained VALUES (?1, ?2)")?
                .execute(params![key(topic), &buf[..]])?;
        }
        Record::Retained { topic, message: None } => {
            tx.prepare_cached("DELETE FROM retained WHERE topic = ?1")?.execute([key(topic)])?;
        }
        Record::Session(session) => {
            codec::encode_session(time, session, buf);
            tx.prepare_cached("INSERT OR REPLACE INTO sessions VALUES (?1, ?2)")?
                .execute(params![key(&session.client_id), &buf[..]])?;
        }
        Record::SessionEnded { client_id } => {
            tx.prepare_cached("DELETE FROM sessions WHERE client_id = ?1")?
                .execute([key(client_id)])?;
            tx.prepare_cached("DELETE FROM queue WHERE client_id = ?1")?
                .execute([key(client_id)])?;
            tx.prepare_cached("DELETE FROM inbound_qos2 WHERE client_id = ?1")?
                .execute([key(client_id)])?;
            tx.prepare_cached("DELETE FROM outbound_qos2 WHERE client_id = ?1")?
                .execute([key(client_id)])?;
            tx.prepare_cached("DELETE FROM wills WHERE client_id = ?1")?
                .execute([key(client_id)])?;
        }
        Record::Will(will) => {
            codec::encode_will(time, will, buf);
            tx.prepare_cached("INSERT OR REPLACE INTO wills VALUES (?1, ?2)")?
                .execute(params![key(&will.client_id), &buf[..]])?;
        }
        Record::WillRemoved { client_id } => {
            tx.prepare_cached("DELETE FROM wills WHERE client_id = ?1")?
                .execute([key(client_id)])?;
        }
        Record::OutboundQos2 { client_id, seq, packet_id, released } => {
            let seq = i64::try_from(*seq).unwrap_or(i64::MAX);
            tx.prepare_cached("INSERT OR REPLACE INTO outbound_qos2 VALUES (?1, ?2, ?3, ?4)")?
                .execute(params![key(client_id), seq, packet_id.get(), released])?;
        }
        Record::AwaitingRelease { client_id, packet_id } => {
            tx.prepare_cached("INSERT OR REPLACE INTO inbound_qos2 VALUES (?1, ?2)")?
                .execute(params![key(client_id), packet_id.get()])?;
        }
        Record::Released { client_id, packet_id } => {
            tx.prepare_cached("DELETE FROM inbound_qos2 WHERE client_id = ?1 AND packet_id = ?2")?
                .execute(params![key(client_id), packet_id.get()])?;
        }
        Record::Queued(d) => {
            codec::encode_delivery(time, d.qos, d.retain, &d.subscription_ids, &d.message, buf);
            let seq = i64::try_from(d.seq).unwrap_or(i64::MAX);
            tx.prepare_cached("INSERT OR REPLACE INTO queue VALUES (?1, ?2, ?3)")?
                .execute(params![key(&d.client_id), seq, &buf[..]])?;
        }
        Record::Acknowledged { client_id, seq } => {
            let seq = i64::try_from(*seq).unwrap_or(i64::MAX);
            tx.prepare_cached("DELETE FROM queue WHERE client_id = ?1 AND seq = ?2")?
                .execute(params![key(client_id), seq])?;
            tx.prepare_cached("DELETE FROM outbound_qos2 WHERE client_id = ?1 AND seq = ?2")?
                .execute(params![key(client_id), seq])?;
        }
        // A record kind this version does not know is not stored (the engine and the store
        // are built together; a new kind comes with its table).
        _ => tracing::warn!("unknown store record ignored"),
    }
    Ok(())
}

/// [`Fsync::Interval`]: a thread that, every `every`, syncs the WAL (every committed write is
/// then on disk), copies it into the database (a checkpoint) and syncs that, so that the WAL
/// may be reused without losing what was synced. Holds the store's lock meanwhile: the shards'
/// writes wait for two fsyncs once per interval.
fn spawn_sync(inner: Arc<Mutex<Inner>>, path: &Path, every: Duration) -> mpsc::Sender<()> {
    let (stop, stopped) = mpsc::channel::<()>();
    let wal = PathBuf::from(format!("{}-wal", path.display()));
    let db = path.to_owned();
    let spawned = std::thread::Builder::new().name("musqratt-store-sync".into()).spawn(move || {
        while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
            let inner = inner.lock().unwrap_or_else(PoisonError::into_inner);
            let synced = sync_file(&wal)
                .and_then(|()| {
                    inner
                        .conn
                        .execute_batch("PRAGMA wal_checkpoint(PASSIVE);")
                        .map_err(std::io::Error::other)
                })
                .and_then(|()| sync_file(&db));
            if let Err(error) = synced {
                tracing::error!(%error, "persistence: periodic sync failed");
            }
        }
    });
    if let Err(error) = spawned {
        tracing::error!(%error, "persistence: cannot start the sync thread");
    }
    stop
}

fn sync_file(path: &Path) -> std::io::Result<()> {
    match std::fs::OpenOptions::new().write(true).open(path) {
        Ok(file) => file.sync_data(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests;
