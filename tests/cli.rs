//! The `dingbind` binary's offline commands, and the deployment manifests.

use std::process::{Command, Output};

fn dingbind(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dingbind"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run dingbind")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn crd_command_prints_and_writes_the_checked_in_crds() {
    let out = dingbind(&["crd"]);
    assert!(out.status.success());
    let read = |file: &str| {
        std::fs::read_to_string(format!("{}/crds/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    };
    let (tenant, record) = (read("tenant.yaml"), read("unbindrecord.yaml"));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("{tenant}---\n{record}")
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dingbind(&["crd", "--write", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    for (file, checked_in) in [("tenant.yaml", &tenant), ("unbindrecord.yaml", &record)] {
        assert_eq!(
            &std::fs::read_to_string(dir.path().join(file)).unwrap(),
            checked_in,
            "{file}"
        );
    }
}

#[test]
fn validate_accepts_the_examples() {
    let out = dingbind(&["validate", "-f", "examples/tenants"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn validate_rejects_a_bad_scope_naming_file_object_and_field() {
    let out = dingbind(&["validate", "-f", "tests/fixtures/validate/bad-scope.yaml"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("tests/fixtures/validate/bad-scope.yaml"),
        "{err}"
    );
    assert!(err.contains("Tenant tenants/globex"), "{err}");
    assert!(err.contains("spec.dingtalk.visibleScope"), "{err}");
    assert!(err.contains("cannot combine allEmployees"), "{err}");
}

#[test]
fn validate_rejects_a_return_to_dingtalk_after_the_unbind() {
    let out = dingbind(&[
        "validate",
        "-f",
        "tests/fixtures/validate/rebind.yaml",
        "--previous",
        "tests/fixtures/validate/unbound.yaml",
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("spec.mode: a tenant that left DingTalk integration mode cannot return to it"),
        "{err}"
    );
}

#[test]
fn validate_reports_a_missing_path_clearly() {
    let out = dingbind(&["validate", "-f", "does/not/exist.yaml"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("does/not/exist.yaml"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn manifests_render_with_kustomize() {
    let out = Command::new("kubectl")
        .args(["kustomize", "manifests/"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("kubectl is needed to render manifests/");
    assert!(out.status.success(), "{}", stderr(&out));
    let rendered = String::from_utf8(out.stdout).unwrap();
    for kind in [
        "Namespace",
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "Role",
        "Deployment",
        "Service",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "NetworkPolicy",
    ] {
        assert!(
            rendered.contains(&format!("kind: {kind}\n")),
            "missing {kind}"
        );
    }
}

#[test]
fn rbac_has_no_wildcards_and_secrets_are_read_only() {
    let rbac = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/manifests/rbac.yaml"))
        .unwrap();
    assert!(!rbac.contains('*'), "RBAC must not use wildcards");
    for doc in serde_yaml::Deserializer::from_str(&rbac) {
        let v: serde_yaml::Value = serde::Deserialize::deserialize(doc).unwrap();
        for rule in v["rules"].as_sequence().into_iter().flatten() {
            // A rule over non-resource URLs (/metrics) names no resources.
            let resources: Vec<&str> = rule["resources"]
                .as_sequence()
                .into_iter()
                .flatten()
                .filter_map(|r| r.as_str())
                .collect();
            let verbs: Vec<&str> = rule["verbs"]
                .as_sequence()
                .unwrap()
                .iter()
                .filter_map(|r| r.as_str())
                .collect();
            if resources.contains(&"secrets") {
                assert!(
                    verbs.iter().all(|v| ["get", "list", "watch"].contains(v)),
                    "secrets verbs: {verbs:?}"
                );
            }
            if resources.contains(&"tenants") {
                assert!(
                    !verbs.contains(&"update") && !verbs.contains(&"create"),
                    "tenant verbs: {verbs:?}"
                );
            }
        }
    }
}

#[test]
fn deployment_runs_locked_down() {
    let d = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/manifests/deployment.yaml"
    ))
    .unwrap();
    let v: serde_yaml::Value = serde_yaml::from_str(&d).unwrap();
    let pod = &v["spec"]["template"]["spec"];
    assert_eq!(
        pod["securityContext"]["runAsNonRoot"],
        serde_yaml::Value::Bool(true)
    );
    let c = &pod["containers"][0];
    assert_eq!(
        c["securityContext"]["readOnlyRootFilesystem"],
        serde_yaml::Value::Bool(true)
    );
    assert_eq!(
        c["securityContext"]["allowPrivilegeEscalation"],
        serde_yaml::Value::Bool(false)
    );
    assert!(c["resources"]["limits"]["memory"].is_string());
    assert!(c["readinessProbe"]["httpGet"]["path"].as_str() == Some("/readyz"));
    assert!(c["livenessProbe"]["httpGet"]["path"].as_str() == Some("/healthz"));
}

/// Several processes creating the same SQLite file at the same instant (e.g.
/// `dingbind status` while `dingbind dev` starts): each must open it.
#[test]
fn processes_opening_a_new_sqlite_store_at_once_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..20 {
        let url = format!(
            "sqlite://{}",
            dir.path().join(format!("new-{round}.db")).display()
        );
        let children: Vec<_> = (0..8)
            .map(|_| {
                Command::new(env!("CARGO_BIN_EXE_dingbind"))
                    .args(["status", "--store", &url, "-o", "json"])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("run dingbind")
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "round {round}: {}", stderr(&out));
        }
    }
}

/// `dingbind validate -f DIR` on a scratch folder.
fn validate_dir(dir: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dingbind"))
        .args(["validate", "-f"])
        .arg(dir)
        .output()
        .expect("run dingbind validate")
}

#[test]
fn validate_does_not_follow_a_symlinked_folder_that_loops_back() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("tenants");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/examples/tenants/acme.yaml"),
        dir.join("acme.yaml"),
    )
    .unwrap();
    std::os::unix::fs::symlink(&dir, dir.join("loop")).unwrap();
    std::os::unix::fs::symlink(root.path(), dir.join("up")).unwrap();
    let out = validate_dir(&dir);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn validate_refuses_a_deeply_nested_file_and_a_huge_one_naming_them() {
    let root = tempfile::tempdir().unwrap();
    let deep = root.path().join("deep.yaml");
    std::fs::write(
        &deep,
        format!(
            "apiVersion: dingbind.dev/v1alpha1\nkind: Tenant\nspec: {}",
            "[".repeat(200_000)
        ),
    )
    .unwrap();
    let out = validate_dir(&deep);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("deep.yaml") && err.contains("nested deeper than 64"),
        "{err}"
    );

    let huge = root.path().join("huge.yaml");
    let mut text =
        String::from("apiVersion: dingbind.dev/v1alpha1\nkind: Tenant\nmetadata: {name: a}\n");
    text.push_str(&format!("# {}\n", "x".repeat(2 << 20)));
    std::fs::write(&huge, text).unwrap();
    let out = validate_dir(&huge);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("huge.yaml") && err.contains("at most 1 MiB"),
        "{err}"
    );
}

#[test]
fn the_namespaced_install_renders_without_cluster_wide_tenant_or_secret_access() {
    let out = Command::new("kubectl")
        .args(["kustomize", "examples/namespaced-install"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("kubectl is needed to render the namespaced install");
    assert!(out.status.success(), "{}", stderr(&out));
    let rendered = String::from_utf8(out.stdout).unwrap();
    for doc in serde_yaml::Deserializer::from_str(&rendered) {
        let v: serde_yaml::Value = serde::Deserialize::deserialize(doc).unwrap();
        if v["kind"] == "ClusterRole" {
            let text = serde_yaml::to_string(&v["rules"]).unwrap();
            for resource in ["secrets", "tenants", "events"] {
                assert!(
                    !text.contains(resource),
                    "a ClusterRole grants {resource}:\n{text}"
                );
            }
        }
    }
    assert!(rendered.contains("--namespace=tenants"), "{rendered}");
    assert!(rendered.contains("kind: Role\n"));
}
