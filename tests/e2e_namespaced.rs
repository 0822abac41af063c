//! The namespaced install on the real kube-apiserver (its own, for this test
//! binary): `kubectl apply -k examples/namespaced-install`, then with the
//! manifests' ServiceAccount token: nothing outside the watched namespace is
//! readable, the admission policy refuses any spec change by that identity,
//! the controller still reconciles a Tenant, `--metrics-auth` lets only an
//! authorized token read /metrics, no secret shows in Events, metrics or the
//! log, and /readyz turns false once the Tenant watch keeps failing.
//!
//! Run: `cargo test --test e2e_namespaced`.

mod support;

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use dingbind::sim::{OrgFile, Simulator, World};
use serde_json::Value;
use support::kube_env::KubeEnv;

const DEADLINE: Duration = Duration::from_secs(60);

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[track_caller]
fn ok(what: &str, out: Output) -> String {
    assert!(out.status.success(), "{what}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `kubectl auth can-i VERB RESOURCE -n NS` as `kubeconfig`.
fn can_i(env: &KubeEnv, kubeconfig: &Path, verb: &str, resource: &str, ns: Option<&str>) -> bool {
    let mut args = vec!["auth", "can-i", verb, resource];
    match ns {
        Some(ns) => args.extend(["-n", ns]),
        None => args.push("--all-namespaces"),
    }
    let out = env.kubectl_as(kubeconfig, &args);
    String::from_utf8_lossy(&out.stdout).trim() == "yes"
}

fn eventually<T>(what: &str, mut attempt: impl FnMut() -> Result<T, String>) -> T {
    let end = Instant::now() + DEADLINE;
    loop {
        match attempt() {
            Ok(v) => return v,
            Err(last) if Instant::now() > end => {
                panic!("{what}: not within {DEADLINE:?}; last: {last}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// The controller process; killed when dropped.
struct Proc(Child, PathBuf);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- controller log ---\n{}",
                fs::read_to_string(&self.1).unwrap_or_default()
            );
        }
    }
}

fn metrics_addr(log: &str) -> Option<String> {
    log.lines()
        .find(|l| l.contains("serving /healthz"))
        .and_then(|l| l.split("addr=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .map(|a| a.trim_matches('"').to_string())
}

fn token(env: &KubeEnv, ns: &str, sa: &str) -> String {
    ok(
        "kubectl create token",
        env.kubectl(["create", "token", sa, "-n", ns, "--duration=1h"]),
    )
    .trim()
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_namespaced_install_reads_nothing_outside_and_never_writes_a_spec() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let env = KubeEnv::shared();
    ok(
        "namespace tenants",
        env.kubectl([
            "apply",
            "-f",
            repo("examples/tenants/00-namespace.yaml").to_str().unwrap(),
        ]),
    );
    ok(
        "namespace other",
        env.kubectl(["create", "namespace", "other"]),
    );
    ok(
        "kubectl apply -k examples/namespaced-install",
        env.kubectl([
            "apply",
            "-k",
            repo("examples/namespaced-install").to_str().unwrap(),
        ]),
    );
    ok(
        "CRD established",
        env.kubectl([
            "wait",
            "--for=condition=Established",
            "crd/tenants.dingbind.dev",
            "--timeout=60s",
        ]),
    );
    let sa = env.service_account_kubeconfig("dingbind-system", "dingbind");

    // RBAC: the watched namespace only.
    assert!(can_i(env, &sa, "get", "secrets", Some("tenants")));
    assert!(can_i(
        env,
        &sa,
        "watch",
        "tenants.dingbind.dev",
        Some("tenants")
    ));
    for (verb, resource) in [
        ("get", "secrets"),
        ("list", "secrets"),
        ("list", "tenants.dingbind.dev"),
    ] {
        assert!(
            !can_i(env, &sa, verb, resource, Some("other")),
            "{verb} {resource} in other"
        );
        assert!(
            !can_i(env, &sa, verb, resource, None),
            "{verb} {resource} cluster-wide"
        );
    }
    ok(
        "a Secret outside",
        env.kubectl([
            "create",
            "secret",
            "generic",
            "outside",
            "-n",
            "other",
            "--from-literal=k=v",
        ]),
    );
    let out = env.kubectl_as(&sa, ["get", "secret", "outside", "-n", "other"]);
    assert!(
        !out.status.success(),
        "read a Secret outside: {}",
        text(&out)
    );
    assert!(
        text(&out).contains("Forbidden") || text(&out).contains("forbidden"),
        "{}",
        text(&out)
    );

    // The controller, as that ServiceAccount, reconciles the example Tenant.
    let world = World::from_file(
        OrgFile::parse(&fs::read_to_string(repo("examples/org.yaml")).unwrap()).unwrap(),
    )
    .unwrap();
    let sim = Simulator::start(world, "127.0.0.1:0".parse::<SocketAddr>().unwrap())
        .await
        .unwrap();
    ok(
        "acme",
        env.kubectl([
            "apply",
            "--server-side",
            "-f",
            repo("examples/tenants/acme.yaml").to_str().unwrap(),
        ]),
    );
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("controller.log");
    let file = fs::File::create(&log).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_dingbind"))
        .arg("controller")
        .args([
            "--store",
            &format!("sqlite://{}", dir.path().join("store.db").display()),
        ])
        .args([
            "--dingtalk-oapi-url",
            &sim.url(),
            "--dingtalk-api-url",
            &sim.url(),
        ])
        .args(["--metrics-addr", "127.0.0.1:0", "--metrics-auth"])
        .args(["--watch-failure-grace", "3"])
        .args([
            "--namespace",
            "tenants",
            "--lease-namespace",
            "dingbind-system",
        ])
        .env("KUBECONFIG", &sa)
        .env("RUST_LOG", "info")
        .env_remove("DINGBIND_NAMESPACE")
        .env_remove("DINGBIND_STORE")
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    let _proc = Proc(child, log.clone());
    tokio::task::spawn_blocking({
        let env_ptr = env;
        move || {
            eventually("acme Ready", || {
                let out = env_ptr.kubectl(["get", "tenant", "acme", "-n", "tenants", "-o", "json"]);
                let t: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
                let ready = t["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True");
                ready.then_some(()).ok_or_else(|| t["status"].to_string())
            })
        }
    })
    .await
    .unwrap();

    // Admission: the controller's identity cannot change a spec, even with `patch`.
    let out = env.kubectl_as(
        &sa,
        [
            "patch",
            "tenant",
            "acme",
            "-n",
            "tenants",
            "--type=merge",
            "-p",
            r#"{"spec":{"suspend":true}}"#,
        ],
    );
    assert!(
        !out.status.success(),
        "a spec patch by the controller went through"
    );
    assert!(
        text(&out).contains("may not create, delete or change the spec of a Tenant"),
        "{}",
        text(&out)
    );
    // Its finalizer and status writes still go through (the controller did both above).
    let t: Value = serde_json::from_str(&ok(
        "acme",
        env.kubectl(["get", "tenant", "acme", "-n", "tenants", "-o", "json"]),
    ))
    .unwrap();
    assert_eq!(t["metadata"]["finalizers"][0], "dingbind.dev/directory");
    assert_eq!(t["spec"]["suspend"], false);

    // --metrics-auth: 401 without a token, 403 with one not allowed, 200 once allowed.
    let addr = eventually("the metrics address", || {
        metrics_addr(&fs::read_to_string(&log).unwrap_or_default()).ok_or("not yet".to_string())
    });
    let http = reqwest::Client::new();
    let url = format!("http://{addr}/metrics");
    let get = |token: Option<String>| {
        let mut req = http.get(&url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(get(None).await, 401);
    assert_eq!(get(Some("not-a-token".into())).await, 401);
    ok(
        "scraper",
        env.kubectl(["create", "serviceaccount", "scraper", "-n", "other"]),
    );
    assert_eq!(get(Some(token(env, "other", "scraper"))).await, 403);
    ok(
        "bind the scraper",
        env.kubectl([
            "create",
            "clusterrolebinding",
            "scraper-metrics",
            "--clusterrole=dingbind-metrics-reader",
            "--serviceaccount=other:scraper",
        ]),
    );
    let allowed = token(env, "other", "scraper");
    let status = {
        let end = Instant::now() + DEADLINE;
        loop {
            let s = get(Some(allowed.clone())).await;
            if s == 200 || Instant::now() > end {
                break s;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    assert_eq!(status, 200);

    // No secret in the Events or the metrics (the Secrets of examples/tenants/acme.yaml).
    let events = ok(
        "events",
        env.kubectl(["get", "events.events.k8s.io", "-n", "tenants", "-o", "json"]),
    );
    let metrics = http
        .get(&url)
        .bearer_auth(&allowed)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("dingbind_reconciles_total"), "{metrics}");
    for secret in ["acme-secret", "correct-horse-battery"] {
        assert!(!events.contains(secret), "{secret} in the Events");
        assert!(!metrics.contains(secret), "{secret} in the metrics");
        assert!(
            !fs::read_to_string(&log)
                .unwrap_or_default()
                .contains(secret),
            "{secret} in the log"
        );
    }

    // /readyz: ready while the Tenant watch works; not ready once it has
    // failed for longer than --watch-failure-grace (the CRD is gone, so
    // every relist fails).
    let readyz = |http: reqwest::Client, addr: String| async move {
        http.get(format!("http://{addr}/readyz"))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    };
    assert_eq!(readyz(http.clone(), addr.clone()).await, 200);
    ok(
        "deleting the Tenant",
        env.kubectl(["delete", "tenant", "acme", "-n", "tenants", "--timeout=60s"]),
    );
    ok(
        "deleting the CRD",
        env.kubectl(["delete", "crd", "tenants.dingbind.dev", "--timeout=60s"]),
    );
    let end = Instant::now() + DEADLINE;
    let mut last = 0;
    while Instant::now() < end {
        last = readyz(http.clone(), addr.clone()).await;
        if last == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(last, 503, "/readyz while the Tenant watch fails");
    assert!(
        fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("the Tenant watch failed"),
        "the failing watch is logged"
    );
}
