//! Login decisions from the store: `POST …/logins/member` as the login API
//! decides it, for a tenant of 100,000 members, on SQLite and (when
//! `DINGBIND_TEST_POSTGRES_URL` is set) PostgreSQL. Prints p50/p99 latency
//! and decisions per second at a few concurrencies. Goals (issue 17): p99
//! <= 5 ms and >= 2,000 decisions/s on one replica. Not a timed test: run it
//! with
//!
//!     cargo bench --bench login
//!
//! (`DINGBIND_BENCH_MEMBERS` overrides the size, `DINGBIND_BENCH_DECISIONS`
//! the decisions per run.)

#[path = "../tests/support/org.rs"]
mod org;
#[path = "support/postgres.rs"]
mod postgres;

use std::sync::Arc;
use std::time::{Duration, Instant};

use dingbind::api::{Tenant, TenantKey};
use dingbind::core::directory::{Directory, diff};
use dingbind::login::{Logins, TenantFacts, Tenants};
use dingbind::reconcile::STATUS_DOCUMENT;
use dingbind::store::{Account, Store, SyncRunRecord};
use futures::future::BoxFuture;
use serde_json::json;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The one tenant of the bench, held in memory (the API server's part).
struct OneTenant(Tenant);

impl Tenants for OneTenant {
    fn get<'a>(
        &'a self,
        _key: &'a TenantKey,
    ) -> BoxFuture<'a, Result<Option<TenantFacts>, String>> {
        let facts = TenantFacts {
            tenant: self.0.clone(),
            credentials: None,
            creator_password: Some("correct-horse".into()),
        };
        Box::pin(async move { Ok(Some(facts)) })
    }
}

fn tenant() -> Tenant {
    serde_json::from_value(json!({
        "apiVersion": "dingbind.dev/v1alpha1",
        "kind": "Tenant",
        "metadata": {"name": "acme", "namespace": "bench"},
        "spec": {
            "mode": "DingTalk",
            "dingtalk": {"corpId": "dingbench", "agentId": 1001,
                "credentialsSecretRef": {"name": "creds"}, "visibleScope": {"allEmployees": true}},
            "creator": {"email": "owner@bench.example", "passwordSecretRef": {"name": "pw"}},
        },
    }))
    .expect("a valid Tenant")
}

async fn seed(store: &Store, key: &TenantKey, dir: &Directory) -> Result<(), String> {
    let d = diff(&Directory::default(), dir);
    let now = jiff::Timestamp::now();
    let run = SyncRunRecord::succeeded(now, now, &d);
    store
        .apply_sync(key, &d, &run)
        .await
        .map_err(|e| e.to_string())?;
    store
        .put_account(
            key,
            &Account {
                mode: dingbind::api::Mode::DingTalk,
                corp_id: Some("dingbench".into()),
                creator_email: Some("owner@bench.example".into()),
                creator_phone: None,
                password_set: true,
            },
        )
        .await
        .map_err(|e| e.to_string())?;
    let status = json!({"mode": "DingTalk", "boundCorpId": "dingbench",
        "conditions": [{"type": "Bound", "status": "True", "reason": "Bound", "message": "",
            "lastTransitionTime": "2026-01-01T00:00:00Z"}]});
    store
        .put_document(key, STATUS_DOCUMENT, &status)
        .await
        .map_err(|e| e.to_string())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn bench(label: &str, url: &str, members: usize, decisions: usize) -> Result<(), String> {
    let store = Store::connect(url).await.map_err(|e| e.to_string())?;
    let key = TenantKey {
        namespace: "bench".into(),
        name: "acme".into(),
    };
    let dir = org::org(2_000, members, 0);
    let started = Instant::now();
    seed(&store, &key, &dir).await?;
    println!(
        "{label}: {members} members written in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let client = dingbind::dingtalk::Client::new(dingbind::dingtalk::Config::with_base_url(
        "http://127.0.0.1:9",
    ))
    .map_err(|e| e.to_string())?;
    let logins = Arc::new(Logins::new(
        store.clone(),
        client,
        Arc::new(OneTenant(tenant())),
    ));
    let userids: Arc<Vec<String>> = Arc::new(dir.members.keys().cloned().collect());
    for concurrency in [1usize, 4, 16] {
        let started = Instant::now();
        let tasks: Vec<_> = (0..concurrency)
            .map(|t| {
                let (logins, userids, key) = (logins.clone(), userids.clone(), key.clone());
                tokio::spawn(async move {
                    let mut rng = fastrand::Rng::with_seed(t as u64);
                    let mut latencies = Vec::with_capacity(decisions / concurrency);
                    for _ in 0..decisions / concurrency {
                        let userid = &userids[rng.usize(..userids.len())];
                        let t0 = Instant::now();
                        let answer = logins
                            .member(&key, Some(userid), None)
                            .await
                            .map_err(|e| e.to_string())?;
                        latencies.push(t0.elapsed());
                        if !answer.allowed {
                            return Err(format!("{userid} refused: {answer:?}"));
                        }
                    }
                    Ok::<_, String>(latencies)
                })
            })
            .collect();
        let mut all = Vec::with_capacity(decisions);
        for t in tasks {
            all.extend(t.await.map_err(|e| e.to_string())??);
        }
        let elapsed = started.elapsed();
        all.sort();
        println!(
            "{label}: concurrency {concurrency:>2}: {} decisions, {:.0}/s, p50 {:.2} ms, p99 {:.2} ms (goal p99 <= 5 ms, >= 2000/s)",
            all.len(),
            all.len() as f64 / elapsed.as_secs_f64(),
            percentile(&all, 0.50).as_secs_f64() * 1e3,
            percentile(&all, 0.99).as_secs_f64() * 1e3,
        );
    }
    store.close().await;
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), String> {
    let members = env_usize("DINGBIND_BENCH_MEMBERS", 100_000);
    let decisions = env_usize("DINGBIND_BENCH_DECISIONS", 20_000);
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let sqlite = format!("sqlite://{}", dir.path().join("login.db").display());
    bench("sqlite", &sqlite, members, decisions).await?;
    match postgres::admin_url() {
        Some(admin) => {
            postgres::with_scratch_database(&admin, "dingbind_login_bench", |url| async move {
                bench("postgres", &url, members, decisions).await
            })
            .await?
        }
        None => println!("postgres: skipped (DINGBIND_TEST_POSTGRES_URL is not set)"),
    }
    Ok(())
}
