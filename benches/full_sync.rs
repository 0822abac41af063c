//! A full directory sync of a large organization through the reconciler, as
//! the controller runs it, against the simulator in its own process (so the
//! figures are the operator's alone). Prints the calls made, the lower bound
//! DingTalk's per-API limits allow, the wall time, the ratio, the peak RSS, and
//! then a second sync with nothing changed (which must write nothing).
//!
//!     cargo bench --bench full_sync                       # 2,000 departments, 100,000 users
//!     DINGBIND_BENCH_DEPARTMENTS=200 DINGBIND_BENCH_USERS=10000 cargo bench --bench full_sync
//!
//! `cargo test` never runs it: it takes minutes at 20 calls/s.

use std::{
    collections::{BTreeMap, HashMap},
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    time::Instant,
};

use dingbind::{
    api::{SYNC_REQUESTED_AT, Tenant},
    dingtalk,
    reconcile::{Reconciler, Secrets},
    sim::generate::{GEN_AGENT_ID, GEN_APP_KEY, GEN_APP_SECRET, GEN_CORP_ID, GenSpec, generate},
    store::Store,
};
use jiff::Timestamp;
use serde_json::json;

const QPS: f64 = 20.0;

struct Sim(Child);

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

#[tokio::main]
async fn main() {
    let spec = GenSpec {
        departments: env("DINGBIND_BENCH_DEPARTMENTS", 2000),
        users: env("DINGBIND_BENCH_USERS", 100_000),
        seed: 7,
    };

    // The lower bound, from the organization itself (see dingtalk-api.md, section 11):
    // one listsub per department, max(1, ceil(n/100)) user/list pages per department.
    let corp = generate(spec);
    let mut direct: HashMap<i64, usize> = HashMap::new();
    for u in &corp.users {
        for d in &u.dept_ids {
            *direct.entry(*d).or_default() += 1;
        }
    }
    let depts = corp.departments.len() + 1;
    let listsub_calls = depts;
    let page_calls: usize = (1..=depts as i64)
        .map(|d| direct.get(&d).copied().unwrap_or(0).div_ceil(100).max(1))
        .sum();
    let bound_secs = listsub_calls.max(page_calls) as f64 / QPS;
    drop(corp);
    // Measure the sync's memory, not the generator's: reset the peak (Linux).
    let _ = std::fs::write("/proc/self/clear_refs", "5");

    let mut child = Command::new(env!("CARGO_BIN_EXE_dingbind"))
        .args([
            "dingtalk-sim",
            "--generate",
            &format!(
                "departments={},users={},seed={}",
                spec.departments, spec.users, spec.seed
            ),
            "--listen",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the simulator");
    let stdout = child.stdout.take().expect("simulator stdout");
    let _sim = Sim(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("simulator address");
    let url = line.trim().rsplit(' ').next().expect("address").to_string();

    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::connect(&format!(
        "sqlite://{}",
        dir.path().join("bench.db").display()
    ))
    .await
    .expect("store");
    let client = dingtalk::Client::new(dingtalk::Config::with_base_url(&url)).expect("client");
    let rec = Reconciler::new(store.clone(), client.clone());

    let mut tenant: Tenant = serde_json::from_value(json!({
        "apiVersion": "dingbind.dev/v1alpha1", "kind": "Tenant",
        "metadata": {"name": "gen", "namespace": "bench", "generation": 1},
        "spec": {"mode": "DingTalk", "dingtalk": {"corpId": GEN_CORP_ID, "agentId": GEN_AGENT_ID,
                 "credentialsSecretRef": {"name": "creds"}, "visibleScope": {"allEmployees": true}}}
    }))
    .expect("tenant");
    let creds = BTreeMap::from([
        ("appKey".to_string(), GEN_APP_KEY.to_string()),
        ("appSecret".to_string(), GEN_APP_SECRET.to_string()),
    ]);
    let secrets = Secrets::resolve(&tenant, |_| Some(creds.clone()));

    println!("organization: {} departments, {} users", depts, spec.users);
    let started = Instant::now();
    let outcome = rec
        .reconcile(&tenant, &secrets, None, Timestamp::now(), &|_| {})
        .await
        .expect("reconcile");
    let elapsed = started.elapsed().as_secs_f64();
    let stats = client.stats();
    let dir_status = outcome.status.directory.clone().unwrap_or_default();
    println!(
        "full sync: {} members, {} departments in the directory",
        dir_status.members, dir_status.departments
    );
    println!("calls by endpoint:");
    for (api, s) in &stats.endpoints {
        println!(
            "  {:<40} {:>6} calls, {} throttled",
            api.name(),
            s.calls,
            s.throttled
        );
    }
    println!(
        "lower bound: listsub {listsub_calls} calls, user/list {page_calls} pages -> {bound_secs:.1} s at {QPS} calls/s per API"
    );
    println!(
        "wall time: {elapsed:.1} s, ratio {:.3} (target <= 1.10)",
        elapsed / bound_secs
    );
    println!("throttle errors: {}", stats.total_throttled());
    println!("peak RSS: {:.0} MiB (target < 200)", peak_rss_mib());

    tenant.status = Some(outcome.status);
    tenant.metadata.annotations = Some(BTreeMap::from([(
        SYNC_REQUESTED_AT.to_string(),
        "again".to_string(),
    )]));
    let started = Instant::now();
    rec.reconcile(&tenant, &secrets, None, Timestamp::now(), &|_| {})
        .await
        .expect("second reconcile");
    let runs = store.sync_runs(&tenant.key(), 1).await.expect("runs");
    println!(
        "sync with nothing changed: {:.1} s, {} rows written",
        started.elapsed().as_secs_f64(),
        runs.first().map_or(0, |r| r.rows_written)
    );
}
