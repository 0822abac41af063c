//! The end-to-end harness (tests/e2e_controller.rs): the cluster with the
//! manifests applied, fresh stores, organizations for the simulator, and a
//! `Scenario` that owns one namespace, simulator, store and controller
//! process(es), and prints what it saw when it fails.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::fixtures::TenantFixture;
use super::kube_env::KubeEnv;
use dingbind::api::{Mode, Tenant, TenantKey, UnbindRecord, condition, reason};
use dingbind::core::directory::Directory;
use dingbind::sim::org_file::CorpSpec;
use dingbind::sim::{OrgFile, SimHandle, Simulator, World};
use dingbind::store::{LedgerEntry, Store};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event as KubeEvent;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use tempfile::TempDir;

/// The longest any one wait may take before the scenario fails.
pub const DEADLINE: Duration = Duration::from_secs(60);
pub const POLL: Duration = Duration::from_millis(200);
/// Field manager of every write the test makes (the "person" editing Tenants).
pub const TEST_MANAGER: &str = "e2e-test";
pub use super::fixtures::AGENT_ID;

pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ---------------------------------------------------------------------------
// The cluster: CRD and manifests applied once per test binary

pub struct Cluster {
    pub env: &'static KubeEnv,
    /// Kubeconfig of the manifests' ServiceAccount `dingbind-system/dingbind`.
    pub operator: PathBuf,
}

pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let env = KubeEnv::shared();
        let out = env.kubectl([
            "apply",
            "-k",
            repo("manifests").to_str().expect("utf-8 path"),
        ]);
        assert!(
            out.status.success(),
            "kubectl apply -k manifests/: {}",
            text(&out.stderr)
        );
        let out = env.kubectl([
            "wait",
            "--for=condition=Established",
            "crd/tenants.dingbind.dev",
            "--timeout=60s",
        ]);
        assert!(
            out.status.success(),
            "CRD not Established: {}",
            text(&out.stderr)
        );
        let operator = env.service_account_kubeconfig("dingbind-system", "dingbind");
        Cluster { env, operator }
    })
}

// ---------------------------------------------------------------------------
// Stores

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The PostgreSQL admin URL, or `None` (after a note) when not enabled.
pub fn pg_admin_url() -> Option<String> {
    super::postgres::admin_url("the end-to-end scenarios")
}

/// A fresh store URL for one scenario: a SQLite file in `dir`, or a new
/// PostgreSQL database (so that the ledger of an earlier run never leaks in).
pub async fn fresh_store_url(backend: Backend, dir: &Path) -> String {
    match backend {
        Backend::Sqlite => {
            let n = fs::read_dir(dir).map_or(0, |d| d.count());
            format!("sqlite://{}", dir.join(format!("store-{n}.db")).display())
        }
        Backend::Postgres => {
            let admin = pg_admin_url().expect("postgres enabled");
            super::postgres::create_database(&admin, "dingbind_e2e")
                .await
                .1
        }
    }
}

// ---------------------------------------------------------------------------
// Organizations for the simulator

/// A small corp: departments 2 Sales, 3 Engineering (4 Platform under it),
/// 5 Finance, 6 Support; the creator `owner` sits in the root and in Sales.
pub fn small_corp(corp: &str) -> CorpSpec {
    let yaml = format!(
        "corpId: {corp}
name: {corp}
apps:
  - {{agentId: {AGENT_ID}, appKey: {corp}-key, appSecret: {corp}-secret, enabled: true, visibleScope: {{deptIds: [1]}}}}
departments:
  - {{id: 2, name: Sales, parentId: 1}}
  - {{id: 3, name: Engineering, parentId: 1}}
  - {{id: 4, name: Platform, parentId: 3}}
  - {{id: 5, name: Finance, parentId: 1}}
  - {{id: 6, name: Support, parentId: 1}}
users:
  - {{userid: owner, name: Li Lei, deptIds: [1, 2], mobile: '13900000000', email: owner@{corp}.example, admin: true}}
  - {{userid: zhang, name: Zhang San, deptIds: [2], email: zhang@{corp}.example, title: Account Manager}}
  - {{userid: li, name: Li Si, deptIds: [2, 3], email: li@{corp}.example}}
  - {{userid: wang, name: Wang Wu, deptIds: [3], email: wang@{corp}.example}}
  - {{userid: zhao, name: Zhao Liu, deptIds: [4], email: zhao@{corp}.example, title: SRE}}
  - {{userid: sun, name: Sun Qi, deptIds: [4], email: sun@{corp}.example}}
  - {{userid: qian, name: Qian Ba, deptIds: [5], email: qian@{corp}.example}}
  - {{userid: zhou, name: Zhou Jiu, deptIds: [6], email: zhou@{corp}.example}}
"
    );
    serde_yaml::from_str(&yaml).expect("a valid corp")
}

/// A corp with one large department (2, `large` members) and a small one (3).
pub fn corp_with_large_department(corp: &str, large: usize) -> CorpSpec {
    let mut c = small_corp(corp);
    c.departments.retain(|d| d.id <= 3);
    c.users.retain(|u| u.userid == "owner");
    for i in 1..=large {
        c.users.push(user(&format!("w{i:03}"), &[2]));
    }
    for i in 1..=5 {
        c.users.push(user(&format!("e{i}"), &[3]));
    }
    c
}

pub fn user(userid: &str, depts: &[i64]) -> dingbind::sim::org_file::UserSpec {
    dingbind::sim::org_file::UserSpec {
        userid: userid.into(),
        name: format!("Member {userid}"),
        dept_ids: depts.to_vec(),
        email: Some(format!("{userid}@example.com")),
        active: true,
        ..Default::default()
    }
}

/// The userids DingTalk holds in a visible scope (departments with their
/// sub-departments, plus listed users), minus the creator (by email): what
/// the directory must hold. Computed from the simulator's own view.
pub fn userids_in_scope(
    corp: &CorpSpec,
    depts: &[i64],
    users: &[&str],
    creator_email: &str,
) -> BTreeSet<String> {
    let covered = departments_in_scope(corp, depts);
    corp.users
        .iter()
        .filter(|u| {
            u.dept_ids.iter().any(|d| covered.contains(d)) || users.contains(&u.userid.as_str())
        })
        .filter(|u| u.email.as_deref() != Some(creator_email))
        .map(|u| u.userid.clone())
        .collect()
}

/// The departments of the subtrees rooted at `roots` (1 is the root of all).
pub fn departments_in_scope(corp: &CorpSpec, roots: &[i64]) -> BTreeSet<i64> {
    let mut covered: BTreeSet<i64> = roots.iter().copied().collect();
    loop {
        let before = covered.len();
        for d in &corp.departments {
            if covered.contains(&d.parent_id) {
                covered.insert(d.id);
            }
        }
        if covered.len() == before {
            return covered;
        }
    }
}

pub fn member_ids(dir: &Directory) -> BTreeSet<String> {
    dir.members.keys().cloned().collect()
}

pub fn dept_ids(dir: &Directory) -> BTreeSet<i64> {
    dir.departments.keys().copied().collect()
}

pub fn set<T: Ord + Clone>(items: &[T]) -> BTreeSet<T> {
    items.iter().cloned().collect()
}

pub fn strings(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

// ---------------------------------------------------------------------------
// Tenants

/// A Tenant spec in DingTalk mode for corp `corp` (app 1001, credentials in
/// Secret `{name}-dingtalk`), with the creator `owner@{corp}.example` whose
/// password Secret is `{name}-creator`.
pub fn dingtalk_spec(name: &str, corp: &str, scope: Value) -> Value {
    Tenant::test(name).corp(corp).scope(scope).spec()
}

pub fn cond<'a>(
    t: &'a Tenant,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    t.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

/// `Ok` when condition `type_` has `status` and `reason`.
pub fn expect_cond(t: &Tenant, type_: &str, status: &str, reason: &str) -> Result<(), String> {
    match cond(t, type_) {
        Some(c) if c.status == status && c.reason == reason => Ok(()),
        Some(c) => Err(format!(
            "{type_} is {}/{} ({}), want {status}/{reason}",
            c.status, c.reason, c.message
        )),
        None => Err(format!("no {type_} condition yet")),
    }
}

pub fn status_mode(t: &Tenant) -> Option<Mode> {
    t.status.as_ref().and_then(|s| s.mode)
}

pub fn members_in_status(t: &Tenant) -> Option<u64> {
    t.status.as_ref()?.directory.as_ref().map(|d| d.members)
}

pub fn handled_request(t: &Tenant) -> Option<&str> {
    t.status.as_ref()?.last_handled_sync_request.as_deref()
}

/// The simulator counter at JSON `pointer` of `stats`; panics when it is
/// missing, so that a renamed key never reads as "no calls".
pub fn stat(stats: &Value, pointer: &str) -> u64 {
    stats
        .pointer(pointer)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no counter {pointer} in the simulator's stats: {stats}"))
}

/// The JSON pointer of endpoint `api`'s counter `field` (`calls`, `throttled`, `faults`).
pub fn endpoint_stat(api: dingbind::dingtalk::types::Api, field: &str) -> String {
    format!(
        "/endpoints/{}/{field}",
        api.name().replace('~', "~0").replace('/', "~1")
    )
}

pub fn ready_and_synced(t: &Tenant) -> Result<(), String> {
    expect_cond(t, condition::READY, "True", reason::RECONCILED)?;
    expect_cond(t, condition::DIRECTORY_SYNCED, "True", reason::SYNCED)
}

// ---------------------------------------------------------------------------
// A controller process

/// A `dingbind controller` child process; killed (SIGKILL) when dropped.
pub struct ControllerProc {
    pub child: Child,
    pub identity: String,
    pub log: PathBuf,
}

impl ControllerProc {
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ControllerProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Options of one controller process.
#[derive(Clone, Debug)]
pub struct ControllerOpts {
    pub identity: String,
    pub qps: u32,
    pub lease_duration: u64,
    /// Events from DingTalk in Stream mode (`--events stream`); off unless
    /// the scenario is about them, so that the others see only the syncs
    /// they ask for.
    pub events: bool,
    /// `--events-addr`: where the controller receives DingTalk's HTTP pushes.
    pub events_addr: Option<std::net::SocketAddr>,
    /// `--suite-secret`: the name of the suite Secret in the scenario's namespace.
    pub suite_secret: Option<String>,
    /// `--login-addr`: where the controller serves the login API.
    pub login_addr: Option<std::net::SocketAddr>,
}

impl Default for ControllerOpts {
    fn default() -> Self {
        Self {
            identity: "replica-a".into(),
            qps: 20,
            lease_duration: 15,
            events: false,
            events_addr: None,
            suite_secret: None,
            login_addr: None,
        }
    }
}

/// A free loopback address, for a server the test starts.
pub fn free_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
}

// ---------------------------------------------------------------------------
// A scenario

pub struct Scenario {
    pub name: String,
    pub cluster: &'static Cluster,
    pub ns: String,
    pub tenants: Api<Tenant>,
    pub secrets: Api<Secret>,
    pub client: kube::Client,
    pub sim: SimHandle,
    pub http: reqwest::Client,
    pub store: Store,
    pub store_url: String,
    pub backend: Backend,
    pub dir: TempDir,
    pub controllers: Vec<ControllerProc>,
    /// Logs of controllers already gone (for the diagnostics).
    pub old_logs: Vec<(String, PathBuf)>,
}

impl Scenario {
    /// A namespace, a simulator serving `corps`, and an empty store.
    pub async fn new(name: &str, backend: Backend, corps: Vec<CorpSpec>) -> Scenario {
        let cluster = cluster();
        let env = cluster.env;
        let prefix = match backend {
            Backend::Sqlite => format!("{name}-sqlite"),
            Backend::Postgres => format!("{name}-pg"),
        };
        let ns = env.new_namespace(&prefix);
        let client = env.client().await;
        let world = World::from_file(OrgFile {
            corps,
            ..OrgFile::default()
        })
        .expect("a valid world");
        let sim = Simulator::start(world, "127.0.0.1:0".parse::<SocketAddr>().unwrap())
            .await
            .expect("simulator starts");
        let dir = tempfile::Builder::new()
            .prefix(&format!("dingbind-e2e-{name}."))
            .tempdir()
            .expect("temp dir");
        let store_url = fresh_store_url(backend, dir.path()).await;
        let store = Store::connect(&store_url).await.expect("store opens");
        Scenario {
            name: name.into(),
            cluster,
            tenants: Api::namespaced(client.clone(), &ns),
            secrets: Api::namespaced(client.clone(), &ns),
            ns,
            client,
            sim,
            http: reqwest::Client::new(),
            store,
            store_url,
            backend,
            dir,
            controllers: Vec::new(),
            old_logs: Vec::new(),
        }
    }

    pub fn key(&self, name: &str) -> TenantKey {
        TenantKey {
            namespace: self.ns.clone(),
            name: name.into(),
        }
    }

    /// Starts `dingbind controller` as the manifests' ServiceAccount; returns its index.
    pub fn start_controller(&mut self, opts: ControllerOpts) -> usize {
        let n = self.controllers.len() + self.old_logs.len();
        let log = self
            .dir
            .path()
            .join(format!("controller-{n}-{}.log", opts.identity));
        let file = fs::File::create(&log).expect("log file");
        let sim = self.sim.url();
        let child = Command::new(env!("CARGO_BIN_EXE_dingbind"))
            .arg("controller")
            .args(["--store", &self.store_url])
            .args(["--dingtalk-oapi-url", &sim, "--dingtalk-api-url", &sim])
            .args(["--qps", &opts.qps.to_string()])
            .args(["--metrics-addr", "127.0.0.1:0"])
            .args(["--namespace", &self.ns])
            .args(["--lease-namespace", "dingbind-system"])
            .args(["--lease-name", &format!("e2e-{}", self.ns)])
            .args(["--lease-duration", &opts.lease_duration.to_string()])
            .args(["--identity", &opts.identity])
            .args(["--events", if opts.events { "stream" } else { "off" }])
            .args(
                opts.events_addr
                    .iter()
                    .flat_map(|a| ["--events-addr".to_string(), a.to_string()]),
            )
            .args(
                opts.login_addr
                    .iter()
                    .flat_map(|a| ["--login-addr".to_string(), a.to_string()]),
            )
            .args(
                opts.suite_secret
                    .iter()
                    .flat_map(|name| ["--suite-secret".to_string(), format!("{}/{name}", self.ns)]),
            )
            .env("KUBECONFIG", &self.cluster.operator)
            .env("RUST_LOG", "info,dingbind=debug")
            .env_remove("DINGBIND_NAMESPACE")
            .env_remove("DINGBIND_STORE")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .expect("starting dingbind controller");
        self.controllers.push(ControllerProc {
            child,
            identity: opts.identity,
            log,
        });
        self.controllers.len() - 1
    }

    pub fn controller(&mut self, i: usize) -> &mut ControllerProc {
        &mut self.controllers[i]
    }

    /// Controller `i`'s `/metrics` (its address is in its log: the test starts
    /// it on port 0).
    pub async fn controller_metrics(&self, i: usize) -> String {
        let c = &self.controllers[i];
        let addr = self
            .eventually(&format!("{}: serving /metrics", c.identity), || async {
                c.log_text()
                    .lines()
                    .find(|l| l.contains("and /metrics"))
                    .and_then(|l| l.split("addr=").nth(1))
                    .and_then(|a| a.split_whitespace().next())
                    .map(|a| a.trim_matches('"').to_string())
                    .ok_or("not in the log yet".to_string())
            })
            .await;
        let url = format!("http://{addr}/metrics");
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert!(resp.status().is_success(), "GET {url}: {}", resp.status());
        resp.text()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"))
    }

    /// kill -9 controller `i`.
    pub fn kill_controller(&mut self, i: usize) {
        self.controllers[i].kill();
    }

    /// The store is lost (a deleted volume, a new database): controllers
    /// started from now on get an empty one.
    pub async fn lose_store(&mut self) {
        self.store.close().await;
        self.store_url = fresh_store_url(self.backend, self.dir.path()).await;
        self.store = Store::connect(&self.store_url).await.expect("store opens");
    }

    pub fn unbind_records(&self) -> Api<UnbindRecord> {
        Api::all(self.client.clone())
    }

    // ---- Kubernetes ----

    pub async fn apply_tenant(&self, name: &str, spec: Value) -> Result<Tenant, kube::Error> {
        let body = json!({
            "apiVersion": "dingbind.dev/v1alpha1",
            "kind": "Tenant",
            "metadata": {"name": name, "namespace": self.ns},
            "spec": spec,
        });
        self.tenants
            .patch(
                name,
                &PatchParams::apply(TEST_MANAGER).force(),
                &Patch::Apply(&body),
            )
            .await
    }

    pub async fn apply_ok(&self, name: &str, spec: Value) -> Tenant {
        self.apply_tenant(name, spec)
            .await
            .unwrap_or_else(|e| panic!("applying Tenant {name}: {e}"))
    }

    pub async fn annotate(&self, name: &str, key: &str, value: &str) {
        let patch = json!({"metadata": {"annotations": {key: value}}});
        self.tenants
            .patch(
                name,
                &PatchParams {
                    field_manager: Some(TEST_MANAGER.into()),
                    ..Default::default()
                },
                &Patch::Merge(&patch),
            )
            .await
            .unwrap_or_else(|e| panic!("annotating Tenant {name}: {e}"));
    }

    pub async fn secret(&self, name: &str, data: &[(&str, &str)]) {
        let data: BTreeMap<&str, &str> = data.iter().copied().collect();
        let body = json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": self.ns},
            "stringData": data,
        });
        self.secrets
            .patch(
                name,
                &PatchParams::apply(TEST_MANAGER).force(),
                &Patch::Apply(&body),
            )
            .await
            .unwrap_or_else(|e| panic!("applying Secret {name}: {e}"));
    }

    /// The app credentials Secret `{name}-dingtalk` for corp `corp`.
    pub async fn credentials(&self, name: &str, corp: &str) {
        self.secret(
            &format!("{name}-dingtalk"),
            &[
                ("appKey", &format!("{corp}-key")),
                ("appSecret", &format!("{corp}-secret")),
            ],
        )
        .await;
    }

    pub async fn tenant(&self, name: &str) -> Result<Tenant, String> {
        self.tenants.get(name).await.map_err(|e| e.to_string())
    }

    /// Waits until `check` accepts Tenant `name`; returns it.
    /// Waits until the delete guard holds a sync back: `DirectorySynced` and
    /// `Ready` both False with `DeletionThresholdExceeded`.
    pub async fn wait_deletions_held(&self, name: &str) -> Tenant {
        let t = self
            .wait_tenant(name, "deletions held", |t| {
                expect_cond(
                    t,
                    condition::DIRECTORY_SYNCED,
                    "False",
                    reason::DELETION_THRESHOLD_EXCEEDED,
                )
            })
            .await;
        expect_cond(
            &t,
            condition::READY,
            "False",
            reason::DELETION_THRESHOLD_EXCEEDED,
        )
        .unwrap();
        t
    }

    pub async fn wait_tenant(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(&Tenant) -> Result<(), String>,
    ) -> Tenant {
        self.eventually(&format!("{name}: {what}"), || async {
            let t = self.tenant(name).await?;
            check(&t).map(|()| t)
        })
        .await
    }

    /// Events (events.k8s.io/v1) about Tenant `name`.
    pub async fn events(&self, name: &str) -> Vec<KubeEvent> {
        let api: Api<KubeEvent> = Api::namespaced(self.client.clone(), &self.ns);
        api.list(&ListParams::default())
            .await
            .expect("list events")
            .items
            .into_iter()
            .filter(|e| {
                e.regarding.as_ref().is_some_and(|r| {
                    r.kind.as_deref() == Some("Tenant") && r.name.as_deref() == Some(name)
                })
            })
            .collect()
    }

    pub async fn wait_event(&self, name: &str, type_: &str, reason: &str) -> KubeEvent {
        self.eventually(&format!("{name}: a {type_} Event {reason}"), || async {
            self.events(name)
                .await
                .into_iter()
                .find(|e| e.type_.as_deref() == Some(type_) && e.reason.as_deref() == Some(reason))
                .ok_or_else(|| "not yet".to_string())
        })
        .await
    }

    /// How many times Events with `reason` were reported about `name` (series included).
    pub async fn event_count(&self, name: &str, reason: &str) -> i32 {
        self.events(name)
            .await
            .iter()
            .filter(|e| e.reason.as_deref() == Some(reason))
            .map(|e| e.series.as_ref().map_or(1, |s| s.count.max(1)))
            .sum()
    }

    /// Deletes Tenant `name` and waits until it is gone (finalizer removed).
    pub async fn delete_tenant(&self, name: &str) {
        self.tenants
            .delete(name, &DeleteParams::default())
            .await
            .unwrap_or_else(|e| panic!("deleting Tenant {name}: {e}"));
        self.eventually(&format!("{name}: gone"), || async {
            match self.tenants.get_opt(name).await {
                Ok(None) => Ok(()),
                Ok(Some(t)) => Err(format!(
                    "still there, finalizers {:?}",
                    t.metadata.finalizers
                )),
                Err(e) => Err(e.to_string()),
            }
        })
        .await;
    }

    // ---- The simulator ----

    pub async fn sim(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.sim.url());
        let mut req = self.http.request(method.clone(), &url);
        if let Some(b) = &body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    pub async fn sim_corp(&self, corp: &str) -> CorpSpec {
        let v = self
            .sim(reqwest::Method::GET, &format!("/_sim/corps/{corp}"), None)
            .await;
        serde_json::from_value(v).expect("a corp")
    }

    pub async fn sim_put_user(&self, corp: &str, userid: &str, depts: &[i64]) {
        self.sim(
            reqwest::Method::PUT,
            &format!("/_sim/corps/{corp}/users/{userid}"),
            Some(json!({"name": format!("Member {userid}"), "deptIds": depts, "email": format!("{userid}@example.com")})),
        )
        .await;
    }

    pub async fn sim_leave(&self, corp: &str, userid: &str) {
        self.sim(
            reqwest::Method::POST,
            &format!("/_sim/corps/{corp}/users/{userid}/leave"),
            None,
        )
        .await;
    }

    pub async fn sim_app(&self, corp: &str, body: Value) {
        self.sim(
            reqwest::Method::PUT,
            &format!("/_sim/corps/{corp}/apps/{AGENT_ID}"),
            Some(body),
        )
        .await;
    }

    pub async fn sim_faults(&self, body: Value) {
        self.sim(reqwest::Method::PUT, "/_sim/faults", Some(body))
            .await;
    }

    /// Changes the Stream gateway's faults (`PUT /_sim/stream/faults`).
    pub async fn sim_stream_faults(&self, body: Value) {
        self.sim(reqwest::Method::PUT, "/_sim/stream/faults", Some(body))
            .await;
    }

    /// Sets the HTTP push URL of `corp`'s app, as in DingTalk's console:
    /// refused unless the URL answers `check_url`.
    pub async fn sim_callback(&self, corp: &str, url: &str, token: &str, aes_key: &str) {
        self.sim(
            reqwest::Method::PUT,
            &format!("/_sim/corps/{corp}/apps/{AGENT_ID}/callback"),
            Some(json!({"url": url, "token": token, "aesKey": aes_key})),
        )
        .await;
    }

    /// Drops the Stream connections of `corp`'s app without a SYSTEM
    /// disconnect (a network failure, as the client sees it).
    pub async fn sim_stream_drop(&self, corp: &str) {
        let body = json!({"appKey": format!("{corp}-key"), "systemMessage": false});
        let v = self
            .sim(reqwest::Method::POST, "/_sim/stream/disconnect", Some(body))
            .await;
        assert_eq!(v["connections"], json!(1), "one connection dropped: {v}");
    }

    pub async fn sim_stats(&self) -> Value {
        self.sim(reqwest::Method::GET, "/_sim/stats", None).await
    }

    /// Calls the simulator counted for app `app_key` (token requests included).
    /// The app must have called before: a missing key fails, never reads as 0.
    pub async fn app_calls(&self, app_key: &str) -> u64 {
        stat(&self.sim_stats().await, &format!("/apps/{app_key}/calls"))
    }

    /// The app's visible scope in the simulator: (deptIds, userIds).
    pub async fn sim_scope(&self, corp: &str) -> (BTreeSet<i64>, BTreeSet<String>) {
        let c = self.sim_corp(corp).await;
        let app = c
            .apps
            .iter()
            .find(|a| a.agent_id == AGENT_ID)
            .expect("the app");
        (
            set(&app.visible_scope.dept_ids),
            set(&app.visible_scope.user_ids),
        )
    }

    // ---- The store ----

    pub async fn directory(&self, name: &str) -> Directory {
        self.store
            .directory(&self.key(name))
            .await
            .expect("read the directory")
    }

    pub async fn ledger(&self, name: &str) -> Vec<LedgerEntry> {
        self.store
            .ledger(&self.key(name))
            .await
            .expect("read the ledger")
    }

    /// Waits until the store's directory of `name` holds exactly `members`.
    pub async fn wait_members(&self, name: &str, members: &BTreeSet<String>) -> Directory {
        self.eventually(&format!("{name}: directory holds {members:?}"), || async {
            let dir = self.directory(name).await;
            if &member_ids(&dir) == members {
                Ok(dir)
            } else {
                Err(format!("directory holds {:?}", member_ids(&dir)))
            }
        })
        .await
    }

    // ---- Waiting and diagnostics ----

    /// Retries `attempt` every 200 ms until it returns `Ok`, for at most [`DEADLINE`].
    pub async fn eventually<T, F, Fut>(&self, what: &str, attempt: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, String>>,
    {
        self.eventually_within(what, DEADLINE, attempt).await
    }

    pub async fn eventually_within<T, F, Fut>(
        &self,
        what: &str,
        deadline: Duration,
        mut attempt: F,
    ) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, String>>,
    {
        let end = Instant::now() + deadline;
        loop {
            match attempt().await {
                Ok(v) => return v,
                Err(last) if Instant::now() > end => {
                    panic!(
                        "[{}/{:?}] {what}: not within {deadline:?}; last: {last}",
                        self.name, self.backend
                    )
                }
                Err(_) => tokio::time::sleep(POLL).await,
            }
        }
    }

    /// The Tenants (YAML), their Events and every controller's log tail.
    pub fn diagnostics(&self) -> String {
        let env = self.cluster.env;
        let mut out = String::new();
        let tenants = env.kubectl(["get", "tenants", "-n", &self.ns, "-o", "yaml"]);
        out.push_str(&format!(
            "--- Tenants in {} ---\n{}{}",
            self.ns,
            text(&tenants.stdout),
            text(&tenants.stderr)
        ));
        let events = env.kubectl(["get", "events.events.k8s.io", "-n", &self.ns]);
        out.push_str(&format!(
            "--- Events ---\n{}{}",
            text(&events.stdout),
            text(&events.stderr)
        ));
        let logs = self
            .controllers
            .iter()
            .map(|c| (c.identity.clone(), c.log.clone()))
            .chain(self.old_logs.iter().cloned());
        for (identity, path) in logs {
            let log = fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            out.push_str(&format!(
                "--- controller {identity} ({}) log tail ---\n{}\n",
                path.display(),
                lines[lines.len().saturating_sub(40)..].join("\n")
            ));
        }
        out
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        for c in &mut self.controllers {
            c.kill();
        }
        if std::thread::panicking() {
            eprintln!(
                "===== scenario {} on {:?} failed; diagnostics =====\n{}",
                self.name,
                self.backend,
                self.diagnostics()
            );
        }
    }
}
