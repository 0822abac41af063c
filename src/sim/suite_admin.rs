//! The admin API of marketplace apps (suites), under `/_sim/suites` and
//! `/_sim/corps/{corpId}/suites/{suiteKey}`: create a suite, read it, issue
//! a new suite ticket, and install, change, stop, restore, remove and
//! uninstall it in a corp, each with the event DingTalk sends the suite
//! (`changes.rs`). The conventions of `admin.rs`: JSON, `{"error": …}` with
//! 400, 404 or 409; not counted, not limited, never faulted.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::admin::{AdminError, AdminResult, Body};
use super::changes;
use super::gateway::{publish, publish_ticket};
use super::model::marketplace_key;
use super::org_file::ScopeSpec;
use super::suites::{Install, InstallRequest, InstallState, Lifecycle, Suite};
use super::{Inner, Shared};

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_sim/suites", post(create_suite))
        .route("/_sim/suites/{suite_key}", get(get_suite))
        .route("/_sim/suites/{suite_key}/ticket", post(new_ticket))
        .route(
            "/_sim/corps/{corp_id}/suites/{suite_key}",
            put(install).delete(uninstall),
        )
        .route(
            "/_sim/corps/{corp_id}/suites/{suite_key}/stop",
            post(|s: State<Arc<Shared>>, p: InstallPath| lifecycle(s, p, Lifecycle::Stop)),
        )
        .route(
            "/_sim/corps/{corp_id}/suites/{suite_key}/restore",
            post(|s: State<Arc<Shared>>, p: InstallPath| lifecycle(s, p, Lifecycle::Restore)),
        )
        .route(
            "/_sim/corps/{corp_id}/suites/{suite_key}/remove",
            post(|s: State<Arc<Shared>>, p: InstallPath| lifecycle(s, p, Lifecycle::Remove)),
        )
        .route(
            "/_sim/corps/{corp_id}/suites/{suite_key}/scope",
            put(put_scope),
        )
}

/// A JSON body whose fields are all optional: an empty body (no
/// content-type needed) reads as `{}`; one that does not decode is 400.
struct OptionalBody<T>(T);

impl<S, T> axum::extract::FromRequest<S> for OptionalBody<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AdminError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, AdminError> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| AdminError(StatusCode::BAD_REQUEST, e.body_text()))?;
        let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        serde_json::from_slice(text)
            .map(OptionalBody)
            .map_err(|e| AdminError(StatusCode::BAD_REQUEST, e.to_string()))
    }
}

/// `{corpId}/suites/{suiteKey}` in a path.
type InstallPath = Path<(String, String)>;

/// One install, as the admin API shows it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InstallView {
    corp_id: String,
    agent_id: i64,
    state: InstallState,
    removed: bool,
    scope: ScopeView,
    admin_user_id: Option<String>,
}

/// A visible scope: `deptIds` and `userIds` (always both).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ScopeView {
    dept_ids: Vec<i64>,
    user_ids: Vec<String>,
}

fn install_view(corp_id: &str, i: &Install) -> InstallView {
    InstallView {
        corp_id: corp_id.to_owned(),
        agent_id: i.agent_id,
        state: i.state,
        removed: i.removed,
        scope: ScopeView {
            dept_ids: i.scope.dept_ids.clone(),
            user_ids: i.scope.user_ids.clone(),
        },
        admin_user_id: i.admin_user_id.clone(),
    }
}

/// A suite, as `GET /_sim/suites/{suiteKey}` shows it (not its secret).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SuiteView {
    suite_key: String,
    suite_id: i64,
    name: String,
    ticket_period_secs: u64,
    suite_ticket: Option<String>,
    unified_app_id: String,
    installs: Vec<InstallView>,
}

fn suite_view(s: &Suite) -> SuiteView {
    SuiteView {
        suite_key: s.suite_key.clone(),
        suite_id: s.suite_id,
        name: s.name.clone(),
        ticket_period_secs: s.ticket_period.map_or(0, |p| p.as_secs()),
        suite_ticket: s.ticket().map(str::to_owned),
        unified_app_id: s.unified_app_id(),
        installs: s
            .installs
            .iter()
            .map(|(corp, i)| install_view(corp, i))
            .collect(),
    }
}

/// Body of `POST /_sim/suites`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SuiteBody {
    suite_key: String,
    suite_secret: String,
    #[serde(default)]
    ticket_period_secs: u64,
    #[serde(default)]
    name: Option<String>,
}

/// `POST /_sim/suites`: a new suite (no ticket yet); 409 when the key is
/// taken (by a suite or an app).
async fn create_suite(
    State(s): State<Arc<Shared>>,
    Body(body): Body<SuiteBody>,
) -> Result<(StatusCode, Json<Value>), AdminError> {
    let mut inner = s.lock();
    let suite_id = inner.world.add_suite(
        &body.suite_key,
        &body.suite_secret,
        body.ticket_period_secs,
        body.name,
    )?;
    inner.stats.app(&body.suite_key);
    Ok((
        StatusCode::CREATED,
        Json(json!({"suiteKey": body.suite_key, "suiteId": suite_id})),
    ))
}

/// `GET /_sim/suites/{suiteKey}`: the suite, its current ticket and installs.
async fn get_suite(
    State(s): State<Arc<Shared>>,
    Path(suite_key): Path<String>,
) -> AdminResult<SuiteView> {
    Ok(Json(suite_view(s.lock().world.suites.get(&suite_key)?)))
}

/// `POST /_sim/suites/{suiteKey}/ticket`: a new ticket now (the old one is
/// refused from now on), pushed to the suite's Stream connections.
async fn new_ticket(
    State(s): State<Arc<Shared>>,
    Path(suite_key): Path<String>,
) -> AdminResult<Value> {
    let mut guard = s.lock();
    let inner = &mut *guard;
    let Inner { world, rng, .. } = &mut *inner;
    let ticket = world
        .suites
        .issue_ticket(&suite_key, std::time::Instant::now(), || {
            super::hub::random_id(rng, 32)
        })?;
    publish_ticket(inner, &suite_key, &ticket, None);
    Ok(Json(json!({ "suiteTicket": ticket })))
}

/// Body of `PUT /_sim/corps/{corpId}/suites/{suiteKey}`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct InstallBody {
    #[serde(default)]
    agent_id: Option<i64>,
    #[serde(default)]
    scope: Option<ScopeSpec>,
    #[serde(default)]
    admin_user_id: Option<String>,
}

/// The install's view, or 404.
fn view_of(inner: &Inner, suite_key: &str, corp_id: &str) -> AdminResult<InstallView> {
    let install = inner.world.suites.install_of(suite_key, corp_id)?;
    Ok(Json(install_view(corp_id, install)))
}

/// `PUT /_sim/corps/{corpId}/suites/{suiteKey}`: the corp installs the suite
/// (`org_suite_auth`), or changes its install (`org_suite_change`).
async fn install(
    State(s): State<Arc<Shared>>,
    Path((corp_id, suite_key)): Path<(String, String)>,
    OptionalBody(body): OptionalBody<InstallBody>,
) -> AdminResult<InstallView> {
    let mut inner = s.lock();
    let req = InstallRequest {
        agent_id: body.agent_id,
        scope: body.scope,
        admin_user_id: body.admin_user_id,
    };
    let done = inner.world.install_suite(&suite_key, &corp_id, req)?;
    inner.stats.app(&marketplace_key(&suite_key, &corp_id));
    let event = {
        let world = &inner.world;
        let suite = world.suites.get(&suite_key)?;
        let corp = world.corp(&corp_id)?;
        let install = world.suites.install_of(&suite_key, &corp_id)?;
        changes::suite_authorized(done.first, suite, &corp_id, &corp.name, install)
    };
    publish(&mut inner, &corp_id, vec![event]);
    view_of(&inner, &suite_key, &corp_id)
}

/// `DELETE /_sim/corps/{corpId}/suites/{suiteKey}`: the corp uninstalls the
/// suite (`org_suite_relieve`); its tokens there are revoked.
async fn uninstall(
    State(s): State<Arc<Shared>>,
    Path((corp_id, suite_key)): Path<(String, String)>,
) -> Result<StatusCode, AdminError> {
    let mut inner = s.lock();
    inner.world.uninstall_suite(&suite_key, &corp_id)?;
    publish(
        &mut inner,
        &corp_id,
        vec![changes::suite_relieved(&suite_key)],
    );
    Ok(StatusCode::NO_CONTENT)
}

/// `POST …/suites/{suiteKey}/stop|restore|remove`: the corp's admin stops
/// (停用), restores or deletes the app; the event only when it changed.
async fn lifecycle(
    State(s): State<Arc<Shared>>,
    Path((corp_id, suite_key)): Path<(String, String)>,
    change: Lifecycle,
) -> AdminResult<InstallView> {
    let mut inner = s.lock();
    if inner
        .world
        .suites
        .set_lifecycle(&suite_key, &corp_id, change)?
    {
        let agent_id = inner
            .world
            .suites
            .install_of(&suite_key, &corp_id)?
            .agent_id;
        let event = changes::micro_app(&suite_key, change.event_type(), agent_id);
        publish(&mut inner, &corp_id, vec![event]);
    }
    view_of(&inner, &suite_key, &corp_id)
}

/// `PUT …/suites/{suiteKey}/scope` `{deptIds, userIds}`: the corp's admin
/// replaces the app's visible scope (`org_micro_app_scope_update`, only
/// when it changed).
async fn put_scope(
    State(s): State<Arc<Shared>>,
    Path((corp_id, suite_key)): Path<(String, String)>,
    Body(scope): Body<ScopeSpec>,
) -> AdminResult<InstallView> {
    let mut inner = s.lock();
    if inner.world.suites.set_scope(&suite_key, &corp_id, scope)? {
        let agent_id = inner
            .world
            .suites
            .install_of(&suite_key, &corp_id)?
            .agent_id;
        let event = changes::micro_app(&suite_key, "org_micro_app_scope_update", agent_id);
        publish(&mut inner, &corp_id, vec![event]);
    }
    view_of(&inner, &suite_key, &corp_id)
}
