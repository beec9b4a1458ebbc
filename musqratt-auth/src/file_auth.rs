//! Who may connect, from Mosquitto's files: the password file and the anonymous rule.
//!
//! A `$7$` or Argon2id check costs milliseconds of CPU. A shard waiting for one would stall
//! every other client of that shard, so slow checks go to a small pool of verifier threads and
//! their answer comes back later through the [`AuthReply`] (the engine serves everyone else
//! meanwhile). A full pool queue refuses (0x88 Server unavailable, the kit's answer to a dropped reply) rather than growing: a login
//! flood must cost the attacker, not the broker's memory.

use core::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::SystemTime;

use musqratt_engine::proto::mqtt::ReasonCode;
use musqratt_engine::{AuthDecision, AuthRequest};
use musqratt_kit::{AuthReply, Authenticator};

use musqratt_engine::acl::Acl;

use crate::acl_file::{AclFile, AclFileError};
use crate::chain::{Source, Verdict, VerdictReply, ask_in_order_for};
use crate::password::StoredPassword;
use crate::password_file::{PasswordFile, PasswordFileError};
use crate::throttle::{Throttle, ThrottleConfig};

/// Slow checks waiting for a verifier thread before new ones are refused as busy.
const VERIFY_QUEUE: usize = 1024;

/// Longest user name accepted, in bytes: longer ones are refused (0x86) before any source sees
/// them. Real user names are short; a long one is an attack on whatever hashes or forwards it.
pub const MAX_USERNAME_LEN: usize = 256;
/// Longest password accepted, in bytes (MQTT allows 65,535): room for a JWT with many claims,
/// not for megabytes sent to a hash function or an HTTP service at every attempt.
pub const MAX_PASSWORD_LEN: usize = 8 * 1024;

/// Where the files are, and whether clients without a user name may connect.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileAuthConfig {
    /// Clients without a user name are let in.
    pub allow_anonymous: bool,
    /// `mosquitto_passwd` file; without it a user name proves nothing and the client counts as
    /// anonymous for `allow_anonymous` (Mosquitto's rule).
    pub password_file: Option<PathBuf>,
    /// Mosquitto ACL file.
    pub acl_file: Option<PathBuf>,
}

/// Why the files could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The password file.
    #[error("password file {path}: {source}")]
    Passwords {
        /// The file.
        path: String,
        /// Why.
        source: PasswordFileError,
    },
    /// The ACL file.
    #[error("ACL file {path}: {source}")]
    Acl {
        /// The file.
        path: String,
        /// Why.
        source: AclFileError,
    },
}

/// The loaded files: what a decision is made from, swapped whole on reload.
#[derive(Debug, Default)]
pub struct Files {
    allow_anonymous: bool,
    passwords: Option<PasswordFile>,
    acl: Option<AclFile>,
}

impl Files {
    /// Loads the files `config` names.
    ///
    /// # Errors
    /// A file cannot be read or does not parse.
    pub fn load(config: &FileAuthConfig) -> Result<Self, LoadError> {
        let passwords = match &config.password_file {
            Some(path) => Some(PasswordFile::load(path).map_err(|source| {
                LoadError::Passwords { path: path.display().to_string(), source }
            })?),
            None => None,
        };
        let acl =
            match &config.acl_file {
                Some(path) => Some(AclFile::load(path).map_err(|source| LoadError::Acl {
                    path: path.display().to_string(),
                    source,
                })?),
                None => None,
            };
        Ok(Self { allow_anonymous: config.allow_anonymous, passwords, acl })
    }

    /// The ACL file, if one is loaded.
    #[must_use]
    pub fn acl(&self) -> Option<&AclFile> {
        self.acl.as_ref()
    }

    /// Files of a password file alone (no ACL file, anonymous clients refused): for embedding
    /// and tests.
    #[must_use]
    pub fn from_password_file(passwords: PasswordFile) -> Self {
        Self { allow_anonymous: false, passwords: Some(passwords), acl: None }
    }

    /// The password file, if one is loaded.
    #[must_use]
    pub fn passwords(&self) -> Option<&PasswordFile> {
        self.passwords.as_ref()
    }
}

/// The loaded files, shared by the authenticator and the sources that read them too (SCRAM
/// takes its credentials from the password file), swapped whole on reload. Cheap to clone;
/// clones share.
#[derive(Clone, Default)]
pub struct SharedFiles(Arc<RwLock<Arc<Files>>>);

impl SharedFiles {
    /// Shares `files`.
    #[must_use]
    pub fn new(files: Files) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(files))))
    }

    /// The files decisions are made from now.
    #[must_use]
    pub fn get(&self) -> Arc<Files> {
        Arc::clone(&self.0.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Replaces the files for every holder.
    pub fn replace(&self, files: Files) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(files);
    }
}

impl core::fmt::Debug for SharedFiles {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SharedFiles(..)")
    }
}

/// The broker's [`Authenticator`]: the password file first, then the other [`Source`]s in
/// order, then the anonymous rule; an allowed client gets the rules its source gave or the ACL
/// file's. Cheap to clone; clones share the files, the sources and the verifier pool.
#[derive(Clone)]
pub struct FileAuth {
    shared: Arc<Shared>,
    chain: Arc<[Arc<dyn Source>]>,
    /// Slows down guessing per client address, around the whole chain (it sees the final
    /// answer); none until [`FileAuth::throttled`].
    throttle: Option<Arc<Throttle>>,
}

/// What the password source and the authenticator share.
struct Shared {
    files: SharedFiles,
    verify: SyncSender<Box<dyn FnOnce() + Send>>,
    /// A hash checked for unknown users, so that they take as long to pass on as known ones
    /// take to check (a quick answer would tell an attacker which user names exist).
    decoy: StoredPassword,
}

impl Shared {
    fn files(&self) -> Arc<Files> {
        self.files.get()
    }
}

impl FileAuth {
    /// An authenticator deciding from `files`, with `threads` verifier threads (at least one).
    ///
    /// # Errors
    /// A verifier thread could not be started.
    pub fn new(files: Files, threads: usize) -> std::io::Result<Self> {
        Self::with_sources(files, threads, Vec::new())
    }

    /// An authenticator asking the password file, then `sources` in order.
    ///
    /// # Errors
    /// A verifier thread could not be started.
    pub fn with_sources(
        files: Files,
        threads: usize,
        sources: Vec<Arc<dyn Source>>,
    ) -> std::io::Result<Self> {
        Self::with_shared(SharedFiles::new(files), threads, sources)
    }

    /// [`FileAuth::with_sources`], deciding from `files`, which sources may share (SCRAM):
    /// [`FileAuth::reload`] replaces them for all.
    ///
    /// # Errors
    /// A verifier thread could not be started.
    pub fn with_shared(
        files: SharedFiles,
        threads: usize,
        sources: Vec<Arc<dyn Source>>,
    ) -> std::io::Result<Self> {
        let (verify, jobs) = sync_channel::<Box<dyn FnOnce() + Send>>(VERIFY_QUEUE);
        let jobs = Arc::new(Mutex::new(jobs));
        for i in 0..threads.max(1) {
            let jobs = Arc::clone(&jobs);
            std::thread::Builder::new().name(format!("musqratt-verify-{i}")).spawn(move || {
                lower_priority();
                loop {
                    let job = jobs.lock().unwrap_or_else(PoisonError::into_inner).recv();
                    match job {
                        Ok(job) => job(),
                        Err(_) => return, // every FileAuth is gone
                    }
                }
            })?;
        }
        let decoy = StoredPassword::pbkdf2(b"decoy", crate::password::DEFAULT_ITERATIONS)
            .unwrap_or_else(|_| unreachable!("DEFAULT_ITERATIONS is in range"));
        let shared = Arc::new(Shared { files, verify, decoy });
        let mut chain: Vec<Arc<dyn Source>> = vec![Arc::new(PasswordSource(Arc::clone(&shared)))];
        chain.extend(sources);
        Ok(Self { shared, chain: chain.into(), throttle: None })
    }

    /// The same authenticator, slowing down clients whose address keeps failing (see
    /// [`crate::throttle`]).
    ///
    /// # Errors
    /// The throttle's timer thread could not be started.
    pub fn throttled(mut self, config: ThrottleConfig) -> std::io::Result<Self> {
        self.throttle = Some(Throttle::start(config)?);
        Ok(self)
    }

    /// Replaces the files (SIGHUP): connected clients keep what they were given; new ones are
    /// decided by the new files.
    pub fn reload(&self, files: Files) {
        self.shared.files.replace(files);
    }

    /// The files decisions are made from now.
    #[must_use]
    pub fn files(&self) -> Arc<Files> {
        self.shared.files()
    }
}

/// Verifier threads yield the CPU to the shards: a login storm of 20,000-iteration hashes at
/// the shards' priority took the cores from them and raised other clients' p99 latency from
/// ~0.2 ms to ~200 ms (docs/BENCHMARKS.md, issue 14); at nice 10 a shard that has work gets
/// ~90 % of a contended core and logins take what is left.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    if let Err(error) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 10) {
        tracing::debug!(%error, "verifier thread priority not lowered");
    }
}

/// The password file as a [`Source`]: a user it has is checked (allowed or denied 0x86); a
/// user it does not have, or a client without a user name, is left to the next source.
struct PasswordSource(Arc<Shared>);

impl Source for PasswordSource {
    fn check(&self, request: &AuthRequest, reply: VerdictReply) {
        let files = self.0.files();
        // A user name from a verified certificate needs no password (Mosquitto's
        // use_identity_as_username does not read the password file either).
        let (Some(passwords), Some(user), None, false) =
            (&files.passwords, &request.username, &request.method, request.username_verified)
        else {
            return reply.answer(Verdict::Ignore);
        };
        let offered = request.password.clone().unwrap_or_default();
        let (stored, known) = match passwords.get(user) {
            Some(stored) => (stored.clone(), true),
            None => (self.0.decoy.clone(), false),
        };
        let verdict = move |matched: bool| match (known, matched) {
            (true, true) => Verdict::Allow(None),
            // MQTT-3.1.1 maps it to return code 4, Bad user name or password.
            (true, false) => Verdict::Deny(ReasonCode::BAD_USERNAME_OR_PASSWORD),
            (false, _) => Verdict::Ignore,
        };
        if !stored.is_slow() {
            return reply.answer(verdict(stored.verify(&offered)));
        }
        let job = Box::new(move || reply.answer(verdict(stored.verify(&offered))));
        match self.0.verify.try_send(job) {
            Ok(()) => {}
            // The job comes back and drops its reply, which denies (0x88): the client retries.
            Err(TrySendError::Full(_job)) => {
                tracing::warn!("password checks queued beyond {VERIFY_QUEUE}: refusing as busy");
            }
            // Unreachable while a FileAuth holds the sender; a dropped reply denies anyway.
            Err(TrySendError::Disconnected(_job)) => {}
        }
    }
}

/// Letting a client in: with the rules its source gave, else the ACL file's, else none; until
/// `until` if its credentials expire.
fn admit(
    files: &Files,
    request: &AuthRequest,
    acl: Option<Arc<Acl>>,
    until: Option<SystemTime>,
) -> AuthDecision {
    let acl = acl.or_else(|| {
        files
            .acl
            .as_ref()
            .map(|file| Arc::new(file.acl_for(request.username.as_deref(), &request.client_id)))
    });
    match (acl, until) {
        // Counted from now: the engine adds it to the time it takes the decision, a few
        // microseconds later (the engine's clock is not this thread's business).
        (acl, Some(until)) => AuthDecision::AcceptFor {
            acl,
            valid_for: until.duration_since(SystemTime::now()).unwrap_or_default(),
        },
        (Some(acl), None) => AuthDecision::AcceptWithAcl(acl),
        (None, None) => AuthDecision::Accept,
    }
}

impl Authenticator for FileAuth {
    fn authenticate(&self, request: &AuthRequest, reply: AuthReply) {
        let peer = reply.peer();
        let (auth, request) = (self.clone(), Arc::new(request.clone()));
        let attempt = move || auth.decide(request, peer, reply);
        match &self.throttle {
            Some(throttle) => throttle.admit(peer, attempt),
            None => attempt(),
        }
    }
}

impl FileAuth {
    /// Asks the chain about `request` (its turn come, if it had to wait) and answers `reply`.
    fn decide(self, request: Arc<AuthRequest>, peer: Option<SocketAddr>, reply: AuthReply) {
        let files = self.shared.files();
        let conn = Some(reply.conn());
        let throttle = self.throttle.clone();
        let answer = move |decision: AuthDecision| {
            if let Some(throttle) = throttle {
                // 0x88 is the broker's failure, not the client's.
                let failed = matches!(decision, AuthDecision::Refuse(code)
                    if code != ReasonCode::SERVER_UNAVAILABLE);
                throttle.record(peer, failed);
            }
            reply.answer(Ok(decision));
        };
        let too_long = request.username.as_ref().is_some_and(|u| u.len() > MAX_USERNAME_LEN)
            || request.password.as_ref().is_some_and(|p| p.len() > MAX_PASSWORD_LEN);
        if too_long {
            tracing::debug!(client_id = &*request.client_id, "user name or password too long");
            return answer(AuthDecision::Refuse(ReasonCode::BAD_USERNAME_OR_PASSWORD));
        }
        // Whether a user name must be proven: some source could have checked it.
        let checked = files.passwords.is_some() || self.chain.len() > 1;
        let asked = Arc::clone(&request);
        ask_in_order_for(conn, peer, Arc::clone(&self.chain), 0, asked, move |verdict| {
            let decision = match verdict {
                Verdict::Allow(acl) => admit(&files, &request, acl, None),
                Verdict::AllowUntil(acl, until) => admit(&files, &request, acl, Some(until)),
                Verdict::Superuser => AuthDecision::Accept,
                Verdict::AllowAs { username, data } => {
                    let acl = files
                        .acl
                        .as_ref()
                        .map(|file| Arc::new(file.acl_for(Some(&username), &request.client_id)));
                    match (acl, data) {
                        (acl, Some(data)) => AuthDecision::AcceptWithData { acl, data },
                        (Some(acl), None) => AuthDecision::AcceptWithAcl(acl),
                        (None, None) => AuthDecision::Accept,
                    }
                }
                Verdict::Deny(code) => AuthDecision::Refuse(code),
                Verdict::Continue(data) => AuthDecision::Continue(data),
                // No source knew the client.
                Verdict::Ignore if request.method.is_some() => {
                    // No source speaks its enhanced authentication method (§4.12: 0x8C).
                    AuthDecision::Refuse(ReasonCode::BAD_AUTHENTICATION_METHOD)
                }
                // The certificate the TLS handshake verified is the credential; the ACL file
                // applies to its name.
                Verdict::Ignore if request.username_verified => admit(&files, &request, None, None),
                Verdict::Ignore if request.username.is_some() && checked => {
                    AuthDecision::Refuse(ReasonCode::BAD_USERNAME_OR_PASSWORD)
                }
                Verdict::Ignore if files.allow_anonymous => admit(&files, &request, None, None),
                // 3.1.1: return code 5, Not authorized.
                Verdict::Ignore => AuthDecision::Refuse(ReasonCode::NOT_AUTHORIZED),
            };
            answer(decision);
        });
    }
}
