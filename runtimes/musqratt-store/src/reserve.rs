//! The reserve: a file of [`RESERVE_BYTES`] next to the store, made at start and deleted when
//! a write fails for want of space. Deleting it gives that write, and the writes that follow
//! (acknowledgements, sessions connecting and leaving, retained messages at QoS 0) room, while
//! the engine refuses new QoS 1 and 2 messages for durable sessions: the broker keeps serving
//! on a full disk instead of stopping (docs/PERSISTENCE.md, "A full disk"). Once the file can
//! be made again there is room again.

use core::time::Duration;
use std::fs::{self, File};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The size of the reserve: several WAL checkpoints' worth of records (SQLite checkpoints the
/// WAL at about 4 MiB by default), so that what follows a full disk is written while the
/// new messages are refused.
pub const RESERVE_BYTES: u64 = 8 << 20;

/// How often a full store tries to make its reserve again.
pub(crate) const RETRY_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub(crate) struct Reserve {
    path: PathBuf,
    bytes: u64,
    present: bool,
    last_try: Option<Instant>,
}

impl Reserve {
    /// The reserve of the store at `store` (`<store>-reserve`), not made yet.
    pub(crate) fn new(store: &Path, bytes: u64) -> Self {
        let path = PathBuf::from(format!("{}-reserve", store.display()));
        Self { path, bytes, present: false, last_try: None }
    }

    /// Makes the file, its blocks written (a sparse file or `set_len` would hold no space)
    /// and synced (a file system that allocates at write-back says "no space" by then). On
    /// failure, what was written is deleted.
    pub(crate) fn make(&mut self) -> io::Result<()> {
        self.last_try = Some(Instant::now());
        let made = self.fill();
        if made.is_err() {
            let _ = fs::remove_file(&self.path);
        }
        self.present = made.is_ok();
        made
    }

    fn fill(&self) -> io::Result<()> {
        if fs::metadata(&self.path).is_ok_and(|m| m.len() == self.bytes) {
            return Ok(());
        }
        let mut file = File::create(&self.path)?;
        let chunk = [0u8; 64 << 10];
        let mut left = self.bytes;
        while left > 0 {
            let n = usize::try_from(left.min(chunk.len() as u64)).unwrap_or(chunk.len());
            file.write_all(&chunk[..n])?;
            left -= n as u64;
        }
        file.sync_all()
    }

    /// After a full disk: makes the reserve again only if the file system has room for it
    /// twice over, so that the writes accepted next have room of their own; otherwise the
    /// reserve would take back the very space its release gave and the store would go back
    /// and forth between full and not at every try.
    pub(crate) fn make_again(&mut self) -> io::Result<()> {
        self.last_try = Some(Instant::now());
        let dir =
            self.path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let stat = rustix::fs::statvfs(dir).map_err(io::Error::from)?;
        let free = stat.f_bavail.saturating_mul(stat.f_frsize);
        if free < self.bytes.saturating_mul(2) {
            return Err(io::Error::from(io::ErrorKind::StorageFull));
        }
        self.make()
    }

    /// Deletes the file, if it is there: whether space was given back.
    pub(crate) fn release(&mut self) -> bool {
        if !self.present {
            return false;
        }
        self.present = false;
        fs::remove_file(&self.path).is_ok()
    }

    /// Whether it is time to try [`Reserve::make`] again.
    pub(crate) fn due(&self) -> bool {
        self.last_try.is_none_or(|at| at.elapsed() >= RETRY_EVERY)
    }
}
