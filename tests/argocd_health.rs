//! The Argo CD health check (manifests/argocd/tenant-health.lua), run in Lua 5.1
//! as Argo CD runs it.

use mlua::{Lua, LuaSerdeExt, Table};
use serde_json::{Value, json};

const SCRIPT: &str = include_str!("../manifests/argocd/tenant-health.lua");

fn health(obj: Value) -> (String, String) {
    let lua = Lua::new();
    let value = lua.to_value(&obj).expect("tenant converts to Lua");
    lua.globals().set("obj", value).expect("set obj");
    let hs: Table = lua.load(SCRIPT).eval().expect("script runs");
    (
        hs.get("status").expect("status"),
        hs.get::<Option<String>>("message")
            .expect("message")
            .unwrap_or_default(),
    )
}

fn tenant(generation: i64, observed: i64, ready: &str, reason: &str) -> Value {
    json!({
        "metadata": {"name": "acme", "generation": generation},
        "spec": {"mode": "DingTalk"},
        "status": {
            "observedGeneration": observed,
            "conditions": [
                {"type": "Bound", "status": "True", "reason": "Bound", "message": ""},
                {"type": "Ready", "status": ready, "reason": reason, "message": "details"}
            ]
        }
    })
}

#[test]
fn ready_tenant_is_healthy() {
    assert_eq!(health(tenant(2, 2, "True", "Reconciled")).0, "Healthy");
}

#[test]
fn tenant_without_status_is_progressing() {
    let (status, message) =
        health(json!({"metadata": {"generation": 1}, "spec": {"mode": "DingTalk"}}));
    assert_eq!(status, "Progressing");
    assert!(message.contains("Waiting"));
}

#[test]
fn stale_observed_generation_is_progressing() {
    assert_eq!(health(tenant(3, 2, "True", "Reconciled")).0, "Progressing");
}

#[test]
fn reasons_that_need_a_person_are_degraded() {
    for reason in [
        "RebindForbidden",
        "AppStillEnabled",
        "CreatorAccountIncomplete",
        "DeletionThresholdExceeded",
        "InvalidCredentials",
    ] {
        let (status, message) = health(tenant(1, 1, "False", reason));
        assert_eq!(status, "Degraded", "{reason}");
        assert!(message.starts_with(reason), "{message}");
    }
}

#[test]
fn transient_failures_are_progressing() {
    assert_eq!(
        health(tenant(1, 1, "False", "DingTalkUnavailable")).0,
        "Progressing"
    );
    assert_eq!(health(tenant(1, 1, "Unknown", "Syncing")).0, "Progressing");
}

#[test]
fn suspended_tenant_is_suspended() {
    let mut t = tenant(1, 1, "True", "Reconciled");
    t["spec"]["suspend"] = json!(true);
    assert_eq!(health(t).0, "Suspended");
}
