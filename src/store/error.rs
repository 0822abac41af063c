//! The store's error type. Every variant carries enough context to act on
//! without a backtrace, and none of them ever holds a database password: URLs
//! are redacted and driver messages from connecting are scrubbed.

use crate::api::TenantKey;

/// Result of a store operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store URL cannot be used. `url` is redacted.
    #[error("invalid store URL `{url}`: {reason}")]
    InvalidUrl { url: String, reason: String },

    /// The database could not be opened or reached at start-up. `url` is
    /// redacted and `reason` scrubbed of the password.
    #[error("cannot open the store at `{url}`: {reason}")]
    Unavailable { url: String, reason: String },

    /// The schema migrations failed at start-up.
    #[error("cannot migrate the store schema at `{url}`: {reason}")]
    Migration { url: String, reason: String },

    /// A query failed; `context` says what the store was doing, for which tenant.
    #[error("store: {context}: {source}")]
    Database {
        context: String,
        #[source]
        source: sqlx::Error,
    },

    /// A row holds something the store never writes (a hand-edited database,
    /// or a newer schema).
    #[error("store: {context}: unexpected data: {reason}")]
    Corrupt { context: String, reason: String },

    /// A value handed to the store cannot be stored (e.g. a count above `i64::MAX`).
    #[error("store: {context}: {reason}")]
    InvalidInput { context: String, reason: String },

    /// The tenant was unbound from DingTalk: the ledger refuses to bind it again
    /// and the account can never go back to DingTalk mode.
    #[error(
        "tenant {tenant} was unbound from DingTalk; it can never be bound to DingTalk mode again"
    )]
    Irreversible { tenant: TenantKey },

    /// A stale leader's write: another replica has led since (a higher fencing token).
    #[error(
        "store: refused a write of leadership term {token}: term {current} has written since (this replica is no longer the leader)"
    )]
    Fenced { token: i64, current: i64 },

    /// A sync's staging run is gone: another sync of the tenant started and
    /// removed it, or the store was cleaned. Nothing was applied.
    #[error(
        "store: the staging of sync run {run} of {tenant} is gone (another sync of the tenant replaced it); nothing was applied"
    )]
    StagingLost {
        tenant: TenantKey,
        run: crate::store::StagingId,
    },

    /// The store holds nothing for this tenant.
    #[error("the store at `{store}` holds nothing for tenant {tenant}")]
    UnknownTenant { tenant: TenantKey, store: String },

    /// Writing command output failed.
    #[error("writing the output: {0}")]
    Output(#[from] std::io::Error),

    /// Serializing command output failed.
    #[error("serializing the output: {0}")]
    Serialize(String),
}

/// Attach context to a driver error.
pub(crate) trait Context<T> {
    /// Map the error into [`Error::Database`] with the context `f` describes.
    fn ctx(self, f: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, sqlx::Error> {
    fn ctx(self, f: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Database {
            context: f(),
            source,
        })
    }
}
