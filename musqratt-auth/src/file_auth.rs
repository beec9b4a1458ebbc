//! Who may connect, from Mosquitto's files: the password file and the anonymous rule.
//!
//! A `$7$` or Argon2id check costs milliseconds of CPU. A shard waiting for one would stall
//! every other client of that shard, so slow checks go to a small pool of verifier threads and
//! their answer comes back later through the [`AuthReply`] (the engine serves everyone else
//! meanwhile). A full pool queue refuses (0x88 Server unavailable, the kit's answer to a dropped reply) rather than growing: a login
//! flood must cost the attacker, not the broker's memory.

use std::path::PathBuf;
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use musqratt_engine::proto::mqtt::ReasonCode;
use musqratt_engine::{AuthDecision, AuthRequest};
use musqratt_kit::{AuthReply, Authenticator};

use crate::acl_file::{AclFile, AclFileError};
use crate::password::StoredPassword;
use crate::password_file::{PasswordFile, PasswordFileError};

/// Slow checks waiting for a verifier thread before new ones are refused as busy.
const VERIFY_QUEUE: usize = 1024;

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
}

/// The [`Authenticator`] of the files. Cheap to clone; clones share the files and the pool.
#[derive(Clone)]
pub struct FileAuth {
    files: Arc<RwLock<Arc<Files>>>,
    verify: SyncSender<Box<dyn FnOnce() + Send>>,
    /// A hash checked for unknown users, so that they take as long to refuse as known ones
    /// (a quick refusal would tell an attacker which user names exist).
    decoy: Arc<StoredPassword>,
}

impl FileAuth {
    /// An authenticator deciding from `files`, with `threads` verifier threads (at least one).
    ///
    /// # Errors
    /// A verifier thread could not be started.
    pub fn new(files: Files, threads: usize) -> std::io::Result<Self> {
        let (verify, jobs) = sync_channel::<Box<dyn FnOnce() + Send>>(VERIFY_QUEUE);
        let jobs = Arc::new(Mutex::new(jobs));
        for i in 0..threads.max(1) {
            let jobs = Arc::clone(&jobs);
            std::thread::Builder::new().name(format!("musqratt-verify-{i}")).spawn(move || {
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
        Ok(Self { files: Arc::new(RwLock::new(Arc::new(files))), verify, decoy: Arc::new(decoy) })
    }

    /// Replaces the files (SIGHUP): connected clients keep what they were given; new ones are
    /// decided by the new files.
    pub fn reload(&self, files: Files) {
        *self.files.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(files);
    }

    /// The files decisions are made from now.
    #[must_use]
    pub fn files(&self) -> Arc<Files> {
        Arc::clone(&self.files.read().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Letting a client in: with its rules from the ACL file when there is one.
fn admit(files: &Files, request: &AuthRequest) -> AuthDecision {
    match &files.acl {
        Some(acl) => AuthDecision::AcceptWithAcl(Arc::new(
            acl.acl_for(request.username.as_deref(), &request.client_id),
        )),
        None => AuthDecision::Accept,
    }
}

impl Authenticator for FileAuth {
    fn authenticate(&self, request: &AuthRequest, reply: AuthReply) {
        if request.method.is_some() {
            // No enhanced authentication method is configured (§4.12: 0x8C).
            return reply.answer(Ok(AuthDecision::Refuse(ReasonCode::BAD_AUTHENTICATION_METHOD)));
        }
        let files = self.files();
        let (Some(passwords), Some(user)) = (&files.passwords, &request.username) else {
            let decision = if files.allow_anonymous {
                admit(&files, request)
            } else {
                // 3.1.1: return code 5, Not authorized.
                AuthDecision::Refuse(ReasonCode::NOT_AUTHORIZED)
            };
            return reply.answer(Ok(decision));
        };
        let offered = request.password.clone().unwrap_or_default();
        let (stored, known) = match passwords.get(user) {
            Some(stored) => (stored.clone(), true),
            None => ((*self.decoy).clone(), false),
        };
        // MQTT-3.1.1 maps a refusal to return code 4, Bad user name or password.
        let refused = AuthDecision::Refuse(ReasonCode::BAD_USERNAME_OR_PASSWORD);
        let admitted = admit(&files, request);
        let verdict = move |matched: bool| if matched { admitted } else { refused };
        if !stored.is_slow() {
            return reply.answer(Ok(verdict(stored.verify(&offered) && known)));
        }
        let job = Box::new(move || reply.answer(Ok(verdict(stored.verify(&offered) && known))));
        match self.verify.try_send(job) {
            Ok(()) => {}
            // The job comes back and drops its reply, which refuses (0x88): the client retries.
            Err(TrySendError::Full(_job)) => {
                tracing::warn!("password checks queued beyond {VERIFY_QUEUE}: refusing as busy");
            }
            // Unreachable while self holds the sender; a dropped reply refuses anyway.
            Err(TrySendError::Disconnected(_job)) => {}
        }
    }
}
