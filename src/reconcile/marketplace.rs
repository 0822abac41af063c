//! Marketplace tenants (`spec.dingtalk.app: Marketplace`): the platform's one
//! app, a suite, installed by each enterprise from DingTalk's app market. The
//! suite's own client reads the installs (`apps/authInfo`); one client per
//! enterprise (its token from `corpAccessToken`) reads the visible scope the
//! enterprise's admin set and the directory. Nothing here writes to DingTalk.

use std::collections::HashMap;
use std::sync::Mutex;

use jiff::Timestamp;
use tokio::sync::mpsc;

use super::Reconciler;
use crate::{
    api::{DingTalkSpec, ObservedScope, TenantKey},
    core::{
        binding::{AppSeen, Binding, Identity},
        dirty::InstallState,
        scope::{self, DesiredScope},
        status::BindingFailure,
    },
    dingtalk::{self, AppClient, ErrorKind, Secret, Suite, TokenSource},
};

/// The suite and its clients: its own, and one per enterprise (so tokens and
/// pacing, per suite, enterprise and API, survive across reconciliations).
pub(super) struct SuiteClients {
    suite: Suite,
    own: AppClient,
    corps: Mutex<HashMap<String, AppClient>>,
}

impl SuiteClients {
    pub(super) fn new(client: &dingtalk::Client, suite: Suite) -> Self {
        Self {
            own: client.app(TokenSource::Suite(suite.clone())),
            suite,
            corps: Mutex::new(HashMap::new()),
        }
    }

    pub(super) fn suite(&self) -> &Suite {
        &self.suite
    }

    /// The client of the suite in enterprise `corp_id`.
    fn corp(&self, client: &dingtalk::Client, corp_id: &str) -> AppClient {
        let mut corps = self.corps.lock().unwrap_or_else(|p| p.into_inner());
        corps
            .entry(corp_id.to_owned())
            .or_insert_with(|| client.app(TokenSource::marketplace(self.suite.clone(), corp_id)))
            .clone()
    }
}

/// Store document holding a marketplace tenant's install state, as the
/// latest install event told it.
pub const INSTALL_DOCUMENT: &str = "marketplace-install";

#[derive(serde::Serialize, serde::Deserialize)]
struct KeptInstall {
    state: InstallState,
    at: String,
}

/// What the binding check of a marketplace tenant found: the enterprise's
/// client and the agentId it installed the app as.
pub(super) struct Installed {
    pub app: AppClient,
    pub agent_id: i64,
}

/// How a DingTalk error while reading a marketplace install reads.
fn install_failure(e: &dingtalk::Error) -> BindingFailure {
    match e.kind() {
        ErrorKind::SuiteTicket => BindingFailure::WaitingForSuiteTicket,
        ErrorKind::InvalidCredentials => BindingFailure::CredentialsRefused(e.to_string()),
        _ => BindingFailure::Unavailable(e.to_string()),
    }
}

impl Reconciler {
    /// The binding of a marketplace tenant: the enterprise installed the
    /// suite's app, as the agentId the spec and the ledger name (when they
    /// name one).
    pub(super) async fn marketplace_install(
        &self,
        dt: &DingTalkSpec,
        binding: Option<&Binding>,
    ) -> Result<Installed, BindingFailure> {
        let Some(suite) = &self.suite else {
            return Err(BindingFailure::NoSuite);
        };
        let info = suite
            .own
            .auth_info(&dt.corp_id)
            .await
            .map_err(|e| install_failure(&e))?;
        let Some(agent) = info.as_ref().and_then(|i| i.agent()) else {
            return Err(match binding {
                Some(_) => BindingFailure::Uninstalled {
                    corp_id: dt.corp_id.clone(),
                },
                None => BindingFailure::NotInstalled {
                    corp_id: dt.corp_id.clone(),
                },
            });
        };
        let expected = binding.and_then(|b| b.agent_id).or(dt.agent_id);
        if let Some(expected) = expected
            && expected != agent.agent_id
        {
            return Err(BindingFailure::InstalledAsOtherApp {
                corp_id: dt.corp_id.clone(),
                installed: agent.agent_id,
                expected,
            });
        }
        Ok(Installed {
            app: suite.corp(&self.dingtalk, &dt.corp_id),
            agent_id: agent.agent_id,
        })
    }

    /// Keeps the install's state an event told (`authInfo` shows none): the
    /// stop it tells is the proof an unbind needs, after any restart.
    pub(super) async fn keep_install_state(
        &self,
        key: &TenantKey,
        state: InstallState,
        now: Timestamp,
    ) -> Result<(), crate::store::Error> {
        let kept = KeptInstall {
            state,
            at: now.to_string(),
        };
        self.store
            .put_document(
                key,
                INSTALL_DOCUMENT,
                &serde_json::to_value(&kept).unwrap_or_default(),
            )
            .await
    }

    /// The install's state as the latest install event told it, if one did.
    pub(super) async fn kept_install_state(
        &self,
        key: &TenantKey,
    ) -> Result<Option<InstallState>, crate::store::Error> {
        let kept: Option<KeptInstall> = self.store.typed_document(key, INSTALL_DOCUMENT).await?;
        Ok(kept.map(|k| k.state))
    }

    /// What DingTalk shows of a marketplace tenant's bound app, for the
    /// unbind's precondition: uninstalled is proved by `authInfo` read with
    /// the suite's own token; stopped (停用) or removed by the event the
    /// suite's connection received for the organization (`told`). `Err`
    /// only when DingTalk could not answer.
    pub(super) async fn marketplace_app_seen(
        &self,
        bound: &Identity,
        told: Option<InstallState>,
    ) -> Result<AppSeen, dingtalk::Error> {
        let Some(suite) = &self.suite else {
            return Ok(AppSeen::NoCredentials(
                "no marketplace suite is configured (--suite-secret)".into(),
            ));
        };
        match suite.own.auth_info(&bound.corp_id).await {
            Ok(Some(_)) if told.is_some_and(InstallState::stopped) => Ok(AppSeen::Disabled),
            Ok(Some(_)) => Ok(AppSeen::Enabled),
            Ok(None) => Ok(AppSeen::Uninstalled),
            Err(e) if e.kind() == ErrorKind::InvalidCredentials => Ok(AppSeen::CredentialsRefused),
            Err(e) => Err(e),
        }
    }

    /// Takes the suite's newest ticket from the store, unless one came
    /// already: a restart does not wait hours for DingTalk's next.
    pub async fn restore_suite_ticket(&self) -> Result<(), crate::store::Error> {
        let Some(suite) = &self.suite else {
            return Ok(());
        };
        if suite.suite.ticket().is_none()
            && let Some(ticket) = self.store.suite_ticket(suite.suite.key()).await?
        {
            suite.suite.set_ticket(Secret::new(ticket));
            tracing::info!(
                suite = suite.suite.key(),
                "suite ticket restored from the store"
            );
        }
        Ok(())
    }

    /// Keeps each new suite ticket the events hub sends (it is the suite's
    /// newest already), until the sender goes. A ticket that cannot be
    /// written is logged: it is in use all the same, and DingTalk sends the
    /// next within hours.
    pub async fn keep_suite_tickets(&self, mut tickets: mpsc::UnboundedReceiver<Secret>) {
        while let Some(ticket) = tickets.recv().await {
            self.keep_suite_ticket(&ticket).await;
        }
    }

    /// Keeps one new suite ticket (see [`Reconciler::keep_suite_tickets`]).
    pub async fn keep_suite_ticket(&self, ticket: &Secret) {
        let Some(suite) = &self.suite else { return };
        if let Err(e) = self
            .store
            .put_suite_ticket(suite.suite.key(), ticket.expose())
            .await
        {
            tracing::warn!(suite = suite.suite.key(), error = %e, "cannot keep the suite ticket");
        }
    }
}

/// The visible scope the enterprise's admin set (`auth/scopes`), read with
/// the enterprise's client: the scope the directory follows.
pub(super) async fn read_scope(app: &AppClient) -> Result<ObservedScope, dingtalk::Error> {
    let scopes = app.auth_scopes().await?.auth_org_scopes;
    Ok(ObservedScope {
        dept_ids: scopes.authed_dept,
        user_ids: scopes.authed_user,
        only_admin_visible: false,
    })
}

/// What the admin must change in DingTalk's console for `observed` to be the
/// scope the spec expects; `None` when the spec expects none or it is.
pub(super) fn admin_steps(dt: &DingTalkSpec, observed: &ObservedScope) -> Option<String> {
    let expected = DesiredScope::from_spec(dt.visible_scope.as_ref()?);
    let delta = scope::delta(&expected, observed);
    (!delta.is_empty()).then(|| scope::admin_steps(&delta))
}
