//! Checks against a real kube-apiserver and etcd (tests/support/kube_env.rs):
//! the CRD, the examples and manifests, the transition rule that keeps an
//! unbound tenant out of DingTalk mode, the operator's RBAC, and the
//! differential check of `dingbind validate` against the API server.
//!
//! One API server for the whole binary; a namespace per test.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use dingbind::api::{REBIND_FORBIDDEN_MESSAGE, SyncProgress, Tenant, TenantStatus};
use dingbind::controller::status;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use support::kube_env::KubeEnv;

const CRD_NAME: &str = "tenants.dingbind.dev";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts the command succeeded; returns its stdout.
#[track_caller]
fn ok(what: &str, out: Output) -> String {
    assert!(
        out.status.success(),
        "{what}: expected success, got {}\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Asserts the command failed; returns its stderr.
#[track_caller]
fn refused(what: &str, out: Output) -> String {
    assert!(
        !out.status.success(),
        "{what}: expected a refusal, but it succeeded\nstdout: {}",
        text(&out.stdout)
    );
    text(&out.stderr)
}

/// Retries `attempt` until it returns `Some`, for things the API server does
/// asynchronously (publishing OpenAPI after a CRD is established). Not an
/// assertion on time: the deadline only turns a hang into a clear failure.
#[track_caller]
fn eventually<T>(what: &str, mut attempt: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match attempt() {
            Ok(v) => return v,
            Err(last) if Instant::now() > deadline => {
                panic!("{what}: never happened; last: {last}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

/// The API server with the Tenant CRD installed (from crds/tenant.yaml) and Established.
fn env_with_crd() -> &'static KubeEnv {
    static CRD: OnceLock<()> = OnceLock::new();
    let env = KubeEnv::shared();
    CRD.get_or_init(|| {
        let crd = repo("crds/tenant.yaml");
        ok(
            "kubectl apply -f crds/tenant.yaml",
            env.kubectl(["apply", "-f", crd.to_str().expect("utf-8 path")]),
        );
        ok(
            "waiting for the CRD to be Established",
            env.kubectl([
                "wait",
                "--for=condition=Established",
                &format!("crd/{CRD_NAME}"),
                "--timeout=60s",
            ]),
        );
    });
    env
}

fn get_json(env: &KubeEnv, args: &[&str]) -> Value {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend(["-o", "json"]);
    let out = ok(&format!("kubectl {}", all.join(" ")), env.kubectl(&all));
    serde_json::from_str(&out).expect("kubectl -o json prints JSON")
}

/// A minimal valid Tenant in `mode`, as YAML.
fn tenant_yaml(name: &str, namespace: &str, mode: &str) -> String {
    format!(
        "apiVersion: dingbind.dev/v1alpha1
kind: Tenant
metadata:
  name: {name}
  namespace: {namespace}
spec:
  mode: {mode}
  dingtalk:
    corpId: ding{name}
    agentId: 1001
    credentialsSecretRef: {{name: {name}-dingtalk}}
    visibleScope: {{departments: [2, 3], users: [manager01]}}
  creator:
    email: owner@{name}.example
  sync: {{interval: 10m}}
"
    )
}

fn apply_stdin(env: &KubeEnv, yaml: &str, extra: &[&str]) -> Output {
    let mut args = vec!["apply", "-f", "-"];
    args.extend_from_slice(extra);
    env.kubectl_stdin(yaml, args)
}

fn spec_mode(env: &KubeEnv, ns: &str, name: &str) -> String {
    get_json(env, &["tenant", name, "-n", ns])["spec"]["mode"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Writes `status` through the status subresource, as the controller does.
async fn write_status(client: &kube::Client, ns: &str, name: &str, status: Value) {
    let api: Api<Tenant> = Api::namespaced(client.clone(), ns);
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await
    .unwrap_or_else(|e| panic!("status write {status} on {ns}/{name} was refused: {e}"));
}

// ---------------------------------------------------------------------------
// The CRD

#[test]
fn crd_is_accepted_as_structural_with_its_cel_rules_and_becomes_established() {
    let env = env_with_crd();
    let crd = get_json(env, &["crd", CRD_NAME]);
    let conditions = crd["status"]["conditions"]
        .as_array()
        .expect("CRD status has conditions");
    let status_of = |t: &str| {
        conditions
            .iter()
            .find(|c| c["type"] == t)
            .map(|c| c["status"].as_str().unwrap_or_default().to_string())
    };
    assert_eq!(
        status_of("Established").as_deref(),
        Some("True"),
        "{conditions:#?}"
    );
    assert_eq!(
        status_of("NamesAccepted").as_deref(),
        Some("True"),
        "{conditions:#?}"
    );
    assert_eq!(status_of("NonStructuralSchema"), None, "{conditions:#?}");
    // The API server kept every CEL rule (it refuses a CRD whose rules do not
    // compile or exceed the cost budget, so being stored means they passed).
    let stored = serde_json::to_string(&crd["spec"]).expect("json");
    for rule in [
        REBIND_FORBIDDEN_MESSAGE,
        "spec.dingtalk is required when mode is DingTalk",
        "visibleScope cannot combine allEmployees",
        "visibleScope must not be empty",
        "sync.interval must be at least 1m",
        "maxDeletions must be a count",
    ] {
        assert!(
            stored.contains(rule),
            "rule {rule:?} missing from the stored CRD"
        );
    }
}

#[test]
fn kubectl_explain_prints_the_field_descriptions() {
    let env = env_with_crd();
    let out = eventually("kubectl explain tenant.spec", || {
        let out = env.kubectl(["explain", "tenant.spec"]);
        if out.status.success() {
            Ok(text(&out.stdout))
        } else {
            Err(text(&out.stderr))
        }
    });
    for expected in [
        "A tenant of the low-code platform and how its account is bound to DingTalk.",
        "mode",
        "Desired account mode.",
        "dingtalk",
        "The DingTalk organization and app the tenant is bound to.",
        "creator",
        "trial",
        "sync",
        "deletionPolicy",
        "suspend",
    ] {
        assert!(out.contains(expected), "{expected:?} not in:\n{out}");
    }
    let out = ok(
        "kubectl explain tenant.spec.dingtalk.visibleScope",
        env.kubectl(["explain", "tenant.spec.dingtalk.visibleScope"]),
    );
    assert!(
        out.contains("DingTalk department ids; each covers its sub-departments."),
        "{out}"
    );
}

#[tokio::test]
async fn kubectl_get_tenants_shows_the_printer_columns() {
    let env = env_with_crd();
    let ns = env.new_namespace("columns");
    ok(
        "create tenant",
        apply_stdin(env, &tenant_yaml("acme", &ns, "DingTalk"), &[]),
    );
    let client = env.client().await;
    write_status(
        &client,
        &ns,
        "acme",
        json!({
            "mode": "DingTalk",
            "directory": {"members": 42, "departments": 3, "lastSyncTime": "2026-01-01T00:00:00Z"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "Synced", "message": "",
                            "lastTransitionTime": "2026-01-01T00:00:00Z"}]
        }),
    )
    .await;
    let out = ok(
        "kubectl get tenants",
        env.kubectl(["get", "tenants", "-n", &ns]),
    );
    let mut lines = out.lines();
    let header: Vec<&str> = lines
        .next()
        .expect("a header line")
        .split("  ")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "MODE",
            "CORP",
            "MEMBERS",
            "READY",
            "LAST SYNC",
            "AGE"
        ],
        "{out}"
    );
    let row: Vec<&str> = lines.next().expect("a row").split_whitespace().collect();
    assert_eq!(
        &row[..5],
        ["acme", "DingTalk", "dingacme", "42", "True"],
        "{out}"
    );
}

#[test]
fn every_example_applies_server_side() {
    let env = env_with_crd();
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo("examples/tenants"))
        .expect("examples/tenants")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort(); // 00-namespace.yaml first
    assert!(files.len() >= 2, "{files:?}");
    for file in &files {
        let path = file.to_str().expect("utf-8 path");
        ok(
            &format!("kubectl apply --server-side -f {path}"),
            env.kubectl(["apply", "--server-side", "-f", path]),
        );
    }
    let tenants = get_json(env, &["tenants", "-n", "tenants"]);
    let names: Vec<&str> = tenants["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|t| t["metadata"]["name"].as_str())
        .collect();
    assert_eq!(
        names.len(),
        files.len() - 1,
        "one Tenant per example: {names:?}"
    );
}

/// `kubectl apply -k manifests/`, once per test binary; its output.
fn apply_manifests(env: &KubeEnv) -> &'static Output {
    static APPLIED: OnceLock<Output> = OnceLock::new();
    APPLIED.get_or_init(|| {
        env.kubectl([
            "apply",
            "-k",
            repo("manifests").to_str().expect("utf-8 path"),
        ])
    })
}

#[test]
fn the_manifests_apply_as_a_whole() {
    let env = env_with_crd();
    let out = ok("kubectl apply -k manifests/", apply_manifests(env).clone());
    for kind in [
        "namespace/dingbind-system",
        "customresourcedefinition.apiextensions.k8s.io/tenants.dingbind.dev",
        "serviceaccount/dingbind",
        "clusterrole.rbac.authorization.k8s.io/dingbind",
        "clusterrolebinding.rbac.authorization.k8s.io/dingbind",
        "role.rbac.authorization.k8s.io/dingbind-leader-election",
        "rolebinding.rbac.authorization.k8s.io/dingbind-leader-election",
        "persistentvolumeclaim/dingbind-data",
        "deployment.apps/dingbind",
        "service/dingbind-metrics",
    ] {
        assert!(out.contains(kind), "{kind} not applied:\n{out}");
    }
}

// ---------------------------------------------------------------------------
// The transition rule: irreversible once carried out, not once asked

/// The four ways a person changes a spec, each setting `spec.mode: DingTalk`
/// on the Tenant `name`. Returns (path, kubectl output).
/// The write paths that can set `spec.mode` back to `DingTalk`.
const PATHS_BACK_TO_DINGTALK: [&str; 4] = [
    "kubectl apply",
    "kubectl replace",
    "kubectl patch --type=json",
    "kubectl apply --server-side",
];

/// Sets `spec.mode` of Tenant `name` back to `DingTalk` by one write `path`
/// (one of [`PATHS_BACK_TO_DINGTALK`]), and nothing else.
fn back_to_dingtalk_by(env: &KubeEnv, ns: &str, name: &str, path: &str) -> Output {
    let dingtalk = tenant_yaml(name, ns, "DingTalk");
    match path {
        // client-side apply: a three-way merge patch
        "kubectl apply" => apply_stdin(env, &dingtalk, &[]),
        // kubectl edit-style: get, change, replace (PUT with resourceVersion)
        "kubectl replace" => {
            let mut live = get_json(env, &["tenant", name, "-n", ns]);
            live["spec"]["mode"] = json!("DingTalk");
            env.kubectl_stdin(&live.to_string(), ["replace", "-f", "-"])
        }
        "kubectl patch --type=json" => env.kubectl([
            "patch",
            "tenant",
            name,
            "-n",
            ns,
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/spec/mode","value":"DingTalk"}]"#,
        ]),
        // server-side apply (forcing conflicts, so only validation can refuse)
        "kubectl apply --server-side" => apply_stdin(
            env,
            &dingtalk,
            &[
                "--server-side",
                "--force-conflicts",
                "--field-manager=gitops",
            ],
        ),
        other => panic!("no such write path: {other}"),
    }
}

/// Every path of [`PATHS_BACK_TO_DINGTALK`], one after the other, on the same Tenant.
fn back_to_dingtalk_by_every_path(
    env: &KubeEnv,
    ns: &str,
    name: &str,
) -> Vec<(&'static str, Output)> {
    PATHS_BACK_TO_DINGTALK
        .iter()
        .map(|&path| (path, back_to_dingtalk_by(env, ns, name, path)))
        .collect()
}

fn set_public(env: &KubeEnv, ns: &str, name: &str) {
    ok(
        "request the unbind (spec.mode: Public)",
        env.kubectl([
            "patch",
            "tenant",
            name,
            "-n",
            ns,
            "--type=merge",
            "-p",
            r#"{"spec":{"mode":"Public"}}"#,
        ]),
    );
}

#[tokio::test]
async fn after_the_unbind_every_path_back_to_dingtalk_is_refused_with_the_crd_message() {
    let env = env_with_crd();
    let client = env.client().await;
    let ns = env.new_namespace("rebind");
    ok(
        "create",
        apply_stdin(env, &tenant_yaml("acme", &ns, "DingTalk"), &[]),
    );
    write_status(&client, &ns, "acme", json!({"mode": "DingTalk"})).await;
    // The unbind is requested, then carried out by the controller.
    ok(
        "apply mode Public",
        apply_stdin(env, &tenant_yaml("acme", &ns, "Public"), &[]),
    );
    write_status(
        &client,
        &ns,
        "acme",
        json!({"mode": "Public", "unbindReason": "Requested", "unboundAt": "2026-01-01T00:00:00Z"}),
    )
    .await;

    for (path, out) in back_to_dingtalk_by_every_path(env, &ns, "acme") {
        let err = refused(path, out);
        assert!(
            err.contains(REBIND_FORBIDDEN_MESSAGE),
            "{path}: refused without the CRD's message: {err}"
        );
        assert!(
            err.contains("spec.mode"),
            "{path}: the message names no field: {err}"
        );
        assert_eq!(spec_mode(env, &ns, "acme"), "Public", "after {path}");
    }
    // A merge patch is no way around it either.
    let err = refused(
        "kubectl patch --type=merge",
        env.kubectl([
            "patch",
            "tenant",
            "acme",
            "-n",
            &ns,
            "--type=merge",
            "-p",
            r#"{"spec":{"mode":"DingTalk"}}"#,
        ]),
    );
    assert!(err.contains(REBIND_FORBIDDEN_MESSAGE), "{err}");
}

#[tokio::test]
async fn a_pending_unbind_can_be_withdrawn_by_every_path() {
    let env = env_with_crd();
    let client = env.client().await;
    let ns = env.new_namespace("withdraw");
    // One Tenant per path, each from the same starting state: created in
    // DingTalk mode, bound (status.mode DingTalk), the unbind requested
    // (spec.mode Public) and pending (a precondition is missing). Then exactly
    // one path withdraws it.
    for (i, path) in PATHS_BACK_TO_DINGTALK.iter().enumerate() {
        let name = format!("acme-{i}");
        ok(
            "create",
            apply_stdin(env, &tenant_yaml(&name, &ns, "DingTalk"), &[]),
        );
        write_status(&client, &ns, &name, json!({"mode": "DingTalk"})).await;
        set_public(env, &ns, &name);
        let live = get_json(env, &["tenant", &name, "-n", &ns]);
        assert_eq!(
            (&live["spec"]["mode"], &live["status"]["mode"]),
            (&json!("Public"), &json!("DingTalk")),
            "{name}: a pending unbind before {path}"
        );
        ok(path, back_to_dingtalk_by(env, &ns, &name, path));
        assert_eq!(spec_mode(env, &ns, &name), "DingTalk", "after {path}");
    }
}

#[tokio::test]
async fn status_writes_are_never_refused_by_the_transition_rule() {
    let env = env_with_crd();
    let client = env.client().await;
    let ns = env.new_namespace("status");
    ok(
        "create",
        apply_stdin(env, &tenant_yaml("trial", &ns, "DingTalk"), &[]),
    );
    // Bound, then synced twice.
    write_status(
        &client,
        &ns,
        "trial",
        json!({"mode": "DingTalk", "boundCorpId": "dingtrial"}),
    )
    .await;
    write_status(
        &client,
        &ns,
        "trial",
        json!({"directory": {"members": 3, "departments": 2}}),
    )
    .await;
    // Trial expiry: the controller unbinds while spec.mode is still DingTalk.
    write_status(
        &client,
        &ns,
        "trial",
        json!({"mode": "Public", "unbindReason": "TrialExpired", "unboundAt": "2026-01-01T00:00:00Z"}),
    )
    .await;
    // Further writes with spec.mode DingTalk and status.mode Public.
    write_status(
        &client,
        &ns,
        "trial",
        json!({"observedGeneration": 1, "directory": null}),
    )
    .await;
    write_status(
        &client,
        &ns,
        "trial",
        json!({"conditions": [{"type": "Ready", "status": "False", "reason": "TrialExpired",
                               "message": "unbound", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}),
    )
    .await;
    // kubectl's status subresource path too.
    ok(
        "kubectl patch --subresource=status",
        env.kubectl([
            "patch",
            "tenant",
            "trial",
            "-n",
            &ns,
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"observedGeneration":2}}"#,
        ]),
    );
    // A full status PUT (replace_status) with the live object.
    let api: Api<Tenant> = Api::namespaced(client.clone(), &ns);
    let live = api.get_status("trial").await.expect("get status");
    api.replace_status("trial", &Default::default(), &live)
        .await
        .expect("replace_status refused");
    let live = get_json(env, &["tenant", "trial", "-n", &ns]);
    assert_eq!(live["spec"]["mode"], "DingTalk");
    assert_eq!(live["status"]["mode"], "Public");
    assert_eq!(live["status"]["observedGeneration"], 2);
    // Unrelated spec edits keep working (the rule fires only on a mode change),
    // and so do metadata updates such as finalizers.
    ok(
        "unrelated spec edit",
        env.kubectl([
            "patch",
            "tenant",
            "trial",
            "-n",
            &ns,
            "--type=merge",
            "-p",
            r#"{"spec":{"sync":{"interval":"30m"}}}"#,
        ]),
    );
    ok(
        "finalizer patch",
        env.kubectl([
            "patch",
            "tenant",
            "trial",
            "-n",
            &ns,
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":["dingbind.dev/directory"]}}"#,
        ]),
    );
}

/// A status with the given fields, its conditions at whole seconds (as the API
/// server stores them).
fn status_of(value: Value) -> TenantStatus {
    serde_json::from_value(value).expect("a TenantStatus")
}

fn ready(reason: &str) -> Value {
    json!({"type": "Ready", "status": "True", "reason": reason, "message": "ok",
           "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1})
}

async fn live_status(api: &Api<Tenant>, name: &str) -> TenantStatus {
    api.get_status(name)
        .await
        .expect("get status")
        .status
        .unwrap_or_default()
}

/// An earlier release's status write: a merge patch by dingbind's field
/// manager, which the API server records as an `Update`.
async fn merge_patch_status(api: &Api<Tenant>, name: &str, status: Value) {
    api.patch_status(
        name,
        &PatchParams::apply(status::MANAGER),
        &Patch::Merge(json!({ "status": status })),
    )
    .await
    .expect("merge patch of status");
}

#[tokio::test]
async fn status_is_written_whole_by_one_server_side_apply() {
    let env = env_with_crd();
    let client = env.client().await;
    let ns = env.new_namespace("ssa");
    ok(
        "create",
        apply_stdin(env, &tenant_yaml("ssa", &ns, "DingTalk"), &[]),
    );
    let api: Api<Tenant> = Api::namespaced(client, &ns);

    let bound = status_of(json!({
        "mode": "DingTalk", "boundCorpId": "dingssa", "observedGeneration": 1,
        "directory": {"members": 3, "departments": 2, "progress": {"departments": 1, "members": 2}},
        "conditions": [ready("Reconciled")],
    }));
    status::write(&api, "ssa", &bound).await.expect("apply");
    assert_eq!(live_status(&api, "ssa").await, bound);

    // A status that leaves fields out: the API server removes them.
    let public = status_of(json!({
        "mode": "Public", "unbindReason": "Requested", "unboundAt": "2026-01-02T00:00:00Z",
        "conditions": [ready("PublicMode")],
    }));
    status::write(&api, "ssa", &public).await.expect("apply");
    assert_eq!(live_status(&api, "ssa").await, public);

    let live = api.get("ssa").await.expect("get");
    let ours: Vec<_> = live
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.manager.as_deref() == Some(status::MANAGER))
        .map(|e| (e.operation, e.subresource))
        .collect();
    assert_eq!(ours, [(Some("Apply".into()), Some("status".into()))]);
}

#[tokio::test]
async fn a_status_merge_patched_by_an_earlier_release_is_adopted_then_applied_whole() {
    let env = env_with_crd();
    let client = env.client().await;
    let ns = env.new_namespace("adopt");
    let api: Api<Tenant> = Api::namespaced(client, &ns);
    let old = json!({
        "mode": "DingTalk", "boundCorpId": "dingold",
        "directory": {"members": 3, "departments": 2, "progress": {"departments": 1, "members": 2}},
        "conditions": [ready("Reconciled"),
            {"type": "Reconciling", "status": "True", "reason": "Syncing", "message": "syncing",
             "lastTransitionTime": "2026-01-01T00:00:00Z"}],
    });
    let now = status_of(json!({
        "mode": "DingTalk", "boundCorpId": "dingold",
        "directory": {"members": 3, "departments": 2},
        "conditions": [ready("Reconciled")],
    }));
    for name in ["adopted", "not-adopted"] {
        ok(
            "create",
            apply_stdin(env, &tenant_yaml(name, &ns, "DingTalk"), &[]),
        );
        merge_patch_status(&api, name, old.clone()).await;
    }

    // Without the adoption, what the merge patch wrote outlives the apply:
    // the reason the controller adopts first.
    status::write(&api, "not-adopted", &now)
        .await
        .expect("apply");
    let stale = live_status(&api, "not-adopted").await;
    assert!(
        stale
            .directory
            .as_ref()
            .and_then(|d| d.progress.as_ref())
            .is_some(),
        "the merge-patched progress was expected to survive an apply without adoption: {stale:?}"
    );

    let tenant = api.get("adopted").await.expect("get");
    status::adopt_merge_patched_fields(&api, &tenant)
        .await
        .expect("adopt");
    status::write(&api, "adopted", &now).await.expect("apply");
    assert_eq!(live_status(&api, "adopted").await, now);

    // The adoption is conditional on the object read: a stale copy is refused.
    merge_patch_status(&api, "adopted", json!({"observedGeneration": 1})).await;
    let refused = status::adopt_merge_patched_fields(&api, &tenant).await;
    assert!(
        matches!(&refused, Err(kube::Error::Api(e)) if e.code == 409),
        "a stale adoption was not refused with 409: {refused:?}"
    );
}

#[tokio::test]
async fn a_later_sync_in_progress_is_written_as_reconciling_and_the_final_status_replaces_it() {
    let env = env_with_crd();
    let client = env.client().await;
    let ns = env.new_namespace("progress");
    ok(
        "create",
        apply_stdin(env, &tenant_yaml("long", &ns, "DingTalk"), &[]),
    );
    let api: Api<Tenant> = Api::namespaced(client, &ns);
    let ready_status = status_of(json!({
        "mode": "DingTalk", "boundCorpId": "dinglong", "observedGeneration": 1,
        "directory": {"members": 3, "departments": 2},
        "conditions": [ready("Reconciled")],
    }));
    status::write(&api, "long", &ready_status)
        .await
        .expect("apply");

    let writer =
        status::ProgressWriter::spawn(api.clone(), "long".into(), ready_status.clone(), Some(1));
    let report = writer.reporter();
    report(&SyncProgress {
        departments: 5,
        members: 1200,
        started_at: None,
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let written = loop {
        let s = live_status(&api, "long").await;
        if s.directory
            .as_ref()
            .and_then(|d| d.progress.as_ref())
            .is_some()
        {
            break s;
        }
        assert!(Instant::now() < deadline, "no progress written: {s:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let reconciling = written
        .conditions
        .iter()
        .find(|c| c.type_ == "Reconciling")
        .unwrap_or_else(|| panic!("no Reconciling condition while syncing: {written:?}"));
    assert_eq!(
        (reconciling.status.as_str(), reconciling.reason.as_str()),
        ("True", "Syncing")
    );
    assert!(
        reconciling.message.contains("1200 members"),
        "{}",
        reconciling.message
    );
    // Ready and the rest are as last written.
    assert_eq!(written.mode, ready_status.mode);
    assert_eq!(
        written.conditions.iter().find(|c| c.type_ == "Ready"),
        ready_status.conditions.first()
    );

    writer.stop().await;
    status::write(&api, "long", &ready_status)
        .await
        .expect("apply");
    assert_eq!(live_status(&api, "long").await, ready_status);
}

// ---------------------------------------------------------------------------
// RBAC: the manifests' ServiceAccount, with a token from the TokenRequest API

#[track_caller]
fn forbidden(what: &str, out: Output, verb: &str, resource: &str) {
    let err = refused(what, out);
    assert!(
        err.contains(&format!(
            "is forbidden: User \"system:serviceaccount:dingbind-system:dingbind\" \
             cannot {verb} resource \"{resource}\""
        )),
        "{what}: expected an RBAC refusal to {verb} {resource}, got: {err}"
    );
}

fn event_yaml(ns: &str, name: &str) -> String {
    format!(
        "apiVersion: events.k8s.io/v1
kind: Event
metadata: {{name: {name}.sync-1, namespace: {ns}}}
eventTime: \"2026-01-01T00:00:00.000000Z\"
reportingController: dingbind.dev/controller
reportingInstance: dingbind-0
action: Sync
reason: Synced
type: Normal
note: directory synced
regarding: {{apiVersion: dingbind.dev/v1alpha1, kind: Tenant, name: {name}, namespace: {ns}}}
"
    )
}

fn lease_yaml(ns: &str, holder: &str) -> String {
    format!(
        "apiVersion: coordination.k8s.io/v1
kind: Lease
metadata: {{name: dingbind-leader, namespace: {ns}}}
spec: {{holderIdentity: {holder}, leaseDurationSeconds: 15}}
"
    )
}

#[test]
fn the_service_account_can_do_what_the_controller_needs_and_no_more() {
    let env = env_with_crd();
    ok("kubectl apply -k manifests/", apply_manifests(env).clone());
    let ns = env.new_namespace("rbac");
    ok(
        "create tenant",
        apply_stdin(env, &tenant_yaml("acme", &ns, "DingTalk"), &[]),
    );
    ok(
        "create secret",
        env.kubectl([
            "create",
            "secret",
            "generic",
            "acme-dingtalk",
            "-n",
            &ns,
            "--from-literal=appKey=k",
            "--from-literal=appSecret=s",
        ]),
    );
    let sa = env.service_account_kubeconfig("dingbind-system", "dingbind");
    let as_sa = |args: &[&str]| env.kubectl_as(&sa, args);
    let as_sa_stdin = |stdin: &str, args: &[&str]| {
        // kubectl_stdin runs as the admin; pass the SA kubeconfig explicitly
        // (the later --kubeconfig flag wins).
        let mut all = vec!["--kubeconfig", sa.to_str().expect("utf-8 path")];
        all.extend_from_slice(args);
        env.kubectl_stdin(stdin, all)
    };

    // What it needs.
    let who = ok(
        "auth whoami",
        as_sa(&[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ]),
    );
    assert_eq!(who, "system:serviceaccount:dingbind-system:dingbind");
    let list = ok(
        "list tenants in all namespaces",
        as_sa(&["get", "tenants", "-A", "-o", "name"]),
    );
    assert!(list.contains("tenant.dingbind.dev/acme"), "{list}");
    ok(
        "watch tenants in all namespaces",
        as_sa(&[
            "get",
            "--raw",
            "/apis/dingbind.dev/v1alpha1/tenants?watch=true&timeoutSeconds=1",
        ]),
    );
    ok(
        "patch tenants/status",
        as_sa(&[
            "patch",
            "tenant",
            "acme",
            "-n",
            &ns,
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"mode":"DingTalk","observedGeneration":1}}"#,
        ]),
    );
    ok(
        "add the finalizer by patch",
        as_sa(&[
            "patch",
            "tenant",
            "acme",
            "-n",
            &ns,
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":["dingbind.dev/directory"]}}"#,
        ]),
    );
    ok(
        "read a secret",
        as_sa(&["get", "secret", "acme-dingtalk", "-n", &ns]),
    );
    ok("list secrets", as_sa(&["get", "secrets", "-n", &ns]));
    ok(
        "create an events.k8s.io Event",
        as_sa_stdin(&event_yaml(&ns, "acme"), &["create", "-f", "-"]),
    );
    ok(
        "create the Lease in dingbind-system",
        as_sa_stdin(
            &lease_yaml("dingbind-system", "pod-a"),
            &["create", "-f", "-"],
        ),
    );
    ok(
        "get the Lease",
        as_sa(&["get", "lease", "dingbind-leader", "-n", "dingbind-system"]),
    );
    let mut lease = get_json(env, &["lease", "dingbind-leader", "-n", "dingbind-system"]);
    lease["spec"]["holderIdentity"] = json!("pod-b");
    ok(
        "update the Lease in dingbind-system",
        as_sa_stdin(&lease.to_string(), &["replace", "-f", "-"]),
    );

    // What it must not do.
    forbidden(
        "create a Tenant",
        as_sa_stdin(
            &tenant_yaml("intruder", &ns, "Public"),
            &["create", "-f", "-"],
        ),
        "create",
        "tenants",
    );
    let mut live = get_json(env, &["tenant", "acme", "-n", &ns]);
    live["spec"]["suspend"] = json!(true);
    forbidden(
        "update a Tenant",
        as_sa_stdin(&live.to_string(), &["replace", "-f", "-"]),
        "update",
        "tenants",
    );
    forbidden(
        "delete a Tenant",
        as_sa(&["delete", "tenant", "acme", "-n", &ns, "--wait=false"]),
        "delete",
        "tenants",
    );
    forbidden(
        "create a Secret",
        as_sa(&[
            "create",
            "secret",
            "generic",
            "stolen",
            "-n",
            &ns,
            "--from-literal=a=b",
        ]),
        "create",
        "secrets",
    );
    forbidden(
        "patch a Secret",
        as_sa(&[
            "patch",
            "secret",
            "acme-dingtalk",
            "-n",
            &ns,
            "--type=merge",
            "-p",
            r#"{"stringData":{"appSecret":"x"}}"#,
        ]),
        "patch",
        "secrets",
    );
    forbidden(
        "delete a Secret",
        as_sa(&[
            "delete",
            "secret",
            "acme-dingtalk",
            "-n",
            &ns,
            "--wait=false",
        ]),
        "delete",
        "secrets",
    );
    forbidden(
        "create a Lease outside dingbind-system",
        as_sa_stdin(&lease_yaml(&ns, "pod-a"), &["create", "-f", "-"]),
        "create",
        "leases",
    );
    forbidden(
        "delete its own Lease",
        as_sa(&[
            "delete",
            "lease",
            "dingbind-leader",
            "-n",
            "dingbind-system",
            "--wait=false",
        ]),
        "delete",
        "leases",
    );
    // Nothing it was refused happened.
    assert_eq!(
        get_json(env, &["tenant", "acme", "-n", &ns])["spec"]["suspend"],
        false
    );
    ok(
        "the secret is still there",
        env.kubectl(["get", "secret", "acme-dingtalk", "-n", &ns]),
    );
}

// ---------------------------------------------------------------------------
// Differential check: `dingbind validate` against the real API server

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Verdict {
    Accept,
    Refuse,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Accept => "accept",
            Verdict::Refuse => "refuse",
        })
    }
}

/// A corpus case: `NAME.yaml` (a create), or `NAME/` holding `previous.yaml`
/// (with the status the controller wrote, if any) and `tenant.yaml` (an update).
/// NAME starts with the API server's expected verdict, `accept-` or `refuse-`.
struct Case {
    name: String,
    expected: Verdict,
    tenant: PathBuf,
    previous: Option<PathBuf>,
}

struct Outcome {
    /// `Err` when the command did not give a verdict at all (crash, bad setup).
    dingbind: Result<Verdict, String>,
    dingbind_says: String,
    /// The field paths of dingbind's errors.
    dingbind_fields: BTreeSet<String>,
    /// `Err` when the API server did not answer "accepted" or "invalid".
    apiserver: Result<Verdict, String>,
    apiserver_says: String,
    /// The field paths of the API server's causes.
    apiserver_fields: BTreeSet<String>,
}

fn corpus() -> Vec<Case> {
    let dir = repo("tests/fixtures/validate-corpus");
    let mut cases: Vec<Case> = std::fs::read_dir(&dir)
        .expect("tests/fixtures/validate-corpus")
        .map(|e| e.expect("dir entry").path())
        .filter_map(|path| {
            let name = path
                .file_name()?
                .to_str()?
                .trim_end_matches(".yaml")
                .to_string();
            let expected = if name.starts_with("accept-") {
                Verdict::Accept
            } else if name.starts_with("refuse-") {
                Verdict::Refuse
            } else {
                panic!("corpus case {name}: the name must start with accept- or refuse-")
            };
            Some(if path.is_dir() {
                Case {
                    name,
                    expected,
                    tenant: path.join("tenant.yaml"),
                    previous: Some(path.join("previous.yaml")),
                }
            } else {
                Case {
                    name,
                    expected,
                    tenant: path,
                    previous: None,
                }
            })
        })
        .collect();
    cases.sort_by(|a, b| (a.previous.is_some(), &a.name).cmp(&(b.previous.is_some(), &b.name)));
    cases
}

/// The message on one line, shortened (the API server lists causes on
/// several lines).
fn first_line(s: &str) -> String {
    let joined = s.split_whitespace().collect::<Vec<_>>().join(" ");
    let line = joined.as_str();
    let mut short: String = line.chars().take(150).collect();
    if short.len() < line.len() {
        short.push('…');
    }
    short
}

fn dingbind_verdict(case: &Case) -> (Result<Verdict, String>, String, BTreeSet<String>) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_dingbind"));
    cmd.arg("validate").arg("-f").arg(&case.tenant);
    if let Some(previous) = &case.previous {
        cmd.arg("--previous").arg(previous);
    }
    let out = cmd.output().expect("run dingbind validate");
    let stderr = text(&out.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains(": error: ")).collect();
    // The same check through the library, for the field path of each error.
    let findings = dingbind::validate::validate_paths(&case.tenant, case.previous.as_deref())
        .unwrap_or_else(|e| panic!("{}: validate_paths: {e}", case.name));
    let fields: BTreeSet<String> = findings
        .iter()
        .filter(|f| f.severity == dingbind::validate::Severity::Error)
        .map(|f| f.field.clone())
        .collect();
    let error_count = findings
        .iter()
        .filter(|f| f.severity == dingbind::validate::Severity::Error)
        .count();
    if error_count != errors.len() {
        return (
            Err(format!(
                "the command printed {} errors, the library found {error_count}: {stderr}",
                errors.len()
            )),
            first_line(&stderr),
            fields,
        );
    }
    match (out.status.success(), errors.is_empty()) {
        (true, true) => (Ok(Verdict::Accept), String::new(), fields),
        (false, false) => (
            Ok(Verdict::Refuse),
            errors
                .iter()
                .map(|l| l.split_once(": error: ").map_or(*l, |(_, m)| m))
                .collect::<Vec<_>>()
                .join(" | "),
            fields,
        ),
        _ => (
            Err(format!("no verdict ({}): {stderr}", out.status)),
            first_line(&stderr),
            fields,
        ),
    }
}

/// What the API server answered to one write: accepted (2xx), or refused as
/// invalid with the field paths it names. Invalid is HTTP 422 (`Invalid`,
/// each cause naming a field), or for an unknown field the strict decoding
/// refusal (HTTP 400 `BadRequest`, `strict decoding error: unknown field
/// "PATH"`, which is what `kubectl` gets too). Any other answer (a conflict, a
/// missing namespace, a server error) is no verdict at all.
fn apiserver_answer(
    result: Result<String, kube::Error>,
) -> (Result<Verdict, String>, String, BTreeSet<String>) {
    let status = match result {
        Ok(_) => return (Ok(Verdict::Accept), String::new(), BTreeSet::new()),
        Err(kube::Error::Api(status)) => status,
        Err(e) => {
            return (
                Err(format!("no answer: {e}")),
                String::new(),
                BTreeSet::new(),
            );
        }
    };
    let says = first_line(&status.message);
    if status.code == 422 && status.reason == "Invalid" {
        let fields = status
            .details
            .iter()
            .flat_map(|d| &d.causes)
            // Not a finding: the note that CEL rules were skipped because the
            // schema already refused the object.
            .filter(|c| !c.message.contains("some validation rules were not checked"))
            // A cause without a field that names one in its message (the CEL
            // type check of a value: "... must be of type integer ... in PATH").
            .map(|c| match c.message.rsplit_once(" in ") {
                Some((_, path)) if c.field == "<nil>" && path.starts_with("spec.") => {
                    path.to_string()
                }
                _ => c.field.clone(),
            })
            .collect();
        return (Ok(Verdict::Refuse), says, fields);
    }
    if status.code == 400 && status.message.contains("strict decoding error") {
        let fields = status
            .message
            .split("unknown field \"")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .map(str::to_string)
            .collect::<BTreeSet<_>>();
        if !fields.is_empty() {
            return (Ok(Verdict::Refuse), says, fields);
        }
    }
    (
        Err(format!(
            "not an invalid answer: HTTP {} {}: {}",
            status.code, status.reason, status.message
        )),
        says,
        BTreeSet::new(),
    )
}

/// A create (`dry_run`) or replace of a Tenant through the API, with the
/// field validation kubectl asks for (`fieldValidation=Strict`).
async fn write_tenant(
    client: &kube::Client,
    ns: &str,
    body: &Value,
    replace: Option<&str>,
) -> Result<String, kube::Error> {
    let collection = format!("/apis/dingbind.dev/v1alpha1/namespaces/{ns}/tenants");
    let bytes = serde_json::to_vec(body).expect("a JSON body");
    let request = kube::core::Request::new(collection);
    let mut req = match replace {
        None => request.create(
            &kube::api::PostParams {
                dry_run: true,
                ..Default::default()
            },
            bytes,
        ),
        Some(name) => request.replace(name, &kube::api::PostParams::default(), bytes),
    }
    .expect("a request");
    let sep = if req.uri().query().is_some() {
        '&'
    } else {
        '?'
    };
    *req.uri_mut() = format!("{}{sep}fieldValidation=Strict", req.uri())
        .parse()
        .expect("a URI");
    client.request_text(req).await
}

fn yaml_file_as_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn apiserver_verdict(
    env: &KubeEnv,
    rt: &tokio::runtime::Runtime,
    client: &kube::Client,
    case: &Case,
    create_ns: &str,
) -> (Result<Verdict, String>, String, BTreeSet<String>) {
    let Some(previous) = &case.previous else {
        // A create, validated and admitted but not stored.
        let body = yaml_file_as_json(&case.tenant);
        return apiserver_answer(rt.block_on(write_tenant(client, create_ns, &body, None)));
    };
    // An update, for real, in a namespace of its own: create the previous
    // version, write its status through the status subresource (as the
    // controller did), then replace it with the new version (edit-style PUT).
    let ns = env.new_namespace("corpus-update");
    let mut old = yaml_file_as_json(previous);
    let status = old.as_object_mut().and_then(|o| o.remove("status"));
    let name = old["metadata"]["name"]
        .as_str()
        .expect("metadata.name")
        .to_string();
    let out = env.kubectl_stdin(&old.to_string(), ["create", "-n", &ns, "-f", "-"]);
    if !out.status.success() {
        return (
            Err(format!("creating previous.yaml: {}", text(&out.stderr))),
            String::new(),
            BTreeSet::new(),
        );
    }
    if let Some(status) = status {
        let patch = json!({ "status": status }).to_string();
        let out = env.kubectl([
            "patch",
            "tenant",
            &name,
            "-n",
            &ns,
            "--subresource=status",
            "--type=merge",
            "-p",
            &patch,
        ]);
        if !out.status.success() {
            return (
                Err(format!(
                    "writing the previous status: {}",
                    text(&out.stderr)
                )),
                String::new(),
                BTreeSet::new(),
            );
        }
    }
    let live = get_json(env, &["tenant", &name, "-n", &ns]);
    let mut new = yaml_file_as_json(&case.tenant);
    new["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"].clone();
    new["metadata"]["namespace"] = json!(ns);
    apiserver_answer(rt.block_on(write_tenant(client, &ns, &new, Some(&name))))
}

#[test]
fn dingbind_validate_agrees_with_the_api_server_on_the_whole_corpus() {
    let env = env_with_crd();
    let cases = corpus();
    assert!(
        cases.len() >= 30,
        "the corpus has only {} cases",
        cases.len()
    );
    let create_ns = env.new_namespace("corpus");
    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    let client = rt.block_on(env.client());

    // A few workers: each case is a handful of short kubectl/dingbind runs.
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut outcomes: Vec<Option<Outcome>> = (0..cases.len()).map(|_| None).collect();
    let slots: Vec<std::sync::Mutex<&mut Option<Outcome>>> =
        outcomes.iter_mut().map(std::sync::Mutex::new).collect();
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some(case) = cases.get(i) else { break };
                    let (dingbind, dingbind_says, dingbind_fields) = dingbind_verdict(case);
                    let (apiserver, apiserver_says, apiserver_fields) =
                        apiserver_verdict(env, &rt, &client, case, &create_ns);
                    **slots[i].lock().expect("slot") = Some(Outcome {
                        dingbind,
                        dingbind_says,
                        dingbind_fields,
                        apiserver,
                        apiserver_says,
                        apiserver_fields,
                    });
                }
            });
        }
    });
    drop(slots);

    let show = |v: &Result<Verdict, String>| match v {
        Ok(v) => v.to_string(),
        Err(_) => "ERROR".to_string(),
    };
    let width = cases.iter().map(|c| c.name.len()).max().unwrap_or(4).max(4);
    let mut table = format!(
        "\n{:<width$}  {:<8}  {:<8}  {:<9}  {:<5}\n",
        "case", "expected", "dingbind", "apiserver", "agree"
    );
    let mut disagreements = Vec::new();
    let mut mislabelled = Vec::new();
    for (case, outcome) in cases.iter().zip(&outcomes) {
        let o = outcome.as_ref().expect("every case ran");
        // The same verdict, and for a refusal the same field paths.
        let agree = matches!((&o.dingbind, &o.apiserver), (Ok(a), Ok(b)) if a == b)
            && o.dingbind_fields == o.apiserver_fields;
        table.push_str(&format!(
            "{:<width$}  {:<8}  {:<8}  {:<9}  {:<5}\n",
            case.name,
            case.expected.to_string(),
            show(&o.dingbind),
            show(&o.apiserver),
            if agree { "yes" } else { "NO" }
        ));
        if !agree {
            disagreements.push(format!(
                "{}:\n  dingbind:  {:?} fields {:?}: {}\n  apiserver: {:?} fields {:?}: {}",
                case.name,
                o.dingbind,
                o.dingbind_fields,
                o.dingbind_says,
                o.apiserver,
                o.apiserver_fields,
                o.apiserver_says
            ));
        }
        if o.apiserver != Ok(case.expected) {
            mislabelled.push(format!(
                "{}: apiserver {:?}: {}",
                case.name, o.apiserver, o.apiserver_says
            ));
        }
    }
    let agreed = cases.len() - disagreements.len();
    table.push_str(&format!("{agreed}/{} cases agree\n", cases.len()));
    // Past libtest's capture: the table belongs in every CI log.
    let _ = std::io::Write::write_all(&mut std::io::stderr(), table.as_bytes());
    for (case, outcome) in cases.iter().zip(&outcomes) {
        let o = outcome.as_ref().expect("every case ran");
        println!(
            "{}\n  dingbind:  {:?} {}\n  apiserver: {:?} {}",
            case.name, o.dingbind_fields, o.dingbind_says, o.apiserver_fields, o.apiserver_says
        );
    }
    assert!(
        disagreements.is_empty(),
        "dingbind validate and the API server disagree on {} case(s):\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );
    assert!(
        mislabelled.is_empty(),
        "the corpus expects another verdict from the API server (fix the case's name or content):\n{}",
        mislabelled.join("\n")
    );
}

/// An UnbindRecord named after tenant `name` of namespace `ns`.
fn unbind_record_yaml(ns: &str, name: &str, corp: &str) -> String {
    format!(
        "apiVersion: dingbind.dev/v1alpha1\nkind: UnbindRecord\nmetadata:\n  name: {ns}.{name}\nspec:\n  tenantNamespace: {ns}\n  tenantName: {name}\n  corpId: {corp}\n  agentId: 1001\n  unboundAt: \"2026-01-02T03:04:05Z\"\n  reason: Requested\n"
    )
}

#[test]
fn unbind_records_are_write_once_for_everyone_but_the_break_glass_group() {
    let env = KubeEnv::shared();
    ok("kubectl apply -k manifests/", apply_manifests(env).clone());
    let ns = env.new_namespace("records");
    let name = format!("{ns}.acme");
    ok(
        "the admin creates a record",
        apply_stdin(env, &unbind_record_yaml(&ns, "acme", "dingacme"), &[]),
    );
    let table = ok(
        "kubectl get unbindrecords",
        env.kubectl(["get", "unbindrecords", &name]),
    );
    for column in ["NAMESPACE", "TENANT", "CORP", "REASON", "UNBOUND AT"] {
        assert!(table.contains(column), "{column} in\n{table}");
    }
    assert!(
        table.contains("dingacme") && table.contains("Requested"),
        "{table}"
    );

    // Changing the spec: refused by the CRD's own rule, for everyone.
    let err = refused(
        "the admin changes the record",
        apply_stdin(env, &unbind_record_yaml(&ns, "acme", "dingother"), &[]),
    );
    assert!(err.contains("write-once"), "{err}");
    // Deleting: refused by the admission policy (which loads asynchronously).
    let err = eventually("the admission policy refuses a delete", || {
        let out = env.kubectl(["delete", "unbindrecord", &name, "--wait=false"]);
        if out.status.success() {
            // Loaded too late for this one: put it back and try again.
            ok(
                "recreate",
                apply_stdin(env, &unbind_record_yaml(&ns, "acme", "dingacme"), &[]),
            );
            return Err("deleted".into());
        }
        Ok(text(&out.stderr))
    });
    assert!(err.contains("only the dingbind:break-glass group"), "{err}");
    let err = refused(
        "the admin labels the record",
        env.kubectl(["label", "unbindrecord", &name, "x=y"]),
    );
    assert!(err.contains("break-glass"), "{err}");
    let err = refused(
        "the admin deletes the UnbindRecord CRD",
        env.kubectl([
            "delete",
            "crd",
            "unbindrecords.dingbind.dev",
            "--dry-run=server",
        ]),
    );
    assert!(err.contains("break-glass"), "{err}");

    // The controller's ServiceAccount: create, get, list, watch, and nothing else.
    let sa = env.service_account_kubeconfig("dingbind-system", "dingbind");
    for verb in ["create", "get", "list", "watch"] {
        let out = ok(
            verb,
            env.kubectl_as(&sa, ["auth", "can-i", verb, "unbindrecords.dingbind.dev"]),
        );
        assert_eq!(out.trim(), "yes", "{verb}");
    }
    for verb in ["update", "patch", "delete", "deletecollection"] {
        let out = env.kubectl_as(&sa, ["auth", "can-i", verb, "unbindrecords.dingbind.dev"]);
        assert_eq!(text(&out.stdout).trim(), "no", "{verb}");
    }
    let err = refused(
        "the SA deletes a record",
        env.kubectl_as(&sa, ["delete", "unbindrecord", &name]),
    );
    assert!(err.contains("forbidden"), "{err}");

    // The break-glass group may.
    ok(
        "a break-glass member deletes the record",
        env.kubectl([
            "delete",
            "unbindrecord",
            &name,
            "--as=oncall@example.com",
            "--as-group=dingbind:break-glass",
            "--as-group=system:masters",
        ]),
    );
}
