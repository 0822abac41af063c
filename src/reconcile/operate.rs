//! DingTalk mode: check the binding, make the app's visible scope the declared
//! one, and sync the directory when a sync is due. Each step observes, lets
//! `core` decide, and acts; the status transitions are `core::status`'s.

use std::time::Duration;

use super::{
    Error, Reconciler, Secrets, incremental::Ran, marketplace, outcome::Run,
    sync::creator_identity, unbind::account_of,
};
use crate::{
    api::{DingTalkSpec, ObservedScope, SyncProgress, Tenant, TenantKey},
    core::{
        binding::{self, Binding},
        schedule::{self, SyncKind, SyncTrigger},
        scope::{DesiredScope, delta},
        status::{BindingFailure, NewBinding},
    },
    dingtalk::{self, AppClient, ErrorKind},
    store::LedgerEntry,
};

/// Store document: whether the bound app runs (enabled; a marketplace app
/// not stopped), as the last binding check saw it.
pub const APP_DOCUMENT: &str = "app";

/// The body of [`APP_DOCUMENT`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AppRunning {
    pub running: bool,
}

/// How a DingTalk error during the binding check reads.
fn binding_failure(e: &dingtalk::Error) -> BindingFailure {
    match e.kind() {
        ErrorKind::InvalidCredentials => BindingFailure::CredentialsRefused(e.to_string()),
        _ => BindingFailure::Unavailable(e.to_string()),
    }
}

impl Reconciler {
    pub(super) async fn operate(
        &self,
        key: &TenantKey,
        tenant: &Tenant,
        secrets: &Secrets,
        run: &mut Run<'_>,
        binding: Option<&Binding>,
        progress: &(dyn Fn(&SyncProgress) + Send + Sync),
    ) -> Result<(), Error> {
        let dirty = run.events;
        let Some(dt) = tenant.spec.dingtalk.as_ref() else {
            run.status.dingtalk_spec_missing();
            return Ok(());
        };
        // 1. The binding, and the client that serves the tenant.
        let Some((app, agent_id, enabled)) = self.check_binding(dt, secrets, binding, run).await
        else {
            return Ok(());
        };
        let running = if dt.is_marketplace() {
            self.kept_install_state(key)
                .await?
                .is_none_or(|s| !s.stopped())
        } else {
            enabled
        };
        self.note_app_running(key, running).await?;
        // The binding identity (and the trial it was bound with) goes into the
        // ledger once; next_step never operates on a spec that differs from it.
        let new = if binding.is_none_or(|b| b.agent_id.is_none()) {
            self.store
                .append_ledger(
                    key,
                    LedgerEntry::Bound {
                        at: run.status.now(),
                        corp_id: dt.corp_id.clone(),
                        agent_id: Some(agent_id),
                        trial_ends_at: tenant.spec.trial.as_ref().map(|t| t.expires_at.0),
                    },
                )
                .await?;
            // A new platform account may bind an organization another one left.
            let left_by = match binding {
                None => self.store.unbound_from_corp(&dt.corp_id, key).await?,
                Some(_) => Vec::new(),
            };
            Some(NewBinding {
                agent_id,
                left_by: left_by.iter().map(ToString::to_string).collect(),
            })
        } else {
            None
        };
        self.store
            .put_account(key, &account_of(tenant, secrets.creator_password_set))
            .await?;
        run.status.bound(&dt.corp_id, new);

        // 2. The visible scope: an internal app's is made the declared one; a
        //    marketplace app's is read as the enterprise's admin set it.
        let scope_before = run.status.previous().visible_scope.clone();
        let desired = match self.scope_step(&app, dt, agent_id, run).await {
            Some(desired) => desired,
            None => return Ok(()),
        };
        // A marketplace app's scope changed in DingTalk's console since the
        // last look: the whole scope is read again.
        let scope_moved = dt.is_marketplace()
            && scope_before.is_some_and(|before| DesiredScope::from_observed(&before) != desired);

        // 3. The directory, when a sync is due.
        let annotations = tenant.metadata.annotations.clone().unwrap_or_default();
        let interval: Duration = tenant.spec.sync.interval.into();
        let decision = schedule::sync_decision(
            run.status.previous(),
            &annotations,
            tenant.metadata.generation,
            interval,
            run.status.now(),
        );
        run.status.sync_decided(&decision);
        let mut kind = schedule::sync_kind(&decision, dirty);
        if scope_moved && !matches!(kind, SyncKind::Full(_)) {
            kind = SyncKind::Full(SyncTrigger::Events);
        }
        if kind == SyncKind::Incremental {
            let creator = creator_identity(tenant);
            match self
                .sync_incremental(key, tenant, &app, &desired, &creator, dirty, run)
                .await?
            {
                Ok(Ran::Applied) => {}
                Ok(Ran::NeedsFullSync) => kind = SyncKind::Full(SyncTrigger::Events),
                Err(e) => {
                    run.status.sync_failed(&SyncTrigger::Events, &e.to_string());
                    return Ok(());
                }
            }
        }
        if let SyncKind::Full(trigger) = &kind
            && let Err(e) = self
                .sync(
                    key,
                    tenant,
                    &app,
                    &desired,
                    decision.approved,
                    run,
                    progress,
                )
                .await?
        {
            run.status.sync_failed(trigger, &e.to_string());
            return Ok(());
        }
        let trial = binding::trial_end(&tenant.spec, binding);
        run.status.operated(&dt.corp_id, &decision, trial);
        Ok(())
    }

    /// Checks the binding: an internal app's credentials are an app of the
    /// declared organization (checked once per app and organization) and the
    /// app exists; a marketplace app is installed there. The client that
    /// serves the tenant and the app's agentId, or `None` with the failure
    /// in the status. The flag: an internal app is enabled (a marketplace
    /// app's state is the events').
    async fn check_binding(
        &self,
        dt: &DingTalkSpec,
        secrets: &Secrets,
        binding: Option<&Binding>,
        run: &mut Run<'_>,
    ) -> Option<(AppClient, i64, bool)> {
        if dt.is_marketplace() {
            return match self.marketplace_install(dt, binding).await {
                Ok(installed) => Some((installed.app, installed.agent_id, true)),
                Err(failure) => {
                    run.status.binding_failed(failure);
                    None
                }
            };
        }
        let creds = match &secrets.credentials {
            Some(Ok(c)) => c,
            Some(Err(msg)) => {
                run.status
                    .binding_failed(BindingFailure::Secret(msg.clone()));
                return None;
            }
            None => {
                run.status.binding_failed(BindingFailure::NoSecretNamed);
                return None;
            }
        };
        let Some(agent_id) = dt.agent_id else {
            run.status.dingtalk_spec_missing();
            return None;
        };
        let app = self.app(creds);
        if !self.corp_checked(creds, &dt.corp_id) {
            match app.belongs_to_corp(&dt.corp_id).await {
                Ok(true) => self.remember_corp(creds, &dt.corp_id),
                Ok(false) => {
                    run.status.binding_failed(BindingFailure::CorpMismatch {
                        corp_id: dt.corp_id.clone(),
                    });
                    return None;
                }
                Err(e) => {
                    run.status.binding_failed(binding_failure(&e));
                    return None;
                }
            }
        }
        match app.app_enabled(agent_id).await {
            Ok(Some(enabled)) => Some((app, agent_id, enabled)),
            Ok(None) => {
                run.status.binding_failed(BindingFailure::AppNotFound {
                    corp_id: dt.corp_id.clone(),
                    agent_id,
                });
                None
            }
            Err(e) => {
                run.status.binding_failed(binding_failure(&e));
                None
            }
        }
    }

    /// Keeps whether the bound app runs, as this binding check saw it, for
    /// the login API (written only when it changes).
    async fn note_app_running(&self, key: &TenantKey, running: bool) -> Result<(), Error> {
        let kept: Option<AppRunning> = self.store.typed_document(key, APP_DOCUMENT).await?;
        if kept.is_none_or(|k| k.running != running) {
            let body = serde_json::to_value(AppRunning { running }).unwrap_or_default();
            self.store.put_document(key, APP_DOCUMENT, &body).await?;
        }
        Ok(())
    }

    /// The scope step: the scope the directory follows, or `None` with the
    /// failure in the status.
    async fn scope_step(
        &self,
        app: &AppClient,
        dt: &DingTalkSpec,
        agent_id: i64,
        run: &mut Run<'_>,
    ) -> Option<DesiredScope> {
        let dirty = run.events;
        if dt.is_marketplace() {
            return match marketplace::read_scope(app).await {
                Ok(observed) => {
                    if dirty.scope {
                        run.status.scope_changed_in_dingtalk(&dirty.scope_operators);
                    }
                    let desired = DesiredScope::from_observed(&observed);
                    let steps = marketplace::admin_steps(dt, &observed);
                    run.status
                        .scope_read(observed, dt.visible_scope.is_some(), steps);
                    Some(desired)
                }
                Err(e) => {
                    run.status.scope_failed(&e.to_string());
                    None
                }
            };
        }
        let Some(scope) = dt.visible_scope.as_ref() else {
            run.status.dingtalk_spec_missing();
            return None;
        };
        let desired = DesiredScope::from_spec(scope);
        match self.push_scope(app, agent_id, &desired).await {
            Ok((observed, corrected)) => {
                if dirty.scope {
                    run.status.scope_changed_in_dingtalk(&dirty.scope_operators);
                }
                run.status.scope_in_sync(observed, corrected);
                Some(desired)
            }
            Err(e) => {
                run.status.scope_failed(&e.to_string());
                None
            }
        }
    }

    /// Makes the app's visible scope the declared one: the scope DingTalk
    /// shows afterwards, and what was corrected (`None`: it already was).
    pub(super) async fn push_scope(
        &self,
        app: &AppClient,
        agent_id: i64,
        desired: &DesiredScope,
    ) -> Result<(ObservedScope, Option<String>), dingtalk::Error> {
        let observed = observed_scope(app.get_scopes(agent_id).await?);
        let change = delta(desired, &observed);
        if change.is_empty() {
            return Ok((observed, None));
        }
        let wire = dingtalk::types::ScopeDelta {
            add_user_ids: change.add_user_ids.clone(),
            del_user_ids: change.del_user_ids.clone(),
            add_dept_ids: change.add_dept_ids.clone(),
            del_dept_ids: change.del_dept_ids.clone(),
            only_admin_visible: change.only_admin_visible,
            ..Default::default()
        };
        app.update_scopes(agent_id, &wire).await?;
        let observed = observed_scope(app.get_scopes(agent_id).await?);
        Ok((observed, Some(change.summary())))
    }
}

pub(super) fn observed_scope(s: dingtalk::types::AppScopes) -> ObservedScope {
    ObservedScope {
        dept_ids: s.dept_ids,
        user_ids: s.user_ids,
        only_admin_visible: s.only_admin_visible,
    }
}
