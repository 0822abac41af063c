//! Full directory syncs of large organizations through the reconciler, as
//! the controller runs them, against the simulator in its own process (so the
//! figures are the operator's alone). For each store it prints the calls
//! made, the lower bound DingTalk's per-API limits allow, the wall time, the
//! ratio, the peak RSS of the syncing process, and then a second sync with
//! nothing changed (which must write nothing).
//!
//!     cargo bench --bench full_sync                        # 2,000 departments, 100,000 users, SQLite
//!     DINGBIND_BENCH_USERS=1000000 cargo bench --bench full_sync   # the long run (~25 min per store)
//!     DINGBIND_BENCH_STORES=sqlite,postgres cargo bench --bench full_sync
//!     DINGBIND_BENCH_CONCURRENT=4 DINGBIND_BENCH_USERS=300000 cargo bench --bench full_sync
//!
//! `DINGBIND_BENCH_CONCURRENT=N` syncs N organizations of that size at once
//! (one tenant each, one reconciler, `--sync-memory` from
//! `DINGBIND_BENCH_SYNC_MEMORY`, default as the controller's) and prints their
//! peak RSS against the budget. `postgres` needs `DINGBIND_TEST_POSTGRES_URL`
//! (docs/store.md); `DINGBIND_BENCH_SECOND=0` skips the unchanged sync.
//!
//! `cargo test` never runs it: it takes minutes at 20 calls/s.

#[path = "support/generated.rs"]
mod generated;
#[path = "support/postgres.rs"]
mod postgres;

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::Instant,
};

use dingbind::{
    api::SYNC_REQUESTED_AT,
    dingtalk,
    reconcile::{Reconciler, budget::DEFAULT_SYNC_MEMORY_MIB},
    sim::generate::{GenSpec, generate_lazily},
    store::Store,
};
use jiff::Timestamp;
use sqlx::Connection;

const QPS: f64 = 20.0;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// (VmRSS, VmHWM) of this process, in MiB.
fn rss_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| -> f64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Resets the peak-RSS counter (Linux), so that VmHWM measures what follows.
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The lower bound, from the organization itself (dingtalk-api.md, section
/// 11): one listsub per department, max(1, ceil(n/100)) user/list pages per
/// department; the two APIs are limited separately and overlap.
fn bound(spec: GenSpec) -> (usize, usize, f64) {
    let (corp, users) = generate_lazily(spec);
    let direct: HashMap<i64, usize> = users.department_sizes().collect();
    let depts = corp.departments.len() + 1;
    let pages: usize = (1..=depts as i64)
        .map(|d| direct.get(&d).copied().unwrap_or(0).div_ceil(100).max(1))
        .sum();
    (depts, pages, depts.max(pages) as f64 / QPS)
}

/// A fresh store of kind `kind` (and what drops it afterwards).
async fn open_store(
    kind: &str,
    dir: &std::path::Path,
) -> Option<(Store, Option<(String, String)>)> {
    match kind {
        "sqlite" => {
            let url = format!("sqlite://{}", dir.join("bench.db").display());
            Some((Store::connect(&url).await.expect("store"), None))
        }
        "postgres" => {
            let Ok(admin) = std::env::var("DINGBIND_TEST_POSTGRES_URL") else {
                println!(
                    "postgres: skipped (DINGBIND_TEST_POSTGRES_URL is not set; see docs/store.md)"
                );
                return None;
            };
            let name = format!("dingbind_full_sync_{}", std::process::id());
            let mut c = sqlx::PgConnection::connect(&admin)
                .await
                .expect("PostgreSQL");
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
                .execute(&mut c)
                .await
                .expect("create database");
            let url = postgres::with_database(&admin, &name);
            Some((
                Store::connect(&url).await.expect("store"),
                Some((admin.clone(), name)),
            ))
        }
        other => panic!("unknown store {other:?} (sqlite, postgres)"),
    }
}

async fn drop_store(store: Store, pg: Option<(String, String)>) {
    store.close().await;
    if let Some((admin, name)) = pg {
        let mut c = sqlx::PgConnection::connect(&admin)
            .await
            .expect("PostgreSQL");
        let drop = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
        let _ = sqlx::query(sqlx::AssertSqlSafe(drop)).execute(&mut c).await;
    }
}

/// One full sync, then (unless told not to) one with nothing changed.
async fn one(kind: &str, spec: GenSpec) {
    let (depts, pages, bound_secs) = bound(spec);
    let dir = tempfile::tempdir().expect("temp dir");
    let Some((store, pg)) = open_store(kind, dir.path()).await else {
        return;
    };
    let sim = generated::start_sim(spec, 1);
    let url = sim.url.clone();
    let client = dingtalk::Client::new(dingtalk::Config::with_base_url(&url)).expect("client");
    let rec = Reconciler::new(store.clone(), client.clone());
    let (mut tenant, secrets) = generated::tenant(0, None);

    println!(
        "{kind}: organization of {depts} departments, {} users",
        spec.users
    );
    reset_peak();
    let (base, _) = rss_mib();
    let started = Instant::now();
    let outcome = rec
        .reconcile(&tenant, &secrets, None, Timestamp::now(), &|_| {})
        .await
        .expect("reconcile");
    let elapsed = started.elapsed().as_secs_f64();
    let (_, peak) = rss_mib();
    let stats = client.stats();
    let dir_status = outcome.status.directory.clone().unwrap_or_default();
    println!(
        "  full sync: {} members, {} departments in the directory",
        dir_status.members, dir_status.departments
    );
    for (api, s) in &stats.endpoints {
        println!(
            "    {:<40} {:>7} calls, {} throttled",
            api.name(),
            s.calls,
            s.throttled
        );
    }
    println!(
        "  lower bound: listsub {depts} calls, user/list {pages} pages -> {bound_secs:.1} s at {QPS} calls/s per API"
    );
    println!(
        "  wall time: {elapsed:.1} s, ratio {:.3} (goal <= 1.07)",
        elapsed / bound_secs
    );
    println!("  throttle errors: {}", stats.total_throttled());
    println!("  peak RSS of the sync: {peak:.0} MiB (goal <= 150; {base:.0} MiB before it)");

    if env("DINGBIND_BENCH_SECOND", 1) != 0 {
        tenant.status = Some(outcome.status);
        tenant.metadata.annotations = Some(BTreeMap::from([(
            SYNC_REQUESTED_AT.to_string(),
            "again".to_string(),
        )]));
        reset_peak();
        let started = Instant::now();
        rec.reconcile(&tenant, &secrets, None, Timestamp::now(), &|_| {})
            .await
            .expect("second reconcile");
        let runs = store.sync_runs(&tenant.key(), 1).await.expect("runs");
        println!(
            "  sync with nothing changed: {:.1} s, {} rows written, peak RSS {:.0} MiB",
            started.elapsed().as_secs_f64(),
            runs.first().map_or(0, |r| r.rows_written),
            rss_mib().1
        );
    }
    drop_store(store, pg).await;
}

/// `n` full syncs at once, one reconciler.
async fn concurrent(kind: &str, spec: GenSpec, n: usize) {
    let (_, _, bound_secs) = bound(spec);
    let budget = u32::try_from(env(
        "DINGBIND_BENCH_SYNC_MEMORY",
        DEFAULT_SYNC_MEMORY_MIB as usize,
    ))
    .unwrap_or(DEFAULT_SYNC_MEMORY_MIB);
    let dir = tempfile::tempdir().expect("temp dir");
    let Some((store, pg)) = open_store(kind, dir.path()).await else {
        return;
    };
    let sim = generated::start_sim(spec, n);
    let url = sim.url.clone();
    let client = dingtalk::Client::new(dingtalk::Config::with_base_url(&url)).expect("client");
    let rec = Arc::new(Reconciler::new(store.clone(), client).with_sync_memory(budget));
    println!(
        "{kind}: {n} concurrent full syncs of {} users each, --sync-memory {budget} MiB",
        spec.users
    );
    reset_peak();
    let (base, _) = rss_mib();
    let started = Instant::now();
    let syncs: Vec<_> = (0..n)
        .map(|i| {
            let rec = rec.clone();
            tokio::spawn(async move {
                let (tenant, secrets) = generated::tenant(i, None);
                let t = Instant::now();
                let outcome = rec
                    .reconcile(&tenant, &secrets, None, Timestamp::now(), &|_| {})
                    .await
                    .expect("reconcile");
                let members = outcome.status.directory.map_or(0, |d| d.members);
                (i, members, t.elapsed().as_secs_f64())
            })
        })
        .collect();
    for s in syncs {
        let (i, members, secs) = s.await.expect("sync task");
        println!(
            "  tenant {}: {members} members in {secs:.1} s (ratio {:.3})",
            i + 1,
            secs / bound_secs
        );
    }
    let (_, peak) = rss_mib();
    println!(
        "  all {n}: {:.1} s; peak RSS {peak:.0} MiB (goal: within --sync-memory {budget} MiB; {base:.0} MiB before)",
        started.elapsed().as_secs_f64()
    );
    drop_store(store, pg).await;
}

#[tokio::main]
async fn main() {
    let spec = GenSpec {
        departments: env("DINGBIND_BENCH_DEPARTMENTS", 2000),
        users: env("DINGBIND_BENCH_USERS", 100_000),
        seed: 7,
    };
    let stores = std::env::var("DINGBIND_BENCH_STORES").unwrap_or_else(|_| "sqlite".into());
    let n = env("DINGBIND_BENCH_CONCURRENT", 1);
    for kind in stores.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if n > 1 {
            concurrent(kind, spec, n).await;
        } else {
            one(kind, spec).await;
        }
    }
}
