//! Leaving DingTalk mode: a requested unbind (after its preconditions), the
//! trial's automatic unbind, and public mode afterwards. The ledger is
//! written first: from then on the tenant can never return to DingTalk mode.

use super::{outcome::Run, *};

impl Reconciler {
    pub(super) async fn public(
        &self,
        key: &TenantKey,
        run: &mut Run<'_>,
        ledger: &LedgerState,
        unbound: Option<(Timestamp, UnbindReason)>,
    ) -> Result<(), Error> {
        if unbound.is_some() {
            // An unbind interrupted between the ledger and the directory: finish it.
            let dir = self.store.directory(key).await?;
            if !dir.members.is_empty() || !dir.departments.is_empty() {
                self.store.clear_directory(key).await?;
            }
        }
        run.status.mode = Some(Mode::Public);
        run.fill_unbound(ledger);
        run.status.directory = None;
        run.status.visible_scope = None;
        // Keep what the unbind wrote, so its reason and message stay visible.
        let (bound_reason, bound_message) = match unbound {
            Some((at, why)) => (
                reason::UNBOUND,
                format!(
                    "Unbound from DingTalk on {at} ({}); for good.",
                    why.as_str()
                ),
            ),
            None => (
                reason::PUBLIC_MODE,
                "The tenant is in public mode.".to_string(),
            ),
        };
        run.set(condition::BOUND, false, bound_reason, &bound_message);
        run.ready(
            true,
            reason::PUBLIC_MODE,
            "The tenant is in public mode; accounts are managed by the tenant.",
        );
        run.requeue = None;
        Ok(())
    }

    pub(super) async fn unbind(
        &self,
        key: &TenantKey,
        run: &mut Run<'_>,
        ledger: &LedgerState,
        why: UnbindReason,
    ) -> Result<(), Error> {
        let corp = ledger
            .bound_corp
            .clone()
            .or_else(|| run.tenant.spec.dingtalk.as_ref().map(|d| d.corp_id.clone()))
            .unwrap_or_default();
        // The ledger first: from here on the tenant can never return to DingTalk mode.
        self.store
            .append_ledger(
                key,
                LedgerEntry::Unbound {
                    at: run.now,
                    corp_id: corp.clone(),
                    reason: why,
                },
            )
            .await?;
        self.store.clear_directory(key).await?;
        let mut account = self
            .store
            .account(key)
            .await?
            .unwrap_or_else(|| account_of(run.tenant));
        account.mode = Mode::Public;
        self.store.put_account(key, &account).await?;
        run.status.mode = Some(Mode::Public);
        run.status.unbound_at = Some(Time(run.now));
        run.status.unbind_reason = Some(why);
        run.status.directory = None;
        run.status.visible_scope = None;
        let msg = match why {
            UnbindReason::TrialExpired => format!(
                "The trial expired: unbound from DingTalk organization {corp}; the tenant is now in public mode for good."
            ),
            UnbindReason::Requested => format!(
                "Unbound from DingTalk organization {corp}; the tenant is now in public mode for good. Set up the org structure again."
            ),
        };
        run.set(condition::BOUND, false, reason::UNBOUND, &msg);
        run.ready(true, reason::PUBLIC_MODE, &msg);
        run.event(
            if why == UnbindReason::TrialExpired {
                reason::TRIAL_EXPIRED
            } else {
                reason::UNBOUND
            },
            msg,
        );
        run.requeue = None;
        tracing::info!(tenant = %key, corp, reason = why.as_str(), "tenant unbound");
        Ok(())
    }

    pub(super) async fn requested_unbind(
        &self,
        key: &TenantKey,
        tenant: &Tenant,
        secrets: &Secrets,
        run: &mut Run<'_>,
        ledger: &LedgerState,
    ) -> Result<(), Error> {
        run.status.mode = Some(Mode::DingTalk);
        run.status.bound_corp_id = ledger.bound_corp.clone();
        let creator = tenant.spec.creator.clone().unwrap_or_default();
        let check = CreatorCheck {
            has_contact: creator.email.is_some() || creator.phone.is_some(),
            has_password: secrets.creator_password_set,
        };
        // The app status needs DingTalk; look it up only once the creator passes.
        let app_enabled = if check.has_contact && check.has_password {
            match (tenant.spec.dingtalk.as_ref(), &secrets.credentials) {
                (Some(dt), Some(Ok(creds))) => match self.app(creds).app_enabled(dt.agent_id).await
                {
                    Ok(enabled) => enabled.unwrap_or(false),
                    Err(e) => {
                        run.ready(
                            false,
                            reason::DINGTALK_UNAVAILABLE,
                            &format!("Cannot check the app's status in DingTalk: {e}"),
                        );
                        run.requeue = Some(RECHECK);
                        return Ok(());
                    }
                },
                // Without credentials the app status cannot be checked: it counts as enabled.
                _ => true,
            }
        } else {
            true
        };
        let agent_id = tenant.spec.dingtalk.as_ref().map_or(0, |d| d.agent_id);
        match binding::unbind_precondition(&check, || app_enabled, agent_id) {
            Some(unmet) => {
                run.ready(false, unmet.reason(), unmet.message());
                run.requeue = Some(RECHECK);
                Ok(())
            }
            None => self.unbind(key, run, ledger, UnbindReason::Requested).await,
        }
    }
}

pub(super) fn account_of(tenant: &Tenant) -> Account {
    let creator = tenant.spec.creator.clone().unwrap_or_default();
    Account {
        mode: Mode::DingTalk,
        corp_id: tenant.spec.dingtalk.as_ref().map(|d| d.corp_id.clone()),
        creator_email: creator.email,
        creator_phone: creator.phone,
        password_set: creator.password_secret_ref.is_some(),
    }
}
