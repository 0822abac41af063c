//! The admin API under `/_sim/`: change the world "from the DingTalk side",
//! set faults, read counters, reset. JSON in and out; errors are
//! `{"error": "..."}` with 400 (invalid), 404 (not found) or 409 (conflict).
//! Not rate limited, not counted, no faults. Every change to a directory or
//! an app also pushes the event DingTalk would send (`changes.rs`) through
//! the Stream gateway, whose faults and counters are under `/_sim/stream`.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Shared;
use super::changes;
use super::faults::FaultsPatch;
use super::gateway::publish;
use super::hub::{StreamFaults, StreamFaultsPatch, StreamStats};
use super::model::ModelError;
use super::org_file::{AppSpec, CorpSpec, DeptSpec, ScopeSpec, UserSpec};

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_sim/corps", post(put_corp))
        .route("/_sim/corps/{corp_id}", get(get_corp))
        .route(
            "/_sim/corps/{corp_id}/departments/{id}",
            put(put_department).delete(delete_department),
        )
        .route(
            "/_sim/corps/{corp_id}/users/{userid}",
            put(put_user).delete(delete_user),
        )
        .route("/_sim/corps/{corp_id}/users/{userid}/leave", post(leave))
        .route("/_sim/corps/{corp_id}/apps/{agent_id}", put(put_app))
        .route(
            "/_sim/corps/{corp_id}/apps/{agent_id}/callback",
            put(put_callback).delete(delete_callback),
        )
        .route("/_sim/http-push", get(get_http_push))
        .route("/_sim/faults", get(get_faults).put(put_faults))
        .route("/_sim/stats", get(get_stats))
        .route("/_sim/tokens/expire", post(expire_tokens))
        .route("/_sim/reset", post(reset))
        .route("/_sim/stream", get(get_stream))
        .route(
            "/_sim/stream/faults",
            get(get_stream_faults).put(put_stream_faults),
        )
        .route("/_sim/stream/disconnect", post(stream_disconnect))
        .merge(super::suite_admin::routes())
        .merge(super::login::admin_routes())
}

/// An admin error as `{"error": …}` with a status.
pub(super) struct AdminError(pub(super) StatusCode, pub(super) String);

impl From<ModelError> for AdminError {
    fn from(e: ModelError) -> Self {
        let status = match e {
            ModelError::CorpNotFound(_)
            | ModelError::DeptNotFound(_)
            | ModelError::UserNotFound(_)
            | ModelError::AppNotFound(_)
            | ModelError::SuiteNotFound(_)
            | ModelError::NotInstalled { .. } => StatusCode::NOT_FOUND,
            ModelError::Invalid(_) => StatusCode::BAD_REQUEST,
            ModelError::Conflict(_) => StatusCode::CONFLICT,
        };
        AdminError(status, e.to_string())
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

pub(super) type AdminResult<T> = Result<Json<T>, AdminError>;

/// A JSON body; one that does not decode (bad syntax, a wrong type, a number
/// out of range) is answered 400 `{"error": …}` like every invalid input.
pub(super) struct Body<T>(pub(super) T);

impl<S, T> axum::extract::FromRequest<S> for Body<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AdminError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, AdminError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(e) => Err(AdminError(StatusCode::BAD_REQUEST, e.body_text())),
        }
    }
}

/// The corp as stored, after a change.
fn corp_view(s: &Shared, corp_id: &str) -> AdminResult<CorpSpec> {
    Ok(Json(s.lock().world.corp(corp_id)?.to_spec()))
}

/// `POST /_sim/corps`: creates (or replaces) one corp; its tokens are revoked.
async fn put_corp(
    State(s): State<Arc<Shared>>,
    Body(spec): Body<CorpSpec>,
) -> AdminResult<CorpSpec> {
    let corp_id = spec.corp_id.clone();
    s.lock().world.put_corp(spec)?;
    corp_view(&s, &corp_id)
}

async fn get_corp(
    State(s): State<Arc<Shared>>,
    Path(corp_id): Path<String>,
) -> AdminResult<CorpSpec> {
    corp_view(&s, &corp_id)
}

/// Body of `PUT …/departments/{id}` (the id comes from the path).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeptBody {
    name: String,
    #[serde(default = "root")]
    parent_id: i64,
    #[serde(default)]
    order: i64,
}

fn root() -> i64 {
    crate::dingtalk::types::ROOT_DEPT_ID
}

/// `PUT /_sim/corps/{corpId}/departments/{id}`: create, rename or move.
async fn put_department(
    State(s): State<Arc<Shared>>,
    Path((corp_id, id)): Path<(String, i64)>,
    Body(body): Body<DeptBody>,
) -> AdminResult<DeptSpec> {
    let dept = DeptSpec {
        id,
        name: body.name,
        parent_id: body.parent_id,
        order: body.order,
    };
    let mut inner = s.lock();
    let corp = inner.world.corp_mut(&corp_id)?;
    let existed = corp.departments.contains_key(&id);
    corp.put_department(dept.clone())?;
    let mut events = changes::department_put(id, existed, jiff::Timestamp::now());
    if has_suites(&inner.world, &corp_id)
        && let Ok(detail) = inner.world.corp(&corp_id)?.department(id)
    {
        events.extend(changes::suite_department_put(&detail, existed));
    }
    publish(&mut inner, &corp_id, events);
    Ok(Json(dept))
}

/// `DELETE /_sim/corps/{corpId}/departments/{id}`: only an empty department.
async fn delete_department(
    State(s): State<Arc<Shared>>,
    Path((corp_id, id)): Path<(String, i64)>,
) -> Result<StatusCode, AdminError> {
    let mut inner = s.lock();
    inner.world.corp_mut(&corp_id)?.delete_department(id)?;
    let mut events = changes::department_removed(id, jiff::Timestamp::now());
    if has_suites(&inner.world, &corp_id) {
        events.extend(changes::suite_department_removed());
    }
    publish(&mut inner, &corp_id, events);
    Ok(StatusCode::NO_CONTENT)
}

/// Body of `PUT …/users/{userid}`: a user without (or with the same) userid.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UserBody {
    #[serde(default)]
    userid: Option<String>,
    #[serde(flatten)]
    rest: UserFields,
}

/// [`UserSpec`] minus the userid.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UserFields {
    name: String,
    #[serde(default)]
    unionid: Option<String>,
    #[serde(default)]
    dept_ids: Vec<i64>,
    #[serde(default)]
    mobile: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    job_number: Option<String>,
    #[serde(default)]
    admin: bool,
    #[serde(default)]
    sub_admin: bool,
    #[serde(default)]
    boss: bool,
    #[serde(default = "yes")]
    active: bool,
}

fn yes() -> bool {
    true
}

/// `PUT /_sim/corps/{corpId}/users/{userid}`: create or replace (moving
/// departments is replacing `deptIds`).
async fn put_user(
    State(s): State<Arc<Shared>>,
    Path((corp_id, userid)): Path<(String, String)>,
    Body(body): Body<UserBody>,
) -> AdminResult<UserSpec> {
    if body.userid.as_ref().is_some_and(|u| *u != userid) {
        return Err(AdminError(
            StatusCode::BAD_REQUEST,
            "userid in the body differs from the path".into(),
        ));
    }
    let f = body.rest;
    let user = UserSpec {
        userid,
        name: f.name,
        unionid: f.unionid,
        dept_ids: f.dept_ids,
        mobile: f.mobile,
        email: f.email,
        title: f.title,
        job_number: f.job_number,
        admin: f.admin,
        sub_admin: f.sub_admin,
        boss: f.boss,
        active: f.active,
    };
    let mut inner = s.lock();
    let corp = inner.world.corp_mut(&corp_id)?;
    let before = corp.user(&user.userid).ok();
    corp.put_user(user.clone())?;
    let reactivated = before.as_ref().is_some_and(|b| !b.active) && user.active;
    let mut events = changes::user_put(
        &user.userid,
        before.is_some(),
        reactivated,
        jiff::Timestamp::now(),
    );
    if has_suites(&inner.world, &corp_id)
        && let Ok(wire) = inner.world.corp(&corp_id)?.user(&user.userid)
    {
        let record = changes::suite_user_record(&corp_id, &wire);
        events.extend(changes::suite_user_put(
            &record,
            before.is_some(),
            reactivated,
        ));
    }
    publish(&mut inner, &corp_id, events);
    Ok(Json(user))
}

/// `DELETE /_sim/corps/{corpId}/users/{userid}`: an admin deletes the member
/// (leave record with reason `delete`).
async fn delete_user(
    State(s): State<Arc<Shared>>,
    Path((corp_id, userid)): Path<(String, String)>,
) -> Result<StatusCode, AdminError> {
    let mut inner = s.lock();
    let now = jiff::Timestamp::now();
    let events = remove_user(&mut inner.world, &corp_id, &userid, "delete", now)?.1;
    publish(&mut inner, &corp_id, events);
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /_sim/corps/{corpId}/users/{userid}/leave`: the member resigns (离职):
/// gone from lists, `user/get` answers 60121, a leave record with reason `leave`.
async fn leave(
    State(s): State<Arc<Shared>>,
    Path((corp_id, userid)): Path<(String, String)>,
) -> AdminResult<crate::dingtalk::types::LeaveRecord> {
    let mut inner = s.lock();
    let now = jiff::Timestamp::now();
    let (record, events) = remove_user(&mut inner.world, &corp_id, &userid, "leave", now)?;
    publish(&mut inner, &corp_id, events);
    Ok(Json(record))
}

/// Whether a suite is installed in `corp_id` (and needs the marketplace
/// forms of the contact events).
fn has_suites(world: &super::World, corp_id: &str) -> bool {
    world.suites.installed_in(corp_id).next().is_some()
}

/// Removes a user (deleted or left) and answers the leave record and the
/// events: the internal apps' `user_leave_org {userId}` and the suites'
/// `{unionid, dingId}`.
fn remove_user(
    world: &mut super::World,
    corp_id: &str,
    userid: &str,
    reason: &str,
    now: jiff::Timestamp,
) -> Result<(crate::dingtalk::types::LeaveRecord, Vec<changes::Change>), AdminError> {
    let suites = has_suites(world, corp_id);
    let corp = world.corp_mut(corp_id)?;
    let unionid = corp.user(userid).ok().map(|u| u.unionid);
    let record = corp.remove_user(userid, reason, now)?;
    let mut events = changes::user_left(userid, now);
    if suites && let Some(unionid) = unionid {
        events.extend(changes::suite_user_left(
            &unionid,
            &changes::ding_id(corp_id, userid),
        ));
    }
    Ok((record, events))
}

/// Body of `PUT /_sim/corps/{corpId}/apps/{agentId}`. With `appKey` and
/// `appSecret` an unknown app is created.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AppBody {
    enabled: Option<bool>,
    visible_scope: Option<ScopeSpec>,
    app_key: Option<String>,
    app_secret: Option<String>,
    name: Option<String>,
}

async fn put_app(
    State(s): State<Arc<Shared>>,
    Path((corp_id, agent_id)): Path<(String, i64)>,
    Body(body): Body<AppBody>,
) -> AdminResult<AppSpec> {
    let mut inner = s.lock();
    let exists = inner.world.corp(&corp_id)?.apps.contains_key(&agent_id);
    if !exists {
        let (Some(app_key), Some(app_secret)) = (body.app_key.clone(), body.app_secret.clone())
        else {
            return Err(ModelError::AppNotFound(agent_id).into());
        };
        let app = AppSpec {
            agent_id,
            app_key,
            app_secret,
            name: body.name.clone().unwrap_or_default(),
            enabled: true,
            visible_scope: ScopeSpec::default(),
        };
        let key = app.app_key.clone();
        inner.world.add_app(&corp_id, app)?;
        // Listed at zero from now on, like the apps the world started with.
        inner.stats.app(&key);
    }
    let corp = inner.world.corp_mut(&corp_id)?;
    let before = corp
        .apps
        .get(&agent_id)
        .cloned()
        .ok_or(ModelError::AppNotFound(agent_id))?;
    corp.update_app(agent_id, body.enabled, body.visible_scope)?;
    let app = corp
        .apps
        .get(&agent_id)
        .cloned()
        .ok_or(ModelError::AppNotFound(agent_id))?;
    // A new app's first settings are no change DingTalk would announce.
    if exists {
        let inner = &mut *inner;
        let rng = &mut inner.rng;
        let events =
            changes::app_changed(&corp_id, &before, &app, || super::hub::random_id(rng, 32));
        publish(inner, &corp_id, events);
    }
    Ok(Json(app))
}

async fn get_faults(State(s): State<Arc<Shared>>) -> Json<super::Faults> {
    Json(s.lock().faults.clone())
}

/// `PUT /_sim/faults`: changes the given fields; answers the new settings.
async fn put_faults(
    State(s): State<Arc<Shared>>,
    Body(patch): Body<FaultsPatch>,
) -> AdminResult<super::Faults> {
    patch
        .check()
        .map_err(|e| AdminError(StatusCode::BAD_REQUEST, e))?;
    let mut inner = s.lock();
    inner.faults.apply(patch);
    Ok(Json(inner.faults.clone()))
}

async fn get_stats(State(s): State<Arc<Shared>>) -> Json<super::stats::SimStats> {
    Json(s.lock().stats.clone())
}

/// `POST /_sim/tokens/expire`: every issued token expires now.
async fn expire_tokens(State(s): State<Arc<Shared>>) -> StatusCode {
    s.lock().world.expire_tokens();
    StatusCode::NO_CONTENT
}

/// `POST /_sim/reset`: back to the initial world and faults; counters, rate
/// windows and tokens cleared.
async fn reset(State(s): State<Arc<Shared>>) -> StatusCode {
    let mut inner = s.lock();
    inner.world = inner.initial_world.clone();
    inner.world.expire_tokens();
    inner.faults = inner.initial_faults.clone();
    inner.limiter.clear();
    inner.stats = super::api::fresh_stats(&inner.initial_world);
    let faults = inner.initial_stream_faults.clone();
    inner.stream.reset(faults);
    inner.push.reset();
    StatusCode::NO_CONTENT
}

/// Body of `PUT …/apps/{agentId}/callback`: the console's HTTP push settings.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CallbackBody {
    url: String,
    token: String,
    aes_key: String,
}

/// `PUT /_sim/corps/{corpId}/apps/{agentId}/callback`: the app's events go
/// to `url` by HTTP push from now on, once it answers `check_url`
/// (refused with 400 otherwise, as DingTalk's console refuses to save it).
async fn put_callback(
    State(s): State<Arc<Shared>>,
    Path((corp_id, agent_id)): Path<(String, i64)>,
    Body(body): Body<CallbackBody>,
) -> AdminResult<Value> {
    let (app_key, target) = {
        let inner = s.lock();
        let app = inner
            .world
            .corp(&corp_id)?
            .apps
            .get(&agent_id)
            .cloned()
            .ok_or(ModelError::AppNotFound(agent_id))?;
        let target = inner
            .push
            .target(&app.app_key, &body.url, &body.token, &body.aes_key)
            .map_err(|e| AdminError(StatusCode::BAD_REQUEST, e))?;
        (app.app_key, target)
    };
    target.check().await.map_err(|e| {
        AdminError(
            StatusCode::BAD_REQUEST,
            format!("the URL did not answer check_url: {e}"),
        )
    })?;
    s.lock().push.register(&app_key, target);
    Ok(Json(json!({"appKey": app_key, "url": body.url})))
}

/// `DELETE /_sim/corps/{corpId}/apps/{agentId}/callback`: back to Stream mode.
async fn delete_callback(
    State(s): State<Arc<Shared>>,
    Path((corp_id, agent_id)): Path<(String, i64)>,
) -> AdminResult<Value> {
    let mut inner = s.lock();
    let app_key = inner
        .world
        .corp(&corp_id)?
        .apps
        .get(&agent_id)
        .map(|a| a.app_key.clone())
        .ok_or(ModelError::AppNotFound(agent_id))?;
    let removed = inner.push.unregister(&app_key);
    Ok(Json(json!({"appKey": app_key, "removed": removed})))
}

/// `GET /_sim/http-push`: registered URLs and push counters.
async fn get_http_push(State(s): State<Arc<Shared>>) -> Json<super::push::PushStats> {
    Json(s.lock().push.stats())
}

/// `GET /_sim/stream`: the Stream gateway's counters, open connections and
/// pending events.
async fn get_stream(State(s): State<Arc<Shared>>) -> Json<StreamStats> {
    Json(s.lock().stream.stats())
}

async fn get_stream_faults(State(s): State<Arc<Shared>>) -> Json<StreamFaults> {
    Json(s.lock().stream.faults.clone())
}

/// `PUT /_sim/stream/faults`: changes the given fields; answers the new settings.
async fn put_stream_faults(
    State(s): State<Arc<Shared>>,
    Body(patch): Body<StreamFaultsPatch>,
) -> AdminResult<StreamFaults> {
    patch
        .check()
        .map_err(|e| AdminError(StatusCode::BAD_REQUEST, e))?;
    let mut inner = s.lock();
    inner.stream.faults.apply(patch);
    Ok(Json(inner.stream.faults.clone()))
}

/// Body of `POST /_sim/stream/disconnect`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DisconnectBody {
    /// Only this app's connections (every app's when absent).
    #[serde(default)]
    app_key: Option<String>,
    /// Send a SYSTEM disconnect first (and close `disconnectGraceMs` later),
    /// or drop the connection without a word.
    #[serde(default = "yes")]
    system_message: bool,
    #[serde(default)]
    reason: Option<String>,
}

/// `POST /_sim/stream/disconnect`: ends open connections; answers
/// `{"connections": N}`.
async fn stream_disconnect(
    State(s): State<Arc<Shared>>,
    Body(body): Body<DisconnectBody>,
) -> Json<serde_json::Value> {
    let mut guard = s.lock();
    let inner = &mut *guard;
    let n = inner.stream.disconnect(
        body.app_key.as_deref(),
        body.system_message,
        body.reason.as_deref().unwrap_or("connection is expired"),
        &mut inner.rng,
        std::time::Instant::now(),
    );
    Json(serde_json::json!({ "connections": n }))
}
