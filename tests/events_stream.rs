//! Stream mode end to end: dingbind's Stream client (`events::stream`)
//! against the simulator's gateway, both in process on 127.0.0.1:0. No
//! Kubernetes. Waits are bounded and fail with a message; nothing asserts a
//! duration.

use std::future::Future;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dingbind::core::events::Event;
use dingbind::events::{
    StreamApp, StreamConfig, StreamError, StreamEvent, StreamHandle, StreamItem, open, spawn,
};
use dingbind::sim::org_file::{AppSpec, CorpSpec, DeptSpec, ScopeSpec, UserSpec};
use dingbind::sim::{OrgFile, SimHandle, Simulator, World};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;

const CORP: &str = "dingacme";
const KEY: &str = "acme-key";
const SECRET: &str = "acme-secret-value";
/// How long a bounded wait waits before it fails.
const PATIENCE: Duration = Duration::from_secs(15);

fn acme() -> CorpSpec {
    CorpSpec {
        corp_id: CORP.into(),
        name: "ACME".into(),
        apps: vec![AppSpec {
            agent_id: 1001,
            app_key: KEY.into(),
            app_secret: SECRET.into(),
            name: "dingbind".into(),
            enabled: true,
            visible_scope: ScopeSpec {
                dept_ids: vec![1],
                ..ScopeSpec::default()
            },
        }],
        departments: vec![DeptSpec {
            id: 2,
            name: "Sales".into(),
            parent_id: 1,
            order: 0,
        }],
        users: vec![UserSpec {
            userid: "u1".into(),
            name: "Zhang San".into(),
            dept_ids: vec![2],
            active: true,
            ..UserSpec::default()
        }],
        leave_records: Vec::new(),
    }
}

/// A simulator with ACME, redelivering after 300 ms and closing a
/// connection 30 s after its SYSTEM disconnect (long enough that only the
/// client can have closed it in a test).
async fn start() -> SimHandle {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let world = World::from_file(OrgFile {
        corps: vec![acme()],
        ..OrgFile::default()
    })
    .expect("a valid world");
    let sim = Simulator::start(world, "127.0.0.1:0".parse().expect("an address"))
        .await
        .expect("the simulator starts");
    admin(
        &sim,
        reqwest::Method::PUT,
        "/_sim/stream/faults",
        Some(json!({"redeliverAfterMs": 300, "disconnectGraceMs": 30_000, "pingIntervalMs": 0})),
    )
    .await;
    sim
}

async fn admin(sim: &SimHandle, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
    let mut req = reqwest::Client::new().request(method, format!("{}{path}", sim.url()));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("the admin API answers");
    assert!(resp.status().is_success(), "{path}: {}", resp.status());
    resp.json().await.unwrap_or(Value::Null)
}

async fn gateway(sim: &SimHandle) -> Value {
    admin(sim, reqwest::Method::GET, "/_sim/stream", None).await
}

fn count(stats: &Value, pointer: &str) -> u64 {
    stats.pointer(pointer).and_then(Value::as_u64).unwrap_or(0)
}

/// Waits until `check` holds, or fails saying what was awaited.
async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited {PATIENCE:?} for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn config(sim: &SimHandle) -> StreamConfig {
    StreamConfig {
        open_timeout: Duration::from_secs(5),
        ..StreamConfig::with_base_url(&sim.url())
    }
}

fn client(sim: &SimHandle, secret: &str) -> (StreamHandle, mpsc::Receiver<StreamEvent>) {
    client_with(config(sim), secret)
}

fn client_with(config: StreamConfig, secret: &str) -> (StreamHandle, mpsc::Receiver<StreamEvent>) {
    let (tx, rx) = mpsc::channel(64);
    let handle = spawn(config, StreamApp::new(KEY, secret), tx).expect("the client starts");
    (handle, rx)
}

/// The next item the client hands on.
async fn next(rx: &mut mpsc::Receiver<StreamEvent>) -> StreamItem {
    let item = tokio::time::timeout(PATIENCE, rx.recv())
        .await
        .expect("an item within the patience")
        .expect("the client still runs");
    assert_eq!(item.app_key, KEY);
    item.item
}

/// The next event the client hands on (connections are skipped).
async fn next_event(rx: &mut mpsc::Receiver<StreamEvent>) -> Event {
    loop {
        if let StreamItem::Event(e) = next(rx).await {
            return e;
        }
    }
}

/// Events handed on and not read yet.
fn no_more_events(rx: &mut mpsc::Receiver<StreamEvent>) -> bool {
    while let Ok(item) = rx.try_recv() {
        if matches!(item.item, StreamItem::Event(_)) {
            return false;
        }
    }
    true
}

/// The next connection's `needs_full_sync`; `reconnect` must be as given.
async fn connected_as(rx: &mut mpsc::Receiver<StreamEvent>, reconnect: bool) -> bool {
    match next(rx).await {
        StreamItem::Connected {
            needs_full_sync,
            reconnect: r,
        } => {
            assert_eq!(r, reconnect, "reconnect");
            needs_full_sync
        }
        other => panic!("a connection first, got {other:?}"),
    }
}

async fn connected(rx: &mut mpsc::Receiver<StreamEvent>) -> bool {
    connected_as(rx, false).await
}

async fn reconnected(rx: &mut mpsc::Receiver<StreamEvent>) -> bool {
    connected_as(rx, true).await
}

async fn leave(sim: &SimHandle, userid: &str) {
    admin(
        sim,
        reqwest::Method::POST,
        &format!("/_sim/corps/{CORP}/users/{userid}/leave"),
        None,
    )
    .await;
}

async fn put_user(sim: &SimHandle, userid: &str, name: &str) {
    admin(
        sim,
        reqwest::Method::PUT,
        &format!("/_sim/corps/{CORP}/users/{userid}"),
        Some(json!({"name": name, "deptIds": [2]})),
    )
    .await;
}

/// `connections/open` by hand: status and body.
async fn open_raw(sim: &SimHandle, body: Value) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{}{}", sim.url(), open::OPEN_PATH))
        .json(&body)
        .send()
        .await
        .expect("an answer");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn open_body(secret: &str) -> Value {
    json!({
        "clientId": KEY,
        "clientSecret": secret,
        "subscriptions": [{"type": "EVENT", "topic": "*"}],
        "ua": "test",
    })
}

#[tokio::test]
async fn an_event_reaches_the_client_and_is_acked_once() {
    let sim = start().await;
    let (handle, mut rx) = client(&sim, SECRET);
    assert!(
        connected(&mut rx).await,
        "the first connection needs a full sync"
    );
    leave(&sim, "u1").await;
    let event = next_event(&mut rx).await;
    assert_eq!(event.event_type.as_deref(), Some("user_leave_org"));
    assert_eq!(event.corp_id.as_deref(), Some(CORP));
    assert!(event.event_id.is_some() && event.born_at.is_some());
    assert_eq!(event.data["userId"], json!(["u1"]));
    until("the ack", || async {
        let g = gateway(&sim).await;
        count(&g, "/acks") == 1 && g["pending"].as_object().is_some_and(|p| p.is_empty())
    })
    .await;
    // Longer than the redelivery delay: an acked event is not sent again.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let g = gateway(&sim).await;
    assert_eq!(count(&g, "/deliveries"), 1, "{g}");
    assert_eq!(count(&g, "/redeliveries"), 0, "{g}");
    let stats = handle.stats().snapshot();
    assert_eq!(stats.events_received, 1);
    assert_eq!(stats.duplicates_dropped, 0);
    assert!(stats.connected_since.is_some() && stats.last_event_at.is_some());
    assert!(no_more_events(&mut rx));
    handle.stop().await;
    sim.shutdown().await.expect("the simulator stops");
}

#[tokio::test]
async fn every_admin_change_sends_its_event() {
    let sim = start().await;
    let (handle, mut rx) = client(&sim, SECRET);
    connected(&mut rx).await;
    let put = reqwest::Method::PUT;
    let dept = format!("/_sim/corps/{CORP}/departments/3");
    admin(
        &sim,
        put.clone(),
        &dept,
        Some(json!({"name": "East", "parentId": 2})),
    )
    .await;
    admin(
        &sim,
        put.clone(),
        &dept,
        Some(json!({"name": "West", "parentId": 2})),
    )
    .await;
    admin(&sim, reqwest::Method::DELETE, &dept, None).await;
    put_user(&sim, "u2", "Li Si").await;
    put_user(&sim, "u2", "Li Si Jr").await;
    admin(
        &sim,
        reqwest::Method::DELETE,
        &format!("/_sim/corps/{CORP}/users/u2"),
        None,
    )
    .await;
    let app = format!("/_sim/corps/{CORP}/apps/1001");
    admin(
        &sim,
        put.clone(),
        &app,
        Some(json!({"visibleScope": {"deptIds": [2]}})),
    )
    .await;
    admin(&sim, put, &app, Some(json!({"enabled": false}))).await;
    let mut types = Vec::new();
    let mut last = None;
    for _ in 0..8 {
        let e = next_event(&mut rx).await;
        types.push(e.event_type.clone().unwrap_or_default());
        last = Some(e);
    }
    assert_eq!(
        types,
        [
            "org_dept_create",
            "org_dept_modify",
            "org_dept_remove",
            "user_add_org",
            "user_modify_org",
            "user_leave_org",
            "inner_app_scopes_change",
            "inner_app_status_change",
        ]
    );
    let status = last.expect("an event");
    assert_eq!(status.data["status"], "disable");
    handle.stop().await;
}

#[tokio::test]
async fn a_lost_ack_or_a_duplicate_is_redelivered_and_dropped_by_the_client() {
    let sim = start().await;
    let (handle, mut rx) = client(&sim, SECRET);
    connected(&mut rx).await;
    admin(
        &sim,
        reqwest::Method::PUT,
        "/_sim/stream/faults",
        Some(json!({"ignoreAcksNext": 1})),
    )
    .await;
    put_user(&sim, "u1", "Zhang San II").await;
    let first = next_event(&mut rx).await;
    until("the redelivery acked", || async {
        let g = gateway(&sim).await;
        count(&g, "/redeliveries") >= 1 && count(&g, "/acks") == 1
    })
    .await;
    until("the duplicate dropped", || async {
        handle.stats().snapshot().duplicates_dropped == 1
    })
    .await;
    admin(
        &sim,
        reqwest::Method::PUT,
        "/_sim/stream/faults",
        Some(json!({"duplicateNext": 1})),
    )
    .await;
    leave(&sim, "u1").await;
    let second = next_event(&mut rx).await;
    assert_ne!(first.event_id, second.event_id);
    until("both copies acked", || async {
        let g = gateway(&sim).await;
        count(&g, "/acks") == 2 && g["pending"].as_object().is_some_and(|p| p.is_empty())
    })
    .await;
    until("the second duplicate dropped", || async {
        handle.stats().snapshot().duplicates_dropped == 2
    })
    .await;
    assert_eq!(handle.stats().snapshot().events_received, 2);
    assert!(no_more_events(&mut rx), "each event handed on once");
    handle.stop().await;
}

#[tokio::test]
async fn an_unacked_event_is_redelivered_on_the_next_connection() {
    let sim = start().await;
    let (status, answer) = open_raw(&sim, open_body(SECRET)).await;
    assert_eq!(status, 200, "{answer}");
    let url = format!(
        "{}?ticket={}",
        answer["endpoint"].as_str().expect("an endpoint"),
        answer["ticket"].as_str().expect("a ticket")
    );
    let (mut raw, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("the ticket opens a connection");
    leave(&sim, "u1").await;
    let frame = tokio::time::timeout(PATIENCE, raw.next())
        .await
        .expect("a frame")
        .expect("open")
        .expect("readable");
    let frame: Value = serde_json::from_str(frame.to_text().expect("text")).expect("JSON");
    assert_eq!(frame["type"], "EVENT");
    assert_eq!(frame["headers"]["eventType"], "user_leave_org");
    // Gone without an ack.
    raw.close(None).await.expect("closed");
    drop(raw);
    // The same ticket does not open a second connection.
    let again = tokio_tungstenite::connect_async(url.as_str()).await;
    assert!(
        matches!(&again, Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == 401),
        "a used ticket is refused: {again:?}"
    );
    let (handle, mut rx) = client(&sim, SECRET);
    let event = next_event(&mut rx).await;
    assert_eq!(
        event.event_id.as_deref(),
        frame["headers"]["eventId"].as_str()
    );
    until("the ack", || async {
        count(&gateway(&sim).await, "/acks") == 1
    })
    .await;
    let g = gateway(&sim).await;
    assert!(count(&g, "/ticketsRefused") >= 1, "{g}");
    handle.stop().await;
}

#[tokio::test]
async fn a_system_disconnect_opens_the_new_connection_before_dropping_the_old() {
    let sim = start().await;
    let (handle, mut rx) = client(&sim, SECRET);
    connected(&mut rx).await;
    let n = admin(
        &sim,
        reqwest::Method::POST,
        "/_sim/stream/disconnect",
        Some(json!({"appKey": KEY, "systemMessage": true})),
    )
    .await;
    assert_eq!(n["connections"], 1);
    // A change while the connection is being replaced is not lost.
    leave(&sim, "u1").await;
    assert!(!reconnected(&mut rx).await, "no gap: no full sync");
    let event = next_event(&mut rx).await;
    assert_eq!(event.event_type.as_deref(), Some("user_leave_org"));
    // The old connection was closed by the client: the simulator would
    // have waited 30 s.
    until("one connection left", || async {
        let g = gateway(&sim).await;
        count(&g, &format!("/openConnections/{KEY}")) == 1 && count(&g, "/acks") == 1
    })
    .await;
    let g = gateway(&sim).await;
    assert_eq!(count(&g, "/ticketsIssued"), 2, "{g}");
    assert_eq!(count(&g, "/disconnectsSent"), 1, "{g}");
    assert_eq!(
        count(&g, &format!("/peakConnections/{KEY}")),
        2,
        "the new connection opened before the old one closed: {g}"
    );
    let stats = handle.stats().snapshot();
    assert_eq!(
        (stats.tickets, stats.connections, stats.reconnects),
        (2, 2, 1)
    );
    assert_eq!(stats.open_failures, 0);
    handle.stop().await;
}

#[tokio::test]
async fn a_dropped_connection_reconnects_after_the_backoff_with_a_new_ticket() {
    let sim = start().await;
    let (handle, mut rx) = client(&sim, SECRET);
    connected(&mut rx).await;
    admin(
        &sim,
        reqwest::Method::POST,
        "/_sim/stream/disconnect",
        Some(json!({"systemMessage": false})),
    )
    .await;
    assert_eq!(
        next(&mut rx).await,
        StreamItem::Disconnected,
        "the drop is handed on"
    );
    assert!(
        !reconnected(&mut rx).await,
        "a short gap needs no full sync"
    );
    let stats = handle.stats().snapshot();
    assert_eq!((stats.tickets, stats.reconnects), (2, 1));
    assert!(
        stats.last_error.is_some(),
        "the drop is recorded: {stats:?}"
    );
    leave(&sim, "u1").await;
    assert_eq!(
        next_event(&mut rx).await.event_type.as_deref(),
        Some("user_leave_org")
    );
    let g = gateway(&sim).await;
    assert_eq!(count(&g, "/connectionsDropped"), 1, "{g}");
    assert_eq!(count(&g, "/ticketsIssued"), 2, "{g}");
    assert_eq!(count(&g, "/connectionsOpened"), 2, "{g}");
    assert_eq!(count(&g, &format!("/peakConnections/{KEY}")), 1, "{g}");
    handle.stop().await;
}

/// Log lines written by the subscriber of one test.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }
}

// current_thread (the default): every task logs to this thread's subscriber.
#[tokio::test]
async fn a_wrong_secret_is_refused_and_retried_after_the_backoff_without_being_logged() {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let sim = start().await;
    let wrong = "wrong-secret-4711";
    let (status, body) = open_raw(&sim, open_body(wrong)).await;
    assert_eq!(status, 401);
    assert_eq!(body["code"], "authFailed");
    assert_eq!(body["message"], "鉴权失败");
    let refused = open::ticket(
        &reqwest::Client::new(),
        &config(&sim),
        &StreamApp::new(KEY, wrong),
    )
    .await
    .expect_err("refused");
    assert!(refused.is_auth_failure(), "{refused}");
    assert!(
        matches!(&refused, StreamError::OpenRefused { status: 401, code, .. } if code == "authFailed")
    );
    assert!(!format!("{refused} {refused:?}").contains(wrong));

    let (handle, mut rx) = client(&sim, wrong);
    until("a retry after the backoff", || async {
        handle.stats().snapshot().open_failures >= 2
    })
    .await;
    let stats = handle.stats().snapshot();
    assert_eq!((stats.tickets, stats.connections), (0, 0));
    let last = stats.last_error.expect("the refusal recorded");
    assert!(last.contains("authFailed"), "{last}");
    assert!(!last.contains(wrong), "{last}");
    assert_eq!(
        rx.try_recv().map(|e| e.item),
        Ok(StreamItem::Disconnected),
        "the first failure is handed on"
    );
    assert!(rx.try_recv().is_err(), "once: the retries are not");
    handle.stop().await;
    let g = gateway(&sim).await;
    assert!(count(&g, "/opensRefused") >= 3, "{g}");
    let text = logs.text();
    assert!(text.contains("authFailed"), "the refusal is logged: {text}");
    assert!(!text.contains(wrong), "the secret is not: {text}");
}

#[tokio::test]
async fn connections_open_checks_the_subscriptions_and_pings_are_answered() {
    let sim = start().await;
    let mut body = open_body(SECRET);
    body["subscriptions"] = json!([{"type": "EVENT", "topic": "user_add_org"}]);
    let (status, answer) = open_raw(&sim, body.clone()).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (400, Some("invalidParameter"))
    );
    body["subscriptions"] = json!([]);
    assert_eq!(open_raw(&sim, body).await.0, 400);
    admin(
        &sim,
        reqwest::Method::PUT,
        "/_sim/stream/faults",
        Some(json!({"pingIntervalMs": 100})),
    )
    .await;
    let (handle, mut rx) = client_with(
        StreamConfig {
            idle_ping: Duration::from_millis(50),
            ..config(&sim)
        },
        SECRET,
    );
    connected(&mut rx).await;
    until("SYSTEM pings echoed and WebSocket pings sent", || async {
        let g = gateway(&sim).await;
        count(&g, "/pongs") >= 2 && count(&g, "/wsPings") >= 1
    })
    .await;
    assert_eq!(handle.stats().snapshot().reconnects, 0);
    handle.stop().await;
}

// ---------------------------------------------------------------- marketplace apps (suites)

const SUITE_KEY: &str = "mkt-suite";
const SUITE_SECRET: &str = "mkt-suite-secret-value";

/// Creates the suite (a ticket only on connect, unless `period_secs`).
async fn add_suite(sim: &SimHandle, period_secs: u64) {
    admin(
        sim,
        reqwest::Method::POST,
        "/_sim/suites",
        Some(json!({"suiteKey": SUITE_KEY, "suiteSecret": SUITE_SECRET, "ticketPeriodSecs": period_secs})),
    )
    .await;
}

/// The suite's Stream client.
fn suite_client(sim: &SimHandle) -> (StreamHandle, mpsc::Receiver<StreamEvent>) {
    let (tx, rx) = mpsc::channel(64);
    let handle =
        spawn(config(sim), StreamApp::new(SUITE_KEY, SUITE_SECRET), tx).expect("the client starts");
    (handle, rx)
}

/// The suite's next event (connections skipped).
async fn next_suite_event(rx: &mut mpsc::Receiver<StreamEvent>) -> Event {
    loop {
        let item = tokio::time::timeout(PATIENCE, rx.recv())
            .await
            .expect("an item within the patience")
            .expect("the client still runs");
        assert_eq!(item.app_key, SUITE_KEY);
        if let StreamItem::Event(e) = item.item {
            return e;
        }
    }
}

async fn current_ticket(sim: &SimHandle) -> Value {
    admin(
        sim,
        reqwest::Method::GET,
        &format!("/_sim/suites/{SUITE_KEY}"),
        None,
    )
    .await["suiteTicket"]
        .clone()
}

#[tokio::test]
async fn a_suite_connection_gets_its_ticket_then_its_installs_events_in_the_marketplace_forms() {
    let sim = start().await;
    add_suite(&sim, 0).await;
    let mut wrong = open_body("wrong");
    wrong["clientId"] = json!(SUITE_KEY);
    assert_eq!(open_raw(&sim, wrong).await.0, 401, "a wrong suite secret");
    let (suite, mut srx) = suite_client(&sim);
    let (app, mut arx) = client(&sim, SECRET);
    connected(&mut arx).await;

    let ticket = next_suite_event(&mut srx).await;
    assert_eq!(ticket.event_type.as_deref(), Some("suite_ticket"));
    assert_eq!(
        ticket.corp_id, None,
        "eventCorpId is empty: the suite's own"
    );
    assert!(ticket.unified_app_id.is_some());
    let issued = current_ticket(&sim).await;
    assert!(issued.is_string(), "issued on connect");
    assert_eq!(ticket.data["suiteTicket"], issued);

    admin(
        &sim,
        reqwest::Method::PUT,
        &format!("/_sim/corps/{CORP}/suites/{SUITE_KEY}"),
        Some(json!({"agentId": 5001})),
    )
    .await;
    let auth = next_suite_event(&mut srx).await;
    assert_eq!(auth.event_type.as_deref(), Some("org_suite_auth"));
    assert_eq!(auth.corp_id.as_deref(), Some(CORP));
    assert_eq!(auth.data["authCorpInfo"]["corpid"], CORP);
    assert_eq!(auth.data["authInfo"]["agent"][0]["agentid"], 5001);
    assert_eq!(
        auth.data["authScope"]["authOrgScopes"]["authedDept"],
        json!([1])
    );

    put_user(&sim, "u2", "Li Si").await;
    let added = next_suite_event(&mut srx).await;
    assert_eq!(added.event_type.as_deref(), Some("user_add_org"));
    assert_eq!(added.data["userid"], "u2");
    assert_eq!(added.data["department"], json!([2]));
    assert_eq!(added.data["active"], true);
    assert!(added.data["unionid"].is_string() && added.data["dingId"].is_string());

    leave(&sim, "u1").await;
    let left = next_suite_event(&mut srx).await;
    assert_eq!(left.event_type.as_deref(), Some("user_leave_org"));
    let mut keys: Vec<&String> = left.data.as_object().expect("an object").keys().collect();
    keys.sort();
    assert_eq!(keys, ["dingId", "unionid"], "no userid: {}", left.data);

    // The internal app's forms are unchanged.
    let internal: Vec<Event> = vec![next_event(&mut arx).await, next_event(&mut arx).await];
    assert_eq!(internal[0].data["userId"], json!(["u2"]));
    assert_eq!(internal[1].event_type.as_deref(), Some("user_leave_org"));
    assert_eq!(internal[1].data["userId"], json!(["u1"]));

    admin(
        &sim,
        reqwest::Method::PUT,
        &format!("/_sim/corps/{CORP}/departments/3"),
        Some(json!({"name": "East", "parentId": 2})),
    )
    .await;
    let dept = next_suite_event(&mut srx).await;
    assert_eq!(dept.event_type.as_deref(), Some("org_dept_create"));
    assert_eq!(
        (
            &dept.data["id"],
            &dept.data["parentid"],
            &dept.data["deptId"]
        ),
        (&json!(3), &json!(2), &json!([3]))
    );

    let post = reqwest::Method::POST;
    let base = format!("/_sim/corps/{CORP}/suites/{SUITE_KEY}");
    admin(&sim, post.clone(), &format!("{base}/stop"), None).await;
    admin(&sim, post.clone(), &format!("{base}/restore"), None).await;
    admin(
        &sim,
        reqwest::Method::PUT,
        &format!("{base}/scope"),
        Some(json!({"deptIds": [2], "userIds": []})),
    )
    .await;
    admin(&sim, post.clone(), &format!("{base}/remove"), None).await;
    admin(&sim, reqwest::Method::PUT, &base, None).await;
    admin(&sim, reqwest::Method::DELETE, &base, None).await;
    let new = admin(
        &sim,
        post,
        &format!("/_sim/suites/{SUITE_KEY}/ticket"),
        None,
    )
    .await;
    let mut seen = Vec::new();
    for _ in 0..7 {
        let e = next_suite_event(&mut srx).await;
        seen.push((e.event_type.clone().unwrap_or_default(), e.data));
    }
    let types: Vec<&str> = seen.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        types,
        [
            "org_micro_app_stop",
            "org_micro_app_restore",
            "org_micro_app_scope_update",
            "org_micro_app_remove",
            "org_suite_change",
            "org_suite_relieve",
            "suite_ticket",
        ]
    );
    assert_eq!(seen[0].1, json!({"agentId": 5001}));
    assert_eq!(seen[5].1, json!({}));
    assert_eq!(seen[6].1["suiteTicket"], new["suiteTicket"]);
    assert_ne!(new["suiteTicket"], issued, "a new ticket");

    // Uninstalled: the suite hears no more of ACME's changes.
    leave(&sim, "u2").await;
    loop {
        // The internal app also heard the department's creation first.
        let e = next_event(&mut arx).await;
        if e.data["userId"] == json!(["u2"]) {
            assert_eq!(e.event_type.as_deref(), Some("user_leave_org"));
            break;
        }
    }
    until("every event acked", || async {
        gateway(&sim).await["pending"]
            .as_object()
            .is_some_and(|p| p.is_empty())
    })
    .await;
    assert!(no_suite_events(&mut srx));
    suite.stop().await;
    app.stop().await;
}

/// The suite's events handed on and not read yet.
fn no_suite_events(rx: &mut mpsc::Receiver<StreamEvent>) -> bool {
    while let Ok(item) = rx.try_recv() {
        if matches!(item.item, StreamItem::Event(_)) {
            return false;
        }
    }
    true
}

#[tokio::test]
async fn a_suite_gets_a_new_ticket_every_period_and_the_current_one_on_reconnect() {
    let sim = start().await;
    add_suite(&sim, 1).await;
    let (suite, mut rx) = suite_client(&sim);
    let first = next_suite_event(&mut rx).await;
    let second = next_suite_event(&mut rx).await;
    assert_eq!(second.event_type.as_deref(), Some("suite_ticket"));
    assert_ne!(first.data["suiteTicket"], second.data["suiteTicket"]);
    suite.stop().await;
    // A new connection hears the current ticket at once.
    let (suite, mut rx) = suite_client(&sim);
    let on_connect = next_suite_event(&mut rx).await;
    let current = current_ticket(&sim).await;
    assert!(
        on_connect.data["suiteTicket"] == current
            || next_suite_event(&mut rx).await.data["suiteTicket"] == current_ticket(&sim).await,
        "the current ticket (or the next period's)"
    );
    let g = gateway(&sim).await;
    assert!(
        count(&g, &format!("/peakConnections/{SUITE_KEY}")) >= 1,
        "{g}"
    );
    suite.stop().await;
}
