//! Leaving DingTalk mode: a requested unbind (once its preconditions are
//! proved), the trial's automatic unbind, and public mode afterwards. The
//! ledger is written first: from then on the tenant can never return to
//! DingTalk mode, and every later reconciliation finishes what a crash left.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::{Error, Reconciler, Secrets, outcome::Run};
use crate::{
    api::{CONFIRM_APP_REMOVED, Mode, Tenant, TenantKey, UnbindReason, UnbindRecordSpec},
    core::{
        binding::{self, AppProof, AppSeen, CreatorCheck, Identity, Proofs, Unbind},
        status::{self, RepairSource},
    },
    dingtalk::{self, ErrorKind},
    store::{Account, LedgerEntry},
};

impl Reconciler {
    /// The tenant is unbound (some record proves it): repair the missing
    /// records, finish the unbind, and stay public.
    pub(super) async fn unbound(
        &self,
        key: &TenantKey,
        run: &mut Run<'_>,
        secrets: &Secrets,
        proofs: &Proofs,
        unbind: Unbind,
        rebind_requested: bool,
    ) -> Result<(), Error> {
        let repairs = proofs.repairs(self.keeps_records);
        let source = if proofs.record.is_some() {
            RepairSource::UnbindRecord
        } else {
            RepairSource::TenantStatus
        };
        if repairs.ledger {
            let corp_id = if unbind.corp_id.is_empty() {
                run.tenant
                    .spec
                    .dingtalk
                    .as_ref()
                    .map(|d| d.corp_id.clone())
                    .unwrap_or_default()
            } else {
                unbind.corp_id.clone()
            };
            self.store
                .append_ledger(
                    key,
                    LedgerEntry::Unbound {
                        at: unbind.at,
                        corp_id,
                        agent_id: unbind.agent_id,
                        reason: unbind.reason,
                        confirmation: None,
                    },
                )
                .await?;
            tracing::warn!("{}", status::ledger_repair_message(&unbind, source));
        }
        if repairs.record {
            tracing::warn!("{}", status::record_repair_message(&unbind));
        }
        self.finish_unbind(key, run.tenant, secrets).await?;
        self.keep_record(run, &unbind, None);
        run.status
            .stays_unbound(&unbind, repairs, source, rebind_requested);
        Ok(())
    }

    /// Carries out an unbind of `bound`: the ledger first, then the directory
    /// and the account. `confirmation` is the person's confirmation that the
    /// app was removed, when that is what proved the precondition.
    pub(super) async fn unbind(
        &self,
        key: &TenantKey,
        run: &mut Run<'_>,
        secrets: &Secrets,
        bound: &Identity,
        why: UnbindReason,
        confirmation: Option<String>,
    ) -> Result<(), Error> {
        let unbind = Unbind {
            at: run.status.now(),
            reason: why,
            corp_id: bound.corp_id.clone(),
            agent_id: bound.agent_id,
        };
        // The ledger first: from here on the tenant can never return to DingTalk mode.
        self.store
            .append_ledger(
                key,
                LedgerEntry::Unbound {
                    at: unbind.at,
                    corp_id: unbind.corp_id.clone(),
                    agent_id: unbind.agent_id,
                    reason: why,
                    confirmation: confirmation.clone(),
                },
            )
            .await?;
        self.finish_unbind(key, run.tenant, secrets).await?;
        self.keep_record(run, &unbind, confirmation);
        run.status.unbound_now(&unbind);
        tracing::info!(
            corp = bound.corp_id,
            agent_id = bound.agent_id,
            reason = why.as_str(),
            "tenant unbound"
        );
        Ok(())
    }

    /// The end state of every unbind, reached idempotently from wherever an
    /// earlier attempt stopped: the directory cleared, then the account public.
    /// A public account means the directory was cleared before it.
    async fn finish_unbind(
        &self,
        key: &TenantKey,
        tenant: &Tenant,
        secrets: &Secrets,
    ) -> Result<(), Error> {
        let account = self.store.account(key).await?;
        if account.as_ref().is_some_and(|a| a.mode == Mode::Public) {
            return Ok(());
        }
        self.store.clear_directory(key).await?;
        let mut account =
            account.unwrap_or_else(|| account_of(tenant, secrets.creator_password_set));
        account.mode = Mode::Public;
        self.store.put_account(key, &account).await?;
        Ok(())
    }

    /// Names the `UnbindRecord` that must exist, where the runner keeps them.
    fn keep_record(&self, run: &mut Run<'_>, unbind: &Unbind, confirmation: Option<String>) {
        if !self.keeps_records {
            return;
        }
        let key = run.tenant.key();
        run.record = Some(UnbindRecordSpec {
            tenant_namespace: key.namespace,
            tenant_name: key.name,
            tenant_uid: run.tenant.metadata.uid.clone(),
            corp_id: unbind.corp_id.clone(),
            agent_id: unbind.agent_id,
            unbound_at: Time(unbind.at),
            reason: unbind.reason,
            confirmation,
        });
    }

    pub(super) async fn requested_unbind(
        &self,
        key: &TenantKey,
        tenant: &Tenant,
        secrets: &Secrets,
        run: &mut Run<'_>,
        bound: &Identity,
    ) -> Result<(), Error> {
        let creator = tenant.spec.creator.clone().unwrap_or_default();
        let check = CreatorCheck {
            has_contact: creator.email.is_some() || creator.phone.is_some(),
            has_password: secrets.creator_password_set,
        };
        if let Some(unmet) = binding::creator_unmet(&check) {
            run.status.unbind_waiting(bound, &unmet);
            return Ok(());
        }
        // The app's state needs DingTalk: looked up only once the creator passes.
        let marketplace = tenant
            .spec
            .dingtalk
            .as_ref()
            .is_some_and(|d| d.is_marketplace());
        let seen = if marketplace {
            let told = self.kept_install_state(key).await?;
            self.marketplace_app_seen(bound, told).await
        } else {
            self.app_seen(secrets, bound).await
        };
        let seen = match seen {
            Ok(seen) => seen,
            Err(e) => {
                run.status.unbind_unchecked(bound, &e.to_string());
                return Ok(());
            }
        };
        let annotations = tenant.metadata.annotations.as_ref();
        let confirmation = annotations
            .and_then(|a| a.get(CONFIRM_APP_REMOVED))
            .map(String::as_str);
        match binding::app_disabled(bound, &seen, confirmation) {
            Err(unmet) => {
                run.status.unbind_waiting(bound, &unmet);
                Ok(())
            }
            Ok(AppProof::Seen) => {
                self.unbind(key, run, secrets, bound, UnbindReason::Requested, None)
                    .await
            }
            Ok(AppProof::Confirmed(value)) => {
                run.status.app_removal_confirmed(bound, &value);
                self.unbind(
                    key,
                    run,
                    secrets,
                    bound,
                    UnbindReason::Requested,
                    Some(value),
                )
                .await
            }
        }
    }

    /// What DingTalk shows of the bound app, read with the tenant's credentials
    /// and checked against the bound organization. `Err` only when DingTalk
    /// could not answer (the unbind waits).
    async fn app_seen(
        &self,
        secrets: &Secrets,
        bound: &Identity,
    ) -> Result<AppSeen, dingtalk::Error> {
        let creds = match &secrets.credentials {
            Some(Ok(c)) => c,
            Some(Err(why)) => return Ok(AppSeen::NoCredentials(why.clone())),
            None => {
                return Ok(AppSeen::NoCredentials(
                    "no app credentials Secret is named".into(),
                ));
            }
        };
        let app = self.app(creds);
        let refused = |e: dingtalk::Error| match e.kind() {
            ErrorKind::InvalidCredentials => Ok(AppSeen::CredentialsRefused),
            _ => Err(e),
        };
        match app.belongs_to_corp(&bound.corp_id).await {
            Ok(true) => {}
            Ok(false) => return Ok(AppSeen::OtherOrganization),
            Err(e) => return refused(e),
        }
        let Some(agent_id) = bound.agent_id else {
            return Ok(AppSeen::NotListed);
        };
        match app.app_enabled(agent_id).await {
            Ok(Some(true)) => Ok(AppSeen::Enabled),
            Ok(Some(false)) => Ok(AppSeen::Disabled),
            Ok(None) => Ok(AppSeen::NotListed),
            Err(e) => refused(e),
        }
    }
}

/// The account a bound tenant has on the platform.
pub(super) fn account_of(tenant: &Tenant, password_set: bool) -> Account {
    let creator = tenant.spec.creator.clone().unwrap_or_default();
    Account {
        mode: Mode::DingTalk,
        corp_id: tenant.spec.dingtalk.as_ref().map(|d| d.corp_id.clone()),
        creator_email: creator.email,
        creator_phone: creator.phone,
        password_set,
    }
}
