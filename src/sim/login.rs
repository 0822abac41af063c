//! The login endpoints, on DingTalk's paths and with its shapes and codes
//! (`dingtalk-events-isv-login.md` §4), and the admin route that issues
//! login codes. The rules are in `authcodes.rs` (codes, user tokens) and
//! `model.rs` (members, scopes, unionids).
//!
//! - `POST /topapi/v2/user/getuserinfo?access_token=` `{code}`, with an
//!   internal app's token or a suite's corp token: an `inApp` code issued
//!   for that app. A bad, used, expired code, or one issued for another app
//!   or the web flow: errcode 40078. A member outside the app's visible
//!   scope (an internal app's, or the install's for a suite): 40079; the
//!   corp's admins (main and sub) are always in scope.
//! - `POST /v1.0/oauth2/userAccessToken` `{clientId, clientSecret, code,
//!   grantType}`: a `web` code issued for that clientId (appKey or
//!   suiteKey); the client's credentials are checked first.
//! - `GET /v1.0/contact/users/me` with the user's token (header
//!   `x-acs-dingtalk-access-token`).
//! - `POST /topapi/user/getbyunionid?access_token=` `{unionid}`: the member
//!   of the caller's corp with that unionid; 60121 for nobody.
//! - `POST /_sim/corps/{corpId}/authcodes` (admin): issues a code.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use super::admin::{AdminError, Body};
use super::api::{
    Reject, fresh_token, header_token, parse, query_token, request_id, ttl_secs, unauthorized,
    v1_err,
};
use super::authcodes::{
    ClientKind, CodeClient, CodeRequest, Flow, Person, UserSession, grant_for, open_id,
    personal_email, personal_mobile, stable_hash,
};
use super::model::{Caller, CallerKind};
use super::org_file::UserSpec;
use super::{Inner, Shared};
use crate::dingtalk::types::{
    Api, CONTACT_TYPE_EMPLOYEE, Family, GRANT_AUTHORIZATION_CODE, SYS_LEVEL_BOSS,
    SYS_LEVEL_MAIN_ADMIN, SYS_LEVEL_OTHER, SYS_LEVEL_SUB_ADMIN, UnionIdRequest, UnionIdResult,
    UserAccessTokenRequest, UserAccessTokenResponse, UserInfoByCodeResult,
};

/// errmsg of 40078.
const CODE_UNKNOWN: &str = "不存在的临时授权码";
/// errmsg of 40079.
const NOT_AUTHORIZED: &str = "不存在的授权信息";

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route(Api::UserInfoByCode.path(), post(user_info_by_code))
        .route(Api::UserAccessToken.path(), post(user_access_token))
        .route(Api::UsersMe.path(), get(users_me))
        .route(Api::UserByUnionId.path(), post(user_by_unionid))
}

pub(crate) fn admin_routes() -> Router<Arc<Shared>> {
    Router::new().route("/_sim/corps/{corp_id}/authcodes", post(issue_code))
}

/// `sys` and `sys_level` of a member: a sub-admin 2, another admin (the
/// main admin) 1, the boss 100 when no admin, anyone else 0.
pub fn sys_level(u: &UserSpec) -> (bool, i64) {
    if u.sub_admin {
        (true, SYS_LEVEL_SUB_ADMIN)
    } else if u.admin {
        (true, SYS_LEVEL_MAIN_ADMIN)
    } else if u.boss {
        (false, SYS_LEVEL_BOSS)
    } else {
        (false, SYS_LEVEL_OTHER)
    }
}

/// Whether the caller (an app's or a corp token) is the app a code was
/// issued for.
fn is_caller(caller: &Caller, client: &CodeClient) -> bool {
    match caller.kind {
        CallerKind::InternalApp => {
            client.kind == ClientKind::InternalApp && client.client_id == caller.app_key
        }
        CallerKind::Marketplace => {
            client.kind == ClientKind::Suite
                && client.client_id == caller.app_key
                && client.corp_id == caller.corp_id
        }
        CallerKind::Suite => false,
    }
}

#[derive(Deserialize)]
struct CodeBody {
    code: String,
}

/// `POST /topapi/v2/user/getuserinfo`: the member an in-app code belongs to.
async fn user_info_by_code(
    State(s): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    s.serve(Api::UserInfoByCode, query_token(&q), |inner, caller| {
        let req: CodeBody = parse(&body)?;
        let bad_code = || Reject::Top(40078, CODE_UNKNOWN);
        let grant = inner
            .world
            .logins
            .redeem(&req.code, Flow::InApp, Instant::now(), |c| {
                is_caller(caller, c)
            })
            .map_err(|_| bad_code())?;
        let corp = inner.world.corp(&grant.person.corp_id)?;
        // Gone since the code was issued: the code stands for nobody.
        let user = corp.member(&grant.person.userid).ok_or_else(bad_code)?;
        let scope = match caller.kind {
            CallerKind::Marketplace => inner
                .world
                .suites
                .install_of(&caller.app_key, &caller.corp_id)?
                .scope
                .clone(),
            CallerKind::InternalApp | CallerKind::Suite => corp
                .apps
                .get(&caller.agent_id)
                .map(|a| a.visible_scope.clone())
                .ok_or(Reject::Top(40079, NOT_AUTHORIZED))?,
        };
        let (sys, level) = sys_level(&user);
        if !sys && !corp.in_scope(&scope, &user) {
            return Err(Reject::Top(40079, NOT_AUTHORIZED));
        }
        Ok(UserInfoByCodeResult {
            unionid: corp.unionid_of(&user),
            associated_unionid: Some(String::new()),
            name: user.name.clone(),
            sys,
            sys_level: level,
            device_id: Some(format!(
                "dev-{:016x}",
                stable_hash(&[&corp.corp_id, &user.userid])
            )),
            userid: user.userid,
        })
    })
    .await
}

/// `POST /topapi/user/getbyunionid`: the member of the caller's corp with
/// the unionid (always an employee: external contacts are not modelled).
async fn user_by_unionid(
    State(s): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    s.serve(Api::UserByUnionId, query_token(&q), |inner, caller| {
        let req: UnionIdRequest = parse(&body)?;
        let userid = inner
            .world
            .corp(&caller.corp_id)?
            .userid_by_unionid(&req.unionid)
            .ok_or(Reject::Top(60121, "未找到对应员工"))?;
        Ok(UnionIdResult {
            contact_type: CONTACT_TYPE_EMPLOYEE,
            userid,
        })
    })
    .await
}

/// Whether `client_id`/`client_secret` are an internal app's or a suite's.
fn client_authenticates(inner: &Inner, client_id: &str, client_secret: &str) -> bool {
    let app = inner.world.corps.values().any(|c| {
        c.apps
            .values()
            .any(|a| a.app_key == client_id && a.app_secret == client_secret)
    });
    app || inner
        .world
        .suites
        .check_secret(client_id, client_secret)
        .is_ok()
}

/// `POST /v1.0/oauth2/userAccessToken`: a user token for a web code.
async fn user_access_token(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    let name = Api::UserAccessToken.name();
    if let Some(r) = s.prelude(name, Family::V1).await {
        return r;
    }
    let mut guard = s.lock();
    let inner = &mut *guard;
    let rid = request_id(&mut inner.rng);
    let Ok(req) = serde_json::from_slice::<UserAccessTokenRequest>(&body) else {
        return v1_err(
            StatusCode::BAD_REQUEST,
            "MissingclientId",
            "body is mandatory: clientId, clientSecret, code, grantType",
            rid,
        );
    };
    if let Some(r) = s.limit(inner, name, Family::V1, &req.client_id, false) {
        return r;
    }
    if req.grant_type != GRANT_AUTHORIZATION_CODE {
        return v1_err(
            StatusCode::BAD_REQUEST,
            "invalidParameter",
            "grantType: the simulator serves authorization_code only",
            rid,
        );
    }
    if !client_authenticates(inner, &req.client_id, req.client_secret.expose()) {
        return v1_err(
            StatusCode::BAD_REQUEST,
            "invalidClientIdOrSecret",
            "无效的clientId或者clientSecret",
            rid,
        );
    }
    let invalid_code = |rid| v1_err(StatusCode::BAD_REQUEST, "invalidCode", "无效的授权码", rid);
    let Some(code) = req.code.as_ref().filter(|c| !c.expose().is_empty()) else {
        return invalid_code(rid);
    };
    let now = Instant::now();
    let Ok(grant) = inner
        .world
        .logins
        .redeem(code.expose(), Flow::Web, now, |c| {
            c.client_id == req.client_id
        })
    else {
        return invalid_code(rid);
    };
    let person = grant.person;
    if inner
        .world
        .corp(&person.corp_id)
        .map_or(true, |c| c.member(&person.userid).is_none())
    {
        return invalid_code(rid);
    }
    let ttl = inner.faults.token_ttl();
    let Inner {
        world, rng, stats, ..
    } = inner;
    let corp_id = person.corp_id.clone();
    let session = UserSession {
        client_id: req.client_id.clone(),
        person,
    };
    let access = world
        .logins
        .issue_user_token(session, now, ttl, || fresh_token(rng));
    stats.endpoint(name).granted += 1;
    Json(UserAccessTokenResponse {
        access_token: access.into(),
        refresh_token: Some(fresh_token(rng).into()),
        expire_in: ttl_secs(ttl),
        corp_id: Some(corp_id),
    })
    .into_response()
}

/// The answer of `users/me`, every documented field: `email` and `mobile`
/// are the account's own (personal), deliberately not the organization's.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MeAnswer {
    nick: String,
    avatar_url: String,
    mobile: String,
    open_id: String,
    union_id: String,
    email: String,
    state_code: String,
}

/// `GET /v1.0/contact/users/me` with a user token.
async fn users_me(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let name = Api::UsersMe.name();
    if let Some(r) = s.prelude(name, Family::V1).await {
        return r;
    }
    let mut guard = s.lock();
    let inner = &mut *guard;
    let rid = request_id(&mut inner.rng);
    let token = header_token(&headers);
    let session = match inner
        .world
        .logins
        .check_user_token(token.as_deref(), Instant::now())
    {
        Ok(session) => session,
        Err(e) => return unauthorized(Family::V1, e, rid),
    };
    if let Some(r) = s.limit(inner, name, Family::V1, &session.client_id, false) {
        return r;
    }
    let Person { corp_id, userid } = &session.person;
    let Some((corp, user)) = inner
        .world
        .corp(corp_id)
        .ok()
        .and_then(|c| c.member(userid).map(|u| (c, u)))
    else {
        return v1_err(
            StatusCode::NOT_FOUND,
            "invalidParameter.user.notFound",
            "用户不存在",
            rid,
        );
    };
    let union_id = corp.unionid_of(&user);
    Json(MeAnswer {
        nick: user.name.clone(),
        avatar_url: String::new(),
        mobile: personal_mobile(&session.person),
        open_id: open_id(&session.client_id, &union_id),
        union_id,
        email: personal_email(&session.person),
        state_code: "86".into(),
    })
    .into_response()
}

/// The answer of `POST /_sim/corps/{corpId}/authcodes`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct IssuedAnswer {
    code: String,
    expires_in: u64,
    flow: Flow,
    /// The app it was issued for: the appKey or the suiteKey.
    client_id: String,
}

/// `POST /_sim/corps/{corpId}/authcodes` `{userid, flow, appKey?, suiteKey?,
/// personOf?, expiresIn?}`: a login code, 201.
async fn issue_code(
    State(s): State<Arc<Shared>>,
    Path(corp_id): Path<String>,
    Body(req): Body<CodeRequest>,
) -> Result<(StatusCode, Json<serde_json::Value>), AdminError> {
    let mut guard = s.lock();
    let inner = &mut *guard;
    let (grant, ttl) = grant_for(&inner.world, &corp_id, &req)?;
    let flow = grant.flow;
    let client_id = grant.client.client_id.clone();
    let rng = &mut inner.rng;
    let code = inner
        .world
        .logins
        .issue_code(grant, Instant::now(), ttl, || fresh_token(rng));
    let answer = IssuedAnswer {
        code,
        expires_in: ttl.as_secs(),
        flow,
        client_id,
    };
    let value = serde_json::to_value(answer)
        .map_err(|e| AdminError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok((StatusCode::CREATED, Json(value)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sys_level_follows_the_org_file_flags() {
        let u = |admin, sub_admin, boss| UserSpec {
            admin,
            sub_admin,
            boss,
            ..UserSpec::default()
        };
        assert_eq!(sys_level(&u(true, false, false)), (true, 1));
        assert_eq!(sys_level(&u(true, false, true)), (true, 1));
        assert_eq!(sys_level(&u(false, true, false)), (true, 2));
        assert_eq!(sys_level(&u(true, true, false)), (true, 2));
        assert_eq!(sys_level(&u(false, false, true)), (false, 100));
        assert_eq!(sys_level(&u(false, false, false)), (false, 0));
    }

    #[test]
    fn a_code_fits_only_the_app_it_was_issued_for() {
        let client = |kind, id: &str, corp: &str| CodeClient {
            client_id: id.into(),
            kind,
            corp_id: corp.into(),
        };
        let caller = |kind, key: &str, corp: &str| Caller {
            corp_id: corp.into(),
            agent_id: 1,
            app_key: key.into(),
            kind,
        };
        let app = client(ClientKind::InternalApp, "k", "dingacme");
        assert!(is_caller(
            &caller(CallerKind::InternalApp, "k", "dingacme"),
            &app
        ));
        assert!(!is_caller(
            &caller(CallerKind::InternalApp, "k2", "dingacme"),
            &app
        ));
        let suite = client(ClientKind::Suite, "sk", "dingacme");
        assert!(is_caller(
            &caller(CallerKind::Marketplace, "sk", "dingacme"),
            &suite
        ));
        assert!(
            !is_caller(&caller(CallerKind::Marketplace, "sk", "dingbeta"), &suite),
            "the suite in another corp"
        );
        assert!(!is_caller(&caller(CallerKind::Suite, "sk", ""), &suite));
        assert!(!is_caller(
            &caller(CallerKind::InternalApp, "sk", "dingacme"),
            &suite
        ));
    }
}
