//! Checks against a real kube-apiserver and etcd (tests/support/kube_env.rs):
//! the CRD, the examples and manifests, the transition rule that keeps an
//! unbound tenant out of DingTalk mode, the operator's RBAC, and the
//! differential check of `dingbind validate` against the API server.
//!
//! One API server for the whole binary; a namespace per test.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use dingbind::api::{REBIND_FORBIDDEN_MESSAGE, Tenant};
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

#[test]
fn the_manifests_apply_as_a_whole() {
    let env = env_with_crd();
    let out = ok(
        "kubectl apply -k manifests/",
        env.kubectl([
            "apply",
            "-k",
            repo("manifests").to_str().expect("utf-8 path"),
        ]),
    );
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
fn back_to_dingtalk_by_every_path(
    env: &KubeEnv,
    ns: &str,
    name: &str,
) -> Vec<(&'static str, Output)> {
    let dingtalk = tenant_yaml(name, ns, "DingTalk");
    let mut results = Vec::new();
    // 1. kubectl apply (client-side, three-way merge patch)
    results.push(("kubectl apply", apply_stdin(env, &dingtalk, &[])));
    // 2. kubectl edit-style: get, change, replace (PUT with resourceVersion)
    let mut live = get_json(env, &["tenant", name, "-n", ns]);
    live["spec"]["mode"] = json!("DingTalk");
    results.push((
        "kubectl replace",
        env.kubectl_stdin(&live.to_string(), ["replace", "-f", "-"]),
    ));
    // 3. JSON patch
    results.push((
        "kubectl patch --type=json",
        env.kubectl([
            "patch",
            "tenant",
            name,
            "-n",
            ns,
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/spec/mode","value":"DingTalk"}]"#,
        ]),
    ));
    // 4. server-side apply (forcing conflicts, so only validation can refuse)
    results.push((
        "kubectl apply --server-side",
        apply_stdin(
            env,
            &dingtalk,
            &[
                "--server-side",
                "--force-conflicts",
                "--field-manager=gitops",
            ],
        ),
    ));
    results
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
    ok(
        "create",
        apply_stdin(env, &tenant_yaml("acme", &ns, "DingTalk"), &[]),
    );
    write_status(&client, &ns, "acme", json!({"mode": "DingTalk"})).await;
    // Each path: request the unbind (status.mode stays DingTalk: a precondition
    // is missing), then withdraw the request.
    let paths = [
        "kubectl apply",
        "kubectl replace",
        "kubectl patch --type=json",
        "kubectl apply --server-side",
    ];
    for (i, wanted) in paths.iter().enumerate() {
        set_public(env, &ns, "acme");
        assert_eq!(spec_mode(env, &ns, "acme"), "Public");
        let (path, out) = back_to_dingtalk_by_every_path(env, &ns, "acme").remove(i);
        assert_eq!(path, *wanted);
        ok(path, out);
        assert_eq!(spec_mode(env, &ns, "acme"), "DingTalk", "after {path}");
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
