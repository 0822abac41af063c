//! A fuzzing harness for this class of bug: generated Tenant manifests
//! (valid, almost valid, hostile), `dev` folders and simulator admin calls.
//! It reports how many inputs were tried, panics, hangs (an input taking over
//! [`HANG`]), and for every Tenant whether `dingbind validate` and the real
//! kube-apiserver (a server-side dry-run create, strict field validation)
//! give the same verdict; it fails unless all three counts of trouble are 0.
//!
//! `DINGBIND_FUZZ_CASES=N` sets N per family (default 64, what CI runs):
//! `DINGBIND_FUZZ_CASES=10000 cargo test --release --test fuzz -- --nocapture`.
//! `DINGBIND_FUZZ_SEED` fixes the generator (default: a fresh seed, printed).

mod support;

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use dingbind::validate::{Document, Severity, TenantValidator};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::{Value, json};
use support::kube_env::KubeEnv;

/// An input that takes longer than this is a hang.
const HANG: Duration = Duration::from_secs(10);

fn cases() -> usize {
    std::env::var("DINGBIND_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

fn runner(family: &str) -> TestRunner {
    let seed: u64 = std::env::var("DINGBIND_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("fuzz {family}: seed {seed} (DINGBIND_FUZZ_SEED={seed} repeats it)");
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &bytes),
    )
}

/// Runs `f` on a thread of its own: `None` if it panicked, `Some(None)` if
/// it was still running after [`HANG`].
fn bounded<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, &'static str> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let r = std::panic::catch_unwind(AssertUnwindSafe(f));
        let _ = tx.send(r);
    });
    match rx.recv_timeout(HANG) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(_)) => Err("panic"),
        Err(_) => Err("hang"),
    }
}

#[derive(Default, Debug)]
struct Tally {
    tried: usize,
    panics: usize,
    hangs: usize,
    agree: usize,
    disagree: Vec<String>,
}

impl Tally {
    fn trouble(&mut self, e: &str, input: &str) {
        match e {
            "panic" => self.panics += 1,
            _ => self.hangs += 1,
        }
        self.disagree_note(format!("{e}: {input}"));
    }

    fn disagree_note(&mut self, s: String) {
        if self.disagree.len() < 20 {
            self.disagree.push(s);
        }
    }
}

// ------------------------------------------------------------ generators

fn name() -> impl Strategy<Value = Value> {
    prop_oneof![
        8 => "[a-z][a-z0-9-]{0,12}[a-z0-9]".prop_map(Value::from),
        1 => "[a-z0-9]{1,8}\\.[a-z0-9]{1,8}".prop_map(Value::from),
        1 => "[A-Za-z0-9_.-]{0,20}".prop_map(Value::from),
    ]
}

fn scope() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!({"allEmployees": true})),
        (
            prop::collection::vec(1i64..100_000, 0..5),
            prop::collection::vec("[a-z0-9]{1,12}", 0..4)
        )
            .prop_filter("not empty", |(d, u)| !d.is_empty() || !u.is_empty())
            .prop_map(|(d, u)| json!({"departments": d, "users": u})),
    ]
}

fn valid_tenant() -> impl Strategy<Value = Value> {
    (
        name(),
        "[A-Za-z0-9_-]{1,40}",
        1i64..=i64::from(i32::MAX),
        scope(),
        prop::option::of(("[a-z]{1,8}@[a-z]{1,8}\\.com", "[a-z]{1,10}")),
        prop::option::of((1_700_000_000i64..2_000_000_000).prop_map(|s| {
            jiff::Timestamp::from_second(s)
                .map(|t| t.to_string())
                .unwrap_or_default()
        })),
        prop::option::of((
            prop_oneof![Just("1m"), Just("10m"), Just("1h30m"), Just("90s")],
            prop_oneof![
                (0u32..1000).prop_map(Value::from),
                (0u32..=100).prop_map(|p| Value::from(format!("{p}%"))),
                (0u32..1000).prop_map(|n| Value::from(n.to_string())),
            ],
        )),
        any::<bool>(),
        prop_oneof![Just("Retain"), Just("Delete")],
        prop_oneof![3 => Just("DingTalk"), 1 => Just("Public")],
    )
        .prop_map(
            |(name, corp, agent, scope, creator, trial, sync, suspend, policy, mode)| {
                let mut spec = json!({
                    "mode": mode,
                    "dingtalk": {
                        "corpId": corp,
                        "agentId": agent,
                        "credentialsSecretRef": {"name": "creds"},
                        "visibleScope": scope,
                    },
                    "suspend": suspend,
                    "deletionPolicy": policy,
                });
                if let Some((email, secret)) = creator {
                    spec["creator"] =
                        json!({"email": email, "passwordSecretRef": {"name": secret}});
                }
                if let Some(t) = trial {
                    spec["trial"] = json!({"expiresAt": t});
                }
                if let Some((interval, max)) = sync {
                    spec["sync"] = json!({"interval": interval, "maxDeletions": max});
                }
                json!({
                    "apiVersion": "dingbind.dev/v1alpha1",
                    "kind": "Tenant",
                    "metadata": {"name": name},
                    "spec": spec,
                })
            },
        )
}

/// Values that land where they do not belong, or at the edges of what fits.
fn hostile_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        prop_oneof![
            Just(0i64),
            Just(-1),
            Just(1),
            Just(i64::from(i32::MAX)),
            Just(i64::from(i32::MAX) + 1),
            Just(3_000_000_000),
            Just(i64::MAX),
            Just(i64::MIN),
        ]
        .prop_map(Value::from),
        prop_oneof![
            Just(1001.0f64),
            Just(1.5),
            Just(-0.0),
            Just(1e300),
            Just(9_007_199_254_740_993.0),
            Just(2_147_483_648.0),
            Just(1e18),
        ]
        .prop_map(Value::from),
        prop_oneof![
            Just(""),
            Just("10%"),
            Just("100%"),
            Just("101%"),
            Just("1.5%"),
            Just("2147483648"),
            Just("99999999999999999999999"),
            Just("30s"),
            Just("1d"),
            Just("1m"),
            Just("DingTalk"),
            Just("Public"),
            Just("企业"),
            Just("2026-13-45T00:00:00Z"),
            Just("a@b"),
        ]
        .prop_map(Value::from),
        "[ -~]{0,80}".prop_map(Value::from),
        (1usize..300).prop_map(|n| Value::from("x".repeat(n))),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-zA-Z]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const POINTERS: &[&str] = &[
    "/spec/mode",
    "/spec/dingtalk",
    "/spec/dingtalk/corpId",
    "/spec/dingtalk/agentId",
    "/spec/dingtalk/credentialsSecretRef",
    "/spec/dingtalk/credentialsSecretRef/name",
    "/spec/dingtalk/credentialsSecretRef/appKeyKey",
    "/spec/dingtalk/visibleScope",
    "/spec/dingtalk/visibleScope/allEmployees",
    "/spec/dingtalk/visibleScope/departments",
    "/spec/dingtalk/visibleScope/departments/0",
    "/spec/dingtalk/visibleScope/users",
    "/spec/dingtalk/visibleScope/users/0",
    "/spec/creator",
    "/spec/creator/email",
    "/spec/creator/phone",
    "/spec/creator/passwordSecretRef",
    "/spec/trial",
    "/spec/trial/expiresAt",
    "/spec/sync",
    "/spec/sync/interval",
    "/spec/sync/maxDeletions",
    "/spec/deletionPolicy",
    "/spec/suspend",
    "/spec/extra",
    "/spec",
    "/status",
    "/status/mode",
    "/metadata/name",
    "/extra",
];

/// Sets `ptr` in `v` (creating objects on the way; an index past a list's end appends).
fn set(v: &mut Value, ptr: &str, new: Value) {
    let mut cur = v;
    let parts: Vec<&str> = ptr.trim_start_matches('/').split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        let last = i == parts.len() - 1;
        if !cur.is_object() && !cur.is_array() {
            *cur = json!({});
        }
        match cur {
            Value::Array(items) => {
                let idx: usize = part.parse().unwrap_or(0);
                if idx >= items.len() {
                    items.push(Value::Null);
                }
                let idx = idx.min(items.len() - 1);
                if last {
                    items[idx] = new;
                    return;
                }
                cur = &mut items[idx];
            }
            Value::Object(map) => {
                if last {
                    map.insert((*part).to_string(), new);
                    return;
                }
                cur = map.entry((*part).to_string()).or_insert(json!({}));
            }
            _ => return,
        }
    }
}

fn mutation() -> impl Strategy<Value = (&'static str, Value)> {
    (prop::sample::select(POINTERS), hostile_value())
}

fn tenant() -> impl Strategy<Value = Value> {
    prop_oneof![
        2 => valid_tenant(),
        5 => (valid_tenant(), mutation()).prop_map(|(mut t, (p, v))| {
            set(&mut t, p, v);
            t
        }),
        3 => (valid_tenant(), prop::collection::vec(mutation(), 2..6)).prop_map(|(mut t, ms)| {
            for (p, v) in ms {
                set(&mut t, p, v);
            }
            t
        }),
    ]
}

// ------------------------------------------------------------ validate vs the API server

fn validate_verdict(v: &Value) -> Result<bool, &'static str> {
    let doc = Document {
        file: "fuzz.yaml".into(),
        index: 0,
        value: v.clone(),
    };
    bounded(move || {
        // Read it back as `dingbind validate -f` would.
        let text = serde_json::to_string(&doc.value).unwrap_or_default();
        let docs = match dingbind::validate::parse_documents(Path::new("fuzz.json"), &text) {
            Ok(d) => d,
            Err(_) => return false,
        };
        let validator = TenantValidator::new();
        docs.iter().all(|d| {
            validator
                .validate(d, None)
                .iter()
                .all(|f| f.severity != Severity::Error)
        })
    })
}

async fn apiserver_verdict(
    client: &kube::Client,
    ns: &str,
    v: &Value,
) -> Result<(bool, String), String> {
    let mut body = v.clone();
    if let Some(meta) = body.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("namespace".into(), ns.into());
    }
    let req = axum::http::Request::post(format!(
        "/apis/dingbind.dev/v1alpha1/namespaces/{ns}/tenants?dryRun=All&fieldValidation=Strict"
    ))
    .header("content-type", "application/json")
    .body(serde_json::to_vec(&body).map_err(|e| e.to_string())?)
    .map_err(|e| e.to_string())?;
    match client.request_text(req).await {
        Ok(_) => Ok((true, String::new())),
        Err(kube::Error::Api(s)) if (400..500).contains(&s.code) => Ok((false, s.message)),
        Err(e) => Err(e.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_tenants_never_panic_or_hang_and_validate_agrees_with_the_api_server() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let env = KubeEnv::shared();
    let crd = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds/tenant.yaml");
    let out = env.kubectl(["apply", "-f", crd.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = env.kubectl([
        "wait",
        "--for=condition=Established",
        "crd/tenants.dingbind.dev",
        "--timeout=60s",
    ]);
    assert!(out.status.success());
    let ns = env.new_namespace("fuzz");
    let client = env.client().await;
    let mut runner = runner("tenants");
    let strategy = tenant();
    let mut t = Tally::default();
    let (mut accepted, started) = (0usize, Instant::now());
    for _ in 0..cases() {
        let v = strategy.new_tree(&mut runner).expect("a tree").current();
        t.tried += 1;
        let ours = match validate_verdict(&v) {
            Ok(ok) => ok,
            Err(e) => {
                t.trouble(e, &v.to_string());
                continue;
            }
        };
        let (theirs, message) = apiserver_verdict(&client, &ns, &v)
            .await
            .unwrap_or_else(|e| panic!("the API server gave no verdict: {e}\n{v}"));
        accepted += usize::from(theirs);
        if ours == theirs {
            t.agree += 1;
        } else {
            t.disagree_note(format!(
                "validate {} / API server {} ({message}): {v}",
                if ours { "accepts" } else { "refuses" },
                if theirs { "accepts" } else { "refuses" }
            ));
        }
    }
    let disagreements = t.tried - t.agree - t.panics - t.hangs;
    eprintln!(
        "fuzz tenants: {} tried ({} accepted by the API server), {} panics, {} hangs, {} agree, {} disagree, in {:.1?}",
        t.tried,
        accepted,
        t.panics,
        t.hangs,
        t.agree,
        disagreements,
        started.elapsed()
    );
    assert!(
        t.panics == 0 && t.hangs == 0 && disagreements == 0,
        "{:#?}",
        t.disagree
    );
}

// ------------------------------------------------------------ dev folders

/// File contents a `dev` folder may hold: manifests, broken YAML, hostile text.
fn file_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => tenant().prop_map(|t| serde_yaml::to_string(&t).unwrap_or_default()),
        2 => tenant().prop_map(|t| t.to_string()),
        1 => (1usize..5000).prop_map(|n| "[".repeat(n)),
        1 => (1usize..3000).prop_map(|n| "{a: ".repeat(n)),
        1 => (1usize..500).prop_map(|n| (0..n).map(|i| format!("{}k:\n", " ".repeat(i))).collect()),
        1 => (1usize..200).prop_map(|n| "- ".repeat(n) + "x"),
        1 => "[ -~\n\t]{0,400}",
        1 => Just("a: &a [*a, *a]\nb: *a\n".to_string()),
        1 => Just("---\n---\nkind: Tenant\napiVersion: dingbind.dev/v1alpha1\n...\n".to_string()),
        1 => (1usize..4).prop_map(|n| format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: creds}}\ndata: {{appKey: {}}}\n", "!".repeat(n))),
    ]
}

#[test]
fn generated_dev_folders_are_read_and_admitted_without_panic_or_hang() {
    let mut runner = runner("dev folders");
    let strategy = prop::collection::vec(file_text(), 1..5);
    let mut t = Tally::default();
    let started = Instant::now();
    for _ in 0..cases() {
        let files = strategy.new_tree(&mut runner).expect("a tree").current();
        t.tried += 1;
        let first = files.first().cloned().unwrap_or_default();
        let r = bounded(move || {
            let dir = tempfile::tempdir().expect("a scratch folder");
            for (i, text) in files.iter().enumerate() {
                let _ = std::fs::write(dir.path().join(format!("f{i}.yaml")), text);
            }
            let _ = std::os::unix::fs::symlink(dir.path(), dir.path().join("loop"));
            let m = dingbind::dev::source::read(dir.path());
            let validator = TenantValidator::new();
            for doc in &m.tenants {
                if let dingbind::validate::admission::Admission::Accepted(a, _) =
                    dingbind::validate::admission::admit(&validator, doc, None, None)
                {
                    // Whatever admission accepts loads as a Tenant.
                    dingbind::validate::admission::tenant(&a, None)
                        .expect("an accepted Tenant loads");
                }
            }
            let _ = dingbind::validate::validate_paths(dir.path(), None);
        });
        if let Err(e) = r {
            t.trouble(e, &first);
        } else {
            t.agree += 1;
        }
    }
    eprintln!(
        "fuzz dev folders: {} tried, {} panics, {} hangs, in {:.1?}",
        t.tried,
        t.panics,
        t.hangs,
        started.elapsed()
    );
    assert!(t.panics == 0 && t.hangs == 0, "{:#?}", t.disagree);
}

// ------------------------------------------------------------ the simulator's admin API

fn admin_call() -> impl Strategy<Value = (&'static str, String, Value)> {
    prop_oneof![
        hostile_value().prop_map(|v| ("PUT", "/_sim/faults".to_string(), v)),
        (
            prop::sample::select(
                &[
                    "tokenTtlSeconds",
                    "latencyMs",
                    "slowMs",
                    "failStatus",
                    "errorRate",
                    "failNext",
                    "throttleQps",
                    "emptyMembersOnce"
                ][..]
            ),
            hostile_value()
        )
            .prop_map(|(k, v)| ("PUT", "/_sim/faults".to_string(), json!({ k: v }))),
        ("[a-z0-9]{1,8}", hostile_value()).prop_map(|(u, v)| (
            "PUT",
            format!("/_sim/corps/dingacme/users/{u}"),
            v
        )),
        (any::<i64>(), hostile_value()).prop_map(|(d, v)| (
            "PUT",
            format!("/_sim/corps/dingacme/departments/{d}"),
            v
        )),
        (any::<i64>(), hostile_value()).prop_map(|(a, v)| (
            "PUT",
            format!("/_sim/corps/dingacme/apps/{a}"),
            v
        )),
        hostile_value().prop_map(|v| ("POST", "/_sim/corps".to_string(), v)),
        Just(("POST", "/_sim/tokens/expire".to_string(), Value::Null)),
    ]
}

#[tokio::test]
async fn generated_admin_calls_get_an_answer_below_500_and_the_simulator_keeps_serving() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let org =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/org.yaml"))
            .unwrap();
    let world =
        dingbind::sim::World::from_file(dingbind::sim::OrgFile::parse(&org).unwrap()).unwrap();
    let sim = dingbind::sim::Simulator::start(world, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let http = reqwest::Client::builder().timeout(HANG).build().unwrap();
    let mut runner = runner("simulator admin API");
    let strategy = admin_call();
    let mut t = Tally::default();
    let mut server_errors = 0usize;
    let started = Instant::now();
    for _ in 0..cases() {
        let (method, path, body) = strategy.new_tree(&mut runner).expect("a tree").current();
        t.tried += 1;
        let url = format!("{}{path}", sim.url());
        let req = match method {
            "PUT" => http.put(&url),
            _ => http.post(&url),
        };
        let req = if body.is_null() { req } else { req.json(&body) };
        match req.send().await {
            Ok(resp) if resp.status().is_server_error() => {
                server_errors += 1;
                t.disagree_note(format!("{} {method} {path} {body}", resp.status()));
            }
            Ok(_) => {}
            Err(e) if e.is_timeout() => t.trouble("hang", &format!("{method} {path} {body}")),
            Err(_) => t.trouble("panic", &format!("{method} {path} {body}")),
        }
        // Still serving the DingTalk side: a token for the example app.
        let alive = http
            .post(format!("{}/v1.0/oauth2/accessToken", sim.url()))
            .json(&json!({"appKey": "acme-key", "appSecret": "acme-secret"}))
            .send()
            .await;
        if alive.is_err() {
            t.trouble("panic", &format!("after {method} {path} {body}"));
            break;
        }
        // Back to a known state now and then, so that later calls still hit a live world.
        if t.tried % 50 == 0 {
            let _ = http.post(format!("{}/_sim/reset", sim.url())).send().await;
        }
    }
    eprintln!(
        "fuzz simulator admin API: {} tried, {} panics, {} hangs, {} server errors, in {:.1?}",
        t.tried,
        t.panics,
        t.hangs,
        server_errors,
        started.elapsed()
    );
    assert!(
        t.panics == 0 && t.hangs == 0 && server_errors == 0,
        "{:#?}",
        t.disagree
    );
}
