//! What can go wrong with a Stream connection. Every message is built from
//! text cleaned by `redact`: the app secret and the ticket never appear.

/// A Stream connection's failure; the connection task logs it, records it
/// in its stats and tries again after the backoff.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    #[error("cannot build the Stream client: {0}")]
    Config(String),
    #[error("connections/open of app {app_key} failed: {message}")]
    Open { app_key: String, message: String },
    #[error("connections/open of app {app_key} refused: HTTP {status} {code}: {message}")]
    OpenRefused {
        app_key: String,
        status: u16,
        /// DingTalk's `code` (`authFailed` for a wrong secret).
        code: String,
        message: String,
    },
    #[error("connections/open of app {app_key} answered no usable endpoint and ticket: {message}")]
    OpenAnswer { app_key: String, message: String },
    #[error("WebSocket of app {app_key} to {endpoint} could not be opened: {message}")]
    Connect {
        app_key: String,
        /// The endpoint without its query (the ticket).
        endpoint: String,
        message: String,
    },
    #[error("WebSocket of app {app_key} failed: {message}")]
    Socket { app_key: String, message: String },
    #[error("WebSocket of app {app_key} was closed by the server")]
    Closed { app_key: String },
    #[error("WebSocket of app {app_key} answered nothing within {seconds} s of a ping")]
    PongTimeout { app_key: String, seconds: u64 },
}

impl StreamError {
    /// Whether DingTalk refused the app's credentials (`authFailed`): the
    /// Secret must change before a retry can succeed.
    pub fn is_auth_failure(&self) -> bool {
        matches!(self, StreamError::OpenRefused { status: 401, .. })
            || matches!(self, StreamError::OpenRefused { code, .. } if code == "authFailed")
    }
}
