//! Contract tests: the DingTalk client against the simulator, started in
//! process on 127.0.0.1:0. The client is configured exactly as for production
//! except for its base URLs (and short retry delays).

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use dingbind::dingtalk::types::{Api, ScopeDelta};
use dingbind::dingtalk::{
    AppClient, Client, Config, ErrorKind, OrgItem, RateLimit, RetryPolicy, Secret, Suite,
    TokenSource,
};
use dingbind::sim::org_file::{AppSpec, CorpSpec, DeptSpec, ScopeSpec, UserSpec};
use dingbind::sim::{Faults, OrgFile, SimHandle, Simulator, World};
use futures::TryStreamExt;
use serde_json::{Value, json};

const CORP: &str = "dingacme";
const AGENT: i64 = 1001;

fn user(userid: &str, depts: &[i64]) -> UserSpec {
    UserSpec {
        userid: userid.into(),
        name: format!("Name {userid}"),
        dept_ids: depts.to_vec(),
        mobile: Some("13800000001".into()),
        email: Some(format!("{userid}@acme.example")),
        ..Default::default()
    }
}

/// Root 1 ─ 2 Sales ─ {3 East (250 users), 4 West (empty)}; 1 ─ 5 R&D ─ 6 Lab.
/// u-boss in 1; r1..r5 in 5; multi in 2 and 5.
fn acme() -> CorpSpec {
    let dept = |id, name: &str, parent_id| DeptSpec {
        id,
        name: name.into(),
        parent_id,
        order: 0,
    };
    let mut users: Vec<UserSpec> = (1..=250).map(|i| user(&format!("e{i:03}"), &[3])).collect();
    users.extend((1..=5).map(|i| user(&format!("r{i}"), &[5])));
    users.push(user("multi", &[2, 5]));
    users.push(UserSpec {
        boss: true,
        ..user("u-boss", &[1])
    });
    CorpSpec {
        corp_id: CORP.into(),
        name: "ACME".into(),
        apps: vec![AppSpec {
            agent_id: AGENT,
            app_key: "acme-key".into(),
            app_secret: "acme-secret".into(),
            name: "dingbind".into(),
            enabled: true,
            visible_scope: ScopeSpec {
                dept_ids: vec![1],
                ..Default::default()
            },
        }],
        departments: vec![
            dept(2, "Sales", 1),
            dept(3, "East", 2),
            dept(4, "West", 2),
            dept(5, "R&D", 1),
            dept(6, "Lab", 5),
        ],
        users,
        leave_records: Vec::new(),
    }
}

const ACME_DEPTS: usize = 6;
const ACME_USERS: usize = 257;
/// user/list calls for a full walk: dept 3 has 250 users (3 pages), the others one page each.
const ACME_USER_PAGES: u64 = 3 + 5;

/// A simulator with ACME, unlimited rate unless `faults` says otherwise.
async fn start(faults: Faults) -> SimHandle {
    // reqwest clients made by the tests themselves need the provider too.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let world = World::from_file(OrgFile {
        corps: vec![acme()],
        ..OrgFile::default()
    })
    .unwrap();
    Simulator::start_with(world, faults, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

fn unlimited() -> Faults {
    Faults {
        throttle_qps: 0,
        ..Faults::default()
    }
}

fn config(sim: &SimHandle, qps: u32) -> Config {
    Config {
        rate_limit: RateLimit {
            per_second: qps,
            guard: Duration::from_millis(50),
        },
        retry: RetryPolicy {
            max_attempts: 4,
            max_throttled: 30,
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(200),
            throttle_pause: Duration::from_secs(1),
        },
        request_timeout: Duration::from_secs(5),
        ..Config::with_base_url(&sim.url())
    }
}

fn app(config: Config) -> AppClient {
    Client::new(config)
        .unwrap()
        .app(TokenSource::internal_app("acme-key", "acme-secret"))
}

async fn admin(sim: &SimHandle, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
    let http = reqwest::Client::new();
    let mut req = http.request(method, format!("{}{path}", sim.url()));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    assert!(resp.status().is_success(), "{path}: {}", resp.status());
    resp.json().await.unwrap_or(Value::Null)
}

async fn sim_stats(sim: &SimHandle) -> Value {
    admin(sim, reqwest::Method::GET, "/_sim/stats", None).await
}

fn sim_calls(stats: &Value, api: Api, field: &str) -> u64 {
    // A missing key fails: the simulator lists every endpoint, called or not.
    stats["endpoints"][api.name()][field]
        .as_u64()
        .unwrap_or_else(|| {
            panic!(
                "no {}/{field} in the simulator's stats: {stats}",
                api.name()
            )
        })
}

/// Walks the whole org; returns department ids (roots included) and userids.
async fn walk(app: &AppClient) -> (BTreeSet<i64>, Vec<String>) {
    let items: Vec<OrgItem> = app.walk_org([1]).try_collect().await.unwrap();
    let mut depts = BTreeSet::from([1]);
    let mut users = Vec::new();
    for item in items {
        match item {
            OrgItem::Department(d) => {
                assert!(depts.insert(d.dept_id), "department {} twice", d.dept_id)
            }
            OrgItem::User(u) => users.push(u.userid),
        }
    }
    (depts, users)
}

fn assert_complete(depts: &BTreeSet<i64>, users: &[String]) {
    assert_eq!(depts.len(), ACME_DEPTS);
    assert_eq!(users.len(), ACME_USERS);
    assert_eq!(
        users.iter().collect::<BTreeSet<_>>().len(),
        ACME_USERS,
        "users are yielded once each"
    );
}

#[tokio::test]
async fn every_read_endpoint_answers_with_the_documented_shapes() {
    let sim = start(unlimited()).await;
    let app = app(config(&sim, 0));

    let children = app.list_sub_departments(1).await.unwrap();
    assert_eq!(
        children.iter().map(|d| d.dept_id).collect::<Vec<_>>(),
        vec![2, 5]
    );
    assert_eq!(children[0].parent_id, Some(1));
    assert!(
        app.list_sub_departments(4).await.unwrap().is_empty(),
        "a leaf has no children"
    );

    let sales = app.get_department(2).await.unwrap().unwrap();
    assert_eq!(sales.name, "Sales");
    assert_eq!(sales.owning_member_count, Some(1));
    assert_eq!(sales.member_count, Some(251));
    assert_eq!(app.get_department(999).await.unwrap(), None);

    let page = app.list_users_page(5, 0, 100).await.unwrap();
    assert!(!page.has_more);
    assert_eq!(page.list.len(), 6);
    let multi = page.list.iter().find(|u| u.userid == "multi").unwrap();
    assert_eq!(multi.dept_id_list, vec![2, 5]);

    let boss = app.get_user("u-boss").await.unwrap().unwrap();
    assert!(boss.boss);
    assert_eq!(boss.email.as_deref(), Some("u-boss@acme.example"));
    assert_eq!(app.get_user("nobody").await.unwrap(), None);

    let scopes = app.get_scopes(AGENT).await.unwrap();
    assert_eq!(scopes.dept_ids, vec![1]);
    assert_eq!(app.app_enabled(AGENT).await.unwrap(), Some(true));
    assert_eq!(app.inner_apps().await.unwrap()[0].agent_id, AGENT);

    assert_eq!(
        app.stats().get(Api::AccessToken).calls,
        1,
        "one token for every call"
    );
}

#[tokio::test]
async fn user_list_follows_the_cursor_across_pages() {
    let sim = start(unlimited()).await;
    let app = app(config(&sim, 0));
    let users = app.list_department_users(3).await.unwrap();
    assert_eq!(users.len(), 250);
    assert_eq!(
        users
            .iter()
            .map(|u| &u.userid)
            .collect::<BTreeSet<_>>()
            .len(),
        250
    );
    assert_eq!(app.stats().get(Api::UserList).calls, 3);
}

#[tokio::test]
async fn a_full_walk_makes_the_lower_bound_of_calls() {
    let sim = start(unlimited()).await;
    let app = app(config(&sim, 0));
    let (depts, users) = walk(&app).await;
    assert_complete(&depts, &users);
    let stats = app.stats();
    assert_eq!(stats.get(Api::AccessToken).calls, 1);
    assert_eq!(stats.get(Api::DeptListSub).calls, ACME_DEPTS as u64);
    assert_eq!(stats.get(Api::UserList).calls, ACME_USER_PAGES);
}

#[tokio::test]
async fn department_users_yields_each_user_once() {
    let sim = start(unlimited()).await;
    let app = app(config(&sim, 0));
    let users: Vec<_> = app.department_users([2, 5]).try_collect().await.unwrap();
    let ids: Vec<&str> = users.iter().map(|u| u.userid.as_str()).collect();
    assert_eq!(ids.iter().filter(|u| **u == "multi").count(), 1);
    assert_eq!(ids.len(), 6);
}

#[tokio::test]
async fn expired_token_mid_walk_is_refreshed_once_under_concurrency() {
    let sim = start(unlimited()).await;
    let app = app(config(&sim, 0));
    app.list_sub_departments(1).await.unwrap();
    admin(&sim, reqwest::Method::POST, "/_sim/tokens/expire", None).await;
    let (depts, users) = walk(&app).await;
    assert_complete(&depts, &users);
    // Both families answer an expired token; both are refreshed by the same single fetch.
    assert_eq!(app.get_scopes(AGENT).await.unwrap().dept_ids, vec![1]);
    assert_eq!(app.stats().get(Api::AccessToken).calls, 2);
    assert_eq!(
        sim_calls(&sim_stats(&sim).await, Api::AccessToken, "calls"),
        2
    );
}

#[tokio::test]
async fn short_token_life_is_renewed_during_a_long_walk() {
    // Tokens live 1 s (used for 0.9 s); 8 user/list calls paced at 5/s take about 1.5 s.
    let sim = start(Faults {
        token_ttl_seconds: 1,
        ..unlimited()
    })
    .await;
    let app = app(config(&sim, 5));
    let (depts, users) = walk(&app).await;
    assert_complete(&depts, &users);
    assert!(
        app.stats().get(Api::AccessToken).calls >= 2,
        "{:?}",
        app.stats()
    );
    assert_eq!(app.stats().get(Api::UserList).errors, 0);
}

#[tokio::test]
async fn throttled_calls_slow_down_and_are_retried_without_losing_anything() {
    // The simulator allows 3 calls/s per API; the client paces at 20/s.
    let sim = start(Faults {
        throttle_qps: 3,
        ..Faults::default()
    })
    .await;
    let app = app(config(&sim, 20));
    let (depts, users) = walk(&app).await;
    assert_complete(&depts, &users);
    let client = app.stats();
    let server = sim_stats(&sim).await;
    let throttled = sim_calls(&server, Api::UserList, "throttled")
        + sim_calls(&server, Api::DeptListSub, "throttled");
    assert!(throttled > 0, "the simulator throttled some calls");
    assert_eq!(
        client.get(Api::UserList).throttled + client.get(Api::DeptListSub).throttled,
        throttled
    );
    assert_eq!(
        client.get(Api::UserList).calls - client.get(Api::UserList).throttled,
        ACME_USER_PAGES
    );
    assert_eq!(
        client.get(Api::DeptListSub).calls - client.get(Api::DeptListSub).throttled,
        ACME_DEPTS as u64
    );
}

#[tokio::test]
async fn v1_throttle_answer_is_retried_too() {
    let sim = start(Faults {
        throttle_qps: 1,
        ..Faults::default()
    })
    .await;
    let app = app(config(&sim, 0));
    // Four unpaced calls take milliseconds: at most one window boundary falls
    // between them, so at least two share a window and one is throttled.
    for _ in 0..4 {
        assert_eq!(app.get_scopes(AGENT).await.unwrap().dept_ids, vec![1]);
    }
    assert!(app.stats().get(Api::ScopesGet).throttled >= 1);
    assert_eq!(app.stats().get(Api::ScopesGet).errors, 0);
}

#[tokio::test]
async fn system_busy_answers_are_retried() {
    let sim = start(Faults {
        fail_next: 3,
        ..unlimited()
    })
    .await;
    let app = app(config(&sim, 0));
    let (depts, users) = walk(&app).await;
    assert_complete(&depts, &users);
    let s = app.stats();
    assert_eq!(s.endpoints.values().map(|e| e.retries).sum::<u64>(), 3);
    assert_eq!(s.endpoints.values().map(|e| e.errors).sum::<u64>(), 0);
}

#[tokio::test]
async fn bare_http_503_is_retried() {
    let sim = start(Faults {
        fail_next: 2,
        fail_status: Some(503),
        ..unlimited()
    })
    .await;
    let app = app(config(&sim, 0));
    assert_eq!(app.list_department_users(5).await.unwrap().len(), 6);
    assert_eq!(
        app.stats().total_calls(),
        3 + 1,
        "two 503 on the token call, then token and user/list"
    );
}

#[tokio::test]
async fn timeouts_are_retried_and_errors_never_show_the_token() {
    let sim = start(unlimited()).await;
    let cfg = Config {
        request_timeout: Duration::from_millis(300),
        ..config(&sim, 0)
    };
    let app = app(cfg);
    app.list_sub_departments(1).await.unwrap();
    admin(
        &sim,
        reqwest::Method::PUT,
        "/_sim/faults",
        Some(json!({"slowNext": 2, "slowMs": 1000})),
    )
    .await;
    assert_eq!(app.list_sub_departments(2).await.unwrap().len(), 2);
    assert_eq!(app.stats().get(Api::DeptListSub).retries, 2);

    admin(
        &sim,
        reqwest::Method::PUT,
        "/_sim/faults",
        Some(json!({"slowNext": 10, "slowMs": 1000})),
    )
    .await;
    let err = app.list_sub_departments(2).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transport);
    let text = format!("{err} {err:?}");
    assert!(text.contains("topapi/v2/department/listsub"), "{text}");
    assert!(!text.contains("access_token="), "{text}");
}

#[tokio::test]
async fn wrong_secret_is_one_clear_error_and_one_token_call() {
    let sim = start(unlimited()).await;
    let client = Client::new(config(&sim, 0)).unwrap();
    let app = client.app(TokenSource::internal_app("acme-key", "not-the-secret"));
    let err = app.list_sub_departments(1).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidCredentials);
    assert_eq!(err.code(), Some("invalidClientIdOrSecret"));
    let text = format!("{err} {err:?}");
    assert!(!text.contains("not-the-secret"), "{text}");
    assert_eq!(client.stats().get(Api::AccessToken).calls, 1);
    assert_eq!(
        sim_calls(&sim_stats(&sim).await, Api::AccessToken, "calls"),
        1
    );
}

#[tokio::test]
async fn simulator_answers_bad_tokens_in_each_family_style() {
    let sim = start(unlimited()).await;
    let http = reqwest::Client::new();
    let top: Value = http
        .post(format!(
            "{}/topapi/v2/department/listsub?access_token=bogus",
            sim.url()
        ))
        .json(&json!({"dept_id": 1}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(top["errcode"], 88);
    assert_eq!(top["sub_code"], "40014");
    let v1 = http
        .get(format!("{}/v1.0/microApp/allInnerApps", sim.url()))
        .header("x-acs-dingtalk-access-token", "bogus")
        .send()
        .await
        .unwrap();
    assert_eq!(v1.status(), 400);
    let body: Value = v1.json().await.unwrap();
    assert_eq!(body["code"], "InvalidAuthentication");
    let missing = http
        .get(format!("{}/v1.0/microApp/allInnerApps", sim.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 400);
    assert_eq!(
        missing.json::<Value>().await.unwrap()["code"],
        "AuthenticationFailed.MissingParameter"
    );
}

#[tokio::test]
async fn v1_parameter_error_keeps_status_code_and_endpoint() {
    let sim = start(unlimited()).await;
    let app = app(config(&sim, 0));
    let err = app.get_scopes(4242).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Other);
    assert_eq!(err.code(), Some("invalidParam"));
    assert_eq!(err.endpoint(), Some(Api::ScopesGet));
}

#[tokio::test]
async fn scope_delta_is_split_into_calls_of_100_ids() {
    let sim = start(unlimited()).await;
    let app = app(config(&sim, 0));
    let add: Vec<String> = (1..=250).map(|i| format!("e{i:03}")).collect();
    let delta = ScopeDelta {
        add_user_ids: add.clone(),
        del_dept_ids: vec![1],
        add_dept_ids: vec![5],
        ..Default::default()
    };
    assert_eq!(app.update_scopes(AGENT, &delta).await.unwrap(), 3);
    let scopes = app.get_scopes(AGENT).await.unwrap();
    assert_eq!(scopes.user_ids, add);
    assert_eq!(scopes.dept_ids, vec![5]);
    assert_eq!(
        sim_calls(&sim_stats(&sim).await, Api::ScopesUpdate, "calls"),
        3
    );
}

#[tokio::test]
async fn scope_post_is_not_retried_after_a_server_error() {
    let sim = start(unlimited()).await;
    let app = app(config(&sim, 0));
    app.get_scopes(AGENT).await.unwrap();
    admin(
        &sim,
        reqwest::Method::PUT,
        "/_sim/faults",
        Some(json!({"failNext": 1})),
    )
    .await;
    let delta = ScopeDelta {
        add_user_ids: vec!["r1".into()],
        ..Default::default()
    };
    let err = app.update_scopes(AGENT, &delta).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Busy);
    assert_eq!(
        sim_calls(&sim_stats(&sim).await, Api::ScopesUpdate, "calls"),
        1
    );
}

#[tokio::test]
async fn a_user_who_left_is_gone_from_lists_and_get_and_is_in_the_leave_records() {
    let sim = start(unlimited()).await;
    let app = app(config(&sim, 0));
    let start_time = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1);
    admin(
        &sim,
        reqwest::Method::POST,
        &format!("/_sim/corps/{CORP}/users/multi/leave"),
        None,
    )
    .await;
    assert_eq!(app.get_user("multi").await.unwrap(), None);
    let (_, users) = walk(&app).await;
    assert!(!users.contains(&"multi".to_string()));
    assert_eq!(users.len(), ACME_USERS - 1);
    let records = app.leave_records(start_time, None).await.unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].user_id, "multi");
    assert_eq!(records[0].leave_reason, "leave");
}

#[tokio::test]
async fn leave_records_are_read_across_pages() {
    let sim = start(unlimited()).await;
    let app = app(config(&sim, 0));
    for i in 1..=120 {
        admin(
            &sim,
            reqwest::Method::DELETE,
            &format!("/_sim/corps/{CORP}/users/e{i:03}"),
            None,
        )
        .await;
    }
    let records = app
        .leave_records(
            jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1),
            None,
        )
        .await
        .unwrap();
    assert_eq!(records.len(), 120);
    assert!(records.iter().all(|r| r.leave_reason == "delete"));
    assert_eq!(app.stats().get(Api::EmpLeaveRecords).calls, 3);
}

#[tokio::test]
async fn disabling_the_app_shows_as_app_status_0() {
    let sim = start(unlimited()).await;
    let app = app(config(&sim, 0));
    admin(
        &sim,
        reqwest::Method::PUT,
        &format!("/_sim/corps/{CORP}/apps/{AGENT}"),
        Some(json!({"enabled": false})),
    )
    .await;
    assert_eq!(app.app_enabled(AGENT).await.unwrap(), Some(false));
    assert_eq!(app.inner_apps().await.unwrap()[0].app_status, 0);
}

#[tokio::test]
async fn admin_changes_to_departments_and_users_show_in_the_api() {
    let sim = start(unlimited()).await;
    let app = app(config(&sim, 0));
    admin(
        &sim,
        reqwest::Method::PUT,
        &format!("/_sim/corps/{CORP}/departments/7"),
        Some(json!({"name": "Ops", "parentId": 4})),
    )
    .await;
    admin(
        &sim,
        reqwest::Method::PUT,
        &format!("/_sim/corps/{CORP}/users/n1"),
        Some(json!({"name": "New", "deptIds": [7]})),
    )
    .await;
    // Move East under R&D.
    admin(
        &sim,
        reqwest::Method::PUT,
        &format!("/_sim/corps/{CORP}/departments/3"),
        Some(json!({"name": "East", "parentId": 5})),
    )
    .await;
    let ids = |v: Vec<dingbind::dingtalk::types::Department>| {
        v.into_iter().map(|d| d.dept_id).collect::<Vec<_>>()
    };
    assert_eq!(ids(app.list_sub_departments(4).await.unwrap()), vec![7]);
    assert_eq!(ids(app.list_sub_departments(5).await.unwrap()), vec![3, 6]);
    assert_eq!(
        app.get_user("n1").await.unwrap().unwrap().dept_id_list,
        vec![7]
    );
    let corp = admin(
        &sim,
        reqwest::Method::GET,
        &format!("/_sim/corps/{CORP}"),
        None,
    )
    .await;
    assert_eq!(corp["users"].as_array().map(Vec::len), Some(ACME_USERS + 1));
}

#[tokio::test]
async fn empty_member_list_fault_fires_once() {
    let sim = start(Faults {
        empty_members_once: Some(5),
        ..unlimited()
    })
    .await;
    let app = app(config(&sim, 0));
    assert!(app.list_department_users(5).await.unwrap().is_empty());
    assert_eq!(app.list_department_users(5).await.unwrap().len(), 6);
}

#[tokio::test]
async fn reset_restores_the_initial_world_and_clears_counters() {
    let sim = start(unlimited()).await;
    let app = app(config(&sim, 0));
    admin(
        &sim,
        reqwest::Method::POST,
        &format!("/_sim/corps/{CORP}/users/r1/leave"),
        None,
    )
    .await;
    app.get_user("r1").await.unwrap();
    admin(&sim, reqwest::Method::POST, "/_sim/reset", None).await;
    let stats = sim_stats(&sim).await;
    // Every endpoint is listed again, each at zero.
    let endpoints = stats["endpoints"].as_object().expect("endpoints");
    assert_eq!(endpoints.len(), Api::ALL.len() + 1, "{stats}");
    for api in Api::ALL {
        assert_eq!(sim_calls(&stats, api, "calls"), 0, "{stats}");
    }
    assert!(
        endpoints
            .values()
            .all(|c| c == &json!({"calls": 0, "throttled": 0, "faults": 0, "granted": 0})),
        "{stats}"
    );
    // Every app of the world, at zero.
    assert_eq!(
        stats["apps"],
        json!({"acme-key": {"calls": 0, "throttled": 0, "faults": 0, "granted": 0}})
    );
    assert_eq!(stats["tokensIssued"], json!(0));
    // The reset revoked the client's token; it refreshes and sees r1 again.
    assert!(app.get_user("r1").await.unwrap().is_some());
    let by_app: HashMap<String, Value> =
        serde_json::from_value(sim_stats(&sim).await["apps"].clone()).unwrap();
    // The call refused for its revoked token names no app; the token call and the retry do.
    assert_eq!(by_app["acme-key"]["calls"], 2);
    assert_eq!(sim_calls(&sim_stats(&sim).await, Api::UserGet, "calls"), 2);
}

#[tokio::test]
async fn an_app_added_through_the_admin_api_gets_its_own_token_and_scope() {
    let sim = start(unlimited()).await;
    let body = json!({"appKey": "acme-2", "appSecret": "s2", "visibleScope": {"deptIds": [5], "userIds": []}});
    admin(
        &sim,
        reqwest::Method::PUT,
        &format!("/_sim/corps/{CORP}/apps/2002"),
        Some(body),
    )
    .await;
    let client = Client::new(config(&sim, 0)).unwrap();
    let second = client.app(TokenSource::internal_app("acme-2", "s2"));
    assert_eq!(second.get_scopes(2002).await.unwrap().dept_ids, vec![5]);
    assert_eq!(second.inner_apps().await.unwrap().len(), 2);
}

#[tokio::test]
async fn the_unified_token_tells_whether_the_app_belongs_to_an_organization() {
    let sim = start(unlimited()).await;
    let client = Client::new(config(&sim, 0)).unwrap();
    let app = client.app(TokenSource::internal_app("acme-key", "acme-secret"));
    assert!(app.belongs_to_corp("dingacme").await.unwrap());
    assert!(!app.belongs_to_corp("dingother").await.unwrap());
    let wrong = client.app(TokenSource::internal_app("acme-key", "not-the-secret"));
    let err = wrong.belongs_to_corp("dingacme").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidCredentials);
    assert!(!format!("{err} {err:?}").contains("not-the-secret"));
    assert_eq!(
        client.stats().get(Api::CorpToken).calls,
        3,
        "no retry on a refusal"
    );
}

#[tokio::test]
async fn granted_counts_only_token_requests_answered_with_a_token() {
    let sim = start(unlimited()).await;
    // A dingbind client installs the TLS crypto provider reqwest needs.
    let _ = app(config(&sim, 0));
    let http = reqwest::Client::new();
    let url = format!("{}/v1.0/oauth2/accessToken", sim.url());
    let ask = |secret: &'static str| {
        http.post(&url)
            .json(&json!({"appKey": "acme-key", "appSecret": secret}))
            .send()
    };
    assert!(!ask("wrong").await.unwrap().status().is_success());
    let stats = sim_stats(&sim).await;
    assert_eq!(
        (
            sim_calls(&stats, Api::AccessToken, "calls"),
            sim_calls(&stats, Api::AccessToken, "granted")
        ),
        (1, 0),
        "a refused request is a call, not a grant"
    );
    assert!(ask("acme-secret").await.unwrap().status().is_success());
    assert!(ask("acme-secret").await.unwrap().status().is_success());
    let stats = sim_stats(&sim).await;
    assert_eq!(sim_calls(&stats, Api::AccessToken, "granted"), 2);
    // Asked again before it expired: the same token, extended.
    assert_eq!(stats["tokensIssued"], json!(1));
}

#[tokio::test]
async fn a_body_larger_than_the_cap_is_refused_with_a_clear_error() {
    let sim = start(unlimited()).await;
    // Room for the token answer, not for a page of 100 users.
    let app = app(Config {
        max_body_bytes: 600,
        ..config(&sim, 0)
    });
    let err = app.list_users_page(5, 0, 100).await.unwrap_err();
    assert_eq!(err.kind(), dingbind::dingtalk::ErrorKind::Decode, "{err}");
    assert!(
        err.to_string().contains("larger than the 600 bytes read"),
        "{err}"
    );
    assert_eq!(dingbind::dingtalk::MAX_BODY_BYTES, 16 << 20);
}

#[tokio::test]
async fn the_admin_api_answers_out_of_range_values_with_400_and_keeps_serving() {
    let sim = start(unlimited()).await;
    let http = reqwest::Client::new();
    let put = |body: &'static str| {
        let http = http.clone();
        let url = format!("{}/_sim/faults", sim.url());
        async move {
            let resp = http
                .put(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap_or_default();
            (status, text)
        }
    };
    for body in [
        r#"{"tokenTtlSeconds": 18446744073709551615}"#,
        r#"{"tokenTtlSeconds": 18446744073709551616}"#,
        r#"{"tokenTtlSeconds": -1}"#,
        r#"{"latencyMs": 18446744073709551615}"#,
        r#"{"slowMs": 99999999999}"#,
        r#"{"failStatus": 1000}"#,
        r#"{"errorRate": 2.5}"#,
        r#"{"failNext": "many"}"#,
        r#"not json"#,
    ] {
        let (status, text) = put(body).await;
        assert_eq!(status, 400, "{body}: {text}");
        assert!(text.contains("\"error\""), "{body}: {text}");
    }
    // Nothing was applied, and tokens are still issued.
    let faults = admin(&sim, reqwest::Method::GET, "/_sim/faults", None).await;
    assert_eq!(faults["tokenTtlSeconds"], 7200);
    let app = app(config(&sim, 0));
    assert!(app.list_sub_departments(1).await.is_ok());
    let (status, _) = put(r#"{"tokenTtlSeconds": 315360000}"#).await;
    assert_eq!(status, 200, "the longest life accepted");
    let app = self::app(config(&sim, 0));
    assert!(app.list_sub_departments(1).await.is_ok());
}

/// `POST {path}` on the simulator with a JSON body; the status, headers and body.
async fn raw_post(url: String, body: Value) -> (u16, reqwest::header::HeaderMap, Value) {
    let resp = reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.json().await.unwrap_or(Value::Null))
}

async fn first_token(sim: &SimHandle) -> String {
    let (_, _, body) = raw_post(
        format!("{}/v1.0/oauth2/accessToken", sim.url()),
        serde_json::json!({"appKey": "acme-key", "appSecret": "acme-secret"}),
    )
    .await;
    body["accessToken"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn v1_answers_carry_x_acs_request_id_like_dingtalk() {
    let sim = start(unlimited()).await;
    let url = format!("{}/v1.0/oauth2/accessToken", sim.url());
    let (status, headers, _) = raw_post(
        url.clone(),
        serde_json::json!({"appKey": "acme-key", "appSecret": "acme-secret"}),
    )
    .await;
    assert_eq!(status, 200);
    let ok_id = headers.get("x-acs-request-id").expect("on a success");
    assert!(!ok_id.is_empty());
    let (status, headers, body) = raw_post(
        url,
        serde_json::json!({"appKey": "acme-key", "appSecret": "wrong"}),
    )
    .await;
    assert!(status >= 400);
    assert_eq!(
        headers
            .get("x-acs-request-id")
            .and_then(|v| v.to_str().ok()),
        body["requestid"].as_str(),
        "an error's header and body name the same request"
    );
    assert_ne!(headers.get("x-acs-request-id"), Some(ok_id));
}

#[tokio::test]
async fn user_listid_answers_a_departments_direct_member_ids_in_one_call() {
    let sim = start(unlimited()).await;
    let app = app(config(&sim, 0));
    let mut ids = app.list_user_ids(5).await.unwrap();
    ids.sort();
    assert_eq!(ids, ["multi", "r1", "r2", "r3", "r4", "r5"]);
    assert_eq!(
        app.list_user_ids(3).await.unwrap().len(),
        250,
        "no pagination"
    );
    let err = app.list_user_ids(999).await.unwrap_err();
    assert_eq!(err.code(), Some("60003"), "{err}");
}

#[tokio::test]
async fn an_unknown_topapi_path_answers_errcode_22_with_a_request_id() {
    let sim = start(unlimited()).await;
    let token = first_token(&sim).await;
    let (_, _, body) = raw_post(
        format!("{}/topapi/v2/user/notexist?access_token={token}", sim.url()),
        serde_json::json!({}),
    )
    .await;
    assert_eq!(body["errcode"], 22);
    assert!(
        body["request_id"].as_str().is_some_and(|r| !r.is_empty()),
        "{body}"
    );
}

#[tokio::test]
async fn tokens_differ_between_simulators_unless_seeded() {
    let a = start(unlimited()).await;
    let b = start(unlimited()).await;
    assert_ne!(first_token(&a).await, first_token(&b).await);
    let seeded = |seed| async move {
        let world = World::from_file(OrgFile {
            corps: vec![acme()],
            ..OrgFile::default()
        })
        .unwrap();
        Simulator::start_seeded(
            world,
            unlimited(),
            "127.0.0.1:0".parse().unwrap(),
            Some(seed),
        )
        .await
        .unwrap()
    };
    let (c, d) = (seeded(7).await, seeded(7).await);
    assert_eq!(first_token(&c).await, first_token(&d).await);
}

// ---------------------------------------------------------------- marketplace apps (suites)

const SUITE_KEY: &str = "mkt-suite";
const SUITE_SECRET: &str = "mkt-suite-secret-value";
/// The agentId ACME gives the suite's app.
const SUITE_AGENT: i64 = 5001;

/// Creates the suite, installs it in ACME (agentId 5001, visible to Sales
/// and r1) and issues a ticket; answers the ticket.
async fn with_suite(sim: &SimHandle) -> String {
    let post = reqwest::Method::POST;
    let created = admin(
        sim,
        post.clone(),
        "/_sim/suites",
        Some(json!({"suiteKey": SUITE_KEY, "suiteSecret": SUITE_SECRET})),
    )
    .await;
    assert_eq!(created["suiteKey"], SUITE_KEY);
    assert!(created["suiteId"].as_i64().is_some(), "{created}");
    let installed = admin(
        sim,
        reqwest::Method::PUT,
        &format!("/_sim/corps/{CORP}/suites/{SUITE_KEY}"),
        Some(json!({"agentId": SUITE_AGENT, "scope": {"deptIds": [2], "userIds": ["r1"]}, "adminUserId": "u-boss"})),
    )
    .await;
    assert_eq!(installed["agentId"], SUITE_AGENT);
    assert_eq!(installed["state"], "Active");
    new_ticket(sim).await
}

/// A new suite ticket, through the admin API.
async fn new_ticket(sim: &SimHandle) -> String {
    let t = admin(
        sim,
        reqwest::Method::POST,
        &format!("/_sim/suites/{SUITE_KEY}/ticket"),
        None,
    )
    .await;
    t["suiteTicket"].as_str().expect("a ticket").to_string()
}

fn suite(ticket: Option<&str>) -> Suite {
    let suite = Suite::new(SUITE_KEY, SUITE_SECRET);
    if let Some(t) = ticket {
        suite.set_ticket(Secret::new(t));
    }
    suite
}

/// The suite's own client (`suiteAccessToken`, for `authInfo`).
fn suite_client(sim: &SimHandle, suite: Suite) -> AppClient {
    Client::new(config(sim, 0))
        .unwrap()
        .app(TokenSource::Suite(suite))
}

/// The suite's client in `corp` (`corpAccessToken`).
fn corp_client(sim: &SimHandle, suite: Suite, corp: &str) -> AppClient {
    Client::new(config(sim, 0))
        .unwrap()
        .app(TokenSource::marketplace(suite, corp))
}

/// A second corp, Beta, without the suite.
async fn add_beta(sim: &SimHandle) {
    admin(
        sim,
        reqwest::Method::POST,
        "/_sim/corps",
        Some(json!({"corpId": "dingbeta", "name": "Beta",
            "departments": [{"id": 2, "name": "Ops"}],
            "users": [{"userid": "b1", "name": "Li Si", "deptIds": [2]}]})),
    )
    .await;
}

/// A corp token by hand.
async fn raw_corp_token(sim: &SimHandle, corp: &str, ticket: &str) -> (u16, Value) {
    let (status, _, body) = raw_post(
        format!("{}/v1.0/oauth2/corpAccessToken", sim.url()),
        json!({"suiteKey": SUITE_KEY, "suiteSecret": SUITE_SECRET, "authCorpId": corp, "suiteTicket": ticket}),
    )
    .await;
    (status, body)
}

#[tokio::test]
async fn a_suite_without_a_ticket_fails_before_any_http_call() {
    let sim = start(unlimited()).await;
    with_suite(&sim).await;
    let err = suite_client(&sim, suite(None))
        .auth_info(CORP)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SuiteTicket, "{err}");
    let err = corp_client(&sim, suite(None), CORP)
        .auth_scopes()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SuiteTicket, "{err}");
    let stats = sim_stats(&sim).await;
    assert_eq!(sim_calls(&stats, Api::SuiteToken, "calls"), 0);
    assert_eq!(sim_calls(&stats, Api::AuthCorpToken, "calls"), 0);
}

#[tokio::test]
async fn a_stale_ticket_is_refused_after_rotation_and_a_wrong_secret_is_bad_credentials() {
    let sim = start(unlimited()).await;
    let old = with_suite(&sim).await;
    assert!(
        suite_client(&sim, suite(Some(&old)))
            .auth_info(CORP)
            .await
            .unwrap()
            .is_some()
    );
    let new = new_ticket(&sim).await;
    assert_ne!(old, new);
    for client in [
        suite_client(&sim, suite(Some(&old))),
        corp_client(&sim, suite(Some(&old)), CORP),
    ] {
        let err = match client.auth_info(CORP).await {
            Err(e) => e,
            Ok(_) => client.auth_scopes().await.unwrap_err(),
        };
        assert_eq!(err.kind(), ErrorKind::SuiteTicket, "{err}");
        assert_eq!(err.code(), Some("invalidSuiteTicket"));
        let text = format!("{err} {err:?}");
        assert!(
            !text.contains(&old) && !text.contains(SUITE_SECRET),
            "{text}"
        );
    }
    let fresh = suite(Some(&old));
    assert!(
        fresh.set_ticket(Secret::new(new.clone())),
        "the newer ticket"
    );
    assert!(
        suite_client(&sim, fresh)
            .auth_info(CORP)
            .await
            .unwrap()
            .is_some()
    );
    let wrong = Suite::new(SUITE_KEY, "wrong-secret");
    wrong.set_ticket(Secret::new(new.clone()));
    let err = suite_client(&sim, wrong).auth_info(CORP).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidCredentials, "{err}");
    assert_eq!(err.code(), Some("invalidSuiteSecret"));
    let unknown = Suite::new("no-such-suite", SUITE_SECRET);
    unknown.set_ticket(Secret::new(new));
    let err = suite_client(&sim, unknown)
        .auth_info(CORP)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidCredentials, "{err}");
    assert_eq!(err.code(), Some("invalidSuiteKey"));
}

#[tokio::test]
async fn a_corp_token_is_new_on_every_call_and_refused_where_the_suite_is_not_installed() {
    let sim = start(unlimited()).await;
    let ticket = with_suite(&sim).await;
    add_beta(&sim).await;
    let (status, a) = raw_corp_token(&sim, CORP, &ticket).await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["expireIn"], 7200);
    let (_, b) = raw_corp_token(&sim, CORP, &ticket).await;
    assert_ne!(
        a["accessToken"], b["accessToken"],
        "a new token on every call"
    );
    let (status, body) = raw_corp_token(&sim, "dingbeta", &ticket).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalidAuthInfo"))
    );
    let err = corp_client(&sim, suite(Some(&ticket)), "dingbeta")
        .auth_scopes()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotInstalled, "{err}");
    assert!(
        corp_client(&sim, suite(Some(&ticket)), CORP)
            .auth_scopes()
            .await
            .is_ok()
    );
    let stats = sim_stats(&sim).await;
    assert_eq!(sim_calls(&stats, Api::AuthCorpToken, "granted"), 3);
}

#[tokio::test]
async fn auth_info_tells_an_install_from_none_and_from_an_uninstall() {
    let sim = start(unlimited()).await;
    let ticket = with_suite(&sim).await;
    add_beta(&sim).await;
    let client = suite_client(&sim, suite(Some(&ticket)));
    let info = client.auth_info(CORP).await.unwrap().expect("installed");
    let agent = info.agent().expect("an agent");
    assert_eq!(agent.agent_id, SUITE_AGENT);
    assert_eq!(agent.admin_list, ["u-boss"]);
    assert_eq!(info.auth_corp_info.corp_id, CORP);
    assert_eq!(info.auth_corp_info.corp_name, "ACME");
    assert_eq!(
        info.auth_user_info.map(|u| u.user_id).as_deref(),
        Some("u-boss")
    );
    assert_eq!(
        client.auth_info("dingbeta").await.unwrap(),
        None,
        "not installed"
    );
    assert_eq!(
        client.auth_info("dingnowhere").await.unwrap(),
        None,
        "no such corp"
    );
    // A stopped app is still listed: authInfo has no status.
    admin(
        &sim,
        reqwest::Method::POST,
        &format!("/_sim/corps/{CORP}/suites/{SUITE_KEY}/stop"),
        None,
    )
    .await;
    assert!(client.auth_info(CORP).await.unwrap().is_some(), "stopped");
    let corp = corp_client(&sim, suite(Some(&ticket)), CORP);
    assert!(
        corp.auth_scopes().await.is_ok(),
        "a stopped app still reads"
    );
    admin(
        &sim,
        reqwest::Method::DELETE,
        &format!("/_sim/corps/{CORP}/suites/{SUITE_KEY}"),
        None,
    )
    .await;
    assert_eq!(client.auth_info(CORP).await.unwrap(), None, "uninstalled");
    // The uninstall revoked the corp's token; a new one is refused.
    let err = corp.auth_scopes().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotInstalled, "{err}");
    let view = admin(
        &sim,
        reqwest::Method::GET,
        &format!("/_sim/suites/{SUITE_KEY}"),
        None,
    )
    .await;
    assert_eq!(view["installs"], json!([]));
    assert_eq!(view["suiteTicket"], ticket.as_str());
}

#[tokio::test]
async fn auth_scopes_give_the_install_scope_and_follow_a_change() {
    let sim = start(unlimited()).await;
    let ticket = with_suite(&sim).await;
    let corp = corp_client(&sim, suite(Some(&ticket)), CORP);
    let scopes = corp.auth_scopes().await.unwrap();
    assert_eq!(scopes.auth_org_scopes.authed_dept, vec![2]);
    assert_eq!(scopes.auth_org_scopes.authed_user, vec!["r1"]);
    assert!(scopes.auth_user_field.iter().any(|f| f == "userid"));
    let view = admin(
        &sim,
        reqwest::Method::PUT,
        &format!("/_sim/corps/{CORP}/suites/{SUITE_KEY}/scope"),
        Some(json!({"deptIds": [1], "userIds": []})),
    )
    .await;
    assert_eq!(view["scope"], json!({"deptIds": [1], "userIds": []}));
    let scopes = corp.auth_scopes().await.unwrap();
    assert_eq!(scopes.auth_org_scopes.authed_dept, vec![1]);
    assert!(scopes.auth_org_scopes.authed_user.is_empty());
    // The raw answer: the fields beside errcode, no result.
    let token = raw_corp_token(&sim, CORP, &ticket).await.1["accessToken"]
        .as_str()
        .unwrap()
        .to_string();
    let raw: Value = reqwest::get(format!("{}/auth/scopes?access_token={token}", sim.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(raw["errcode"], 0);
    assert_eq!(raw["condition_field"], json!([]));
    assert!(raw.get("result").is_none(), "{raw}");
    // An internal app's token answers its visible scope in the same shape.
    let internal = app(config(&sim, 0)).auth_scopes().await.unwrap();
    assert_eq!(internal.auth_org_scopes.authed_dept, vec![1]);
}

#[tokio::test]
async fn a_corp_token_reads_the_contacts_of_its_corp() {
    let sim = start(unlimited()).await;
    let ticket = with_suite(&sim).await;
    let corp = corp_client(&sim, suite(Some(&ticket)), CORP);
    let subs: Vec<i64> = corp
        .list_sub_departments(1)
        .await
        .unwrap()
        .iter()
        .map(|d| d.dept_id)
        .collect();
    assert_eq!(subs, [2, 5]);
    let user = corp.get_user("multi").await.unwrap().expect("a user");
    assert_eq!(user.dept_id_list, vec![2, 5]);
    assert_eq!(corp.get_user("nobody").await.unwrap(), None);
    assert_eq!(
        corp.get_department(3).await.unwrap().map(|d| d.name),
        Some("East".into())
    );
    let (depts, users) = walk(&corp).await;
    assert_complete(&depts, &users);
    let stats = sim_stats(&sim).await;
    assert!(
        stats["apps"][format!("{SUITE_KEY}@{CORP}")]["calls"]
            .as_u64()
            .is_some_and(|n| n > 0),
        "counted by suite and corp: {}",
        stats["apps"]
    );
}

#[tokio::test]
async fn suite_and_corp_tokens_are_refused_where_they_do_not_fit() {
    let sim = start(unlimited()).await;
    let ticket = with_suite(&sim).await;
    let (_, _, body) = raw_post(
        format!("{}/v1.0/oauth2/suiteAccessToken", sim.url()),
        json!({"suiteKey": SUITE_KEY, "suiteSecret": SUITE_SECRET, "suiteTicket": ticket}),
    )
    .await;
    let suite_token = body["accessToken"]
        .as_str()
        .expect("a suite token")
        .to_string();
    let corp_token = raw_corp_token(&sim, CORP, &ticket).await.1["accessToken"]
        .as_str()
        .unwrap()
        .to_string();
    let app_token = first_token(&sim).await;
    let http = reqwest::Client::new();
    // A suite token reads no contacts.
    let (_, _, listsub) = raw_post(
        format!(
            "{}/topapi/v2/department/listsub?access_token={suite_token}",
            sim.url()
        ),
        json!({"dept_id": 1}),
    )
    .await;
    assert_eq!(
        (listsub["errcode"].as_i64(), listsub["sub_code"].as_str()),
        (Some(88), Some("40014"))
    );
    // authInfo takes a suite token only.
    for token in [&corp_token, &app_token] {
        let resp = http
            .get(format!(
                "{}/v1.0/oauth2/apps/authInfo?authCorpId={CORP}",
                sim.url()
            ))
            .header("x-acs-dingtalk-access-token", token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 400);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["code"], "InvalidAuthentication");
    }
    // The internal-app-only v1.0 endpoints refuse a corp token.
    let resp = http
        .get(format!("{}/v1.0/microApp/allInnerApps", sim.url()))
        .header("x-acs-dingtalk-access-token", &corp_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["code"],
        "Forbidden.AccessDenied.AccessTokenPermissionDenied"
    );
}

#[tokio::test]
async fn two_corps_of_one_suite_are_throttled_independently() {
    let sim = start(Faults {
        throttle_qps: 1,
        ..Faults::default()
    })
    .await;
    let ticket = with_suite(&sim).await;
    add_beta(&sim).await;
    admin(
        &sim,
        reqwest::Method::PUT,
        &format!("/_sim/corps/dingbeta/suites/{SUITE_KEY}"),
        None,
    )
    .await;
    // Token calls are limited per suite and corp too: one per corp per
    // second, in separate windows.
    let (_, a) = raw_corp_token(&sim, CORP, &ticket).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (_, b) = raw_corp_token(&sim, "dingbeta", &ticket).await;
    let (a, b) = (
        a["accessToken"].as_str().expect("ACME's token").to_string(),
        b["accessToken"].as_str().expect("Beta's token").to_string(),
    );
    let listsub = |token: String| {
        let url = format!(
            "{}/topapi/v2/department/listsub?access_token={token}",
            sim.url()
        );
        async move { raw_post(url, json!({"dept_id": 1})).await.2 }
    };
    // ACME, Beta, ACME in one window: the third is throttled, Beta is not.
    // Three calls take milliseconds; a window boundary between them is rare
    // and answered by trying again in the next second.
    let mut seen = false;
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let first = listsub(a.clone()).await;
        let other = listsub(b.clone()).await;
        let again = listsub(a.clone()).await;
        if first["errcode"] == 0 && other["errcode"] == 0 && again["errcode"] == 88 {
            assert_eq!(again["sub_code"], "90019", "{again}");
            seen = true;
            break;
        }
    }
    assert!(seen, "ACME throttled while Beta was not, within one window");
    // v1.0: the same corp's second token call in a window.
    let mut v1_seen = false;
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let (s1, _) = raw_corp_token(&sim, CORP, &ticket).await;
        let (s2, body) = raw_corp_token(&sim, CORP, &ticket).await;
        if s1 == 200 && s2 == 403 {
            assert_eq!(
                body["code"], "Forbidden.AccessDenied.QpsLimitForSuitekeyAndOrgAndApi",
                "{body}"
            );
            v1_seen = true;
            break;
        }
    }
    assert!(
        v1_seen,
        "the second corp token call in a window is throttled"
    );
    // The client reads both answers as throttling and retries them.
    let corp = corp_client(&sim, suite(Some(&ticket)), CORP);
    for _ in 0..3 {
        assert!(corp.get_user("multi").await.unwrap().is_some());
    }
    assert!(corp.stats().get(Api::UserGet).throttled >= 1);
    assert_eq!(corp.stats().get(Api::UserGet).errors, 0);
}

// ---------------------------------------------------------------- login

/// `POST /_sim/corps/{corp}/authcodes` by hand: the status and the answer.
async fn raw_authcode(sim: &SimHandle, corp: &str, body: Value) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{}/_sim/corps/{corp}/authcodes", sim.url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A login code, issued through the admin API (201).
async fn authcode(sim: &SimHandle, corp: &str, body: Value) -> Secret {
    let (status, answer) = raw_authcode(sim, corp, body).await;
    assert_eq!(status, 201, "{answer}");
    Secret::new(answer["code"].as_str().expect("a code"))
}

/// Puts a member into ACME (an admin, a sub-admin…).
async fn put_member(sim: &SimHandle, userid: &str, fields: Value) {
    let mut body = json!({"name": format!("Name {userid}"), "deptIds": [3]});
    if let (Some(b), Some(f)) = (body.as_object_mut(), fields.as_object()) {
        b.extend(f.clone());
    }
    admin(
        sim,
        reqwest::Method::PUT,
        &format!("/_sim/corps/{CORP}/users/{userid}"),
        Some(body),
    )
    .await;
}

/// Neither `Display` nor `Debug` of `err` shows any of `hidden`.
fn assert_hides(err: &dingbind::dingtalk::Error, hidden: &[&str]) {
    let text = format!("{err} {err:?}");
    for h in hidden {
        assert!(!text.contains(h), "{h} in {text}");
    }
}

#[tokio::test]
async fn an_in_app_code_gives_its_member_and_an_admins_sys_level() {
    let sim = start(unlimited()).await;
    put_member(&sim, "a-main", json!({"admin": true})).await;
    put_member(&sim, "a-sub", json!({"subAdmin": true})).await;
    let app = app(config(&sim, 0));
    let code = authcode(&sim, CORP, json!({"userid": "r1", "flow": "inApp"})).await;
    let user = app.user_by_code(&code).await.unwrap();
    assert_eq!(user.userid, "r1");
    assert_eq!(user.unionid, "un-dingacme-r1");
    assert_eq!(user.name, "Name r1");
    assert_eq!((user.sys, user.sys_level), (false, 0));
    assert_eq!(user.associated_unionid, None);
    for (userid, sys, level) in [
        ("a-main", true, 1),
        ("a-sub", true, 2),
        ("u-boss", false, 100),
    ] {
        let code = authcode(&sim, CORP, json!({"userid": userid, "flow": "inApp"})).await;
        let user = app.user_by_code(&code).await.unwrap();
        assert_eq!(
            (user.userid.as_str(), user.sys, user.sys_level),
            (userid, sys, level)
        );
    }
    // A sub-admin reads as an admin in user/get, as in DingTalk.
    assert!(app.get_user("a-sub").await.unwrap().expect("a-sub").admin);
    let stats = sim_stats(&sim).await;
    assert_eq!(sim_calls(&stats, Api::UserInfoByCode, "calls"), 4);
}

#[tokio::test]
async fn a_used_code_is_code_invalid_and_no_error_shows_a_code_token_or_secret() {
    let sim = start(unlimited()).await;
    let app = app(config(&sim, 0));
    let code = authcode(&sim, CORP, json!({"userid": "r1", "flow": "inApp"})).await;
    app.user_by_code(&code).await.unwrap();
    let err = app.user_by_code(&code).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CodeInvalid, "{err}");
    assert_eq!(err.code(), Some("40078"));
    let token = first_token(&sim).await;
    assert_hides(&err, &[code.expose(), "acme-secret", &token]);
    // The web flow alike: a used code, a wrong secret, a bogus user token.
    let web = authcode(&sim, CORP, json!({"userid": "r2", "flow": "web"})).await;
    let user_token = app.user_access_token(&web).await.unwrap();
    let err = app.user_access_token(&web).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CodeInvalid, "{err}");
    assert_eq!(err.code(), Some("invalidCode"));
    assert_hides(
        &err,
        &[
            web.expose(),
            "acme-secret",
            user_token.access_token.expose(),
        ],
    );
    let wrong = Client::new(config(&sim, 0))
        .unwrap()
        .app(TokenSource::internal_app("acme-key", "wrong-secret-value"));
    let fresh = authcode(&sim, CORP, json!({"userid": "r2", "flow": "web"})).await;
    let err = wrong.user_access_token(&fresh).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidCredentials, "{err}");
    assert_hides(&err, &[fresh.expose(), "wrong-secret-value"]);
    let bogus = Secret::new("planted-user-token-0123456789");
    let err = app.me(&bogus).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TokenInvalid, "{err}");
    assert_hides(&err, &[bogus.expose()]);
    assert!(!format!("{user_token:?}").contains(user_token.access_token.expose()));
    // The refused exchange did not use the code: the right app still can.
    assert!(app.user_access_token(&fresh).await.is_ok());
}

#[tokio::test]
async fn an_expired_code_is_code_invalid() {
    let sim = start(unlimited()).await;
    let app = app(config(&sim, 0));
    let (status, answer) = raw_authcode(&sim, CORP, json!({"userid": "r1", "flow": "inApp"})).await;
    assert_eq!(
        (status, answer["expiresIn"].as_u64()),
        (201, Some(300)),
        "{answer}"
    );
    assert_eq!(answer["clientId"], "acme-key");
    // expiresIn 0: a code that has expired already (the simulator's test hook).
    for flow in ["inApp", "web"] {
        let code = authcode(
            &sim,
            CORP,
            json!({"userid": "r1", "flow": flow, "expiresIn": 0}),
        )
        .await;
        let err = match flow {
            "inApp" => app.user_by_code(&code).await.unwrap_err(),
            _ => app.user_access_token(&code).await.unwrap_err(),
        };
        assert_eq!(err.kind(), ErrorKind::CodeInvalid, "{flow}: {err}");
    }
}

#[tokio::test]
async fn a_code_of_the_other_flow_or_another_app_is_code_invalid() {
    let sim = start(unlimited()).await;
    let acme = app(config(&sim, 0));
    let web = authcode(&sim, CORP, json!({"userid": "r1", "flow": "web"})).await;
    let err = acme.user_by_code(&web).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CodeInvalid, "{err}");
    let in_app = authcode(&sim, CORP, json!({"userid": "r1", "flow": "inApp"})).await;
    let err = acme.user_access_token(&in_app).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CodeInvalid, "{err}");
    // A second app of ACME: its codes are its own.
    admin(
        &sim,
        reqwest::Method::PUT,
        &format!("/_sim/corps/{CORP}/apps/1002"),
        Some(json!({"appKey": "acme-key-2", "appSecret": "acme-secret-2", "visibleScope": {"deptIds": [1]}})),
    )
    .await;
    let (status, body) = raw_authcode(&sim, CORP, json!({"userid": "r1", "flow": "inApp"})).await;
    assert_eq!(status, 400, "two apps, none named: {body}");
    let second = Client::new(config(&sim, 0))
        .unwrap()
        .app(TokenSource::internal_app("acme-key-2", "acme-secret-2"));
    let theirs = authcode(
        &sim,
        CORP,
        json!({"userid": "r1", "flow": "inApp", "appKey": "acme-key-2"}),
    )
    .await;
    let err = acme.user_by_code(&theirs).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CodeInvalid, "{err}");
    let theirs = authcode(
        &sim,
        CORP,
        json!({"userid": "r1", "flow": "inApp", "appKey": "acme-key-2"}),
    )
    .await;
    assert_eq!(second.user_by_code(&theirs).await.unwrap().userid, "r1");
    let theirs = authcode(
        &sim,
        CORP,
        json!({"userid": "r1", "flow": "web", "appKey": "acme-key-2"}),
    )
    .await;
    let err = acme.user_access_token(&theirs).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CodeInvalid, "{err}");
}

#[tokio::test]
async fn a_member_outside_the_visible_scope_is_not_in_scope_but_an_admin_is() {
    let sim = start(unlimited()).await;
    put_member(&sim, "a-main", json!({"admin": true})).await;
    admin(
        &sim,
        reqwest::Method::PUT,
        &format!("/_sim/corps/{CORP}/apps/{AGENT}"),
        Some(json!({"visibleScope": {"deptIds": [5], "userIds": ["e002"]}})),
    )
    .await;
    let app = app(config(&sim, 0));
    let code = |userid: &str| {
        let body = json!({"userid": userid, "flow": "inApp"});
        let sim = &sim;
        async move { authcode(sim, CORP, body).await }
    };
    let err = app.user_by_code(&code("e001").await).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotInScope, "{err}");
    assert_eq!(err.code(), Some("40079"));
    for inside in ["r1", "multi", "e002"] {
        assert_eq!(
            app.user_by_code(&code(inside).await).await.unwrap().userid,
            inside
        );
    }
    // The corp's admins are always in scope (they open the app from the admin console).
    let admin_user = app.user_by_code(&code("a-main").await).await.unwrap();
    assert_eq!(admin_user.sys_level, 1);
}

#[tokio::test]
async fn a_web_code_gives_a_user_token_whose_unionid_maps_to_the_member() {
    let sim = start(unlimited()).await;
    let app = app(config(&sim, 0));
    let code = authcode(&sim, CORP, json!({"userid": "r2", "flow": "web"})).await;
    let token = app.user_access_token(&code).await.unwrap();
    assert_eq!(token.corp_id.as_deref(), Some(CORP));
    assert_eq!(token.expire_in, 7200);
    let me = app.me(&token.access_token).await.unwrap();
    assert_eq!(me.union_id, "un-dingacme-r2");
    assert_eq!(me.nick.as_deref(), Some("Name r2"));
    assert!(me.open_id.is_some());
    assert_eq!(
        app.userid_by_unionid(&me.union_id)
            .await
            .unwrap()
            .as_deref(),
        Some("r2")
    );
    // users/me answers the account's personal email and mobile, not the
    // organization's: the client does not even decode them.
    let raw: Value = reqwest::Client::new()
        .get(format!("{}/v1.0/contact/users/me", sim.url()))
        .header("x-acs-dingtalk-access-token", token.access_token.expose())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(raw["email"], "personal-r2@example.net");
    let mobile = raw["mobile"].as_str().expect("a mobile");
    assert_ne!(mobile, "13800000001", "not the org's");
    assert_eq!(raw["unionId"], me.union_id.as_str());
    // The user token is not an app token, nor the other way round.
    let err = app
        .me(&Secret::new(first_token(&sim).await))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TokenInvalid, "{err}");
    assert_eq!(app.userid_by_unionid("un-nobody").await.unwrap(), None);
    assert_eq!(app.userid_by_unionid("").await.unwrap(), None);
    let stats = sim_stats(&sim).await;
    assert_eq!(sim_calls(&stats, Api::UserAccessToken, "granted"), 1);
    assert_eq!(
        sim_calls(&stats, Api::UserByUnionId, "calls"),
        2,
        "none for an empty unionid"
    );
}

#[tokio::test]
async fn a_person_of_another_corp_has_a_web_login_but_is_no_member() {
    let sim = start(unlimited()).await;
    add_beta(&sim).await;
    let (status, body) = raw_authcode(&sim, CORP, json!({"userid": "b1", "flow": "web"})).await;
    assert_eq!(status, 404, "b1 is no member of ACME: {body}");
    let (status, body) = raw_authcode(
        &sim,
        CORP,
        json!({"userid": "b1", "flow": "inApp", "personOf": "dingbeta"}),
    )
    .await;
    assert_eq!(status, 400, "no in-app code for an outsider: {body}");
    let app = app(config(&sim, 0));
    let code = authcode(
        &sim,
        CORP,
        json!({"userid": "b1", "flow": "web", "personOf": "dingbeta"}),
    )
    .await;
    let token = app.user_access_token(&code).await.unwrap();
    assert_eq!(
        token.corp_id.as_deref(),
        Some("dingbeta"),
        "their own organization"
    );
    let me = app.me(&token.access_token).await.unwrap();
    assert_eq!(me.union_id, "un-dingbeta-b1");
    assert_eq!(app.userid_by_unionid(&me.union_id).await.unwrap(), None);
}

#[tokio::test]
async fn a_marketplace_corp_token_resolves_codes_and_unionids() {
    let sim = start(unlimited()).await;
    let ticket = with_suite(&sim).await;
    let corp = corp_client(&sim, suite(Some(&ticket)), CORP);
    let (status, _) = raw_authcode(&sim, CORP, json!({"userid": "e001", "flow": "inApp"})).await;
    assert_eq!(status, 400, "an app and a suite in ACME: name one");
    let code = |userid: &str, flow: &str| {
        let body = json!({"userid": userid, "flow": flow, "suiteKey": SUITE_KEY});
        let sim = &sim;
        async move { authcode(sim, CORP, body).await }
    };
    // The install's scope: Sales (2, East 3 under it) and r1.
    for inside in ["e001", "r1"] {
        let user = corp
            .user_by_code(&code(inside, "inApp").await)
            .await
            .unwrap();
        assert_eq!(user.userid, inside);
    }
    let err = corp
        .user_by_code(&code("r2", "inApp").await)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotInScope, "{err}");
    // The suite's code is not the internal app's, nor the other way round.
    let err = app(config(&sim, 0))
        .user_by_code(&code("e001", "inApp").await)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CodeInvalid, "{err}");
    let internal = authcode(
        &sim,
        CORP,
        json!({"userid": "e001", "flow": "inApp", "appKey": "acme-key"}),
    )
    .await;
    let err = corp.user_by_code(&internal).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CodeInvalid, "{err}");
    // The web flow with the suite's key and secret.
    let token = corp
        .user_access_token(&code("multi", "web").await)
        .await
        .unwrap();
    let me = corp.me(&token.access_token).await.unwrap();
    assert_eq!(
        corp.userid_by_unionid(&me.union_id)
            .await
            .unwrap()
            .as_deref(),
        Some("multi")
    );
    assert_eq!(
        corp.userid_by_unionid("un-dingbeta-b1").await.unwrap(),
        None
    );
}

#[tokio::test]
async fn a_code_exchange_is_not_resent_after_a_server_error() {
    let sim = start(unlimited()).await;
    let app = app(config(&sim, 0));
    let in_app = authcode(&sim, CORP, json!({"userid": "r1", "flow": "inApp"})).await;
    let web = authcode(&sim, CORP, json!({"userid": "r1", "flow": "web"})).await;
    // Fetch the app token first, so that the failure lands on the exchange.
    assert!(app.get_user("r1").await.unwrap().is_some());
    let faults = |n: u32| {
        let sim = &sim;
        async move {
            admin(
                sim,
                reqwest::Method::PUT,
                "/_sim/faults",
                Some(json!({"failNext": n})),
            )
            .await;
        }
    };
    faults(1).await;
    let err = app.user_by_code(&in_app).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Busy, "{err}");
    faults(1).await;
    let err = app.user_access_token(&web).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Busy, "{err}");
    let stats = sim_stats(&sim).await;
    assert_eq!(
        sim_calls(&stats, Api::UserInfoByCode, "calls"),
        1,
        "sent once"
    );
    assert_eq!(
        sim_calls(&stats, Api::UserAccessToken, "calls"),
        1,
        "sent once"
    );
    // The simulator failed them before looking at the codes: still good.
    assert_eq!(app.user_by_code(&in_app).await.unwrap().userid, "r1");
    assert!(app.user_access_token(&web).await.is_ok());
    // The lookups are retried as any read.
    faults(1).await;
    assert_eq!(
        app.userid_by_unionid("un-dingacme-r1")
            .await
            .unwrap()
            .as_deref(),
        Some("r1")
    );
}
