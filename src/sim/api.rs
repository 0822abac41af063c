//! The DingTalk endpoints, on the real paths of both families.
//!
//! Every call goes through the same steps: count it, add the configured
//! latency, maybe fail it (faults), check the token, apply the per-app per-API
//! limit, then run the rule from `model.rs` and answer in the family's style:
//! topapi always HTTP 200 with `errcode` (88 + string `sub_code` for auth and
//! throttling), v1.0 HTTP 4xx/5xx with `{code, message, requestid}`.
//!
//! The contacts permission scope is the whole org (an internal app with full
//! contacts permission); the *visible* scope does not limit reads, as in DingTalk.
//!
//! Marketplace apps (suites): `oauth2/suiteAccessToken` gives a suite's own
//! token, good for `oauth2/apps/authInfo` only; `oauth2/corpAccessToken` a
//! token in one corp that installed the suite, good for the contacts
//! endpoints and `auth/scopes` there (not for the internal-app-only v1.0
//! endpoints). A marketplace caller is limited per suite, corp and API.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::model::{Caller, CallerKind, ModelError, TokenError, marketplace_key};
use super::suites::{AUTH_USER_FIELDS, SuiteAuthError};
use super::{Inner, Shared};
use crate::dingtalk::types::{
    AccessTokenRequest, AccessTokenResponse, Api, AuthAgent, AuthAppInfo, AuthCorpInfo,
    AuthCorpTokenRequest, AuthInfo, AuthOrgScopes, AuthUserInfo, CorpTokenRequest,
    CorpTokenResponse, Family, LEAVE_RECORDS_MAX_RESULTS, LeaveRecordPage, ROOT_DEPT_ID,
    ResultWrapper, ScopeDelta, SuiteTokenRequest, TopResponse, UserGetRequest, UserListRequest,
    V1_TOKEN_HEADER, V1Error,
};

/// Name of the legacy token endpoint in counters.
const GETTOKEN: &str = "gettoken";

/// Fresh counters: every endpoint the simulator serves and every app of
/// `world`, at zero.
pub(crate) fn fresh_stats(world: &super::World) -> super::stats::SimStats {
    let mut stats =
        super::stats::SimStats::with_endpoints(Api::ALL.iter().map(|a| a.name()).chain([GETTOKEN]));
    for app in world.corps.values().flat_map(|c| c.apps.values()) {
        stats.app(&app.app_key);
    }
    for suite in world.suites.iter() {
        stats.app(&suite.suite_key);
        for corp_id in suite.installs.keys() {
            stats.app(&marketplace_key(&suite.suite_key, corp_id));
        }
    }
    stats
}

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route(Api::AccessToken.path(), post(access_token))
        .route(Api::CorpToken.path(), post(corp_token))
        .route(Api::SuiteToken.path(), post(suite_token))
        .route(Api::AuthCorpToken.path(), post(auth_corp_token))
        .route(Api::AuthInfo.path(), get(auth_info))
        .route(Api::AuthScopes.path(), get(auth_scopes))
        .route("/gettoken", get(gettoken))
        .route(Api::DeptListSub.path(), post(dept_listsub))
        .route(Api::DeptGet.path(), post(dept_get))
        .route(Api::UserList.path(), post(user_list))
        .route(Api::UserGet.path(), post(user_get))
        .route(Api::UserListId.path(), post(user_listid))
        .route(Api::ScopesGet.path(), get(scopes_get).post(scopes_post))
        .route(Api::AllInnerApps.path(), get(all_inner_apps))
        .route(Api::EmpLeaveRecords.path(), get(leave_records))
        .merge(super::login::routes())
        .fallback(unknown_path)
}

/// Why a call is refused, before it is rendered in the family's style.
pub(super) enum Reject {
    Model(ModelError),
    /// v1.0 status, code and message.
    V1(StatusCode, &'static str, String),
    /// A topapi `errcode` and `errmsg` (a v1.0 caller gets 400 `invalidParam`).
    Top(i64, &'static str),
}

impl From<ModelError> for Reject {
    fn from(e: ModelError) -> Self {
        Reject::Model(e)
    }
}

pub(super) fn request_id(rng: &mut fastrand::Rng) -> String {
    (0..13)
        .map(|_| rng.alphanumeric().to_ascii_lowercase())
        .collect()
}

fn top_ok<T: Serialize>(result: T, rid: String) -> Response {
    Json(TopResponse {
        errcode: 0,
        errmsg: "ok".into(),
        sub_code: None,
        sub_msg: None,
        result: Some(result),
        request_id: Some(rid),
    })
    .into_response()
}

/// A topapi answer whose fields sit beside `errcode` (`auth/scopes`).
fn top_flat<T: Serialize>(answer: T, rid: String) -> Response {
    let mut body = match serde_json::to_value(answer) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    body.insert("errcode".into(), 0.into());
    body.insert("errmsg".into(), "ok".into());
    body.insert("request_id".into(), rid.into());
    Json(serde_json::Value::Object(body)).into_response()
}

pub(super) fn top_err(errcode: i64, msg: &str, rid: String) -> Response {
    Json(TopResponse::<()> {
        errcode,
        errmsg: msg.into(),
        sub_code: None,
        sub_msg: None,
        result: None,
        request_id: Some(rid),
    })
    .into_response()
}

/// The errcode-88 wrapper: the real cause is the string `sub_code`.
fn top_err88(sub_code: &str, sub_msg: &str, rid: String) -> Response {
    Json(TopResponse::<()> {
        errcode: 88,
        errmsg: format!("ding talk error[subcode={sub_code},submsg={sub_msg}]"),
        sub_code: Some(sub_code.into()),
        sub_msg: Some(sub_msg.into()),
        result: None,
        request_id: Some(rid),
    })
    .into_response()
}

pub(super) fn v1_err(status: StatusCode, code: &str, message: &str, rid: String) -> Response {
    let header = axum::http::HeaderValue::from_str(&rid).ok();
    let mut resp = (
        status,
        Json(V1Error {
            code: code.into(),
            message: message.into(),
            requestid: Some(rid),
        }),
    )
        .into_response();
    if let Some(v) = header {
        resp.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    resp
}

/// The header DingTalk's v1.0 family answers every call with.
pub(crate) const REQUEST_ID_HEADER: &str = "x-acs-request-id";

/// Every v1.0 answer carries `x-acs-request-id` (errors: the body's `requestid`).
pub(crate) async fn v1_request_id(
    State(s): State<Arc<Shared>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let v1 = req.uri().path().starts_with("/v1.0/");
    let mut resp = next.run(req).await;
    if v1 && !resp.headers().contains_key(REQUEST_ID_HEADER) {
        let rid = request_id(&mut s.lock().rng);
        if let Ok(v) = axum::http::HeaderValue::from_str(&rid) {
            resp.headers_mut().insert(REQUEST_ID_HEADER, v);
        }
    }
    resp
}

fn render(family: Family, reject: Reject, rid: String) -> Response {
    match (family, reject) {
        (Family::V1, Reject::V1(status, code, msg)) => v1_err(status, code, &msg, rid),
        (Family::Topapi, Reject::Model(e)) => match e {
            ModelError::DeptNotFound(_) => top_err(60003, "部门不存在", rid),
            ModelError::UserNotFound(_) => top_err(60121, "找不到该用户", rid),
            ModelError::Invalid(m) => top_err(40035, &format!("不合法的参数: {m}"), rid),
            other => top_err(-1, &format!("系统繁忙 ({other})"), rid),
        },
        (Family::V1, Reject::Model(e)) => match e {
            ModelError::UserNotFound(_) => v1_err(
                StatusCode::NOT_FOUND,
                "invalidParameter.user.notFound",
                "用户不存在",
                rid,
            ),
            ModelError::Invalid(_) | ModelError::AppNotFound(_) | ModelError::DeptNotFound(_) => {
                v1_err(
                    StatusCode::BAD_REQUEST,
                    "invalidParam",
                    &format!("参数错误: {e}"),
                    rid,
                )
            }
            other => v1_err(
                StatusCode::INTERNAL_SERVER_ERROR,
                "systemError",
                &format!("系统繁忙 ({other})"),
                rid,
            ),
        },
        (Family::Topapi, Reject::V1(_, _, msg)) => top_err(40035, &msg, rid),
        (Family::Topapi, Reject::Top(code, msg)) => top_err(code, msg, rid),
        (Family::V1, Reject::Top(_, msg)) => {
            v1_err(StatusCode::BAD_REQUEST, "invalidParam", msg, rid)
        }
    }
}

/// The throttle answer; `isv` for a suite in a corp (DingTalk limits it per
/// suite, authorizing corp and API: 90019, `…QpsLimitForSuitekeyAndOrgAndApi`).
fn throttled(family: Family, isv: bool, rid: String) -> Response {
    let until = Timestamp::now() + jiff::SignedDuration::from_secs(1);
    let who = if isv {
        "当前第三方企业应用在该企业"
    } else {
        "当前企业应用"
    };
    let msg = format!(
        "{who}调用该接口次数过多，请求被暂时禁用了，限制将在 {} 结束",
        until.strftime("%Y-%m-%d %H:%M:%S")
    );
    match (family, isv) {
        (Family::Topapi, false) => top_err88("90018", &msg, rid),
        (Family::Topapi, true) => top_err88("90019", &msg, rid),
        (Family::V1, false) => v1_err(
            StatusCode::FORBIDDEN,
            "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi",
            &msg,
            rid,
        ),
        (Family::V1, true) => v1_err(
            StatusCode::FORBIDDEN,
            "Forbidden.AccessDenied.QpsLimitForSuitekeyAndOrgAndApi",
            &msg,
            rid,
        ),
    }
}

/// Whether a token of `kind` may call `api`: a suite's own token only
/// `apps/authInfo`, and `apps/authInfo` only with one. Anything else is
/// answered as an invalid token would be.
fn token_fits(api: Api, kind: CallerKind) -> bool {
    (api == Api::AuthInfo) == (kind == CallerKind::Suite)
}

/// The v1.0 endpoints DingTalk documents for internal apps only: a
/// marketplace token gets 403 `AccessTokenPermissionDenied`.
fn internal_only(api: Api) -> bool {
    matches!(
        api,
        Api::ScopesGet | Api::ScopesUpdate | Api::AllInnerApps | Api::EmpLeaveRecords
    )
}

pub(super) fn unauthorized(family: Family, err: TokenError, rid: String) -> Response {
    match (family, err) {
        (Family::Topapi, TokenError::Missing) => top_err88("40000", "access_token is blank", rid),
        (Family::Topapi, TokenError::Invalid) => top_err88("40014", "不合法的access_token", rid),
        (Family::V1, TokenError::Missing) => v1_err(
            StatusCode::BAD_REQUEST,
            "AuthenticationFailed.MissingParameter",
            &format!("缺少参数：{V1_TOKEN_HEADER}"),
            rid,
        ),
        (Family::V1, TokenError::Invalid) => v1_err(
            StatusCode::BAD_REQUEST,
            "InvalidAuthentication",
            "不合法的access_token",
            rid,
        ),
    }
}

impl Shared {
    /// Counts the call, applies latency, and maybe fails it (faults): the
    /// failure answer, if any.
    pub(super) async fn prelude(&self, name: &'static str, family: Family) -> Option<Response> {
        let (delay, fail) = {
            let mut inner = self.lock();
            inner.stats.endpoint(name).calls += 1;
            let delay = inner.faults.take_delay();
            let roll = inner.rng.f64();
            let fail = inner
                .faults
                .take_failure(roll)
                .then(|| (inner.faults.fail_status, request_id(&mut inner.rng)));
            if fail.is_some() {
                inner.stats.endpoint(name).faults += 1;
            }
            (delay, fail)
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        fail.map(|(status, rid)| match (status, family) {
            (Some(status), _) => {
                let status =
                    StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
                (status, "simulated failure").into_response()
            }
            (None, Family::Topapi) => top_err(-1, "系统繁忙", rid),
            (None, Family::V1) => v1_err(
                StatusCode::INTERNAL_SERVER_ERROR,
                "systemBusy",
                "系统繁忙",
                rid,
            ),
        })
    }

    /// Applies the per-app per-API limit of the current 1-second window: the
    /// throttle answer, if the call is over it. `key` is the bucket: the
    /// appKey, or `suiteKey@corpId` for a suite in a corp (`isv`).
    pub(super) fn limit(
        &self,
        inner: &mut Inner,
        name: &'static str,
        family: Family,
        key: &str,
        isv: bool,
    ) -> Option<Response> {
        let window = self.started.elapsed().as_secs();
        let qps = inner.faults.throttle_qps;
        inner.stats.app(key).calls += 1;
        if inner.limiter.admit(key, name, window, qps) {
            return None;
        }
        inner.stats.endpoint(name).throttled += 1;
        inner.stats.app(key).throttled += 1;
        Some(throttled(family, isv, request_id(&mut inner.rng)))
    }

    /// Runs `op` for an authenticated call of `api` and renders its answer.
    pub(super) async fn serve<T: Serialize>(
        &self,
        api: Api,
        token: Option<String>,
        op: impl FnOnce(&mut Inner, &Caller) -> Result<T, Reject>,
    ) -> Response {
        let family = api.family();
        if let Some(r) = self.prelude(api.name(), family).await {
            return r;
        }
        let mut inner = self.lock();
        let rid = request_id(&mut inner.rng);
        let caller = match inner
            .world
            .check_token(token.as_deref(), std::time::Instant::now())
        {
            Ok(c) => c,
            Err(e) => return unauthorized(family, e, rid),
        };
        if !token_fits(api, caller.kind) {
            return unauthorized(family, TokenError::Invalid, rid);
        }
        if caller.kind == CallerKind::Marketplace && internal_only(api) {
            return v1_err(
                StatusCode::FORBIDDEN,
                "Forbidden.AccessDenied.AccessTokenPermissionDenied",
                "没有调用该接口的权限",
                rid,
            );
        }
        let isv = caller.kind == CallerKind::Marketplace;
        if let Some(r) = self.limit(&mut inner, api.name(), family, &caller.limit_key(), isv) {
            return r;
        }
        let result = op(&mut inner, &caller);
        // Serialize outside the lock.
        drop(inner);
        match (result, family) {
            (Ok(v), Family::Topapi) if api.flat_answer() => top_flat(v, rid),
            (Ok(v), Family::Topapi) => top_ok(v, rid),
            (Ok(v), Family::V1) => Json(v).into_response(),
            (Err(e), _) => render(family, e, rid),
        }
    }
}

/// The topapi token: `?access_token=`.
pub(super) fn query_token(q: &HashMap<String, String>) -> Option<String> {
    q.get("access_token").cloned()
}

/// The v1.0 token: header `x-acs-dingtalk-access-token`.
pub(super) fn header_token(h: &HeaderMap) -> Option<String> {
    h.get(V1_TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// A JSON body (an empty body reads as `{}`).
pub(super) fn parse<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, Reject> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| Reject::Model(ModelError::Invalid(e.to_string())))
}

// ---------------------------------------------------------------- tokens

async fn access_token(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    let name = Api::AccessToken.name();
    if let Some(r) = s.prelude(name, Family::V1).await {
        return r;
    }
    let mut inner = s.lock();
    let rid = request_id(&mut inner.rng);
    let req: AccessTokenRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(_) => {
            return v1_err(
                StatusCode::BAD_REQUEST,
                "MissingappKey",
                "body is mandatory: appKey, appSecret",
                rid,
            );
        }
    };
    if let Some(r) = s.limit(&mut inner, name, Family::V1, &req.app_key, false) {
        return r;
    }
    match issue(&mut inner, name, &req.app_key, req.app_secret.expose()) {
        Some((token, ttl)) => Json(AccessTokenResponse {
            access_token: token.into(),
            expire_in: ttl,
        })
        .into_response(),
        None => v1_err(
            StatusCode::BAD_REQUEST,
            "invalidClientIdOrSecret",
            "无效的clientId或者clientSecret",
            rid,
        ),
    }
}

/// The unified app token: like `accessToken`, but for organization `corpId`
/// only. An app of another organization is refused with `unauthorized.client`.
async fn corp_token(
    State(s): State<Arc<Shared>>,
    Path(corp_id): Path<String>,
    body: Bytes,
) -> Response {
    let name = Api::CorpToken.name();
    if let Some(r) = s.prelude(name, Family::V1).await {
        return r;
    }
    let mut inner = s.lock();
    let rid = request_id(&mut inner.rng);
    let req: CorpTokenRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(_) => {
            return v1_err(
                StatusCode::BAD_REQUEST,
                "invalidParameter",
                "body is mandatory: client_id, client_secret, grant_type",
                rid,
            );
        }
    };
    if req.grant_type != "client_credentials" {
        return v1_err(
            StatusCode::BAD_REQUEST,
            "unsupported.grant.type",
            "grant_type must be client_credentials",
            rid,
        );
    }
    if let Some(r) = s.limit(&mut inner, name, Family::V1, &req.client_id, false) {
        return r;
    }
    let app_corp = inner.world.corps.values().find_map(|c| {
        c.apps
            .values()
            .any(|a| a.app_key == req.client_id && a.app_secret == req.client_secret.expose())
            .then(|| c.corp_id.clone())
    });
    match app_corp {
        None => v1_err(
            StatusCode::BAD_REQUEST,
            "invalid.client",
            "无效的clientId或者clientSecret",
            rid,
        ),
        Some(corp) if corp != corp_id => v1_err(
            StatusCode::UNAUTHORIZED,
            "unauthorized.client",
            "应用未授权该企业",
            rid,
        ),
        Some(_) => match issue(&mut inner, name, &req.client_id, req.client_secret.expose()) {
            Some((token, ttl)) => Json(CorpTokenResponse {
                access_token: token.into(),
                expires_in: ttl,
            })
            .into_response(),
            None => v1_err(
                StatusCode::BAD_REQUEST,
                "invalid.client",
                "无效的clientId或者clientSecret",
                rid,
            ),
        },
    }
}

/// Issues (or extends) a token; returns it with its life in seconds.
fn issue(
    inner: &mut Inner,
    endpoint: &str,
    app_key: &str,
    app_secret: &str,
) -> Option<(String, i64)> {
    let ttl = inner.faults.token_ttl();
    let Inner {
        world, rng, stats, ..
    } = inner;
    let mut issued = false;
    let token = world.issue_token(app_key, app_secret, std::time::Instant::now(), ttl, || {
        issued = true;
        (0..32).map(|_| rng.alphanumeric()).collect()
    })?;
    if issued {
        stats.tokens_issued += 1;
    }
    stats.endpoint(endpoint).granted += 1;
    Some((token, i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)))
}

/// The answer to a refused marketplace token request (HTTP 400).
fn suite_refusal(e: SuiteAuthError, rid: String) -> Response {
    v1_err(StatusCode::BAD_REQUEST, e.code(), e.message(), rid)
}

/// A token's life in seconds, for `expireIn`.
pub(super) fn ttl_secs(ttl: std::time::Duration) -> i64 {
    i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)
}

/// A new random token value.
pub(super) fn fresh_token(rng: &mut fastrand::Rng) -> String {
    (0..32).map(|_| rng.alphanumeric()).collect()
}

/// `POST /v1.0/oauth2/suiteAccessToken` `{suiteKey, suiteSecret, suiteTicket}`:
/// a suite's own token (the same while valid, extended), with the current
/// ticket only.
async fn suite_token(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    let name = Api::SuiteToken.name();
    if let Some(r) = s.prelude(name, Family::V1).await {
        return r;
    }
    let mut inner = s.lock();
    let rid = request_id(&mut inner.rng);
    let Ok(req) = serde_json::from_slice::<SuiteTokenRequest>(&body) else {
        return v1_err(
            StatusCode::BAD_REQUEST,
            "MissingsuiteKey",
            "body is mandatory: suiteKey, suiteSecret, suiteTicket",
            rid,
        );
    };
    if let Some(r) = s.limit(&mut inner, name, Family::V1, &req.suite_key, false) {
        return r;
    }
    let ttl = inner.faults.token_ttl();
    let Inner {
        world, rng, stats, ..
    } = &mut *inner;
    let mut issued = false;
    let result = world.issue_suite_token(
        &req.suite_key,
        req.suite_secret.expose(),
        req.suite_ticket.expose(),
        std::time::Instant::now(),
        ttl,
        || {
            issued = true;
            fresh_token(rng)
        },
    );
    match result {
        Ok(token) => {
            stats.tokens_issued += u64::from(issued);
            stats.endpoint(name).granted += 1;
            Json(AccessTokenResponse {
                access_token: token.into(),
                expire_in: ttl_secs(ttl),
            })
            .into_response()
        }
        Err(e) => suite_refusal(e, rid),
    }
}

/// `POST /v1.0/oauth2/corpAccessToken` `{suiteKey, suiteSecret, authCorpId,
/// suiteTicket}`: the suite's token in a corp that installed it, a new one
/// on every call.
async fn auth_corp_token(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    let name = Api::AuthCorpToken.name();
    if let Some(r) = s.prelude(name, Family::V1).await {
        return r;
    }
    let mut inner = s.lock();
    let rid = request_id(&mut inner.rng);
    let Ok(req) = serde_json::from_slice::<AuthCorpTokenRequest>(&body) else {
        return v1_err(
            StatusCode::BAD_REQUEST,
            "MissingsuiteKey",
            "body is mandatory: suiteKey, suiteSecret, authCorpId, suiteTicket",
            rid,
        );
    };
    let key = marketplace_key(&req.suite_key, &req.auth_corp_id);
    if let Some(r) = s.limit(&mut inner, name, Family::V1, &key, true) {
        return r;
    }
    let ttl = inner.faults.token_ttl();
    let Inner {
        world, rng, stats, ..
    } = &mut *inner;
    let result = world.issue_corp_token(
        &req.suite_key,
        req.suite_secret.expose(),
        &req.auth_corp_id,
        req.suite_ticket.expose(),
        std::time::Instant::now(),
        ttl,
        || fresh_token(rng),
    );
    match result {
        Ok(token) => {
            stats.tokens_issued += 1;
            stats.endpoint(name).granted += 1;
            Json(AccessTokenResponse {
                access_token: token.into(),
                expire_in: ttl_secs(ttl),
            })
            .into_response()
        }
        Err(e) => suite_refusal(e, rid),
    }
}

/// Legacy `GET /gettoken?appkey=…&appsecret=…` (deprecated by DingTalk, still served).
async fn gettoken(
    State(s): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(r) = s.prelude(GETTOKEN, Family::Topapi).await {
        return r;
    }
    let mut inner = s.lock();
    let rid = request_id(&mut inner.rng);
    let (Some(key), Some(secret)) = (q.get("appkey"), q.get("appsecret")) else {
        return top_err(40035, "缺少参数 corpid or appkey", rid);
    };
    if let Some(r) = s.limit(&mut inner, GETTOKEN, Family::Topapi, key, false) {
        return r;
    }
    match issue(&mut inner, GETTOKEN, key, secret) {
        Some((token, ttl)) => {
            Json(serde_json::json!({"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": ttl})).into_response()
        }
        None => top_err(40096, "不合法的appKey或appSecret", rid),
    }
}

// ---------------------------------------------------------------- topapi

#[derive(Deserialize)]
struct DeptBody {
    #[serde(default = "root")]
    dept_id: i64,
}

fn root() -> i64 {
    ROOT_DEPT_ID
}

async fn dept_listsub(
    State(s): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    s.serve(Api::DeptListSub, query_token(&q), |inner, caller| {
        let req: DeptBody = parse(&body)?;
        Ok(inner
            .world
            .corp(&caller.corp_id)?
            .sub_departments(req.dept_id)?)
    })
    .await
}

async fn dept_get(
    State(s): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    s.serve(Api::DeptGet, query_token(&q), |inner, caller| {
        let req: DeptBody = parse(&body)?;
        Ok(inner.world.corp(&caller.corp_id)?.department(req.dept_id)?)
    })
    .await
}

async fn user_list(
    State(s): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    s.serve(Api::UserList, query_token(&q), |inner, caller| {
        let req: UserListRequest = parse(&body)?;
        let mut page =
            inner
                .world
                .corp(&caller.corp_id)?
                .member_page(req.dept_id, req.cursor, req.size)?;
        if inner.faults.take_empty_members(req.dept_id) {
            page.list.clear();
            page.has_more = false;
            page.next_cursor = None;
        }
        Ok(page)
    })
    .await
}

async fn user_listid(
    State(s): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    s.serve(Api::UserListId, query_token(&q), |inner, caller| {
        let req: crate::dingtalk::types::UserListIdRequest = parse(&body)?;
        Ok(inner.world.corp(&caller.corp_id)?.member_ids(req.dept_id)?)
    })
    .await
}

async fn user_get(
    State(s): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    s.serve(Api::UserGet, query_token(&q), |inner, caller| {
        let req: UserGetRequest = parse(&body)?;
        Ok(inner.world.corp(&caller.corp_id)?.user(&req.userid)?)
    })
    .await
}

// ---------------------------------------------------------------- v1.0

fn agent_id(raw: &str) -> Result<i64, Reject> {
    raw.parse().map_err(|_| {
        Reject::V1(
            StatusCode::BAD_REQUEST,
            "invalidParam",
            format!("参数错误: agentId {raw}"),
        )
    })
}

async fn scopes_get(
    State(s): State<Arc<Shared>>,
    Path(agent): Path<String>,
    headers: HeaderMap,
) -> Response {
    s.serve(Api::ScopesGet, header_token(&headers), |inner, caller| {
        let agent = agent_id(&agent)?;
        Ok(ResultWrapper {
            result: inner.world.corp(&caller.corp_id)?.scopes(agent)?,
        })
    })
    .await
}

async fn scopes_post(
    State(s): State<Arc<Shared>>,
    Path(agent): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    s.serve(
        Api::ScopesUpdate,
        header_token(&headers),
        |inner, caller| {
            let agent = agent_id(&agent)?;
            let delta: ScopeDelta = parse(&body)?;
            inner
                .world
                .corp_mut(&caller.corp_id)?
                .apply_scope_delta(agent, &delta)?;
            Ok(ResultWrapper { result: true })
        },
    )
    .await
}

async fn all_inner_apps(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    s.serve(
        Api::AllInnerApps,
        header_token(&headers),
        |inner, caller| {
            Ok(crate::dingtalk::types::InnerAppList {
                app_list: inner.world.corp(&caller.corp_id)?.inner_apps(),
            })
        },
    )
    .await
}

async fn leave_records(
    State(s): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    s.serve(
        Api::EmpLeaveRecords,
        header_token(&headers),
        |inner, caller| {
            let bad = |m: String| {
                Reject::V1(
                    StatusCode::BAD_REQUEST,
                    "invalidParameter.param.invalid",
                    format!("入参错误：{m}"),
                )
            };
            let time = |key: &str| -> Result<Option<Timestamp>, Reject> {
                q.get(key)
                    .map(|v| {
                        v.parse::<Timestamp>()
                            .map_err(|e| bad(format!("{key}: {e}")))
                    })
                    .transpose()
            };
            let start = time("startTime")?.ok_or_else(|| bad("startTime is required".into()))?;
            let end = time("endTime")?;
            let max: u32 = q
                .get("maxResults")
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| bad("maxResults is required".into()))?;
            if !(1..=LEAVE_RECORDS_MAX_RESULTS).contains(&max) {
                return Err(bad(format!(
                    "maxResults must be 1..={LEAVE_RECORDS_MAX_RESULTS}"
                )));
            }
            let from: usize = match q.get("nextToken").map(String::as_str) {
                None | Some("") | Some("0") => 0,
                Some(t) => t.parse().map_err(|_| bad(format!("nextToken {t}")))?,
            };
            let (records, next) =
                inner
                    .world
                    .corp(&caller.corp_id)?
                    .leave_page(start, end, from, max as usize);
            Ok(LeaveRecordPage {
                next_token: next.map(|n| n.to_string()),
                records,
            })
        },
    )
    .await
}

/// `GET /v1.0/oauth2/apps/authInfo?authCorpId=` with a suite's own token:
/// what the corp installed of the suite (a stopped or removed app is still
/// listed: the answer has no status).
async fn auth_info(
    State(s): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    s.serve(Api::AuthInfo, header_token(&headers), |inner, caller| {
        let corp_id = q
            .get("authCorpId")
            .filter(|c| !c.is_empty())
            .ok_or_else(|| {
                Reject::V1(
                    StatusCode::BAD_REQUEST,
                    "MissingauthCorpId",
                    "authCorpId is mandatory for this action.".into(),
                )
            })?;
        let corp = inner
            .world
            .corp(corp_id)
            .map_err(|_| Reject::V1(StatusCode::BAD_REQUEST, "orgNotExist", "企业不存在".into()))?;
        let suite = inner.world.suites.get(&caller.app_key)?;
        let install = suite.installs.get(corp_id).ok_or_else(|| {
            Reject::V1(
                StatusCode::BAD_REQUEST,
                "orgNotAuthApp",
                "企业未授权该应用".into(),
            )
        })?;
        Ok(AuthInfo {
            auth_app_info: AuthAppInfo {
                agent_list: vec![AuthAgent {
                    agent_id: install.agent_id,
                    agent_name: suite.name.clone(),
                    app_id: suite.app_id(),
                    admin_list: install.admin_user_id.iter().cloned().collect(),
                }],
            },
            auth_corp_info: AuthCorpInfo {
                corp_id: corp.corp_id.clone(),
                corp_name: corp.name.clone(),
            },
            auth_user_info: Some(AuthUserInfo {
                user_id: install.admin_user_id.clone().unwrap_or_default(),
            }),
        })
    })
    .await
}

/// The answer of `auth/scopes`, beside `errcode`.
#[derive(Serialize)]
struct ScopesAnswer {
    auth_user_field: Vec<&'static str>,
    condition_field: Vec<String>,
    auth_org_scopes: AuthOrgScopes,
}

/// `GET /auth/scopes` (topapi, fields beside `errcode`): the contacts the
/// token may read. A corp token: the install's visible scope; an internal
/// app's: its visible scope (empty lists when only admins see it).
async fn auth_scopes(
    State(s): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    s.serve(Api::AuthScopes, query_token(&q), |inner, caller| {
        let scopes = match caller.kind {
            CallerKind::Marketplace => {
                let install = inner
                    .world
                    .suites
                    .install_of(&caller.app_key, &caller.corp_id)?;
                AuthOrgScopes {
                    authed_dept: install.scope.dept_ids.clone(),
                    authed_user: install.scope.user_ids.clone(),
                }
            }
            CallerKind::InternalApp | CallerKind::Suite => {
                let s = inner.world.corp(&caller.corp_id)?.scopes(caller.agent_id)?;
                AuthOrgScopes {
                    authed_dept: s.dept_ids,
                    authed_user: s.user_ids,
                }
            }
        };
        Ok(ScopesAnswer {
            auth_user_field: AUTH_USER_FIELDS.to_vec(),
            condition_field: Vec::new(),
            auth_org_scopes: scopes,
        })
    })
    .await
}

/// Unknown paths: topapi answers errcode 22 (as observed live), others 404.
async fn unknown_path(State(s): State<Arc<Shared>>, uri: Uri) -> Response {
    let path = uri.path();
    if let Some(rest) = path.strip_prefix("/topapi/") {
        let api_name = format!("dingtalk.oapi.{}", rest.replace('/', "."));
        let body = serde_json::json!({
            "errcode": 22,
            "sub_msg": format!("不合法ApiName，ApiName = {api_name}"),
            "errmsg": format!("Invalid method[{api_name}]"),
            "request_id": request_id(&mut s.lock().rng),
        });
        return Json(body).into_response();
    }
    (
        StatusCode::NOT_FOUND,
        Json(serde_json::json!({"errcode": 404, "errmsg": "请求的URI地址不存在"})),
    )
        .into_response()
}
