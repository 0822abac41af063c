//! What Flux and kpt read from a Tenant. Each state comes from the reconciler
//! (against the simulator and a SQLite store), is written to the real
//! kube-apiserver by the controller's status writer, read back with kubectl,
//! and judged by kstatus itself (sigs.k8s.io/cli-utils, built by
//! scripts/kstatus.sh; its path in `DINGBIND_KSTATUS`, which scripts/test.sh
//! sets).

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use dingbind::{
    api::{SyncProgress, Tenant, TenantStatus},
    controller::status,
    core::kstatus,
    dingtalk,
    reconcile::{Outcome, Reconciler, Secrets},
    sim::{OrgFile, SimHandle, Simulator, World},
    store::Store,
};
use jiff::Timestamp;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use support::fixtures::{SecretsBuilder, TenantBuilder, TenantFixture};
use support::kube_env::KubeEnv;

const ORG: &str = r#"
corps:
  - corpId: dingacme
    name: ACME
    apps:
      - {agentId: 1001, appKey: acme-key, appSecret: acme-secret, enabled: true, visibleScope: {deptIds: [2], userIds: []}}
    departments:
      - {id: 2, name: Sales, parentId: 1}
    users:
      - {userid: boss, name: Owner, deptIds: [1], email: owner@acme.example, admin: true}
      - {userid: s1, name: Sales One, deptIds: [2], email: s1@acme.example}
"#;

/// kstatus's verdict on an object.
#[derive(Debug, PartialEq, Eq)]
enum Judged {
    Current,
    InProgress,
    Failed,
}

struct Env {
    kube: &'static KubeEnv,
    api: Api<Tenant>,
    ns: String,
    sim: SimHandle,
    rec: Reconciler,
    http: reqwest::Client,
}

fn cluster() -> &'static KubeEnv {
    static CRD: OnceLock<()> = OnceLock::new();
    let env = KubeEnv::shared();
    CRD.get_or_init(|| {
        let crd = concat!(env!("CARGO_MANIFEST_DIR"), "/crds/tenant.yaml");
        for args in [
            vec!["apply", "-f", crd],
            vec![
                "wait",
                "--for=condition=Established",
                "crd/tenants.dingbind.dev",
                "--timeout=60s",
            ],
        ] {
            let out = env.kubectl(&args);
            assert!(
                out.status.success(),
                "kubectl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    });
    env
}

async fn env() -> Env {
    let kube = cluster();
    let ns = kube.new_namespace("kstatus");
    let api = Api::namespaced(kube.client().await, &ns);
    let world = World::from_file(OrgFile::parse(ORG).expect("org parses")).expect("world");
    let sim = Simulator::start(world, "127.0.0.1:0".parse().expect("address"))
        .await
        .expect("simulator starts");
    let dir = tempfile::tempdir().expect("temp dir").keep();
    let store = Store::connect(&format!("sqlite://{}", dir.join("store.db").display()))
        .await
        .expect("store opens");
    let client =
        dingtalk::Client::new(dingtalk::Config::with_base_url(&sim.url())).expect("client");
    Env {
        kube,
        api,
        ns,
        sim,
        rec: Reconciler::new(store, client),
        http: reqwest::Client::new(),
    }
}

impl Env {
    fn tenant(&self, name: &str) -> TenantBuilder {
        Tenant::test(name)
            .namespace(&self.ns)
            .corp("dingacme")
            .creator_email("owner@acme.example")
            .departments(&[2])
    }

    /// Creates the Tenant in the API server (generation 1) and returns it.
    async fn create(&self, t: &TenantBuilder) -> Tenant {
        let object: Tenant = serde_json::from_value(t.object()).expect("a Tenant");
        self.api
            .create(&PostParams::default(), &object)
            .await
            .expect("create Tenant")
    }

    async fn reconcile(&self, t: &Tenant, secrets: &Secrets) -> Outcome {
        self.rec
            .reconcile(t, secrets, None, Timestamp::now(), &|_| {})
            .await
            .expect("reconcile")
    }

    /// Writes `status` as the controller does, reads the Tenant back and
    /// asks kstatus.
    async fn judged(&self, name: &str, written: &TenantStatus) -> (Judged, String) {
        status::write(&self.api, name, written)
            .await
            .expect("status write");
        let out = self
            .kube
            .kubectl(["get", "tenant", name, "-n", &self.ns, "-o", "json"]);
        assert!(out.status.success(), "kubectl get: {out:?}");
        kstatus_of(&out.stdout)
    }

    async fn disable_app(&self) {
        let resp = self
            .http
            .put(format!("{}/_sim/corps/dingacme/apps/1001", self.sim.url()))
            .json(&json!({"enabled": false}))
            .send()
            .await
            .expect("admin call");
        assert!(resp.status().is_success(), "{}", resp.status());
    }
}

/// Runs the kstatus reader on one object (JSON).
fn kstatus_of(object: &[u8]) -> (Judged, String) {
    let bin = std::env::var("DINGBIND_KSTATUS").unwrap_or_else(|_| {
        panic!("DINGBIND_KSTATUS is not set: run scripts/test.sh, or export DINGBIND_KSTATUS=$(scripts/kstatus.sh)")
    });
    let mut child = Command::new(&bin)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {bin}: {e}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(object)
        .expect("writing to kstatus");
    let out = child.wait_with_output().expect("kstatus runs");
    assert!(
        out.status.success(),
        "kstatus failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verdict: Value = serde_json::from_slice(&out.stdout).expect("kstatus prints JSON");
    let judged = match verdict["status"].as_str() {
        Some("Current") => Judged::Current,
        Some("InProgress") => Judged::InProgress,
        Some("Failed") => Judged::Failed,
        other => panic!("kstatus said {other:?}: {verdict}"),
    };
    (
        judged,
        verdict["message"].as_str().unwrap_or_default().into(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kstatus_reads_each_state_the_reconciler_writes() {
    let env = env().await;
    let good = SecretsBuilder::new("acme");

    // Seen for the first time: the status written before the first
    // reconciliation.
    let t = env.create(&env.tenant("first")).await;
    let first = kstatus::first_status(t.metadata.generation, Timestamp::now());
    assert_eq!(env.judged("first", &first).await.0, Judged::InProgress);

    // Bound and synced.
    let ready = env.reconcile(&t, &good.resolve(&t)).await.status;
    assert_eq!(env.judged("first", &ready).await.0, Judged::Current);

    // A later sync of a large directory, under way.
    let progress = SyncProgress {
        departments: 40,
        members: 12_000,
        started_at: None,
    };
    let syncing = kstatus::syncing(
        ready.clone(),
        progress,
        t.metadata.generation,
        Timestamp::now(),
    );
    let (judged, message) = env.judged("first", &syncing).await;
    assert_eq!(judged, Judged::InProgress);
    assert!(message.contains("12000 members"), "{message}");

    // A spec edit the controller has not observed yet.
    let out = env.kube.kubectl([
        "patch",
        "tenant",
        "first",
        "-n",
        &env.ns,
        "--type=merge",
        "-p",
        r#"{"spec":{"sync":{"interval":"30m"}}}"#,
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(env.judged("first", &ready).await.0, Judged::InProgress);

    // Nothing changes until a person acts: a missing Secret, and credentials
    // DingTalk refuses.
    let t = env.create(&env.tenant("nosecret")).await;
    let missing = env
        .reconcile(&t, &Secrets::resolve(&t, |_| None))
        .await
        .status;
    let (judged, message) = env.judged("nosecret", &missing).await;
    assert_eq!(judged, Judged::Failed);
    assert!(message.contains("does not exist"), "{message}");

    let t = env.create(&env.tenant("refused")).await;
    let refused = good.clone().app_secret("rotated-away").resolve(&t);
    let refused = env.reconcile(&t, &refused).await.status;
    assert_eq!(env.judged("refused", &refused).await.0, Judged::Failed);

    // Suspended: settled.
    let t = env.create(&env.tenant("paused").suspended()).await;
    let paused = env.reconcile(&t, &good.resolve(&t)).await.status;
    assert_eq!(
        env.judged("paused", &paused).await.0,
        Judged::Current,
        "{paused:?}"
    );

    // An unbind asked for while the app is still enabled waits on DingTalk:
    // in progress; once the app is disabled it is carried out: current.
    let bound = env.create(&env.tenant("leaving")).await;
    let mut leaving = bound.clone();
    leaving.status = Some(env.reconcile(&bound, &good.resolve(&bound)).await.status);
    leaving.spec.mode = dingbind::api::Mode::Public;
    let waiting = env
        .reconcile(&leaving, &good.resolve(&leaving))
        .await
        .status;
    assert_eq!(env.judged("leaving", &waiting).await.0, Judged::InProgress);
    env.disable_app().await;
    leaving.status = Some(waiting);
    let unbound = env
        .reconcile(&leaving, &good.resolve(&leaving))
        .await
        .status;
    assert_eq!(
        unbound.mode,
        Some(dingbind::api::Mode::Public),
        "not unbound: {unbound:?}"
    );
    assert_eq!(env.judged("leaving", &unbound).await.0, Judged::Current);
}
