//! DingTalk's Stream gateway on the simulator's server:
//! `POST /v1.0/gateway/connections/open` (the app's credentials, the
//! subscriptions) answers an endpoint and a single-use ticket; the
//! WebSocket at `/connect?ticket=` carries the frames of `frames.rs`; a
//! ticker delivers what is due (redeliveries, SYSTEM pings, closes, a
//! suite's periodic tickets). The state and its rules are `hub.rs`; the
//! events each admin change produces are `changes.rs`.
//!
//! A marketplace app (suite) connects with its suiteKey and suiteSecret as
//! `clientId`/`clientSecret`. Each new connection of a suite is sent a
//! `suite_ticket` event (the current ticket, a new one if none was issued),
//! and every `ticketPeriodSecs` a new ticket goes to the suite; its
//! `eventCorpId` is empty (the ticket is the suite's, not an enterprise's).

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::ws::{
    Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection,
};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use super::changes::{Audience, Change, unified_app_id};
use super::hub::{ConnId, NewEvent, Outbound};
use super::{Inner, Shared};

/// The path of `connections/open`, as on `api.dingtalk.com`.
pub const OPEN_PATH: &str = "/v1.0/gateway/connections/open";

/// The WebSocket path the simulator's endpoint names (DingTalk's is
/// `wss://wss-open-connection.dingtalk.com:443/connect`).
pub const CONNECT_PATH: &str = "/connect";

/// How often the ticker looks for due work.
const TICK: Duration = Duration::from_millis(50);

/// The largest frame a client may send (an ack is a few hundred bytes).
const MAX_CLIENT_FRAME: usize = 64 << 10;

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route(OPEN_PATH, post(open))
        .route(CONNECT_PATH, get(connect))
}

/// A v1.0-style error body.
fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({ "code": code, "message": message }))).into_response()
}

/// Whether `subscriptions` holds `{type: EVENT, topic: "*"}`; an EVENT
/// subscription of another topic is refused (DingTalk accepts only `*`).
fn subscriptions_ok(subscriptions: Option<&Value>) -> Result<(), &'static str> {
    let list = subscriptions
        .and_then(Value::as_array)
        .ok_or("subscriptions must be a list")?;
    let mut every_event = false;
    for s in list {
        let kind = s.get("type").and_then(Value::as_str).unwrap_or_default();
        let topic = s.get("topic").and_then(Value::as_str).unwrap_or_default();
        if kind.eq_ignore_ascii_case("EVENT") {
            if topic != "*" {
                return Err("an EVENT subscription's topic must be * (仅支持星号)");
            }
            every_event = true;
        }
    }
    if every_event {
        Ok(())
    } else {
        Err("subscriptions must include {\"type\":\"EVENT\",\"topic\":\"*\"}")
    }
}

/// `POST /v1.0/gateway/connections/open`.
async fn open(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let mut inner = s.lock();
    if inner.stream.take_open_refusal() {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "systemBusy", "系统繁忙");
    }
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let text = |k: &str| req.get(k).and_then(Value::as_str).filter(|v| !v.is_empty());
    let (Some(client_id), Some(client_secret)) = (text("clientId"), text("clientSecret")) else {
        inner.stream.open_refused();
        return error(
            StatusCode::BAD_REQUEST,
            "invalidParameter",
            "clientId and clientSecret are required",
        );
    };
    let known = inner.world.corps.values().any(|c| {
        c.apps
            .values()
            .any(|a| a.app_key == client_id && a.app_secret == client_secret)
    }) || inner
        .world
        .suites
        .check_secret(client_id, client_secret)
        .is_ok();
    if !known {
        inner.stream.open_refused();
        return error(StatusCode::UNAUTHORIZED, "authFailed", "鉴权失败");
    }
    if let Err(why) = subscriptions_ok(req.get("subscriptions")) {
        inner.stream.open_refused();
        return error(StatusCode::BAD_REQUEST, "invalidParameter", why);
    }
    let ticket = uuid_like(&mut inner.rng);
    let client_id = client_id.to_owned();
    inner
        .stream
        .issue_ticket(ticket.clone(), &client_id, Instant::now());
    drop(inner);
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map_or_else(|| s.addr.to_string(), str::to_owned);
    Json(json!({
        "endpoint": format!("ws://{host}{CONNECT_PATH}"),
        "ticket": ticket,
    }))
    .into_response()
}

/// A ticket shaped like DingTalk's (a UUID).
fn uuid_like(rng: &mut fastrand::Rng) -> String {
    let hex = |rng: &mut fastrand::Rng, n: usize| -> String {
        (0..n)
            .map(|_| char::from_digit(rng.u32(..16), 16).unwrap_or('0'))
            .collect()
    };
    format!(
        "{}-{}-{}-{}-{}",
        hex(rng, 8),
        hex(rng, 4),
        hex(rng, 4),
        hex(rng, 4),
        hex(rng, 12)
    )
}

#[derive(Deserialize)]
struct ConnectQuery {
    #[serde(default)]
    ticket: String,
}

/// `GET /connect?ticket=`: a WebSocket for the ticket's app. A ticket is
/// used up by its first upgrade attempt; an unknown, used or expired one is
/// answered 401 before the upgrade.
async fn connect(
    State(s): State<Arc<Shared>>,
    Query(q): Query<ConnectQuery>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => return rejection.into_response(),
    };
    let app_key = match s.lock().stream.take_ticket(&q.ticket, Instant::now()) {
        Ok(app_key) => app_key,
        Err(e) => return error(StatusCode::UNAUTHORIZED, "invalidTicket", &e.to_string()),
    };
    ws.max_message_size(MAX_CLIENT_FRAME)
        .on_upgrade(move |socket| serve(socket, s, app_key))
}

/// One connection: frames from the hub out, answers in, until either side
/// ends it.
async fn serve(mut socket: WebSocket, s: Arc<Shared>, app_key: String) {
    let (tx, rx) = unbounded_channel();
    let conn = {
        let mut guard = s.lock();
        let inner = &mut *guard;
        let now = Instant::now();
        let conn = inner.stream.connect(&app_key, tx, &mut inner.rng, now);
        if inner.world.suites.contains(&app_key) {
            let Inner { world, rng, .. } = &mut *inner;
            if let Ok(ticket) = world
                .suites
                .ticket_for_connect(&app_key, now, || super::hub::random_id(rng, 32))
            {
                publish_ticket(inner, &app_key, &ticket, Some(conn));
            }
        }
        conn
    };
    run(&mut socket, &s, conn, rx).await;
    let mut guard = s.lock();
    let Inner { stream, rng, .. } = &mut *guard;
    stream.disconnected(conn, rng, Instant::now());
}

async fn run(
    socket: &mut WebSocket,
    s: &Shared,
    conn: ConnId,
    mut rx: UnboundedReceiver<Outbound>,
) {
    loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(Outbound::Text(text)) => {
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                }
                Some(Outbound::Close) => {
                    let _ = socket.send(Message::Close(None)).await;
                    return;
                }
                Some(Outbound::Drop) | None => return,
            },
            msg = socket.recv() => match msg {
                Some(Ok(Message::Text(text))) => s.lock().stream.answer(conn, text.as_str()),
                Some(Ok(Message::Ping(_))) => s.lock().stream.ws_ping(),
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

/// Delivers what is due until the simulator is gone.
pub(crate) async fn ticker(shared: Weak<Shared>) {
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(s) = shared.upgrade() else {
            return;
        };
        let mut guard = s.lock();
        let inner = &mut *guard;
        let now = Instant::now();
        for suite_key in inner.world.suites.due_tickets(now) {
            let Inner { world, rng, .. } = &mut *inner;
            if let Ok(ticket) = world
                .suites
                .issue_ticket(&suite_key, now, || super::hub::random_id(rng, 32))
            {
                publish_ticket(inner, &suite_key, &ticket, None);
            }
        }
        let Inner { stream, rng, .. } = inner;
        stream.tick(rng, now);
    }
}

/// Sends `ticket` to suite `suite_key` as a `suite_ticket` event (on
/// connection `prefer` first, when given); the suite's older tickets still
/// waiting for an ack are withdrawn: only the newest is worth having.
pub(crate) fn publish_ticket(
    inner: &mut Inner,
    suite_key: &str,
    ticket: &str,
    prefer: Option<ConnId>,
) {
    let Ok(suite) = inner.world.suites.get(suite_key) else {
        return;
    };
    let event = NewEvent {
        app_key: suite_key.to_owned(),
        corp_id: String::new(),
        unified_app_id: suite.unified_app_id(),
        event_type: SUITE_TICKET.to_owned(),
        data: super::changes::suite_ticket(ticket),
        born_ms: jiff::Timestamp::now().as_millisecond(),
    };
    let Inner { stream, rng, .. } = inner;
    stream.withdraw(suite_key, SUITE_TICKET);
    stream.push_to(event, prefer, rng, Instant::now());
}

/// The event type of a suite ticket.
pub const SUITE_TICKET: &str = "suite_ticket";

/// Pushes the events of `changes` in organization `corp_id` to the apps
/// they are for.
pub(crate) fn publish(inner: &mut Inner, corp_id: &str, changes: Vec<Change>) {
    let Ok(corp) = inner.world.corp(corp_id) else {
        return;
    };
    let born_ms = jiff::Timestamp::now().as_millisecond();
    let mut events = Vec::new();
    for change in changes {
        let event = |app_key: &str, unified_app_id: String| NewEvent {
            app_key: app_key.to_owned(),
            corp_id: corp_id.to_owned(),
            unified_app_id,
            event_type: change.event_type.to_owned(),
            data: change.data.clone(),
            born_ms,
        };
        match &change.audience {
            Audience::Corp | Audience::App(_) => {
                for app in corp.apps.values() {
                    if matches!(change.audience, Audience::App(agent) if agent != app.agent_id) {
                        continue;
                    }
                    events.push(event(&app.app_key, unified_app_id(corp_id, app.agent_id)));
                }
            }
            Audience::Suites => {
                for (suite, _) in inner.world.suites.installed_in(corp_id) {
                    events.push(event(&suite.suite_key, suite.unified_app_id()));
                }
            }
            Audience::Suite(key) => {
                if let Ok(suite) = inner.world.suites.get(key) {
                    events.push(event(&suite.suite_key, suite.unified_app_id()));
                }
            }
        }
    }
    let Inner {
        stream, rng, push, ..
    } = inner;
    let now = Instant::now();
    for event in events {
        if push.takes(&event.app_key) {
            push.push(
                &event.app_key,
                &event.event_type,
                &event.corp_id,
                &event.data,
                event.born_ms,
            );
        } else {
            stream.push(event, rng, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_must_include_every_event() {
        assert!(subscriptions_ok(Some(&json!([{"type": "EVENT", "topic": "*"}]))).is_ok());
        assert!(
            subscriptions_ok(Some(&json!([
                {"type": "CALLBACK", "topic": "/v1.0/im/bot/messages/get"},
                {"type": "event", "topic": "*"}
            ])))
            .is_ok()
        );
        assert!(
            subscriptions_ok(Some(&json!([{"type": "EVENT", "topic": "user_add_org"}]))).is_err()
        );
        assert!(subscriptions_ok(Some(&json!([]))).is_err());
        assert!(subscriptions_ok(None).is_err());
    }

    #[test]
    fn tickets_look_like_uuids() {
        let t = uuid_like(&mut fastrand::Rng::with_seed(1));
        assert_eq!(t.len(), 36);
        assert_eq!(t.matches('-').count(), 4);
    }
}
