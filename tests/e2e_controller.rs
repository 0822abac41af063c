//! End to end: the real `dingbind controller` binary against the real
//! kube-apiserver and etcd (tests/support/kube_env.rs), the DingTalk simulator
//! (in process, one per scenario) and the directory store (SQLite always,
//! PostgreSQL too when `DINGBIND_TEST_POSTGRES_URL` is set).
//!
//! Each scenario gets its own namespace, simulator, store and controller
//! process(es). A controller runs with the token of the manifests'
//! ServiceAccount (`manifests/rbac.yaml` is applied as is), scoped to the
//! scenario's namespace with `--namespace` and holding a Lease of its own, so
//! scenarios run in parallel without seeing each other. The processes are
//! killed when the scenario ends, however it ends.
//!
//! Waiting is bounded ([`DEADLINE`], polling every 200 ms): a deadline turns a
//! hang into a failure, it is not a timed assertion. A failing scenario prints
//! its Tenants (spec and status), the Events and each controller's log tail.
//!
//! Run one: `cargo test --test e2e_controller bind_and_sync`.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dingbind::api::{
    APPROVE_DELETIONS, BINDING_IDENTITY_MESSAGE, EventDelivery, Mode, REBIND_FORBIDDEN_MESSAGE,
    SYNC_REQUESTED_AT, TRIAL_RULE_MESSAGE, Tenant, UnbindReason, condition, reason, record_name,
};
use dingbind::core::directory::Directory;
use dingbind::sim::generate::{GenSpec, generate};
use dingbind::sim::org_file::CorpSpec;
use dingbind::store::{LedgerEntry, SyncOutcome};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use serde_json::{Value, json};
use support::e2e::*;

/// Runs `f` on PostgreSQL if enabled (else notes that it did not).
macro_rules! on_postgres {
    ($f:expr) => {
        if pg_admin_url().is_some() {
            $f(Backend::Postgres).await;
        }
    };
}

async fn bind_and_sync(backend: Backend) {
    let corp = "dingbind1";
    let mut s = Scenario::new("bind", backend, vec![small_corp(corp)]).await;
    s.start_controller(ControllerOpts::default());
    s.credentials("acme", corp).await;
    let scope = json!({"departments": [2, 4], "users": ["qian"]});
    s.apply_ok("acme", dingtalk_spec("acme", corp, scope)).await;

    let t = s
        .wait_tenant("acme", "Ready and synced", ready_and_synced)
        .await;
    let expected = userids_in_scope(
        &s.sim_corp(corp).await,
        &[2, 4],
        &["qian"],
        &format!("owner@{corp}.example"),
    );
    assert_eq!(expected, strings(&["li", "qian", "sun", "zhang", "zhao"]));

    // The directory (store) equals the scope; the creator is not listed.
    let dir = s.directory("acme").await;
    assert_eq!(member_ids(&dir), expected);
    assert!(!dir.members.contains_key("owner"), "the creator is listed");
    assert_eq!(dept_ids(&dir), set(&[2, 4]));
    assert_eq!(
        dir.members["li"].dept_ids,
        vec![2],
        "departments cut to the scope"
    );
    assert_eq!(
        dir.members["zhang"].title.as_deref(),
        Some("Account Manager")
    );

    // The app's scope in DingTalk equals the spec.
    assert_eq!(s.sim_scope(corp).await, (set(&[2, 4]), strings(&["qian"])));

    // Status: counts, conditions, mode.
    let st = t.status.as_ref().expect("status");
    assert_eq!(st.mode, Some(Mode::DingTalk));
    assert_eq!(st.bound_corp_id.as_deref(), Some(corp));
    let d = st.directory.as_ref().expect("status.directory");
    assert_eq!((d.members, d.departments), (5, 2));
    assert_eq!(d.pending_deletions, 0);
    let vs = st.visible_scope.as_ref().expect("status.visibleScope");
    assert_eq!(
        (set(&vs.dept_ids), set(&vs.user_ids)),
        (set(&[2, 4]), strings(&["qian"]))
    );
    expect_cond(&t, condition::BOUND, "True", reason::BOUND).unwrap();
    expect_cond(&t, condition::SCOPE_IN_SYNC, "True", reason::SCOPE_UPDATED)
        .or_else(|_| expect_cond(&t, condition::SCOPE_IN_SYNC, "True", reason::SCOPE_MATCHES))
        .unwrap();
    assert!(
        matches!(s.ledger("acme").await.as_slice(), [LedgerEntry::Bound { corp_id, .. }] if corp_id == corp),
        "the ledger records the binding"
    );
    s.wait_event("acme", "Normal", reason::SCOPE_UPDATED).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s01_bind_and_sync_mirrors_the_scope_on_sqlite() {
    bind_and_sync(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s01_bind_and_sync_mirrors_the_scope_on_postgres() {
    on_postgres!(bind_and_sync);
}

// ===========================================================================
// 2. Scope change

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s02_scope_change_is_pushed_to_dingtalk_and_the_directory_follows() {
    let corp = "dingbind2";
    let mut s = Scenario::new("scope", Backend::Sqlite, vec![small_corp(corp)]).await;
    s.start_controller(ControllerOpts::default());
    s.credentials("acme", corp).await;
    let mut spec = dingtalk_spec("acme", corp, json!({"departments": [2]}));
    spec["sync"]["maxDeletions"] = json!(10);
    s.apply_ok("acme", spec.clone()).await;
    s.wait_tenant("acme", "Ready", ready_and_synced).await;
    assert_eq!(
        member_ids(&s.directory("acme").await),
        strings(&["li", "zhang"])
    );
    assert_eq!(s.sim_scope(corp).await.0, set(&[2]));

    // Sales out; Engineering (with Platform) and Finance in.
    spec["dingtalk"]["visibleScope"] = json!({"departments": [3, 5]});
    let applied = s.apply_ok("acme", spec).await;
    let generation = applied.metadata.generation;
    s.wait_tenant("acme", "synced for the new generation", |t| {
        ready_and_synced(t)?;
        let synced = cond(t, condition::DIRECTORY_SYNCED).and_then(|c| c.observed_generation);
        (synced == generation)
            .then_some(())
            .ok_or(format!("DirectorySynced for generation {synced:?}"))
    })
    .await;
    assert_eq!(s.sim_scope(corp).await, (set(&[3, 5]), BTreeSet::new()));
    let expected = userids_in_scope(
        &s.sim_corp(corp).await,
        &[3, 5],
        &[],
        &format!("owner@{corp}.example"),
    );
    assert_eq!(expected, strings(&["li", "qian", "sun", "wang", "zhao"]));
    let dir = s.directory("acme").await;
    assert_eq!(member_ids(&dir), expected);
    assert_eq!(dept_ids(&dir), set(&[3, 4, 5]));
    assert_eq!(dir.members["li"].dept_ids, vec![3]);
    let t = s.tenant("acme").await.unwrap();
    let d = t.status.unwrap().directory.unwrap();
    assert_eq!((d.members, d.departments, d.added, d.removed), (5, 3, 4, 1));
}

// ===========================================================================
// 3. People change in DingTalk

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s03_joins_moves_and_leavers_reach_the_directory_on_request_and_periodically() {
    let corp = "dingbind3";
    let mut s = Scenario::new("people", Backend::Sqlite, vec![small_corp(corp)]).await;
    s.start_controller(ControllerOpts::default());
    s.credentials("acme", corp).await;
    let mut spec = dingtalk_spec("acme", corp, json!({"departments": [2, 3]}));
    spec["sync"] = json!({"interval": "1m", "maxDeletions": 5});
    s.apply_ok("acme", spec).await;
    s.wait_tenant("acme", "Ready", ready_and_synced).await;
    let creator = format!("owner@{corp}.example");
    assert_eq!(
        member_ids(&s.directory("acme").await),
        strings(&["li", "sun", "wang", "zhang", "zhao"])
    );

    // On request: one joins Sales, Wang moves to Platform, Zhang leaves the company.
    s.sim_put_user(corp, "newbie", &[2]).await;
    s.sim_put_user(corp, "wang", &[4]).await;
    s.sim_leave(corp, "zhang").await;
    s.annotate("acme", SYNC_REQUESTED_AT, "request-1").await;
    let expected = userids_in_scope(&s.sim_corp(corp).await, &[2, 3], &[], &creator);
    assert_eq!(expected, strings(&["li", "newbie", "sun", "wang", "zhao"]));
    let dir = s.wait_members("acme", &expected).await;
    assert!(!dir.members.contains_key("zhang"), "the leaver is gone");
    assert_eq!(dir.members["wang"].dept_ids, vec![4], "the move is synced");
    let t = s
        .wait_tenant("acme", "request handled", |t| {
            (handled_request(t) == Some("request-1"))
                .then_some(())
                .ok_or(format!("handled {:?}", handled_request(t)))
        })
        .await;
    let after_request = t
        .status
        .unwrap()
        .directory
        .unwrap()
        .last_sync_time
        .unwrap()
        .0;

    // Periodically (sync.interval 1m), with nothing touching the Tenant.
    s.sim_put_user(corp, "latecomer", &[4]).await;
    s.sim_leave(corp, "li").await;
    let expected = userids_in_scope(&s.sim_corp(corp).await, &[2, 3], &[], &creator);
    assert_eq!(
        expected,
        strings(&["latecomer", "newbie", "sun", "wang", "zhao"])
    );
    s.eventually_within(
        "acme: the periodic sync brings the directory in line",
        Duration::from_secs(100),
        || async {
            let ids = member_ids(&s.directory("acme").await);
            (ids == expected).then_some(()).ok_or(format!("{ids:?}"))
        },
    )
    .await;
    let t = s.tenant("acme").await.unwrap();
    let st = t.status.unwrap();
    assert_eq!(
        st.last_handled_sync_request.as_deref(),
        Some("request-1"),
        "no new request: the sync was the periodic one"
    );
    let periodic = st.directory.unwrap().last_sync_time.unwrap().0;
    assert!(
        periodic.duration_since(after_request) >= jiff::SignedDuration::from_secs(59),
        "the periodic sync came one interval after the last ({after_request} -> {periodic})"
    );
}

// ===========================================================================
// 4. Unbind refused until ready; a pending unbind withdrawn

async fn unbind_refused_until_ready(backend: Backend) {
    let (corp_a, corp_b) = ("dingbind4a", "dingbind4b");
    let mut s = Scenario::new(
        "unbind",
        backend,
        vec![small_corp(corp_a), small_corp(corp_b)],
    )
    .await;
    s.start_controller(ControllerOpts::default());
    let scope = json!({"departments": [2, 3]});
    s.credentials("a", corp_a).await;
    s.credentials("b", corp_b).await;
    s.secret("b-creator", &[("password", "correct-horse")])
        .await;
    let mut spec_a = dingtalk_spec("a", corp_a, scope.clone());
    let mut spec_b = dingtalk_spec("b", corp_b, scope);
    s.apply_ok("a", spec_a.clone()).await;
    s.apply_ok("b", spec_b.clone()).await;
    s.wait_tenant("a", "Ready", ready_and_synced).await;
    s.wait_tenant("b", "Ready", ready_and_synced).await;
    let members = strings(&["li", "sun", "wang", "zhang", "zhao"]);
    assert_eq!(member_ids(&s.directory("a").await), members);

    // Public without the creator's password: refused, nothing changes.
    spec_a["mode"] = json!("Public");
    s.apply_ok("a", spec_a.clone()).await;
    let t = s
        .wait_tenant("a", "CreatorAccountIncomplete", |t| {
            expect_cond(
                t,
                condition::READY,
                "False",
                reason::CREATOR_ACCOUNT_INCOMPLETE,
            )
        })
        .await;
    assert_eq!(status_mode(&t), Some(Mode::DingTalk));
    assert_eq!(member_ids(&s.directory("a").await), members);

    // The password Secret appears: the next precondition, the app is still enabled.
    s.secret("a-creator", &[("password", "correct-horse")])
        .await;
    let t = s
        .wait_tenant("a", "AppStillEnabled", |t| {
            expect_cond(t, condition::READY, "False", reason::APP_STILL_ENABLED)
        })
        .await;
    assert_eq!(status_mode(&t), Some(Mode::DingTalk));
    assert!(
        cond(&t, condition::READY).unwrap().message.contains("停用"),
        "the message says what to do"
    );
    // kstatus reads a waiting unbind as under way, not stuck.
    expect_cond(
        &t,
        condition::RECONCILING,
        "True",
        reason::APP_STILL_ENABLED,
    )
    .unwrap();
    assert!(cond(&t, condition::STALLED).is_none());
    assert_eq!(member_ids(&s.directory("a").await), members);
    assert!(
        !s.ledger("a")
            .await
            .iter()
            .any(|e| matches!(e, LedgerEntry::Unbound { .. })),
        "nothing recorded while a precondition is missing"
    );

    // Tenant b asks too, then withdraws before its app is disabled.
    spec_b["mode"] = json!("Public");
    s.apply_ok("b", spec_b.clone()).await;
    s.wait_tenant("b", "AppStillEnabled", |t| {
        expect_cond(t, condition::READY, "False", reason::APP_STILL_ENABLED)
    })
    .await;
    spec_b["mode"] = json!("DingTalk");
    s.apply_ok("b", spec_b.clone()).await;

    // The DingTalk admin disables a's app: unbound at the next check (the
    // controller re-checks waiting tenants every 30 s; nothing pokes it here).
    s.sim_app(corp_a, json!({"enabled": false})).await;
    let t = s
        .wait_tenant("a", "unbound", |t| {
            (status_mode(t) == Some(Mode::Public))
                .then_some(())
                .ok_or(format!("status.mode {:?}", status_mode(t)))
        })
        .await;
    let st = t.status.as_ref().unwrap();
    assert_eq!(st.unbind_reason, Some(UnbindReason::Requested));
    assert!(st.unbound_at.is_some());
    assert!(st.directory.is_none(), "status.directory cleared");
    expect_cond(&t, condition::READY, "True", reason::PUBLIC_MODE).unwrap();
    assert!(
        cond(&t, condition::RECONCILING).is_none() && cond(&t, condition::STALLED).is_none(),
        "unbound: kstatus reads Current"
    );
    assert_eq!(
        cond(&t, condition::BOUND).map(|c| c.status.as_str()),
        Some("False")
    );
    let dir = s.directory("a").await;
    assert!(
        dir.members.is_empty() && dir.departments.is_empty(),
        "the DingTalk-synced directory is cleared: {:?}",
        member_ids(&dir)
    );
    assert!(
        s.ledger("a").await.iter().any(|e| matches!(
            e,
            LedgerEntry::Unbound { corp_id, reason: UnbindReason::Requested, .. } if corp_id == corp_a
        )),
        "the ledger records the unbind: {:?}",
        s.ledger("a").await
    );
    s.wait_event("a", "Normal", reason::UNBOUND).await;

    // b stayed bound and keeps syncing, even once its app is disabled later.
    let t = s.wait_tenant("b", "Ready again", ready_and_synced).await;
    assert_eq!(status_mode(&t), Some(Mode::DingTalk));
    s.sim_app(corp_b, json!({"enabled": false})).await;
    s.sim_put_user(corp_b, "newbie", &[2]).await;
    s.annotate("b", SYNC_REQUESTED_AT, "after-withdrawal").await;
    let mut expected = members.clone();
    expected.insert("newbie".into());
    s.wait_members("b", &expected).await;
    let t = s
        .wait_tenant("b", "synced on request", |t| {
            ready_and_synced(t)?;
            (handled_request(t) == Some("after-withdrawal"))
                .then_some(())
                .ok_or("request not handled yet".into())
        })
        .await;
    assert_eq!(status_mode(&t), Some(Mode::DingTalk));
    assert!(
        !s.ledger("b")
            .await
            .iter()
            .any(|e| matches!(e, LedgerEntry::Unbound { .. })),
        "a withdrawn unbind leaves no trace in the ledger"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s04_unbind_waits_for_creator_and_disabled_app_and_can_be_withdrawn_on_sqlite() {
    unbind_refused_until_ready(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s04_unbind_waits_for_creator_and_disabled_app_and_can_be_withdrawn_on_postgres() {
    on_postgres!(unbind_refused_until_ready);
}

// ===========================================================================
// 5. Rebind refused

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s05_rebind_is_refused_by_the_api_server_and_by_the_controller_without_dingtalk_calls() {
    let corp = "dingbind5";
    let mut s = Scenario::new("rebind", Backend::Sqlite, vec![small_corp(corp)]).await;
    s.start_controller(ControllerOpts::default());
    s.credentials("acme", corp).await;
    s.secret("acme-creator", &[("password", "correct-horse")])
        .await;
    let mut spec = dingtalk_spec("acme", corp, json!({"departments": [2]}));
    s.apply_ok("acme", spec.clone()).await;
    s.wait_tenant("acme", "Ready", ready_and_synced).await;

    // Unbind: the app disabled first, then the request.
    s.sim_app(corp, json!({"enabled": false})).await;
    spec["mode"] = json!("Public");
    s.apply_ok("acme", spec.clone()).await;
    s.wait_tenant("acme", "unbound", |t| {
        (status_mode(t) == Some(Mode::Public))
            .then_some(())
            .ok_or(format!("status.mode {:?}", status_mode(t)))
    })
    .await;

    // The API server refuses Public -> DingTalk with the CRD's message.
    spec["mode"] = json!("DingTalk");
    let err = s
        .apply_tenant("acme", spec.clone())
        .await
        .expect_err("the API server must refuse going back to DingTalk");
    assert!(
        err.to_string().contains(REBIND_FORBIDDEN_MESSAGE),
        "refused with the CRD's message: {err}"
    );

    // Delete and create again in DingTalk mode: the controller refuses, and
    // makes no DingTalk call for it.
    s.delete_tenant("acme").await;
    let app_key = format!("{corp}-key");
    let calls_before = s.app_calls(&app_key).await;
    let tokens_before = stat(&s.sim_stats().await, "/tokensIssued");
    s.apply_ok("acme", spec.clone()).await;
    let t = s
        .wait_tenant("acme", "RebindForbidden", |t| {
            expect_cond(t, condition::READY, "False", reason::REBIND_FORBIDDEN)
        })
        .await;
    expect_cond(&t, condition::BOUND, "False", reason::REBIND_FORBIDDEN).unwrap();
    // kstatus reads it as Failed: nothing changes until a person acts.
    expect_cond(&t, condition::STALLED, "True", reason::REBIND_FORBIDDEN).unwrap();
    assert!(cond(&t, condition::RECONCILING).is_none());
    assert_eq!(status_mode(&t), Some(Mode::Public));
    s.wait_event("acme", "Warning", reason::REBIND_FORBIDDEN)
        .await;
    // Ask for a sync too: the controller reconciles again (it repeats the
    // Warning), and still nothing reaches DingTalk.
    let warnings = s.event_count("acme", reason::REBIND_FORBIDDEN).await;
    s.annotate("acme", SYNC_REQUESTED_AT, "please").await;
    s.eventually("acme: reconciled again after the request", || async {
        let now = s.event_count("acme", reason::REBIND_FORBIDDEN).await;
        (now > warnings)
            .then_some(())
            .ok_or(format!("{now} RebindForbidden Events"))
    })
    .await;
    assert_eq!(
        s.app_calls(&app_key).await,
        calls_before,
        "no DingTalk call for a tenant whose ledger holds an unbind"
    );
    assert_eq!(stat(&s.sim_stats().await, "/tokensIssued"), tokens_before);
    let dir = s.directory("acme").await;
    assert!(dir.members.is_empty(), "nothing synced");
}

// ===========================================================================
// 6. Trial expiry

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s06_trial_expiry_unbinds_at_that_instant() {
    let corp = "dingbind6";
    let mut s = Scenario::new("trial", Backend::Sqlite, vec![small_corp(corp)]).await;
    s.start_controller(ControllerOpts::default());
    s.credentials("acme", corp).await;
    // The trial ends 30 s after the apply: room for binding on a loaded machine
    // (Ready usually comes within 2 s). It is set at creation, not patched
    // earlier after Ready: a trial's end may never be moved earlier.
    let expires = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second() + 30).unwrap();
    let mut spec = dingtalk_spec("acme", corp, json!({"departments": [2]}));
    spec["trial"] = json!({"expiresAt": expires.to_string()});
    // No password: trial expiry needs no precondition.
    spec["creator"] = json!({"email": format!("owner@{corp}.example")});
    s.apply_ok("acme", spec).await;
    let t = s.wait_tenant("acme", "Ready", ready_and_synced).await;
    assert_eq!(status_mode(&t), Some(Mode::DingTalk));
    assert!(
        jiff::Timestamp::now() < expires,
        "bound before the trial ends"
    );

    let t = s
        .wait_tenant("acme", "unbound by the trial's end", |t| {
            (status_mode(t) == Some(Mode::Public))
                .then_some(())
                .ok_or(format!("status.mode {:?}", status_mode(t)))
        })
        .await;
    let st = t.status.unwrap();
    assert_eq!(st.unbind_reason, Some(UnbindReason::TrialExpired));
    let at = st.unbound_at.unwrap().0;
    assert!(at >= expires, "not before the expiry: {at} < {expires}");
    // The controller requeues for that instant: neither the 30 s re-check nor
    // the 10 min periodic sync would come this soon (10 s leaves room for a
    // loaded machine).
    assert!(
        at.duration_since(expires) < jiff::SignedDuration::from_secs(10),
        "unbound at {at}, the trial ended at {expires}"
    );
    assert!(s.ledger("acme").await.iter().any(|e| matches!(
        e,
        LedgerEntry::Unbound {
            reason: UnbindReason::TrialExpired,
            ..
        }
    )));
    assert!(s.directory("acme").await.members.is_empty());
    s.wait_event("acme", "Normal", reason::TRIAL_EXPIRED).await;
}

// ===========================================================================
// 7. Accidental-delete guard

/// While removals are held back, the controller waits for a person: no
/// directory read in DingTalk and no new sync run over a few seconds (it used
/// to re-sync in a loop, each held run's status write starting the next
/// reconciliation).
async fn held_sync_waits(s: &Scenario) {
    let key = s.key("acme");
    let reads = directory_reads(s).await;
    let runs = s.store.sync_runs(&key, 1000).await.unwrap().len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        (
            directory_reads(s).await,
            s.store.sync_runs(&key, 1000).await.unwrap().len()
        ),
        (reads, runs),
        "(directory reads in DingTalk, sync runs) while the removals wait for approval"
    );
}

/// Calls that read the directory (department tree and member pages).
async fn directory_reads(s: &Scenario) -> u64 {
    use dingbind::dingtalk::types::Api;
    let stats = s.sim_stats().await;
    [Api::DeptListSub, Api::UserList, Api::DeptGet]
        .iter()
        .map(|&a| stat(&stats, &endpoint_stat(a, "calls")))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s07_delete_guard_holds_back_mass_removals_until_approved() {
    let corp = "dingbind7";
    let mut s = Scenario::new(
        "guard",
        Backend::Sqlite,
        vec![corp_with_large_department(corp, 40)],
    )
    .await;
    s.start_controller(ControllerOpts::default());
    s.credentials("acme", corp).await;
    let spec = dingtalk_spec("acme", corp, json!({"allEmployees": true}));
    s.apply_ok("acme", spec).await;
    s.wait_tenant("acme", "Ready", ready_and_synced).await;
    let all = member_ids(&s.directory("acme").await);
    assert_eq!(all.len(), 45);
    // A fault: department 2 answers with no members, once. DingTalk still
    // knows all 40, in the scope: nobody is removed, nothing is held.
    s.sim_faults(json!({"emptyMembersOnce": 2})).await;
    s.annotate("acme", SYNC_REQUESTED_AT, "glitch").await;
    let t = s
        .wait_tenant("acme", "glitch handled", |t| {
            ready_and_synced(t)?;
            (handled_request(t) == Some("glitch"))
                .then_some(())
                .ok_or("not yet".into())
        })
        .await;
    let d = t.status.as_ref().unwrap().directory.clone().unwrap();
    assert_eq!(
        (d.unconfirmed, d.pending_deletions, d.removed, d.members),
        (40, 0, 0, 45)
    );
    let event = s
        .wait_event("acme", "Warning", reason::REMOVALS_UNCONFIRMED)
        .await;
    assert!(
        event.note.unwrap_or_default().contains("40 members"),
        "the Event names the count"
    );
    assert_eq!(
        member_ids(&s.directory("acme").await),
        all,
        "no one was removed"
    );
    let runs = s.store.sync_runs(&s.key("acme"), 50).await.unwrap();
    assert!(
        runs.iter().all(|r| r.record.removed == 0),
        "nothing removed: {runs:?}"
    );

    // A new sync request, DingTalk answering correctly again: nothing unconfirmed.
    s.annotate("acme", SYNC_REQUESTED_AT, "recheck").await;
    let t = s
        .wait_tenant("acme", "recheck handled", |t| {
            ready_and_synced(t)?;
            (handled_request(t) == Some("recheck"))
                .then_some(())
                .ok_or("not yet".into())
        })
        .await;
    let d = t.status.unwrap().directory.unwrap();
    assert_eq!((d.unconfirmed, d.pending_deletions), (0, 0));
    assert_eq!(
        member_ids(&s.directory("acme").await),
        all,
        "no one was removed"
    );

    // A real removal of 6 (more than 10% of 45): held until approved.
    for i in 1..=6 {
        s.sim_leave(corp, &format!("w{i:03}")).await;
    }
    s.annotate("acme", SYNC_REQUESTED_AT, "six-left").await;
    let t = s.wait_deletions_held("acme").await;
    assert_eq!(
        t.status
            .as_ref()
            .unwrap()
            .directory
            .as_ref()
            .unwrap()
            .pending_deletions,
        6
    );
    assert!(
        cond(&t, condition::DIRECTORY_SYNCED)
            .unwrap()
            .message
            .contains(&format!("{APPROVE_DELETIONS}: \"6\""))
    );
    assert_eq!(
        member_ids(&s.directory("acme").await),
        all,
        "held, not removed"
    );
    held_sync_waits(&s).await;

    // An approval of another count changes nothing; the controller says so
    // (Ready's message and a Warning), which shows it looked at the approval.
    s.annotate("acme", APPROVE_DELETIONS, "5").await;
    s.wait_tenant("acme", "the approval of 5 refused", |t| {
        let c = cond(t, condition::READY).ok_or("no Ready")?;
        (c.reason == reason::DELETION_THRESHOLD_EXCEEDED
            && c.message.contains("\"5\" was not used"))
        .then_some(())
        .ok_or(format!("Ready: {} {}", c.reason, c.message))
    })
    .await;
    s.wait_event("acme", "Warning", reason::APPROVAL_MISMATCH)
        .await;
    held_sync_waits(&s).await;
    assert_eq!(
        member_ids(&s.directory("acme").await),
        all,
        "5 does not approve 6"
    );

    s.annotate("acme", APPROVE_DELETIONS, "6").await;
    let mut expected = all.clone();
    for i in 1..=6 {
        expected.remove(&format!("w{i:03}"));
    }
    s.wait_members("acme", &expected).await;
    let t = s
        .wait_tenant("acme", "synced after approval", ready_and_synced)
        .await;
    assert_eq!(t.status.unwrap().directory.unwrap().pending_deletions, 0);
}

// ===========================================================================
// 8. Crash and restart

/// A generated corp whose app key follows the `{corp}-key` convention.
fn generated_corp(departments: usize, users: usize, seed: u64) -> CorpSpec {
    let mut corp = generate(GenSpec {
        departments,
        users,
        seed,
    });
    let id = corp.corp_id.clone();
    for app in &mut corp.apps {
        app.app_key = format!("{id}-key");
        app.app_secret = format!("{id}-secret");
    }
    corp
}

/// The whole directory DingTalk holds for an all-employees scope (no creator
/// among the generated users): members with their departments, and departments.
fn whole_corp(corp: &CorpSpec) -> (BTreeMap<String, Vec<i64>>, BTreeSet<i64>) {
    let members = corp
        .users
        .iter()
        .map(|u| {
            let mut d = u.dept_ids.clone();
            d.sort_unstable();
            d.dedup();
            (u.userid.clone(), d)
        })
        .collect();
    let mut depts: BTreeSet<i64> = corp.departments.iter().map(|d| d.id).collect();
    depts.insert(1);
    (members, depts)
}

fn members_with_departments(dir: &Directory) -> BTreeMap<String, Vec<i64>> {
    dir.members
        .values()
        .map(|m| (m.userid.clone(), m.dept_ids.clone()))
        .collect()
}

/// A sync killed while it still reads DingTalk (paced at 4 calls/s): nothing
/// is written during the reads, and the restarted pod converges.
async fn crash_and_restart(backend: Backend) {
    let org = generated_corp(120, 4000, 11);
    let corp = org.corp_id.clone();
    let mut s = Scenario::new("crash", backend, vec![org]).await;
    let slow = ControllerOpts {
        identity: "pod-0".into(),
        qps: 4,
        lease_duration: 4,
        ..ControllerOpts::default()
    };
    let first = s.start_controller(slow.clone());
    s.credentials("acme", &corp).await;
    s.apply_ok(
        "acme",
        dingtalk_spec("acme", &corp, json!({"allEmployees": true})),
    )
    .await;

    // Watch the store the whole time: every observation must be all or nothing.
    let samples = Arc::new(Mutex::new(Vec::<usize>::new()));
    let sampler = {
        let (store, key, samples) = (s.store.clone(), s.key("acme"), samples.clone());
        tokio::spawn(async move {
            loop {
                if let Ok(dir) = store.directory(&key).await {
                    samples.lock().unwrap().push(dir.members.len());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };

    // Kill -9 in the middle of the long sync (paced at 4 calls/s per API).
    let user_list = endpoint_stat(dingbind::dingtalk::types::Api::UserList, "calls");
    s.eventually("the sync is under way", || async {
        let calls = stat(&s.sim_stats().await, &user_list);
        (calls >= 12)
            .then_some(())
            .ok_or(format!("{calls} user/list calls"))
    })
    .await;
    assert!(
        s.directory("acme").await.members.is_empty(),
        "the sync must still be running when the controller is killed"
    );
    // kstatus reads a Tenant in its first sync as in progress, not current.
    s.wait_tenant("acme", "Reconciling during the first sync", |t| {
        expect_cond(t, condition::RECONCILING, "True", reason::SYNCING)
    })
    .await;
    s.kill_controller(first);
    assert!(!s.controller(first).running());
    let dir = s.directory("acme").await;
    assert!(
        dir.members.is_empty() && dir.departments.is_empty(),
        "a killed sync leaves nothing half-applied: {} members",
        dir.members.len()
    );

    // The same pod starts again (full speed) and converges; the store was never
    // seen half-applied.
    restart_and_converge(&mut s, &corp, slow).await;
    sampler.abort();
    let total = s.directory("acme").await.members.len();
    let samples = samples.lock().unwrap().clone();
    assert!(
        samples.iter().all(|&n| n == 0 || n == total),
        "the store was seen half-applied: {:?}",
        samples
            .iter()
            .filter(|&&n| n != 0 && n != total)
            .collect::<Vec<_>>()
    );
}

/// Restarts the killed pod at full speed and checks that it converges with
/// one complete sync.
async fn restart_and_converge(s: &mut Scenario, corp: &str, opts: ControllerOpts) {
    s.start_controller(ControllerOpts { qps: 20, ..opts });
    let (members, depts) = whole_corp(&s.sim_corp(corp).await);
    assert_eq!(members.len(), 4000);
    let dir = s
        .eventually_within(
            "acme: the directory converges",
            Duration::from_secs(90),
            || async {
                let dir = s.directory("acme").await;
                (dir.members.len() == members.len())
                    .then_some(dir)
                    .ok_or("not yet".to_string())
            },
        )
        .await;
    assert_eq!(members_with_departments(&dir), members);
    assert_eq!(dept_ids(&dir), depts);
    let t = s.wait_tenant("acme", "Ready", ready_and_synced).await;
    assert_eq!(members_in_status(&t), Some(4000));
    let runs = s.store.sync_runs(&s.key("acme"), 10).await.unwrap();
    assert_eq!(
        runs.iter()
            .filter(|r| r.record.outcome == SyncOutcome::Succeeded && r.record.added == 4000)
            .count(),
        1,
        "one complete sync applied everything: {runs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s08_a_sync_killed_while_reading_dingtalk_writes_nothing_and_converges_after_restart() {
    crash_and_restart(Backend::Sqlite).await;
}

/// A sync killed inside its store transaction, on PostgreSQL: a test
/// connection holds `sync_runs` (the last table the apply writes, after the
/// departments, members and their links) locked, so the controller's apply
/// transaction has written everything but blocks before its commit. The
/// controller is killed there, the lock released: the transaction is rolled
/// back and the directory is all old (empty), never half the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s08_a_sync_killed_inside_its_store_transaction_is_rolled_back_and_converges_on_postgres() {
    use sqlx::Connection;

    let Some(_) = pg_admin_url() else { return };
    let org = generated_corp(120, 4000, 11);
    let corp = org.corp_id.clone();
    let mut s = Scenario::new("crash-tx", Backend::Postgres, vec![org]).await;
    let mut lock = sqlx::PgConnection::connect(&s.store_url)
        .await
        .expect("a test connection to the store");
    sqlx::query("BEGIN")
        .execute(&mut lock)
        .await
        .expect("BEGIN");
    sqlx::query("LOCK TABLE sync_runs IN ACCESS EXCLUSIVE MODE")
        .execute(&mut lock)
        .await
        .expect("lock sync_runs");
    let opts = ControllerOpts {
        identity: "pod-0".into(),
        qps: 20,
        lease_duration: 4,
        ..ControllerOpts::default()
    };
    let first = s.start_controller(opts.clone());
    s.credentials("acme", &corp).await;
    s.apply_ok(
        "acme",
        dingtalk_spec("acme", &corp, json!({"allEmployees": true})),
    )
    .await;

    // The apply transaction has written rows (it holds a transaction id) and
    // waits for the lock on sync_runs.
    let blocked_pid: i32 = s
        .eventually_within(
            "the apply transaction waits on sync_runs",
            Duration::from_secs(120),
            || async {
                let mut c = sqlx::PgConnection::connect(&s.store_url)
                    .await
                    .map_err(|e| e.to_string())?;
                let row: Option<(i32, String)> = sqlx::query_as(
                    "SELECT a.pid, a.query FROM pg_locks l \
                     JOIN pg_class r ON r.oid = l.relation \
                     JOIN pg_stat_activity a ON a.pid = l.pid \
                     WHERE r.relname = 'sync_runs' AND NOT l.granted AND a.backend_xid IS NOT NULL",
                )
                .fetch_optional(&mut c)
                .await
                .map_err(|e| e.to_string())?;
                let _ = c.close().await;
                match row {
                    Some((pid, query)) if query.contains("sync_runs") => Ok(pid),
                    Some((_, query)) => Err(format!("waiting in {query}")),
                    None => Err("no writer waits on sync_runs yet".into()),
                }
            },
        )
        .await;
    let dir = s.directory("acme").await;
    assert!(
        dir.members.is_empty() && dir.departments.is_empty(),
        "uncommitted rows are not visible: {} members",
        dir.members.len()
    );

    s.kill_controller(first);
    assert!(!s.controller(first).running());
    sqlx::query("ROLLBACK")
        .execute(&mut lock)
        .await
        .expect("release the lock");
    let _ = lock.close().await;
    // The killed client's backend ends once it sees the closed connection.
    s.eventually("the killed writer's backend is gone", || async {
        let mut c = sqlx::PgConnection::connect(&s.store_url)
            .await
            .map_err(|e| e.to_string())?;
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pg_stat_activity WHERE pid = $1")
            .bind(blocked_pid)
            .fetch_one(&mut c)
            .await
            .map_err(|e| e.to_string())?;
        let _ = c.close().await;
        (n == 0)
            .then_some(())
            .ok_or(format!("backend {blocked_pid} still there"))
    })
    .await;
    let dir = s.directory("acme").await;
    assert!(
        dir.members.is_empty() && dir.departments.is_empty(),
        "a sync killed before its commit leaves the directory all old: {} members, {} departments",
        dir.members.len(),
        dir.departments.len()
    );
    assert!(
        s.store
            .sync_runs(&s.key("acme"), 10)
            .await
            .unwrap()
            .is_empty(),
        "no sync run recorded"
    );

    restart_and_converge(&mut s, &corp, opts).await;
}

// ===========================================================================
// 9. Two replicas

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s09_only_the_lease_holder_acts_and_a_killed_holder_hands_over_within_the_lease() {
    let corp = "dingbind9";
    let mut s = Scenario::new("replicas", Backend::Sqlite, vec![small_corp(corp)]).await;
    let lease_secs = 4;
    let opts = |id: &str| ControllerOpts {
        identity: id.into(),
        lease_duration: lease_secs,
        ..Default::default()
    };
    s.start_controller(opts("replica-a"));
    s.start_controller(opts("replica-b"));
    let leases: Api<Lease> = Api::namespaced(s.client.clone(), "dingbind-system");
    let lease_name = format!("e2e-{}", s.ns);
    let holder_of = |l: &Lease| {
        l.spec
            .as_ref()
            .and_then(|s| s.holder_identity.clone())
            .unwrap_or_default()
    };

    s.credentials("one", corp).await;
    s.apply_ok(
        "one",
        dingtalk_spec("one", corp, json!({"departments": [2]})),
    )
    .await;
    s.wait_tenant("one", "Ready", ready_and_synced).await;
    let lease = leases.get(&lease_name).await.expect("the Lease exists");
    let leader = holder_of(&lease);
    let (li, si) = match leader.as_str() {
        "replica-a" => (0, 1),
        "replica-b" => (1, 0),
        other => panic!("unexpected Lease holder {other:?}"),
    };
    let standby = s.controllers[si].identity.clone();

    // Only the holder acts: a sync request is served by it alone.
    s.annotate("one", SYNC_REQUESTED_AT, "1").await;
    s.wait_tenant("one", "request handled", |t| {
        (handled_request(t) == Some("1"))
            .then_some(())
            .ok_or("not yet".into())
    })
    .await;
    let events = s.events("one").await;
    assert!(!events.is_empty());
    for e in &events {
        assert_eq!(
            e.reporting_instance.as_deref(),
            Some(leader.as_str()),
            "Event {:?} reported by another replica",
            e.reason
        );
    }
    // The standby answers on /metrics: it does not hold the Lease and has not
    // reconciled once, while the leader has (so the counter counts).
    let metric = |text: &str, name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
    };
    let leader_metrics = s.controller_metrics(li).await;
    assert_eq!(metric(&leader_metrics, "dingbind_leader"), 1);
    assert!(metric(&leader_metrics, "dingbind_reconciles_total") > 0);
    let standby_metrics = s.controller_metrics(si).await;
    assert_eq!(
        (
            metric(&standby_metrics, "dingbind_leader"),
            metric(&standby_metrics, "dingbind_reconciles_total")
        ),
        (0, 0),
        "the standby replica must not act"
    );

    // Kill -9 the holder: the standby takes over once the Lease runs out.
    s.kill_controller(li);
    let last_renew = leases
        .get(&lease_name)
        .await
        .unwrap()
        .spec
        .unwrap()
        .renew_time
        .unwrap()
        .0;
    let lease = s
        .eventually("the standby takes the Lease", || async {
            let l = leases.get(&lease_name).await.map_err(|e| e.to_string())?;
            let holder = holder_of(&l);
            (holder == standby)
                .then_some(l)
                .ok_or(format!("held by {holder:?}"))
        })
        .await;
    let acquired = lease.spec.unwrap().acquire_time.unwrap().0;
    let handover = acquired.duration_since(last_renew);
    // The Lease lasts 4 s after the last renewal; candidates retry every
    // duration/3 (1 s), the expiry is judged in whole seconds, and a loaded
    // machine may add a second.
    assert!(
        handover <= jiff::SignedDuration::from_secs(lease_secs as i64 + 3),
        "handover took {handover} after the last renewal"
    );
    assert!(
        handover >= jiff::SignedDuration::from_secs(lease_secs as i64 - 1),
        "the standby took a Lease that was still valid ({handover} after renewal)"
    );

    // The new holder acts.
    s.credentials("two", corp).await;
    s.apply_ok(
        "two",
        dingtalk_spec("two", corp, json!({"departments": [2]})),
    )
    .await;
    s.wait_tenant("two", "Ready", ready_and_synced).await;
    let events = s.events("two").await;
    assert!(!events.is_empty());
    assert!(
        events
            .iter()
            .all(|e| e.reporting_instance.as_deref() == Some(standby.as_str())),
        "two's Events come from the new holder"
    );
}

// ===========================================================================
// 10. Faults

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s10_throttling_5xx_and_token_expiry_during_a_sync_still_converge_exactly() {
    let org = generated_corp(30, 600, 3);
    let corp = org.corp_id.clone();
    let mut s = Scenario::new("faults", Backend::Sqlite, vec![org]).await;
    // DingTalk throttles at 5 calls/s while dingbind paces at 20; 10% of calls
    // fail with a bare 503; tokens live 2 s, so they expire during the sync.
    s.sim_faults(json!({
        "throttleQps": 5,
        "errorRate": 0.1,
        "failStatus": 503,
        "tokenTtlSeconds": 2,
    }))
    .await;
    s.start_controller(ControllerOpts::default());
    s.credentials("acme", &corp).await;
    s.apply_ok(
        "acme",
        dingtalk_spec("acme", &corp, json!({"allEmployees": true})),
    )
    .await;
    let (members, depts) = whole_corp(&s.sim_corp(&corp).await);
    let dir = s
        .eventually_within(
            "acme: the directory converges",
            Duration::from_secs(120),
            || async {
                let dir = s.directory("acme").await;
                let have = dir.members.len();
                (members_with_departments(&dir) == members)
                    .then_some(dir)
                    .ok_or(format!("{have} of {} members", members.len()))
            },
        )
        .await;
    assert_eq!(dept_ids(&dir), depts);
    let corp_spec = s.sim_corp(&corp).await;
    for u in &corp_spec.users {
        let m = &dir.members[&u.userid];
        assert_eq!((&m.name, &m.email, &m.title), (&u.name, &u.email, &u.title));
    }
    let t = s.wait_tenant("acme", "Ready", ready_and_synced).await;
    let took = t.status.unwrap().directory.unwrap().last_sync_duration_ms;
    assert!(
        took.is_some_and(|ms| ms > 2000),
        "the sync ({took:?} ms) outlived a token (2 s)"
    );

    let stats = s.sim_stats().await;
    let total = |field: &str| -> u64 {
        dingbind::dingtalk::types::Api::ALL
            .iter()
            .map(|&a| stat(&stats, &endpoint_stat(a, field)))
            .sum()
    };
    assert!(total("throttled") > 0, "no call was throttled: {stats}");
    assert!(total("faults") > 0, "no 5xx was injected: {stats}");
    // A 2 s token ran out during the sync: the client renewed it (DingTalk hands
    // back the same token, extended, when it is renewed before it expires, or a
    // new one after), and no call was lost. Only token requests answered with a
    // token count (not the injected 503s nor the throttled ones), and on one
    // endpoint: the binding check takes its token from the unified endpoint,
    // the sync from the app endpoint, once each without any renewal.
    let grants = stat(
        &stats,
        &endpoint_stat(dingbind::dingtalk::types::Api::AccessToken, "granted"),
    );
    assert!(
        grants >= 2,
        "the app token was never renewed during the sync ({grants} granted): {stats}"
    );
}

// ===========================================================================
// 11. Deletion

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s11_deletion_applies_the_policy_removes_the_finalizer_and_keeps_the_ledger() {
    let corp = "dingbind11";
    let mut s = Scenario::new("deletion", Backend::Sqlite, vec![small_corp(corp)]).await;
    s.start_controller(ControllerOpts::default());
    let scope = json!({"departments": [2, 3]});
    let members = strings(&["li", "sun", "wang", "zhang", "zhao"]);
    for (name, policy) in [("keep", "Retain"), ("drop", "Delete")] {
        s.credentials(name, corp).await;
        let mut spec = dingtalk_spec(name, corp, scope.clone());
        spec["deletionPolicy"] = json!(policy);
        s.apply_ok(name, spec).await;
    }
    for name in ["keep", "drop"] {
        let t = s.wait_tenant(name, "Ready", ready_and_synced).await;
        assert_eq!(
            t.metadata.finalizers.as_deref(),
            Some(&["dingbind.dev/directory".to_string()][..])
        );
        assert_eq!(member_ids(&s.directory(name).await), members);
    }

    for name in ["keep", "drop"] {
        s.delete_tenant(name).await;
    }

    // Retain: the directory and account stay.
    assert_eq!(member_ids(&s.directory("keep").await), members);
    assert!(s.store.account(&s.key("keep")).await.unwrap().is_some());
    // Delete: directory, account and sync runs are gone.
    let dir = s.directory("drop").await;
    assert!(dir.members.is_empty() && dir.departments.is_empty());
    assert!(s.store.account(&s.key("drop")).await.unwrap().is_none());
    assert!(
        s.store
            .sync_runs(&s.key("drop"), 10)
            .await
            .unwrap()
            .is_empty()
    );
    // The ledger stays either way.
    for name in ["keep", "drop"] {
        assert!(
            matches!(s.ledger(name).await.as_slice(), [LedgerEntry::Bound { corp_id, .. }] if corp_id == corp),
            "{name}: the ledger is kept"
        );
    }
}

// ===========================================================================
// 12. Status conventions

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s12_observed_generation_follows_edits_events_are_listed_and_spec_is_never_written() {
    let corp = "dingbind12";
    let mut s = Scenario::new("conventions", Backend::Sqlite, vec![small_corp(corp)]).await;
    s.start_controller(ControllerOpts::default());
    s.credentials("acme", corp).await;
    let mut spec = dingtalk_spec("acme", corp, json!({"departments": [2]}));
    let created = s.apply_ok("acme", spec.clone()).await;
    assert_eq!(created.metadata.generation, Some(1));
    let at_generation = |g: i64| {
        move |t: &Tenant| -> Result<(), String> {
            ready_and_synced(t)?;
            let st = t.status.as_ref().unwrap();
            if st.observed_generation != Some(g) {
                return Err(format!("observedGeneration {:?}", st.observed_generation));
            }
            for c in &st.conditions {
                if c.observed_generation != Some(g) {
                    return Err(format!(
                        "{} at generation {:?}",
                        c.type_, c.observed_generation
                    ));
                }
            }
            Ok(())
        }
    };
    s.wait_tenant("acme", "observed generation 1", at_generation(1))
        .await;

    spec["dingtalk"]["visibleScope"] = json!({"departments": [2, 5]});
    let edited = s.apply_ok("acme", spec.clone()).await;
    assert_eq!(edited.metadata.generation, Some(2));
    s.wait_tenant("acme", "observed generation 2", at_generation(2))
        .await;
    // Metadata edits do not bump the generation.
    s.annotate("acme", SYNC_REQUESTED_AT, "x").await;
    let t = s
        .wait_tenant("acme", "request handled", |t| {
            (handled_request(t) == Some("x"))
                .then_some(())
                .ok_or("not yet".into())
        })
        .await;
    assert_eq!(t.metadata.generation, Some(2));
    assert_eq!(t.status.as_ref().unwrap().observed_generation, Some(2));

    // Events (events.k8s.io/v1) name the Tenant, with kubectl.
    s.wait_event("acme", "Normal", reason::SYNCED).await;
    let out = s.cluster.env.kubectl([
        "get",
        "events.v1.events.k8s.io",
        "-n",
        &s.ns,
        "--field-selector",
        "regarding.name=acme",
        "-o",
        "json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    let items = list["items"].as_array().unwrap();
    let reasons: BTreeSet<&str> = items.iter().filter_map(|e| e["reason"].as_str()).collect();
    for r in [reason::BOUND, reason::SCOPE_UPDATED, reason::SYNCED] {
        assert!(reasons.contains(r), "no {r} Event: {reasons:?}");
    }
    for e in items {
        assert_eq!(e["regarding"]["kind"], "Tenant");
        assert_eq!(e["regarding"]["name"], "acme");
        assert_eq!(e["reportingController"], "dingbind");
    }
    let plain = s.cluster.env.kubectl(["get", "events", "-n", &s.ns]);
    assert!(
        text(&plain.stdout).contains("tenant/acme"),
        "{}",
        text(&plain.stdout)
    );

    // managedFields: only the test's manager owns spec fields; dingbind writes status.
    let t = s.tenant("acme").await.unwrap();
    let managed = t.metadata.managed_fields.clone().unwrap_or_default();
    assert!(
        managed
            .iter()
            .any(|m| m.manager.as_deref() == Some("dingbind")
                && m.subresource.as_deref() == Some("status"))
    );
    for m in &managed {
        let fields = serde_json::to_value(&m.fields_v1).unwrap();
        let touches_spec = fields.get("f:spec").is_some();
        if touches_spec {
            assert_eq!(
                m.manager.as_deref(),
                Some(TEST_MANAGER),
                "{m:?} writes spec fields"
            );
        }
        if m.manager.as_deref() != Some(TEST_MANAGER) {
            assert!(!touches_spec, "manager {:?} touches spec", m.manager);
        }
    }
    assert_eq!(
        t.spec.dingtalk.unwrap().visible_scope.unwrap().departments,
        vec![2, 5]
    );
}

// ===========================================================================
// 13-17. The irreversible steps: ordinary edits and failures that must never
// carry out an unbind, nor bring an unbound tenant back.

/// Waits until `name` is in public mode.
async fn wait_public(s: &Scenario, name: &str) -> Tenant {
    s.wait_tenant(name, "public mode", |t| {
        (status_mode(t) == Some(Mode::Public))
            .then_some(())
            .ok_or(format!("status.mode {:?}", status_mode(t)))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s13_the_binding_identity_and_the_trial_cannot_be_edited_while_bound() {
    let corp = "dingbind13";
    let mut s = Scenario::new("identity", Backend::Sqlite, vec![small_corp(corp)]).await;
    s.start_controller(ControllerOpts::default());
    s.credentials("acme", corp).await;
    s.secret("acme-creator", &[("password", "correct-horse")])
        .await;
    let mut spec = dingtalk_spec("acme", corp, json!({"departments": [2]}));
    s.apply_ok("acme", spec.clone()).await;
    s.wait_tenant("acme", "Ready", ready_and_synced).await;
    spec["mode"] = json!("Public");
    s.apply_ok("acme", spec.clone()).await;
    s.wait_tenant("acme", "AppStillEnabled", |t| {
        expect_cond(t, condition::READY, "False", reason::APP_STILL_ENABLED)
    })
    .await;

    // A typo in agentId while the unbind waits: the API server refuses it.
    let mut typo = spec.clone();
    typo["dingtalk"]["agentId"] = json!(AGENT_ID + 9);
    let err = s
        .apply_tenant("acme", typo.clone())
        .await
        .expect_err("the API server must refuse a new agentId while bound");
    assert!(err.to_string().contains(BINDING_IDENTITY_MESSAGE), "{err}");
    let mut moved = spec.clone();
    moved["dingtalk"]["corpId"] = json!("dingelsewhere");
    let err = s.apply_tenant("acme", moved).await.expect_err("corpId too");
    assert!(err.to_string().contains(BINDING_IDENTITY_MESSAGE), "{err}");
    // A trial added to a Tenant that had none: refused.
    let mut trial = spec.clone();
    trial["trial"] = json!({"expiresAt": "2000-01-01T00:00:00Z"});
    let err = s
        .apply_tenant("acme", trial)
        .await
        .expect_err("trial added");
    assert!(err.to_string().contains(TRIAL_RULE_MESSAGE), "{err}");

    // Deleted and created again with the typo (a new object passes admission):
    // the controller refuses to act on it, and unbinds nothing.
    s.delete_tenant("acme").await;
    s.apply_ok("acme", typo).await;
    let t = s
        .wait_tenant("acme", "BindingChanged", |t| {
            expect_cond(t, condition::BOUND, "False", reason::BINDING_CHANGED)
        })
        .await;
    expect_cond(&t, condition::READY, "False", reason::BINDING_CHANGED).unwrap();
    s.wait_event("acme", "Warning", reason::BINDING_CHANGED)
        .await;
    let ledger = s.ledger("acme").await;
    assert!(
        matches!(
            ledger.as_slice(),
            [LedgerEntry::Bound {
                agent_id: Some(AGENT_ID),
                ..
            }]
        ),
        "bound once, to the declared app, never unbound: {ledger:?}"
    );
    assert!(!s.directory("acme").await.members.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s14_a_trial_moved_earlier_is_refused_and_its_end_is_carried_out_while_suspended() {
    let corp = "dingbind14";
    let mut s = Scenario::new("suspendtrial", Backend::Sqlite, vec![small_corp(corp)]).await;
    s.start_controller(ControllerOpts::default());
    s.credentials("acme", corp).await;
    // Long enough to bind first on a loaded machine: a trial that ends before
    // the tenant is bound means it is never bound.
    let expires = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second() + 40).unwrap();
    let mut spec = dingtalk_spec("acme", corp, json!({"departments": [2]}));
    spec["trial"] = json!({"expiresAt": expires.to_string()});
    spec["creator"] = json!({"email": format!("owner@{corp}.example")});
    s.apply_ok("acme", spec.clone()).await;
    s.wait_tenant("acme", "Ready", ready_and_synced).await;

    let mut earlier = spec.clone();
    earlier["trial"]["expiresAt"] =
        json!((expires - jiff::SignedDuration::from_secs(30)).to_string());
    let err = s
        .apply_tenant("acme", earlier)
        .await
        .expect_err("the API server must refuse an earlier trial end");
    assert!(err.to_string().contains(TRIAL_RULE_MESSAGE), "{err}");

    spec["suspend"] = json!(true);
    s.apply_ok("acme", spec).await;
    s.wait_tenant("acme", "Suspended", |t| {
        expect_cond(t, condition::READY, "True", reason::SUSPENDED)
    })
    .await;
    let t = wait_public(&s, "acme").await;
    let st = t.status.unwrap();
    assert_eq!(st.unbind_reason, Some(UnbindReason::TrialExpired));
    assert!(st.unbound_at.unwrap().0 >= expires);
    assert!(s.directory("acme").await.members.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s15_a_lost_store_and_a_recreated_tenant_stay_public() {
    let corp = "dingbind15";
    let mut s = Scenario::new("lostore", Backend::Sqlite, vec![small_corp(corp)]).await;
    let first = s.start_controller(ControllerOpts::default());
    s.credentials("acme", corp).await;
    s.secret("acme-creator", &[("password", "correct-horse")])
        .await;
    let mut spec = dingtalk_spec("acme", corp, json!({"departments": [2]}));
    s.apply_ok("acme", spec.clone()).await;
    s.wait_tenant("acme", "Ready", ready_and_synced).await;
    s.sim_app(corp, json!({"enabled": false})).await;
    spec["mode"] = json!("Public");
    s.apply_ok("acme", spec.clone()).await;
    let t = wait_public(&s, "acme").await;
    let unbound_at = t.status.unwrap().unbound_at.unwrap();
    let name = record_name(&s.key("acme"));
    let record = s
        .eventually("the UnbindRecord", || async {
            s.unbind_records()
                .get_opt(&name)
                .await
                .map_err(|e| e.to_string())?
                .ok_or("not yet".to_string())
        })
        .await;
    assert_eq!(
        (
            record.spec.corp_id.as_str(),
            record.spec.agent_id,
            &record.spec.unbound_at
        ),
        (corp, Some(AGENT_ID), &unbound_at)
    );

    // The Tenant is deleted, the store is lost, and the Tenant comes back
    // asking for DingTalk mode (a GitOps pipeline re-applying an old manifest).
    s.delete_tenant("acme").await;
    s.kill_controller(first);
    s.lose_store().await;
    s.start_controller(ControllerOpts::default());
    spec["mode"] = json!("DingTalk");
    let app_key = format!("{corp}-key");
    let calls = s.app_calls(&app_key).await;
    s.apply_ok("acme", spec).await;
    let t = s
        .wait_tenant("acme", "RebindForbidden", |t| {
            expect_cond(t, condition::READY, "False", reason::REBIND_FORBIDDEN)
        })
        .await;
    let st = t.status.unwrap();
    assert_eq!(st.mode, Some(Mode::Public));
    assert_eq!(st.unbound_at, Some(unbound_at));
    assert!(
        s.ledger("acme")
            .await
            .iter()
            .any(|e| matches!(e, LedgerEntry::Unbound { .. })),
        "the new store's ledger is repaired from the record"
    );
    assert_eq!(s.app_calls(&app_key).await, calls, "no DingTalk call");
    assert!(s.directory("acme").await.members.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s16_a_crash_right_after_the_ledger_entry_is_finished_on_restart() {
    let corp = "dingbind16";
    let mut s = Scenario::new("ledgercrash", Backend::Sqlite, vec![small_corp(corp)]).await;
    let first = s.start_controller(ControllerOpts::default());
    s.credentials("acme", corp).await;
    let spec = dingtalk_spec("acme", corp, json!({"departments": [2]}));
    s.apply_ok("acme", spec).await;
    s.wait_tenant("acme", "Ready", ready_and_synced).await;
    assert!(!s.directory("acme").await.members.is_empty());
    // The controller dies right after writing the ledger's Unbound entry:
    // the directory is still filled, the account still in DingTalk mode, no
    // record in the cluster, and the Tenant still says DingTalk.
    s.kill_controller(first);
    s.store
        .append_ledger(
            &s.key("acme"),
            LedgerEntry::Unbound {
                at: jiff::Timestamp::now(),
                corp_id: corp.into(),
                agent_id: Some(AGENT_ID),
                reason: UnbindReason::TrialExpired,
                confirmation: None,
            },
        )
        .await
        .unwrap();
    s.start_controller(ControllerOpts::default());
    let t = wait_public(&s, "acme").await;
    assert_eq!(
        t.status.unwrap().unbind_reason,
        Some(UnbindReason::TrialExpired)
    );
    assert!(
        s.directory("acme").await.members.is_empty(),
        "directory cleared"
    );
    let account = s.store.account(&s.key("acme")).await.unwrap();
    assert_eq!(account.map(|a| a.mode), Some(Mode::Public));
    let name = record_name(&s.key("acme"));
    s.eventually("the UnbindRecord written again", || async {
        s.unbind_records()
            .get_opt(&name)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("not yet".to_string())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s17_a_stalled_leader_on_a_shared_postgresql_cannot_write_after_its_successor() {
    if pg_admin_url().is_none() {
        return;
    }
    let corp = "dingbind17";
    let mut s = Scenario::new("stalled", Backend::Postgres, vec![small_corp(corp)]).await;
    let opts = |id: &str| ControllerOpts {
        identity: id.into(),
        lease_duration: 4,
        ..Default::default()
    };
    s.start_controller(opts("replica-a"));
    s.start_controller(opts("replica-b"));
    s.credentials("one", corp).await;
    s.apply_ok(
        "one",
        dingtalk_spec("one", corp, json!({"departments": [2]})),
    )
    .await;
    s.wait_tenant("one", "Ready", ready_and_synced).await;
    let leases: Api<Lease> = Api::namespaced(s.client.clone(), "dingbind-system");
    let lease_name = format!("e2e-{}", s.ns);
    let lease = leases.get(&lease_name).await.expect("the Lease exists");
    let spec = lease.spec.unwrap();
    let old_term = i64::from(spec.lease_transitions.unwrap_or(0));
    let leader = spec.holder_identity.unwrap_or_default();
    let li = s
        .controllers
        .iter()
        .position(|c| c.identity == leader)
        .expect("the holder is one of ours");
    assert_eq!(s.store.fence_token().await.unwrap(), old_term);

    // The leader stalls (a long GC pause, a frozen VM): SIGSTOP.
    let pid = s.controllers[li].child.id().to_string();
    let signal = |sig: &str| {
        // The shell's own kill: no procps needed.
        let status = Command::new("sh")
            .args(["-c", &format!("kill {sig} {pid}")])
            .status()
            .expect("sh");
        assert!(status.success(), "kill {sig} {pid}");
    };
    signal("-STOP");
    let new_term = s
        .eventually("the standby starts a new term in the store", || async {
            let fence = s.store.fence_token().await.map_err(|e| e.to_string())?;
            (fence > old_term)
                .then_some(fence)
                .ok_or(format!("fence {fence}"))
        })
        .await;
    // The new leader acts: someone leaves, a sync is requested.
    s.sim_leave(corp, "zhang").await;
    s.annotate("one", SYNC_REQUESTED_AT, "after-takeover").await;
    s.wait_tenant("one", "the new leader synced", |t| {
        ready_and_synced(t)?;
        (handled_request(t) == Some("after-takeover"))
            .then_some(())
            .ok_or("not yet".into())
    })
    .await;
    let members = member_ids(&s.directory("one").await);
    assert!(!members.contains("zhang"), "{members:?}");

    // The stalled leader wakes up: it finds the Lease lost and exits, and the
    // store refuses any write of its term.
    signal("-CONT");
    let deadline = Instant::now() + DEADLINE;
    while s.controllers[li].running() {
        assert!(
            Instant::now() < deadline,
            "the stalled leader still runs {DEADLINE:?} after waking up:\n{}",
            s.diagnostics()
        );
        tokio::time::sleep(POLL).await;
    }
    let log = s.controllers[li].log_text();
    assert!(log.contains("lost the leader Lease"), "{log}");
    let stale = s.store.fenced(old_term);
    let refused = stale
        .put_document(&s.key("one"), "status", &json!({}))
        .await;
    assert!(
        matches!(refused, Err(dingbind::store::Error::Fenced { token, current }) if token == old_term && current == new_term),
        "{refused:?}"
    );
    assert_eq!(s.store.fence_token().await.unwrap(), new_term);
    assert_eq!(member_ids(&s.directory("one").await), members);
}

// ===========================================================================
// 18. One Tenant that does not load never stops the others

/// The `addr=` of the controller's `serving /healthz…` log line.
fn metrics_addr(log: &str) -> Option<String> {
    log.lines()
        .find(|l| l.contains("serving /healthz"))
        .and_then(|l| l.split("addr=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .map(|a| a.trim_matches('"').to_string())
}

async fn get_metrics(http: &reqwest::Client, addr: &str) -> Result<String, String> {
    let resp = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    resp.text().await.map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s18_a_tenant_that_does_not_load_is_skipped_and_the_others_are_reconciled() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let corp = "dingbind18";
    let mut s = Scenario::new("unreadable", Backend::Sqlite, vec![small_corp(corp)]).await;
    s.credentials("good", corp).await;
    s.apply_ok(
        "good",
        dingtalk_spec("good", corp, json!({"departments": [2]})),
    )
    .await;

    // A Tenant stored while the schema was looser than the type (an older
    // CRD): maxDeletions beyond 32 bits. The stored object stays after the
    // strict CRD is back, as objects do on a CRD upgrade.
    let crds: Api<CustomResourceDefinition> = Api::all(s.client.clone());
    let strict = crds.get("tenants.dingbind.dev").await.expect("the CRD");
    let mut loose = strict.clone();
    let mut schema = serde_json::to_value(&loose.spec.versions[0].schema).unwrap();
    schema["openAPIV3Schema"]["properties"]["spec"]["properties"]["sync"]["properties"]
        ["maxDeletions"]
        .as_object_mut()
        .expect("maxDeletions in the schema")
        .remove("maximum");
    loose.spec.versions[0].schema = serde_json::from_value(schema).unwrap();
    crds.replace("tenants.dingbind.dev", &Default::default(), &loose)
        .await
        .expect("loosening the CRD");
    let mut bad = dingtalk_spec("bad", corp, json!({"departments": [2]}));
    bad["sync"]["maxDeletions"] = json!(3_000_000_000u64);
    // kubectl, not the typed client: the answer does not load as a Tenant.
    let kubectl_apply = |name: &str| {
        let body = json!({
            "apiVersion": "dingbind.dev/v1alpha1",
            "kind": "Tenant",
            "metadata": {"name": name, "namespace": s.ns},
            "spec": bad,
        });
        let out = s.cluster.env.kubectl_stdin(
            &body.to_string(),
            [
                "apply",
                "--server-side",
                "--field-manager",
                TEST_MANAGER,
                "-f",
                "-",
            ],
        );
        if out.status.success() {
            Ok(())
        } else {
            Err(text(&out.stderr))
        }
    };
    s.eventually("the looser CRD accepts the bad Tenant", || async {
        kubectl_apply("bad")
    })
    .await;
    let mut restore = crds.get("tenants.dingbind.dev").await.expect("the CRD");
    restore.spec = strict.spec.clone();
    crds.replace("tenants.dingbind.dev", &Default::default(), &restore)
        .await
        .expect("restoring the CRD");
    // The strict CRD is in force again: the same value is refused now.
    s.eventually("the strict CRD refuses the value again", || async {
        match kubectl_apply("bad2") {
            Err(e) if e.contains("less than or equal to 2147483647") => Ok(()),
            Err(e) => Err(e),
            Ok(()) => {
                let _ = s
                    .cluster
                    .env
                    .kubectl(["delete", "tenant", "bad2", "-n", &s.ns]);
                Err("accepted".into())
            }
        }
    })
    .await;

    let c = s.start_controller(ControllerOpts::default());
    s.wait_tenant("good", "ready and synced", ready_and_synced)
        .await;
    let event = s.wait_event("bad", "Warning", reason::INVALID_SPEC).await;
    let note = event.note.unwrap_or_default();
    assert!(note.contains("3000000000"), "{note}");
    let log = s.controller(c).log_text();
    let skipped: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("skipping a Tenant"))
        .collect();
    assert_eq!(skipped.len(), 1, "one log line: {skipped:?}");
    assert!(
        skipped[0].contains(&format!("{}/bad", s.ns)),
        "{}",
        skipped[0]
    );
    assert!(
        !log.contains(r#""name":"good""#),
        "the log does not dump other Tenants"
    );
    let addr = metrics_addr(&log).expect("the metrics address in the log");
    let http = s.http.clone();
    s.eventually("dingbind_tenants_unreadable 1", || async {
        let body = get_metrics(&http, &addr).await?;
        body.lines()
            .any(|l| l == "dingbind_tenants_unreadable 1")
            .then_some(())
            .ok_or(body)
    })
    .await;
    let out = s
        .cluster
        .env
        .kubectl(["get", "tenant", "bad", "-n", &s.ns, "-o", "json"]);
    let t: Value = serde_json::from_slice(&out.stdout).expect("the bad Tenant as JSON");
    assert!(
        t.get("status").is_none(),
        "an unreadable Tenant gets no status: {t}"
    );

    // Fixed, it is reconciled like any other and the gauge goes back to 0.
    s.credentials("bad", corp).await;
    s.apply_ok(
        "bad",
        dingtalk_spec("bad", corp, json!({"departments": [2]})),
    )
    .await;
    s.wait_tenant("bad", "ready once fixed", ready_and_synced)
        .await;
    s.eventually("dingbind_tenants_unreadable 0", || async {
        let body = get_metrics(&http, &addr).await?;
        body.lines()
            .any(|l| l == "dingbind_tenants_unreadable 0")
            .then_some(())
            .ok_or(body)
    })
    .await;
}

// ===========================================================================
// 19. Events from DingTalk (Stream mode)

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s19_events_bring_a_leaver_a_joiner_and_a_disabled_app_to_the_tenant_within_seconds() {
    let corp = "dingbind19";
    let mut s = Scenario::new("events", Backend::Sqlite, vec![small_corp(corp)]).await;
    s.start_controller(ControllerOpts {
        events: true,
        ..ControllerOpts::default()
    });
    s.credentials("acme", corp).await;
    s.secret("acme-creator", &[("password", "correct-horse")])
        .await;
    // A long interval: only events can bring a change in before the test ends.
    let mut spec = dingtalk_spec("acme", corp, json!({"departments": [2, 3]}));
    spec["sync"] = json!({"interval": "6h"});
    s.apply_ok("acme", spec.clone()).await;
    s.wait_tenant("acme", "Ready", ready_and_synced).await;
    s.wait_tenant("acme", "EventsConnected", events_connected)
        .await;
    // The app's first Stream connection asks for one full sync more (events
    // from before it may have been missed): two runs, then quiet.
    let key = dingbind::api::TenantKey {
        namespace: s.ns.clone(),
        name: "acme".into(),
    };
    s.eventually("acme: the full sync of the first connection", || async {
        let runs = s
            .store
            .sync_runs(&key, 10)
            .await
            .map_err(|e| e.to_string())?;
        (runs.len() >= 2)
            .then_some(())
            .ok_or(format!("{} sync runs", runs.len()))
    })
    .await;
    let listsub = endpoint_stat(dingbind::dingtalk::types::Api::DeptListSub, "calls");
    let scope_reads = stat(&s.sim_stats().await, &listsub);
    assert!(member_ids(&s.directory("acme").await).contains("zhang"));

    // Zhang leaves, a newcomer joins Sales: no annotation, no periodic sync.
    s.sim_leave(corp, "zhang").await;
    s.sim_put_user(corp, "newbie", &[2]).await;
    let creator = format!("owner@{corp}.example");
    let expected = userids_in_scope(&s.sim_corp(corp).await, &[2, 3], &[], &creator);
    assert!(!expected.contains("zhang") && expected.contains("newbie"));
    s.wait_members("acme", &expected).await;
    let t = s
        .wait_tenant("acme", "the counts follow the events", |t| {
            let members = members_in_status(t);
            (members == Some(expected.len() as u64))
                .then_some(())
                .ok_or(format!("status says {members:?} members"))
        })
        .await;
    assert_eq!(
        stat(&s.sim_stats().await, &listsub),
        scope_reads,
        "the change came by an incremental sync: the scope was not walked again"
    );
    assert_eq!(handled_request(&t), None);
    s.wait_event("acme", "Normal", reason::DIRECTORY_UPDATED)
        .await;
    let events = t.status.as_ref().and_then(|s| s.events.clone());
    assert!(
        events.is_some_and(|e| e.events_received >= 2 && e.last_event_time.is_some()),
        "status.events counts the leave and the join"
    );

    // An unbind waits for the app to be disabled; disabling it in DingTalk
    // completes the unbind at once, well before the 30 s recheck.
    spec["mode"] = json!("Public");
    s.apply_ok("acme", spec).await;
    s.wait_tenant("acme", "AppStillEnabled", |t| {
        expect_cond(t, condition::READY, "False", reason::APP_STILL_ENABLED)
    })
    .await;
    s.sim_app(corp, json!({"enabled": false})).await;
    s.eventually_within(
        "acme: unbound within seconds of the app being disabled",
        Duration::from_secs(15),
        || async {
            let t = s.tenant("acme").await?;
            (status_mode(&t) == Some(Mode::Public))
                .then_some(())
                .ok_or(format!("mode {:?}", status_mode(&t)))
        },
    )
    .await;
}

/// Suite `suite` in the simulator, its Secret `dingbind-suite` (for
/// `--suite-secret`) and the creator's password Secret `acme-creator`.
async fn add_suite(s: &Scenario, suite: &str) {
    let secret = format!("{suite}-secret");
    s.sim(
        reqwest::Method::POST,
        "/_sim/suites",
        Some(json!({"suiteKey": suite, "suiteSecret": secret})),
    )
    .await;
    s.secret(
        "dingbind-suite",
        &[("suiteKey", suite), ("suiteSecret", &secret)],
    )
    .await;
    s.secret("acme-creator", &[("password", "correct-horse")])
        .await;
}

/// A marketplace tenant of `corp`, its creator complete, synced every 6 h
/// (only events bring changes in).
fn marketplace_spec(corp: &str) -> Value {
    json!({
        "mode": "DingTalk",
        "dingtalk": {"app": "Marketplace", "corpId": corp},
        "creator": {"email": format!("owner@{corp}.example"), "passwordSecretRef": {"name": "acme-creator"}},
        "sync": {"interval": "6h"},
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s23_a_marketplace_install_binds_a_waiting_tenant_and_the_suites_events_reach_it() {
    let corp = "dingbind23";
    let suite = "mkt23";
    let mut s = Scenario::new("market", Backend::Sqlite, vec![small_corp(corp)]).await;
    add_suite(&s, suite).await;
    // The suite's first connections are refused: its ticket comes late.
    s.sim_stream_faults(json!({"refuseOpenNext": 3})).await;
    s.start_controller(ControllerOpts {
        events: true,
        suite_secret: Some("dingbind-suite".into()),
        ..ControllerOpts::default()
    });
    let mut spec = marketplace_spec(corp);
    s.apply_ok("acme", spec.clone()).await;
    s.wait_tenant("acme", "WaitingForSuiteTicket", |t| {
        expect_cond(
            t,
            condition::BOUND,
            "False",
            reason::WAITING_FOR_SUITE_TICKET,
        )
    })
    .await;
    // The ticket arrives once a connection opens; the tenant is not lost.
    s.wait_tenant("acme", "NotInstalled", |t| {
        expect_cond(t, condition::BOUND, "False", reason::NOT_INSTALLED)
    })
    .await;

    // The enterprise's admin installs the app from the market: bound within
    // seconds (org_suite_auth), well before the 30 s recheck.
    let install = s
        .sim(
            reqwest::Method::PUT,
            &format!("/_sim/corps/{corp}/suites/{suite}"),
            Some(json!({"scope": {"deptIds": [2, 3], "userIds": []}})),
        )
        .await;
    let agent = install["agentId"].as_i64().expect("agentId");
    let creator = format!("owner@{corp}.example");
    let expected = userids_in_scope(&s.sim_corp(corp).await, &[2, 3], &[], &creator);
    s.eventually_within(
        "acme: bound and synced within seconds of the install",
        Duration::from_secs(15),
        || async {
            let t = s.tenant("acme").await?;
            ready_and_synced(&t)?;
            expect_cond(
                &t,
                condition::SCOPE_IN_SYNC,
                "True",
                reason::SCOPE_SET_IN_DINGTALK,
            )
        },
    )
    .await;
    s.wait_members("acme", &expected).await;
    assert!(
        matches!(
            s.store.ledger(&s.key("acme")).await.unwrap().as_slice(),
            [LedgerEntry::Bound { agent_id: Some(a), .. }] if *a == agent
        ),
        "the ledger holds the installed app"
    );

    // A leaver is known only by unionid in the marketplace event.
    s.sim_leave(corp, "zhang").await;
    let expected = userids_in_scope(&s.sim_corp(corp).await, &[2, 3], &[], &creator);
    assert!(!expected.contains("zhang"));
    s.wait_members("acme", &expected).await;

    // The admin narrows the scope in DingTalk's console: mirrored, and the
    // directory follows (the platform expects nothing, so it matches).
    s.sim(
        reqwest::Method::PUT,
        &format!("/_sim/corps/{corp}/suites/{suite}/scope"),
        Some(json!({"deptIds": [3], "userIds": []})),
    )
    .await;
    let expected = userids_in_scope(&s.sim_corp(corp).await, &[3], &[], &creator);
    s.wait_tenant("acme", "the scope set in DingTalk", |t| {
        let scope = t.status.as_ref().and_then(|s| s.visible_scope.as_ref());
        (scope.map(|v| v.dept_ids.clone()) == Some(vec![3]))
            .then_some(())
            .ok_or(format!("status.visibleScope {scope:?}"))
    })
    .await;
    s.wait_members("acme", &expected).await;

    // The unbind waits while the app runs; stopping it in DingTalk proves
    // the precondition within seconds.
    spec["mode"] = json!("Public");
    s.apply_ok("acme", spec).await;
    s.wait_tenant("acme", "AppStillEnabled", |t| {
        expect_cond(t, condition::READY, "False", reason::APP_STILL_ENABLED)
    })
    .await;
    s.sim(
        reqwest::Method::POST,
        &format!("/_sim/corps/{corp}/suites/{suite}/stop"),
        None,
    )
    .await;
    s.eventually_within(
        "acme: unbound within seconds of the app being stopped",
        Duration::from_secs(15),
        || async {
            let t = s.tenant("acme").await?;
            (status_mode(&t) == Some(Mode::Public))
                .then_some(())
                .ok_or(format!("mode {:?}", status_mode(&t)))
        },
    )
    .await;
    assert!(s.directory("acme").await.members.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s24_an_uninstall_without_a_request_keeps_the_directory_until_a_person_decides() {
    let corp = "dingbind24";
    let suite = "mkt24";
    let mut s = Scenario::new("uninstall", Backend::Postgres, vec![small_corp(corp)]).await;
    add_suite(&s, suite).await;
    s.sim(
        reqwest::Method::PUT,
        &format!("/_sim/corps/{corp}/suites/{suite}"),
        None,
    )
    .await;
    s.start_controller(ControllerOpts {
        events: true,
        suite_secret: Some("dingbind-suite".into()),
        ..ControllerOpts::default()
    });
    let mut spec = marketplace_spec(corp);
    s.apply_ok("acme", spec.clone()).await;
    s.wait_tenant("acme", "Ready", ready_and_synced).await;
    let kept = member_ids(&s.directory("acme").await);
    assert!(!kept.is_empty());

    s.sim(
        reqwest::Method::DELETE,
        &format!("/_sim/corps/{corp}/suites/{suite}"),
        None,
    )
    .await;
    s.wait_tenant("acme", "AppUninstalled", |t| {
        expect_cond(t, condition::BOUND, "False", reason::APP_UNINSTALLED)
    })
    .await;
    assert_eq!(
        member_ids(&s.directory("acme").await),
        kept,
        "the directory is kept"
    );

    // A person decides: the uninstall is the proof.
    spec["mode"] = json!("Public");
    s.apply_ok("acme", spec).await;
    s.wait_tenant("acme", "Public", |t| {
        (status_mode(t) == Some(Mode::Public))
            .then_some(())
            .ok_or(format!("mode {:?}", status_mode(t)))
    })
    .await;
    assert!(s.directory("acme").await.members.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s25_logins_follow_the_mode_the_binding_the_scope_and_the_callers_rbac() {
    let corp = "dingbind25";
    let other = "dingbind25x";
    let login = free_addr();
    let mut s = Scenario::new(
        "login",
        Backend::Sqlite,
        vec![small_corp(corp), small_corp(other)],
    )
    .await;
    s.start_controller(ControllerOpts {
        login_addr: Some(login),
        ..ControllerOpts::default()
    });
    s.credentials("acme", corp).await;
    let spec = dingtalk_spec("acme", corp, json!({"departments": [2, 3]}));
    s.apply_ok("acme", spec.clone()).await;
    s.wait_tenant("acme", "Ready", ready_and_synced).await;

    // Two callers: the platform's login service, granted `create
    // tenants/login` here, and a stranger.
    let env = s.cluster.env;
    let kubectl = |args: &[&str]| {
        let out = env.kubectl(args.iter().copied());
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    kubectl(&[
        "apply",
        "-f",
        repo("manifests/login-role.yaml").to_str().unwrap(),
    ]);
    kubectl(&["create", "serviceaccount", "platform", "-n", &s.ns]);
    kubectl(&["create", "serviceaccount", "stranger", "-n", &s.ns]);
    kubectl(&[
        "create",
        "rolebinding",
        "platform-login",
        "-n",
        &s.ns,
        "--clusterrole=dingbind-login",
        &format!("--serviceaccount={}:platform", s.ns),
    ]);
    let platform = kubectl(&["create", "token", "platform", "-n", &s.ns]);
    let stranger = kubectl(&["create", "token", "stranger", "-n", &s.ns]);
    let url = |kind: &str| {
        format!(
            "http://{login}/v1/namespaces/{}/tenants/acme/logins/{kind}",
            s.ns
        )
    };
    let ask = |token: String, kind: &'static str, body: Value| {
        let (http, url) = (s.http.clone(), url(kind));
        async move {
            let resp = http
                .post(&url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .expect("the login API answers");
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let sc = &s;
    let code = |userid: &'static str, flow: &'static str, person_of: Option<&'static str>| async move {
        let mut body = json!({"userid": userid, "flow": flow});
        if let Some(p) = person_of {
            body["personOf"] = json!(p);
        }
        let c = sc
            .sim(
                reqwest::Method::POST,
                &format!("/_sim/corps/{corp}/authcodes"),
                Some(body),
            )
            .await;
        c["code"].as_str().expect("a code").to_string()
    };
    let allowed_as = |(status, answer): (u16, Value), who: &str| {
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["allowed"], true, "{who}: {answer}");
        answer["as"].as_str().unwrap_or_default().to_string()
    };
    let refused = |(status, answer): (u16, Value), who: &str| {
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["allowed"], false, "{who}: {answer}");
        answer["reason"].as_str().unwrap_or_default().to_string()
    };
    // The login API may take a moment to come up with the controller.
    s.eventually("the login API answers", || async {
        s.http
            .post(url("member"))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .await;

    // Members log in with an in-app code and with a web code.
    let c = code("zhang", "inApp", None).await;
    let a = ask(
        platform.clone(),
        "dingtalk",
        json!({"code": c, "flow": "inApp"}),
    )
    .await;
    assert_eq!(a.1["member"]["userid"], "zhang", "{}", a.1);
    assert_eq!(allowed_as(a, "zhang in the app"), "member");
    let c = code("li", "web", None).await;
    let a = ask(
        platform.clone(),
        "dingtalk",
        json!({"code": c, "flow": "web"}),
    )
    .await;
    assert_eq!(allowed_as(a, "li on the web"), "member");
    // The same code twice: DingTalk refuses it.
    let a = ask(
        platform.clone(),
        "dingtalk",
        json!({"code": c, "flow": "web"}),
    )
    .await;
    assert_eq!(refused(a, "a used code"), "CodeInvalid");
    // Outside the scope (Finance), and a person of another organization.
    let c = code("qian", "inApp", None).await;
    let a = ask(
        platform.clone(),
        "dingtalk",
        json!({"code": c, "flow": "inApp"}),
    )
    .await;
    assert_eq!(refused(a, "qian, outside the scope"), "NotInScope");
    let c = code("zhou", "web", Some(other)).await;
    let a = ask(
        platform.clone(),
        "dingtalk",
        json!({"code": c, "flow": "web"}),
    )
    .await;
    assert_eq!(refused(a, "a person of another organization"), "NotInScope");

    // A leaver is refused as soon as the directory drops them.
    let a = ask(platform.clone(), "member", json!({"userid": "wang"})).await;
    assert_eq!(allowed_as(a, "wang before leaving"), "member");
    s.sim_leave(corp, "wang").await;
    s.annotate("acme", SYNC_REQUESTED_AT, "after-wang-left")
        .await;
    s.eventually("wang gone from the directory", || async {
        (!member_ids(&s.directory("acme").await).contains("wang"))
            .then_some(())
            .ok_or("still there".to_string())
    })
    .await;
    let a = ask(platform.clone(), "member", json!({"userid": "wang"})).await;
    assert_eq!(refused(a, "wang after leaving"), "NotInScope");

    // The creator logs in by password only once the account is complete.
    let creator = json!({"account": format!("owner@{corp}.example"), "password": "correct-horse"});
    let a = ask(platform.clone(), "creator", creator.clone()).await;
    assert_eq!(
        refused(a, "the creator without a password"),
        "CreatorIncomplete"
    );
    s.secret("acme-creator", &[("password", "correct-horse")])
        .await;
    let a = ask(platform.clone(), "creator", creator.clone()).await;
    assert_eq!(allowed_as(a, "the creator"), "creator");
    let wrong = json!({"account": format!("owner@{corp}.example"), "password": "wrong"});
    let a = ask(platform.clone(), "creator", wrong).await;
    assert_eq!(refused(a, "a wrong password"), "InvalidCredentials");
    let unknown = json!({"account": "nobody@example.com", "password": "correct-horse"});
    let a = ask(platform.clone(), "creator", unknown).await;
    assert_eq!(refused(a, "an unknown account"), "InvalidCredentials");

    // Callers without the grant, or without a token.
    let a = ask(stranger, "member", json!({"userid": "zhang"})).await;
    assert_eq!(a.0, 403, "{}", a.1);
    let a = ask(String::new(), "member", json!({"userid": "zhang"})).await;
    assert_eq!(a.0, 401, "{}", a.1);

    // After the unbind: no DingTalk login any more; the password still works.
    let mut public = spec;
    public["mode"] = json!("Public");
    s.apply_ok("acme", public).await;
    s.sim_app(corp, json!({"enabled": false})).await;
    s.wait_tenant("acme", "Public", |t| {
        (status_mode(t) == Some(Mode::Public))
            .then_some(())
            .ok_or(format!("mode {:?}", status_mode(t)))
    })
    .await;
    let c = code("zhang", "inApp", None).await;
    let a = ask(
        platform.clone(),
        "dingtalk",
        json!({"code": c, "flow": "inApp"}),
    )
    .await;
    assert_eq!(refused(a, "zhang after the unbind"), "TenantPublic");
    let a = ask(platform, "creator", creator).await;
    assert_eq!(allowed_as(a, "the creator after the unbind"), "creator");
    let metrics = s.controller_metrics(0).await;
    assert!(
        metrics.contains("dingbind_logins_total{as=\"creator\",allowed=\"true\",reason=\"-\"}"),
        "{metrics}"
    );
}

/// `EventsConnected=True` (`Connected`) with `status.events.connectedSince`.
fn events_connected(t: &Tenant) -> Result<(), String> {
    expect_cond(t, condition::EVENTS_CONNECTED, "True", reason::CONNECTED)?;
    let since = t
        .status
        .as_ref()
        .and_then(|s| s.events.as_ref())
        .and_then(|e| e.connected_since.as_ref());
    since
        .map(|_| ())
        .ok_or("no status.events.connectedSince".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s20_a_scope_changed_in_dingtalk_is_corrected_and_a_dropped_connection_loses_no_change() {
    let corp = "dingbind20";
    let mut s = Scenario::new("events-drift", Backend::Sqlite, vec![small_corp(corp)]).await;
    s.start_controller(ControllerOpts {
        events: true,
        ..ControllerOpts::default()
    });
    s.credentials("acme", corp).await;
    s.secret("acme-creator", &[("password", "correct-horse")])
        .await;
    let mut spec = dingtalk_spec("acme", corp, json!({"departments": [2, 3]}));
    spec["sync"] = json!({"interval": "6h"});
    s.apply_ok("acme", spec).await;
    s.wait_tenant("acme", "Ready", ready_and_synced).await;
    s.wait_tenant("acme", "EventsConnected", events_connected)
        .await;
    assert_eq!(s.sim_scope(corp).await.0, BTreeSet::from([2, 3]));

    // An admin adds Finance to the app's scope in DingTalk's console: the
    // event brings the declared scope back, and says who changed it.
    s.sim_app(corp, json!({"visibleScope": {"deptIds": [2, 3, 5]}}))
        .await;
    let e = s
        .wait_event("acme", "Normal", reason::SCOPE_CHANGED_IN_DINGTALK)
        .await;
    assert!(
        e.note.as_deref().is_some_and(|n| n.contains("unionId")),
        "the Event names the operator: {:?}",
        e.note
    );
    s.eventually_within(
        "acme: the declared scope is back in DingTalk",
        Duration::from_secs(15),
        || async {
            let depts = s.sim_scope(corp).await.0;
            (depts == BTreeSet::from([2, 3]))
                .then_some(())
                .ok_or(format!("scope {depts:?}"))
        },
    )
    .await;

    // The connection drops and cannot be opened again for a while; a
    // change made meanwhile waits in DingTalk and arrives on the new
    // connection, without a full sync.
    let listsub = endpoint_stat(dingbind::dingtalk::types::Api::DeptListSub, "calls");
    let scope_reads = stat(&s.sim_stats().await, &listsub);
    s.sim_stream_faults(json!({"refuseOpenNext": 3})).await;
    s.sim_stream_drop(corp).await;
    s.wait_tenant("acme", "EventsConnected=False", |t| {
        expect_cond(
            t,
            condition::EVENTS_CONNECTED,
            "False",
            reason::DISCONNECTED,
        )
    })
    .await;
    s.sim_leave(corp, "li").await;
    let creator = format!("owner@{corp}.example");
    let expected = userids_in_scope(&s.sim_corp(corp).await, &[2, 3], &[], &creator);
    assert!(!expected.contains("li"));
    s.wait_members("acme", &expected).await;
    let t = s
        .wait_tenant("acme", "EventsConnected again", events_connected)
        .await;
    let reconnects = t
        .status
        .as_ref()
        .and_then(|s| s.events.as_ref())
        .map(|e| e.reconnects);
    assert!(reconnects >= Some(1), "reconnects: {reconnects:?}");
    assert_eq!(
        stat(&s.sim_stats().await, &listsub),
        scope_reads,
        "the change came by its event: the scope was not walked again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s21_events_by_http_push_bring_a_leaver_to_the_tenant_within_seconds() {
    let corp = "dingbind21";
    let mut s = Scenario::new("events-http", Backend::Sqlite, vec![small_corp(corp)]).await;
    let addr = free_addr();
    s.start_controller(ControllerOpts {
        events: true,
        events_addr: Some(addr),
        ..ControllerOpts::default()
    });
    let (token, aes_key) = ("pushtoken42", "4g5j64qlyl3zvetqxz5jiocdr586fn2zvjpa8zls3ij");
    s.secret(
        "acme-dingtalk",
        &[
            ("appKey", &format!("{corp}-key")),
            ("appSecret", &format!("{corp}-secret")),
            ("token", token),
            ("aesKey", aes_key),
        ],
    )
    .await;
    s.secret("acme-creator", &[("password", "correct-horse")])
        .await;
    let mut spec = dingtalk_spec("acme", corp, json!({"departments": [2, 3]}));
    spec["sync"] = json!({"interval": "6h"});
    spec["dingtalk"]["events"] = json!({"mode": "HTTP"});
    s.apply_ok("acme", spec).await;
    s.wait_tenant("acme", "Ready", ready_and_synced).await;
    s.wait_tenant("acme", "EventsConnected=True Receiving", |t| {
        expect_cond(t, condition::EVENTS_CONNECTED, "True", reason::RECEIVING)
    })
    .await;

    // The console's HTTP push settings: saved once the URL answers check_url.
    let url = format!("http://{addr}/dingtalk/events/{}/acme", s.ns);
    s.sim_callback(corp, &url, token, aes_key).await;
    s.sim_leave(corp, "zhang").await;
    let creator = format!("owner@{corp}.example");
    let expected = userids_in_scope(&s.sim_corp(corp).await, &[2, 3], &[], &creator);
    assert!(!expected.contains("zhang"));
    s.wait_members("acme", &expected).await;
    s.wait_event("acme", "Normal", reason::DIRECTORY_UPDATED)
        .await;
    let t = s
        .wait_tenant("acme", "status.events counts the push", |t| {
            let e = t.status.as_ref().and_then(|s| s.events.clone());
            match e {
                Some(e) if e.mode == EventDelivery::Http && e.events_received >= 1 => Ok(()),
                other => Err(format!("status.events {other:?}")),
            }
        })
        .await;
    assert_eq!(handled_request(&t), None, "no sync was requested");
    let pushed = s.sim(reqwest::Method::GET, "/_sim/http-push", None).await;
    assert!(
        pushed["succeeded"].as_u64() >= Some(2) && pushed["failed"] == json!(0),
        "check_url and the event answered: {pushed}"
    );

    // A push with another token's signature is refused, and changes nothing.
    let forged = reqwest::Client::new()
        .post(format!("{url}?msg_signature=0000&timestamp=1&nonce=x"))
        .json(&json!({"encrypt": "AAAA"}))
        .send()
        .await
        .expect("the receiver answers");
    assert_eq!(forged.status(), reqwest::StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s22_with_events_dropped_duplicated_delayed_and_reordered_the_directory_converges() {
    let corp = "dingbind22";
    let mut s = Scenario::new("events-faults", Backend::Sqlite, vec![small_corp(corp)]).await;
    s.start_controller(ControllerOpts {
        events: true,
        ..ControllerOpts::default()
    });
    s.credentials("acme", corp).await;
    s.secret("acme-creator", &[("password", "correct-horse")])
        .await;
    // The shortest safety net: what events lose, the periodic sync brings
    // (its two removals within the delete guard).
    let mut spec = dingtalk_spec("acme", corp, json!({"departments": [2, 3]}));
    spec["sync"] = json!({"interval": "1m", "maxDeletions": 5});
    s.apply_ok("acme", spec).await;
    s.wait_tenant("acme", "Ready", ready_and_synced).await;
    s.wait_tenant("acme", "EventsConnected", events_connected)
        .await;

    // The next two events are lost, three come twice, and every event is
    // late by 0.2 to 1.7 s, so those made close together arrive out of order.
    s.sim_stream_faults(
        json!({"dropNext": 2, "duplicateNext": 3, "delayMs": 200, "delayJitterMs": 1500}),
    )
    .await;
    s.sim_leave(corp, "zhang").await;
    s.sim_leave(corp, "zhao").await;
    s.sim_put_user(corp, "newbie1", &[2]).await;
    s.sim_put_user(corp, "newbie2", &[4]).await;
    s.sim_put_user(corp, "outsider", &[5]).await;
    s.sim_put_user(corp, "qian", &[3]).await;
    s.sim_put_user(corp, "wang", &[5]).await;
    s.sim(
        reqwest::Method::PUT,
        &format!("/_sim/corps/{corp}/users/li"),
        Some(json!({"name": "Li Si (renamed)", "deptIds": [2, 3]})),
    )
    .await;
    s.sim_leave(corp, "newbie2").await;

    let truth = s.sim_corp(corp).await;
    let creator = format!("owner@{corp}.example");
    let expected = userids_in_scope(&truth, &[2, 3], &[], &creator);
    let names: BTreeMap<String, String> = truth
        .users
        .iter()
        .filter(|u| expected.contains(&u.userid))
        .map(|u| (u.userid.clone(), u.name.clone()))
        .collect();
    s.eventually_within(
        "acme: the directory is DingTalk's",
        Duration::from_secs(150),
        || async {
            let dir = s.directory("acme").await;
            let got: BTreeMap<String, String> = dir
                .members
                .values()
                .map(|m| (m.userid.clone(), m.name.clone()))
                .collect();
            (got == names)
                .then_some(())
                .ok_or(format!("directory {got:?}, DingTalk {names:?}"))
        },
    )
    .await;
    let g = s.sim(reqwest::Method::GET, "/_sim/stream", None).await;
    assert_eq!(g["dropped"], json!(2), "two events were lost: {g}");
    assert!(
        g["redeliveries"].as_u64() >= Some(3),
        "three came twice: {g}"
    );
}
