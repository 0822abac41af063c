//! Versioned schema migrations, one folder per backend, embedded in the binary
//! and run by [`sqlx::migrate::Migrator`] at start-up (bookkeeping in
//! `_sqlx_migrations`, so `sqlx migrate info` works on a live database).
//!
//! Safe when several processes start at once:
//! - PostgreSQL: sqlx takes `pg_advisory_lock` (keyed on the database name)
//!   *before* creating `_sqlx_migrations` and releases it after; the store runs
//!   the migrator on a dedicated connection that is closed afterwards, so the
//!   session-level lock can never leak into the pool.
//! - SQLite: sqlx's lock is a no-op there, so the store wraps the whole run in
//!   one `BEGIN IMMEDIATE` transaction (the migrator's own transactions become
//!   savepoints): the second process waits on the write lock, then sees every
//!   migration applied and does nothing.
//!
//! Rules: never edit a released migration (sqlx checks the checksums); add
//! `NNNN_what.sql` to both folders and to the lists below.

use std::borrow::Cow;

use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};

/// (version, description, SQL) for SQLite.
const SQLITE: &[(i64, &str, &str)] = &[
    (1, "initial", include_str!("sqlite/0001_initial.sql")),
    (
        2,
        "binding identity and fence",
        include_str!("sqlite/0002_binding_identity.sql"),
    ),
    (
        3,
        "sync staging",
        include_str!("sqlite/0003_sync_staging.sql"),
    ),
    (
        4,
        "staging links unindexed",
        include_str!("sqlite/0004_staging_links_unindexed.sql"),
    ),
    (
        5,
        "marketplace",
        include_str!("sqlite/0005_marketplace.sql"),
    ),
];

/// (version, description, SQL) for PostgreSQL.
const POSTGRES: &[(i64, &str, &str)] = &[
    (1, "initial", include_str!("postgres/0001_initial.sql")),
    (
        2,
        "binding identity and fence",
        include_str!("postgres/0002_binding_identity.sql"),
    ),
    (
        3,
        "sync staging",
        include_str!("postgres/0003_sync_staging.sql"),
    ),
    (
        4,
        "staging links unindexed",
        include_str!("postgres/0004_staging_links_unindexed.sql"),
    ),
    (
        5,
        "marketplace",
        include_str!("postgres/0005_marketplace.sql"),
    ),
];

fn migrator(list: &'static [(i64, &'static str, &'static str)]) -> Migrator {
    Migrator::with_migrations(
        list.iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    Cow::Borrowed(description),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

/// The SQLite migrations.
pub(crate) fn sqlite() -> Migrator {
    migrator(SQLITE)
}

/// The PostgreSQL migrations.
pub(crate) fn postgres() -> Migrator {
    migrator(POSTGRES)
}

/// Run every pending migration on `conn`.
///
/// `Migrator::run` takes an `Acquire` and its future then fails the `Send`
/// check inside `tokio::spawn` ("implementation of `Acquire` is not general
/// enough"); `run_direct` is the entry point sqlx provides for exactly that
/// case, on a plain connection.
pub(crate) async fn run<C: sqlx::migrate::Migrate>(
    migrator: &Migrator,
    conn: &mut C,
) -> Result<(), sqlx::migrate::MigrateError> {
    migrator.run_direct(None, conn, false).await
}

/// The newest schema version this build knows.
pub const SCHEMA_VERSION: i64 = 5;
