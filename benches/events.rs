//! Events from DingTalk, end to end: changes made through the simulator's
//! admin API reach the directory through Stream-mode events, the way the
//! controller's leader runs them (one `EventsHub`, a tenant reconciled as
//! soon as an event marks it, each reconciliation writing the directory and
//! the status in the store). The simulator runs in its own process.
//!
//!     cargo bench --bench events
//!     DINGBIND_BENCH_LARGE_USERS=0 cargo bench --bench events    # skip the large organization
//!
//! It prints:
//! - the latency from a change (the admin call returning) to the directory
//!   and the status showing it, p50 and p99, at `DINGBIND_BENCH_RATE` changes
//!   a minute (default 1,000) spread over `DINGBIND_BENCH_TENANTS` tenants
//!   (default 100; the last tenth receive no change) for
//!   `DINGBIND_BENCH_SECONDS` (default 60); goal p99 <= 2 s;
//! - the DingTalk calls of the idle tenants meanwhile (goal 0: an idle
//!   tenant costs nothing between safety-net syncs);
//! - the calls per change in an organization of `DINGBIND_BENCH_LARGE_USERS`
//!   people (default 100,000; 2,000 departments), against the 4,700 calls of
//!   a full sync.
//!
//! `cargo test` never runs it.

#[path = "support/generated.rs"]
mod generated;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use dingbind::{
    api::{Tenant, TenantKey, condition},
    core::{conditions, directory::Directory},
    dingtalk,
    events::{EventsHub, StreamConfig},
    reconcile::{Reconciler, Secrets},
    sim::generate::{GEN_APP_KEY, GEN_CORP_ID, GenSpec, generate_lazily},
    store::Store,
};
use jiff::Timestamp;
use serde_json::{Value, json};
use tokio::sync::mpsc;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Sim {
    /// Kept for its `Drop`: the process ends with the bench.
    #[allow(dead_code)]
    process: generated::SimProcess,
    url: String,
    http: reqwest::Client,
}

impl Sim {
    /// The simulator with `orgs` generated organizations of `spec`
    /// (`dinggen`, `dinggen2`, …).
    fn start(spec: GenSpec, orgs: usize) -> Sim {
        dingtalk::install_crypto_provider();
        let process = generated::start_sim(spec, orgs);
        Sim {
            url: process.url.clone(),
            process,
            http: reqwest::Client::new(),
        }
    }

    async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.url));
        if let Some(b) = &body {
            req = req.json(b);
        }
        let resp = req.send().await.expect("simulator admin API");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// Calls the simulator counted for each appKey.
    async fn app_calls(&self) -> BTreeMap<String, u64> {
        let stats = self.admin(reqwest::Method::GET, "/_sim/stats", None).await;
        stats["apps"]
            .as_object()
            .map(|apps| {
                apps.iter()
                    .map(|(k, v)| (k.clone(), v["calls"].as_u64().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Makes `change` in org `corp`.
    async fn apply(&self, corp: &str, change: &Change) {
        use reqwest::Method;
        match change {
            Change::Leave(userid) => {
                let path = format!("/_sim/corps/{corp}/users/{userid}/leave");
                self.admin(Method::POST, &path, None).await;
            }
            Change::Put { userid, name, dept } => {
                let path = format!("/_sim/corps/{corp}/users/{userid}");
                let body = json!({"name": name, "deptIds": [dept]});
                self.admin(Method::PUT, &path, Some(body)).await;
            }
        }
    }
}

/// One change to a person, and what the directory shows once it has it.
#[derive(Clone, Debug)]
enum Change {
    Leave(String),
    /// A newcomer, or someone renamed (and moved to `dept`).
    Put {
        userid: String,
        name: String,
        dept: i64,
    },
}

impl Change {
    fn shown_in(&self, dir: &Directory) -> bool {
        match self {
            Change::Leave(userid) => !dir.members.contains_key(userid),
            Change::Put { userid, name, .. } => {
                dir.members.get(userid).is_some_and(|m| m.name == *name)
            }
        }
    }
}

/// A change made, waiting to be shown.
struct Waiting {
    change: Change,
    made: Instant,
}

/// Tenant `i`, synced every 6 h (so only events bring changes in during the bench).
fn tenant(i: usize) -> (Tenant, Secrets) {
    generated::tenant(i, Some("6h"))
}

/// The runner: reconciles a tenant whenever events mark it (one
/// reconciliation per tenant at a time), and notes when each waiting change
/// shows in its directory.
struct Runner {
    rec: Reconciler,
    hub: Arc<EventsHub>,
    tenants: Mutex<HashMap<TenantKey, (Tenant, Secrets)>>,
    waiting: Mutex<HashMap<TenantKey, Vec<Waiting>>>,
    latencies: Mutex<Vec<Duration>>,
    reconciles: std::sync::atomic::AtomicU64,
}

impl Runner {
    async fn start(store: Store, url: &str, tenants: Vec<(Tenant, Secrets)>) -> Arc<Runner> {
        let client = dingtalk::Client::new(dingtalk::Config::with_base_url(url)).expect("client");
        let hub = EventsHub::new(StreamConfig::with_base_url(url));
        let (marked_tx, mut marked) = mpsc::unbounded_channel();
        hub.lead(None, marked_tx.clone());
        let keys: Vec<TenantKey> = tenants.iter().map(|(t, _)| t.key()).collect();
        let runner = Arc::new(Runner {
            rec: Reconciler::new(store, client),
            hub,
            tenants: Mutex::new(
                tenants
                    .into_iter()
                    .map(|(t, s)| (t.key(), (t, s)))
                    .collect(),
            ),
            waiting: Mutex::default(),
            latencies: Mutex::default(),
            reconciles: Default::default(),
        });
        for key in keys {
            let _ = marked_tx.send(key);
        }
        let r = runner.clone();
        tokio::spawn(async move {
            let (done_tx, mut done) = mpsc::unbounded_channel::<TenantKey>();
            let mut running = HashSet::new();
            let mut again = HashSet::new();
            loop {
                tokio::select! {
                    Some(key) = marked.recv() => {
                        if running.contains(&key) {
                            again.insert(key);
                        } else {
                            running.insert(key.clone());
                            tokio::spawn(r.clone().one(key, done_tx.clone()));
                        }
                    }
                    Some(key) = done.recv() => {
                        if again.remove(&key) {
                            tokio::spawn(r.clone().one(key, done_tx.clone()));
                        } else {
                            running.remove(&key);
                        }
                    }
                    else => return,
                }
            }
        });
        runner
    }

    async fn one(self: Arc<Self>, key: TenantKey, done: mpsc::UnboundedSender<TenantKey>) {
        let (tenant, secrets) = self.tenants.lock().expect("tenants")[&key].clone();
        let seen = self.hub.start(&key);
        let outcome = self
            .rec
            .reconcile_with_events(&tenant, &secrets, None, &seen, Timestamp::now(), &|_| {})
            .await;
        self.hub.finish(&key, seen.dirty, outcome.is_ok());
        let outcome = outcome.expect("reconcile");
        self.reconciles
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.hub.follow(&tenant, &secrets, Some(&outcome));
        if let Some((t, _)) = self.tenants.lock().expect("tenants").get_mut(&key) {
            t.status = Some(outcome.status);
        }
        let watched = self
            .waiting
            .lock()
            .expect("waiting")
            .get(&key)
            .is_some_and(|w| !w.is_empty());
        if watched {
            let dir = self.rec.store().directory(&key).await.expect("directory");
            let now = Instant::now();
            let mut shown = Vec::new();
            if let Some(w) = self.waiting.lock().expect("waiting").get_mut(&key) {
                w.retain(|c| {
                    let is = c.change.shown_in(&dir);
                    if is {
                        shown.push(now - c.made);
                    }
                    !is
                });
            }
            self.latencies.lock().expect("latencies").extend(shown);
        }
        let _ = done.send(key);
    }

    fn wait_for(&self, key: &TenantKey, change: Change, made: Instant) {
        self.waiting
            .lock()
            .expect("waiting")
            .entry(key.clone())
            .or_default()
            .push(Waiting { change, made });
    }

    fn waiting(&self) -> usize {
        self.waiting
            .lock()
            .expect("waiting")
            .values()
            .map(Vec::len)
            .sum()
    }

    /// Every tenant is connected and its full syncs are done (nothing ran
    /// for a second).
    async fn settle(&self) {
        let deadline = Instant::now() + Duration::from_secs(1800);
        let mut last = u64::MAX;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let connected = self
                .tenants
                .lock()
                .expect("tenants")
                .values()
                .all(|(t, _)| {
                    t.status.as_ref().is_some_and(|s| {
                        conditions::get(&s.conditions, condition::EVENTS_CONNECTED)
                            .is_some_and(|c| c.status == "True")
                    })
                });
            let n = self.reconciles.load(std::sync::atomic::Ordering::Relaxed);
            if connected && n == last {
                return;
            }
            last = n;
            assert!(Instant::now() < deadline, "the tenants never settled");
        }
    }
}

/// Picks a change in an org whose people are `people` (userid → dept),
/// keeping `people` as DingTalk will have it.
fn next_change(
    rng: &mut fastrand::Rng,
    people: &mut Vec<(String, i64)>,
    depts: &[i64],
    n: u64,
) -> Change {
    match rng.u8(..10) {
        0..4 if people.len() > 10 => {
            let (userid, _) = people.swap_remove(rng.usize(..people.len()));
            Change::Leave(userid)
        }
        4..7 => {
            let userid = format!("new{n}");
            let dept = depts[rng.usize(..depts.len())];
            people.push((userid.clone(), dept));
            Change::Put {
                userid,
                name: format!("Newcomer {n}"),
                dept,
            }
        }
        _ => {
            let i = rng.usize(..people.len());
            let (userid, dept) = people[i].clone();
            Change::Put {
                userid,
                name: format!("Renamed {n}"),
                dept,
            }
        }
    }
}

/// The people of a generated org (userid, a department) and its departments.
fn people_of(spec: GenSpec) -> (Vec<(String, i64)>, Vec<i64>) {
    let (corp, users) = generate_lazily(spec);
    let people = (1..=users.len() as u32)
        .map(|n| {
            let u = users.user(n);
            (u.userid, u.dept_ids.first().copied().unwrap_or(1))
        })
        .collect();
    let depts = corp.departments.iter().map(|d| d.id).collect();
    (people, depts)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// Changes at `rate` a minute over the active tenants; latencies and the
/// idle tenants' calls.
async fn latency() {
    let tenants = env("DINGBIND_BENCH_TENANTS", 100).max(2);
    let rate = env("DINGBIND_BENCH_RATE", 1000).max(1);
    let seconds = env("DINGBIND_BENCH_SECONDS", 60).max(1);
    let idle = (tenants / 10).max(1);
    let active = tenants - idle;
    let spec = GenSpec {
        departments: 20,
        users: 200,
        seed: 11,
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let store = Store::connect(&url).await.expect("store");
    let sim = Sim::start(spec, tenants);
    println!(
        "latency: {tenants} tenants of {} people ({active} receive changes, {idle} idle), {rate} changes a minute for {seconds} s",
        spec.users
    );
    let started = Instant::now();
    let runner = Runner::start(store, &sim.url, (0..tenants).map(tenant).collect()).await;
    runner.settle().await;
    println!(
        "  connected and synced in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let (people, depts) = people_of(spec);
    let mut orgs: Vec<Vec<(String, i64)>> = vec![people; active];
    let idle_keys: Vec<String> = (active..tenants)
        .map(|i| format!("{GEN_APP_KEY}{}", generated::suffix(i)))
        .collect();
    let before = sim.app_calls().await;
    let mut rng = fastrand::Rng::with_seed(5);
    let every = Duration::from_secs_f64(60.0 / rate as f64);
    let total = (rate * seconds / 60) as u64;
    let mut tick = tokio::time::interval(every);
    for n in 0..total {
        tick.tick().await;
        let i = rng.usize(..active);
        let change = next_change(&mut rng, &mut orgs[i], &depts, n);
        let corp = format!("{GEN_CORP_ID}{}", generated::suffix(i));
        let key = tenant(i).0.key();
        sim.apply(&corp, &change).await;
        runner.wait_for(&key, change, Instant::now());
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while runner.waiting() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = sim.app_calls().await;
    let mut l = runner.latencies.lock().expect("latencies").clone();
    l.sort();
    println!(
        "  {} changes shown, {} not shown within 60 s of the last",
        l.len(),
        runner.waiting()
    );
    println!(
        "  change -> directory and status: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms (goal p99 <= 2000 ms)",
        percentile(&l, 0.50).as_secs_f64() * 1e3,
        percentile(&l, 0.99).as_secs_f64() * 1e3,
        l.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
    let idle_calls: u64 = idle_keys
        .iter()
        .map(|k| after.get(k).unwrap_or(&0) - before.get(k).unwrap_or(&0))
        .sum();
    println!("  DingTalk calls of the {idle} idle tenants meanwhile: {idle_calls} (goal 0)");
    runner.hub.step_down().await;
}

/// Changes one at a time in one large org: calls per change.
async fn large() {
    let users = env("DINGBIND_BENCH_LARGE_USERS", 100_000);
    if users == 0 {
        return;
    }
    let changes = env("DINGBIND_BENCH_LARGE_CHANGES", 30) as u64;
    let spec = GenSpec {
        departments: env("DINGBIND_BENCH_LARGE_DEPARTMENTS", 2000),
        users,
        seed: 7,
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let store = Store::connect(&url).await.expect("store");
    let sim = Sim::start(spec, 1);
    println!(
        "calls per change: one organization of {} departments, {users} people",
        spec.departments
    );
    let started = Instant::now();
    let runner = Runner::start(store, &sim.url, vec![tenant(0)]).await;
    runner.settle().await;
    let key = tenant(0).0.key();
    let full = sim.app_calls().await[GEN_APP_KEY];
    println!(
        "  connected and synced in {:.1} s ({full} calls: two full syncs, the first connection's included)",
        started.elapsed().as_secs_f64()
    );
    let (mut people, depts) = people_of(spec);
    let mut rng = fastrand::Rng::with_seed(9);
    let before = sim.app_calls().await[GEN_APP_KEY];
    for n in 0..changes {
        let change = next_change(&mut rng, &mut people, &depts, n);
        sim.apply(GEN_CORP_ID, &change).await;
        runner.wait_for(&key, change, Instant::now());
        let deadline = Instant::now() + Duration::from_secs(60);
        while runner.waiting() > 0 {
            assert!(Instant::now() < deadline, "change {n} never showed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let spent = sim.app_calls().await[GEN_APP_KEY] - before;
    let l = runner.latencies.lock().expect("latencies").clone();
    let mean = l.iter().sum::<Duration>().as_secs_f64() / l.len().max(1) as f64;
    println!(
        "  {changes} changes one at a time: {spent} calls, {:.1} calls per change (a full sync: {} calls); mean latency {:.0} ms",
        spent as f64 / changes as f64,
        full / 2,
        mean * 1e3
    );
    runner.hub.step_down().await;
}

#[tokio::main]
async fn main() {
    latency().await;
    large().await;
}
