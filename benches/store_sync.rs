//! Store sync throughput: a full first load of a 2,000-department,
//! 100,000-member organization, then a 1% change, then an unchanged sync, on
//! SQLite and (when `DINGBIND_TEST_POSTGRES_URL` is set) PostgreSQL.
//! Prints rows/s and peak RSS per phase. Not a timed test: run it with
//!
//!     cargo bench --bench store_sync
//!
//! (`DINGBIND_BENCH_MEMBERS` / `DINGBIND_BENCH_DEPARTMENTS` override the size.)

#[path = "../tests/support/org.rs"]
mod org;
#[path = "support/postgres.rs"]
mod postgres;

use std::time::Instant;

use dingbind::api::TenantKey;
use dingbind::core::directory::{Directory, DirectoryDiff, diff};
use dingbind::store::{Store, SyncRunRecord};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// (VmRSS, VmHWM) in MiB, from /proc/self/status (Linux only).
fn rss() -> Option<(f64, f64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb / 1024.0)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Reset the peak-RSS counter, so that VmHWM measures one phase.
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn links(d: &DirectoryDiff) -> usize {
    d.add_members
        .iter()
        .chain(&d.update_members)
        .map(|m| m.dept_ids.len())
        .sum()
}

async fn phase(
    store: &Store,
    t: &TenantKey,
    label: &str,
    current: &Directory,
    desired: &Directory,
) -> Result<(), String> {
    let d = diff(current, desired);
    let rows = d.len();
    reset_peak();
    let before = rss();
    let started = Instant::now();
    let run = SyncRunRecord::succeeded(jiff::Timestamp::now(), jiff::Timestamp::now(), &d);
    store
        .apply_sync(t, &d, &run)
        .await
        .map_err(|e| e.to_string())?;
    let secs = started.elapsed().as_secs_f64();
    let written = store
        .sync_runs(t, 1)
        .await
        .map_err(|e| e.to_string())?
        .first()
        .map(|r| r.rows_written)
        .unwrap_or(0);
    let mem = match (before, rss()) {
        (Some((base, _)), Some((_, peak))) => format!(
            "peak RSS {peak:.0} MiB (+{:.0} MiB over the {base:.0} MiB before)",
            (peak - base).max(0.0)
        ),
        _ => "peak RSS n/a".into(),
    };
    let rate = if secs > 0.0 {
        rows as f64 / secs
    } else {
        f64::INFINITY
    };
    println!(
        "  {label:<24} {rows:>7} diff rows (+{} dept links) in {secs:>7.3}s = {rate:>10.0} rows/s; {written} rows written; {mem}",
        links(&d)
    );
    Ok(())
}

/// A staged sync, as a full sync runs it: the read streamed into the store in
/// batches of `batch` rows, then compared and applied in the database.
async fn staged_phase(
    store: &Store,
    t: &TenantKey,
    label: &str,
    desired: &Directory,
    batch: usize,
) -> Result<(), String> {
    let err = |e: dingbind::store::Error| e.to_string();
    reset_peak();
    let before = rss();
    let started = Instant::now();
    let mut staging = store.begin_staging(t).await.map_err(err)?;
    let depts: Vec<_> = desired.departments.values().cloned().collect();
    for chunk in depts.chunks(batch) {
        store.stage(&mut staging, chunk, &[]).await.map_err(err)?;
    }
    let mut members = Vec::with_capacity(batch);
    for m in desired.members.values() {
        members.push(m.clone());
        if members.len() == batch {
            store
                .stage(&mut staging, &[], &members)
                .await
                .map_err(err)?;
            members.clear();
        }
    }
    store
        .stage(&mut staging, &[], &members)
        .await
        .map_err(err)?;
    drop(members);
    let staged_at = Instant::now();
    let staged = store.finish_staging(staging).await.map_err(err)?;
    let changes = store.staged_changes(&staged).await.map_err(err)?;
    let removals: Vec<String> = changes
        .missing_members
        .iter()
        .map(|m| m.userid.clone())
        .collect();
    let compared_at = Instant::now();
    let run = SyncRunRecord {
        added: changes.add_members,
        updated: changes.update_members,
        removed: removals.len() as u64,
        ..SyncRunRecord::succeeded(
            jiff::Timestamp::now(),
            jiff::Timestamp::now(),
            &DirectoryDiff::default(),
        )
    };
    store
        .apply_staged(staged, &removals, &changes.missing_departments, &run)
        .await
        .map_err(err)?;
    let done = Instant::now();
    let written = store
        .sync_runs(t, 1)
        .await
        .map_err(err)?
        .first()
        .map(|r| r.rows_written)
        .unwrap_or(0);
    let mem = match (before, rss()) {
        (Some((base, _)), Some((_, peak))) => {
            format!("peak RSS {peak:.0} MiB (+{:.0})", (peak - base).max(0.0))
        }
        _ => "peak RSS n/a".into(),
    };
    let secs = |a: Instant, b: Instant| (b - a).as_secs_f64();
    println!(
        "  {label:<24} stage {:.3}s (batches of {batch}), compare {:.3}s, apply {:.3}s: diff+apply {:.3}s; +{} ~{} -{} members; {written} rows written; {mem}",
        secs(started, staged_at),
        secs(staged_at, compared_at),
        secs(compared_at, done),
        secs(staged_at, done),
        changes.add_members,
        changes.update_members,
        removals.len(),
    );
    Ok(())
}

async fn bench(name: &str, url: &str, depts: usize, members: usize) -> Result<(), String> {
    println!("{name}: {members} members, {depts} departments");
    let store = Store::connect(url).await.map_err(|e| e.to_string())?;
    let t = TenantKey {
        namespace: "bench".into(),
        name: "org".into(),
    };
    let first = org::org(depts, members, 0);
    let changed = org::churn(&first, 1.0);
    phase(&store, &t, "full first load", &Directory::default(), &first).await?;
    phase(&store, &t, "1% change", &first, &changed).await?;
    phase(&store, &t, "unchanged", &changed, &changed).await?;
    let started = Instant::now();
    let read = store.directory(&t).await.map_err(|e| e.to_string())?;
    println!(
        "  {:<24} {:>7} members in {:>7.3}s",
        "read directory",
        read.members.len(),
        started.elapsed().as_secs_f64()
    );
    if read != changed {
        return Err(format!(
            "{name}: the directory read back differs from the one written"
        ));
    }
    let batch = env_usize("DINGBIND_BENCH_BATCH", 1_000);
    println!("  staged (as a full sync writes: the read streamed into the store, diffed there):");
    let t = TenantKey {
        namespace: "bench".into(),
        name: "staged".into(),
    };
    staged_phase(&store, &t, "full first load", &first, batch).await?;
    staged_phase(&store, &t, "1% change", &changed, batch).await?;
    staged_phase(&store, &t, "unchanged", &changed, batch).await?;
    if store.directory(&t).await.map_err(|e| e.to_string())? != changed {
        return Err(format!(
            "{name}: the staged directory read back differs from the one written"
        ));
    }
    store.close().await;
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), String> {
    let members = env_usize("DINGBIND_BENCH_MEMBERS", 100_000);
    let depts = env_usize("DINGBIND_BENCH_DEPARTMENTS", 2_000);

    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    bench(
        "sqlite",
        &format!("sqlite://{}", dir.path().join("bench.db").display()),
        depts,
        members,
    )
    .await?;

    match postgres::admin_url() {
        Some(admin) => {
            postgres::with_scratch_database(&admin, "dingbind_bench", |url| async move {
                bench("postgres", &url, depts, members).await
            })
            .await?;
        }
        None => {
            println!("postgres: skipped (DINGBIND_TEST_POSTGRES_URL is not set; see docs/store.md)")
        }
    }
    Ok(())
}
