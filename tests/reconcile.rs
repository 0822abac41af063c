//! The reconciler shell against the DingTalk simulator and the store (SQLite
//! always; PostgreSQL too when `DINGBIND_TEST_POSTGRES_URL` is set): the
//! binding lifecycle, the visible scope, the directory sync and its guard.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use dingbind::{
    api::{Mode, SYNC_REQUESTED_AT, Tenant, TenantKey, UnbindReason, condition, reason},
    core::conditions,
    core::dirty::Dirty,
    dingtalk,
    reconcile::{EventsSeen, Outcome, Reconciler, Secrets},
    sim::{OrgFile, SimHandle, Simulator, World},
    store::{LedgerEntry, Store},
};
use jiff::{SignedDuration, Timestamp};
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
      - {id: 3, name: East, parentId: 2}
      - {id: 4, name: Engineering, parentId: 1}
      - {id: 5, name: Platform, parentId: 4}
      - {id: 6, name: Finance, parentId: 1}
    users:
      - {userid: boss, name: Owner, deptIds: [1], email: owner@acme.example, admin: true}
      - {userid: s1, name: Sales One, deptIds: [2], email: s1@acme.example}
      - {userid: s2, name: Sales Two, deptIds: [3], email: s2@acme.example}
      - {userid: s3, name: Both, deptIds: [3, 5], email: s3@acme.example}
      - {userid: e1, name: Eng One, deptIds: [4], email: e1@acme.example}
      - {userid: e2, name: Eng Two, deptIds: [5], email: e2@acme.example}
      - {userid: f1, name: Fin One, deptIds: [6], email: f1@acme.example}
      - {userid: f2, name: Fin Two, deptIds: [6], email: f2@acme.example}
  - corpId: dingbeta
    name: Beta
    apps:
      - {agentId: 3001, appKey: beta-key, appSecret: beta-secret, enabled: true, visibleScope: {deptIds: [2], userIds: []}}
    departments:
      - {id: 2, name: Ops, parentId: 1}
      - {id: 3, name: Night shift, parentId: 2}
    users:
      - {userid: b1, name: Beta One, deptIds: [2]}
      - {userid: b2, name: Beta Two, deptIds: [3]}
      - {userid: b3, name: Beta Three, deptIds: [3]}
"#;

/// The simulator, a store and a reconciler, for one test.
struct Env {
    sim: SimHandle,
    store: Store,
    rec: Reconciler,
    http: reqwest::Client,
    ns: String,
}

async fn envs() -> Vec<Env> {
    let dir = tempfile::tempdir().expect("temp dir").keep();
    let mut urls = vec![format!("sqlite://{}", dir.join("store.db").display())];
    // Fails when PostgreSQL was asked for (DINGBIND_TEST_REQUIRE_POSTGRES=1) and is missing.
    if let Some(url) = support::postgres::admin_url("the reconciler tests") {
        urls.push(url);
    }
    let mut out = Vec::new();
    for url in urls {
        let world = World::from_file(OrgFile::parse(ORG).expect("org parses")).expect("world");
        let sim = Simulator::start(world, "127.0.0.1:0".parse().unwrap())
            .await
            .expect("simulator starts");
        let store = Store::connect(&url)
            .await
            .expect("store opens (is PostgreSQL running?)");
        let client =
            dingtalk::Client::new(dingtalk::Config::with_base_url(&sim.url())).expect("client");
        let rec = Reconciler::new(store.clone(), client);
        let ns = format!("t{}", fastrand::u64(..));
        out.push(Env {
            sim,
            store,
            rec,
            http: reqwest::Client::new(),
            ns,
        });
    }
    out
}

impl Env {
    fn tenant(&self, name: &str, spec: Value) -> Tenant {
        TenantBuilder::new(name)
            .namespace(&self.ns)
            .with_spec(spec)
            .build()
    }

    fn key(&self, name: &str) -> TenantKey {
        TenantKey {
            namespace: self.ns.clone(),
            name: name.into(),
        }
    }

    /// Reconciles at `now` and keeps the status on the object, as the controller does.
    async fn run_at(&self, t: &mut Tenant, secrets: &Secrets, now: Timestamp) -> Outcome {
        let outcome = self
            .rec
            .reconcile(t, secrets, None, now, &|_| {})
            .await
            .expect("reconcile");
        t.status = Some(outcome.status.clone());
        outcome
    }

    async fn run(&self, t: &mut Tenant, secrets: &Secrets) -> Outcome {
        self.run_at(t, secrets, Timestamp::now()).await
    }

    async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self
            .http
            .request(method, format!("{}/_sim/{path}", self.sim.url()));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("admin call");
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        resp.json().await.unwrap_or(Value::Null)
    }

    async fn app_calls(&self) -> u64 {
        let stats = self.admin(reqwest::Method::GET, "stats", None).await;
        // A missing key fails: it must never read as "no calls".
        stats
            .pointer("/apps/acme-key/calls")
            .and_then(Value::as_u64)
            .unwrap_or_else(|| panic!("no /apps/acme-key/calls in the simulator's stats: {stats}"))
    }

    async fn members(&self, name: &str) -> BTreeSet<String> {
        self.store
            .directory(&self.key(name))
            .await
            .expect("directory")
            .members
            .into_keys()
            .collect()
    }
}

/// The tenant of these tests: corp `dingacme`, Secrets `creds` and `pw`, and
/// a creator who shares the email of the organization's `boss`.
fn acme(name: &str) -> TenantBuilder {
    Tenant::test(name)
        .corp("dingacme")
        .credentials_secret("creds")
        .password_secret("pw")
        .creator_email("owner@acme.example")
}

/// The Secrets of `acme`, with or without the creator's password.
fn secrets(password: bool) -> Secrets {
    let s = SecretsBuilder::new("acme");
    let s = if password { s } else { s.without_password() };
    s.resolve(&acme("acme").build())
}

fn spec(scope: Value) -> Value {
    acme("acme").scope(scope).spec()
}

fn ready(o: &Outcome) -> (String, String) {
    let c = conditions::get(&o.status.conditions, condition::READY).expect("Ready condition");
    (c.status.clone(), c.reason.clone())
}

fn set_of(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

fn request_sync(t: &mut Tenant, value: &str) {
    t.metadata
        .annotations
        .get_or_insert_default()
        .insert(SYNC_REQUESTED_AT.into(), value.into());
}

#[tokio::test]
async fn bind_and_sync_mirrors_the_scope_without_the_creator() {
    for env in envs().await {
        let mut t = env.tenant(
            "acme",
            spec(json!({"departments": [2, 4], "users": ["f1"]})),
        );
        let o = env.run(&mut t, &secrets(true)).await;
        assert_eq!(
            ready(&o),
            ("True".into(), reason::RECONCILED.into()),
            "{:?}",
            o.status
        );
        // Headcount == distinct DingTalk users in the scope (Sales and Engineering subtrees, plus f1).
        assert_eq!(
            env.members("acme").await,
            set_of(&["s1", "s2", "s3", "e1", "e2", "f1"])
        );
        let dir = env.store.directory(&env.key("acme")).await.unwrap();
        assert_eq!(
            dir.departments.keys().copied().collect::<Vec<_>>(),
            vec![2, 3, 4, 5]
        );
        assert_eq!(dir.members["s3"].dept_ids, vec![3, 5]);
        assert_eq!(
            dir.members["f1"].dept_ids,
            Vec::<i64>::new(),
            "listed by userid, Finance is outside the scope"
        );
        let status_dir = o.status.directory.as_ref().unwrap();
        assert_eq!(
            (status_dir.members, status_dir.departments, status_dir.added),
            (6, 4, 6)
        );
        assert_eq!(o.status.mode, Some(Mode::DingTalk));
        assert_eq!(o.status.bound_corp_id.as_deref(), Some("dingacme"));
        assert_eq!(kstatus(&o), (None, None), "synced: neither condition");
        assert_eq!(
            status_dir.synced_generation, t.metadata.generation,
            "the generation synced, as a field"
        );
        // The app's scope in DingTalk is now the declared one.
        let corp = env
            .admin(reqwest::Method::GET, "corps/dingacme", None)
            .await;
        let scope = &corp["apps"][0]["visibleScope"];
        assert_eq!(scope["deptIds"], json!([2, 4]));
        assert_eq!(scope["userIds"], json!(["f1"]));
        assert!(
            o.events.iter().any(|e| e.reason == reason::SCOPE_UPDATED),
            "drift was corrected with an Event"
        );
        assert_eq!(
            env.store.ledger(&env.key("acme")).await.unwrap().len(),
            1,
            "one Bound entry"
        );
    }
}

#[tokio::test]
async fn all_employees_covers_the_whole_organization_but_the_creator() {
    for env in envs().await {
        let mut t = env.tenant("all", spec(json!({"allEmployees": true})));
        env.run(&mut t, &secrets(true)).await;
        assert_eq!(
            env.members("all").await,
            set_of(&["s1", "s2", "s3", "e1", "e2", "f1", "f2"])
        );
    }
}

#[tokio::test]
async fn a_member_who_left_is_removed_on_a_requested_sync() {
    for env in envs().await {
        let mut t = env.tenant("acme", spec(json!({"departments": [2]})));
        env.run(&mut t, &secrets(true)).await;
        assert!(env.members("acme").await.contains("s2"));
        env.admin(reqwest::Method::POST, "corps/dingacme/users/s2/leave", None)
            .await;
        // Within the interval nothing is read again...
        env.run(&mut t, &secrets(true)).await;
        assert!(env.members("acme").await.contains("s2"));
        // ...until a sync is requested.
        request_sync(&mut t, "2026-11-26T10:00:00Z");
        let o = env.run(&mut t, &secrets(true)).await;
        assert_eq!(env.members("acme").await, set_of(&["s1", "s3"]));
        assert_eq!(
            o.status.last_handled_sync_request.as_deref(),
            Some("2026-11-26T10:00:00Z")
        );
        assert_eq!(o.status.directory.as_ref().unwrap().removed, 1);
    }
}

impl Env {
    /// Reconciles with what events marked, and keeps the status on the object.
    async fn run_with_events(&self, t: &mut Tenant, dirty: &Dirty) -> Outcome {
        let seen = EventsSeen {
            dirty: dirty.clone(),
            channel: None,
        };
        let outcome = self
            .rec
            .reconcile_with_events(t, &secrets(true), None, &seen, Timestamp::now(), &|_| {})
            .await
            .expect("reconcile");
        t.status = Some(outcome.status.clone());
        outcome
    }
}

/// `status.directory.lastSyncTime`, to the second (as the status is stored).
fn last_sync_second(o: &Outcome) -> Option<i64> {
    o.status
        .directory
        .as_ref()?
        .last_sync_time
        .as_ref()
        .map(|t| t.0.as_second())
}

fn users(ids: &[&str]) -> Dirty {
    Dirty {
        users: ids.iter().map(|s| s.to_string()).collect(),
        ..Dirty::default()
    }
}

#[tokio::test]
async fn a_leaver_an_event_names_is_removed_by_reading_only_them() {
    for env in envs().await {
        let mut t = env.tenant("acme", spec(json!({"departments": [2, 4]})));
        let first = env.run(&mut t, &secrets(true)).await;
        let synced_at = last_sync_second(&first);
        assert!(env.members("acme").await.contains("s2"));
        env.admin(reqwest::Method::POST, "corps/dingacme/users/s2/leave", None)
            .await;
        // Without the event, nothing is read within the interval.
        let before = env.app_calls().await;
        env.run(&mut t, &secrets(true)).await;
        let quiet = env.app_calls().await - before;
        assert!(env.members("acme").await.contains("s2"));

        let before = env.app_calls().await;
        let o = env.run_with_events(&mut t, &users(&["s2"])).await;
        let calls = env.app_calls().await - before;
        assert!(!env.members("acme").await.contains("s2"));
        // The reconciliation's own reads, and one user/get for the leaver.
        assert_eq!(calls, quiet + 1, "calls of the incremental sync");
        let report = o.sync.as_ref().expect("a sync ran");
        assert!(report.incremental);
        assert_eq!(report.run.removed, 1);
        let dir = o.status.directory.as_ref().unwrap();
        assert_eq!(
            last_sync_second(&o),
            synced_at,
            "only a full sync advances lastSyncTime"
        );
        assert_eq!(dir.members as usize, env.members("acme").await.len());
        assert!(
            o.events
                .iter()
                .any(|e| e.reason == reason::DIRECTORY_UPDATED),
            "{:?}",
            o.events
        );
    }
}

#[tokio::test]
async fn a_member_an_event_names_is_added_moved_and_updated_as_a_full_sync_would() {
    for env in envs().await {
        let mut t = env.tenant("acme", spec(json!({"departments": [2]})));
        env.run(&mut t, &secrets(true)).await;
        // e1 moves into Sales' subtree, n1 joins, s1 is renamed.
        for (path, body) in [
            (
                "corps/dingacme/users/e1",
                json!({"name": "Eng One", "deptIds": [3]}),
            ),
            (
                "corps/dingacme/users/n1",
                json!({"name": "New", "deptIds": [2]}),
            ),
            (
                "corps/dingacme/users/s1",
                json!({"name": "Sales Lead", "deptIds": [2]}),
            ),
        ] {
            env.admin(reqwest::Method::PUT, path, Some(body)).await;
        }
        env.run_with_events(&mut t, &users(&["e1", "n1", "s1"]))
            .await;
        let incremental = env.store.directory(&env.key("acme")).await.unwrap();
        // A full sync of the same organization finds the same directory.
        request_sync(&mut t, "check");
        let full = env.run(&mut t, &secrets(true)).await;
        let d = full.status.directory.as_ref().unwrap();
        assert_eq!((d.added, d.updated, d.removed), (0, 0, 0), "{d:?}");
        assert_eq!(
            env.store.directory(&env.key("acme")).await.unwrap(),
            incremental
        );
        assert!(incremental.members.contains_key("n1") && incremental.members.contains_key("e1"));
        assert_eq!(incremental.members["s1"].name, "Sales Lead");
    }
}

#[tokio::test]
async fn leavers_named_by_events_pass_the_delete_guard_like_a_full_sync() {
    for env in envs().await {
        let spec = acme("acme")
            .departments(&[2, 4])
            .max_deletions(json!(1))
            .spec();
        let mut t = env.tenant("acme", spec);
        env.run(&mut t, &secrets(true)).await;
        let before = env.members("acme").await;
        for u in ["s1", "s2", "e1"] {
            env.admin(
                reqwest::Method::POST,
                &format!("corps/dingacme/users/{u}/leave"),
                None,
            )
            .await;
        }
        let o = env
            .run_with_events(&mut t, &users(&["s1", "s2", "e1"]))
            .await;
        assert!(o.sync.as_ref().expect("a sync ran").incremental);
        assert_eq!(env.members("acme").await, before, "nobody removed");
        assert_eq!(o.status.directory.as_ref().unwrap().pending_deletions, 3);
        let c = conditions::get(&o.status.conditions, condition::DIRECTORY_SYNCED).unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", reason::DELETION_THRESHOLD_EXCEEDED)
        );
    }
}

#[tokio::test]
async fn events_that_only_a_full_sync_answers_run_one() {
    for env in envs().await {
        let mut t = env.tenant("acme", spec(json!({"departments": [2]})));
        let first = env.run(&mut t, &secrets(true)).await;
        let synced_at = first
            .status
            .directory
            .as_ref()
            .unwrap()
            .last_sync_time
            .clone();
        env.admin(reqwest::Method::POST, "corps/dingacme/users/s2/leave", None)
            .await;
        let gap = Dirty {
            full_sync: true,
            ..Dirty::default()
        };
        let o = env.run_with_events(&mut t, &gap).await;
        assert!(!o.sync.as_ref().expect("a sync ran").incremental);
        assert!(!env.members("acme").await.contains("s2"));
        assert_ne!(
            o.status.directory.as_ref().unwrap().last_sync_time,
            synced_at,
            "a full sync advances lastSyncTime"
        );
    }
}

#[tokio::test]
async fn a_sync_with_nothing_changed_writes_nothing() {
    for env in envs().await {
        let mut t = env.tenant("acme", spec(json!({"departments": [2, 4]})));
        env.run(&mut t, &secrets(true)).await;
        request_sync(&mut t, "again");
        let o = env.run(&mut t, &secrets(true)).await;
        let d = o.status.directory.as_ref().unwrap();
        assert_eq!((d.added, d.updated, d.removed), (0, 0, 0));
        let runs = env.store.sync_runs(&env.key("acme"), 1).await.unwrap();
        assert_eq!(runs[0].rows_written, 0, "{runs:?}");
    }
}

#[tokio::test]
async fn mass_removals_are_held_until_the_exact_count_is_approved() {
    for env in envs().await {
        let mut s = spec(json!({"allEmployees": true}));
        s["sync"] = json!({"maxDeletions": 1});
        let mut t = env.tenant("acme", s);
        env.run(&mut t, &secrets(true)).await;
        for u in ["e1", "e2", "f1"] {
            env.admin(
                reqwest::Method::POST,
                &format!("corps/dingacme/users/{u}/leave"),
                None,
            )
            .await;
        }
        env.admin(
            reqwest::Method::PUT,
            "corps/dingacme/users/n1",
            Some(json!({"name": "New", "deptIds": [2]})),
        )
        .await;
        request_sync(&mut t, "1");
        let o = env.run(&mut t, &secrets(true)).await;
        assert_eq!(
            ready(&o),
            ("False".into(), reason::DELETION_THRESHOLD_EXCEEDED.into())
        );
        let synced = conditions::get(&o.status.conditions, condition::DIRECTORY_SYNCED).unwrap();
        assert_eq!(synced.reason, reason::DELETION_THRESHOLD_EXCEEDED);
        assert!(synced.message.contains("3 members"), "{}", synced.message);
        assert_eq!(
            kstatus(&o),
            (None, Some(reason::DELETION_THRESHOLD_EXCEEDED.into())),
            "held until a person approves"
        );
        assert!(
            o.events
                .iter()
                .any(|e| e.warning && e.reason == reason::DELETION_THRESHOLD_EXCEEDED)
        );
        let members = env.members("acme").await;
        assert!(
            members.contains("e1") && members.contains("f1"),
            "no one removed"
        );
        assert!(members.contains("n1"), "the rest of the sync applied");
        assert_eq!(o.status.directory.as_ref().unwrap().pending_deletions, 3);
        assert_eq!(
            o.status.directory.as_ref().unwrap().synced_generation,
            t.metadata.generation,
            "a held sync was made for its generation"
        );
        // A wrong count approves nothing.
        t.metadata
            .annotations
            .get_or_insert_default()
            .insert("dingbind.dev/approve-deletions".into(), "2".into());
        let o = env.run(&mut t, &secrets(true)).await;
        // Refused visibly: Ready says the approval was not used, and a Warning says why.
        let r = conditions::get(&o.status.conditions, condition::READY).expect("Ready");
        assert_eq!(r.reason, reason::DELETION_THRESHOLD_EXCEEDED);
        assert!(r.message.contains("\"2\" was not used"), "{}", r.message);
        assert!(
            o.events
                .iter()
                .any(|e| e.warning && e.reason == reason::APPROVAL_MISMATCH),
            "{:?}",
            o.events
        );
        assert!(env.members("acme").await.contains("e1"));
        t.metadata
            .annotations
            .get_or_insert_default()
            .insert("dingbind.dev/approve-deletions".into(), "3".into());
        let o = env.run(&mut t, &secrets(true)).await;
        assert_eq!(ready(&o).0, "True");
        assert!(!env.members("acme").await.contains("e1"));
        assert_eq!(o.status.directory.as_ref().unwrap().pending_deletions, 0);
        assert_eq!(o.status.last_handled_approval.as_deref(), Some("3"));
        // The approval was used once: a later mass removal of the same count is held again.
        for u in ["s1", "s2", "s3"] {
            env.admin(
                reqwest::Method::POST,
                &format!("corps/dingacme/users/{u}/leave"),
                None,
            )
            .await;
        }
        request_sync(&mut t, "2");
        let o = env.run(&mut t, &secrets(true)).await;
        assert_eq!(o.status.directory.as_ref().unwrap().pending_deletions, 3);
        let o = env.run(&mut t, &secrets(true)).await;
        assert_eq!(
            ready(&o).1,
            reason::DELETION_THRESHOLD_EXCEEDED,
            "a stale approval approves nothing"
        );
        assert!(env.members("acme").await.contains("s1"));
        // Removing the annotation and setting it again approves this hold.
        t.metadata
            .annotations
            .get_or_insert_default()
            .remove("dingbind.dev/approve-deletions");
        env.run(&mut t, &secrets(true)).await;
        t.metadata
            .annotations
            .get_or_insert_default()
            .insert("dingbind.dev/approve-deletions".into(), "3".into());
        env.run(&mut t, &secrets(true)).await;
        assert!(!env.members("acme").await.contains("s1"));
    }
}

#[tokio::test]
async fn a_department_answering_empty_once_does_not_wipe_the_directory() {
    for env in envs().await {
        let mut t = env.tenant("acme", spec(json!({"departments": [6]})));
        env.run(&mut t, &secrets(true)).await;
        assert_eq!(env.members("acme").await, set_of(&["f1", "f2"]));
        env.admin(
            reqwest::Method::PUT,
            "faults",
            Some(json!({"emptyMembersOnce": 6})),
        )
        .await;
        request_sync(&mut t, "1");
        let o = env.run(&mut t, &secrets(true)).await;
        // DingTalk still knows both, in the scope: nobody is removed, nothing is held.
        assert_eq!(ready(&o).1, reason::RECONCILED);
        assert_eq!(env.members("acme").await, set_of(&["f1", "f2"]));
        let dir = o.status.directory.as_ref().expect("directory status");
        assert_eq!(
            (dir.unconfirmed, dir.removed, dir.pending_deletions),
            (2, 0, 0)
        );
        assert!(
            o.events
                .iter()
                .any(|e| e.warning && e.reason == reason::REMOVALS_UNCONFIRMED),
            "{:?}",
            o.events
        );
        request_sync(&mut t, "2");
        let o = env.run(&mut t, &secrets(true)).await;
        assert_eq!(ready(&o).0, "True", "{:?}", o.status.conditions);
        assert_eq!(o.status.directory.as_ref().map(|d| d.unconfirmed), Some(0));
        assert_eq!(env.members("acme").await, set_of(&["f1", "f2"]));
    }
}

#[tokio::test]
async fn unbind_waits_for_the_creator_then_the_app_then_unbinds_for_good() {
    for env in envs().await {
        let mut t = env.tenant("acme", spec(json!({"departments": [2]})));
        env.run(&mut t, &secrets(false)).await;
        t.spec.mode = Mode::Public;
        t.metadata.generation = Some(2);
        let o = env.run(&mut t, &secrets(false)).await;
        assert_eq!(
            ready(&o),
            ("False".into(), reason::CREATOR_ACCOUNT_INCOMPLETE.into())
        );
        assert!(
            conditions::get(&o.status.conditions, condition::READY)
                .unwrap()
                .message
                .contains("password")
        );
        assert_eq!(
            o.status.mode,
            Some(Mode::DingTalk),
            "nothing changes while a precondition is missing"
        );
        assert_eq!(
            kstatus(&o),
            (Some(reason::CREATOR_ACCOUNT_INCOMPLETE.into()), None)
        );
        let o = env.run(&mut t, &secrets(true)).await;
        assert_eq!(
            ready(&o),
            ("False".into(), reason::APP_STILL_ENABLED.into())
        );
        assert_eq!(
            kstatus(&o),
            (Some(reason::APP_STILL_ENABLED.into()), None),
            "the unbind waits on DingTalk: reconciling"
        );
        assert!(!env.members("acme").await.is_empty());
        env.admin(
            reqwest::Method::PUT,
            "corps/dingacme/apps/1001",
            Some(json!({"enabled": false})),
        )
        .await;
        let o = env.run(&mut t, &secrets(true)).await;
        assert_eq!(o.status.mode, Some(Mode::Public));
        assert_eq!(o.status.unbind_reason, Some(UnbindReason::Requested));
        assert!(o.status.unbound_at.is_some());
        assert!(o.status.directory.is_none());
        assert_eq!(kstatus(&o), (None, None), "unbound: settled");
        assert!(
            env.members("acme").await.is_empty(),
            "the DingTalk-synced directory is cleared"
        );
        let ledger = env.store.ledger(&env.key("acme")).await.unwrap();
        assert!(
            matches!(
                ledger.last(),
                Some(LedgerEntry::Unbound {
                    reason: UnbindReason::Requested,
                    ..
                })
            ),
            "{ledger:?}"
        );
        assert!(o.events.iter().any(|e| e.reason == reason::UNBOUND));
    }
}

#[tokio::test]
async fn a_withdrawn_unbind_leaves_the_tenant_bound_and_synced() {
    for env in envs().await {
        let mut t = env.tenant("acme", spec(json!({"departments": [2]})));
        env.run(&mut t, &secrets(true)).await;
        t.spec.mode = Mode::Public;
        let o = env.run(&mut t, &secrets(true)).await;
        assert_eq!(ready(&o).1, reason::APP_STILL_ENABLED);
        t.spec.mode = Mode::DingTalk;
        let o = env.run(&mut t, &secrets(true)).await;
        assert_eq!(ready(&o), ("True".into(), reason::RECONCILED.into()));
        assert_eq!(o.status.mode, Some(Mode::DingTalk));
        assert_eq!(env.members("acme").await, set_of(&["s1", "s2", "s3"]));
        assert!(
            env.store
                .ledger(&env.key("acme"))
                .await
                .unwrap()
                .iter()
                .all(|e| matches!(e, LedgerEntry::Bound { .. }))
        );
    }
}

#[tokio::test]
async fn trial_expiry_unbinds_at_the_instant_without_preconditions() {
    for env in envs().await {
        let now = Timestamp::now();
        let expires = now + SignedDuration::from_secs(30);
        let mut s = spec(json!({"departments": [2]}));
        s["trial"] = json!({"expiresAt": expires.to_string()});
        s["creator"] = json!({"phone": "13800000000"});
        let mut t = env.tenant("trial", s);
        let o = env.run_at(&mut t, &secrets(false), now).await;
        assert_eq!(o.status.mode, Some(Mode::DingTalk));
        let wait = o.requeue_after.expect("requeued");
        assert!(
            wait <= std::time::Duration::from_secs(30),
            "requeued for the expiry, not the next poll: {wait:?}"
        );
        let o = env.run_at(&mut t, &secrets(false), expires).await;
        assert_eq!(o.status.mode, Some(Mode::Public));
        assert_eq!(o.status.unbind_reason, Some(UnbindReason::TrialExpired));
        assert!(env.members("trial").await.is_empty());
    }
}

#[tokio::test]
async fn a_recreated_tenant_asking_for_dingtalk_again_is_refused_without_calling_dingtalk() {
    for env in envs().await {
        let mut t = env.tenant("acme", spec(json!({"departments": [2]})));
        env.run(&mut t, &secrets(true)).await;
        env.admin(
            reqwest::Method::PUT,
            "corps/dingacme/apps/1001",
            Some(json!({"enabled": false})),
        )
        .await;
        t.spec.mode = Mode::Public;
        let o = env.run(&mut t, &secrets(true)).await;
        assert_eq!(o.status.mode, Some(Mode::Public));
        // Deleted and created again in DingTalk mode: a new object, no status.
        let mut again = env.tenant("acme", spec(json!({"departments": [2]})));
        let calls = env.app_calls().await;
        let o = env.run(&mut again, &secrets(true)).await;
        assert_eq!(ready(&o), ("False".into(), reason::REBIND_FORBIDDEN.into()));
        assert_eq!(o.status.mode, Some(Mode::Public));
        assert!(
            o.events
                .iter()
                .any(|e| e.warning && e.reason == reason::REBIND_FORBIDDEN)
        );
        assert_eq!(
            env.app_calls().await,
            calls,
            "no DingTalk call for an unbound tenant"
        );
        assert!(env.members("acme").await.is_empty());
    }
}

#[tokio::test]
async fn bad_credentials_and_a_missing_app_are_conditions_not_errors() {
    for env in envs().await {
        let mut t = env.tenant("acme", spec(json!({"departments": [2]})));
        let wrong = Secrets::resolve(&t, |name| {
            (name == "creds").then(|| {
                BTreeMap::from([
                    ("appKey".into(), "acme-key".into()),
                    ("appSecret".into(), "nope".into()),
                ])
            })
        });
        let o = env.run(&mut t, &wrong).await;
        assert_eq!(
            ready(&o),
            ("False".into(), reason::INVALID_CREDENTIALS.into())
        );
        assert_eq!(
            kstatus(&o),
            (None, Some(reason::INVALID_CREDENTIALS.into())),
            "stalled: nothing changes until the Secret does"
        );
        assert!(
            !format!("{:?}", o.status).contains("nope"),
            "the secret never appears in status"
        );
        let missing = Secrets::resolve(&t, |_| None);
        let o = env.run(&mut t, &missing).await;
        assert_eq!(ready(&o).1, reason::SECRET_NOT_FOUND);
        assert_eq!(kstatus(&o), (None, Some(reason::SECRET_NOT_FOUND.into())));
        let mut other = env.tenant("other", spec(json!({"departments": [2]})));
        other.spec.dingtalk.as_mut().unwrap().agent_id = Some(4242);
        let o = env.run(&mut other, &secrets(true)).await;
        assert_eq!(ready(&o), ("False".into(), reason::APP_NOT_FOUND.into()));
        assert_eq!(kstatus(&o), (None, Some(reason::APP_NOT_FOUND.into())));
    }
}

#[tokio::test]
async fn deletion_policy_delete_drops_the_directory_and_keeps_the_ledger() {
    for env in envs().await {
        let mut s = spec(json!({"departments": [2]}));
        s["deletionPolicy"] = json!("Delete");
        let mut t = env.tenant("acme", s);
        env.run(&mut t, &secrets(true)).await;
        env.rec.cleanup(&t).await.unwrap();
        assert!(env.members("acme").await.is_empty());
        assert_eq!(env.store.ledger(&env.key("acme")).await.unwrap().len(), 1);
        let mut kept = env.tenant("kept", spec(json!({"departments": [2]})));
        env.run(&mut kept, &secrets(true)).await;
        env.rec.cleanup(&kept).await.unwrap();
        assert_eq!(
            env.members("kept").await.len(),
            3,
            "Retain keeps the directory"
        );
    }
}

#[tokio::test]
async fn suspended_tenants_are_left_alone() {
    for env in envs().await {
        // Bound and synced first, so that there is something to leave alone.
        let mut t = env.tenant("acme", spec(json!({"departments": [2]})));
        let o = env.run(&mut t, &secrets(true)).await;
        assert_eq!(ready(&o), ("True".into(), reason::RECONCILED.into()));
        let key = env.key("acme");
        let dir = env.store.directory(&key).await.expect("directory");
        assert_eq!(
            env.members("acme").await,
            set_of(&["s1", "s2", "s3"]),
            "synced before the suspension"
        );
        let ledger = env.store.ledger(&key).await.expect("ledger");
        assert!(!ledger.is_empty(), "the bind is in the ledger");
        let runs = env.store.sync_runs(&key, 100).await.expect("runs").len();

        // Suspended; then DingTalk changes and a sync is requested.
        t.spec.suspend = true;
        t.metadata.generation = Some(2);
        env.admin(reqwest::Method::POST, "corps/dingacme/users/s2/leave", None)
            .await;
        env.admin(
            reqwest::Method::PUT,
            "corps/dingacme/users/n1",
            Some(json!({"name": "New", "deptIds": [2]})),
        )
        .await;
        request_sync(&mut t, "while-suspended");
        let calls = env.app_calls().await;
        let o = env.run(&mut t, &secrets(true)).await;
        assert_eq!(ready(&o), ("True".into(), reason::SUSPENDED.into()));
        assert_eq!(env.app_calls().await, calls, "no DingTalk call");
        assert_eq!(
            env.store.directory(&key).await.expect("directory"),
            dir,
            "the directory is untouched"
        );
        assert_eq!(
            env.store.ledger(&key).await.expect("ledger"),
            ledger,
            "the ledger is untouched"
        );
        assert_eq!(
            env.store.sync_runs(&key, 100).await.expect("runs").len(),
            runs,
            "no sync run"
        );
    }
}

#[tokio::test]
async fn a_stale_copy_of_the_tenant_does_not_run_a_handled_request_again() {
    for env in envs().await {
        let mut t = env.tenant("acme", spec(json!({"departments": [2]})));
        env.run(&mut t, &secrets(true)).await;
        request_sync(&mut t, "request-1");
        // What a watch cache may still hold: the request, but the status from before it was handled.
        let stale = t.clone();
        env.run(&mut t, &secrets(true)).await;
        let runs = env
            .store
            .sync_runs(&env.key("acme"), 10)
            .await
            .unwrap()
            .len();
        let mut again = stale;
        let o = env.run(&mut again, &secrets(true)).await;
        assert_eq!(
            env.store
                .sync_runs(&env.key("acme"), 10)
                .await
                .unwrap()
                .len(),
            runs,
            "no second sync"
        );
        assert_eq!(
            o.status.last_handled_sync_request.as_deref(),
            Some("request-1")
        );
    }
}

#[tokio::test]
async fn credentials_of_another_organization_are_a_corp_mismatch() {
    for env in envs().await {
        let mut s = spec(json!({"departments": [2]}));
        s["dingtalk"]["corpId"] = json!("dingother");
        let mut t = env.tenant("acme", s);
        let o = env.run(&mut t, &secrets(true)).await;
        assert_eq!(ready(&o), ("False".into(), reason::CORP_MISMATCH.into()));
        assert!(env.members("acme").await.is_empty());
        assert!(
            env.store.ledger(&env.key("acme")).await.unwrap().is_empty(),
            "never bound"
        );
    }
}

// ---------------------------------------------------------------------------
// The irreversible steps: each test below tries one ordinary edit or failure
// that once carried out an unbind, or brought an unbound tenant back.

/// The app credentials with another appSecret (DingTalk refuses them).
fn refused_secrets(t: &Tenant) -> Secrets {
    Secrets::resolve(t, |name| match name {
        "creds" => Some(BTreeMap::from([
            ("appKey".into(), "acme-key".into()),
            ("appSecret".into(), "rotated-away".into()),
        ])),
        "pw" => Some(BTreeMap::from([("password".into(), "s3cret".into())])),
        _ => None,
    })
}

fn ledger_unbinds(ledger: &[LedgerEntry]) -> usize {
    ledger
        .iter()
        .filter(|e| matches!(e, LedgerEntry::Unbound { .. }))
        .count()
}

/// The reasons of kstatus's `Reconciling` and `Stalled`, each present only while `True`.
fn kstatus(o: &Outcome) -> (Option<String>, Option<String>) {
    let reason_of = |type_| {
        conditions::get(&o.status.conditions, type_).map(|c| {
            assert_eq!(c.status, "True", "{type_} is present only while True");
            assert_eq!(c.observed_generation, o.status.observed_generation);
            c.reason.clone()
        })
    };
    (
        reason_of(condition::RECONCILING),
        reason_of(condition::STALLED),
    )
}

fn condition_message(o: &Outcome, type_: &str) -> String {
    conditions::get(&o.status.conditions, type_)
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

impl Env {
    async fn ledger(&self, name: &str) -> Vec<LedgerEntry> {
        self.store.ledger(&self.key(name)).await.expect("ledger")
    }

    /// Binds `name` on departments [2] and asks for its unbind: it waits on the enabled app.
    async fn bound_and_waiting(&self, name: &str) -> Tenant {
        let mut t = self.tenant(name, spec(json!({"departments": [2]})));
        let o = self.run(&mut t, &secrets(true)).await;
        assert_eq!(ready(&o).1, reason::RECONCILED);
        t.spec.mode = Mode::Public;
        t.metadata.generation = Some(2);
        let o = self.run(&mut t, &secrets(true)).await;
        assert_eq!(ready(&o).1, reason::APP_STILL_ENABLED);
        t
    }
}

#[tokio::test]
async fn a_typo_in_the_agent_id_while_an_unbind_waits_unbinds_nothing() {
    for env in envs().await {
        let mut t = env.bound_and_waiting("acme").await;
        t.spec.dingtalk.as_mut().unwrap().agent_id = Some(1010);
        t.metadata.generation = Some(3);
        let calls = env.app_calls().await;
        let o = env.run(&mut t, &secrets(true)).await;
        assert_eq!(ready(&o), ("False".into(), reason::BINDING_CHANGED.into()));
        let bound = conditions::get(&o.status.conditions, condition::BOUND).unwrap();
        assert_eq!(
            (bound.status.as_str(), bound.reason.as_str()),
            ("False", reason::BINDING_CHANGED)
        );
        assert!(bound.message.contains("app 1001"), "{}", bound.message);
        assert!(bound.message.contains("app 1010"), "{}", bound.message);
        assert_eq!(o.status.mode, Some(Mode::DingTalk));
        assert_eq!(ledger_unbinds(&env.ledger("acme").await), 0);
        assert_eq!(env.members("acme").await, set_of(&["s1", "s2", "s3"]));
        assert_eq!(env.app_calls().await, calls, "nothing done on either app");
        // Back to the bound app, the request waits on DingTalk again.
        t.spec.dingtalk.as_mut().unwrap().agent_id = Some(1001);
        let o = env.run(&mut t, &secrets(true)).await;
        assert_eq!(ready(&o).1, reason::APP_STILL_ENABLED);
    }
}

#[tokio::test]
async fn a_changed_organization_in_dingtalk_mode_is_not_acted_on() {
    for env in envs().await {
        let mut t = env.tenant("acme", spec(json!({"departments": [2]})));
        env.run(&mut t, &secrets(true)).await;
        t.spec.dingtalk.as_mut().unwrap().corp_id = "dingother".into();
        let o = env.run(&mut t, &secrets(true)).await;
        assert_eq!(ready(&o).1, reason::BINDING_CHANGED);
        assert_eq!(env.members("acme").await, set_of(&["s1", "s2", "s3"]));
        assert!(
            env.ledger("acme")
                .await
                .iter()
                .all(|e| e.corp_id() == "dingacme"),
            "no second binding"
        );
    }
}

#[tokio::test]
async fn refused_credentials_need_the_exact_confirmation_which_is_recorded() {
    for env in envs().await {
        let mut t = env.bound_and_waiting("acme").await;
        // 停用并删除: the app and its credentials are gone; DingTalk refuses them.
        let gone = refused_secrets(&t);
        let o = env.run(&mut t, &gone).await;
        assert_eq!(
            ready(&o),
            ("False".into(), reason::APP_STATE_UNPROVED.into())
        );
        let msg = condition_message(&o, condition::READY);
        assert!(msg.contains("refuses the app credentials"), "{msg}");
        assert!(msg.contains("\"dingacme/1001\""), "{msg}");
        for wrong in ["dingacme/1002", "dingother/1001", "dingacme"] {
            t.metadata
                .annotations
                .get_or_insert_default()
                .insert(dingbind::api::CONFIRM_APP_REMOVED.into(), wrong.into());
            let o = env.run(&mut t, &gone).await;
            assert_eq!(ready(&o).1, reason::APP_STATE_UNPROVED, "{wrong}");
        }
        assert_eq!(ledger_unbinds(&env.ledger("acme").await), 0);
        t.metadata.annotations.get_or_insert_default().insert(
            dingbind::api::CONFIRM_APP_REMOVED.into(),
            "dingacme/1001".into(),
        );
        let o = env.run(&mut t, &gone).await;
        assert_eq!(o.status.mode, Some(Mode::Public));
        assert!(
            o.events
                .iter()
                .any(|e| e.reason == reason::APP_REMOVAL_CONFIRMED),
            "{:?}",
            o.events
        );
        let ledger = env.ledger("acme").await;
        assert!(
            matches!(ledger.last(), Some(LedgerEntry::Unbound { confirmation: Some(c), agent_id: Some(1001), .. }) if c == "dingacme/1001"),
            "{ledger:?}"
        );
        assert!(env.members("acme").await.is_empty());
    }
}

#[tokio::test]
async fn a_missing_creator_password_value_is_an_incomplete_account() {
    for env in envs().await {
        let mut t = env.tenant("acme", spec(json!({"departments": [2]})));
        env.run(&mut t, &secrets(true)).await;
        t.spec.mode = Mode::Public;
        env.admin(
            reqwest::Method::PUT,
            "corps/dingacme/apps/1001",
            Some(json!({"enabled": false})),
        )
        .await;
        let empty = Secrets::resolve(&t, |name| match name {
            "creds" => Some(BTreeMap::from([
                ("appKey".into(), "acme-key".into()),
                ("appSecret".into(), "acme-secret".into()),
            ])),
            "pw" => Some(BTreeMap::from([("password".into(), String::new())])),
            _ => None,
        });
        let o = env.run(&mut t, &empty).await;
        assert_eq!(ready(&o).1, reason::CREATOR_ACCOUNT_INCOMPLETE);
        assert_eq!(ledger_unbinds(&env.ledger("acme").await), 0);
    }
}

#[tokio::test]
async fn a_trial_added_after_binding_unbinds_nothing() {
    for env in envs().await {
        let mut t = env.tenant("acme", spec(json!({"departments": [2]})));
        env.run(&mut t, &secrets(false)).await;
        t.spec.trial = Some(dingbind::api::TrialSpec {
            expires_at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                "2000-01-01T00:00:00Z".parse().unwrap(),
            ),
        });
        t.metadata.generation = Some(2);
        let o = env.run(&mut t, &secrets(false)).await;
        assert_eq!(o.status.mode, Some(Mode::DingTalk));
        assert_eq!(ready(&o).1, reason::RECONCILED);
        assert_eq!(ledger_unbinds(&env.ledger("acme").await), 0);
        assert_eq!(env.members("acme").await, set_of(&["s1", "s2", "s3"]));
    }
}

#[tokio::test]
async fn a_trial_moved_earlier_ends_when_it_was_bound_to() {
    for env in envs().await {
        let now = Timestamp::now();
        let mut s = spec(json!({"departments": [2]}));
        s["trial"] = json!({"expiresAt": (now + SignedDuration::from_hours(48)).to_string()});
        let mut t = env.tenant("acme", s);
        env.run_at(&mut t, &secrets(false), now).await;
        t.spec.trial.as_mut().unwrap().expires_at.0 = now + SignedDuration::from_hours(1);
        let o = env
            .run_at(&mut t, &secrets(false), now + SignedDuration::from_hours(2))
            .await;
        assert_eq!(
            o.status.mode,
            Some(Mode::DingTalk),
            "the earlier end is not acted on"
        );
        let o = env
            .run_at(
                &mut t,
                &secrets(false),
                now + SignedDuration::from_hours(48),
            )
            .await;
        assert_eq!(o.status.unbind_reason, Some(UnbindReason::TrialExpired));
    }
}

#[tokio::test]
async fn a_trial_ends_even_while_suspended() {
    for env in envs().await {
        let now = Timestamp::now();
        let expires = now + SignedDuration::from_secs(60);
        let mut s = spec(json!({"departments": [2]}));
        s["trial"] = json!({"expiresAt": expires.to_string()});
        let mut t = env.tenant("acme", s);
        env.run_at(&mut t, &secrets(false), now).await;
        t.spec.suspend = true;
        let o = env.run_at(&mut t, &secrets(false), now).await;
        assert_eq!(ready(&o).1, reason::SUSPENDED);
        let wait = o
            .requeue_after
            .expect("a suspended trial is looked at when it ends");
        assert!(wait <= std::time::Duration::from_secs(60), "{wait:?}");
        let o = env.run_at(&mut t, &secrets(false), expires).await;
        assert_eq!(o.status.mode, Some(Mode::Public));
        assert_eq!(o.status.unbind_reason, Some(UnbindReason::TrialExpired));
        assert!(env.members("acme").await.is_empty());
    }
}

#[tokio::test]
async fn a_trial_that_ended_before_binding_never_binds() {
    for env in envs().await {
        let mut s = spec(json!({"departments": [2]}));
        s["trial"] = json!({"expiresAt": "2000-01-01T00:00:00Z"});
        let mut t = env.tenant("acme", s);
        let calls = env.app_calls().await;
        let o = env.run(&mut t, &secrets(true)).await;
        assert_eq!(ready(&o), ("False".into(), reason::TRIAL_EXPIRED.into()));
        assert!(
            env.ledger("acme").await.is_empty(),
            "never bound, never unbound"
        );
        assert_eq!(env.app_calls().await, calls, "no DingTalk call");
        assert!(env.members("acme").await.is_empty());
    }
}

#[tokio::test]
async fn a_crash_after_the_ledger_entry_is_finished_on_every_path() {
    for env in envs().await {
        for mode in [Mode::Public, Mode::DingTalk] {
            let name = format!("crash-{}", mode.as_str().to_lowercase());
            let mut t = env.tenant(&name, spec(json!({"departments": [2]})));
            env.run(&mut t, &secrets(true)).await;
            // What a crash right after the ledger's Unbound entry leaves behind.
            env.store
                .append_ledger(
                    &env.key(&name),
                    LedgerEntry::Unbound {
                        at: Timestamp::now(),
                        corp_id: "dingacme".into(),
                        agent_id: Some(1001),
                        reason: UnbindReason::Requested,
                        confirmation: None,
                    },
                )
                .await
                .unwrap();
            assert!(!env.members(&name).await.is_empty());
            t.spec.mode = mode;
            let o = env.run(&mut t, &secrets(true)).await;
            assert_eq!(o.status.mode, Some(Mode::Public), "{mode}");
            assert!(
                env.members(&name).await.is_empty(),
                "{mode}: directory cleared"
            );
            let account = env.store.account(&env.key(&name)).await.unwrap();
            assert_eq!(account.map(|a| a.mode), Some(Mode::Public), "{mode}");
        }
    }
}

#[tokio::test]
async fn one_empty_page_removes_nobody() {
    for env in envs().await {
        let mut t = env.tenant("acme", spec(json!({"departments": [2]})));
        env.run(&mut t, &secrets(true)).await;
        assert_eq!(env.members("acme").await, set_of(&["s1", "s2", "s3"]));
        // s1 is listed only in department 2: one empty page hides them, and
        // one removal of three is within the default guard (10 %, rounded up).
        env.admin(
            reqwest::Method::PUT,
            "faults",
            Some(json!({"emptyMembersOnce": 2})),
        )
        .await;
        request_sync(&mut t, "1");
        let o = env.run(&mut t, &secrets(true)).await;
        assert_eq!(env.members("acme").await, set_of(&["s1", "s2", "s3"]));
        let dir = o.status.directory.as_ref().unwrap();
        assert_eq!((dir.unconfirmed, dir.removed), (1, 0));
        assert!(
            condition_message(&o, condition::DIRECTORY_SYNCED).contains("1 members missing"),
            "{}",
            condition_message(&o, condition::DIRECTORY_SYNCED)
        );
        // A real departure is confirmed by DingTalk and removed.
        env.admin(reqwest::Method::POST, "corps/dingacme/users/s1/leave", None)
            .await;
        request_sync(&mut t, "2");
        let o = env.run(&mut t, &secrets(true)).await;
        assert_eq!(env.members("acme").await, set_of(&["s2", "s3"]));
        let dir = o.status.directory.as_ref().unwrap();
        assert_eq!((dir.unconfirmed, dir.removed), (0, 1));
    }
}

#[tokio::test]
async fn a_lost_store_is_repaired_from_the_cluster_record_or_the_status() {
    for env in envs().await {
        let mut t = env.bound_and_waiting("acme").await;
        env.admin(
            reqwest::Method::PUT,
            "corps/dingacme/apps/1001",
            Some(json!({"enabled": false})),
        )
        .await;
        let rec = Reconciler::new(
            env.store.clone(),
            dingtalk::Client::new(dingtalk::Config::with_base_url(&env.sim.url())).unwrap(),
        )
        .keeping_unbind_records();
        let o = rec
            .reconcile(&t, &secrets(true), None, Timestamp::now(), &|_| {})
            .await
            .unwrap();
        let record = o.unbind_record.clone().expect("the record to keep");
        assert_eq!(
            (
                record.tenant_name.as_str(),
                record.corp_id.as_str(),
                record.agent_id
            ),
            ("acme", "dingacme", Some(1001))
        );
        t.status = Some(o.status.clone());

        // The store is lost; the Tenant is deleted and recreated asking for DingTalk.
        let dir = tempfile::tempdir().unwrap();
        let fresh = Store::connect(&format!("sqlite://{}", dir.path().join("new.db").display()))
            .await
            .unwrap();
        let rec = Reconciler::new(
            fresh.clone(),
            dingtalk::Client::new(dingtalk::Config::with_base_url(&env.sim.url())).unwrap(),
        )
        .keeping_unbind_records();
        let recreated = env.tenant("acme", spec(json!({"departments": [2]})));
        let calls = env.app_calls().await;
        let o = rec
            .reconcile(
                &recreated,
                &secrets(true),
                Some(&record),
                Timestamp::now(),
                &|_| {},
            )
            .await
            .unwrap();
        assert_eq!(o.status.mode, Some(Mode::Public));
        assert_eq!(ready(&o).1, reason::REBIND_FORBIDDEN);
        assert_eq!(o.status.unbound_at, Some(record.unbound_at.clone()));
        assert!(o.events.iter().any(|e| e.reason == reason::LEDGER_REPAIRED));
        assert_eq!(env.app_calls().await, calls, "no DingTalk call");
        assert!(
            fresh.is_unbound(&env.key("acme")).await.unwrap(),
            "ledger repaired"
        );

        // Only the Tenant's status survives (no record, a new store): the same,
        // and the record is named for the runner to write again.
        let dir = tempfile::tempdir().unwrap();
        let fresh = Store::connect(&format!("sqlite://{}", dir.path().join("new.db").display()))
            .await
            .unwrap();
        let rec = Reconciler::new(
            fresh.clone(),
            dingtalk::Client::new(dingtalk::Config::with_base_url(&env.sim.url())).unwrap(),
        )
        .keeping_unbind_records();
        let mut edited = t.clone();
        edited.spec.mode = Mode::DingTalk;
        let o = rec
            .reconcile(&edited, &secrets(true), None, Timestamp::now(), &|_| {})
            .await
            .unwrap();
        assert_eq!(ready(&o).1, reason::REBIND_FORBIDDEN);
        assert!(
            o.events
                .iter()
                .any(|e| e.reason == reason::UNBIND_RECORD_REPAIRED)
        );
        assert!(o.unbind_record.is_some());
        assert!(fresh.is_unbound(&env.key("acme")).await.unwrap());
    }
}

#[tokio::test]
async fn another_tenant_may_bind_an_organization_an_unbound_tenant_left() {
    for env in envs().await {
        let mut t = env.bound_and_waiting("first").await;
        env.admin(
            reqwest::Method::PUT,
            "corps/dingacme/apps/1001",
            Some(json!({"enabled": false})),
        )
        .await;
        let o = env.run(&mut t, &secrets(true)).await;
        assert_eq!(o.status.mode, Some(Mode::Public));
        env.admin(
            reqwest::Method::PUT,
            "corps/dingacme/apps/1001",
            Some(json!({"enabled": true})),
        )
        .await;
        let mut other = env.tenant("second", spec(json!({"departments": [2]})));
        let o = env.run(&mut other, &secrets(true)).await;
        assert_eq!(ready(&o).1, reason::RECONCILED);
        let event = o
            .events
            .iter()
            .find(|e| e.reason == reason::ORGANIZATION_BOUND_AGAIN)
            .expect("an Event says the organization was left by another tenant");
        assert!(
            event.note.contains(&format!("{}/first", env.ns)),
            "{}",
            event.note
        );
        // Once: a later reconciliation does not repeat it.
        let o = env.run(&mut other, &secrets(true)).await;
        assert!(
            !o.events
                .iter()
                .any(|e| e.reason == reason::ORGANIZATION_BOUND_AGAIN)
        );
    }
}

/// The app credentials of the second organization, `dingbeta`.
fn beta_secrets(t: &Tenant) -> Secrets {
    Secrets::resolve(t, |name| {
        (name == "creds").then(|| {
            BTreeMap::from([
                ("appKey".into(), "beta-key".into()),
                ("appSecret".into(), "beta-secret".into()),
            ])
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_sync_counts_its_own_calls_while_other_tenants_sync_at_once() {
    for env in envs().await {
        let mut acme = env.tenant("acme", spec(json!({"departments": [2]})));
        let mut beta_spec = spec(json!({"departments": [2]}));
        beta_spec["dingtalk"]["corpId"] = json!("dingbeta");
        beta_spec["dingtalk"]["agentId"] = json!(3001);
        beta_spec["creator"] = json!({"email": "nobody@beta.example"});
        let mut beta = env.tenant("beta", beta_spec);
        let calls_of = |runs: Vec<dingbind::store::SyncRun>| runs[0].record.calls;
        env.run(&mut acme, &secrets(true)).await;
        let b = beta_secrets(&beta);
        env.run(&mut beta, &b).await;
        // A requested sync of acme alone: what it costs.
        request_sync(&mut acme, "alone");
        env.run(&mut acme, &secrets(true)).await;
        let alone = calls_of(env.store.sync_runs(&env.key("acme"), 1).await.unwrap());
        assert!(alone > 0);
        // Both at once: each run counts its own calls, not the other's.
        request_sync(&mut acme, "together");
        request_sync(&mut beta, "together");
        let (acme_creds, beta_creds) = (secrets(true), beta_secrets(&beta));
        let (a, b) = (acme.clone(), beta.clone());
        let (oa, ob) = tokio::join!(
            env.rec
                .reconcile(&a, &acme_creds, None, Timestamp::now(), &|_| {}),
            env.rec
                .reconcile(&b, &beta_creds, None, Timestamp::now(), &|_| {}),
        );
        let (oa, ob) = (oa.unwrap(), ob.unwrap());
        assert_eq!(
            oa.status.last_handled_sync_request.as_deref(),
            Some("together")
        );
        assert_eq!(
            ob.status.last_handled_sync_request.as_deref(),
            Some("together")
        );
        let together = calls_of(env.store.sync_runs(&env.key("acme"), 1).await.unwrap());
        assert_eq!(together, alone, "acme's sync counts acme's calls only");
        let beta_calls = calls_of(env.store.sync_runs(&env.key("beta"), 1).await.unwrap());
        let beta_alone = {
            request_sync(&mut beta, "alone");
            let b = beta_secrets(&beta);
            env.run(&mut beta, &b).await;
            calls_of(env.store.sync_runs(&env.key("beta"), 1).await.unwrap())
        };
        assert_eq!(
            beta_calls, beta_alone,
            "beta's sync counts beta's calls only"
        );
    }
}

#[tokio::test]
async fn the_outcome_says_whether_a_sync_ran_and_what_it_did() {
    for env in envs().await {
        let mut t = env.tenant("acme", spec(json!({"departments": [2]})));
        let o = env.run(&mut t, &secrets(true)).await;
        let sync = o.sync.expect("the first reconciliation syncs");
        assert_eq!((sync.run.added, sync.run.removed), (3, 0));
        assert!(sync.run.calls > 0);
        let o = env.run(&mut t, &secrets(true)).await;
        assert!(o.sync.is_none(), "nothing due: no sync");
        env.admin(reqwest::Method::POST, "corps/dingacme/users/s1/leave", None)
            .await;
        request_sync(&mut t, "1");
        let o = env.run(&mut t, &secrets(true)).await;
        let sync = o.sync.expect("a requested sync");
        assert_eq!(
            (sync.run.added, sync.run.updated, sync.run.removed),
            (0, 0, 1)
        );
    }
}
