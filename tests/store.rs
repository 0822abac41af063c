//! The store suite: every test runs against SQLite, and against PostgreSQL
//! when `DINGBIND_TEST_POSTGRES_URL` is set (see docs/store.md and
//! scripts/postgres-test.sh). With the variable set, an unreachable server
//! FAILS the PostgreSQL tests; without it they are skipped after a note, unless
//! `DINGBIND_TEST_REQUIRE_POSTGRES=1` (scripts/test.sh, CI) asks for them, in
//! which case they fail.
//!
//! Each PostgreSQL test runs in a database of its own (`dingbind_test_*`,
//! created through the URL's user, dropped when the test passes).

mod support;

use std::io::Write as _;
use std::time::Duration;

use dingbind::api::{Mode, TenantKey, UnbindReason};
use dingbind::core::directory::{Department, Directory, DirectoryDiff, Member, apply, diff};
use dingbind::store::{
    Account, Error, LedgerEntry, Staged, StagedChanges, Store, SyncOutcome, SyncRunRecord,
};
use jiff::Timestamp;
use serde_json::json;
use sqlx::Connection;
use support::org::{churn, org};
use support::postgres::{self, PG_ENV};
use tempfile::TempDir;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

/// The PostgreSQL admin URL, or `None` (after a note) when not enabled.
fn pg_admin_url() -> Option<String> {
    postgres::admin_url("the store tests")
}

/// A fresh, empty database for one test.
struct TestDb {
    backend: Backend,
    url: String,
    _dir: Option<TempDir>,
    pg_name: Option<String>,
}

impl TestDb {
    async fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("store.db").display());
                TestDb {
                    backend,
                    url,
                    _dir: Some(dir),
                    pg_name: None,
                }
            }
            Backend::Postgres => {
                let admin = pg_admin_url().expect("postgres enabled");
                let (name, url) = postgres::create_database(&admin, "dingbind_test").await;
                TestDb {
                    backend,
                    url,
                    _dir: None,
                    pg_name: Some(name),
                }
            }
        }
    }

    async fn store(&self) -> Store {
        Store::connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("connect {}: {e}", self.backend_name()))
    }

    fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }

    /// Run raw SQL on a connection of our own (not through the store).
    async fn raw_exec(&self, sql: &str) -> Result<u64, String> {
        let sql = sqlx::AssertSqlSafe(sql.to_string());
        match self.backend {
            Backend::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(&self.url)
                    .await
                    .map_err(|e| e.to_string())?;
                sqlx::query(sql)
                    .execute(&mut c)
                    .await
                    .map(|r| r.rows_affected())
                    .map_err(|e| e.to_string())
            }
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url)
                    .await
                    .map_err(|e| e.to_string())?;
                sqlx::query(sql)
                    .execute(&mut c)
                    .await
                    .map(|r| r.rows_affected())
                    .map_err(|e| e.to_string())
            }
        }
    }

    /// A single integer from raw SQL.
    async fn raw_i64(&self, sql: &str) -> i64 {
        let sql = sqlx::AssertSqlSafe(sql.to_string());
        match self.backend {
            Backend::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(&self.url)
                    .await
                    .expect("raw connect");
                sqlx::query_scalar::<_, i64>(sql)
                    .fetch_one(&mut c)
                    .await
                    .expect("raw query")
            }
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url)
                    .await
                    .expect("raw connect");
                sqlx::query_scalar::<_, i64>(sql)
                    .fetch_one(&mut c)
                    .await
                    .expect("raw query")
            }
        }
    }

    async fn drop_database(&self) {
        if let (Some(name), Some(admin)) = (&self.pg_name, pg_admin_url()) {
            postgres::drop_database(&admin, name).await;
        }
    }
}

/// Run `$test(TestDb)` as `$test::sqlite` and `$test::postgres`.
macro_rules! both_backends {
    ($($test:ident),* $(,)?) => {$(
        mod $test {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let db = super::TestDb::new(super::Backend::Sqlite).await;
                super::$test(&db).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if super::pg_admin_url().is_none() {
                    return;
                }
                let db = super::TestDb::new(super::Backend::Postgres).await;
                super::$test(&db).await;
                db.drop_database().await;
            }
        }
    )*};
}

both_backends!(
    unknown_tenant_has_an_empty_directory,
    diff_application_round_trips,
    large_sync_round_trips_across_statement_batches,
    identical_sync_writes_nothing,
    unchanged_sync_leaves_every_row_version_alone,
    update_rewrites_only_the_changed_rows,
    sync_runs_record_failed_and_held_runs_newest_first,
    account_round_trips_and_never_stores_a_password,
    ledger_refuses_rebinding_after_unbind_through_the_api,
    ledger_rows_cannot_be_updated_or_deleted_with_raw_sql,
    clear_directory_keeps_account_ledger_and_runs,
    delete_tenant_data_keeps_the_ledger,
    documents_round_trip_per_tenant_and_kind,
    the_newest_suite_ticket_replaces_the_old,
    a_unionid_resolves_to_the_members_userid_in_its_tenant_only,
    a_member_is_read_alone_with_their_departments,
    login_facts_are_read_in_one_go,
    tenants_lists_every_tenant_with_data_or_ledger,
    migrations_are_idempotent,
    concurrent_connects_migrate_once,
    killed_writer_leaves_the_directory_all_old_or_all_new,
    directory_command_prints_table_json_and_yaml,
    a_stale_leaders_writes_are_refused,
    staged_sync_reaches_the_read_directory_and_an_unchanged_one_writes_nothing,
    staged_sync_removes_only_the_removals_it_is_given,
    staging_left_by_an_interrupted_sync_is_deleted_by_the_next,
    stale_staging_is_deleted_when_the_store_opens,
    killed_staged_writer_leaves_the_directory_all_old_or_all_new,
);

fn key(ns: &str, name: &str) -> TenantKey {
    TenantKey {
        namespace: ns.into(),
        name: name.into(),
    }
}

fn ts(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

fn member(userid: &str, name: &str, depts: &[i64]) -> Member {
    Member {
        userid: userid.into(),
        unionid: format!("un-{userid}"),
        name: name.into(),
        active: true,
        dept_ids: depts.to_vec(),
        ..Default::default()
    }
}

fn dept(id: i64, parent: Option<i64>, name: &str) -> Department {
    Department {
        id,
        parent_id: parent,
        name: name.into(),
        order: id,
    }
}

fn run_for(d: &dingbind::core::directory::DirectoryDiff) -> SyncRunRecord {
    SyncRunRecord::succeeded(ts("2026-01-01T00:00:00Z"), ts("2026-01-01T00:00:05Z"), d)
}

/// Apply the diff that turns the stored directory into `desired`.
async fn sync_to(store: &Store, t: &TenantKey, desired: &Directory) -> dingbind::store::SyncRunId {
    let current = store.directory(t).await.expect("directory");
    let d = diff(&current, desired);
    store
        .apply_sync(t, &d, &run_for(&d))
        .await
        .expect("apply_sync")
}

async fn last_rows_written(store: &Store, t: &TenantKey) -> u64 {
    store.sync_runs(t, 1).await.expect("sync runs")[0].rows_written
}

async fn unknown_tenant_has_an_empty_directory(db: &TestDb) {
    let store = db.store().await;
    assert_eq!(
        store.directory(&key("nobody", "here")).await.unwrap(),
        Directory::default()
    );
    assert!(
        store
            .account(&key("nobody", "here"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .ledger(&key("nobody", "here"))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn diff_application_round_trips(db: &TestDb) {
    let store = db.store().await;
    let t = key("acme", "main");
    let mut full = member("u1", "Zhang San", &[2, 3]);
    full.mobile = Some("+86-13800000000".into());
    full.email = Some("zs@acme.example".into());
    full.title = Some("Engineer".into());
    full.job_number = Some("J001".into());
    full.admin = true;
    full.boss = true;
    let a = Directory::new(
        [
            dept(1, None, "Acme"),
            dept(2, Some(1), "Sales"),
            dept(3, Some(1), "R&D"),
        ],
        [
            full.clone(),
            member("u2", "Li Si", &[3]),
            member("u3", "Wang Wu", &[]),
        ],
    );
    let first = diff(&Directory::default(), &a);
    store
        .apply_sync(&t, &first, &run_for(&first))
        .await
        .unwrap();
    assert_eq!(store.directory(&t).await.unwrap(), a);

    // Update (fields and departments), add, remove; departments too.
    let mut b = a.clone();
    b.departments.remove(&2);
    b.departments.insert(4, dept(4, Some(3), "R&D / Platform"));
    b.departments.get_mut(&3).unwrap().name = "Research".into();
    let u1 = b.members.get_mut("u1").unwrap();
    u1.dept_ids = vec![3, 4];
    u1.mobile = None;
    b.members.remove("u2");
    b.members
        .insert("u4".into(), member("u4", "Zhao Liu", &[4]));
    let second = diff(&a, &b);
    assert_eq!(apply(&a, &second), b);
    store
        .apply_sync(&t, &second, &run_for(&second))
        .await
        .unwrap();
    assert_eq!(store.directory(&t).await.unwrap(), b);

    let runs = store.sync_runs(&t, 10).await.unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(
        (
            runs[0].record.added,
            runs[0].record.updated,
            runs[0].record.removed
        ),
        (1, 1, 1),
        "a run counts members (u4 added, u1 updated, u2 removed), as the status does"
    );
    assert_eq!(runs[0].record.outcome, SyncOutcome::Succeeded);
    assert_eq!(runs[1].record.added, 3);
}

async fn large_sync_round_trips_across_statement_batches(db: &TestDb) {
    // More rows than one batch on either backend (400 on SQLite, 5,000 on PostgreSQL).
    let store = db.store().await;
    let t = key("big", "org");
    let a = org(120, 12_000, 0);
    sync_to(&store, &t, &a).await;
    assert_eq!(store.directory(&t).await.unwrap(), a);
    let b = churn(&a, 10.0);
    sync_to(&store, &t, &b).await;
    assert_eq!(store.directory(&t).await.unwrap(), b);
}

async fn identical_sync_writes_nothing(db: &TestDb) {
    let store = db.store().await;
    let t = key("acme", "idempotent");
    let a = org(20, 300, 0);
    let full_load = diff(&Directory::default(), &a);
    store
        .apply_sync(&t, &full_load, &run_for(&full_load))
        .await
        .unwrap();
    let first_written = last_rows_written(&store, &t).await;
    let links: usize = a.members.values().map(|m| m.dept_ids.len()).sum();
    assert_eq!(
        first_written as usize,
        a.departments.len() + a.members.len() + links
    );
    let versions = db
        .raw_i64("SELECT CAST(COALESCE(SUM(version), 0) AS BIGINT) FROM members")
        .await
        + db.raw_i64("SELECT CAST(COALESCE(SUM(version), 0) AS BIGINT) FROM departments")
            .await;

    // The very same full-load diff again (a caller retrying after a lost reply):
    // every row already holds these values, so nothing is written.
    store
        .apply_sync(&t, &full_load, &run_for(&full_load))
        .await
        .unwrap();
    assert_eq!(last_rows_written(&store, &t).await, 0);
    let after = db
        .raw_i64("SELECT CAST(COALESCE(SUM(version), 0) AS BIGINT) FROM members")
        .await
        + db.raw_i64("SELECT CAST(COALESCE(SUM(version), 0) AS BIGINT) FROM departments")
            .await;
    assert_eq!(after, versions, "row versions moved: rows were rewritten");
    assert_eq!(store.directory(&t).await.unwrap(), a);
}

async fn unchanged_sync_leaves_every_row_version_alone(db: &TestDb) {
    let store = db.store().await;
    let t = key("acme", "unchanged");
    let a = org(10, 200, 0);
    sync_to(&store, &t, &a).await;
    assert_eq!(db.raw_i64("SELECT MAX(version) FROM members").await, 1);
    // A sync whose desired directory equals the stored one: an empty diff.
    sync_to(&store, &t, &a).await;
    assert_eq!(last_rows_written(&store, &t).await, 0);
    assert_eq!(db.raw_i64("SELECT MAX(version) FROM members").await, 1);
    assert_eq!(db.raw_i64("SELECT MAX(version) FROM departments").await, 1);
    assert_eq!(store.sync_runs(&t, 10).await.unwrap().len(), 2);
}

async fn update_rewrites_only_the_changed_rows(db: &TestDb) {
    let store = db.store().await;
    let t = key("acme", "partial");
    let a = org(10, 100, 0);
    sync_to(&store, &t, &a).await;
    let mut b = a.clone();
    b.members.get_mut("user0000007").unwrap().name = "Renamed".into();
    // A department change only: the member row itself is equal, one link goes, one comes.
    let m = b.members.get_mut("user0000008").unwrap();
    let old_dept = m.dept_ids[0];
    let new_dept = if old_dept == 10 { 9 } else { 10 };
    m.dept_ids = vec![new_dept];
    b.departments.get_mut(&3).unwrap().order = 99;
    sync_to(&store, &t, &b).await;
    assert_eq!(store.directory(&t).await.unwrap(), b);
    // 1 department + 1 member row + 1 link deleted + 1 link inserted.
    assert_eq!(last_rows_written(&store, &t).await, 4);
    assert_eq!(
        db.raw_i64("SELECT COUNT(*) FROM members WHERE version > 1")
            .await,
        1
    );
    assert_eq!(
        db.raw_i64("SELECT version FROM members WHERE userid = 'user0000007'")
            .await,
        2
    );
    assert_eq!(
        db.raw_i64("SELECT COUNT(*) FROM departments WHERE version > 1")
            .await,
        1
    );
}

async fn sync_runs_record_failed_and_held_runs_newest_first(db: &TestDb) {
    let store = db.store().await;
    let t = key("acme", "runs");
    let mut failed = SyncRunRecord::unapplied(
        ts("2026-02-01T10:00:00Z"),
        ts("2026-02-01T10:00:01.123456Z"),
        SyncOutcome::Failed,
        "DingTalk 503",
    );
    failed.calls = 7;
    let id1 = store.record_sync_run(&t, &failed).await.unwrap();
    let mut held = SyncRunRecord::unapplied(
        ts("2026-02-01T11:00:00Z"),
        ts("2026-02-01T11:00:02Z"),
        SyncOutcome::Held,
        "would delete 60% of members",
    );
    held.held_deletions = 600;
    held.calls = 42;
    let id2 = store.record_sync_run(&t, &held).await.unwrap();
    assert!(id2 > id1);
    let runs = store.sync_runs(&t, 10).await.unwrap();
    assert_eq!(
        runs.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![id2, id1]
    );
    assert_eq!(runs[0].record, held);
    assert_eq!(runs[1].record, failed);
    assert_eq!(runs[0].rows_written, 0);
    assert_eq!(store.sync_runs(&t, 1).await.unwrap().len(), 1);
    assert_eq!(store.directory(&t).await.unwrap(), Directory::default());
}

async fn account_round_trips_and_never_stores_a_password(db: &TestDb) {
    let store = db.store().await;
    let t = key("acme", "account");
    let acc = Account {
        mode: Mode::DingTalk,
        corp_id: Some("ding123".into()),
        creator_email: Some("boss@acme.example".into()),
        creator_phone: None,
        password_set: true,
    };
    store.put_account(&t, &acc).await.unwrap();
    assert_eq!(store.account(&t).await.unwrap(), Some(acc.clone()));
    let public = Account {
        mode: Mode::Public,
        creator_phone: Some("+86-1390000".into()),
        ..acc
    };
    store.put_account(&t, &public).await.unwrap();
    assert_eq!(store.account(&t).await.unwrap(), Some(public));
    // The schema has no column that could hold a password.
    let cols = match db.backend {
        Backend::Sqlite => db.raw_i64("SELECT COUNT(*) FROM pragma_table_info('accounts') WHERE name LIKE '%password%' AND name <> 'password_set'").await,
        Backend::Postgres => {
            db.raw_i64("SELECT COUNT(*) FROM information_schema.columns WHERE table_name = 'accounts' AND column_name LIKE '%password%' AND column_name <> 'password_set'")
                .await
        }
    };
    assert_eq!(cols, 0);
}

async fn ledger_refuses_rebinding_after_unbind_through_the_api(db: &TestDb) {
    let store = db.store().await;
    let t = key("acme", "ledger");
    // Every column round-trips: the app, the trial seen at binding, the confirmation.
    let bound = LedgerEntry::Bound {
        at: ts("2026-01-01T00:00:00Z"),
        corp_id: "ding1".into(),
        agent_id: Some(1001),
        trial_ends_at: Some(ts("2026-02-28T12:00:00.123456Z")),
    };
    let unbound = LedgerEntry::Unbound {
        at: ts("2026-03-01T00:00:00Z"),
        corp_id: "ding1".into(),
        agent_id: Some(1001),
        reason: UnbindReason::TrialExpired,
        confirmation: Some("ding1/1001".into()),
    };
    store.append_ledger(&t, bound.clone()).await.unwrap();
    assert!(!store.is_unbound(&t).await.unwrap());
    store
        .put_account(
            &t,
            &Account {
                mode: Mode::DingTalk,
                corp_id: Some("ding1".into()),
                creator_email: None,
                creator_phone: None,
                password_set: false,
            },
        )
        .await
        .unwrap();
    store.append_ledger(&t, unbound.clone()).await.unwrap();
    assert!(store.is_unbound(&t).await.unwrap());

    let again = store
        .append_ledger(
            &t,
            LedgerEntry::Bound {
                at: ts("2026-04-01T00:00:00Z"),
                agent_id: None,
                trial_ends_at: None,
                corp_id: "ding1".into(),
            },
        )
        .await;
    assert!(
        matches!(again, Err(Error::Irreversible { .. })),
        "{again:?}"
    );
    let back = store
        .put_account(
            &t,
            &Account {
                mode: Mode::DingTalk,
                corp_id: Some("ding1".into()),
                creator_email: None,
                creator_phone: None,
                password_set: true,
            },
        )
        .await;
    assert!(matches!(back, Err(Error::Irreversible { .. })), "{back:?}");
    assert_eq!(
        store.account(&t).await.unwrap().map(|a| a.password_set),
        Some(false),
        "refused write changed the account"
    );
    store
        .put_account(
            &t,
            &Account {
                mode: Mode::Public,
                corp_id: Some("ding1".into()),
                creator_email: None,
                creator_phone: None,
                password_set: true,
            },
        )
        .await
        .unwrap();
    assert_eq!(store.ledger(&t).await.unwrap(), vec![bound, unbound]);
}

async fn ledger_rows_cannot_be_updated_or_deleted_with_raw_sql(db: &TestDb) {
    let store = db.store().await;
    let t = key("acme", "raw");
    let entries = vec![
        LedgerEntry::Bound {
            at: ts("2026-01-01T00:00:00Z"),
            agent_id: None,
            trial_ends_at: None,
            corp_id: "ding1".into(),
        },
        LedgerEntry::Unbound {
            at: ts("2026-02-01T00:00:00Z"),
            agent_id: None,
            confirmation: None,
            corp_id: "ding1".into(),
            reason: UnbindReason::Requested,
        },
    ];
    for e in &entries {
        store.append_ledger(&t, e.clone()).await.unwrap();
    }
    let mut attacks = vec![
        "DELETE FROM ledger WHERE event = 'Unbound'".to_string(),
        "DELETE FROM ledger".to_string(),
        "UPDATE ledger SET event = 'Bound', reason = NULL WHERE event = 'Unbound'".to_string(),
        "UPDATE ledger SET name = 'renamed'".to_string(),
        "INSERT INTO ledger (namespace, name, event, at, corp_id, reason) VALUES ('acme', 'raw', 'Bound', 0, 'ding1', NULL)".to_string(),
    ];
    if db.backend == Backend::Postgres {
        attacks.push("TRUNCATE ledger".into());
        attacks[4] = attacks[4].replace(", 0,", ", now(),");
    }
    for sql in &attacks {
        let result = db.raw_exec(sql).await;
        let err = result.expect_err(&format!("{} accepted: {sql}", db.backend_name()));
        assert!(
            err.contains("dingbind ledger"),
            "{sql}: unexpected error {err}"
        );
    }
    assert_eq!(store.ledger(&t).await.unwrap(), entries);
    assert!(store.is_unbound(&t).await.unwrap());
}

async fn seed_tenant(store: &Store, t: &TenantKey) {
    sync_to(store, t, &org(5, 20, 0)).await;
    store
        .put_account(
            t,
            &Account {
                mode: Mode::DingTalk,
                corp_id: Some("ding9".into()),
                creator_email: None,
                creator_phone: Some("+86-1".into()),
                password_set: true,
            },
        )
        .await
        .unwrap();
    store
        .append_ledger(
            t,
            LedgerEntry::Bound {
                at: ts("2026-01-01T00:00:00Z"),
                agent_id: None,
                trial_ends_at: None,
                corp_id: "ding9".into(),
            },
        )
        .await
        .unwrap();
    store
        .put_document(t, "status", &json!({"mode": "DingTalk"}))
        .await
        .unwrap();
}

async fn clear_directory_keeps_account_ledger_and_runs(db: &TestDb) {
    let store = db.store().await;
    let (t, other) = (key("acme", "clear"), key("acme", "other"));
    seed_tenant(&store, &t).await;
    seed_tenant(&store, &other).await;
    store
        .append_ledger(
            &t,
            LedgerEntry::Unbound {
                at: ts("2026-05-01T00:00:00Z"),
                agent_id: None,
                confirmation: None,
                corp_id: "ding9".into(),
                reason: UnbindReason::Requested,
            },
        )
        .await
        .unwrap();
    store.clear_directory(&t).await.unwrap();
    assert_eq!(store.directory(&t).await.unwrap(), Directory::default());
    assert!(store.account(&t).await.unwrap().is_some());
    assert_eq!(store.ledger(&t).await.unwrap().len(), 2);
    assert_eq!(store.sync_runs(&t, 10).await.unwrap().len(), 1);
    assert!(store.document(&t, "status").await.unwrap().is_some());
    assert_eq!(store.directory(&other).await.unwrap(), org(5, 20, 0));
}

async fn delete_tenant_data_keeps_the_ledger(db: &TestDb) {
    let store = db.store().await;
    let (t, other) = (key("acme", "gone"), key("acme", "stays"));
    seed_tenant(&store, &t).await;
    seed_tenant(&store, &other).await;
    store
        .append_ledger(
            &t,
            LedgerEntry::Unbound {
                at: ts("2026-05-01T00:00:00Z"),
                agent_id: None,
                confirmation: None,
                corp_id: "ding9".into(),
                reason: UnbindReason::Requested,
            },
        )
        .await
        .unwrap();
    let ledger = store.ledger(&t).await.unwrap();

    store.delete_tenant_data(&t).await.unwrap();
    assert_eq!(store.directory(&t).await.unwrap(), Directory::default());
    assert!(store.account(&t).await.unwrap().is_none());
    assert!(store.sync_runs(&t, 10).await.unwrap().is_empty());
    assert!(store.document(&t, "status").await.unwrap().is_none());
    assert_eq!(
        db.raw_i64("SELECT COUNT(*) FROM member_departments md JOIN tenants t ON t.id = md.tenant_id WHERE t.name = 'gone'")
            .await,
        0
    );
    // The ledger survives, and with it the refusal to bind again.
    assert_eq!(store.ledger(&t).await.unwrap(), ledger);
    assert!(store.is_unbound(&t).await.unwrap());
    let rebind = store
        .append_ledger(
            &t,
            LedgerEntry::Bound {
                at: ts("2026-06-01T00:00:00Z"),
                agent_id: None,
                trial_ends_at: None,
                corp_id: "ding9".into(),
            },
        )
        .await;
    assert!(matches!(rebind, Err(Error::Irreversible { .. })));
    // The other tenant is untouched.
    assert_eq!(store.directory(&other).await.unwrap(), org(5, 20, 0));
    assert!(store.account(&other).await.unwrap().is_some());
}

async fn the_newest_suite_ticket_replaces_the_old(db: &TestDb) {
    let store = db.store().await;
    assert_eq!(store.suite_ticket("suite-a").await.unwrap(), None);
    store.put_suite_ticket("suite-a", "t1").await.unwrap();
    store.put_suite_ticket("suite-b", "other").await.unwrap();
    store.put_suite_ticket("suite-a", "t2").await.unwrap();
    assert_eq!(
        store.suite_ticket("suite-a").await.unwrap().as_deref(),
        Some("t2")
    );
    assert_eq!(
        store.suite_ticket("suite-b").await.unwrap().as_deref(),
        Some("other")
    );
}

async fn a_unionid_resolves_to_the_members_userid_in_its_tenant_only(db: &TestDb) {
    let store = db.store().await;
    let (a, b) = (key("acme", "main"), key("globex", "main"));
    let dir = Directory::new([dept(1, None, "Acme")], [member("u1", "Zhang San", &[1])]);
    let d = diff(&Directory::default(), &dir);
    store.apply_sync(&a, &d, &run_for(&d)).await.unwrap();
    assert_eq!(
        store
            .userid_of_unionid(&a, "un-u1")
            .await
            .unwrap()
            .as_deref(),
        Some("u1")
    );
    assert_eq!(store.userid_of_unionid(&a, "un-u2").await.unwrap(), None);
    assert_eq!(store.userid_of_unionid(&b, "un-u1").await.unwrap(), None);
}

async fn login_facts_are_read_in_one_go(db: &TestDb) {
    let store = db.store().await;
    let t = key("acme", "main");
    assert_eq!(
        store.login_facts(&t, ["status", "app"]).await.unwrap(),
        dingbind::store::LoginFacts::default()
    );
    store
        .put_account(
            &t,
            &dingbind::store::Account {
                mode: dingbind::api::Mode::DingTalk,
                corp_id: Some("dingacme".into()),
                creator_email: None,
                creator_phone: None,
                password_set: false,
            },
        )
        .await
        .unwrap();
    store
        .put_document(&t, "app", &json!({"running": false}))
        .await
        .unwrap();
    let facts = store.login_facts(&t, ["status", "app"]).await.unwrap();
    assert_eq!(facts.mode, Some(dingbind::api::Mode::DingTalk));
    assert!(!facts.unbound);
    assert_eq!(facts.documents, [None, Some(json!({"running": false}))]);
    store
        .append_ledger(
            &t,
            LedgerEntry::Unbound {
                at: ts("2026-01-01T00:00:00Z"),
                corp_id: "dingacme".into(),
                agent_id: Some(1001),
                reason: dingbind::api::UnbindReason::Requested,
                confirmation: None,
            },
        )
        .await
        .unwrap();
    assert!(
        store
            .login_facts(&t, ["status", "app"])
            .await
            .unwrap()
            .unbound
    );
}

async fn a_member_is_read_alone_with_their_departments(db: &TestDb) {
    let store = db.store().await;
    let t = key("acme", "main");
    let dir = Directory::new(
        [
            dept(1, None, "Acme"),
            dept(2, Some(1), "Sales"),
            dept(3, Some(1), "R&D"),
        ],
        [
            member("u1", "Zhang San", &[2, 3]),
            member("u2", "Li Si", &[2]),
            member("u3", "Wang Wu", &[]),
        ],
    );
    let d = diff(&Directory::default(), &dir);
    store.apply_sync(&t, &d, &run_for(&d)).await.unwrap();
    let u1 = store.member(&t, "u1").await.unwrap().expect("u1");
    assert_eq!(&u1, &dir.members["u1"]);
    assert_eq!(u1.dept_ids, vec![2, 3]);
    let u2 = store.member(&t, "u2").await.unwrap().expect("u2");
    assert_eq!(u2.dept_ids, vec![2]);
    let u3 = store
        .member(&t, "u3")
        .await
        .unwrap()
        .expect("u3, in no department");
    assert!(u3.dept_ids.is_empty());
    assert_eq!(store.member(&t, "nobody").await.unwrap(), None);
    assert_eq!(store.member(&key("x", "y"), "u1").await.unwrap(), None);
}

async fn documents_round_trip_per_tenant_and_kind(db: &TestDb) {
    let store = db.store().await;
    let (a, b) = (key("ns1", "a"), key("ns2", "b"));
    let status = json!({"mode": "DingTalk", "conditions": [{"type": "Ready", "status": "True"}], "n": 3, "nested": {"k": null}});
    store.put_document(&a, "status", &status).await.unwrap();
    store
        .put_document(&a, "accepted-spec", &json!({"mode": "Public"}))
        .await
        .unwrap();
    store
        .put_document(&b, "status", &json!({"mode": "Public"}))
        .await
        .unwrap();
    assert_eq!(store.document(&a, "status").await.unwrap(), Some(status));
    assert_eq!(store.document(&a, "nope").await.unwrap(), None);
    store
        .put_document(&a, "status", &json!({"mode": "Public"}))
        .await
        .unwrap();
    assert_eq!(
        store.document(&a, "status").await.unwrap(),
        Some(json!({"mode": "Public"}))
    );
    let all = store.documents("status").await.unwrap();
    assert_eq!(
        all,
        vec![
            (a.clone(), json!({"mode": "Public"})),
            (b, json!({"mode": "Public"}))
        ]
    );
    assert_eq!(
        store.documents("accepted-spec").await.unwrap(),
        vec![(a, json!({"mode": "Public"}))]
    );
}

async fn tenants_lists_every_tenant_with_data_or_ledger(db: &TestDb) {
    let store = db.store().await;
    store
        .put_document(&key("b", "docs"), "status", &json!({}))
        .await
        .unwrap();
    store
        .append_ledger(
            &key("a", "ledger-only"),
            LedgerEntry::Bound {
                at: ts("2026-01-01T00:00:00Z"),
                agent_id: None,
                trial_ends_at: None,
                corp_id: "x".into(),
            },
        )
        .await
        .unwrap();
    sync_to(&store, &key("c", "dir"), &org(2, 3, 0)).await;
    store.delete_tenant_data(&key("b", "docs")).await.unwrap();
    assert_eq!(
        store.tenants().await.unwrap(),
        vec![key("a", "ledger-only"), key("c", "dir")]
    );
}

async fn migrations_are_idempotent(db: &TestDb) {
    let store = db.store().await;
    let t = key("acme", "migrate");
    sync_to(&store, &t, &org(3, 10, 0)).await;
    store.close().await;
    for _ in 0..3 {
        let again = db.store().await;
        assert_eq!(again.directory(&t).await.unwrap(), org(3, 10, 0));
        again.close().await;
    }
    assert_eq!(
        db.raw_i64("SELECT COUNT(*) FROM _sqlx_migrations").await,
        dingbind::store::SCHEMA_VERSION
    );
    assert_eq!(
        db.raw_i64("SELECT COUNT(*) FROM _sqlx_migrations WHERE NOT success")
            .await,
        0
    );
}

async fn concurrent_connects_migrate_once(db: &TestDb) {
    // Four "replicas" start at once on a fresh database.
    let connects = (0..4).map(|_| {
        let url = db.url.clone();
        tokio::spawn(async move { Store::connect(&url).await })
    });
    for handle in connects.collect::<Vec<_>>() {
        let store = handle
            .await
            .expect("join")
            .unwrap_or_else(|e| panic!("concurrent connect failed: {e}"));
        store.close().await;
    }
    assert_eq!(
        db.raw_i64("SELECT COUNT(*) FROM _sqlx_migrations").await,
        dingbind::store::SCHEMA_VERSION
    );
    let store = db.store().await;
    sync_to(&store, &key("acme", "after"), &org(2, 5, 0)).await;
}

async fn directory_command_prints_table_json_and_yaml(db: &TestDb) {
    use dingbind::cli::directory::{DirectoryArgs, OutputFormat, run};
    let store = db.store().await;
    let t = key("acme", "cli");
    let dir = Directory::new(
        [dept(1, None, "Acme"), dept(2, Some(1), "销售部")],
        [member("u1", "张三", &[2]), member("u2", "Li Si", &[1, 2])],
    );
    sync_to(&store, &t, &dir).await;
    store.close().await;
    let args = |output| DirectoryArgs {
        tenant: t.clone(),
        store: db.url.clone(),
        output,
    };

    let mut out = Vec::new();
    run(args(OutputFormat::Json), &mut out).await.unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(json["apiVersion"], "dingbind.dev/directory/v1");
    assert_eq!(json["tenant"], "acme/cli");
    assert_eq!(json["departments"][1]["name"], "销售部");
    assert_eq!(json["departments"][1]["memberCount"], 2);
    assert_eq!(json["departments"][0]["totalMemberCount"], 2);
    assert_eq!(json["members"][1]["deptIds"], json!([1, 2]));

    let mut out = Vec::new();
    run(args(OutputFormat::Yaml), &mut out).await.unwrap();
    let yaml: serde_json::Value = serde_yaml::from_slice(&out).unwrap();
    assert_eq!(yaml, json);

    let mut out = Vec::new();
    run(args(OutputFormat::Table), &mut out).await.unwrap();
    let table = String::from_utf8(out).unwrap();
    assert!(table.contains("\n  销售部"), "{table}");
    assert!(table.contains("MEMBERS (2)"), "{table}");

    let err = run(
        DirectoryArgs {
            tenant: key("acme", "nope"),
            ..args(OutputFormat::Json)
        },
        &mut Vec::new(),
    )
    .await
    .expect_err("unknown tenant");
    assert!(matches!(err, Error::UnknownTenant { .. }), "{err}");
}

// ---- URLs and start-up errors ----

#[tokio::test]
async fn bad_urls_are_clear_errors_without_the_password() {
    for url in [
        "mysql://app:hunter2pw@db/dingbind",
        "postgres://app:hunter2pw@db:99999/dingbind",
        "sqlite://",
        "dingbind.db",
    ] {
        let err = Store::connect(url).await.expect_err(url);
        let shown = format!("{err} / {err:?}");
        assert!(matches!(err, Error::InvalidUrl { .. }), "{url}: {shown}");
        assert!(
            !shown.contains("hunter2pw"),
            "{url}: password leaked: {shown}"
        );
    }
}

#[tokio::test]
async fn unreachable_postgres_is_a_clear_error_without_the_password() {
    // Port 1 on loopback: connection refused, immediately.
    let err = Store::connect("postgres://app:hunter2pw@127.0.0.1:1/dingbind")
        .await
        .expect_err("connected to port 1?");
    let shown = format!("{err} / {err:?}");
    assert!(matches!(err, Error::Unavailable { .. }), "{shown}");
    assert!(
        shown.contains("postgres://app:***@127.0.0.1:1/dingbind"),
        "{shown}"
    );
    assert!(!shown.contains("hunter2pw"), "password leaked: {shown}");
}

#[tokio::test]
async fn wrong_postgres_credentials_are_a_clear_error_without_the_password() {
    let Some(admin) = pg_admin_url() else { return };
    // The server must answer, or the refusal below would only say "unreachable".
    postgres::ensure_reachable(&admin).await;
    // The live test server, a role that does not exist, a password.
    let rest = admin.split_once("://").map(|(_, r)| r).unwrap_or(&admin);
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    let host_port = authority
        .rsplit_once('@')
        .map(|(_, h)| h)
        .unwrap_or(authority);
    let url = format!("postgres://nobody_dingbind:hunter2pw@{host_port}/dingbind");
    let err = Store::connect(&url)
        .await
        .expect_err("connected with a made-up role");
    let shown = format!("{err} / {err:?}");
    assert!(matches!(err, Error::Unavailable { .. }), "{shown}");
    assert!(shown.contains("nobody_dingbind:***@"), "{shown}");
    assert!(!shown.contains("hunter2pw"), "password leaked: {shown}");
}

#[tokio::test]
async fn sqlite_in_a_missing_folder_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/no/such/folder/store.db", dir.path().display());
    let err = Store::connect(&url)
        .await
        .expect_err("opened a file in a missing folder");
    assert!(matches!(err, Error::Unavailable { .. }), "{err}");
    assert!(err.to_string().contains("no/such/folder/store.db"), "{err}");
}

#[tokio::test]
async fn sqlite_store_is_created_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.db");
    let store = Store::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    assert!(path.exists());
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    store.close().await;
}

// ---- crash in the middle ----

const CHILD_URL_ENV: &str = "DINGBIND_CRASH_CHILD_URL";
const CRASH_TENANT: (&str, &str) = ("crash", "test");

fn crash_old() -> Directory {
    org(50, 2_000, 0)
}

fn crash_new() -> Directory {
    org(400, 40_000, 1)
}

/// Not a test on its own (hence ignored): the writer process of the crash
/// test, which re-runs this test binary with `--ignored --exact` and
/// `DINGBIND_CRASH_CHILD_URL` set.
#[tokio::test]
#[ignore = "the crash test's writer process; run by killed_writer_leaves_the_directory_all_old_or_all_new"]
async fn crash_writer_child_process() {
    let url = std::env::var(CHILD_URL_ENV)
        .unwrap_or_else(|_| panic!("{CHILD_URL_ENV} is not set: this is the crash test's child"));
    let store = Store::connect(&url).await.expect("child connect");
    let t = key(CRASH_TENANT.0, CRASH_TENANT.1);
    let d = diff(&crash_old(), &crash_new());
    println!("APPLYING");
    std::io::stdout().flush().expect("flush");
    store
        .apply_sync(&t, &d, &run_for(&d))
        .await
        .expect("child apply");
    println!("COMMITTED");
}

/// Whether a writer is inside a transaction right now.
async fn writer_in_transaction(db: &TestDb) -> bool {
    match db.backend {
        Backend::Sqlite => {
            // Try to take the write lock without waiting: "database is locked" means
            // the child holds it, i.e. its sync transaction is open.
            let opts: sqlx::sqlite::SqliteConnectOptions = db.url.parse().expect("sqlite url");
            let mut c = sqlx::SqliteConnection::connect_with(&opts.busy_timeout(Duration::ZERO))
                .await
                .expect("probe connect");
            let locked = match sqlx::query("BEGIN IMMEDIATE").execute(&mut c).await {
                Ok(_) => {
                    let _ = sqlx::query("ROLLBACK").execute(&mut c).await;
                    false
                }
                Err(e) => e.to_string().contains("locked") || e.to_string().contains("busy"),
            };
            let _ = c.close().await;
            locked
        }
        Backend::Postgres => {
            // The child's transaction has written rows once it holds a transaction id.
            db.raw_i64("SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = 'dingbind-crash-writer' AND backend_xid IS NOT NULL")
                .await
                > 0
        }
    }
}

async fn killed_writer_leaves_the_directory_all_old_or_all_new(db: &TestDb) {
    use tokio::io::AsyncBufReadExt;

    let t = key(CRASH_TENANT.0, CRASH_TENANT.1);
    let (old, new) = (crash_old(), crash_new());
    {
        let store = db.store().await;
        sync_to(&store, &t, &old).await;
        store.close().await;
    }
    let child_url = match db.backend {
        Backend::Sqlite => db.url.clone(),
        Backend::Postgres => format!(
            "{}{}application_name=dingbind-crash-writer",
            db.url,
            if db.url.contains('?') { '&' } else { '?' }
        ),
    };
    let mut child = tokio::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "crash_writer_child_process",
            "--ignored",
            "--exact",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_URL_ENV, &child_url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn writer");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("child stdout")).lines();
    // Wait until the child is about to apply, then until its transaction is open.
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.expect("child output") {
            if line.contains("APPLYING") {
                return;
            }
        }
        panic!("writer exited before applying");
    })
    .await
    .expect("writer never started applying");
    let mut in_tx = false;
    for _ in 0..2_000 {
        if writer_in_transaction(db).await {
            // Let it write for a while, then make sure it is still mid-transaction.
            tokio::time::sleep(Duration::from_millis(150)).await;
            in_tx = writer_in_transaction(db).await;
            if in_tx {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(in_tx, "never caught the writer inside its transaction");
    child.start_kill().expect("SIGKILL the writer");
    let status = child.wait().await.expect("reap writer");
    assert!(
        !status.success(),
        "writer finished before the kill: {status:?}"
    );

    // Let PostgreSQL notice the dead client and roll back (its locks go with it).
    let store = db.store().await;
    let dir = tokio::time::timeout(Duration::from_secs(60), store.directory(&t))
        .await
        .expect("read after crash")
        .expect("directory");
    let verdict = if dir == old {
        "all-old"
    } else if dir == new {
        "all-new"
    } else {
        panic!(
            "MIX after the crash: {} departments, {} members",
            dir.departments.len(),
            dir.members.len()
        );
    };
    eprintln!(
        "{}: killed writer left the directory {verdict}",
        db.backend_name()
    );
    // The killed transaction never committed, so the only run recorded is the seed's.
    let runs = store.sync_runs(&t, 10).await.unwrap();
    assert_eq!(runs.len(), if verdict == "all-old" { 1 } else { 2 });
    // And the store still takes writes (no lock left behind).
    let next = tokio::time::timeout(Duration::from_secs(60), async {
        sync_to(&store, &t, &org(3, 30, 2)).await
    })
    .await;
    assert!(next.is_ok(), "store still locked after the crash");
    assert_eq!(store.directory(&t).await.unwrap(), org(3, 30, 2));
}

#[tokio::test]
async fn an_open_postgres_store_never_shows_its_password() {
    let Some(admin) = pg_admin_url() else { return };
    postgres::ensure_reachable(&admin).await;
    // The test server trusts loopback, so any password is accepted: put one in.
    let url = match admin.split_once("://") {
        Some((scheme, rest)) => {
            let (userinfo, host) = rest.split_once('@').unwrap_or(("dingbind", rest));
            let user = userinfo.split(':').next().unwrap_or("dingbind");
            format!("{scheme}://{user}:hunter2pw@{host}")
        }
        None => panic!("unexpected {PG_ENV}"),
    };
    let store = Store::connect(&url).await.expect("connect with a password");
    let shown = format!("{} {store:?}", store.url());
    assert!(store.url().contains(":***@"), "{shown}");
    assert!(!shown.contains("hunter2pw"), "password leaked: {shown}");
    store.close().await;
}

async fn a_stale_leaders_writes_are_refused(db: &TestDb) {
    let store = db.store().await;
    let t = key("acme", "fenced");
    assert_eq!(store.fence_token().await.unwrap(), 0);
    let old = store.fenced(5);
    old.advance_fence(5).await.unwrap();
    old.put_document(&t, "status", &serde_json::json!({"by": 5}))
        .await
        .unwrap();
    // Another replica starts term 6: term 5's writes are refused, every kind.
    let new = store.fenced(6);
    new.advance_fence(6).await.unwrap();
    assert_eq!(store.fence_token().await.unwrap(), 6);
    let refused = |r: dingbind::store::Result<()>| {
        assert!(
            matches!(
                r,
                Err(Error::Fenced {
                    token: 5,
                    current: 6
                })
            ),
            "{r:?}"
        )
    };
    refused(
        old.put_document(&t, "status", &serde_json::json!({"by": 5}))
            .await,
    );
    refused(old.clear_directory(&t).await);
    refused(old.delete_tenant_data(&t).await);
    refused(
        old.append_ledger(
            &t,
            LedgerEntry::Bound {
                at: ts("2026-01-01T00:00:00Z"),
                corp_id: "ding1".into(),
                agent_id: Some(1),
                trial_ends_at: None,
            },
        )
        .await,
    );
    let run = SyncRunRecord {
        started: ts("2026-01-01T00:00:00Z"),
        finished: ts("2026-01-01T00:00:01Z"),
        outcome: SyncOutcome::Succeeded,
        added: 0,
        updated: 0,
        removed: 0,
        calls: 0,
        held_deletions: 0,
        message: None,
    };
    let applied = old.apply_sync(&t, &DirectoryDiff::default(), &run).await;
    assert!(matches!(applied, Err(Error::Fenced { .. })), "{applied:?}");
    // A sync's write path: a run staged by anyone is applied by no stale term.
    let staged = stage_all(&store, &t, &org(3, 20, 0), 10).await;
    let applied = old.apply_staged(staged, &[], &[], &run).await;
    assert!(matches!(applied, Err(Error::Fenced { .. })), "{applied:?}");
    assert!(
        store.directory(&t).await.unwrap().members.is_empty(),
        "a refused apply writes no member"
    );
    // A term can never go back, and reads are never fenced.
    assert!(matches!(
        old.advance_fence(5).await,
        Err(Error::Fenced {
            token: 5,
            current: 6
        })
    ));
    assert_eq!(
        old.document(&t, "status").await.unwrap(),
        Some(serde_json::json!({"by": 5}))
    );
    new.put_document(&t, "status", &serde_json::json!({"by": 6}))
        .await
        .unwrap();
    // An unfenced handle (the CLI, local mode) is not a leader and writes as before.
    store
        .put_document(&t, "note", &serde_json::json!({}))
        .await
        .unwrap();
}

// ---- staged syncs: the read streamed into the store, diffed there ----

/// Stages `dir` (what a read found) in batches of `batch` rows and finishes the run.
async fn stage_all(store: &Store, t: &TenantKey, dir: &Directory, batch: usize) -> Staged {
    let mut staging = store.begin_staging(t).await.expect("begin staging");
    let departments: Vec<Department> = dir.departments.values().cloned().collect();
    let members: Vec<Member> = dir.members.values().cloned().collect();
    for chunk in departments.chunks(batch.max(1)) {
        store.stage(&mut staging, chunk, &[]).await.expect("stage");
    }
    for chunk in members.chunks(batch.max(1)) {
        store.stage(&mut staging, &[], chunk).await.expect("stage");
    }
    store.finish_staging(staging).await.expect("finish staging")
}

/// Applies a staged run with every removal, as an unguarded sync would.
async fn apply_all(store: &Store, staged: Staged) -> StagedChanges {
    let changes = store.staged_changes(&staged).await.expect("changes");
    let removals: Vec<String> = changes
        .missing_members
        .iter()
        .map(|m| m.userid.clone())
        .collect();
    let run = SyncRunRecord {
        added: changes.add_members,
        updated: changes.update_members,
        removed: removals.len() as u64,
        ..run_for(&DirectoryDiff::default())
    };
    store
        .apply_staged(staged, &removals, &changes.missing_departments, &run)
        .await
        .expect("apply staged");
    changes
}

async fn staging_rows(db: &TestDb) -> i64 {
    db.raw_i64(
        "SELECT (SELECT COUNT(*) FROM staging_runs) + (SELECT COUNT(*) FROM staging_departments) \
         + (SELECT COUNT(*) FROM staging_members) + (SELECT COUNT(*) FROM staging_links)",
    )
    .await
}

async fn staged_sync_reaches_the_read_directory_and_an_unchanged_one_writes_nothing(db: &TestDb) {
    let store = db.store().await;
    let t = key("staged", "org");
    let a = org(120, 12_000, 0);
    let changes = apply_all(&store, stage_all(&store, &t, &a, 1_000).await).await;
    assert_eq!((changes.add_members, changes.members), (12_000, 0));
    assert_eq!(store.directory(&t).await.unwrap(), a);
    assert_eq!(staging_rows(db).await, 0, "the applied run is deleted");

    let b = churn(&a, 10.0);
    let expected = diff(&a, &b);
    let staged = stage_all(&store, &t, &b, 700).await;
    assert_eq!(store.staged_diff(&staged).await.unwrap(), expected);
    let changes = apply_all(&store, staged).await;
    assert_eq!(changes.add_members, expected.add_members.len() as u64);
    assert_eq!(changes.update_members, expected.update_members.len() as u64);
    assert_eq!(store.directory(&t).await.unwrap(), b);

    let versions = db
        .raw_i64("SELECT CAST(SUM(version) AS BIGINT) FROM members")
        .await;
    let staged = stage_all(&store, &t, &b, 5_000).await;
    let changes = store.staged_changes(&staged).await.unwrap();
    assert!(changes.is_empty(), "unchanged: {changes:?}");
    assert_eq!(changes.members, b.members.len() as u64);
    store
        .apply_staged(staged, &[], &[], &run_for(&DirectoryDiff::default()))
        .await
        .unwrap();
    assert_eq!(last_rows_written(&store, &t).await, 0);
    assert_eq!(
        db.raw_i64("SELECT CAST(SUM(version) AS BIGINT) FROM members")
            .await,
        versions
    );
    assert_eq!(store.directory(&t).await.unwrap(), b);
}

async fn staged_sync_removes_only_the_removals_it_is_given(db: &TestDb) {
    let store = db.store().await;
    let t = key("staged", "partial");
    let a = Directory::new(
        [
            dept(1, None, "Acme"),
            dept(2, Some(1), "Sales"),
            dept(3, Some(1), "Ops"),
        ],
        [
            member("stays", "A", &[1]),
            member("left", "B", &[2]),
            member("flaky", "C", &[3]),
        ],
    );
    sync_to(&store, &t, &a).await;
    // The read finds neither "left" nor "flaky", nor their departments.
    let read = Directory::new([dept(1, None, "Acme")], [member("stays", "A", &[1])]);
    let staged = stage_all(&store, &t, &read, 10).await;
    let changes = store.staged_changes(&staged).await.unwrap();
    assert_eq!(
        changes
            .missing_members
            .iter()
            .map(|m| (m.userid.as_str(), m.dept_ids.clone()))
            .collect::<Vec<_>>(),
        [("flaky", vec![3]), ("left", vec![2])]
    );
    assert_eq!(changes.missing_departments, [2, 3]);
    assert_eq!(changes.add_members + changes.update_members, 0);
    // Only "left" is confirmed gone: it goes with its department.
    store
        .apply_staged(
            staged,
            &["left".into()],
            &[2],
            &run_for(&DirectoryDiff::default()),
        )
        .await
        .unwrap();
    let mut expected = a.clone();
    expected.members.remove("left");
    expected.departments.remove(&2);
    assert_eq!(store.directory(&t).await.unwrap(), expected);
}

async fn staging_left_by_an_interrupted_sync_is_deleted_by_the_next(db: &TestDb) {
    let store = db.store().await;
    let t = key("staged", "interrupted");
    let other = key("staged", "other");
    let a = org(10, 500, 0);
    // Another tenant's sync in progress is left alone.
    let mut others = store.begin_staging(&other).await.unwrap();
    store
        .stage(
            &mut others,
            &[],
            &a.members.values().take(5).cloned().collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    // A sync that read everything and died before applying.
    let abandoned = stage_all(&store, &t, &a, 100).await;
    assert!(staging_rows(db).await > 1_000);
    // The next sync of the tenant starts: the leftovers go.
    let next = store.begin_staging(&t).await.unwrap();
    assert_eq!(
        db.raw_i64(&format!(
            "SELECT COUNT(*) FROM staging_members WHERE run_id = {}",
            abandoned.id()
        ))
        .await,
        0
    );
    assert_eq!(
        db.raw_i64("SELECT COUNT(*) FROM staging_members").await,
        5,
        "only the other tenant's run is left"
    );
    // The old run can no longer be applied: nothing is removed on a partial read.
    let err = store
        .apply_staged(abandoned, &[], &[], &run_for(&DirectoryDiff::default()))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::StagingLost { .. }), "{err}");
    assert_eq!(store.directory(&t).await.unwrap(), Directory::default());
    store.drop_staging(next.id()).await.unwrap();
    // Deleting a tenant's data deletes its staging too.
    store.delete_tenant_data(&other).await.unwrap();
    assert_eq!(staging_rows(db).await, 0);
}

async fn stale_staging_is_deleted_when_the_store_opens(db: &TestDb) {
    let t = key("staged", "stale");
    {
        let store = db.store().await;
        let staged = stage_all(&store, &t, &org(3, 20, 0), 100).await;
        let fresh = stage_all(&store, &key("staged", "fresh"), &org(3, 20, 0), 100).await;
        let two_days_ago = match db.backend {
            Backend::Sqlite => format!(
                "{}",
                Timestamp::now().as_microsecond() - 2 * 24 * 3600 * 1_000_000
            ),
            Backend::Postgres => "now() - interval '2 days'".to_string(),
        };
        db.raw_exec(&format!(
            "UPDATE staging_runs SET started_at = {two_days_ago} WHERE id = {}",
            staged.id()
        ))
        .await
        .unwrap();
        // Rows whose run is gone (a race between two syncs of one tenant).
        db.raw_exec(&format!(
            "DELETE FROM staging_runs WHERE id = {}",
            fresh.id()
        ))
        .await
        .unwrap();
        store.close().await;
    }
    let _store = db.store().await;
    assert_eq!(staging_rows(db).await, 0);
}

/// The writer process of the staged crash test (ignored on its own).
#[tokio::test]
#[ignore = "the staged crash test's writer process; run by killed_staged_writer_leaves_the_directory_all_old_or_all_new"]
async fn crash_staged_writer_child_process() {
    let url = std::env::var(CHILD_URL_ENV)
        .unwrap_or_else(|_| panic!("{CHILD_URL_ENV} is not set: this is the crash test's child"));
    let store = Store::connect(&url).await.expect("child connect");
    let t = key(CRASH_TENANT.0, CRASH_TENANT.1);
    let staged = stage_all(&store, &t, &crash_new(), 5_000).await;
    let changes = store.staged_changes(&staged).await.expect("changes");
    let removals: Vec<String> = changes
        .missing_members
        .iter()
        .map(|m| m.userid.clone())
        .collect();
    println!("APPLYING");
    std::io::stdout().flush().expect("flush");
    store
        .apply_staged(
            staged,
            &removals,
            &changes.missing_departments,
            &run_for(&DirectoryDiff::default()),
        )
        .await
        .expect("child apply");
    println!("COMMITTED");
}

async fn killed_staged_writer_leaves_the_directory_all_old_or_all_new(db: &TestDb) {
    use tokio::io::AsyncBufReadExt;

    let t = key(CRASH_TENANT.0, CRASH_TENANT.1);
    let (old, new) = (crash_old(), crash_new());
    {
        let store = db.store().await;
        sync_to(&store, &t, &old).await;
        store.close().await;
    }
    let child_url = match db.backend {
        Backend::Sqlite => db.url.clone(),
        Backend::Postgres => format!(
            "{}{}application_name=dingbind-crash-writer",
            db.url,
            if db.url.contains('?') { '&' } else { '?' }
        ),
    };
    let mut child = tokio::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "crash_staged_writer_child_process",
            "--ignored",
            "--exact",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_URL_ENV, &child_url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn writer");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("child stdout")).lines();
    // Staging takes its own short transactions: wait until the apply starts.
    tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(line) = lines.next_line().await.expect("child output") {
            if line.contains("APPLYING") {
                return;
            }
        }
        panic!("writer exited before applying");
    })
    .await
    .expect("writer never started applying");
    let mut in_tx = false;
    for _ in 0..2_000 {
        if writer_in_transaction(db).await {
            tokio::time::sleep(Duration::from_millis(100)).await;
            in_tx = writer_in_transaction(db).await;
            if in_tx {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(in_tx, "never caught the writer inside its transaction");
    child.start_kill().expect("SIGKILL the writer");
    let status = child.wait().await.expect("reap writer");
    assert!(
        !status.success(),
        "writer finished before the kill: {status:?}"
    );

    let store = db.store().await;
    let dir = tokio::time::timeout(Duration::from_secs(60), store.directory(&t))
        .await
        .expect("read after crash")
        .expect("directory");
    let verdict = if dir == old {
        "all-old"
    } else if dir == new {
        "all-new"
    } else {
        panic!(
            "MIX after the crash: {} departments, {} members",
            dir.departments.len(),
            dir.members.len()
        );
    };
    eprintln!(
        "{}: killed staged writer left the directory {verdict}",
        db.backend_name()
    );
    let runs = store.sync_runs(&t, 10).await.unwrap();
    assert_eq!(runs.len(), if verdict == "all-old" { 1 } else { 2 });
    // The next sync deletes the killed one's staging and applies.
    let next = org(3, 30, 2);
    apply_all(&store, stage_all(&store, &t, &next, 100).await).await;
    assert_eq!(store.directory(&t).await.unwrap(), next);
    assert_eq!(staging_rows(db).await, 0);
}

// ---- the SQL diff against the pure one ----

mod staged_diff_property {
    use super::*;
    use dingbind::core::desired::{CreatorIdentity, desired_directory};
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestCaseError, TestRunner};

    /// Text that COPY's format and SQL quoting must carry unchanged.
    fn text() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            "a",
            "b",
            "a\tb",
            "back\\slash",
            "line\nbreak",
            "张三",
            "\\N",
            "'q'",
        ])
        .prop_map(str::to_string)
    }

    fn department() -> impl Strategy<Value = Department> {
        (1i64..12, prop::option::of(1i64..14), text(), 0i64..3).prop_map(
            |(id, parent_id, name, order)| Department {
                id,
                parent_id,
                name,
                order,
            },
        )
    }

    /// A user as DingTalk lists them: departments unsorted, repeated, some
    /// outside what the read finds.
    fn user() -> impl Strategy<Value = Member> {
        (
            ("u[0-9]{1,2}", "[a-b]", text()),
            (
                prop::option::of(text()),
                prop::option::of(text()),
                prop::option::of(text()),
                prop::option::of(text()),
            ),
            (any::<bool>(), any::<bool>(), any::<bool>()),
            prop::collection::vec(1i64..14, 0..4),
        )
            .prop_map(
                |(
                    (userid, unionid, name),
                    (mobile, email, title, job_number),
                    (active, admin, boss),
                    dept_ids,
                )| Member {
                    unionid: format!("un-{userid}-{unionid}"),
                    userid,
                    name,
                    mobile,
                    email,
                    title,
                    job_number,
                    active,
                    admin,
                    boss,
                    dept_ids,
                },
            )
    }

    /// What one read found, duplicates included.
    #[derive(Clone, Debug)]
    struct Read {
        departments: Vec<Department>,
        users: Vec<Member>,
    }

    fn read() -> impl Strategy<Value = Read> {
        (
            prop::collection::vec(department(), 0..10),
            prop::collection::vec(user(), 0..24),
        )
            .prop_map(|(departments, users)| Read { departments, users })
    }

    /// A read close to `base`: each entry kept, replaced by one of `other`,
    /// dropped, or read twice.
    fn next_read(base: &Read, other: &Read, picks: &[u8]) -> Read {
        let mut picks = picks.iter().copied().cycle();
        let mut mix = |a: &[Department], b: &[Department]| -> Vec<Department> {
            let mut out = Vec::new();
            for (i, d) in a.iter().enumerate() {
                match picks.next().unwrap_or(0) {
                    0 | 1 => out.push(d.clone()),
                    2 => out.extend(b.get(i).cloned()),
                    3 => out.extend([d.clone(), d.clone()]),
                    _ => {}
                }
            }
            out
        };
        let departments = mix(&base.departments, &other.departments);
        let mut users = Vec::new();
        for (i, u) in base.users.iter().enumerate() {
            match picks.next().unwrap_or(0) {
                0 | 1 => users.push(u.clone()),
                2 => users.extend(other.users.get(i).cloned()),
                3 => {
                    // Read twice, the second copy different: the first wins.
                    let mut copy = u.clone();
                    copy.name.push('2');
                    users.extend([u.clone(), copy]);
                }
                _ => {}
            }
        }
        users.extend(other.users.iter().skip(base.users.len()).cloned());
        Read { departments, users }
    }

    fn case() -> impl Strategy<Value = (Read, Read, Vec<u8>, usize)> {
        (
            read(),
            read(),
            prop::collection::vec(0u8..5, 1..64),
            1usize..6,
        )
    }

    fn desired(r: &Read) -> Directory {
        desired_directory(
            r.departments.iter().cloned(),
            r.users.iter().cloned(),
            &CreatorIdentity::default(),
        )
    }

    /// Stages a read in its order, in batches of `batch` rows.
    async fn stage_read(store: &Store, t: &TenantKey, r: &Read, batch: usize) -> Staged {
        let mut staging = store.begin_staging(t).await.expect("begin");
        for chunk in r.departments.chunks(batch) {
            store.stage(&mut staging, chunk, &[]).await.expect("stage");
        }
        for chunk in r.users.chunks(batch) {
            store.stage(&mut staging, &[], chunk).await.expect("stage");
        }
        store.finish_staging(staging).await.expect("finish")
    }

    async fn check(
        store: &Store,
        t: &TenantKey,
        (base, other, picks, batch): (Read, Read, Vec<u8>, usize),
    ) -> Result<(), TestCaseError> {
        let current = desired(&base);
        sync_to(store, t, &current).await;
        prop_assert_eq!(&store.directory(t).await.expect("read"), &current);
        let next = next_read(&base, &other, &picks);
        let want = diff(&current, &desired(&next));
        seen(&want);

        let staged = stage_read(store, t, &next, batch).await;
        let got = store.staged_diff(&staged).await.expect("staged diff");
        // Row by row, in the same order.
        prop_assert_eq!(&got, &want);
        let changes = store.staged_changes(&staged).await.expect("changes");
        prop_assert_eq!(changes.add_members, want.add_members.len() as u64);
        prop_assert_eq!(changes.update_members, want.update_members.len() as u64);
        prop_assert_eq!(changes.add_departments, want.add_departments.len() as u64);
        prop_assert_eq!(
            changes.update_departments,
            want.update_departments.len() as u64
        );
        prop_assert_eq!(changes.members, current.members.len() as u64);
        let missing: Vec<String> = changes
            .missing_members
            .iter()
            .map(|m| m.userid.clone())
            .collect();
        prop_assert_eq!(&missing, &want.remove_members);
        for m in &changes.missing_members {
            prop_assert_eq!(Some(m), current.members.get(&m.userid));
        }
        prop_assert_eq!(&changes.missing_departments, &want.remove_departments);

        // Applied with every other removal held back, the store holds what
        // the core's apply gives.
        let mut allowed = want.clone();
        allowed.remove_members = want.remove_members.iter().step_by(2).cloned().collect();
        allowed.remove_departments = want
            .remove_departments
            .iter()
            .skip(1)
            .step_by(2)
            .copied()
            .collect();
        store
            .apply_staged(
                staged,
                &allowed.remove_members,
                &allowed.remove_departments,
                &run_for(&allowed),
            )
            .await
            .expect("apply");
        prop_assert_eq!(
            store.directory(t).await.expect("read"),
            apply(&current, &allowed)
        );
        store.clear_directory(t).await.expect("clear");
        Ok(())
    }

    /// The kinds of change the generated cases reached.
    static SEEN: std::sync::Mutex<std::collections::BTreeSet<&'static str>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());

    fn seen(d: &DirectoryDiff) {
        let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
        for (what, hit) in [
            ("add dept", !d.add_departments.is_empty()),
            ("update dept", !d.update_departments.is_empty()),
            ("remove dept", !d.remove_departments.is_empty()),
            ("add member", !d.add_members.is_empty()),
            ("update member", !d.update_members.is_empty()),
            ("remove member", !d.remove_members.is_empty()),
        ] {
            if hit {
                seen.insert(what);
            }
        }
    }

    fn run(backend: Backend) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let db = rt.block_on(TestDb::new(backend));
        let store = rt.block_on(db.store());
        let cases = std::env::var("DINGBIND_STORE_PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(96);
        let mut runner = TestRunner::new(Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        });
        let n = std::sync::atomic::AtomicUsize::new(0);
        let result = runner.run(&case(), |c| {
            let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            rt.block_on(check(&store, &key("prop", &format!("case-{i}")), c))
        });
        if let Err(e) = result {
            panic!(
                "{}: the SQL diff differs from core::directory::diff: {e}",
                db.backend_name()
            );
        }
        let seen = SEEN.lock().unwrap_or_else(|p| p.into_inner()).len();
        assert_eq!(seen, 6, "the cases did not reach every kind of change");
        rt.block_on(db.drop_database());
    }

    #[test]
    fn sqlite() {
        run(Backend::Sqlite);
    }

    #[test]
    fn postgres() {
        if pg_admin_url().is_none() {
            return;
        }
        run(Backend::Postgres);
    }
}
