//! The operator's HTTP port: `/healthz`, `/readyz` and Prometheus `/metrics`.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio::time::Instant;

use axum::{
    Router,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use prometheus_client::registry::Registry;

/// How long the Tenant watch may fail before `/readyz` turns false.
pub const WATCH_FAILURE_GRACE: Duration = Duration::from_secs(60);

/// Shared state of the HTTP endpoints.
#[derive(Clone)]
pub struct Health {
    ready: Arc<AtomicBool>,
    registry: Arc<Registry>,
    watch: WatchHealth,
    watch_grace: Duration,
    metrics_auth: Option<Arc<crate::controller::access_review::AccessReview>>,
}

impl Health {
    pub fn new(registry: Registry) -> Self {
        Self {
            ready: Arc::new(AtomicBool::new(false)),
            registry: Arc::new(registry),
            watch: WatchHealth::default(),
            watch_grace: WATCH_FAILURE_GRACE,
            metrics_auth: None,
        }
    }

    /// The same, `/metrics` answering only tokens `auth` accepts.
    pub fn with_metrics_auth(
        mut self,
        auth: crate::controller::access_review::AccessReview,
    ) -> Self {
        self.metrics_auth = Some(Arc::new(auth));
        self
    }

    /// The same, turning unready after the Tenant watch failed for `grace`.
    pub fn with_watch_grace(mut self, grace: Duration) -> Self {
        self.watch_grace = grace;
        self
    }

    /// Marks the operator ready (its caches are synced) or not.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Where the Tenant watch reports whether it works.
    pub fn watch(&self) -> &WatchHealth {
        &self.watch
    }

    /// Ready, and the Tenant watch has not been failing for longer than the grace.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
            && self
                .watch
                .failing_for()
                .is_none_or(|d| d <= self.watch_grace)
    }
}

/// Whether the Tenant watches work: since when each has been failing, if it is.
/// [`WatchHealth::named`] gives one watch (a namespace) its own handle.
#[derive(Clone, Debug, Default)]
pub struct WatchHealth {
    failing: Arc<Mutex<std::collections::BTreeMap<String, Instant>>>,
    name: String,
}

impl WatchHealth {
    /// The handle of the watch `name`, sharing the state.
    pub fn named(&self, name: &str) -> WatchHealth {
        WatchHealth {
            failing: self.failing.clone(),
            name: name.to_string(),
        }
    }

    /// The watch delivered an event: it works.
    pub fn ok(&self) {
        self.failing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.name);
    }

    /// The watch failed; the first failure in a row starts the clock.
    pub fn failed(&self) {
        self.failing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(self.name.clone())
            .or_insert_with(Instant::now);
    }

    /// How long the longest-failing watch has been failing, if one is.
    pub fn failing_for(&self) -> Option<Duration> {
        self.failing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|since| since.elapsed())
            .max()
    }
}

pub fn router(health: Health) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(health)
}

async fn readyz(State(h): State<Health>) -> impl IntoResponse {
    if h.is_ready() {
        (StatusCode::OK, "ok")
    } else if h.ready.load(Ordering::Relaxed) {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the Tenant watch is failing",
        )
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

async fn metrics(State(h): State<Health>, headers: HeaderMap) -> Response {
    use crate::controller::access_review::{Ask, Decision};
    if let Some(auth) = &h.metrics_auth {
        let authorization = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        match auth.check(authorization, &Ask::Metrics).await {
            Ok(Decision::Allowed) => {}
            Ok(Decision::Unauthenticated) => {
                return (StatusCode::UNAUTHORIZED, "a valid bearer token is required")
                    .into_response();
            }
            Ok(Decision::Forbidden) => {
                return (StatusCode::FORBIDDEN, "the token may not get /metrics").into_response();
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot check a /metrics token with the API server");
                return (StatusCode::SERVICE_UNAVAILABLE, "cannot check the token").into_response();
            }
        }
    }
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &h.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain")],
            e.to_string(),
        ),
    }
    .into_response()
}

/// Serves the endpoints on `addr` until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    health: Health,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "serving /healthz, /readyz and /metrics");
    axum::serve(listener, router(health))
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get_status(app: Router, path: &str) -> (StatusCode, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await
            .unwrap();
        let mut resp = String::new();
        stream.read_to_string(&mut resp).await.unwrap();
        let code: u16 = resp[9..12].parse().unwrap();
        (StatusCode::from_u16(code).unwrap(), resp)
    }

    #[tokio::test]
    async fn readyz_follows_readiness_and_metrics_are_exposed() {
        let mut registry = Registry::default();
        let metrics = crate::controller::metrics::Metrics::register(&mut registry);
        metrics.reconciles.inc();
        let health = Health::new(registry);
        assert_eq!(
            get_status(router(health.clone()), "/healthz").await.0,
            StatusCode::OK
        );
        assert_eq!(
            get_status(router(health.clone()), "/readyz").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        health.set_ready(true);
        assert_eq!(
            get_status(router(health.clone()), "/readyz").await.0,
            StatusCode::OK
        );
        let (code, body) = get_status(router(health), "/metrics").await;
        assert_eq!(code, StatusCode::OK);
        assert!(body.contains("dingbind_reconciles_total 1"), "{body}");
    }

    #[tokio::test(start_paused = true)]
    async fn readyz_turns_false_once_the_tenant_watch_failed_for_longer_than_the_grace() {
        let health = Health::new(Registry::default());
        health.set_ready(true);
        health.watch().failed();
        tokio::time::advance(WATCH_FAILURE_GRACE).await;
        health.watch().failed();
        assert!(
            health.is_ready(),
            "failing for exactly the grace: still ready"
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(!health.is_ready(), "failing for longer than the grace");
        let (code, body) = get_status(router(health.clone()), "/readyz").await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("Tenant watch is failing"), "{body}");
        health.watch().ok();
        assert!(
            health.is_ready(),
            "an event from the watch makes it ready again"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn each_namespace_watch_counts_on_its_own() {
        let health = Health::new(Registry::default());
        health.set_ready(true);
        let (a, b) = (health.watch().named("a"), health.watch().named("b"));
        a.failed();
        tokio::time::advance(WATCH_FAILURE_GRACE + Duration::from_secs(1)).await;
        b.ok();
        assert!(
            !health.is_ready(),
            "another watch working does not hide a failing one"
        );
        a.ok();
        assert!(health.is_ready());
    }
}
