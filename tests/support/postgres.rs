//! Throwaway PostgreSQL databases for the tests that run on both stores.
//! `DINGBIND_TEST_POSTGRES_URL` (set by `scripts/test.sh`) names an admin
//! connection; each test gets a database of its own, so no state leaks in.
//!
//! `DINGBIND_TEST_REQUIRE_POSTGRES=1` (exported by `scripts/test.sh`, hence CI)
//! asks for PostgreSQL: a PostgreSQL test then FAILS when the URL is missing or
//! the server is unreachable. Without it, a plain `cargo test` without the URL
//! skips them and says so in one line on stderr. With the URL set, an
//! unreachable server always fails.

use std::sync::{
    Once,
    atomic::{AtomicUsize, Ordering},
};

use sqlx::Connection;

pub const PG_ENV: &str = "DINGBIND_TEST_POSTGRES_URL";
pub const REQUIRE_ENV: &str = "DINGBIND_TEST_REQUIRE_POSTGRES";

static NOTE: Once = Once::new();
static DATABASES: AtomicUsize = AtomicUsize::new(0);

/// Whether the suite was asked to run on PostgreSQL (`DINGBIND_TEST_REQUIRE_POSTGRES=1`).
pub fn required() -> bool {
    std::env::var(REQUIRE_ENV).is_ok_and(|v| v.trim() == "1")
}

/// The admin URL, or `None` (after a note on stderr, once per test binary,
/// saying that `what` was not run on PostgreSQL) when the variable is unset.
/// Panics when the variable is unset but PostgreSQL was asked for.
pub fn admin_url(what: &str) -> Option<String> {
    match std::env::var(PG_ENV) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ if required() => panic!(
            "{REQUIRE_ENV}=1 asks for PostgreSQL, but {PG_ENV} is not set: {what} cannot run on PostgreSQL \
             (scripts/test.sh starts a server; see docs/testing.md)"
        ),
        _ => {
            NOTE.call_once(|| {
                // Straight to stderr, so that the test harness does not capture it.
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr(),
                    "\nNOTE: {PG_ENV} is not set: {what} were SKIPPED on PostgreSQL (SQLite only; set {REQUIRE_ENV}=1 to make this fail). See docs/testing.md.\n"
                );
            });
            None
        }
    }
}

/// Connects to the admin URL once; panics (naming the URL without its
/// password) when the server does not answer.
pub async fn ensure_reachable(admin: &str) {
    match sqlx::PgConnection::connect(admin).await {
        Ok(c) => {
            let _ = c.close().await;
        }
        Err(e) => panic!(
            "{PG_ENV} is set but PostgreSQL is unreachable ({}): {e}",
            dingbind::store::redact(admin)
        ),
    }
}

/// `url` pointing at database `db` instead.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let start = base.find("://").map_or(0, |i| i + 3);
    let end = base[start..].find('/').map_or(base.len(), |i| start + i);
    let mut out = format!("{}/{db}", &base[..end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// Creates a new, empty database; returns its name and URL.
pub async fn create_database(admin: &str, prefix: &str) -> (String, String) {
    let name = format!(
        "{prefix}_{}_{}",
        std::process::id(),
        DATABASES.fetch_add(1, Ordering::SeqCst)
    );
    let mut conn = sqlx::PgConnection::connect(admin)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{PG_ENV} is set but PostgreSQL is unreachable ({}): {e}",
                dingbind::store::redact(admin)
            )
        });
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut conn)
        .await
        .expect("create a test database");
    let _ = conn.close().await;
    let url = with_database(admin, &name);
    (name, url)
}

/// Drops a database made by [`create_database`] (best effort).
pub async fn drop_database(admin: &str, name: &str) {
    if let Ok(mut c) = sqlx::PgConnection::connect(admin).await {
        let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
        let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut c).await;
    }
}
