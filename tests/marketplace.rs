//! Marketplace tenants (`spec.dingtalk.app: Marketplace`) through the
//! reconciler, against the simulator's suites and the store (SQLite always;
//! PostgreSQL too when `DINGBIND_TEST_POSTGRES_URL` is set): the waits for a
//! ticket and an install, the binding learned from the install, the scope
//! read from DingTalk and never written, the directory read with the
//! enterprise's token, a leaver known only by unionid, the uninstall.

mod support;

use std::collections::BTreeSet;

use dingbind::{
    api::{Mode, Tenant, TenantKey, condition, reason},
    core::{conditions, dirty::Dirty},
    dingtalk::{self, Secret, Suite},
    reconcile::{EventsSeen, Outcome, Reconciler, Secrets},
    sim::{OrgFile, SimHandle, Simulator, World},
    store::{LedgerEntry, Store},
};
use jiff::Timestamp;
use serde_json::{Value, json};
use support::fixtures::TenantBuilder;

const ORG: &str = r#"
corps:
  - corpId: dingacme
    name: ACME
    departments:
      - {id: 2, name: Sales, parentId: 1}
      - {id: 3, name: East, parentId: 2}
      - {id: 4, name: Engineering, parentId: 1}
    users:
      - {userid: boss, name: Owner, deptIds: [1], email: owner@acme.example, admin: true}
      - {userid: s1, name: Sales One, deptIds: [2]}
      - {userid: s2, name: Sales Two, deptIds: [3]}
      - {userid: e1, name: Eng One, deptIds: [4]}
"#;

const SUITE_KEY: &str = "mkt-suite";
const SUITE_SECRET: &str = "mkt-secret";

struct Env {
    sim: SimHandle,
    store: Store,
    rec: Reconciler,
    suite: Suite,
    http: reqwest::Client,
    ns: String,
}

async fn envs() -> Vec<Env> {
    let dir = tempfile::tempdir().expect("temp dir").keep();
    let mut urls = vec![format!("sqlite://{}", dir.join("store.db").display())];
    if let Some(url) = support::postgres::admin_url("the marketplace tests") {
        urls.push(url);
    }
    let mut out = Vec::new();
    for url in urls {
        let world = World::from_file(OrgFile::parse(ORG).expect("org parses")).expect("world");
        let sim = Simulator::start(world, "127.0.0.1:0".parse().unwrap())
            .await
            .expect("simulator starts");
        let store = Store::connect(&url).await.expect("store opens");
        let client =
            dingtalk::Client::new(dingtalk::Config::with_base_url(&sim.url())).expect("client");
        let suite = Suite::new(SUITE_KEY, SUITE_SECRET);
        let rec = Reconciler::new(store.clone(), client).with_suite(suite.clone());
        let env = Env {
            sim,
            store,
            rec,
            suite,
            http: reqwest::Client::new(),
            ns: format!("m{}", fastrand::u64(..)),
        };
        env.admin(
            reqwest::Method::POST,
            "suites",
            Some(json!({"suiteKey": SUITE_KEY, "suiteSecret": SUITE_SECRET})),
        )
        .await;
        out.push(env);
    }
    out
}

impl Env {
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

    /// A new suite ticket, handed to the suite as the events hub does.
    async fn ticket(&self) {
        let t = self
            .admin(
                reqwest::Method::POST,
                &format!("suites/{SUITE_KEY}/ticket"),
                None,
            )
            .await;
        let ticket = t["suiteTicket"].as_str().expect("a ticket");
        self.suite.set_ticket(Secret::new(ticket));
    }

    async fn install(&self, scope: Value) -> i64 {
        let install = self
            .admin(
                reqwest::Method::PUT,
                &format!("corps/dingacme/suites/{SUITE_KEY}"),
                Some(json!({"scope": scope})),
            )
            .await;
        install["agentId"].as_i64().expect("agentId")
    }

    fn key(&self, name: &str) -> TenantKey {
        TenantKey {
            namespace: self.ns.clone(),
            name: name.into(),
        }
    }

    fn tenant(&self, name: &str, dingtalk: Value) -> Tenant {
        TenantBuilder::new(name)
            .namespace(&self.ns)
            .with_spec(json!({
                "mode": "DingTalk",
                "dingtalk": dingtalk,
                "creator": {"email": "owner@acme.example", "passwordSecretRef": {"name": "pw"}},
            }))
            .build()
    }

    async fn run(&self, t: &mut Tenant, events: &EventsSeen) -> Outcome {
        let outcome = self
            .rec
            .reconcile_with_events(t, &secrets(), None, events, Timestamp::now(), &|_| {})
            .await
            .expect("reconcile");
        t.status = Some(outcome.status.clone());
        outcome
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

/// A marketplace tenant names no credentials; its creator is complete.
fn secrets() -> Secrets {
    Secrets {
        credentials: None,
        creator_password_set: true,
        callback: None,
    }
}

fn marketplace() -> Value {
    json!({"app": "Marketplace", "corpId": "dingacme"})
}

fn cond(o: &Outcome, kind: &str) -> (String, String, String) {
    let c = conditions::get(&o.status.conditions, kind).unwrap_or_else(|| panic!("{kind}"));
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

fn set_of(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

fn none() -> EventsSeen {
    EventsSeen::default()
}

#[tokio::test]
async fn a_tenant_waits_for_the_ticket_then_the_install_and_binds_as_the_installed_app() {
    for env in envs().await {
        let mut t = env.tenant("acme", marketplace());
        let o = env.run(&mut t, &none()).await;
        let (status, why, _) = cond(&o, condition::BOUND);
        assert_eq!(
            (status.as_str(), why.as_str()),
            ("False", reason::WAITING_FOR_SUITE_TICKET)
        );
        assert!(
            o.events
                .iter()
                .all(|e| e.reason != reason::WAITING_FOR_SUITE_TICKET),
            "a wait is no Warning"
        );

        env.ticket().await;
        let o = env.run(&mut t, &none()).await;
        let (status, why, message) = cond(&o, condition::BOUND);
        assert_eq!(
            (status.as_str(), why.as_str()),
            ("False", reason::NOT_INSTALLED)
        );
        assert!(message.contains("app market"), "{message}");
        assert!(env.store.ledger(&env.key("acme")).await.unwrap().is_empty());

        let agent = env.install(json!({"deptIds": [2], "userIds": []})).await;
        let o = env.run(&mut t, &none()).await;
        assert_eq!(cond(&o, condition::BOUND).0, "True", "{:?}", o.status);
        assert_eq!(cond(&o, condition::READY).0, "True", "{:?}", o.status);
        assert_eq!(o.status.bound_corp_id.as_deref(), Some("dingacme"));
        assert!(
            matches!(
                env.store.ledger(&env.key("acme")).await.unwrap().as_slice(),
                [LedgerEntry::Bound { corp_id, agent_id: Some(a), .. }] if corp_id == "dingacme" && *a == agent
            ),
            "the ledger holds the agentId learned from the install"
        );
        // The scope is DingTalk's, read, and the directory follows it.
        let (status, why, _) = cond(&o, condition::SCOPE_IN_SYNC);
        assert_eq!(
            (status.as_str(), why.as_str()),
            ("True", reason::SCOPE_SET_IN_DINGTALK)
        );
        assert_eq!(o.status.visible_scope.as_ref().unwrap().dept_ids, vec![2]);
        assert_eq!(env.members("acme").await, set_of(&["s1", "s2"]));
    }
}

#[tokio::test]
async fn a_spec_that_names_another_agent_than_the_install_is_not_bound() {
    for env in envs().await {
        env.ticket().await;
        let agent = env.install(json!({"deptIds": [2], "userIds": []})).await;
        let mut dt = marketplace();
        dt["agentId"] = json!(agent + 1);
        let mut t = env.tenant("acme", dt);
        let o = env.run(&mut t, &none()).await;
        let (status, why, message) = cond(&o, condition::BOUND);
        assert_eq!(
            (status.as_str(), why.as_str()),
            ("False", reason::APP_NOT_FOUND)
        );
        assert!(message.contains(&format!("as app {agent}")), "{message}");
        assert!(env.store.ledger(&env.key("acme")).await.unwrap().is_empty());
        assert!(env.members("acme").await.is_empty());
    }
}

#[tokio::test]
async fn an_expected_scope_that_differs_says_what_to_tick_and_nothing_is_written() {
    for env in envs().await {
        env.ticket().await;
        env.install(json!({"deptIds": [2], "userIds": []})).await;
        let mut dt = marketplace();
        dt["visibleScope"] = json!({"departments": [4]});
        let mut t = env.tenant("acme", dt);
        let o = env.run(&mut t, &none()).await;
        let (status, why, message) = cond(&o, condition::SCOPE_IN_SYNC);
        assert_eq!(
            (status.as_str(), why.as_str()),
            ("False", reason::SCOPE_DIFFERS)
        );
        assert!(
            message.contains("add department 4; remove department 2"),
            "{message}"
        );
        // DingTalk's scope is left alone, and the directory follows it.
        let suite = env
            .admin(reqwest::Method::GET, &format!("suites/{SUITE_KEY}"), None)
            .await;
        assert_eq!(suite["installs"][0]["scope"]["deptIds"], json!([2]));
        assert_eq!(env.members("acme").await, set_of(&["s1", "s2"]));

        // The admin ticks what the message says; the scope event follows.
        env.admin(
            reqwest::Method::PUT,
            &format!("corps/dingacme/suites/{SUITE_KEY}/scope"),
            Some(json!({"deptIds": [4], "userIds": []})),
        )
        .await;
        let seen = EventsSeen {
            dirty: Dirty {
                scope: true,
                ..Dirty::default()
            },
            channel: None,
        };
        let o = env.run(&mut t, &seen).await;
        let (status, why, _) = cond(&o, condition::SCOPE_IN_SYNC);
        assert_eq!(
            (status.as_str(), why.as_str()),
            ("True", reason::SCOPE_MATCHES)
        );
        let dir = o.status.directory.as_ref().expect("synced");
        assert_eq!((dir.added, dir.pending_deletions), (1, 2), "{dir:?}");
        assert_eq!(
            env.members("acme").await,
            set_of(&["s1", "s2", "e1"]),
            "two of three members out of the scope at once: the delete guard holds them"
        );
    }
}

#[tokio::test]
async fn a_leaver_known_only_by_unionid_is_removed() {
    for env in envs().await {
        env.ticket().await;
        env.install(json!({"deptIds": [2], "userIds": []})).await;
        let mut t = env.tenant("acme", marketplace());
        env.run(&mut t, &none()).await;
        let dir = env.store.directory(&env.key("acme")).await.unwrap();
        let unionid = dir.members["s2"].unionid.clone();
        assert!(!unionid.is_empty());

        env.admin(reqwest::Method::POST, "corps/dingacme/users/s2/leave", None)
            .await;
        let seen = EventsSeen {
            dirty: Dirty {
                unionids: [unionid, "un-never-a-member".to_string()].into(),
                ..Dirty::default()
            },
            channel: None,
        };
        let o = env.run(&mut t, &seen).await;
        assert_eq!(cond(&o, condition::READY).0, "True", "{:?}", o.status);
        assert_eq!(env.members("acme").await, set_of(&["s1"]));
    }
}

#[tokio::test]
async fn an_uninstall_keeps_the_directory_until_the_unbind_is_requested() {
    for env in envs().await {
        env.ticket().await;
        env.install(json!({"deptIds": [2], "userIds": []})).await;
        let mut t = env.tenant("acme", marketplace());
        env.run(&mut t, &none()).await;
        assert_eq!(env.members("acme").await, set_of(&["s1", "s2"]));

        env.admin(
            reqwest::Method::DELETE,
            &format!("corps/dingacme/suites/{SUITE_KEY}"),
            None,
        )
        .await;
        let o = env.run(&mut t, &none()).await;
        let (status, why, message) = cond(&o, condition::BOUND);
        assert_eq!(
            (status.as_str(), why.as_str()),
            ("False", reason::APP_UNINSTALLED)
        );
        assert!(message.contains("spec.mode: Public"), "{message}");
        assert_eq!(
            env.members("acme").await,
            set_of(&["s1", "s2"]),
            "kept until a person decides"
        );
        assert_eq!(o.status.mode, Some(Mode::DingTalk));

        // The person decides: the uninstall is the proof the unbind needs.
        t.spec.mode = Mode::Public;
        let o = env.run(&mut t, &none()).await;
        assert_eq!(o.status.mode, Some(Mode::Public), "{:?}", o.status);
        assert!(o.status.unbound_at.is_some());
        assert!(env.members("acme").await.is_empty());
        assert!(env.store.is_unbound(&env.key("acme")).await.unwrap());
    }
}

#[tokio::test]
async fn an_installed_app_holds_the_unbind_until_it_is_uninstalled() {
    for env in envs().await {
        env.ticket().await;
        env.install(json!({"deptIds": [2], "userIds": []})).await;
        let mut t = env.tenant("acme", marketplace());
        env.run(&mut t, &none()).await;
        t.spec.mode = Mode::Public;
        let o = env.run(&mut t, &none()).await;
        assert_eq!(o.status.mode, Some(Mode::DingTalk), "still bound");
        assert_eq!(cond(&o, condition::READY).1, reason::APP_STILL_ENABLED);
        assert_eq!(env.members("acme").await, set_of(&["s1", "s2"]));
    }
}

#[tokio::test]
async fn the_stop_event_proves_the_app_stopped_for_the_unbind() {
    for env in envs().await {
        env.ticket().await;
        env.install(json!({"deptIds": [2], "userIds": []})).await;
        let mut t = env.tenant("acme", marketplace());
        env.run(&mut t, &none()).await;
        env.admin(
            reqwest::Method::POST,
            &format!("corps/dingacme/suites/{SUITE_KEY}/stop"),
            None,
        )
        .await;
        // The event, as the suite's connection hands it to the tenant.
        let mut dirty = Dirty::default();
        dirty.mark(&dingbind::core::dirty::change(
            "org_micro_app_stop",
            &json!({"agentId": 1}),
        ));
        let o = env
            .run(
                &mut t,
                &EventsSeen {
                    dirty,
                    channel: None,
                },
            )
            .await;
        assert_eq!(
            cond(&o, condition::BOUND).0,
            "True",
            "a stopped app stays bound"
        );
        // Asked later, after any restart: the kept state is the proof.
        t.spec.mode = Mode::Public;
        let o = env.run(&mut t, &none()).await;
        assert_eq!(o.status.mode, Some(Mode::Public), "{:?}", o.status);
        assert!(env.members("acme").await.is_empty());
    }
}

#[tokio::test]
async fn a_restart_takes_the_suite_ticket_from_the_store() {
    for env in envs().await {
        env.store
            .put_suite_ticket(SUITE_KEY, "kept-ticket")
            .await
            .unwrap();
        let suite = Suite::new(SUITE_KEY, SUITE_SECRET);
        let client =
            dingtalk::Client::new(dingtalk::Config::with_base_url(&env.sim.url())).unwrap();
        let rec = Reconciler::new(env.store.clone(), client).with_suite(suite.clone());
        rec.restore_suite_ticket().await.unwrap();
        assert_eq!(suite.ticket(), Some(Secret::new("kept-ticket")));
        // A ticket that came meanwhile is newer than the stored one.
        suite.set_ticket(Secret::new("fresh"));
        rec.restore_suite_ticket().await.unwrap();
        assert_eq!(suite.ticket(), Some(Secret::new("fresh")));
    }
}
