//! Benchmark (not a test): walk a generated organization with the client at
//! DingTalk's default 20 calls/s per app per API, against the simulator
//! enforcing the same limit, and compare with the lower bound of the reference
//! (section 11): 1 token + D listsub + Σ_d max(1, ⌈n_d/100⌉) user/list calls;
//! listsub and user/list are limited separately and overlap, so the time bound
//! is max(calls of one API) / qps.
//!
//! Sizes come from the environment (defaults in brackets):
//! DINGBIND_BENCH_DEPARTMENTS [2000], DINGBIND_BENCH_USERS [100000],
//! DINGBIND_BENCH_SEED [7], DINGBIND_BENCH_QPS [20].
//! Smoke run: `DINGBIND_BENCH_DEPARTMENTS=50 DINGBIND_BENCH_USERS=2000 cargo bench --profile dev --bench dingtalk_walk`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use dingbind::dingtalk::types::{Api, USER_LIST_MAX_SIZE};
use dingbind::dingtalk::{Client, Config, OrgItem, RateLimit, TokenSource};
use dingbind::sim::generate::{GEN_APP_KEY, GEN_APP_SECRET, GenSpec, generate_lazily};
use dingbind::sim::{Faults, Simulator, World};
use futures::StreamExt;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let spec = GenSpec {
        departments: usize::try_from(env_num("DINGBIND_BENCH_DEPARTMENTS", 2000))?,
        users: usize::try_from(env_num("DINGBIND_BENCH_USERS", 100_000))?,
        seed: env_num("DINGBIND_BENCH_SEED", 7),
    };
    let qps = u32::try_from(env_num("DINGBIND_BENCH_QPS", 20))?;
    let (_, users) = generate_lazily(spec);

    // The lower bound, from the org itself.
    let direct: HashMap<i64, u64> = users
        .department_sizes()
        .map(|(d, n)| (d, n as u64))
        .collect();
    drop(users);
    let d_count = spec.departments as u64;
    let pages: u64 = (1..=spec.departments as i64)
        .map(|d| {
            direct
                .get(&d)
                .copied()
                .unwrap_or(0)
                .div_ceil(u64::from(USER_LIST_MAX_SIZE))
                .max(1)
        })
        .sum();
    let bound_calls = 1 + d_count + pages;
    let bound_secs = d_count.max(pages) as f64 / f64::from(qps.max(1));

    let mut world = World::default();
    world.put_generated(spec, "")?;
    let faults = Faults {
        throttle_qps: qps,
        ..Faults::default()
    };
    let sim = Simulator::start_with(world, faults, "127.0.0.1:0".parse()?).await?;
    let config = Config {
        rate_limit: RateLimit {
            per_second: qps,
            ..RateLimit::default()
        },
        ..Config::with_base_url(&sim.url())
    };
    let client = Client::new(config)?;
    let app = client.app(TokenSource::internal_app(GEN_APP_KEY, GEN_APP_SECRET));

    println!(
        "org: {} departments, {} users (seed {}), {qps} calls/s per API",
        spec.departments, spec.users, spec.seed
    );
    let started = Instant::now();
    let (mut depts, mut users) = (1u64, 0u64);
    let mut walk = std::pin::pin!(app.walk_org([1]));
    let mut last_report = Instant::now();
    while let Some(item) = walk.next().await {
        match item? {
            OrgItem::Department(_) => depts += 1,
            OrgItem::User(_) => users += 1,
        }
        if last_report.elapsed() > Duration::from_secs(15) {
            last_report = Instant::now();
            eprintln!(
                "  … {:.0} s: {depts} departments, {users} users",
                started.elapsed().as_secs_f64()
            );
        }
    }
    let wall = started.elapsed().as_secs_f64();

    let stats = client.stats();
    println!("found: {depts} departments, {users} distinct users");
    println!(
        "{:<34} {:>7} {:>10} {:>8}",
        "endpoint", "calls", "throttled", "retries"
    );
    for (api, s) in &stats.endpoints {
        println!(
            "{:<34} {:>7} {:>10} {:>8}",
            api.name(),
            s.calls,
            s.throttled,
            s.retries
        );
    }
    println!(
        "lower bound: {bound_calls} calls (1 token + {d_count} listsub + {pages} user/list); made {}",
        stats.get(Api::AccessToken).calls
            + stats.get(Api::DeptListSub).calls
            + stats.get(Api::UserList).calls
    );
    println!("time bound (per-API limit, listsub and user/list overlap): {bound_secs:.1} s");
    println!(
        "wall time: {wall:.1} s; ratio wall/bound: {:.3}",
        wall / bound_secs.max(f64::EPSILON)
    );
    sim.shutdown().await?;
    Ok(())
}
