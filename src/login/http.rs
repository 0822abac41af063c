//! The login API over HTTP (docs/login.md): JSON in, the decision out.
//!
//! - `POST /v1/namespaces/{ns}/tenants/{name}/logins/dingtalk` `{code, flow}`
//! - `POST /v1/namespaces/{ns}/tenants/{name}/logins/member` `{userid}` or `{unionid}`
//! - `POST /v1/namespaces/{ns}/tenants/{name}/logins/creator` `{account, password}`
//!
//! Every call carries `Authorization: Bearer <token>`; [`Authorize`] says
//! whether that caller may resolve logins for the tenant's namespace (in a
//! cluster: TokenReview, then SubjectAccessReview for `create` on
//! `tenants/login`; in `dev`: the token it wrote to a file). A refusal is an answer
//! (200, `allowed: false`); HTTP errors are for the caller and the request.
//! Codes, passwords and tokens are never logged.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{Path, State, rejection::JsonRejection},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;

use super::service::{Error, Logins};
use crate::{api::TenantKey, core::login::Flow, dingtalk::Secret};

/// What the caller's credentials allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Allowed,
    /// No token, or one that is not valid: 401.
    Unauthenticated,
    /// A valid token that may not resolve logins there: 403.
    Forbidden,
}

/// Whether a caller may resolve logins for the tenants of a namespace.
pub trait Authorize: Send + Sync {
    /// `authorization`: the request's `Authorization` header.
    fn access<'a>(
        &'a self,
        authorization: Option<&'a str>,
        namespace: &'a str,
    ) -> BoxFuture<'a, Result<Access, String>>;
}

/// One static bearer token (`dingbind dev`, which writes it to a file),
/// compared in constant time.
pub struct StaticToken(pub Secret);

impl Authorize for StaticToken {
    fn access<'a>(
        &'a self,
        authorization: Option<&'a str>,
        _namespace: &'a str,
    ) -> BoxFuture<'a, Result<Access, String>> {
        let given = authorization.and_then(bearer).unwrap_or_default();
        let ok = bool::from(given.as_bytes().ct_eq(self.0.expose().as_bytes()));
        Box::pin(async move {
            Ok(if ok {
                Access::Allowed
            } else {
                Access::Unauthenticated
            })
        })
    }
}

/// The token of an `Authorization: Bearer …` header.
pub fn bearer(header: &str) -> Option<&str> {
    header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

struct Shared {
    logins: Arc<Logins>,
    authorize: Arc<dyn Authorize>,
}

/// The routes of the login API.
pub fn router(logins: Arc<Logins>, authorize: Arc<dyn Authorize>) -> Router {
    Router::new()
        .route(
            "/v1/namespaces/{ns}/tenants/{name}/logins/dingtalk",
            post(dingtalk),
        )
        .route(
            "/v1/namespaces/{ns}/tenants/{name}/logins/member",
            post(member),
        )
        .route(
            "/v1/namespaces/{ns}/tenants/{name}/logins/creator",
            post(creator),
        )
        .with_state(Arc::new(Shared { logins, authorize }))
}

/// Serves the login API on `addr` until `shutdown` completes.
pub async fn serve(
    addr: SocketAddr,
    logins: Arc<Logins>,
    authorize: Arc<dyn Authorize>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    serve_on(listener, logins, authorize, shutdown).await
}

/// [`serve`] on a bound listener (a test binds port 0 first).
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    logins: Arc<Logins>,
    authorize: Arc<dyn Authorize>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    tracing::info!(addr = %listener.local_addr()?, "login API listening");
    axum::serve(listener, router(logins, authorize))
        .with_graceful_shutdown(shutdown)
        .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DingTalkLogin {
    code: String,
    flow: FlowName,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "camelCase")]
enum FlowName {
    InApp,
    Web,
    Admin,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberLogin {
    userid: Option<String>,
    unionid: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreatorLogin {
    account: String,
    password: String,
}

fn problem(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

/// The caller may resolve logins for `ns`, or the answer that says why not.
async fn admitted(s: &Shared, headers: &HeaderMap, ns: &str) -> Result<(), Box<Response>> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let refused = match s.authorize.access(authorization, ns).await {
        Ok(Access::Allowed) => return Ok(()),
        Ok(Access::Unauthenticated) => {
            problem(StatusCode::UNAUTHORIZED, "a valid bearer token is required")
        }
        Ok(Access::Forbidden) => problem(
            StatusCode::FORBIDDEN,
            format!("this caller may not create tenants/login in namespace {ns}"),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "cannot check the caller of the login API");
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "the caller cannot be checked now",
            )
        }
    };
    Err(Box::new(refused))
}

fn decided(result: Result<super::Answer, Error>) -> Response {
    match result {
        Ok(answer) => Json(answer).into_response(),
        Err(e @ Error::UnknownTenant(_)) => problem(StatusCode::NOT_FOUND, e.to_string()),
        Err(e @ Error::DingTalk(_)) => {
            tracing::warn!(error = %e, "login: DingTalk");
            problem(StatusCode::BAD_GATEWAY, e.to_string())
        }
        Err(e) => {
            tracing::warn!(error = %e, "login");
            problem(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        }
    }
}

/// The tenant and the body of a call its caller may make, or the answer
/// that says why not.
async fn accepted<T>(
    s: &Shared,
    headers: &HeaderMap,
    (ns, name): (String, String),
    payload: Result<Json<T>, JsonRejection>,
) -> Result<(TenantKey, T), Box<Response>> {
    admitted(s, headers, &ns).await?;
    let Json(body) =
        payload.map_err(|e| Box::new(problem(StatusCode::BAD_REQUEST, e.body_text())))?;
    Ok((
        TenantKey {
            namespace: ns,
            name,
        },
        body,
    ))
}

async fn dingtalk(
    State(s): State<Arc<Shared>>,
    Path(tenant): Path<(String, String)>,
    headers: HeaderMap,
    payload: Result<Json<DingTalkLogin>, JsonRejection>,
) -> Response {
    let (key, b) = match accepted(&s, &headers, tenant, payload).await {
        Ok(call) => call,
        Err(r) => return *r,
    };
    let flow = match b.flow {
        FlowName::InApp => Flow::InApp,
        FlowName::Web => Flow::Web,
        FlowName::Admin => Flow::Admin,
    };
    decided(s.logins.dingtalk(&key, &Secret::new(b.code), flow).await)
}

async fn member(
    State(s): State<Arc<Shared>>,
    Path(tenant): Path<(String, String)>,
    headers: HeaderMap,
    payload: Result<Json<MemberLogin>, JsonRejection>,
) -> Response {
    let (key, b) = match accepted(&s, &headers, tenant, payload).await {
        Ok(call) => call,
        Err(r) => return *r,
    };
    if b.userid.is_some() == b.unionid.is_some() {
        return problem(
            StatusCode::BAD_REQUEST,
            "give exactly one of userid and unionid",
        );
    }
    decided(
        s.logins
            .member(&key, b.userid.as_deref(), b.unionid.as_deref())
            .await,
    )
}

async fn creator(
    State(s): State<Arc<Shared>>,
    Path(tenant): Path<(String, String)>,
    headers: HeaderMap,
    payload: Result<Json<CreatorLogin>, JsonRejection>,
) -> Response {
    let (key, b) = match accepted(&s, &headers, tenant, payload).await {
        Ok(call) => call,
        Err(r) => return *r,
    };
    decided(s.logins.creator(&key, &b.account, &b.password).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bearer_token_is_read_from_its_header() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
    }

    #[tokio::test]
    async fn the_static_token_lets_in_only_itself() {
        let t = StaticToken(Secret::new("s3cret"));
        assert_eq!(
            t.access(Some("Bearer s3cret"), "ns").await,
            Ok(Access::Allowed)
        );
        assert_eq!(
            t.access(Some("Bearer s3cre"), "ns").await,
            Ok(Access::Unauthenticated)
        );
        assert_eq!(t.access(None, "ns").await, Ok(Access::Unauthenticated));
    }
}
