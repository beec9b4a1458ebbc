//! The one answer to `Action::Authenticate` for every runtime.
//!
//! The engine asks (when `Config::authenticate` is set) with the CONNECT's client id, user name,
//! password and, for MQTT 5.0 enhanced authentication, method and data (§4.12); the runtime
//! answers with `Input::AuthDecision`. Every runtime answers through [`Auth::decide`], so a
//! client gets the same verdict whichever runtime serves it.

use std::sync::Arc;

use musqratt_engine::proto::mqtt::ReasonCode;
use musqratt_engine::{AuthDecision, AuthRequest};

/// Decides who may connect. Called on a shard's thread, between two engine steps of that
/// shard: it must answer quickly (a file or an in-memory table; a remote service needs a
/// cache or an asynchronous path, which the authentication issue adds).
pub trait Authenticator: Send + Sync + 'static {
    /// The verdict on one CONNECT or AUTH step.
    ///
    /// # Errors
    /// The authenticator could not decide (its backend is unreachable, its data unreadable).
    /// [`Auth::decide`] then refuses the client: an error never lets anyone in.
    fn authenticate(&self, request: &AuthRequest) -> Result<AuthDecision, AuthError>;
}

/// Why an [`Authenticator`] could not decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The service or data the decision depends on is not available.
    #[error("authentication backend unavailable")]
    Unavailable,
}

/// Lets every client in: the broker's behaviour when no authentication is configured.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAnonymous;

impl Authenticator for AllowAnonymous {
    fn authenticate(&self, _request: &AuthRequest) -> Result<AuthDecision, AuthError> {
        Ok(AuthDecision::Accept)
    }
}

/// The broker's authenticator, shared by every shard of every runtime.
#[derive(Clone)]
pub struct Auth(Arc<dyn Authenticator>);

impl Auth {
    /// Wraps an authenticator.
    pub fn new(authenticator: impl Authenticator) -> Self {
        Self(Arc::new(authenticator))
    }

    /// The answer to `Action::Authenticate`. Fails closed: an authenticator that cannot decide
    /// refuses the client with 0x88 Server unavailable (3.1.1: return code 3, the same
    /// meaning), so that the client knows to retry rather than to change its credentials.
    #[must_use]
    pub fn decide(&self, request: &AuthRequest) -> AuthDecision {
        match self.0.authenticate(request) {
            Ok(decision) => decision,
            Err(error) => {
                tracing::warn!(client_id = &*request.client_id, %error, "client refused");
                AuthDecision::Refuse(ReasonCode::SERVER_UNAVAILABLE)
            }
        }
    }
}

impl Default for Auth {
    fn default() -> Self {
        Self::new(AllowAnonymous)
    }
}

impl core::fmt::Debug for Auth {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Auth(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> AuthRequest {
        AuthRequest {
            client_id: "c".into(),
            username: None,
            password: None,
            method: None,
            data: None,
        }
    }

    struct Broken;
    impl Authenticator for Broken {
        fn authenticate(&self, _: &AuthRequest) -> Result<AuthDecision, AuthError> {
            Err(AuthError::Unavailable)
        }
    }

    #[test]
    fn an_authenticator_error_refuses() {
        assert_eq!(
            Auth::new(Broken).decide(&request()),
            AuthDecision::Refuse(ReasonCode::SERVER_UNAVAILABLE)
        );
    }

    #[test]
    fn the_default_lets_anonymous_clients_in() {
        assert_eq!(Auth::default().decide(&request()), AuthDecision::Accept);
    }
}
