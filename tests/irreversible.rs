//! The central promise, as a property of the whole reconciler (store, DingTalk
//! simulator, UnbindRecords as the controller keeps them): whatever sequence of
//! edits, recreations, clock jumps (backwards too), store losses (the cluster's
//! record surviving) and DingTalk changes, a tenant is unbound exactly when the
//! rules say, and once unbound it never operates in DingTalk mode again.

mod support;

use dingbind::{
    api::{Mode, Tenant, TenantKey, UnbindReason, UnbindRecordSpec, condition},
    core::conditions,
    dingtalk,
    reconcile::{Reconciler, Secrets},
    sim::{OrgFile, Simulator, World},
    store::{LedgerEntry, Store},
};
use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;
use serde_json::{Value, json};
use support::fixtures::{SecretsBuilder, TenantBuilder, TenantFixture};

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
      - {userid: s2, name: Sales Two, deptIds: [2], email: s2@acme.example}
"#;

#[derive(Clone, Debug)]
enum Edit {
    SetMode(Mode),
    /// `true`: agentId 1002 (a typo), `false`: back to 1001.
    Typo(bool),
    /// The trial's end, in seconds from the start (`None`: no trial).
    SetTrial(Option<i64>),
    Suspend(bool),
    Password(bool),
    DisableApp(bool),
    Clock(i64),
    Recreate {
        mode: Mode,
        trial: Option<i64>,
    },
    LoseStore,
}

fn arb_edit() -> impl Strategy<Value = Edit> {
    let mode = || prop_oneof![Just(Mode::DingTalk), Just(Mode::Public)];
    prop_oneof![
        3 => mode().prop_map(Edit::SetMode),
        1 => any::<bool>().prop_map(Edit::Typo),
        1 => prop::option::of(0i64..3000).prop_map(Edit::SetTrial),
        1 => any::<bool>().prop_map(Edit::Suspend),
        1 => any::<bool>().prop_map(Edit::Password),
        2 => any::<bool>().prop_map(Edit::DisableApp),
        2 => (-600i64..1500).prop_map(Edit::Clock),
        1 => (mode(), prop::option::of(0i64..3000)).prop_map(|(mode, trial)| Edit::Recreate { mode, trial }),
        1 => Just(Edit::LoseStore),
    ]
}

/// The binding as the rules define it: the app, and the trial end seen when bound.
#[derive(Clone, Debug)]
struct Bound {
    agent_id: i64,
    trial: Option<i64>,
}

struct World0 {
    spec: Value,
    agent_id: i64,
    trial: Option<i64>,
    password: bool,
    app_enabled: bool,
    now: i64,
    bound: Option<Bound>,
    unbound: bool,
}

fn tenant(spec: &Value) -> Tenant {
    TenantBuilder::new("acme")
        .namespace("prop")
        .with_spec(spec.clone())
        .build()
}

fn secrets(t: &Tenant, password: bool) -> Secrets {
    let s = SecretsBuilder::new("acme");
    let s = if password { s } else { s.without_password() };
    s.resolve(t)
}

fn at(start: Timestamp, secs: i64) -> Timestamp {
    start + SignedDuration::from_secs(secs)
}

async fn fresh_store(dir: &tempfile::TempDir, n: usize) -> Store {
    Store::connect(&format!(
        "sqlite://{}",
        dir.path().join(format!("store-{n}.db")).display()
    ))
    .await
    .expect("store")
}

async fn calls(http: &reqwest::Client, sim: &str) -> u64 {
    let stats: Value = http
        .get(format!("{sim}/_sim/stats"))
        .send()
        .await
        .expect("stats")
        .json()
        .await
        .expect("stats json");
    let apps = stats
        .get("apps")
        .and_then(Value::as_object)
        .expect("the simulator's stats list apps");
    // Every app of the world is listed, at zero before its first call.
    apps.get("acme-key")
        .and_then(|app| app.get("calls"))
        .and_then(Value::as_u64)
        .expect("the simulator counts acme-key's calls")
}

async fn run(initial_trial: Option<i64>, edits: Vec<Edit>) -> Result<(), TestCaseError> {
    let start = Timestamp::from_second(2_000_000_000).unwrap();
    let world = World::from_file(OrgFile::parse(ORG).expect("org")).expect("world");
    let sim = Simulator::start(world, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("simulator");
    let url = sim.url();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut stores = 0;
    let mut store = fresh_store(&dir, stores).await;
    let client = || dingtalk::Client::new(dingtalk::Config::with_base_url(&url)).expect("client");
    let mut rec = Reconciler::new(store.clone(), client()).keeping_unbind_records();
    // After the DingTalk client, which installs the TLS crypto provider.
    let http = reqwest::Client::new();
    let key = TenantKey {
        namespace: "prop".into(),
        name: "acme".into(),
    };
    let mut w = World0 {
        spec: Tenant::test("acme")
            .corp("dingacme")
            .credentials_secret("creds")
            .password_secret("pw")
            .creator_email("owner@acme.example")
            .departments(&[2])
            .spec(),
        agent_id: 1001,
        trial: initial_trial,
        password: true,
        app_enabled: true,
        now: 0,
        bound: None,
        unbound: false,
    };
    if let Some(e) = initial_trial {
        w.spec["trial"] = json!({"expiresAt": at(start, e).to_string()});
    }
    let mut t = tenant(&w.spec);
    // The cluster's record: it survives every store loss.
    let mut record: Option<UnbindRecordSpec> = None;

    for edit in edits {
        match &edit {
            Edit::SetMode(m) => t.spec.mode = *m,
            Edit::Typo(on) => {
                w.agent_id = if *on { 1002 } else { 1001 };
                if let Some(d) = t.spec.dingtalk.as_mut() {
                    d.agent_id = Some(w.agent_id);
                }
            }
            Edit::SetTrial(end) => {
                w.trial = *end;
                t.spec.trial = end.map(|e| dingbind::api::TrialSpec {
                    expires_at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at(start, e)),
                });
            }
            Edit::Suspend(on) => t.spec.suspend = *on,
            Edit::Password(on) => w.password = *on,
            Edit::DisableApp(off) => {
                w.app_enabled = !*off;
                http.put(format!("{url}/_sim/corps/dingacme/apps/1001"))
                    .json(&json!({"enabled": w.app_enabled}))
                    .send()
                    .await
                    .expect("app")
                    .error_for_status()
                    .expect("app updated");
            }
            Edit::Clock(dt) => w.now += dt,
            Edit::Recreate { mode, trial } => {
                let mut spec = w.spec.clone();
                spec["mode"] = json!(mode.as_str());
                spec["dingtalk"]["agentId"] = json!(w.agent_id);
                match trial {
                    Some(e) => spec["trial"] = json!({"expiresAt": at(start, *e).to_string()}),
                    None => {
                        spec.as_object_mut().map(|o| o.remove("trial"));
                    }
                }
                w.trial = *trial;
                t = tenant(&spec);
            }
            Edit::LoseStore => {
                stores += 1;
                store = fresh_store(&dir, stores).await;
                rec = Reconciler::new(store.clone(), client()).keeping_unbind_records();
                if !w.unbound {
                    // Bound but never unbound: nothing records the binding any more.
                    w.bound = None;
                }
            }
        }
        let now = at(start, w.now);
        let before = calls(&http, &url).await;
        let o = rec
            .reconcile(&t, &secrets(&t, w.password), record.as_ref(), now, &|_| {})
            .await
            .map_err(|e| TestCaseError::fail(format!("reconcile: {e}")))?;
        let spent = calls(&http, &url).await - before;
        t.status = Some(o.status.clone());
        if o.unbind_record.is_some() && record.is_none() {
            record = o.unbind_record.clone();
        }
        let now_public = o.status.mode == Some(Mode::Public) && o.status.unbound_at.is_some();

        if w.unbound {
            prop_assert!(
                now_public,
                "{edit:?}: an unbound tenant is public: {:?}",
                o.status
            );
            prop_assert_eq!(
                spent,
                0,
                "{:?}: a DingTalk call for an unbound tenant",
                edit
            );
            prop_assert!(store.directory(&key).await.unwrap().members.is_empty());
            prop_assert!(
                store.is_unbound(&key).await.unwrap(),
                "the ledger is repaired"
            );
            continue;
        }
        // Should this reconciliation have unbound the tenant?
        let trial_due = w.bound.as_ref().is_some_and(|b| match (b.trial, w.trial) {
            (Some(recorded), Some(declared)) => recorded.max(declared) <= w.now,
            _ => false,
        });
        let requested = w.bound.as_ref().is_some_and(|b| {
            t.spec.mode == Mode::Public
                && b.agent_id == w.agent_id
                && !w.app_enabled
                && w.password
                && !t.spec.suspend
        });
        prop_assert_eq!(
            now_public,
            trial_due || requested,
            "{:?} at {}: bound {:?}, trial {:?}, mode {}, app enabled {}, password {}, suspended {}: {:?}",
            edit,
            w.now,
            w.bound,
            w.trial,
            t.spec.mode,
            w.app_enabled,
            w.password,
            t.spec.suspend,
            o.status.conditions
        );
        if now_public {
            let reason = o.status.unbind_reason;
            prop_assert_eq!(
                reason,
                Some(if trial_due {
                    UnbindReason::TrialExpired
                } else {
                    UnbindReason::Requested
                })
            );
            prop_assert!(record.is_some(), "an unbind names its UnbindRecord");
            prop_assert!(store.directory(&key).await.unwrap().members.is_empty());
            w.unbound = true;
            continue;
        }
        // Bound now? The ledger says so (once per store).
        let ledger = store.ledger(&key).await.unwrap();
        if w.bound.is_none()
            && let Some(LedgerEntry::Bound {
                agent_id,
                trial_ends_at,
                ..
            }) = ledger.last()
        {
            prop_assert_eq!(*agent_id, Some(w.agent_id), "bound to the declared app");
            w.bound = Some(Bound {
                agent_id: w.agent_id,
                trial: trial_ends_at.map(|e| e.duration_since(start).as_secs()),
            });
        }
        if let Some(b) = &w.bound {
            prop_assert!(
                ledger.iter().all(|e| matches!(e, LedgerEntry::Bound { agent_id: Some(a), .. } if *a == b.agent_id)),
                "the binding identity never changes while bound: {ledger:?}"
            );
            if b.agent_id != w.agent_id && !trial_due && !t.spec.suspend {
                let bound = conditions::get(&o.status.conditions, condition::BOUND);
                prop_assert_eq!(bound.map(|c| c.reason.as_str()), Some("BindingChanged"));
            }
        }
    }
    sim.shutdown().await.expect("simulator stops");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn an_unbind_happens_exactly_when_the_rules_say_and_is_never_undone(
        initial_trial in prop::option::of(0i64..3000),
        edits in prop::collection::vec(arb_edit(), 1..30)
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(run(initial_trial, edits))?;
    }
}
