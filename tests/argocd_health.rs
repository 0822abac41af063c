//! The Argo CD health check (manifests/argocd/tenant-health.lua), run in Lua 5.1
//! as Argo CD runs it.

use dingbind::{
    api::{TenantStatus, condition, reason},
    core::{conditions, kstatus},
};
use jiff::Timestamp;
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

/// A Tenant whose status dingbind finished with `Ready` as given: the
/// kstatus conditions are the ones core decides from it.
fn finished(ready: bool, why: &str) -> Value {
    let now = Timestamp::from_second(1_800_000_000).unwrap();
    let mut status = TenantStatus {
        observed_generation: Some(1),
        ..Default::default()
    };
    let c = &mut status.conditions;
    conditions::set(c, condition::READY, ready, why, "details", Some(1), now);
    let progress = kstatus::progress(&status);
    kstatus::set(&mut status.conditions, &progress, Some(1), now);
    json!({
        "metadata": {"name": "acme", "generation": 1},
        "spec": {"mode": "DingTalk"},
        "status": status,
    })
}

/// Argo CD reads the states kstatus reads: Stalled is Degraded, Reconciling
/// is Progressing, and a settled, ready Tenant is Healthy.
#[test]
fn argo_cd_follows_the_kstatus_conditions_for_every_ready_state() {
    let table = [
        (true, reason::RECONCILED, "Healthy"),
        (true, reason::PUBLIC_MODE, "Healthy"),
        (false, reason::DINGTALK_UNAVAILABLE, "Progressing"),
        (false, reason::APP_STILL_ENABLED, "Progressing"),
        (false, reason::CREATOR_ACCOUNT_INCOMPLETE, "Progressing"),
        (false, reason::STORE_UNAVAILABLE, "Progressing"),
        (false, reason::INVALID_CREDENTIALS, "Degraded"),
        (false, reason::SECRET_NOT_FOUND, "Degraded"),
        (false, reason::CORP_MISMATCH, "Degraded"),
        (false, reason::APP_NOT_FOUND, "Degraded"),
        (false, reason::REBIND_FORBIDDEN, "Degraded"),
        (false, reason::DELETION_THRESHOLD_EXCEEDED, "Degraded"),
        (false, reason::BINDING_CHANGED, "Degraded"),
        (false, reason::APP_STATE_UNPROVED, "Degraded"),
        (false, reason::TRIAL_EXPIRED, "Degraded"),
    ];
    for (ready, why, expected) in table {
        let (status, message) = health(finished(ready, why));
        assert_eq!(status, expected, "Ready={ready} {why}");
        assert_eq!(message, format!("{why}: details"));
    }
}

#[test]
fn the_stalled_condition_decides_over_ready() {
    let mut t = tenant(1, 1, "False", "DingTalkUnavailable");
    let conditions = t["status"]["conditions"].as_array_mut().unwrap();
    conditions.push(json!({"type": "Stalled", "status": "True", "reason": "CorpMismatch", "message": "other corp"}));
    assert_eq!(
        health(t),
        (
            "Degraded".to_string(),
            "CorpMismatch: other corp".to_string()
        )
    );
}

/// A status written before dingbind set `Stalled`: the same reasons, read from `Ready`.
#[test]
fn without_kstatus_conditions_the_reasons_that_need_a_person_are_degraded() {
    for reason in kstatus::NEEDS_A_PERSON {
        let (status, message) = health(tenant(1, 1, "False", reason));
        assert_eq!(status, "Degraded", "{reason}");
        assert!(message.starts_with(reason), "{message}");
    }
    for reason in [
        reason::APP_STILL_ENABLED,
        reason::CREATOR_ACCOUNT_INCOMPLETE,
    ] {
        assert_eq!(
            health(tenant(1, 1, "False", reason)).0,
            "Progressing",
            "an unbind waiting on a precondition is under way: {reason}"
        );
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
