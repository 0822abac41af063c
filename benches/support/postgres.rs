//! A scratch PostgreSQL database for a benchmark, on the server
//! `DINGBIND_TEST_POSTGRES_URL` names (`scripts/postgres-test.sh`).

#![allow(dead_code)]

use sqlx::Connection;

/// The admin URL, if one is set.
pub fn admin_url() -> Option<String> {
    std::env::var("DINGBIND_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
}

/// `url` with its database replaced by `db`.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let start = base.find("://").map_or(0, |i| i + 3);
    let end = base[start..].find('/').map_or(base.len(), |i| start + i);
    match query {
        Some(q) => format!("{}/{db}?{q}", &base[..end]),
        None => format!("{}/{db}", &base[..end]),
    }
}

/// Runs `f` on the URL of a fresh database `prefix_<pid>` of the server at
/// `admin`, dropped afterwards whatever `f` returned.
pub async fn with_scratch_database<F, Fut>(admin: &str, prefix: &str, f: F) -> Result<(), String>
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let name = format!("{prefix}_{}", std::process::id());
    let mut c = sqlx::PgConnection::connect(admin)
        .await
        .map_err(|e| format!("PostgreSQL unreachable: {e}"))?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut c)
        .await
        .map_err(|e| e.to_string())?;
    let result = f(with_database(admin, &name)).await;
    let drop = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
    let _ = sqlx::query(sqlx::AssertSqlSafe(drop)).execute(&mut c).await;
    result
}
