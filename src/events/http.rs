//! The HTTP push receiver (`--events-addr`): DingTalk posts each event of a
//! tenant in `events.mode: HTTP` to `POST /dingtalk/events/{namespace}/{name}`
//! with `msg_signature` (or `signature`), `timestamp` (or `timeStamp`) and
//! `nonce` in the query and `{"encrypt": …}` as the body. The hub checks,
//! opens and marks it (`EventsHub::receive_push`); the answer is the
//! encrypted `success` at once, and the reconciliation runs after it.

use std::{collections::HashMap, net::SocketAddr, sync::Arc};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::post,
};
use serde_json::{Value, json};

use super::hub::{EventsHub, PushRefusal};
use crate::api::TenantKey;

/// The path a tenant's pushes go to, under the receiver's address.
pub fn push_path(key: &TenantKey) -> String {
    format!("/dingtalk/events/{}/{}", key.namespace, key.name)
}

/// The largest push body taken (an event is a few kilobytes).
const MAX_BODY: usize = 256 * 1024;

/// The receiver's routes.
pub fn router(hub: Arc<EventsHub>) -> Router {
    Router::new()
        .route("/dingtalk/events/{namespace}/{name}", post(receive))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(hub)
}

/// Listens on `addr` and serves pushes until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    hub: Arc<EventsHub>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    serve_on(listener, hub, shutdown).await
}

/// [`serve`] on a bound listener.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    hub: Arc<EventsHub>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    tracing::info!(addr = %listener.local_addr()?, "receiving DingTalk's HTTP pushes");
    hub.enable_http();
    axum::serve(listener, router(hub))
        .with_graceful_shutdown(shutdown)
        .await
}

/// The first of `names` present in the query.
fn param<'a>(query: &'a HashMap<String, String>, names: &[&str]) -> Option<&'a str> {
    names.iter().find_map(|n| query.get(*n)).map(String::as_str)
}

fn refuse(status: StatusCode, message: String) -> Response {
    (status, Json(json!({"error": message}))).into_response()
}

async fn receive(
    State(hub): State<Arc<EventsHub>>,
    Path((namespace, name)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let key = TenantKey { namespace, name };
    let (Some(signature), Some(timestamp), Some(nonce)) = (
        param(&query, &["msg_signature", "signature"]),
        param(&query, &["timestamp", "timeStamp"]),
        param(&query, &["nonce"]),
    ) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "a push carries msg_signature, timestamp and nonce in its query".into(),
        );
    };
    let encrypt = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("encrypt").and_then(Value::as_str).map(str::to_owned));
    let Some(encrypt) = encrypt else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "a push's body is {\"encrypt\": \"…\"}".into(),
        );
    };
    match hub.receive_push(&key, signature, timestamp, nonce, &encrypt) {
        Ok(reply) => Json(reply).into_response(),
        Err(refusal) => {
            let status = match &refusal {
                PushRefusal::NotLeading | PushRefusal::Unavailable(_) => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                PushRefusal::UnknownTenant => StatusCode::NOT_FOUND,
                PushRefusal::Crypto(
                    crate::dingtalk::callback_crypto::CryptoError::BadSignature,
                ) => StatusCode::FORBIDDEN,
                PushRefusal::Crypto(_) | PushRefusal::Unreadable(_) => StatusCode::BAD_REQUEST,
            };
            tracing::warn!(tenant = %key, %status, error = %refusal, "an HTTP push was refused");
            refuse(status, refusal.to_string())
        }
    }
}
