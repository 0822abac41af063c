//! The SQLite backend: one database file, WAL mode (readers never block the
//! writer), writes in `BEGIN IMMEDIATE` transactions so that two writers queue
//! on the busy timeout instead of failing half-way.
//!
//! Bulk writes are multi-row `INSERT ... VALUES` statements of
//! [`ROWS_PER_STATEMENT`] rows (prepared once, cached by sqlx), and key lists
//! are bound as one JSON array read with `json_each`, so that a 100,000-member
//! first load is a few hundred statements in one transaction.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Connection, QueryBuilder, Sqlite};

use super::error::{Context, Error, Result};
use super::model::{self, Account, LedgerEntry, LoginFacts, SyncRun, SyncRunId, SyncRunRecord};
use super::rows::{
    self, AccountRow, DirectoryReader, DocumentRow, LedgerRow, SyncRunRow, TenantRow,
};
use super::staging::{self, Staged, StagedChanges, Staging, StagingId};
use super::url::StoreUrl;
use super::{json_array, migrations, sql};
use crate::api::{Mode, TenantKey};
use crate::core::directory::{Department, Directory, DirectoryDiff, Member};

/// How long a writer waits for another writer before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// Rows per multi-row INSERT (members have 11 columns: 4,400 binds, well under
/// SQLite's 32,766).
const ROWS_PER_STATEMENT: usize = 400;
/// Connections in the pool (WAL: many readers, one writer at a time).
const POOL_SIZE: u32 = 4;

/// A SQLite-backed store.
#[derive(Clone, Debug)]
pub(crate) struct SqliteStore {
    pool: SqlitePool,
    /// The fencing token every write carries (`None`: unfenced).
    fence: Option<i64>,
}

impl SqliteStore {
    /// Open (creating if missing) the database at `path` and migrate it.
    pub(crate) async fn connect(url: &StoreUrl, path: &Path) -> Result<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL is crash-safe in WAL mode (a killed process never loses a
            // committed transaction; only a power cut may lose the last ones).
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        // Another process creating the same file at this instant can hold a lock
        // the busy timeout does not cover (switching a new file to WAL): retry.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match open_and_migrate(url, path, &options).await {
                Err(Opening { busy: true, .. }) if attempt < OPEN_ATTEMPTS => {
                    tokio::time::sleep(std::time::Duration::from_millis(50 * attempt)).await;
                }
                other => break other.map_err(|o| o.error)?,
            }
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(POOL_SIZE)
            .connect_lazy_with(options);
        Ok(SqliteStore { pool, fence: None })
    }

    /// Open the existing database at `path` read-only: nothing is created or
    /// migrated. `None` when there is no such file.
    pub(crate) async fn open_read_only(url: &StoreUrl, path: &Path) -> Result<Option<Self>> {
        if !path.exists() {
            return Ok(None);
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .read_only(true)
            .create_if_missing(false)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let conn = SqliteConnection::connect_with(&options)
            .await
            .map_err(|e| Error::Unavailable {
                url: url.redacted(),
                reason: format!("{e} (file {})", path.display()),
            })?;
        let closed = conn.close().await;
        closed.map_err(|e| Error::Unavailable {
            url: url.redacted(),
            reason: e.to_string(),
        })?;
        let pool = SqlitePoolOptions::new()
            .max_connections(POOL_SIZE)
            .connect_lazy_with(options);
        Ok(Some(SqliteStore { pool, fence: None }))
    }

    /// An empty store in memory (one connection: each holds its own
    /// database), for reading "nothing known yet" through the same code.
    pub(crate) async fn empty_in_memory(url: &StoreUrl) -> Result<Self> {
        let options = SqliteConnectOptions::new()
            .in_memory(true)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(|e| Error::Unavailable {
                url: url.redacted(),
                reason: e.to_string(),
            })?;
        let mut conn = pool.acquire().await.map_err(|e| Error::Unavailable {
            url: url.redacted(),
            reason: e.to_string(),
        })?;
        migrate(&mut conn)
            .await
            .map_err(|reason| Error::Migration {
                url: url.redacted(),
                reason,
            })?;
        drop(conn);
        Ok(SqliteStore { pool, fence: None })
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
    async fn write_tx(
        &self,
        ctx: impl Fn() -> String + Copy,
    ) -> Result<sqlx::Transaction<'static, Sqlite>> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.ctx(ctx)?;
        if let Some(token) = self.fence {
            let current = fence(&mut tx).await?;
            if current > token {
                return Err(Error::Fenced { token, current });
            }
        }
        Ok(tx)
    }

    pub(crate) async fn fence_token(&self) -> Result<i64> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .ctx(|| "reading the fencing token".to_string())?;
        fence(&mut conn).await
    }

    pub(crate) async fn advance_fence(&self, token: i64) -> Result<()> {
        let ctx = || format!("raising the fencing token to {token}");
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.ctx(ctx)?;
        sqlx::query(sql::ADVANCE_FENCE)
            .bind(token)
            .execute(&mut *tx)
            .await
            .ctx(ctx)?;
        let current = fence(&mut tx).await?;
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
        // One read transaction: a consistent snapshot even while a sync commits.
        let mut tx = self.pool.begin().await.ctx(ctx)?;
        let Some(tenant) = tenant_id(&mut tx, t).await? else {
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
        if !diff.remove_members.is_empty() {
            // Cascades to member_departments.
            written += sqlx::query("DELETE FROM members WHERE tenant_id = ?1 AND userid IN (SELECT value FROM json_each(?2))")
                .bind(tenant)
                .bind(json_array(&diff.remove_members)?)
                .execute(&mut *tx)
                .await
                .ctx(ctx)?
                .rows_affected();
        }
        if !diff.remove_departments.is_empty() {
            written += sqlx::query("DELETE FROM departments WHERE tenant_id = ?1 AND dept_id IN (SELECT value FROM json_each(?2))")
                .bind(tenant)
                .bind(json_array(&diff.remove_departments)?)
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
            written += sync_member_departments(&mut tx, tenant, chunk).await?;
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
        let found: Vec<SyncRunRow> = sqlx::query_as(
            "SELECT r.id, r.started_at, r.finished_at, r.outcome, r.added, r.updated, r.removed, r.calls, r.held_deletions, r.rows_written, r.message \
             FROM sync_runs r JOIN tenants t ON t.id = r.tenant_id WHERE t.namespace = ?1 AND t.name = ?2 ORDER BY r.id DESC LIMIT ?3",
        )
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
        if let Some(tenant) = tenant_id(&mut tx, t).await? {
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
        // Staging rows are not linked to the tenant row: deleted first.
        if let Some(tenant) = tenant_id(&mut tx, t).await? {
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
        if account.mode == Mode::DingTalk && is_unbound(&mut tx, t).await? {
            return Err(Error::Irreversible { tenant: t.clone() });
        }
        let tenant = ensure_tenant(&mut tx, t).await?;
        sqlx::query(
            "INSERT INTO accounts (tenant_id, mode, corp_id, creator_email, creator_phone, password_set, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
             ON CONFLICT (tenant_id) DO UPDATE SET mode = excluded.mode, corp_id = excluded.corp_id, creator_email = excluded.creator_email, \
             creator_phone = excluded.creator_phone, password_set = excluded.password_set, updated_at = excluded.updated_at",
        )
        .bind(tenant)
        .bind(account.mode.as_str())
        .bind(&account.corp_id)
        .bind(&account.creator_email)
        .bind(&account.creator_phone)
        .bind(account.password_set)
        .bind(model::to_micros(jiff::Timestamp::now()))
        .execute(&mut *tx)
        .await
        .ctx(ctx)?;
        tx.commit().await.ctx(ctx)
    }

    pub(crate) async fn append_ledger(&self, t: &TenantKey, entry: &LedgerEntry) -> Result<()> {
        let ctx = || format!("appending to the ledger of {t}");
        let mut tx = self.write_tx(ctx).await?;
        if matches!(entry, LedgerEntry::Bound { .. }) && is_unbound(&mut tx, t).await? {
            return Err(Error::Irreversible { tenant: t.clone() });
        }
        let c = model::ledger_columns(entry);
        sqlx::query("INSERT INTO ledger (namespace, name, event, at, corp_id, reason, agent_id, trial_ends_at, confirmation) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)")
            .bind(&t.namespace)
            .bind(&t.name)
            .bind(c.event)
            .bind(model::to_micros(c.at))
            .bind(c.corp_id)
            .bind(c.reason)
            .bind(c.agent_id)
            .bind(c.trial_ends_at.map(model::to_micros))
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
        let found: Vec<LedgerRow> = sqlx::query_as("SELECT event, at, corp_id, reason, agent_id, trial_ends_at, confirmation FROM ledger WHERE namespace = ?1 AND name = ?2 ORDER BY seq")
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
            "INSERT INTO documents (tenant_id, kind, body, updated_at) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (tenant_id, kind) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
        )
        .bind(tenant)
        .bind(kind)
        .bind(body.to_string())
        .bind(model::to_micros(jiff::Timestamp::now()))
        .execute(&mut *tx)
        .await
        .ctx(ctx)?;
        tx.commit().await.ctx(ctx)
    }

    pub(crate) async fn put_suite_ticket(&self, suite_key: &str, ticket: &str) -> Result<()> {
        let ctx = || format!("writing the suite ticket of {suite_key}");
        let mut tx = self.write_tx(ctx).await?;
        sqlx::query(
            "INSERT INTO suite_tickets (suite_key, ticket, received_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (suite_key) DO UPDATE SET ticket = excluded.ticket, received_at = excluded.received_at",
        )
        .bind(suite_key)
        .bind(ticket)
        .bind(model::to_micros(jiff::Timestamp::now()))
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

/// Run the migrations inside one `BEGIN IMMEDIATE` transaction (see `migrations`).
async fn migrate(conn: &mut SqliteConnection) -> std::result::Result<(), String> {
    let mut tx = conn
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(|e| e.to_string())?;
    migrations::run(&migrations::sqlite(), &mut *tx)
        .await
        .map_err(|e| e.to_string())?;
    tx.commit().await.map_err(|e| e.to_string())
}

async fn fence(conn: &mut SqliteConnection) -> Result<i64> {
    sqlx::query_scalar(sql::FENCE)
        .fetch_one(conn)
        .await
        .ctx(|| "reading the fencing token".to_string())
}

async fn tenant_id(conn: &mut SqliteConnection, t: &TenantKey) -> Result<Option<i64>> {
    sqlx::query_scalar(sql::TENANT_ID)
        .bind(&t.namespace)
        .bind(&t.name)
        .fetch_optional(conn)
        .await
        .ctx(|| format!("looking up tenant {t}"))
}

async fn ensure_tenant(conn: &mut SqliteConnection, t: &TenantKey) -> Result<i64> {
    if let Some(id) = tenant_id(conn, t).await? {
        return Ok(id);
    }
    sqlx::query_scalar("INSERT INTO tenants (namespace, name) VALUES (?1, ?2) RETURNING id")
        .bind(&t.namespace)
        .bind(&t.name)
        .fetch_one(conn)
        .await
        .ctx(|| format!("registering tenant {t}"))
}

async fn is_unbound(conn: &mut SqliteConnection, t: &TenantKey) -> Result<bool> {
    sqlx::query_scalar(sql::IS_UNBOUND)
        .bind(&t.namespace)
        .bind(&t.name)
        .fetch_one(conn)
        .await
        .ctx(|| format!("reading the ledger of {t}"))
}

async fn insert_run(
    conn: &mut SqliteConnection,
    tenant: i64,
    run: &SyncRunRecord,
    rows_written: u64,
) -> Result<SyncRunId> {
    let id = sqlx::query_scalar(
        "INSERT INTO sync_runs (tenant_id, started_at, finished_at, outcome, added, updated, removed, calls, held_deletions, rows_written, message) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) RETURNING id",
    )
    .bind(tenant)
    .bind(model::to_micros(run.started))
    .bind(model::to_micros(run.finished))
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
    conn: &mut SqliteConnection,
    tenant: i64,
    depts: &[Department],
) -> sqlx::Result<u64> {
    let mut qb = QueryBuilder::<Sqlite>::new(
        "INSERT INTO departments (tenant_id, dept_id, parent_id, name, sort_order) ",
    );
    qb.push_values(depts, |mut b, d| {
        b.push_bind(tenant)
            .push_bind(d.id)
            .push_bind(d.parent_id)
            .push_bind(d.name.clone())
            .push_bind(d.order);
    });
    qb.push(
        " ON CONFLICT (tenant_id, dept_id) DO UPDATE SET parent_id = excluded.parent_id, name = excluded.name, sort_order = excluded.sort_order, \
         version = departments.version + 1 \
         WHERE departments.parent_id IS NOT excluded.parent_id OR departments.name IS NOT excluded.name OR departments.sort_order IS NOT excluded.sort_order",
    );
    Ok(qb.build().execute(conn).await?.rows_affected())
}

/// Insert or update members; a row equal to the stored one is not touched.
async fn upsert_members(
    conn: &mut SqliteConnection,
    tenant: i64,
    members: &[Member],
) -> sqlx::Result<u64> {
    let mut qb = QueryBuilder::<Sqlite>::new(
        "INSERT INTO members (tenant_id, userid, unionid, name, mobile, email, title, job_number, active, admin, boss) ",
    );
    qb.push_values(members, |mut b, m| {
        b.push_bind(tenant)
            .push_bind(m.userid.clone())
            .push_bind(m.unionid.clone())
            .push_bind(m.name.clone())
            .push_bind(m.mobile.clone())
            .push_bind(m.email.clone())
            .push_bind(m.title.clone())
            .push_bind(m.job_number.clone())
            .push_bind(m.active)
            .push_bind(m.admin)
            .push_bind(m.boss);
    });
    qb.push(
        " ON CONFLICT (tenant_id, userid) DO UPDATE SET unionid = excluded.unionid, name = excluded.name, mobile = excluded.mobile, \
         email = excluded.email, title = excluded.title, job_number = excluded.job_number, active = excluded.active, admin = excluded.admin, \
         boss = excluded.boss, version = members.version + 1 \
         WHERE members.unionid IS NOT excluded.unionid OR members.name IS NOT excluded.name OR members.mobile IS NOT excluded.mobile \
         OR members.email IS NOT excluded.email OR members.title IS NOT excluded.title OR members.job_number IS NOT excluded.job_number \
         OR members.active IS NOT excluded.active OR members.admin IS NOT excluded.admin OR members.boss IS NOT excluded.boss",
    );
    Ok(qb.build().execute(conn).await?.rows_affected())
}

/// Make the department links of `members` exactly their `dept_ids`: delete the
/// links that went away, insert the new ones, leave the others untouched.
async fn sync_member_departments(
    conn: &mut SqliteConnection,
    tenant: i64,
    members: &[Member],
) -> Result<u64> {
    let ctx = || "updating member departments".to_string();
    let userids: Vec<&str> = members.iter().map(|m| m.userid.as_str()).collect();
    let pairs: Vec<(&str, i64)> = members
        .iter()
        .flat_map(|m| m.dept_ids.iter().map(move |d| (m.userid.as_str(), *d)))
        .collect();
    let pairs = json_array(&pairs)?;
    let deleted = sqlx::query(
        "DELETE FROM member_departments WHERE tenant_id = ?1 AND userid IN (SELECT value FROM json_each(?2)) \
         AND (userid, dept_id) NOT IN (SELECT value ->> 0, value ->> 1 FROM json_each(?3))",
    )
    .bind(tenant)
    .bind(json_array(&userids)?)
    .bind(pairs.clone())
    .execute(&mut *conn)
    .await
    .ctx(ctx)?
    .rows_affected();
    let inserted = sqlx::query(
        "INSERT INTO member_departments (tenant_id, userid, dept_id) SELECT ?1, value ->> 0, value ->> 1 FROM json_each(?2) WHERE true \
         ON CONFLICT DO NOTHING",
    )
    .bind(tenant)
    .bind(pairs)
    .execute(&mut *conn)
    .await
    .ctx(ctx)?
    .rows_affected();
    Ok(deleted + inserted)
}

/// Attempts at opening a database another process may be creating.
const OPEN_ATTEMPTS: u64 = 10;

/// A failed attempt at opening the database; `busy` when another connection held a lock.
struct Opening {
    busy: bool,
    error: Error,
}

/// SQLite's answer when another connection holds the lock ("database is locked").
fn is_busy(message: &str) -> bool {
    message.contains("database is locked") || message.contains("database is busy")
}

/// Opens the file once and runs the migrations on that connection.
async fn open_and_migrate(
    url: &StoreUrl,
    path: &Path,
    options: &SqliteConnectOptions,
) -> std::result::Result<(), Opening> {
    let mut conn = SqliteConnection::connect_with(options).await.map_err(|e| {
        let reason = format!("{e} (file {})", path.display());
        Opening {
            busy: is_busy(&reason),
            error: Error::Unavailable {
                url: url.redacted(),
                reason,
            },
        }
    })?;
    let migrated = migrate(&mut conn).await;
    if migrated.is_ok()
        && let Err(e) = purge_stale_staging(&mut conn).await
    {
        tracing::warn!(error = %e, "stale sync staging was not deleted at open");
    }
    let closed = conn.close().await;
    migrated.map_err(|reason| Opening {
        busy: is_busy(&reason),
        error: Error::Migration {
            url: url.redacted(),
            reason,
        },
    })?;
    closed.map_err(|e| Opening {
        busy: false,
        error: Error::Unavailable {
            url: url.redacted(),
            reason: e.to_string(),
        },
    })
}

// ---- sync staging (see `staging.rs`) ----

impl SqliteStore {
    pub(crate) async fn begin_staging(&self, t: &TenantKey) -> Result<Staging> {
        let ctx = || format!("opening a sync staging area for {t}");
        let mut tx = self.write_tx(ctx).await?;
        let tenant = ensure_tenant(&mut tx, t).await?;
        let runs = "SELECT id FROM staging_runs WHERE tenant_id = $1";
        purge_runs(&mut tx, runs, tenant).await.ctx(ctx)?;
        let run: i64 = sqlx::query_scalar(
            "INSERT INTO staging_runs (tenant_id, started_at) VALUES ($1, $2) RETURNING id",
        )
        .bind(tenant)
        .bind(model::to_micros(jiff::Timestamp::now()))
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
        for chunk in depts.chunks(ROWS_PER_STATEMENT) {
            let mut qb = QueryBuilder::<Sqlite>::new(
                "INSERT INTO staging_departments (run_id, dept_id, parent_id, name, sort_order) ",
            );
            qb.push_values(chunk, |mut b, d| {
                b.push_bind(s.run.0)
                    .push_bind(d.id)
                    .push_bind(d.parent_id)
                    .push_bind(d.name.clone())
                    .push_bind(d.order);
            });
            // The last copy of a department wins, as in `Directory::new`.
            qb.push(
                " ON CONFLICT (run_id, dept_id) DO UPDATE SET parent_id = excluded.parent_id, \
                 name = excluded.name, sort_order = excluded.sort_order",
            );
            qb.build().execute(&mut *tx).await.ctx(ctx)?;
        }
        for chunk in members.chunks(ROWS_PER_STATEMENT) {
            let dept_ids = chunk
                .iter()
                .map(|m| json_array(&m.dept_ids))
                .collect::<Result<Vec<_>>>()?;
            let mut qb = QueryBuilder::<Sqlite>::new(
                "INSERT INTO staging_members (run_id, userid, unionid, name, mobile, email, title, job_number, active, admin, boss, dept_ids) ",
            );
            qb.push_values(chunk.iter().zip(dept_ids), |mut b, (m, depts)| {
                b.push_bind(s.run.0)
                    .push_bind(m.userid.clone())
                    .push_bind(m.unionid.clone())
                    .push_bind(m.name.clone())
                    .push_bind(m.mobile.clone())
                    .push_bind(m.email.clone())
                    .push_bind(m.title.clone())
                    .push_bind(m.job_number.clone())
                    .push_bind(m.active)
                    .push_bind(m.admin)
                    .push_bind(m.boss)
                    .push_bind(depts);
            });
            // The first copy of a member wins, as in `desired_directory`.
            qb.push(" ON CONFLICT (run_id, userid) DO NOTHING");
            qb.build().execute(&mut *tx).await.ctx(ctx)?;
        }
        tx.commit().await.ctx(ctx)?;
        s.rows += i64::try_from(depts.len() + members.len()).unwrap_or(i64::MAX);
        Ok(())
    }

    pub(crate) async fn staged_userids(
        &self,
        s: &Staging,
        userids: &[String],
    ) -> Result<Vec<String>> {
        sqlx::query_scalar(
            "SELECT userid FROM staging_members WHERE run_id = $1 AND userid IN (SELECT value FROM json_each($2))",
        )
        .bind(s.run.0)
        .bind(json_array(userids)?)
        .fetch_all(&self.pool)
        .await
        .ctx(|| format!("reading the sync staging of {}", s.tenant))
    }

    pub(crate) async fn finish_staging(&self, s: Staging) -> Result<Staged> {
        let ctx = || format!("finishing the sync staging of {}", s.tenant);
        let mut tx = self.write_tx(ctx).await?;
        check_run(&mut tx, &s.tenant, s.run, s.tenant_id, false).await?;
        sqlx::query(staging::NORMALIZE_PARENTS)
            .bind(s.run.0)
            .execute(&mut *tx)
            .await
            .ctx(ctx)?;
        sqlx::query(
            "INSERT INTO staging_links (run_id, userid, dept_id) SELECT s.run_id, s.userid, j.value \
             FROM staging_members s, json_each(s.dept_ids) j WHERE s.run_id = $1 \
             AND j.value IN (SELECT dept_id FROM staging_departments WHERE run_id = $1) ON CONFLICT DO NOTHING",
        )
        .bind(s.run.0)
        .execute(&mut *tx)
        .await
        .ctx(ctx)?;
        sqlx::query(staging::MARK_FINISHED)
            .bind(s.run.0)
            .execute(&mut *tx)
            .await
            .ctx(ctx)?;
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
        // One read transaction: a consistent snapshot.
        let mut tx = self.pool.begin().await.ctx(ctx)?;
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
        let mut tx = self.pool.begin().await.ctx(ctx)?;
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
        let tenant = ensure_tenant(&mut tx, t).await?;
        check_run(&mut tx, t, s.run, tenant, true).await?;
        let mut written = 0u64;
        if !remove_members.is_empty() {
            // Cascades to member_departments.
            written += sqlx::query("DELETE FROM members WHERE tenant_id = ?1 AND userid IN (SELECT value FROM json_each(?2))")
                .bind(tenant)
                .bind(json_array(remove_members)?)
                .execute(&mut *tx)
                .await
                .ctx(ctx)?
                .rows_affected();
        }
        if !remove_departments.is_empty() {
            written += sqlx::query("DELETE FROM departments WHERE tenant_id = ?1 AND dept_id IN (SELECT value FROM json_each(?2))")
                .bind(tenant)
                .bind(json_array(remove_departments)?)
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
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.ctx(ctx)?;
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

/// Whether run `run` of tenant `tenant` is there (and, with `finished`, read
/// to the end): else another sync of the tenant removed it.
async fn check_run(
    conn: &mut SqliteConnection,
    t: &TenantKey,
    run: StagingId,
    tenant: i64,
    finished: bool,
) -> Result<()> {
    let state: Option<i64> = sqlx::query_scalar(staging::RUN_STATE)
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
async fn purge_runs(conn: &mut SqliteConnection, runs: &str, param: i64) -> sqlx::Result<()> {
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
async fn purge_stale_staging(conn: &mut SqliteConnection) -> sqlx::Result<()> {
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    let cutoff = model::to_micros(jiff::Timestamp::now()) - staging::STALE_AFTER_MICROS;
    purge_runs(
        &mut tx,
        "SELECT id FROM staging_runs WHERE started_at < $1",
        cutoff,
    )
    .await?;
    for table in staging::ROW_TABLES {
        sqlx::query(sqlx::AssertSqlSafe(staging::delete_orphans(table)))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}
