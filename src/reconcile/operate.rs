//! DingTalk mode: check the binding, make the app's visible scope the declared
//! one, and sync the directory when a sync is due.

use std::time::Duration;

use super::{
    Error, RECHECK, Reconciler, Secrets, outcome::Run, sync::deletion_message, unbind::account_of,
};
use crate::{
    api::{
        APPROVE_DELETIONS, DingTalkSpec, Mode, ObservedScope, SyncProgress, Tenant, TenantKey,
        condition, reason,
    },
    core::{
        binding::{self, Binding},
        schedule,
        scope::{DesiredScope, delta},
    },
    dingtalk::{self, AppClient, ErrorKind},
    store::LedgerEntry,
};

/// The condition reason of a failed binding check.
fn binding_reason(e: &dingtalk::Error) -> &'static str {
    match e.kind() {
        ErrorKind::InvalidCredentials => reason::INVALID_CREDENTIALS,
        _ => reason::DINGTALK_UNAVAILABLE,
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
        run.status.mode = Some(Mode::DingTalk);
        let Some(dt) = tenant.spec.dingtalk.as_ref() else {
            run.ready(
                false,
                reason::APP_NOT_FOUND,
                "spec.dingtalk is required in DingTalk mode.",
            );
            return Ok(());
        };
        let creds = match &secrets.credentials {
            Some(Ok(c)) => c,
            Some(Err(msg)) => {
                run.not_bound(reason::SECRET_NOT_FOUND, msg.clone());
                return Ok(());
            }
            None => {
                run.not_bound(
                    reason::SECRET_NOT_FOUND,
                    "No app credentials Secret is named.".into(),
                );
                return Ok(());
            }
        };
        let app = self.app(creds);

        // 1. The binding: the credentials are an app of the declared organization
        //    (checked once per app and organization), and the app (agentId) exists.
        if !self.corp_checked(creds, &dt.corp_id) {
            match app.belongs_to_corp(&dt.corp_id).await {
                Ok(true) => self.remember_corp(creds, &dt.corp_id),
                Ok(false) => {
                    run.not_bound(
                        reason::CORP_MISMATCH,
                        format!(
                            "The app credentials belong to another DingTalk organization than {}; check spec.dingtalk.corpId and the credentials Secret.",
                            dt.corp_id
                        ),
                    );
                    return Ok(());
                }
                Err(e) => {
                    run.not_bound(binding_reason(&e), format!("Checking the binding: {e}"));
                    return Ok(());
                }
            }
        }
        match app.app_enabled(dt.agent_id).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                run.not_bound(
                    reason::APP_NOT_FOUND,
                    format!(
                        "App {} is not an app of DingTalk organization {}.",
                        dt.agent_id, dt.corp_id
                    ),
                );
                return Ok(());
            }
            Err(e) => {
                run.not_bound(binding_reason(&e), format!("Checking the binding: {e}"));
                return Ok(());
            }
        }
        // The binding identity (and the trial it was bound with) goes into the
        // ledger once; next_step never operates on a spec that differs from it.
        if binding.is_none_or(|b| b.agent_id.is_none()) {
            self.store
                .append_ledger(
                    key,
                    LedgerEntry::Bound {
                        at: run.now,
                        corp_id: dt.corp_id.clone(),
                        agent_id: Some(dt.agent_id),
                        trial_ends_at: tenant.spec.trial.as_ref().map(|t| t.expires_at.0),
                    },
                )
                .await?;
            run.event(
                reason::BOUND,
                format!(
                    "Bound to DingTalk organization {}, app {}.",
                    dt.corp_id, dt.agent_id
                ),
            );
            // A new platform account may bind an organization another one left: say so.
            let left = match binding {
                None => self.store.unbound_from_corp(&dt.corp_id, key).await?,
                Some(_) => Vec::new(),
            };
            if !left.is_empty() {
                let names: Vec<String> = left.iter().map(ToString::to_string).collect();
                run.event(
                    reason::ORGANIZATION_BOUND_AGAIN,
                    format!(
                        "DingTalk organization {} was unbound from tenant {} before; this tenant is another platform account and binds it anew.",
                        dt.corp_id,
                        names.join(", ")
                    ),
                );
            }
        }
        self.store
            .put_account(key, &account_of(tenant, secrets.creator_password_set))
            .await?;
        run.status.bound_corp_id = Some(dt.corp_id.clone());
        run.set(
            condition::BOUND,
            true,
            reason::BOUND,
            &format!("Bound to DingTalk organization {}.", dt.corp_id),
        );

        // 2. The visible scope.
        let desired = DesiredScope::from_spec(&dt.visible_scope);
        if let Err(e) = self.push_scope(&app, dt, &desired, run).await {
            run.set(
                condition::SCOPE_IN_SYNC,
                false,
                reason::DINGTALK_UNAVAILABLE,
                &format!("Updating the visible scope: {e}"),
            );
            run.ready(
                false,
                reason::DINGTALK_UNAVAILABLE,
                &format!("Updating the visible scope: {e}"),
            );
            run.requeue = Some(RECHECK);
            return Ok(());
        }

        // 3. The directory, when a sync is due.
        let annotations = tenant.metadata.annotations.clone().unwrap_or_default();
        let interval: Duration = tenant.spec.sync.interval.into();
        let decision = schedule::sync_decision(
            &run.previous,
            &annotations,
            tenant.metadata.generation,
            interval,
            run.now,
        );
        let approved = decision.approved;
        run.status.last_handled_sync_request = decision.last_handled_sync_request.clone();
        run.status.last_handled_approval = decision.handled_approval(false);
        if let Some(trigger) = &decision.trigger {
            match self
                .sync(key, tenant, &app, &desired, approved, run, progress)
                .await?
            {
                Ok(()) => {}
                Err(e) => {
                    let msg = format!("Reading the directory from DingTalk ({trigger:?}): {e}");
                    // Not synced for this spec: the next reconciliation syncs again.
                    if let Some(d) = run.status.directory.as_mut() {
                        d.synced_generation = None;
                    }
                    run.set(
                        condition::DIRECTORY_SYNCED,
                        false,
                        reason::DINGTALK_UNAVAILABLE,
                        &msg,
                    );
                    run.ready(false, reason::DINGTALK_UNAVAILABLE, &msg);
                    run.requeue = Some(RECHECK);
                    return Ok(());
                }
            }
            let released = run
                .status
                .directory
                .as_ref()
                .is_some_and(|d| d.pending_deletions == 0 && d.removed > 0);
            run.status.last_handled_approval = decision.handled_approval(released);
        }
        let trial = binding::trial_end(&tenant.spec, binding);
        run.requeue = Some(schedule::requeue_after(run.now, decision.next_sync, trial));
        let pending = run
            .status
            .directory
            .as_ref()
            .map_or(0, |d| d.pending_deletions);
        if pending == 0 {
            let members = run.status.directory.as_ref().map_or(0, |d| d.members);
            run.ready(
                true,
                reason::RECONCILED,
                &format!(
                    "Bound to {}; {members} members in the directory.",
                    dt.corp_id
                ),
            );
        } else {
            let mut msg = deletion_message(pending);
            // An approval of another count lets nothing through: say so, so
            // that the person who set it sees why nothing happened.
            if let Some(count) = approved.filter(|&n| n != pending) {
                let note = format!(
                    "The approval {APPROVE_DELETIONS}: \"{count}\" was not used: {pending} removals are held back, not {count}."
                );
                msg = format!("{msg} {note}");
                run.warn(reason::APPROVAL_MISMATCH, note);
            }
            run.ready(false, reason::DELETION_THRESHOLD_EXCEEDED, &msg);
        }
        Ok(())
    }

    pub(super) async fn push_scope(
        &self,
        app: &AppClient,
        dt: &DingTalkSpec,
        desired: &DesiredScope,
        run: &mut Run<'_>,
    ) -> Result<(), dingtalk::Error> {
        let observed = observed_scope(app.get_scopes(dt.agent_id).await?);
        let change = delta(desired, &observed);
        if change.is_empty() {
            run.status.visible_scope = Some(observed);
            run.set(
                condition::SCOPE_IN_SYNC,
                true,
                reason::SCOPE_MATCHES,
                "The app's visible scope in DingTalk is the declared one.",
            );
            return Ok(());
        }
        let wire = dingtalk::types::ScopeDelta {
            add_user_ids: change.add_user_ids.clone(),
            del_user_ids: change.del_user_ids.clone(),
            add_dept_ids: change.add_dept_ids.clone(),
            del_dept_ids: change.del_dept_ids.clone(),
            only_admin_visible: change.only_admin_visible,
            ..Default::default()
        };
        app.update_scopes(dt.agent_id, &wire).await?;
        run.status.visible_scope = Some(observed_scope(app.get_scopes(dt.agent_id).await?));
        let msg = format!(
            "Corrected the app's visible scope in DingTalk: {}.",
            change.summary()
        );
        run.set(condition::SCOPE_IN_SYNC, true, reason::SCOPE_UPDATED, &msg);
        run.event(reason::SCOPE_UPDATED, msg);
        Ok(())
    }
}

pub(super) fn observed_scope(s: dingtalk::types::AppScopes) -> ObservedScope {
    ObservedScope {
        dept_ids: s.dept_ids,
        user_ids: s.user_ids,
        only_admin_visible: s.only_admin_visible,
    }
}
