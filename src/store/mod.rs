//! The directory store: each tenant's directory, account, binding ledger, sync
//! runs and small JSON documents, in an embedded SQLite file (the default) or a
//! PostgreSQL database shared by several operator replicas.
//!
//! The store is a thin adapter: it persists the types of
//! [`crate::core::directory`] and decides nothing, except the two guarantees
//! that must hold whatever path a request takes:
//! - [`Store::apply_sync`] is one transaction (all-old or all-new, even if the
//!   process is killed half-way) and diff-based (unchanged rows are never
//!   rewritten);
//! - the binding ledger is append-only and refuses a `Bound` after an
//!   `Unbound`, in the API *and* in the database (triggers).
//!
//! # Design: one struct over an enum of backends
//! [`Store`] is a concrete, cheaply clonable handle that dispatches to
//! `sqlite::SqliteStore` or `postgres::PgStore`. The backend is chosen at
//! run time from a URL, the set of backends is closed, and async methods in a
//! trait are not object-safe: a trait would force every caller (reconcile,
//! controller, dev, CLI) to be generic over the backend for no gain. Both
//! backends expose the same inherent methods; the integration suite runs the
//! same tests against each.
//!
//! # Layout
//! - `sqlite.rs`, `postgres.rs`: connecting, migrating, transactions and
//!   locks, and the statements whose text differs (bulk writes, timestamps);
//! - `sql.rs`: the statements both backends run verbatim (`$N` parameters);
//! - `rows.rs`: the row shapes both read, and their mapping into store types;
//! - `model.rs`: the store's own types and value conversions.

mod error;
mod migrations;
mod model;
mod postgres;
mod rows;
mod sql;
mod sqlite;
mod staging;
mod url;

use serde::Serialize;
use serde_json::Value;

pub use error::{Error, Result};
pub use migrations::SCHEMA_VERSION;
pub use model::{Account, LedgerEntry, LoginFacts, SyncOutcome, SyncRun, SyncRunId, SyncRunRecord};
pub use staging::{Staged, StagedChanges, Staging, StagingId};
pub use url::{DEFAULT_URL, REDACTED, StoreUrl, redact};

use crate::api::TenantKey;
use crate::core::directory::{Department, Directory, DirectoryDiff, Member};

/// A store opened by [`Store::open_read_only`].
#[derive(Clone, Debug)]
pub struct ReadOnly {
    pub store: Store,
    /// Whether the store existed (else it reads as empty).
    pub existed: bool,
}

/// A handle on the store. Clones share one connection pool.
#[derive(Clone, Debug)]
pub struct Store {
    backend: Backend,
    url: String,
}

#[derive(Clone, Debug)]
enum Backend {
    Sqlite(sqlite::SqliteStore),
    Postgres(postgres::PgStore),
}

/// Call the same method on whichever backend the store uses.
macro_rules! dispatch {
    ($self:ident, $s:ident => $call:expr) => {
        match &$self.backend {
            Backend::Sqlite($s) => $call,
            Backend::Postgres($s) => $call,
        }
    };
}

impl Store {
    /// Open the store at `url` (`sqlite://PATH` or `postgres://...`) and bring
    /// its schema up to date. A bad URL is [`Error::InvalidUrl`], an
    /// unreachable database [`Error::Unavailable`]; neither shows the password.
    pub async fn connect(url: &str) -> Result<Store> {
        Store::connect_url(&StoreUrl::parse(url)?).await
    }

    /// [`Store::connect`] with an already parsed URL.
    pub async fn connect_url(url: &StoreUrl) -> Result<Store> {
        let backend = match url {
            StoreUrl::Sqlite { path } => {
                Backend::Sqlite(sqlite::SqliteStore::connect(url, path).await?)
            }
            StoreUrl::Postgres { options, .. } => {
                Backend::Postgres(postgres::PgStore::connect(url, options).await?)
            }
        };
        tracing::debug!(store = %url, "store opened and migrated");
        Ok(Store {
            backend,
            url: url.redacted(),
        })
    }

    /// Open the store at `url` for reading only: nothing is created, migrated
    /// or written. A store that does not exist yet (no SQLite file, no schema
    /// in the PostgreSQL database) reads as an empty one; `existed` says which.
    pub async fn open_read_only(url: &str) -> Result<ReadOnly> {
        let url = StoreUrl::parse(url)?;
        let found = match &url {
            StoreUrl::Sqlite { path } => sqlite::SqliteStore::open_read_only(&url, path)
                .await?
                .map(Backend::Sqlite),
            StoreUrl::Postgres { options, .. } => postgres::PgStore::open_read_only(&url, options)
                .await?
                .map(Backend::Postgres),
        };
        let existed = found.is_some();
        let backend = match found {
            Some(b) => b,
            None => Backend::Sqlite(sqlite::SqliteStore::empty_in_memory(&url).await?),
        };
        Ok(ReadOnly {
            store: Store {
                backend,
                url: url.redacted(),
            },
            existed,
        })
    }

    /// The store's URL, password redacted: safe to log.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// This store's handle for a leader of term `token` (the leader Lease's
    /// transitions): each of its writes is refused with [`Error::Fenced`] once
    /// a later term has raised the fence ([`Store::advance_fence`]). Reads are
    /// never fenced.
    pub fn fenced(&self, token: i64) -> Store {
        let backend = match &self.backend {
            Backend::Sqlite(s) => Backend::Sqlite(s.with_fence(token)),
            Backend::Postgres(s) => Backend::Postgres(s.with_fence(token)),
        };
        Store {
            backend,
            url: self.url.clone(),
        }
    }

    /// The highest leadership term that raised the fence (0: none).
    pub async fn fence_token(&self) -> Result<i64> {
        dispatch!(self, s => s.fence_token().await)
    }

    /// Starts leadership term `token`: from now on, writes of earlier terms
    /// are refused. Refused itself when a later term already started.
    pub async fn advance_fence(&self, token: i64) -> Result<()> {
        dispatch!(self, s => s.advance_fence(token).await)
    }

    /// Close the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        dispatch!(self, s => s.close().await)
    }

    /// Every tenant the store holds anything for (data or ledger), sorted.
    pub async fn tenants(&self) -> Result<Vec<TenantKey>> {
        dispatch!(self, s => s.tenants().await)
    }

    /// The tenant's directory (empty if the store knows nothing of it).
    pub async fn directory(&self, tenant: &TenantKey) -> Result<Directory> {
        dispatch!(self, s => s.directory(tenant).await)
    }

    /// Apply `diff` to the tenant's directory and record `run`, in ONE
    /// transaction. Adds and updates are upserts that leave a row untouched
    /// when it already holds the same values, so re-applying a diff writes
    /// nothing; the rows really written are recorded as the run's
    /// `rows_written`.
    pub async fn apply_sync(
        &self,
        tenant: &TenantKey,
        diff: &DirectoryDiff,
        run: &SyncRunRecord,
    ) -> Result<SyncRunId> {
        dispatch!(self, s => s.apply_sync(tenant, diff, run).await)
    }

    /// Opens a staging run for a sync of the tenant (see `staging.rs`),
    /// deleting first whatever an earlier sync of the tenant left there (a
    /// process killed mid-sync). A sync still writing to a run this replaces
    /// fails with [`Error::StagingLost`] when it finishes or applies.
    pub async fn begin_staging(&self, tenant: &TenantKey) -> Result<Staging> {
        dispatch!(self, s => s.begin_staging(tenant).await)
    }

    /// Writes one batch of what the sync read into its staging run (SQLite:
    /// multi-row inserts in one short transaction; PostgreSQL: one `COPY`).
    /// A department staged twice keeps its last copy, a member its first.
    pub async fn stage(
        &self,
        staging: &mut Staging,
        departments: &[Department],
        members: &[Member],
    ) -> Result<()> {
        dispatch!(self, s => s.stage(staging, departments, members).await)
    }

    /// Which of `userids` the run holds already.
    pub async fn staged_userids(
        &self,
        staging: &Staging,
        userids: &[String],
    ) -> Result<Vec<String>> {
        dispatch!(self, s => s.staged_userids(staging, userids).await)
    }

    /// Ends the run's read: normalizes it as `core::desired::desired_directory`
    /// does (departments whose parent was not read become top ones, members
    /// keep only the departments read). Call it only after a complete read.
    pub async fn finish_staging(&self, staging: Staging) -> Result<Staged> {
        dispatch!(self, s => s.finish_staging(staging).await)
    }

    /// What applying the run would change: counts, and the directory's
    /// members and departments the read did not find (one consistent read).
    pub async fn staged_changes(&self, staged: &Staged) -> Result<StagedChanges> {
        dispatch!(self, s => s.staged_changes(staged).await)
    }

    /// The run's whole diff with the directory, row by row, in the order of
    /// `core::directory::diff`. It holds every added and updated row in
    /// memory: for checks and small directories; a sync uses
    /// [`Store::staged_changes`].
    pub async fn staged_diff(&self, staged: &Staged) -> Result<DirectoryDiff> {
        dispatch!(self, s => s.staged_diff(staged).await)
    }

    /// Applies the run to the tenant's directory and records `run`, in ONE
    /// transaction, as [`Store::apply_sync`] does: every staged department
    /// and member is added or updated (rows already equal are not touched),
    /// and of the rows the read did not find only `remove_members` and
    /// `remove_departments` are deleted. The staging run is deleted after the
    /// commit. [`Error::StagingLost`] if another sync replaced the run.
    pub async fn apply_staged(
        &self,
        staged: Staged,
        remove_members: &[String],
        remove_departments: &[i64],
        run: &SyncRunRecord,
    ) -> Result<SyncRunId> {
        dispatch!(self, s => s.apply_staged(staged, remove_members, remove_departments, run).await)
    }

    /// Deletes a staging run and its rows (a sync that failed or changed nothing).
    pub async fn drop_staging(&self, run: StagingId) -> Result<()> {
        dispatch!(self, s => s.drop_staging(run).await)
    }

    /// How many members the tenant's directory holds.
    pub async fn member_count(&self, tenant: &TenantKey) -> Result<u64> {
        dispatch!(self, s => s.member_count(tenant).await)
    }

    /// Record a sync run that did not change the directory (failed or held).
    pub async fn record_sync_run(
        &self,
        tenant: &TenantKey,
        run: &SyncRunRecord,
    ) -> Result<SyncRunId> {
        dispatch!(self, s => s.record_sync_run(tenant, run).await)
    }

    /// The tenant's last `limit` sync runs, newest first.
    pub async fn sync_runs(&self, tenant: &TenantKey, limit: u32) -> Result<Vec<SyncRun>> {
        dispatch!(self, s => s.sync_runs(tenant, limit).await)
    }

    /// Remove the DingTalk-synced departments and members (unbinding). The
    /// account, ledger, runs and documents stay.
    pub async fn clear_directory(&self, tenant: &TenantKey) -> Result<()> {
        dispatch!(self, s => s.clear_directory(tenant).await)
    }

    /// Delete everything the store holds for the tenant (`deletionPolicy:
    /// Delete`): directory, account, sync runs and documents. Never the ledger.
    pub async fn delete_tenant_data(&self, tenant: &TenantKey) -> Result<()> {
        dispatch!(self, s => s.delete_tenant_data(tenant).await)
    }

    /// The tenant's account, if one was stored.
    pub async fn account(&self, tenant: &TenantKey) -> Result<Option<Account>> {
        dispatch!(self, s => s.account(tenant).await)
    }

    /// Store the tenant's account. Refused with [`Error::Irreversible`] if it
    /// says `DingTalk` mode while the ledger holds an unbind.
    pub async fn put_account(&self, tenant: &TenantKey, account: &Account) -> Result<()> {
        dispatch!(self, s => s.put_account(tenant, account).await)
    }

    /// Append to the binding ledger. A `Bound` entry after an `Unbound` one is
    /// refused with [`Error::Irreversible`]. Nothing ever removes an entry.
    pub async fn append_ledger(&self, tenant: &TenantKey, entry: LedgerEntry) -> Result<()> {
        dispatch!(self, s => s.append_ledger(tenant, &entry).await)
    }

    /// The other tenants that were unbound from DingTalk organization
    /// `corp_id` (every tenant but `except`), sorted.
    pub async fn unbound_from_corp(
        &self,
        corp_id: &str,
        except: &TenantKey,
    ) -> Result<Vec<TenantKey>> {
        dispatch!(self, s => s.unbound_from_corp(corp_id, except).await)
    }

    /// The tenant's ledger, oldest first.
    pub async fn ledger(&self, tenant: &TenantKey) -> Result<Vec<LedgerEntry>> {
        dispatch!(self, s => s.ledger(tenant).await)
    }

    /// Whether the ledger records an unbind: the tenant can never be in
    /// DingTalk mode again.
    pub async fn is_unbound(&self, tenant: &TenantKey) -> Result<bool> {
        dispatch!(self, s => s.is_unbound(tenant).await)
    }

    /// Store (replace) the tenant's document of `kind`, e.g. `"status"` or
    /// `"accepted-spec"`.
    /// Keeps `ticket` as the newest ticket of suite `suite_key` (it replaces the old).
    pub async fn put_suite_ticket(&self, suite_key: &str, ticket: &str) -> Result<()> {
        dispatch!(self, s => s.put_suite_ticket(suite_key, ticket).await)
    }

    /// The newest ticket of suite `suite_key`, if one came.
    pub async fn suite_ticket(&self, suite_key: &str) -> Result<Option<String>> {
        dispatch!(self, s => s.suite_ticket(suite_key).await)
    }

    /// The tenant's member `userid`, with their departments, if the directory has them.
    pub async fn member(&self, tenant: &TenantKey, userid: &str) -> Result<Option<Member>> {
        dispatch!(self, s => s.member(tenant, userid).await)
    }

    /// What a login decision reads of a tenant, in one round trip: the
    /// account's mode, whether the ledger records an unbind, and its
    /// documents of the two `kinds`.
    pub async fn login_facts(&self, tenant: &TenantKey, kinds: [&str; 2]) -> Result<LoginFacts> {
        dispatch!(self, s => s.login_facts(tenant, kinds).await)
    }

    /// The userid of the tenant's member with `unionid`, if the directory has one.
    pub async fn userid_of_unionid(
        &self,
        tenant: &TenantKey,
        unionid: &str,
    ) -> Result<Option<String>> {
        dispatch!(self, s => s.userid_of_unionid(tenant, unionid).await)
    }

    pub async fn put_document(&self, tenant: &TenantKey, kind: &str, body: &Value) -> Result<()> {
        dispatch!(self, s => s.put_document(tenant, kind, body).await)
    }

    /// The tenant's document of `kind`, if any.
    pub async fn document(&self, tenant: &TenantKey, kind: &str) -> Result<Option<Value>> {
        dispatch!(self, s => s.document(tenant, kind).await)
    }

    /// The tenant's document of `kind` as a `T`. A document that does not
    /// parse as one (written by another version) is taken as absent, and
    /// logged.
    pub async fn typed_document<T: serde::de::DeserializeOwned>(
        &self,
        tenant: &TenantKey,
        kind: &str,
    ) -> Result<Option<T>> {
        Ok(self
            .document(tenant, kind)
            .await?
            .and_then(|v| match serde_json::from_value(v) {
                Ok(t) => Some(t),
                Err(e) => {
                    tracing::warn!(tenant = %tenant, kind, error = %e, "a stored document does not parse; ignored");
                    None
                }
            }))
    }

    /// Every tenant's document of `kind`, sorted by tenant.
    pub async fn documents(&self, kind: &str) -> Result<Vec<(TenantKey, Value)>> {
        dispatch!(self, s => s.documents(kind).await)
    }
}

/// A list bound as one JSON array parameter (`json_each` / `jsonb_array_elements`).
fn json_array<T: Serialize>(items: &[T]) -> Result<String> {
    serde_json::to_string(items).map_err(|e| Error::InvalidInput {
        context: "encoding a key list".into(),
        reason: e.to_string(),
    })
}
