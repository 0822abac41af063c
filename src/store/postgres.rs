//! The PostgreSQL backend, for production installations shared by several
//! operator replicas.
//!
//! Bulk writes bind whole columns as arrays and read them with `UNNEST`, so a
//! chunk of [`ROWS_PER_STATEMENT`] rows is one statement with a fixed number
//! of parameters (one prepared plan, no 65,535-parameter limit). Concurrent
//! writers for one tenant are serialized by locking its `tenants` row.

use std::time::Duration;

use jiff::Timestamp;
use serde_json::Value;
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};

use super::error::{Context, Error, Result};
use super::model::{self, Account, LedgerEntry, LoginFacts, SyncRun, SyncRunId, SyncRunRecord};
use super::rows::{
    self, AccountRow, DirectoryReader, DocumentRow, LedgerRow, SyncRunRow, TenantRow,
};
use super::staging::{self, Staged, StagedChanges, Staging, StagingId};
use super::url::StoreUrl;
use super::{migrations, sql};
use crate::api::{Mode, TenantKey};
use crate::core::directory::{Department, Directory, DirectoryDiff, Member};

/// How long start-up waits for the server to answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a query waits for a pooled connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);
/// Rows per `UNNEST` statement.
const ROWS_PER_STATEMENT: usize = 5_000;
/// Connections in the pool.
const POOL_SIZE: u32 = 8;

/// `started_at` etc. as microseconds since the epoch (exact: `extract` returns
/// `numeric` since PostgreSQL 14).
fn micros(column: &str) -> String {
    format!("(extract(epoch FROM {column}) * 1000000)::bigint")
}

/// A timestamp as the text PostgreSQL parses exactly into `timestamptz`
/// (microsecond precision).
fn pg_ts(t: Timestamp) -> String {
    Timestamp::from_microsecond(t.as_microsecond())
        .unwrap_or(t)
        .to_string()
}

/// [`sql::TENANT_ID`], locking the row until the transaction ends.
const TENANT_ID_FOR_UPDATE: &str =
    "SELECT id FROM tenants WHERE namespace = $1 AND name = $2 FOR UPDATE";

/// Delete the department links of tenant $1's members $2 (members and links
/// carry no foreign key on PostgreSQL: see migration 3).
const DELETE_LINKS_OF: &str =
    "DELETE FROM member_departments WHERE tenant_id = $1 AND userid = ANY($2)";

/// Delete every department link of tenant $1.
const DELETE_LINKS: &str = "DELETE FROM member_departments WHERE tenant_id = $1";

/// A PostgreSQL-backed store.
#[derive(Clone, Debug)]
pub(crate) struct PgStore {
    pool: PgPool,
    /// The fencing token every write carries (`None`: unfenced).
    fence: Option<i64>,
}

/// [`Error::Unavailable`] for `url`, its password kept out.
fn unavailable(url: &StoreUrl, reason: &str) -> Error {
    Error::Unavailable {
        url: url.redacted(),
        reason: url.scrub(reason),
    }
}

/// One connection, within [`CONNECT_TIMEOUT`]: an unreachable server fails
/// start-up with a clear error instead of hanging.
async fn first_connection(url: &StoreUrl, options: &PgConnectOptions) -> Result<PgConnection> {
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(options)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(unavailable(url, &e.to_string())),
        Err(_) => Err(unavailable(
            url,
            &format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()),
        )),
    }
}

impl PgStore {
    /// Connect once (so that an unreachable server fails start-up), migrate
    /// under sqlx's advisory lock on that dedicated connection, close it, then
    /// open the pool.
    pub(crate) async fn connect(url: &StoreUrl, options: &PgConnectOptions) -> Result<Self> {
        let mut options = options.clone();
        if options.get_application_name().is_none() {
            options = options.application_name("dingbind");
        }
        let unavailable = |reason: String| unavailable(url, &reason);
        let mut conn = first_connection(url, &options).await?;
        let migrated = migrations::run(&migrations::postgres(), &mut conn).await;
        if migrated.is_ok()
            && let Err(e) = purge_stale_staging(&mut conn).await
        {
            tracing::warn!(error = %url.scrub(&e.to_string()), "stale sync staging was not deleted at open");
        }
        let closed = conn.close().await;
        migrated.map_err(|e| Error::Migration {
            url: url.redacted(),
            reason: url.scrub(&e.to_string()),
        })?;
        closed.map_err(|e| unavailable(e.to_string()))?;
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(options);
        Ok(PgStore { pool, fence: None })
    }

    /// Connect without migrating, every transaction read-only. `None` when
    /// the database holds no dingbind schema yet.
    pub(crate) async fn open_read_only(
        url: &StoreUrl,
        options: &PgConnectOptions,
    ) -> Result<Option<Self>> {
        let mut options = options
            .clone()
            .options([("default_transaction_read_only", "on")]);
        if options.get_application_name().is_none() {
            options = options.application_name("dingbind");
        }
        let unavailable = |reason: String| unavailable(url, &reason);
        let mut conn = first_connection(url, &options).await?;
        let schema: std::result::Result<Option<String>, sqlx::Error> =
            sqlx::query_scalar("SELECT to_regclass('ledger')::text")
                .fetch_one(&mut conn)
                .await;
        let closed = conn.close().await;
        let schema = schema.map_err(|e| unavailable(e.to_string()))?;
        closed.map_err(|e| unavailable(e.to_string()))?;
        if schema.is_none() {
            return Ok(None);
        }
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(options);
        Ok(Some(PgStore { pool, fence: None }))
    }

    pub(crate) async fn close(&self) {
        self.pool.close().await;
    }

    pub(crate) fn with_fence(&self, token: i64) -> Self {
        Self {
            pool: self.pool.clone(),
            fence: Some(token),
        }
    }

    /// A write transaction, refused when a later leadership term has written.
    /// The fence row is read `FOR SHARE`: writers of one term run side by
    /// side, and a new term's [`Self::advance_fence`] waits until they commit.
    async fn write_tx(
        &self,
        ctx: impl Fn() -> String + Copy,
    ) -> Result<sqlx::Transaction<'static, sqlx::Postgres>> {
        let mut tx = self.pool.begin().await.ctx(ctx)?;
        if let Some(token) = self.fence {
            let current: i64 =
                sqlx::query_scalar(sqlx::AssertSqlSafe(format!("{} FOR SHARE", sql::FENCE)))
                    .fetch_one(&mut *tx)
                    .await
                    .ctx(|| "reading the fencing token".to_string())?;
            if current > token {
                return Err(Error::Fenced { token, current });
            }
        }
        Ok(tx)
    }

    pub(crate) async fn fence_token(&self) -> Result<i64> {
        sqlx::query_scalar(sql::FENCE)
            .fetch_one(&self.pool)
            .await
            .ctx(|| "reading the fencing token".to_string())
    }

    pub(crate) async fn advance_fence(&self, token: i64) -> Result<()> {
        let ctx = || format!("raising the fencing token to {token}");
        let mut tx = self.pool.begin().await.ctx(ctx)?;
        sqlx::query(sql::ADVANCE_FENCE)
            .bind(token)
            .execute(&mut *tx)
            .await
            .ctx(ctx)?;
        let current: i64 = sqlx::query_scalar(sql::FENCE)
            .fetch_one(&mut *tx)
            .await
            .ctx(ctx)?;
        if current > token {
            return Err(Error::Fenced { token, current });
        }
        tx.commit().await.ctx(ctx)
    }

    pub(crate) async fn tenants(&self) -> Result<Vec<TenantKey>> {
        let found: Vec<TenantRow> = sqlx::query_as(sql::TENANTS)
            .fetch_all(&self.pool)
            .await
            .ctx(|| "listing tenants".to_string())?;
        Ok(found.into_iter().map(rows::tenant).collect())
    }

    pub(crate) async fn directory(&self, t: &TenantKey) -> Result<Directory> {
        let ctx = || format!("reading the directory of {t}");
        // One snapshot for the three reads, even while a sync commits.
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await
            .ctx(ctx)?;
        let Some(tenant) = tenant_id(&mut tx, t, false).await? else {
            return Ok(Directory::default());
        };
        let mut dir = DirectoryReader::new(ctx());
        dir.departments(
            sqlx::query_as(sql::DEPARTMENTS)
                .bind(tenant)
                .fetch(&mut *tx),
        )
        .await?;
        dir.members(sqlx::query_as(sql::MEMBERS).bind(tenant).fetch(&mut *tx))
            .await?;
        dir.links(
            sqlx::query_as(sql::MEMBER_DEPARTMENTS)
                .bind(tenant)
                .fetch(&mut *tx),
        )
        .await?;
        tx.commit().await.ctx(ctx)?;
        Ok(dir.finish())
    }

    pub(crate) async fn apply_sync(
        &self,
        t: &TenantKey,
        diff: &DirectoryDiff,
        run: &SyncRunRecord,
    ) -> Result<SyncRunId> {
        let ctx = || format!("applying a sync to {t}");
        let mut tx = self.write_tx(ctx).await?;
        let tenant = ensure_tenant(&mut tx, t).await?;
        let mut written = 0u64;
        for chunk in diff.remove_members.chunks(ROWS_PER_STATEMENT) {
            // Their links first (no foreign key cascades on PostgreSQL);
            // counted with the member, as a cascade would be.
            sqlx::query(DELETE_LINKS_OF)
                .bind(tenant)
                .bind(chunk)
                .execute(&mut *tx)
                .await
                .ctx(ctx)?;
            written += sqlx::query("DELETE FROM members WHERE tenant_id = $1 AND userid = ANY($2)")
                .bind(tenant)
                .bind(chunk)
                .execute(&mut *tx)
                .await
                .ctx(ctx)?
                .rows_affected();
        }
        for chunk in diff.remove_departments.chunks(ROWS_PER_STATEMENT) {
            written +=
                sqlx::query("DELETE FROM departments WHERE tenant_id = $1 AND dept_id = ANY($2)")
                    .bind(tenant)
                    .bind(chunk)
                    .execute(&mut *tx)
                    .await
                    .ctx(ctx)?
                    .rows_affected();
        }
        for chunk in diff
            .add_departments
            .chunks(ROWS_PER_STATEMENT)
            .chain(diff.update_departments.chunks(ROWS_PER_STATEMENT))
        {
            written += upsert_departments(&mut tx, tenant, chunk).await.ctx(ctx)?;
        }
        for chunk in diff
            .add_members
            .chunks(ROWS_PER_STATEMENT)
            .chain(diff.update_members.chunks(ROWS_PER_STATEMENT))
        {
            written += upsert_members(&mut tx, tenant, chunk).await.ctx(ctx)?;
            written += sync_member_departments(&mut tx, tenant, chunk)
                .await
                .ctx(ctx)?;
        }
        let id = insert_run(&mut tx, tenant, run, written).await?;
        tx.commit().await.ctx(ctx)?;
        Ok(id)
    }

    pub(crate) async fn record_sync_run(
        &self,
        t: &TenantKey,
        run: &SyncRunRecord,
    ) -> Result<SyncRunId> {
        let ctx = || format!("recording a sync run of {t}");
        let mut tx = self.write_tx(ctx).await?;
        let tenant = ensure_tenant(&mut tx, t).await?;
        let id = insert_run(&mut tx, tenant, run, 0).await?;
        tx.commit().await.ctx(ctx)?;
        Ok(id)
    }

    pub(crate) async fn sync_runs(&self, t: &TenantKey, limit: u32) -> Result<Vec<SyncRun>> {
        let ctx = || format!("reading the sync runs of {t}");
        let query = format!(
            "SELECT r.id, {}, {}, r.outcome, r.added, r.updated, r.removed, r.calls, r.held_deletions, r.rows_written, r.message \
             FROM sync_runs r JOIN tenants t ON t.id = r.tenant_id WHERE t.namespace = $1 AND t.name = $2 ORDER BY r.id DESC LIMIT $3",
            micros("r.started_at"),
            micros("r.finished_at")
        );
        let found: Vec<SyncRunRow> = sqlx::query_as(sqlx::AssertSqlSafe(query))
            .bind(&t.namespace)
            .bind(&t.name)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .ctx(ctx)?;
        found.into_iter().map(rows::sync_run).collect()
    }

    pub(crate) async fn clear_directory(&self, t: &TenantKey) -> Result<()> {
        let ctx = || format!("clearing the directory of {t}");
        let mut tx = self.write_tx(ctx).await?;
        if let Some(tenant) = tenant_id(&mut tx, t, true).await? {
            sqlx::query(DELETE_LINKS)
                .bind(tenant)
                .execute(&mut *tx)
                .await
                .ctx(ctx)?;
            sqlx::query(sql::DELETE_MEMBERS)
                .bind(tenant)
                .execute(&mut *tx)
                .await
                .ctx(ctx)?;
            sqlx::query(sql::DELETE_DEPARTMENTS)
                .bind(tenant)
                .execute(&mut *tx)
                .await
                .ctx(ctx)?;
        }
        tx.commit().await.ctx(ctx)
    }

    pub(crate) async fn delete_tenant_data(&self, t: &TenantKey) -> Result<()> {
        let ctx = || format!("deleting the data of {t}");
        let mut tx = self.write_tx(ctx).await?;
        // Staging rows, members and links are not linked to the tenant row
        // by a foreign key: deleted first.
        if let Some(tenant) = tenant_id(&mut tx, t, true).await? {
            for q in [DELETE_LINKS, sql::DELETE_MEMBERS] {
                sqlx::query(q)
                    .bind(tenant)
                    .execute(&mut *tx)
                    .await
                    .ctx(ctx)?;
            }
            purge_runs(
                &mut tx,
                "SELECT id FROM staging_runs WHERE tenant_id = $1",
                tenant,
            )
            .await
            .ctx(ctx)?;
        }
        sqlx::query(sql::DELETE_TENANT)
            .bind(&t.namespace)
            .bind(&t.name)
            .execute(&mut *tx)
            .await
            .ctx(ctx)?;
        tx.commit().await.ctx(ctx)
    }

    pub(crate) async fn account(&self, t: &TenantKey) -> Result<Option<Account>> {
        let ctx = || format!("reading the account of {t}");
        let row: Option<AccountRow> = sqlx::query_as(sql::ACCOUNT)
            .bind(&t.namespace)
            .bind(&t.name)
            .fetch_optional(&self.pool)
            .await
            .ctx(ctx)?;
        row.map(rows::account).transpose()
    }

    pub(crate) async fn put_account(&self, t: &TenantKey, account: &Account) -> Result<()> {
        let ctx = || format!("writing the account of {t}");
        let mut tx = self.write_tx(ctx).await?;
        lock_ledger(&mut tx, t).await?;
        if account.mode == Mode::DingTalk && is_unbound(&mut tx, t).await? {
            return Err(Error::Irreversible { tenant: t.clone() });
        }
        let tenant = ensure_tenant(&mut tx, t).await?;
        sqlx::query(
            "INSERT INTO accounts (tenant_id, mode, corp_id, creator_email, creator_phone, password_set, updated_at) VALUES ($1, $2, $3, $4, $5, $6, now()) \
             ON CONFLICT (tenant_id) DO UPDATE SET mode = excluded.mode, corp_id = excluded.corp_id, creator_email = excluded.creator_email, \
             creator_phone = excluded.creator_phone, password_set = excluded.password_set, updated_at = excluded.updated_at",
        )
        .bind(tenant)
        .bind(account.mode.as_str())
        .bind(&account.corp_id)
        .bind(&account.creator_email)
        .bind(&account.creator_phone)
        .bind(account.password_set)
        .execute(&mut *tx)
        .await
        .ctx(ctx)?;
        tx.commit().await.ctx(ctx)
    }

    pub(crate) async fn append_ledger(&self, t: &TenantKey, entry: &LedgerEntry) -> Result<()> {
        let ctx = || format!("appending to the ledger of {t}");
        let mut tx = self.write_tx(ctx).await?;
        lock_ledger(&mut tx, t).await?;
        if matches!(entry, LedgerEntry::Bound { .. }) && is_unbound(&mut tx, t).await? {
            return Err(Error::Irreversible { tenant: t.clone() });
        }
        let c = model::ledger_columns(entry);
        sqlx::query("INSERT INTO ledger (namespace, name, event, at, corp_id, reason, agent_id, trial_ends_at, confirmation) VALUES ($1, $2, $3, $4::timestamptz, $5, $6, $7, $8::timestamptz, $9)")
            .bind(&t.namespace)
            .bind(&t.name)
            .bind(c.event)
            .bind(pg_ts(c.at))
            .bind(c.corp_id)
            .bind(c.reason)
            .bind(c.agent_id)
            .bind(c.trial_ends_at.map(pg_ts))
            .bind(c.confirmation)
            .execute(&mut *tx)
            .await
            .ctx(ctx)?;
        tx.commit().await.ctx(ctx)
    }

    pub(crate) async fn unbound_from_corp(
        &self,
        corp_id: &str,
        except: &TenantKey,
    ) -> Result<Vec<TenantKey>> {
        let found: Vec<TenantRow> = sqlx::query_as(sql::UNBOUND_FROM_CORP)
            .bind(corp_id)
            .bind(&except.namespace)
            .bind(&except.name)
            .fetch_all(&self.pool)
            .await
            .ctx(|| format!("reading the ledger for organization {corp_id}"))?;
        Ok(found.into_iter().map(rows::tenant).collect())
    }

    pub(crate) async fn ledger(&self, t: &TenantKey) -> Result<Vec<LedgerEntry>> {
        let ctx = || format!("reading the ledger of {t}");
        let query = format!(
            "SELECT event, {}, corp_id, reason, agent_id, {}, confirmation FROM ledger WHERE namespace = $1 AND name = $2 ORDER BY seq",
            micros("at"),
            micros("trial_ends_at")
        );
        let found: Vec<LedgerRow> = sqlx::query_as(sqlx::AssertSqlSafe(query))
            .bind(&t.namespace)
            .bind(&t.name)
            .fetch_all(&self.pool)
            .await
            .ctx(ctx)?;
        found.into_iter().map(rows::ledger_entry).collect()
    }

    pub(crate) async fn is_unbound(&self, t: &TenantKey) -> Result<bool> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .ctx(|| format!("reading the ledger of {t}"))?;
        is_unbound(&mut conn, t).await
    }

    pub(crate) async fn put_document(&self, t: &TenantKey, kind: &str, body: &Value) -> Result<()> {
        let ctx = || format!("writing the {kind:?} document of {t}");
        let mut tx = self.write_tx(ctx).await?;
        let tenant = ensure_tenant(&mut tx, t).await?;
        sqlx::query(
            "INSERT INTO documents (tenant_id, kind, body, updated_at) VALUES ($1, $2, $3::jsonb, now()) \
             ON CONFLICT (tenant_id, kind) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
        )
        .bind(tenant)
        .bind(kind)
        .bind(body.to_string())
        .execute(&mut *tx)
        .await
        .ctx(ctx)?;
        tx.commit().await.ctx(ctx)
    }

    pub(crate) async fn put_suite_ticket(&self, suite_key: &str, ticket: &str) -> Result<()> {
        let ctx = || format!("writing the suite ticket of {suite_key}");
        let mut tx = self.write_tx(ctx).await?;
        sqlx::query(
            "INSERT INTO suite_tickets (suite_key, ticket, received_at) VALUES ($1, $2, now()) \
             ON CONFLICT (suite_key) DO UPDATE SET ticket = excluded.ticket, received_at = excluded.received_at",
        )
        .bind(suite_key)
        .bind(ticket)
        .execute(&mut *tx)
        .await
        .ctx(ctx)?;
        tx.commit().await.ctx(ctx)
    }

    pub(crate) async fn suite_ticket(&self, suite_key: &str) -> Result<Option<String>> {
        sqlx::query_scalar(sql::SUITE_TICKET)
            .bind(suite_key)
            .fetch_optional(&self.pool)
            .await
            .ctx(|| format!("reading the suite ticket of {suite_key}"))
    }

    pub(crate) async fn member(&self, t: &TenantKey, userid: &str) -> Result<Option<Member>> {
        let found: Vec<rows::MemberDeptRow> = sqlx::query_as(sql::MEMBER)
            .bind(&t.namespace)
            .bind(&t.name)
            .bind(userid)
            .fetch_all(&self.pool)
            .await
            .ctx(|| format!("reading a member of {t}"))?;
        Ok(rows::member_of_rows(found))
    }

    pub(crate) async fn login_facts(&self, t: &TenantKey, kinds: [&str; 2]) -> Result<LoginFacts> {
        let ctx = || format!("reading the login facts of {t}");
        let (mode, unbound, first, second): (Option<String>, bool, Option<String>, Option<String>) =
            sqlx::query_as(sql::LOGIN_FACTS)
                .bind(&t.namespace)
                .bind(&t.name)
                .bind(kinds[0])
                .bind(kinds[1])
                .fetch_one(&self.pool)
                .await
                .ctx(ctx)?;
        let document = |body: Option<String>| body.map(|b| rows::document(&b, &ctx())).transpose();
        Ok(LoginFacts {
            mode: mode.as_deref().map(model::mode_from_str).transpose()?,
            unbound,
            documents: [document(first)?, document(second)?],
        })
    }

    pub(crate) async fn userid_of_unionid(
        &self,
        t: &TenantKey,
        unionid: &str,
    ) -> Result<Option<String>> {
        sqlx::query_scalar(sql::USERID_OF_UNIONID)
            .bind(&t.namespace)
            .bind(&t.name)
            .bind(unionid)
            .fetch_optional(&self.pool)
            .await
            .ctx(|| format!("looking up a unionid in the directory of {t}"))
    }

    pub(crate) async fn document(&self, t: &TenantKey, kind: &str) -> Result<Option<Value>> {
        let ctx = || format!("reading the {kind:?} document of {t}");
        let body: Option<String> = sqlx::query_scalar(sql::DOCUMENT)
            .bind(&t.namespace)
            .bind(&t.name)
            .bind(kind)
            .fetch_optional(&self.pool)
            .await
            .ctx(ctx)?;
        body.map(|b| rows::document(&b, &ctx())).transpose()
    }

    pub(crate) async fn documents(&self, kind: &str) -> Result<Vec<(TenantKey, Value)>> {
        let ctx = || format!("reading the {kind:?} documents");
        let found: Vec<DocumentRow> = sqlx::query_as(sql::DOCUMENTS)
            .bind(kind)
            .fetch_all(&self.pool)
            .await
            .ctx(ctx)?;
        found
            .into_iter()
            .map(|r| rows::tenant_document(r, &ctx()))
            .collect()
    }
}

/// The tenant's id; with `for_update`, its row is locked until the transaction ends.
async fn tenant_id(
    conn: &mut PgConnection,
    t: &TenantKey,
    for_update: bool,
) -> Result<Option<i64>> {
    let query = if for_update {
        TENANT_ID_FOR_UPDATE
    } else {
        sql::TENANT_ID
    };
    sqlx::query_scalar(query)
        .bind(&t.namespace)
        .bind(&t.name)
        .fetch_optional(conn)
        .await
        .ctx(|| format!("looking up tenant {t}"))
}

/// The tenant's id, registering it if needed; its row stays locked until the
/// transaction ends, which serializes writers of one tenant across replicas.
async fn ensure_tenant(conn: &mut PgConnection, t: &TenantKey) -> Result<i64> {
    sqlx::query("INSERT INTO tenants (namespace, name) VALUES ($1, $2) ON CONFLICT (namespace, name) DO NOTHING")
        .bind(&t.namespace)
        .bind(&t.name)
        .execute(&mut *conn)
        .await
        .ctx(|| format!("registering tenant {t}"))?;
    match tenant_id(conn, t, true).await? {
        Some(id) => Ok(id),
        None => Err(model::corrupt(
            &format!("registering tenant {t}"),
            "the tenant row vanished (deleted concurrently)".into(),
        )),
    }
}

/// The same per-tenant lock the ledger trigger takes: a check-then-write on
/// the ledger cannot race another replica's append.
async fn lock_ledger(conn: &mut PgConnection, t: &TenantKey) -> Result<()> {
    sqlx::query(
        "SELECT pg_advisory_xact_lock(hashtextextended('dingbind-ledger/' || $1 || '/' || $2, 0))",
    )
    .bind(&t.namespace)
    .bind(&t.name)
    .execute(conn)
    .await
    .ctx(|| format!("locking the ledger of {t}"))?;
    Ok(())
}

async fn is_unbound(conn: &mut PgConnection, t: &TenantKey) -> Result<bool> {
    sqlx::query_scalar(sql::IS_UNBOUND)
        .bind(&t.namespace)
        .bind(&t.name)
        .fetch_one(conn)
        .await
        .ctx(|| format!("reading the ledger of {t}"))
}

async fn insert_run(
    conn: &mut PgConnection,
    tenant: i64,
    run: &SyncRunRecord,
    rows_written: u64,
) -> Result<SyncRunId> {
    let id = sqlx::query_scalar(
        "INSERT INTO sync_runs (tenant_id, started_at, finished_at, outcome, added, updated, removed, calls, held_deletions, rows_written, message) \
         VALUES ($1, $2::timestamptz, $3::timestamptz, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
    )
    .bind(tenant)
    .bind(pg_ts(run.started))
    .bind(pg_ts(run.finished))
    .bind(run.outcome.as_str())
    .bind(model::to_db_count(run.added, "added")?)
    .bind(model::to_db_count(run.updated, "updated")?)
    .bind(model::to_db_count(run.removed, "removed")?)
    .bind(model::to_db_count(run.calls, "calls")?)
    .bind(model::to_db_count(run.held_deletions, "held deletions")?)
    .bind(model::to_db_count(rows_written, "rows written")?)
    .bind(&run.message)
    .fetch_one(conn)
    .await
    .ctx(|| "recording the sync run".to_string())?;
    Ok(SyncRunId(id))
}

/// Insert or update departments; a row equal to the stored one is not touched.
async fn upsert_departments(
    conn: &mut PgConnection,
    tenant: i64,
    depts: &[Department],
) -> sqlx::Result<u64> {
    let ids: Vec<i64> = depts.iter().map(|d| d.id).collect();
    let parents: Vec<Option<i64>> = depts.iter().map(|d| d.parent_id).collect();
    let names: Vec<&str> = depts.iter().map(|d| d.name.as_str()).collect();
    let orders: Vec<i64> = depts.iter().map(|d| d.order).collect();
    let done = sqlx::query(
        "INSERT INTO departments (tenant_id, dept_id, parent_id, name, sort_order) \
         SELECT $1, * FROM UNNEST($2::bigint[], $3::bigint[], $4::text[], $5::bigint[]) \
         ON CONFLICT (tenant_id, dept_id) DO UPDATE SET parent_id = excluded.parent_id, name = excluded.name, sort_order = excluded.sort_order, \
         version = departments.version + 1 \
         WHERE (departments.parent_id, departments.name, departments.sort_order) IS DISTINCT FROM (excluded.parent_id, excluded.name, excluded.sort_order)",
    )
    .bind(tenant)
    .bind(ids)
    .bind(parents)
    .bind(names)
    .bind(orders)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// Insert or update members; a row equal to the stored one is not touched.
async fn upsert_members(
    conn: &mut PgConnection,
    tenant: i64,
    members: &[Member],
) -> sqlx::Result<u64> {
    let col = |f: fn(&Member) -> &str| -> Vec<&str> { members.iter().map(f).collect() };
    let opt =
        |f: fn(&Member) -> Option<&str>| -> Vec<Option<&str>> { members.iter().map(f).collect() };
    let flag = |f: fn(&Member) -> bool| -> Vec<bool> { members.iter().map(f).collect() };
    let done = sqlx::query(
        "INSERT INTO members (tenant_id, userid, unionid, name, mobile, email, title, job_number, active, admin, boss) \
         SELECT $1, * FROM UNNEST($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::bool[], $10::bool[], $11::bool[]) \
         ON CONFLICT (tenant_id, userid) DO UPDATE SET unionid = excluded.unionid, name = excluded.name, mobile = excluded.mobile, \
         email = excluded.email, title = excluded.title, job_number = excluded.job_number, active = excluded.active, admin = excluded.admin, \
         boss = excluded.boss, version = members.version + 1 \
         WHERE (members.unionid, members.name, members.mobile, members.email, members.title, members.job_number, members.active, members.admin, members.boss) \
         IS DISTINCT FROM (excluded.unionid, excluded.name, excluded.mobile, excluded.email, excluded.title, excluded.job_number, excluded.active, excluded.admin, excluded.boss)",
    )
    .bind(tenant)
    .bind(col(|m| &m.userid))
    .bind(col(|m| &m.unionid))
    .bind(col(|m| &m.name))
    .bind(opt(|m| m.mobile.as_deref()))
    .bind(opt(|m| m.email.as_deref()))
    .bind(opt(|m| m.title.as_deref()))
    .bind(opt(|m| m.job_number.as_deref()))
    .bind(flag(|m| m.active))
    .bind(flag(|m| m.admin))
    .bind(flag(|m| m.boss))
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// Make the department links of `members` exactly their `dept_ids`: delete the
/// links that went away, insert the new ones, leave the others untouched.
async fn sync_member_departments(
    conn: &mut PgConnection,
    tenant: i64,
    members: &[Member],
) -> sqlx::Result<u64> {
    let userids: Vec<&str> = members.iter().map(|m| m.userid.as_str()).collect();
    let (link_users, link_depts): (Vec<&str>, Vec<i64>) = members
        .iter()
        .flat_map(|m| m.dept_ids.iter().map(move |d| (m.userid.as_str(), *d)))
        .unzip();
    let deleted = sqlx::query(
        "DELETE FROM member_departments md WHERE md.tenant_id = $1 AND md.userid = ANY($2) \
         AND NOT EXISTS (SELECT 1 FROM UNNEST($3::text[], $4::bigint[]) AS n(userid, dept_id) WHERE n.userid = md.userid AND n.dept_id = md.dept_id)",
    )
    .bind(tenant)
    .bind(&userids)
    .bind(&link_users)
    .bind(&link_depts)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    let inserted = sqlx::query("INSERT INTO member_departments (tenant_id, userid, dept_id) SELECT $1, * FROM UNNEST($2::text[], $3::bigint[]) ON CONFLICT DO NOTHING")
        .bind(tenant)
        .bind(&link_users)
        .bind(&link_depts)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    Ok(deleted + inserted)
}

// ---- sync staging (see `staging.rs`) ----

/// Bytes of COPY data sent per message.
const COPY_CHUNK: usize = 256 * 1024;

impl PgStore {
    pub(crate) async fn begin_staging(&self, t: &TenantKey) -> Result<Staging> {
        let ctx = || format!("opening a sync staging area for {t}");
        let mut tx = self.write_tx(ctx).await?;
        let tenant = ensure_tenant(&mut tx, t).await?;
        purge_runs(
            &mut tx,
            "SELECT id FROM staging_runs WHERE tenant_id = $1",
            tenant,
        )
        .await
        .ctx(ctx)?;
        let run: i64 =
            sqlx::query_scalar("INSERT INTO staging_runs (tenant_id) VALUES ($1) RETURNING id")
                .bind(tenant)
                .fetch_one(&mut *tx)
                .await
                .ctx(ctx)?;
        tx.commit().await.ctx(ctx)?;
        Ok(Staging {
            run: StagingId(run),
            tenant: t.clone(),
            tenant_id: tenant,
            rows: 0,
        })
    }

    pub(crate) async fn stage(
        &self,
        s: &mut Staging,
        depts: &[Department],
        members: &[Member],
    ) -> Result<()> {
        let ctx = || format!("staging a sync of {}", s.tenant);
        let mut tx = self.write_tx(ctx).await?;
        let mut seq = s.rows;
        let mut buf = Vec::with_capacity(COPY_CHUNK + 4096);
        if !depts.is_empty() {
            let mut copy = tx
                .copy_in_raw(
                    "COPY staging_departments (run_id, seq, dept_id, parent_id, name, sort_order) FROM STDIN",
                )
                .await
                .ctx(ctx)?;
            for d in depts {
                staging::copy_int(&mut buf, s.run.0);
                buf.push(b'\t');
                staging::copy_int(&mut buf, seq);
                buf.push(b'\t');
                staging::copy_int(&mut buf, d.id);
                buf.push(b'\t');
                match d.parent_id {
                    Some(p) => staging::copy_int(&mut buf, p),
                    None => staging::copy_opt(&mut buf, None),
                }
                buf.push(b'\t');
                staging::copy_field(&mut buf, &d.name);
                buf.push(b'\t');
                staging::copy_int(&mut buf, d.order);
                buf.push(b'\n');
                seq += 1;
                if buf.len() >= COPY_CHUNK {
                    copy.send(std::mem::take(&mut buf)).await.ctx(ctx)?;
                }
            }
            if !buf.is_empty() {
                copy.send(std::mem::take(&mut buf)).await.ctx(ctx)?;
            }
            copy.finish().await.ctx(ctx)?;
        }
        if !members.is_empty() {
            let mut copy = tx
                .copy_in_raw(
                    "COPY staging_members (run_id, seq, userid, unionid, name, mobile, email, title, job_number, active, admin, boss, dept_ids) FROM STDIN",
                )
                .await
                .ctx(ctx)?;
            for m in members {
                staging::copy_int(&mut buf, s.run.0);
                buf.push(b'\t');
                staging::copy_int(&mut buf, seq);
                for text in [&m.userid, &m.unionid, &m.name] {
                    buf.push(b'\t');
                    staging::copy_field(&mut buf, text);
                }
                for text in [&m.mobile, &m.email, &m.title, &m.job_number] {
                    buf.push(b'\t');
                    staging::copy_opt(&mut buf, text.as_deref());
                }
                for flag in [m.active, m.admin, m.boss] {
                    buf.push(b'\t');
                    staging::copy_bool(&mut buf, flag);
                }
                buf.push(b'\t');
                staging::copy_int_set(&mut buf, &m.dept_ids);
                buf.push(b'\n');
                seq += 1;
                if buf.len() >= COPY_CHUNK {
                    copy.send(std::mem::take(&mut buf)).await.ctx(ctx)?;
                }
            }
            if !buf.is_empty() {
                copy.send(std::mem::take(&mut buf)).await.ctx(ctx)?;
            }
            copy.finish().await.ctx(ctx)?;
        }
        tx.commit().await.ctx(ctx)?;
        s.rows = seq;
        Ok(())
    }

    pub(crate) async fn staged_userids(
        &self,
        s: &Staging,
        userids: &[String],
    ) -> Result<Vec<String>> {
        sqlx::query_scalar(
            "SELECT DISTINCT userid FROM staging_members WHERE run_id = $1 AND userid = ANY($2)",
        )
        .bind(s.run.0)
        .bind(userids)
        .fetch_all(&self.pool)
        .await
        .ctx(|| format!("reading the sync staging of {}", s.tenant))
    }

    pub(crate) async fn finish_staging(&self, s: Staging) -> Result<Staged> {
        let ctx = || format!("finishing the sync staging of {}", s.tenant);
        let mut tx = self.write_tx(ctx).await?;
        hash_joins(&mut tx).await.ctx(ctx)?;
        check_run(&mut tx, &s.tenant, s.run, s.tenant_id, false).await?;
        for q in [
            // COPY cannot skip duplicates: keep the last copy of a department
            // and the first of a member, as `desired_directory` does.
            "DELETE FROM staging_departments s USING (SELECT dept_id, max(seq) AS keep FROM staging_departments \
             WHERE run_id = $1 GROUP BY dept_id HAVING count(*) > 1) d \
             WHERE s.run_id = $1 AND s.dept_id = d.dept_id AND s.seq <> d.keep",
            "DELETE FROM staging_members s USING (SELECT userid, min(seq) AS keep FROM staging_members \
             WHERE run_id = $1 GROUP BY userid HAVING count(*) > 1) d \
             WHERE s.run_id = $1 AND s.userid = d.userid AND s.seq <> d.keep",
            staging::NORMALIZE_PARENTS,
            // Each (member, department) once without a unique index (whose
            // upkeep cost more than the rest): a member is staged once now,
            // and its departments were staged as a set.
            "INSERT INTO staging_links (run_id, userid, dept_id) SELECT s.run_id, s.userid, d.dept_id \
             FROM staging_members s CROSS JOIN LATERAL unnest(s.dept_ids) AS d(dept_id) WHERE s.run_id = $1 \
             AND d.dept_id IN (SELECT dept_id FROM staging_departments WHERE run_id = $1)",
            staging::MARK_FINISHED,
        ] {
            sqlx::query(q)
                .bind(s.run.0)
                .execute(&mut *tx)
                .await
                .ctx(ctx)?;
        }
        tx.commit().await.ctx(ctx)?;
        Ok(Staged::new(s.run, s.tenant, s.tenant_id))
    }

    pub(crate) async fn staged_changes(&self, s: &Staged) -> Result<StagedChanges> {
        let ctx = || {
            format!(
                "comparing the sync staging of {} with its directory",
                s.tenant
            )
        };
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await
            .ctx(ctx)?;
        hash_joins(&mut tx).await.ctx(ctx)?;
        check_run(&mut tx, &s.tenant, s.run, s.tenant_id, true).await?;
        let (run, tenant) = (s.run.0, s.tenant_id);
        let (members, departments): (i64, i64) = sqlx::query_as(staging::CURRENT_COUNTS)
            .bind(tenant)
            .fetch_one(&mut *tx)
            .await
            .ctx(ctx)?;
        if (members, departments) == (0, 0) {
            // A first load: everything staged is new, nothing is missing.
            let (add_members, add_departments): (i64, i64) = sqlx::query_as(staging::STAGED_COUNTS)
                .bind(run)
                .fetch_one(&mut *tx)
                .await
                .ctx(ctx)?;
            tx.commit().await.ctx(ctx)?;
            return staging::first_load(s, add_members, add_departments);
        }
        let mut counts = [0i64; 4];
        for (i, q) in [
            staging::count_added_members(),
            staging::COUNT_UPDATED_MEMBERS.to_string(),
            staging::count_added_departments(),
            staging::count_updated_departments(),
        ]
        .into_iter()
        .enumerate()
        {
            counts[i] = sqlx::query_scalar(sqlx::AssertSqlSafe(q))
                .bind(run)
                .bind(tenant)
                .fetch_one(&mut *tx)
                .await
                .ctx(ctx)?;
        }
        let mut missing = DirectoryReader::new(ctx());
        missing
            .members(
                sqlx::query_as(staging::MISSING_MEMBERS)
                    .bind(run)
                    .bind(tenant)
                    .fetch(&mut *tx),
            )
            .await?;
        missing
            .links(
                sqlx::query_as(staging::MISSING_MEMBER_LINKS)
                    .bind(run)
                    .bind(tenant)
                    .fetch(&mut *tx),
            )
            .await?;
        let missing_departments: Vec<i64> = sqlx::query_scalar(staging::MISSING_DEPARTMENTS)
            .bind(run)
            .bind(tenant)
            .fetch_all(&mut *tx)
            .await
            .ctx(ctx)?;
        tx.commit().await.ctx(ctx)?;
        let count = |n: i64, what| model::from_db_count(n, what);
        let changes = StagedChanges {
            members: count(members, "members")?,
            departments: count(departments, "departments")?,
            add_members: count(counts[0], "added members")?,
            update_members: count(counts[1], "updated members")?,
            add_departments: count(counts[2], "added departments")?,
            update_departments: count(counts[3], "updated departments")?,
            missing_members: missing.finish().members.into_values().collect(),
            missing_departments,
        };
        let _ = s.counted.set(staging::Counted::of(&changes));
        Ok(changes)
    }

    pub(crate) async fn staged_diff(&self, s: &Staged) -> Result<DirectoryDiff> {
        let ctx = || format!("reading the diff of the sync staging of {}", s.tenant);
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await
            .ctx(ctx)?;
        hash_joins(&mut tx).await.ctx(ctx)?;
        check_run(&mut tx, &s.tenant, s.run, s.tenant_id, true).await?;
        let (run, tenant) = (s.run.0, s.tenant_id);
        let departments = |q: String| {
            sqlx::query_as::<_, rows::DepartmentRow>(sqlx::AssertSqlSafe(q))
                .bind(run)
                .bind(tenant)
        };
        let add_departments = departments(staging::added_department_rows())
            .fetch_all(&mut *tx)
            .await
            .ctx(ctx)?;
        let update_departments = departments(staging::updated_department_rows())
            .fetch_all(&mut *tx)
            .await
            .ctx(ctx)?;
        let members = |q: String| {
            sqlx::query_as::<_, rows::MemberRow>(sqlx::AssertSqlSafe(q))
                .bind(run)
                .bind(tenant)
        };
        let add_members = members(staging::added_member_rows())
            .fetch_all(&mut *tx)
            .await
            .ctx(ctx)?;
        let update_members = members(staging::updated_member_rows())
            .fetch_all(&mut *tx)
            .await
            .ctx(ctx)?;
        let links: Vec<rows::LinkRow> = sqlx::query_as(staging::STAGED_LINKS)
            .bind(run)
            .fetch_all(&mut *tx)
            .await
            .ctx(ctx)?;
        let missing = {
            let mut m = DirectoryReader::new(ctx());
            m.members(
                sqlx::query_as(staging::MISSING_MEMBERS)
                    .bind(run)
                    .bind(tenant)
                    .fetch(&mut *tx),
            )
            .await?;
            m.finish()
        };
        let remove_departments: Vec<i64> = sqlx::query_scalar(staging::MISSING_DEPARTMENTS)
            .bind(run)
            .bind(tenant)
            .fetch_all(&mut *tx)
            .await
            .ctx(ctx)?;
        tx.commit().await.ctx(ctx)?;
        Ok(rows::staged_diff(rows::StagedDiffRows {
            add_departments,
            update_departments,
            add_members,
            update_members,
            links,
            remove_members: missing.members.into_keys().collect(),
            remove_departments,
        }))
    }

    pub(crate) async fn apply_staged(
        &self,
        s: Staged,
        remove_members: &[String],
        remove_departments: &[i64],
        run: &SyncRunRecord,
    ) -> Result<SyncRunId> {
        let t = &s.tenant;
        let ctx = || format!("applying a sync to {t}");
        let mut tx = self.write_tx(ctx).await?;
        hash_joins(&mut tx).await.ctx(ctx)?;
        let tenant = ensure_tenant(&mut tx, t).await?;
        // Locked: a newer sync of the tenant cannot remove it meanwhile.
        check_run(&mut tx, t, s.run, tenant, true).await?;
        let mut written = 0u64;
        for chunk in remove_members.chunks(ROWS_PER_STATEMENT) {
            // Their links first (no foreign key cascades on PostgreSQL);
            // counted with the member, as a cascade would be.
            sqlx::query(DELETE_LINKS_OF)
                .bind(tenant)
                .bind(chunk)
                .execute(&mut *tx)
                .await
                .ctx(ctx)?;
            written += sqlx::query("DELETE FROM members WHERE tenant_id = $1 AND userid = ANY($2)")
                .bind(tenant)
                .bind(chunk)
                .execute(&mut *tx)
                .await
                .ctx(ctx)?
                .rows_affected();
        }
        for chunk in remove_departments.chunks(ROWS_PER_STATEMENT) {
            written +=
                sqlx::query("DELETE FROM departments WHERE tenant_id = $1 AND dept_id = ANY($2)")
                    .bind(tenant)
                    .bind(chunk)
                    .execute(&mut *tx)
                    .await
                    .ctx(ctx)?
                    .rows_affected();
        }
        for q in staging::apply_statements(s.counted.get()) {
            written += sqlx::query(q)
                .bind(s.run.0)
                .bind(tenant)
                .execute(&mut *tx)
                .await
                .ctx(ctx)?
                .rows_affected();
        }
        let id = insert_run(&mut tx, tenant, run, written).await?;
        tx.commit().await.ctx(ctx)?;
        if let Err(e) = self.drop_staging(s.run).await {
            tracing::warn!(tenant = %t, error = %e, "the applied sync's staging was not deleted; the next sync deletes it");
        }
        Ok(id)
    }

    pub(crate) async fn drop_staging(&self, run: StagingId) -> Result<()> {
        let ctx = || format!("deleting sync staging run {run}");
        let mut tx = self.pool.begin().await.ctx(ctx)?;
        purge_runs(&mut tx, "SELECT id FROM staging_runs WHERE id = $1", run.0)
            .await
            .ctx(ctx)?;
        tx.commit().await.ctx(ctx)
    }

    pub(crate) async fn member_count(&self, t: &TenantKey) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM members m JOIN tenants t ON t.id = m.tenant_id WHERE t.namespace = $1 AND t.name = $2",
        )
        .bind(&t.namespace)
        .bind(&t.name)
        .fetch_one(&self.pool)
        .await
        .ctx(|| format!("counting the members of {t}"))?;
        model::from_db_count(n, "members")
    }
}

/// Plans the rest of the transaction without nested loops. The staged
/// statements join a whole run with a whole directory, where hash joins are
/// linear; the planner, with the statistics of tables just filled (or none),
/// expects a few rows and picks nested loops that cost a lookup per row.
async fn hash_joins(tx: &mut PgConnection) -> sqlx::Result<()> {
    sqlx::query("SET LOCAL enable_nestloop = off")
        .execute(tx)
        .await
        .map(|_| ())
}

/// Whether run `run` of tenant `tenant` is there (and, with `finished`, read
/// to the end), locking its row until the transaction ends (except in a
/// read-only one, where the snapshot is enough): else another sync of the
/// tenant removed it.
async fn check_run(
    conn: &mut PgConnection,
    t: &TenantKey,
    run: StagingId,
    tenant: i64,
    finished: bool,
) -> Result<()> {
    let read_only: String = sqlx::query_scalar("SELECT current_setting('transaction_read_only')")
        .fetch_one(&mut *conn)
        .await
        .ctx(|| format!("checking sync staging run {run} of {t}"))?;
    let query = if read_only == "on" {
        staging::RUN_STATE.to_string()
    } else {
        format!("{} FOR UPDATE", staging::RUN_STATE)
    };
    let state: Option<i32> = sqlx::query_scalar(sqlx::AssertSqlSafe(query))
        .bind(run.0)
        .bind(tenant)
        .fetch_optional(&mut *conn)
        .await
        .ctx(|| format!("checking sync staging run {run} of {t}"))?;
    match state {
        Some(f) if (f == 1) == finished => Ok(()),
        Some(_) => Err(Error::InvalidInput {
            context: format!("sync staging run {run} of {t}"),
            reason: if finished {
                "its read was not finished".into()
            } else {
                "its read was already finished".into()
            },
        }),
        None => Err(Error::StagingLost {
            tenant: t.clone(),
            run,
        }),
    }
}

/// Deletes the staging runs `runs` selects (bound to `param`), rows first.
/// The runs are locked first, so that a sync applying one of them finishes
/// before its rows go.
async fn purge_runs(conn: &mut PgConnection, runs: &str, param: i64) -> sqlx::Result<()> {
    sqlx::query(sqlx::AssertSqlSafe(format!("{runs} FOR UPDATE")))
        .bind(param)
        .execute(&mut *conn)
        .await?;
    for table in staging::ROW_TABLES {
        sqlx::query(sqlx::AssertSqlSafe(staging::delete_rows_of(table, runs)))
            .bind(param)
            .execute(&mut *conn)
            .await?;
    }
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM staging_runs WHERE id IN ({runs})"
    )))
    .bind(param)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// At open: deletes staging runs older than a day and rows of runs that are gone.
async fn purge_stale_staging(conn: &mut PgConnection) -> sqlx::Result<()> {
    let mut tx = conn.begin().await?;
    purge_runs(
        &mut tx,
        "SELECT id FROM staging_runs WHERE started_at < now() - make_interval(secs => $1::bigint / 1000000.0)",
        staging::STALE_AFTER_MICROS,
    )
    .await?;
    for table in staging::ROW_TABLES {
        sqlx::query(sqlx::AssertSqlSafe(staging::delete_orphans(table)))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}
