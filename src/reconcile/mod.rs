//! The imperative shell: observe (DingTalk, the store), let `core` decide, act,
//! and report the status to write. Shared by `dingbind controller` (Tenants
//! from the API server) and `dingbind dev` (Tenants from files): the caller
//! resolves the referenced Secrets and writes the outcome where it belongs.

pub mod read;

use std::{
    collections::{BTreeMap, HashMap},
    sync::Mutex,
    time::Duration,
};

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::{
    api::{
        APPROVE_DELETIONS, DingTalkSpec, DirectoryStatus, Mode, ObservedScope, SYNC_REQUESTED_AT,
        SyncProgress, Tenant, TenantKey, TenantStatus, UnbindReason, condition, reason,
    },
    core::{
        binding::{self, CreatorCheck, LedgerState, Step},
        conditions,
        desired::{CreatorIdentity, desired_directory},
        directory::diff,
        guard::{Guarded, guard},
        schedule::{self, SyncClock, SyncTrigger},
        scope::{DesiredScope, ScopeDelta, delta},
    },
    dingtalk::{self, AppClient, ErrorKind, TokenSource},
    store::{Account, LedgerEntry, Store, SyncOutcome, SyncRunRecord},
};

/// The app credentials read from the Tenant's Secret.
#[derive(Clone)]
pub struct Credentials {
    pub app_key: String,
    pub app_secret: dingtalk::Secret,
}

/// What the caller found about the Secrets a Tenant references.
pub struct Secrets {
    /// `None` when the spec names no credentials; `Err(message)` when they cannot be read.
    pub credentials: Option<Result<Credentials, String>>,
    /// The creator's password Secret exists and holds a non-empty password.
    pub creator_password_set: bool,
}

impl Secrets {
    /// Resolves the Secrets `tenant` references, given a lookup of a Secret's
    /// data by name in the Tenant's namespace. Values never leave this function
    /// except as the credentials for the DingTalk client.
    pub fn resolve(
        tenant: &Tenant,
        lookup: impl Fn(&str) -> Option<BTreeMap<String, String>>,
    ) -> Self {
        let ns = tenant.metadata.namespace.as_deref().unwrap_or("default");
        let credentials = tenant.spec.dingtalk.as_ref().map(|d| {
            let r = &d.credentials_secret_ref;
            match lookup(&r.name) {
                None => Err(format!(
                    "Secret {ns}/{} (app credentials) does not exist.",
                    r.name
                )),
                Some(data) => match (data.get(&r.app_key_key), data.get(&r.app_secret_key)) {
                    (Some(k), Some(v)) if !k.is_empty() && !v.is_empty() => Ok(Credentials {
                        app_key: k.clone(),
                        app_secret: dingtalk::Secret::new(v.as_str()),
                    }),
                    _ => Err(format!(
                        "Secret {ns}/{} lacks the keys {} and {}.",
                        r.name, r.app_key_key, r.app_secret_key
                    )),
                },
            }
        });
        let creator_password_set = tenant
            .spec
            .creator
            .as_ref()
            .and_then(|c| c.password_secret_ref.as_ref())
            .and_then(|r| lookup(&r.name).and_then(|data| data.get(&r.key).cloned()))
            .is_some_and(|p| !p.is_empty());
        Secrets {
            credentials,
            creator_password_set,
        }
    }

    /// Names of the Secrets `tenant` references.
    pub fn referenced(tenant: &Tenant) -> Vec<String> {
        let creds = tenant
            .spec
            .dingtalk
            .as_ref()
            .map(|d| d.credentials_secret_ref.name.clone());
        let password = tenant
            .spec
            .creator
            .as_ref()
            .and_then(|c| c.password_secret_ref.as_ref())
            .map(|r| r.name.clone());
        let mut names: Vec<String> = creds.into_iter().chain(password).collect();
        names.dedup();
        names
    }
}

/// An Event for people to see (`kubectl describe`, `kubectl get events`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub warning: bool,
    pub reason: &'static str,
    pub note: String,
}

/// What one reconciliation decided: the status to write, the Events to emit,
/// and when to look again.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub status: TenantStatus,
    pub events: Vec<Event>,
    pub requeue_after: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("directory store: {0}")]
    Store(#[from] crate::store::Error),
}

/// How often a tenant waiting on something outside dingbind is checked again.
const RECHECK: Duration = Duration::from_secs(30);

/// The reconciler: a store, a DingTalk client, and one app handle per app
/// (so tokens and pacing survive across reconciliations).
pub struct Reconciler {
    store: Store,
    dingtalk: dingtalk::Client,
    apps: Mutex<HashMap<(String, String), AppClient>>,
}

impl Reconciler {
    pub fn new(store: Store, dingtalk: dingtalk::Client) -> Self {
        Self {
            store,
            dingtalk,
            apps: Mutex::new(HashMap::new()),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn dingtalk(&self) -> &dingtalk::Client {
        &self.dingtalk
    }

    fn app(&self, c: &Credentials) -> AppClient {
        let key = (c.app_key.clone(), c.app_secret.expose().to_string());
        let mut apps = self.apps.lock().unwrap_or_else(|p| p.into_inner());
        apps.entry(key)
            .or_insert_with(|| {
                self.dingtalk.app(TokenSource::internal_app(
                    c.app_key.clone(),
                    c.app_secret.clone(),
                ))
            })
            .clone()
    }

    /// One reconciliation of `tenant` at `now`. `progress` is told how a long sync advances.
    pub async fn reconcile(
        &self,
        tenant: &Tenant,
        secrets: &Secrets,
        now: Timestamp,
        progress: &(dyn Fn(&SyncProgress) + Send + Sync),
    ) -> Result<Outcome, Error> {
        let key = tenant.key();
        let ledger = self.ledger_state(&key).await?;
        let mut run = Run::new(tenant, now);
        match binding::next_step(&tenant.spec, &ledger, now) {
            Step::Suspended => {
                run.ready(
                    false,
                    reason::SUSPENDED,
                    "Reconciliation is suspended (spec.suspend).",
                );
                run.requeue = None;
            }
            Step::Public { unbound } => self.public(&key, &mut run, &ledger, unbound).await?,
            Step::RebindForbidden { unbound_at } => {
                let msg = format!(
                    "This tenant left DingTalk integration mode on {unbound_at} and can never return to it; set spec.mode: Public."
                );
                run.status.mode = Some(Mode::Public);
                run.status.directory = None;
                run.status.visible_scope = None;
                run.ready(false, reason::REBIND_FORBIDDEN, &msg);
                run.set(condition::BOUND, false, reason::REBIND_FORBIDDEN, &msg);
                run.warn(reason::REBIND_FORBIDDEN, msg);
                run.fill_unbound(&ledger);
                run.requeue = None;
            }
            Step::UnbindTrialExpired => {
                self.unbind(&key, &mut run, &ledger, UnbindReason::TrialExpired)
                    .await?
            }
            Step::RequestedUnbind => {
                self.requested_unbind(&key, tenant, secrets, &mut run, &ledger)
                    .await?
            }
            Step::Operate => {
                self.operate(&key, tenant, secrets, &mut run, &ledger, progress)
                    .await?
            }
        }
        self.store
            .put_document(
                &key,
                "status",
                &serde_json::to_value(&run.status).unwrap_or_default(),
            )
            .await?;
        Ok(run.finish())
    }

    /// Applies `deletionPolicy` when a Tenant is deleted. The ledger is kept either way.
    pub async fn cleanup(&self, tenant: &Tenant) -> Result<(), Error> {
        if tenant.spec.deletion_policy == crate::api::DeletionPolicy::Delete {
            self.store.delete_tenant_data(&tenant.key()).await?;
        }
        Ok(())
    }

    async fn ledger_state(&self, key: &TenantKey) -> Result<LedgerState, Error> {
        let mut state = LedgerState::default();
        for entry in self.store.ledger(key).await? {
            match entry {
                LedgerEntry::Bound { corp_id, .. } => state.bound_corp = Some(corp_id),
                LedgerEntry::Unbound { at, reason, .. } => {
                    state.unbound.get_or_insert((at, reason));
                }
            }
        }
        Ok(state)
    }

    async fn public(
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

    async fn unbind(
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

    async fn requested_unbind(
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

    async fn operate(
        &self,
        key: &TenantKey,
        tenant: &Tenant,
        secrets: &Secrets,
        run: &mut Run<'_>,
        ledger: &LedgerState,
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

        // 1. The binding: credentials work and the app exists in the organization.
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
                let reason = match e.kind() {
                    ErrorKind::InvalidCredentials => reason::INVALID_CREDENTIALS,
                    _ => reason::DINGTALK_UNAVAILABLE,
                };
                run.not_bound(reason, format!("Checking the binding: {e}"));
                return Ok(());
            }
        }
        if ledger.bound_corp.as_deref() != Some(dt.corp_id.as_str()) {
            self.store
                .append_ledger(
                    key,
                    LedgerEntry::Bound {
                        at: run.now,
                        corp_id: dt.corp_id.clone(),
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
        }
        self.store.put_account(key, &account_of(tenant)).await?;
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
        let previous = tenant.status.clone().unwrap_or_default();
        let last_sync = previous
            .directory
            .as_ref()
            .and_then(|d| d.last_sync_time.as_ref())
            .map(|t| t.0);
        // A sync whose removals are held back was made for its generation too.
        let synced_generation = conditions::get(&previous.conditions, condition::DIRECTORY_SYNCED)
            .filter(|c| c.status == "True" || c.reason == reason::DELETION_THRESHOLD_EXCEEDED)
            .and_then(|c| c.observed_generation);
        let annotations = tenant.metadata.annotations.clone().unwrap_or_default();
        let interval: Duration = tenant.spec.sync.interval.into();
        let clock = SyncClock {
            now: Some(run.now),
            last_sync,
            synced_generation,
            generation: tenant.metadata.generation,
            interval,
            requested: annotations.get(SYNC_REQUESTED_AT).map(String::as_str),
            handled_request: previous.last_handled_sync_request.as_deref(),
        };
        // A sync held by the guard runs again once its count is approved.
        let pending = previous
            .directory
            .as_ref()
            .map_or(0, |d| d.pending_deletions);
        let annotation = annotations.get(APPROVE_DELETIONS).map(String::as_str);
        let handled = previous.last_handled_approval.as_deref();
        let approved = schedule::fresh_approval(annotation, handled);
        // Forget a used approval once the annotation is removed.
        run.status.last_handled_approval = annotation.and(handled).map(str::to_owned);
        let trigger =
            schedule::sync_due(&clock)
                .or(schedule::held_sync_approved(pending, approved)
                    .then_some(SyncTrigger::SpecChanged));
        if let Some(SyncTrigger::Requested(value)) = &trigger {
            run.status.last_handled_sync_request = Some(value.clone());
        }
        let mut next_sync = last_sync.and_then(|t| t.checked_add(interval).ok());
        if let Some(trigger) = trigger {
            match self
                .sync(key, tenant, &app, &desired, approved, run, progress)
                .await?
            {
                Ok(()) => {}
                Err(e) => {
                    let msg = format!("Reading the directory from DingTalk ({trigger:?}): {e}");
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
            next_sync = run.now.checked_add(interval).ok();
            let released = run
                .status
                .directory
                .as_ref()
                .is_some_and(|d| d.pending_deletions == 0 && d.removed > 0);
            if approved.is_some() && released {
                run.status.last_handled_approval = annotation.map(str::to_owned);
            }
        }
        let trial = tenant.spec.trial.as_ref().map(|t| t.expires_at.0);
        run.requeue = Some(schedule::requeue_after(run.now, next_sync, trial));
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
            let msg = deletion_message(pending);
            run.ready(false, reason::DELETION_THRESHOLD_EXCEEDED, &msg);
        }
        Ok(())
    }

    async fn push_scope(
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

    /// A directory sync. The outer error is the store's; the inner one DingTalk's.
    #[allow(clippy::too_many_arguments)]
    async fn sync(
        &self,
        key: &TenantKey,
        tenant: &Tenant,
        app: &AppClient,
        scope: &DesiredScope,
        approved: Option<u64>,
        run: &mut Run<'_>,
        progress: &(dyn Fn(&SyncProgress) + Send + Sync),
    ) -> Result<Result<(), dingtalk::Error>, Error> {
        let started = std::time::Instant::now();
        let calls_before = app.stats().total_calls();
        let fetched = match read::read_scope(app, scope, run.now, progress).await {
            Ok(f) => f,
            Err(e) => {
                let record = sync_record(
                    run.now,
                    SyncOutcome::Failed,
                    Default::default(),
                    app.stats().total_calls() - calls_before,
                    0,
                    Some(e.to_string()),
                );
                self.store.record_sync_run(key, &record).await?;
                return Ok(Err(e));
            }
        };
        let plan = self.plan_sync(key, tenant, fetched, approved).await?;
        let guarded = &plan.guarded;
        let counts = (
            guarded.diff.add_members.len() as u64,
            guarded.diff.update_members.len() as u64,
            guarded.diff.remove_members.len() as u64,
        );
        let calls = app.stats().total_calls() - calls_before;
        let outcome = if guarded.held > 0 {
            SyncOutcome::Held
        } else {
            SyncOutcome::Succeeded
        };
        let record = sync_record(run.now, outcome, counts, calls, guarded.held, None);
        if guarded.diff.is_empty() {
            self.store.record_sync_run(key, &record).await?;
        } else {
            self.store.apply_sync(key, &guarded.diff, &record).await?;
        }
        let (members, departments) = (plan.members_after, plan.departments_after);
        run.status.directory = Some(DirectoryStatus {
            departments,
            members,
            last_sync_time: Some(Time(run.now)),
            last_sync_duration_ms: Some(started.elapsed().as_millis() as u64),
            added: counts.0,
            updated: counts.1,
            removed: counts.2,
            pending_deletions: guarded.held,
            progress: None,
        });
        if guarded.held > 0 {
            let msg = deletion_message(guarded.held);
            run.set(
                condition::DIRECTORY_SYNCED,
                false,
                reason::DELETION_THRESHOLD_EXCEEDED,
                &msg,
            );
            run.warn(reason::DELETION_THRESHOLD_EXCEEDED, msg);
        } else {
            let msg = format!(
                "{} members, {} departments; +{} ~{} -{}.",
                members, departments, counts.0, counts.1, counts.2
            );
            run.set(condition::DIRECTORY_SYNCED, true, reason::SYNCED, &msg);
            if counts != (0, 0, 0) {
                run.event(reason::SYNCED, format!("Directory synced: {msg}"));
            }
        }
        tracing::info!(tenant = %key, added = counts.0, updated = counts.1, removed = counts.2, held = guarded.held, calls, "directory synced");
        Ok(Ok(()))
    }
}

/// What a sync would change, before it is applied.
#[derive(Clone, Debug)]
pub struct SyncPlan {
    /// The diff after the accidental-delete guard, and the removals it holds back.
    pub guarded: Guarded,
    /// Members and departments in the directory once the diff is applied.
    pub members_after: u64,
    pub departments_after: u64,
}

impl Reconciler {
    /// Compares what was read in DingTalk with the store and applies the guard. Writes nothing.
    async fn plan_sync(
        &self,
        key: &TenantKey,
        tenant: &Tenant,
        fetched: read::Fetched,
        approved: Option<u64>,
    ) -> Result<SyncPlan, Error> {
        let creator = tenant
            .spec
            .creator
            .as_ref()
            .map(|c| CreatorIdentity {
                email: c.email.clone(),
                phone: c.phone.clone(),
            })
            .unwrap_or_default();
        let desired = desired_directory(fetched.departments, fetched.users, &creator);
        let current = self.store.directory(key).await?;
        let max = tenant
            .spec
            .sync
            .max_deletions_for(current.members.len() as u64);
        let guarded = guard(diff(&current, &desired), max, approved);
        let d = &guarded.diff;
        let members_after =
            (current.members.len() + d.add_members.len() - d.remove_members.len()) as u64;
        let departments_after = (current.departments.len() + d.add_departments.len()
            - d.remove_departments.len()) as u64;
        Ok(SyncPlan {
            guarded,
            members_after,
            departments_after,
        })
    }

    /// What reconciling `tenant` now would do, without doing it: the binding
    /// step, the scope delta and the directory changes (read from DingTalk).
    pub async fn plan(
        &self,
        tenant: &Tenant,
        secrets: &Secrets,
        now: Timestamp,
    ) -> Result<Plan, Error> {
        let key = tenant.key();
        let ledger = self.ledger_state(&key).await?;
        let step = binding::next_step(&tenant.spec, &ledger, now);
        let mut plan = Plan {
            step,
            scope: None,
            sync: None,
            problem: None,
        };
        if plan.step != Step::Operate {
            return Ok(plan);
        }
        let (Some(dt), Some(Ok(creds))) = (tenant.spec.dingtalk.as_ref(), &secrets.credentials)
        else {
            plan.problem =
                Some("the app credentials are not available; DingTalk was not read".into());
            return Ok(plan);
        };
        let app = self.app(creds);
        let desired = DesiredScope::from_spec(&dt.visible_scope);
        let fetched = match app.get_scopes(dt.agent_id).await {
            Ok(observed) => {
                plan.scope = Some(delta(&desired, &observed_scope(observed)));
                read::read_scope(&app, &desired, now, &|_| {}).await
            }
            Err(e) => Err(e),
        };
        match fetched {
            Ok(fetched) => plan.sync = Some(self.plan_sync(&key, tenant, fetched, None).await?),
            Err(e) => plan.problem = Some(format!("reading DingTalk: {e}")),
        }
        Ok(plan)
    }
}

/// The result of [`Reconciler::plan`].
#[derive(Clone, Debug)]
pub struct Plan {
    pub step: Step,
    pub scope: Option<ScopeDelta>,
    pub sync: Option<SyncPlan>,
    /// Why DingTalk could not be read, if it could not.
    pub problem: Option<String>,
}

fn deletion_message(held: u64) -> String {
    format!(
        "The sync would remove {held} members, more than spec.sync.maxDeletions allows; the removals are held back. Check DingTalk, then approve with the annotation {APPROVE_DELETIONS}: \"{held}\"."
    )
}

fn sync_record(
    now: Timestamp,
    outcome: SyncOutcome,
    counts: (u64, u64, u64),
    calls: u64,
    held: u64,
    message: Option<String>,
) -> SyncRunRecord {
    SyncRunRecord {
        started: now,
        finished: Timestamp::now().max(now),
        outcome,
        added: counts.0,
        updated: counts.1,
        removed: counts.2,
        calls,
        held_deletions: held,
        message,
    }
}

fn observed_scope(s: dingtalk::types::AppScopes) -> ObservedScope {
    ObservedScope {
        dept_ids: s.dept_ids,
        user_ids: s.user_ids,
        only_admin_visible: s.only_admin_visible,
    }
}

fn account_of(tenant: &Tenant) -> Account {
    let creator = tenant.spec.creator.clone().unwrap_or_default();
    Account {
        mode: Mode::DingTalk,
        corp_id: tenant.spec.dingtalk.as_ref().map(|d| d.corp_id.clone()),
        creator_email: creator.email,
        creator_phone: creator.phone,
        password_set: creator.password_secret_ref.is_some(),
    }
}

/// The status being built by one reconciliation.
struct Run<'a> {
    tenant: &'a Tenant,
    now: Timestamp,
    status: TenantStatus,
    events: Vec<Event>,
    requeue: Option<Duration>,
}

impl<'a> Run<'a> {
    fn new(tenant: &'a Tenant, now: Timestamp) -> Self {
        // What was observed before stays until this reconciliation observes
        // otherwise (an unbind clears the directory, a sync replaces it).
        let previous = tenant.status.clone().unwrap_or_default();
        let status = TenantStatus {
            observed_generation: tenant.metadata.generation,
            mode: previous.mode,
            conditions: previous.conditions,
            last_handled_sync_request: previous.last_handled_sync_request,
            bound_corp_id: previous.bound_corp_id,
            visible_scope: previous.visible_scope,
            directory: previous.directory.map(|d| DirectoryStatus {
                progress: None,
                ..d
            }),
            ..Default::default()
        };
        Self {
            tenant,
            now,
            status,
            events: Vec::new(),
            requeue: Some(RECHECK),
        }
    }

    fn set(&mut self, type_: &str, ok: bool, reason: &str, message: &str) {
        conditions::set(
            &mut self.status.conditions,
            type_,
            ok,
            reason,
            message,
            self.tenant.metadata.generation,
            self.now,
        );
    }

    fn ready(&mut self, ok: bool, reason: &str, message: &str) {
        self.set(condition::READY, ok, reason, message);
    }

    fn not_bound(&mut self, reason: &'static str, message: String) {
        self.set(condition::BOUND, false, reason, &message);
        self.ready(false, reason, &message);
        self.warn(reason, message);
        self.requeue = Some(RECHECK);
    }

    fn event(&mut self, reason: &'static str, note: String) {
        self.events.push(Event {
            warning: false,
            reason,
            note,
        });
    }

    fn warn(&mut self, reason: &'static str, note: String) {
        self.events.push(Event {
            warning: true,
            reason,
            note,
        });
    }

    fn fill_unbound(&mut self, ledger: &LedgerState) {
        if let Some((at, why)) = ledger.unbound {
            self.status.unbound_at = Some(Time(at));
            self.status.unbind_reason = Some(why);
        }
        self.status.bound_corp_id = None;
    }

    fn finish(self) -> Outcome {
        Outcome {
            status: self.status,
            events: self.events,
            requeue_after: self.requeue,
        }
    }
}
