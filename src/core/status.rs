//! The status a reconciliation writes, built by named transitions. Each
//! transition says what happened (bound, a binding check failed, a sync held
//! back removals, the tenant unbound…) and chooses every condition, reason,
//! message and Event that says it, and when to look again. The shell
//! observes, calls one transition per fact, and acts; it never picks a
//! reason or words a message.

use std::{collections::BTreeSet, time::Duration};

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::{
    binding::{Identity, Repairs, Unbind, Unmet},
    channel::{self, ChannelFacts},
    conditions, kstatus,
    schedule::{self, SyncDecision, SyncTrigger},
};
use crate::api::{
    APPROVE_DELETIONS, CONFIRM_APP_REMOVED, DirectoryStatus, Mode, ObservedScope, TenantStatus,
    UnbindReason, condition, reason,
};

/// How often a tenant waiting on something outside dingbind is checked again.
pub const RECHECK: Duration = Duration::from_secs(30);

/// An Event for people to see (`kubectl describe`, `kubectl get events`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub warning: bool,
    pub reason: &'static str,
    pub note: String,
}

/// What the transitions decided: the status to write, the Events to emit and
/// when to look again (`None`: only when the Tenant changes).
#[derive(Clone, Debug, PartialEq)]
pub struct Decided {
    pub status: TenantStatus,
    pub events: Vec<Event>,
    pub requeue_after: Option<Duration>,
}

/// Why the binding of a tenant in DingTalk mode could not be checked, or
/// does not hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BindingFailure {
    /// The spec names no app credentials Secret.
    NoSecretNamed,
    /// The named Secret is missing or lacks a key (the message says which).
    Secret(String),
    /// The credentials are an app of another organization than `corp_id`.
    CorpMismatch { corp_id: String },
    /// The organization has no app `agent_id`.
    AppNotFound { corp_id: String, agent_id: i64 },
    /// DingTalk refused the credentials.
    CredentialsRefused(String),
    /// DingTalk did not answer.
    Unavailable(String),
    /// A marketplace tenant, but no suite is configured (`--suite-secret`).
    NoSuite,
    /// A marketplace tenant waits for the suite's first ticket.
    WaitingForSuiteTicket,
    /// The enterprise has not installed the marketplace app.
    NotInstalled { corp_id: String },
    /// The enterprise uninstalled the marketplace app of a bound tenant,
    /// which no one asked to unbind: the directory is kept.
    Uninstalled { corp_id: String },
    /// The enterprise installed the marketplace app as another agentId than
    /// the spec or the ledger names.
    InstalledAsOtherApp {
        corp_id: String,
        installed: i64,
        expected: i64,
    },
}

/// A tenant newly bound by this reconciliation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewBinding {
    pub agent_id: i64,
    /// Tenants (`namespace/name`) that unbound this organization before: this
    /// tenant is another platform account binding it anew.
    pub left_by: Vec<String>,
}

/// What a directory sync did, as the status shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncResult {
    /// Departments and members in the directory after the sync.
    pub departments: u64,
    pub members: u64,
    /// Members added, updated and removed.
    pub added: u64,
    pub updated: u64,
    pub removed: u64,
    /// Removals the accidental-delete guard held back.
    pub held: u64,
    /// Absent members DingTalk did not confirm gone: kept.
    pub unconfirmed: u64,
    pub duration: Duration,
}

/// Where an unbind missing from the store's ledger was read again from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RepairSource {
    UnbindRecord,
    TenantStatus,
}

/// The status being built by one reconciliation of a tenant.
pub struct StatusBuilder {
    generation: Option<i64>,
    now: Timestamp,
    previous: TenantStatus,
    status: TenantStatus,
    events: Vec<Event>,
    requeue: Option<Duration>,
}

impl StatusBuilder {
    /// Starts from `previous`, the status before this reconciliation: what
    /// was observed stays until this reconciliation observes otherwise (an
    /// unbind clears the directory, a sync replaces it), except the progress
    /// of a sync, which ends with the reconciliation that ran it.
    pub fn new(generation: Option<i64>, previous: TenantStatus, now: Timestamp) -> Self {
        let status = TenantStatus {
            observed_generation: generation,
            mode: previous.mode,
            conditions: previous.conditions.clone(),
            last_handled_sync_request: previous.last_handled_sync_request.clone(),
            bound_corp_id: previous.bound_corp_id.clone(),
            // An unbind stays in status for good.
            unbound_at: previous.unbound_at.clone(),
            unbind_reason: previous.unbind_reason,
            visible_scope: previous.visible_scope.clone(),
            directory: previous.directory.clone().map(|d| DirectoryStatus {
                progress: None,
                ..d
            }),
            ..Default::default()
        };
        Self {
            generation,
            now,
            previous,
            status,
            events: Vec::new(),
            requeue: Some(RECHECK),
        }
    }

    /// The status before this reconciliation.
    pub fn previous(&self) -> &TenantStatus {
        &self.previous
    }

    /// The status built so far.
    pub fn status(&self) -> &TenantStatus {
        &self.status
    }

    pub fn now(&self) -> Timestamp {
        self.now
    }

    // -- Binding steps -------------------------------------------------------

    /// `spec.suspend`: nothing is done but a trial's end, on time. The spec
    /// asks for nothing more, so `Ready` is `True` (reason `Suspended`): a
    /// GitOps wait (kstatus reads any `Ready=False` as in progress) ends.
    pub fn suspended(&mut self, trial_end: Option<Timestamp>) {
        self.ready(
            true,
            reason::SUSPENDED,
            "Reconciliation is suspended (spec.suspend); a trial still ends on time.",
        );
        self.requeue = self.until(trial_end);
    }

    /// Public mode, never bound: accounts are the tenant's.
    pub fn public(&mut self) {
        self.status.mode = Some(Mode::Public);
        self.status.directory = None;
        self.status.visible_scope = None;
        self.set(
            condition::BOUND,
            false,
            reason::PUBLIC_MODE,
            "The tenant is in public mode.",
        );
        self.ready(
            true,
            reason::PUBLIC_MODE,
            "The tenant is in public mode; accounts are managed by the tenant.",
        );
        self.requeue = None;
    }

    /// The trial ended before the tenant was ever bound: it is not bound.
    pub fn never_bound(&mut self, ended: Timestamp) {
        let msg = format!(
            "The trial ended on {ended}, before the tenant was bound: it is not bound to DingTalk. Remove spec.trial once the tenant has paid to bind it."
        );
        self.set(condition::BOUND, false, reason::TRIAL_EXPIRED, &msg);
        self.ready(false, reason::TRIAL_EXPIRED, &msg);
        self.requeue = None;
    }

    /// The spec names another organization or app than the one bound: nothing
    /// is done on either until the spec names the bound one again.
    pub fn binding_changed(
        &mut self,
        bound: &Identity,
        declared: Option<&Identity>,
        trial_end: Option<Timestamp>,
    ) {
        let declared = declared.map_or_else(|| "no DingTalk app".to_string(), Identity::to_string);
        let msg = format!(
            "The tenant is bound to {bound}, but the spec names {declared}: the binding identity cannot change while the tenant is bound, and nothing is done on either. Set spec.dingtalk.corpId to {}{} again.",
            bound.corp_id,
            bound
                .agent_id
                .map_or_else(String::new, |a| format!(" and agentId to {a}"))
        );
        self.set(condition::BOUND, false, reason::BINDING_CHANGED, &msg);
        self.ready(false, reason::BINDING_CHANGED, &msg);
        self.warn(reason::BINDING_CHANGED, msg);
        self.requeue = self.until(trial_end);
    }

    // -- DingTalk mode -------------------------------------------------------

    /// DingTalk mode without `spec.dingtalk`.
    pub fn dingtalk_spec_missing(&mut self) {
        self.status.mode = Some(Mode::DingTalk);
        self.ready(
            false,
            reason::APP_NOT_FOUND,
            "spec.dingtalk is required in DingTalk mode.",
        );
    }

    /// The binding could not be checked, or does not hold.
    pub fn binding_failed(&mut self, failure: BindingFailure) {
        self.status.mode = Some(Mode::DingTalk);
        let (reason, message) = match failure {
            BindingFailure::NoSecretNamed => (
                reason::SECRET_NOT_FOUND,
                "No app credentials Secret is named.".to_string(),
            ),
            BindingFailure::Secret(why) => (reason::SECRET_NOT_FOUND, why),
            BindingFailure::CorpMismatch { corp_id } => (
                reason::CORP_MISMATCH,
                format!(
                    "The app credentials belong to another DingTalk organization than {corp_id}; check spec.dingtalk.corpId and the credentials Secret."
                ),
            ),
            BindingFailure::AppNotFound { corp_id, agent_id } => (
                reason::APP_NOT_FOUND,
                format!("App {agent_id} is not an app of DingTalk organization {corp_id}."),
            ),
            BindingFailure::CredentialsRefused(e) => (
                reason::INVALID_CREDENTIALS,
                format!("Checking the binding: {e}"),
            ),
            BindingFailure::Unavailable(e) => (
                reason::DINGTALK_UNAVAILABLE,
                format!("Checking the binding: {e}"),
            ),
            BindingFailure::NoSuite => (
                reason::SUITE_NOT_CONFIGURED,
                "The tenant uses the marketplace app, but no suite is configured: start the controller with --suite-secret NAMESPACE/NAME (a Secret with suiteKey and suiteSecret).".to_string(),
            ),
            BindingFailure::WaitingForSuiteTicket => {
                // A wait, not a failure: no Warning.
                let message = "Waiting for the marketplace app's suite ticket, which DingTalk sends on the suite's Stream connection (at connect, then about every 5 hours); the binding is checked as soon as it comes.";
                self.set(
                    condition::BOUND,
                    false,
                    reason::WAITING_FOR_SUITE_TICKET,
                    message,
                );
                self.ready(false, reason::WAITING_FOR_SUITE_TICKET, message);
                self.requeue = Some(RECHECK);
                return;
            }
            BindingFailure::NotInstalled { corp_id } => {
                // Waiting for a person: no Warning.
                let message = format!(
                    "The platform's app is not installed in DingTalk organization {corp_id}: its admin installs it from DingTalk's app market (workbench, 从应用中心添加). The tenant is bound within seconds of the install."
                );
                self.set(condition::BOUND, false, reason::NOT_INSTALLED, &message);
                self.ready(false, reason::NOT_INSTALLED, &message);
                self.requeue = Some(RECHECK);
                return;
            }
            BindingFailure::Uninstalled { corp_id } => (
                reason::APP_UNINSTALLED,
                format!(
                    "The platform's app was uninstalled from DingTalk organization {corp_id}. The directory is kept until a person decides: request the unbind (spec.mode: Public), or have the organization's admin install the app again."
                ),
            ),
            BindingFailure::InstalledAsOtherApp {
                corp_id,
                installed,
                expected,
            } => (
                reason::APP_NOT_FOUND,
                format!(
                    "DingTalk organization {corp_id} installed the platform's app as app {installed}, but the tenant is bound to app {expected}; nothing is done until they agree."
                ),
            ),
        };
        self.set(condition::BOUND, false, reason, &message);
        self.ready(false, reason, &message);
        self.warn(reason, message);
        self.requeue = Some(RECHECK);
    }

    /// The binding holds: the credentials are an app of `corp_id`. `new`: the
    /// tenant was bound by this reconciliation.
    pub fn bound(&mut self, corp_id: &str, new: Option<NewBinding>) {
        self.status.mode = Some(Mode::DingTalk);
        self.status.bound_corp_id = Some(corp_id.to_string());
        self.set(
            condition::BOUND,
            true,
            reason::BOUND,
            &format!("Bound to DingTalk organization {corp_id}."),
        );
        let Some(new) = new else { return };
        self.event(
            reason::BOUND,
            format!(
                "Bound to DingTalk organization {corp_id}, app {}.",
                new.agent_id
            ),
        );
        if !new.left_by.is_empty() {
            self.event(
                reason::ORGANIZATION_BOUND_AGAIN,
                format!(
                    "DingTalk organization {corp_id} was unbound from tenant {} before; this tenant is another platform account and binds it anew.",
                    new.left_by.join(", ")
                ),
            );
        }
    }

    /// The visible scope could not be read or written.
    pub fn scope_failed(&mut self, error: &str) {
        let msg = format!("Updating the visible scope: {error}");
        self.set(
            condition::SCOPE_IN_SYNC,
            false,
            reason::DINGTALK_UNAVAILABLE,
            &msg,
        );
        self.ready(false, reason::DINGTALK_UNAVAILABLE, &msg);
        self.requeue = Some(RECHECK);
    }

    /// The app's visible scope in DingTalk is the declared one: it was
    /// (`corrected: None`), or it is now, after the change `corrected` says.
    pub fn scope_in_sync(&mut self, observed: ObservedScope, corrected: Option<String>) {
        self.status.visible_scope = Some(observed);
        match corrected {
            None => self.set(
                condition::SCOPE_IN_SYNC,
                true,
                reason::SCOPE_MATCHES,
                "The app's visible scope in DingTalk is the declared one.",
            ),
            Some(summary) => {
                let msg = format!("Corrected the app's visible scope in DingTalk: {summary}.");
                self.set(condition::SCOPE_IN_SYNC, true, reason::SCOPE_UPDATED, &msg);
                self.event(reason::SCOPE_UPDATED, msg);
            }
        }
    }

    /// A marketplace app's visible scope, as the enterprise's admin set it in
    /// DingTalk (dingbind never writes it): the directory follows it.
    /// `admin_steps` is what the admin must change for it to be the scope
    /// the spec expects (`None`: no expectation, or it already is).
    pub fn scope_read(
        &mut self,
        observed: ObservedScope,
        expected: bool,
        admin_steps: Option<String>,
    ) {
        self.status.visible_scope = Some(observed);
        match admin_steps {
            None if expected => self.set(
                condition::SCOPE_IN_SYNC,
                true,
                reason::SCOPE_MATCHES,
                "The visible scope set in DingTalk is the expected one (spec.dingtalk.visibleScope).",
            ),
            None => self.set(
                condition::SCOPE_IN_SYNC,
                true,
                reason::SCOPE_SET_IN_DINGTALK,
                "The visible scope is the one the enterprise's admin set in DingTalk; the directory follows it.",
            ),
            Some(steps) => {
                let msg = format!(
                    "The visible scope set in DingTalk differs from spec.dingtalk.visibleScope. In DingTalk's admin console (工作台 → 应用管理 → the app → 设置 → 可见范围) the admin must {steps}. The directory follows DingTalk's scope meanwhile; dingbind never changes it."
                );
                self.set(condition::SCOPE_IN_SYNC, false, reason::SCOPE_DIFFERS, &msg);
            }
        }
    }

    /// What `decision` records as handled before its sync runs: a request
    /// counts as handled once its sync was tried.
    pub fn sync_decided(&mut self, decision: &SyncDecision) {
        self.status.last_handled_sync_request = decision.last_handled_sync_request.clone();
        self.status.last_handled_approval = decision.handled_approval(false);
    }

    /// A sync could not read DingTalk: nothing changed, and the next
    /// reconciliation syncs again.
    pub fn sync_failed(&mut self, trigger: &SyncTrigger, error: &str) {
        let msg = format!("Reading the directory from DingTalk ({trigger:?}): {error}");
        if let Some(d) = self.status.directory.as_mut() {
            d.synced_generation = None;
        }
        self.set(
            condition::DIRECTORY_SYNCED,
            false,
            reason::DINGTALK_UNAVAILABLE,
            &msg,
        );
        self.ready(false, reason::DINGTALK_UNAVAILABLE, &msg);
        self.requeue = Some(RECHECK);
    }

    /// A sync ran to its end: synced, or held back by the guard.
    pub fn sync_ran(&mut self, result: &SyncResult) {
        self.status.directory = Some(DirectoryStatus {
            departments: result.departments,
            members: result.members,
            last_sync_time: Some(Time(self.now)),
            last_sync_duration_ms: Some(
                u64::try_from(result.duration.as_millis()).unwrap_or(u64::MAX),
            ),
            added: result.added,
            updated: result.updated,
            removed: result.removed,
            pending_deletions: result.held,
            unconfirmed: result.unconfirmed,
            progress: None,
            synced_generation: self.generation,
        });
        if result.held > 0 {
            self.held(result.held);
        } else {
            self.synced(result);
        }
    }

    /// An incremental sync (what events marked, read again) ran to its end.
    /// The directory's counts follow it; the last full sync's time, figures
    /// and generation stay: only a full sync reads the whole scope, and the
    /// periodic one stays the safety net.
    pub fn incremental_ran(&mut self, result: &SyncResult) {
        let d = self.status.directory.get_or_insert_with(Default::default);
        d.departments = result.departments;
        d.members = result.members;
        d.pending_deletions = result.held;
        d.unconfirmed = result.unconfirmed;
        d.progress = None;
        if result.held > 0 {
            self.held(result.held);
            return;
        }
        let mut msg = format!(
            "Directory updated from DingTalk's events: +{} ~{} -{}; {} members, {} departments.",
            result.added, result.updated, result.removed, result.members, result.departments
        );
        if result.unconfirmed > 0 {
            msg.push_str(&format!(
                " {} members DingTalk did not confirm gone are kept, and checked again.",
                result.unconfirmed
            ));
            self.warn(reason::REMOVALS_UNCONFIRMED, msg.clone());
        }
        if (result.added, result.updated, result.removed) != (0, 0, 0) {
            self.event(reason::DIRECTORY_UPDATED, msg);
        }
    }

    /// The app's visible scope was changed in DingTalk's console (an event
    /// names who did it); the scope step has made it the declared one again
    /// if it differed.
    pub fn scope_changed_in_dingtalk(&mut self, operators: &BTreeSet<String>) {
        let who = if operators.is_empty() {
            "someone".to_string()
        } else {
            format!(
                "unionId {}",
                operators.iter().cloned().collect::<Vec<_>>().join(", ")
            )
        };
        self.event(
            reason::SCOPE_CHANGED_IN_DINGTALK,
            format!(
                "The app's visible scope was changed in DingTalk by {who}; the declared scope (spec.dingtalk.visibleScope) is what dingbind keeps."
            ),
        );
    }

    fn held(&mut self, held: u64) {
        let msg = deletion_message(held);
        self.set(
            condition::DIRECTORY_SYNCED,
            false,
            reason::DELETION_THRESHOLD_EXCEEDED,
            &msg,
        );
        self.warn(reason::DELETION_THRESHOLD_EXCEEDED, msg);
    }

    fn synced(&mut self, r: &SyncResult) {
        let mut msg = format!(
            "{} members, {} departments; +{} ~{} -{}.",
            r.members, r.departments, r.added, r.updated, r.removed
        );
        if r.unconfirmed > 0 {
            msg.push_str(&format!(
                " {} members missing from DingTalk's answer still exist in the scope: kept, and checked again at the next sync.",
                r.unconfirmed
            ));
            self.warn(reason::REMOVALS_UNCONFIRMED, msg.clone());
        }
        self.set(condition::DIRECTORY_SYNCED, true, reason::SYNCED, &msg);
        if (r.added, r.updated, r.removed) != (0, 0, 0) {
            self.event(reason::SYNCED, format!("Directory synced: {msg}"));
        }
    }

    /// A bound tenant after its binding, scope and (when `decision` ran one)
    /// sync: ready, or waiting for an approval of its held removals; looked
    /// at again for the next sync or the trial's end.
    pub fn operated(
        &mut self,
        corp_id: &str,
        decision: &SyncDecision,
        trial_end: Option<Timestamp>,
    ) {
        let directory = self.status.directory.as_ref();
        let pending = directory.map_or(0, |d| d.pending_deletions);
        if decision.trigger.is_some() {
            let released = directory.is_some_and(|d| d.pending_deletions == 0 && d.removed > 0);
            self.status.last_handled_approval = decision.handled_approval(released);
        }
        self.requeue = Some(schedule::requeue_after(
            self.now,
            decision.next_sync,
            trial_end,
        ));
        if pending == 0 {
            let members = directory.map_or(0, |d| d.members);
            self.ready(
                true,
                reason::RECONCILED,
                &format!("Bound to {corp_id}; {members} members in the directory."),
            );
            return;
        }
        let mut msg = deletion_message(pending);
        // An approval of another count lets nothing through: say so, so that
        // the person who set it sees why nothing happened.
        if let Some(count) = decision.approved.filter(|&n| n != pending) {
            let note = format!(
                "The approval {APPROVE_DELETIONS}: \"{count}\" was not used: {pending} removals are held back, not {count}."
            );
            msg = format!("{msg} {note}");
            self.warn(reason::APPROVAL_MISMATCH, note);
        }
        self.ready(false, reason::DELETION_THRESHOLD_EXCEEDED, &msg);
    }

    // -- Unbinding -----------------------------------------------------------

    /// A requested unbind of `bound` waits for a precondition.
    pub fn unbind_waiting(&mut self, bound: &Identity, unmet: &Unmet) {
        self.still_bound(bound);
        self.ready(false, unmet.reason(), unmet.message());
    }

    /// A requested unbind of `bound` waits: DingTalk could not show the app's state.
    pub fn unbind_unchecked(&mut self, bound: &Identity, error: &str) {
        self.still_bound(bound);
        self.ready(
            false,
            reason::DINGTALK_UNAVAILABLE,
            &format!("Cannot check the app's status in DingTalk: {error}"),
        );
    }

    fn still_bound(&mut self, bound: &Identity) {
        self.status.mode = Some(Mode::DingTalk);
        self.status.bound_corp_id = Some(bound.corp_id.clone());
        self.requeue = Some(RECHECK);
    }

    /// DingTalk no longer shows `bound`, and a person confirmed its removal with `value`.
    pub fn app_removal_confirmed(&mut self, bound: &Identity, value: &str) {
        self.event(
            reason::APP_REMOVAL_CONFIRMED,
            format!(
                "DingTalk no longer shows {bound}; its removal was confirmed with {CONFIRM_APP_REMOVED}: \"{value}\", recorded with the unbind."
            ),
        );
    }

    /// This reconciliation unbound the tenant from `unbind.corp_id`.
    pub fn unbound_now(&mut self, unbind: &Unbind) {
        self.fill_unbound(unbind);
        let corp = &unbind.corp_id;
        let msg = match unbind.reason {
            UnbindReason::TrialExpired => format!(
                "The trial expired: unbound from DingTalk organization {corp}; the tenant is now in public mode for good."
            ),
            UnbindReason::Requested => format!(
                "Unbound from DingTalk organization {corp}; the tenant is now in public mode for good. Set up the org structure again."
            ),
        };
        self.set(condition::BOUND, false, reason::UNBOUND, &msg);
        self.ready(true, reason::PUBLIC_MODE, &msg);
        self.event(
            match unbind.reason {
                UnbindReason::TrialExpired => reason::TRIAL_EXPIRED,
                UnbindReason::Requested => reason::UNBOUND,
            },
            msg,
        );
        self.requeue = None;
    }

    /// The tenant was unbound before, for good. `repairs`: the copies of the
    /// unbind written again (the ledger's from `source`); `rebind_requested`:
    /// the spec asks for DingTalk mode again, which is refused.
    pub fn stays_unbound(
        &mut self,
        unbind: &Unbind,
        repairs: Repairs,
        source: RepairSource,
        rebind_requested: bool,
    ) {
        if repairs.ledger {
            self.warn(
                reason::LEDGER_REPAIRED,
                ledger_repair_message(unbind, source),
            );
        }
        if repairs.record {
            self.warn(
                reason::UNBIND_RECORD_REPAIRED,
                record_repair_message(unbind),
            );
        }
        self.fill_unbound(unbind);
        if rebind_requested {
            let msg = format!(
                "This tenant left DingTalk integration mode on {} and can never return to it; set spec.mode: Public.",
                unbind.at
            );
            self.ready(false, reason::REBIND_FORBIDDEN, &msg);
            self.set(condition::BOUND, false, reason::REBIND_FORBIDDEN, &msg);
            self.warn(reason::REBIND_FORBIDDEN, msg);
        } else {
            let msg = format!(
                "Unbound from DingTalk on {} ({}); for good.",
                unbind.at,
                unbind.reason.as_str()
            );
            self.set(condition::BOUND, false, reason::UNBOUND, &msg);
            self.ready(
                true,
                reason::PUBLIC_MODE,
                "The tenant is in public mode; accounts are managed by the tenant.",
            );
        }
        self.requeue = None;
    }

    /// Public mode after an unbind: the directory and scope are gone, the unbind stays.
    fn fill_unbound(&mut self, unbind: &Unbind) {
        self.status.mode = Some(Mode::Public);
        self.status.unbound_at = Some(Time(unbind.at));
        self.status.unbind_reason = Some(unbind.reason);
        self.status.bound_corp_id = None;
        self.status.directory = None;
        self.status.visible_scope = None;
    }

    // -- Events from DingTalk ------------------------------------------------

    /// The channel events arrive by (`None`: the runner does not listen for
    /// this tenant). Only a bound tenant in DingTalk mode shows one.
    pub fn events_channel(&mut self, channel: Option<&ChannelFacts>) {
        let listening =
            self.status.mode == Some(Mode::DingTalk) && self.status.bound_corp_id.is_some();
        match channel.filter(|_| listening) {
            Some(facts) => {
                let (events, connected) = channel::describe(facts);
                self.status.events = Some(events);
                self.set(
                    condition::EVENTS_CONNECTED,
                    connected.status,
                    connected.reason,
                    &connected.message,
                );
            }
            None => {
                self.status.events = None;
                conditions::remove(&mut self.status.conditions, condition::EVENTS_CONNECTED);
            }
        }
    }

    /// The finished decision, with the kstatus conditions decided from the others.
    pub fn finish(mut self) -> Decided {
        let progress = kstatus::progress(&self.status);
        kstatus::set(
            &mut self.status.conditions,
            &progress,
            self.generation,
            self.now,
        );
        Decided {
            status: self.status,
            events: self.events,
            requeue_after: self.requeue,
        }
    }

    // -- Building blocks -----------------------------------------------------

    fn set(&mut self, type_: &str, ok: bool, reason: &str, message: &str) {
        conditions::set(
            &mut self.status.conditions,
            type_,
            ok,
            reason,
            message,
            self.generation,
            self.now,
        );
    }

    fn ready(&mut self, ok: bool, reason: &str, message: &str) {
        self.set(condition::READY, ok, reason, message);
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

    /// When to look again so that a trial ends on time, if it will.
    fn until(&self, trial_end: Option<Timestamp>) -> Option<Duration> {
        trial_end.map(|end| schedule::requeue_after(self.now, None, Some(end)))
    }
}

/// The status of a tenant whose reconciliation could not reach the directory
/// store: `previous` (the Tenant's own copy) with `Ready=False`
/// `StoreUnavailable`, checked again with backoff.
pub fn store_unavailable(
    previous: TenantStatus,
    generation: Option<i64>,
    error: &str,
    now: Timestamp,
) -> TenantStatus {
    let mut status = previous;
    let msg = format!("The directory store cannot be used: {error}");
    conditions::set(
        &mut status.conditions,
        condition::READY,
        false,
        reason::STORE_UNAVAILABLE,
        msg,
        generation,
        now,
    );
    if let Some(d) = status.directory.as_mut() {
        d.progress = None;
    }
    let progress = kstatus::progress(&status);
    kstatus::set(&mut status.conditions, &progress, generation, now);
    status
}

/// What `Ready` says while removals are held back.
pub fn deletion_message(held: u64) -> String {
    format!(
        "The sync would remove {held} members, more than spec.sync.maxDeletions allows; the removals are held back. Check DingTalk, then approve with the annotation {APPROVE_DELETIONS}: \"{held}\"."
    )
}

/// The Event (and log line) of a ledger entry written again.
pub fn ledger_repair_message(unbind: &Unbind, source: RepairSource) -> String {
    format!(
        "The store's ledger did not record this tenant's unbind of {}; it was written again from the {}.",
        unbind.at,
        match source {
            RepairSource::UnbindRecord => "cluster's UnbindRecord",
            RepairSource::TenantStatus => "Tenant's status",
        }
    )
}

/// The Event (and log line) of an `UnbindRecord` written again.
pub fn record_repair_message(unbind: &Unbind) -> String {
    format!(
        "The cluster held no UnbindRecord of this tenant's unbind of {}; it is written again.",
        unbind.at
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::SyncProgress;

    const GENERATION: Option<i64> = Some(4);

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn builder(previous: TenantStatus) -> StatusBuilder {
        StatusBuilder::new(GENERATION, previous, t(0))
    }

    fn acme() -> Identity {
        Identity {
            corp_id: "ding-acme".into(),
            agent_id: Some(1001),
        }
    }

    /// `(status, reason)` of condition `type_`, if present.
    fn cond(d: &Decided, type_: &str) -> Option<(String, String)> {
        conditions::get(&d.status.conditions, type_).map(|c| (c.status.clone(), c.reason.clone()))
    }

    fn is(d: &Decided, type_: &str, status: &str, reason: &str) -> bool {
        cond(d, type_) == Some((status.into(), reason.into()))
    }

    fn events(d: &Decided) -> Vec<(bool, &'static str)> {
        d.events.iter().map(|e| (e.warning, e.reason)).collect()
    }

    /// A decision for a bound tenant that synced at `t(0)`, next due in 600 s.
    fn decision(trigger: Option<SyncTrigger>, approved: Option<u64>) -> SyncDecision {
        SyncDecision {
            trigger,
            approved,
            last_handled_sync_request: None,
            last_handled_approval: None,
            last_handled_approval_if_released: approved.map(|n| n.to_string()),
            next_sync: Some(t(600)),
        }
    }

    fn synced(added: u64, removed: u64, held: u64) -> SyncResult {
        SyncResult {
            departments: 3,
            members: 10,
            added,
            updated: 0,
            removed,
            held,
            unconfirmed: 0,
            duration: Duration::from_millis(1500),
        }
    }

    #[test]
    fn each_binding_failure_has_its_reason_a_warning_and_a_recheck() {
        let cases = [
            (
                BindingFailure::NoSecretNamed,
                reason::SECRET_NOT_FOUND,
                true,
            ),
            (
                BindingFailure::Secret("Secret acme-app has no appSecret".into()),
                reason::SECRET_NOT_FOUND,
                true,
            ),
            (
                BindingFailure::CorpMismatch {
                    corp_id: "ding-acme".into(),
                },
                reason::CORP_MISMATCH,
                true,
            ),
            (
                BindingFailure::AppNotFound {
                    corp_id: "ding-acme".into(),
                    agent_id: 7,
                },
                reason::APP_NOT_FOUND,
                true,
            ),
            (
                BindingFailure::CredentialsRefused("40089 invalid appkey".into()),
                reason::INVALID_CREDENTIALS,
                true,
            ),
            (
                BindingFailure::Unavailable("HTTP 503".into()),
                reason::DINGTALK_UNAVAILABLE,
                false,
            ),
        ];
        for (failure, why, stalls) in cases {
            let mut b = builder(TenantStatus::default());
            b.binding_failed(failure.clone());
            let d = b.finish();
            assert!(is(&d, condition::BOUND, "False", why), "{failure:?}");
            assert!(is(&d, condition::READY, "False", why), "{failure:?}");
            assert_eq!(events(&d), [(true, why)], "{failure:?}");
            assert_eq!(d.requeue_after, Some(RECHECK), "{failure:?}");
            assert_eq!(d.status.mode, Some(Mode::DingTalk));
            let (stalled, reconciling) = if stalls {
                (Some(("True".into(), why.into())), None)
            } else {
                (None, Some(("True".into(), why.into())))
            };
            assert_eq!(cond(&d, condition::STALLED), stalled, "{failure:?}");
            assert_eq!(cond(&d, condition::RECONCILING), reconciling, "{failure:?}");
        }
    }

    #[test]
    fn a_new_binding_is_an_event_once_and_names_who_left_the_organization_before() {
        let mut b = builder(TenantStatus::default());
        b.bound(
            "ding-acme",
            Some(NewBinding {
                agent_id: 1001,
                left_by: vec!["old/acme".into()],
            }),
        );
        let d = b.finish();
        assert!(is(&d, condition::BOUND, "True", reason::BOUND));
        assert_eq!(d.status.bound_corp_id.as_deref(), Some("ding-acme"));
        assert_eq!(
            events(&d),
            [
                (false, reason::BOUND),
                (false, reason::ORGANIZATION_BOUND_AGAIN)
            ]
        );
        assert!(d.events[1].note.contains("old/acme"));

        let mut again = builder(d.status);
        again.bound("ding-acme", None);
        assert!(again.finish().events.is_empty(), "bound before: no Event");
    }

    #[test]
    fn a_corrected_scope_is_an_event_and_a_matching_one_is_quiet() {
        let observed = ObservedScope {
            dept_ids: vec![1],
            ..Default::default()
        };
        let mut b = builder(TenantStatus::default());
        b.scope_in_sync(observed.clone(), None);
        let d = b.finish();
        assert!(is(
            &d,
            condition::SCOPE_IN_SYNC,
            "True",
            reason::SCOPE_MATCHES
        ));
        assert!(d.events.is_empty());
        assert_eq!(d.status.visible_scope, Some(observed.clone()));

        let mut b = builder(TenantStatus::default());
        b.scope_in_sync(observed, Some("departments +[2] -[]".into()));
        let d = b.finish();
        assert!(is(
            &d,
            condition::SCOPE_IN_SYNC,
            "True",
            reason::SCOPE_UPDATED
        ));
        assert_eq!(events(&d), [(false, reason::SCOPE_UPDATED)]);
        assert!(d.events[0].note.contains("departments +[2]"));
    }

    #[test]
    fn a_scope_that_cannot_be_pushed_is_not_ready_and_is_checked_again() {
        let mut b = builder(TenantStatus::default());
        b.scope_failed("HTTP 503");
        let d = b.finish();
        let why = reason::DINGTALK_UNAVAILABLE;
        assert!(is(&d, condition::SCOPE_IN_SYNC, "False", why));
        assert!(is(&d, condition::READY, "False", why));
        assert!(is(&d, condition::RECONCILING, "True", why));
        assert_eq!(d.requeue_after, Some(RECHECK));
    }

    #[test]
    fn a_sync_with_changes_is_an_event_and_an_unchanged_one_is_quiet() {
        for (result, event) in [(synced(2, 1, 0), true), (synced(0, 0, 0), false)] {
            let mut b = builder(TenantStatus::default());
            b.bound("ding-acme", None);
            let decided = decision(Some(SyncTrigger::Interval), None);
            b.sync_decided(&decided);
            b.sync_ran(&result);
            b.operated("ding-acme", &decided, None);
            let d = b.finish();
            assert!(is(&d, condition::DIRECTORY_SYNCED, "True", reason::SYNCED));
            assert!(is(&d, condition::READY, "True", reason::RECONCILED));
            assert_eq!(cond(&d, condition::RECONCILING), None, "settled");
            assert_eq!(
                events(&d),
                if event {
                    vec![(false, reason::SYNCED)]
                } else {
                    vec![]
                }
            );
            let dir = d.status.directory.as_ref().unwrap();
            assert_eq!((dir.members, dir.departments), (10, 3));
            assert_eq!((dir.added, dir.removed), (result.added, result.removed));
            assert_eq!(dir.synced_generation, GENERATION);
            assert_eq!(dir.last_sync_time, Some(Time(t(0))));
            assert_eq!(dir.last_sync_duration_ms, Some(1500));
            assert_eq!(d.requeue_after, Some(Duration::from_secs(600)));
        }
    }

    #[test]
    fn held_removals_keep_ready_false_stall_and_warn() {
        let mut b = builder(TenantStatus::default());
        let decided = decision(Some(SyncTrigger::SpecChanged), None);
        b.sync_decided(&decided);
        b.sync_ran(&synced(0, 0, 6));
        b.operated("ding-acme", &decided, None);
        let d = b.finish();
        let why = reason::DELETION_THRESHOLD_EXCEEDED;
        assert!(is(&d, condition::DIRECTORY_SYNCED, "False", why));
        assert!(is(&d, condition::READY, "False", why));
        assert!(is(&d, condition::STALLED, "True", why));
        assert_eq!(events(&d), [(true, why)]);
        assert!(d.events[0].note.contains("approve-deletions: \"6\""));
        let dir = d.status.directory.as_ref().unwrap();
        assert_eq!(dir.pending_deletions, 6);
        assert_eq!(dir.synced_generation, GENERATION, "held counts as synced");
    }

    #[test]
    fn an_approval_of_another_count_says_why_it_was_not_used() {
        let mut previous = TenantStatus::default();
        let mut b = builder(previous.clone());
        b.sync_ran(&synced(0, 0, 6));
        previous.directory = b.finish().status.directory;
        // No sync runs (the approval matches nothing), the held count stays.
        let decided = decision(None, Some(5));
        let mut b = builder(previous);
        b.sync_decided(&decided);
        b.operated("ding-acme", &decided, None);
        let d = b.finish();
        assert_eq!(events(&d), [(true, reason::APPROVAL_MISMATCH)]);
        let ready = conditions::get(&d.status.conditions, condition::READY).unwrap();
        assert_eq!(ready.reason, reason::DELETION_THRESHOLD_EXCEEDED);
        assert!(
            ready
                .message
                .contains("\"5\" was not used: 6 removals are held back"),
            "{}",
            ready.message
        );
    }

    #[test]
    fn an_approval_is_used_up_only_by_the_sync_it_released() {
        let decided = SyncDecision {
            last_handled_approval: Some("old".into()),
            ..decision(Some(SyncTrigger::SpecChanged), Some(6))
        };
        let mut b = builder(TenantStatus::default());
        b.sync_decided(&decided);
        assert_eq!(b.status().last_handled_approval.as_deref(), Some("old"));
        b.sync_ran(&synced(0, 6, 0));
        b.operated("ding-acme", &decided, None);
        let d = b.finish();
        assert_eq!(d.status.last_handled_approval.as_deref(), Some("6"));

        // A sync that still holds removals leaves the approval unused.
        let mut b = builder(TenantStatus::default());
        b.sync_decided(&decided);
        b.sync_ran(&synced(0, 0, 7));
        b.operated("ding-acme", &decided, None);
        assert_eq!(
            b.finish().status.last_handled_approval.as_deref(),
            Some("old")
        );
    }

    #[test]
    fn unconfirmed_absences_are_kept_and_warned_about() {
        let mut b = builder(TenantStatus::default());
        b.sync_ran(&SyncResult {
            unconfirmed: 2,
            ..synced(0, 0, 0)
        });
        let d = b.finish();
        assert!(is(&d, condition::DIRECTORY_SYNCED, "True", reason::SYNCED));
        assert_eq!(events(&d), [(true, reason::REMOVALS_UNCONFIRMED)]);
        assert_eq!(d.status.directory.unwrap().unconfirmed, 2);
    }

    #[test]
    fn a_failed_sync_is_synced_for_no_generation_and_is_tried_again() {
        let mut b = builder(TenantStatus::default());
        b.sync_ran(&synced(1, 0, 0));
        let previous = b.finish().status;
        let mut b = builder(previous);
        b.sync_failed(&SyncTrigger::Interval, "HTTP 503");
        let d = b.finish();
        let why = reason::DINGTALK_UNAVAILABLE;
        assert!(is(&d, condition::DIRECTORY_SYNCED, "False", why));
        assert!(is(&d, condition::READY, "False", why));
        assert!(is(&d, condition::RECONCILING, "True", why));
        let dir = d.status.directory.unwrap();
        assert_eq!(dir.synced_generation, None);
        assert_eq!(dir.members, 10, "what was synced before stays");
        assert_eq!(d.requeue_after, Some(RECHECK));
    }

    #[test]
    fn an_incremental_sync_updates_the_counts_and_keeps_the_last_full_syncs_time() {
        let last_full = Timestamp::from_second(1_000).unwrap();
        let previous = TenantStatus {
            directory: Some(DirectoryStatus {
                members: 10,
                departments: 3,
                last_sync_time: Some(Time(last_full)),
                added: 10,
                synced_generation: GENERATION,
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut b = builder(previous);
        b.incremental_ran(&SyncResult {
            members: 9,
            departments: 3,
            removed: 1,
            ..synced(0, 1, 0)
        });
        let d = b.finish();
        let dir = d.status.directory.clone().unwrap();
        assert_eq!((dir.members, dir.departments), (9, 3));
        assert_eq!(dir.last_sync_time, Some(Time(last_full)));
        assert_eq!((dir.added, dir.synced_generation), (10, GENERATION));
        assert_eq!(events(&d), [(false, reason::DIRECTORY_UPDATED)]);
        assert!(d.events[0].note.contains("-1"), "{}", d.events[0].note);

        // Nothing changed: no Event. Removals held: held, as a full sync's.
        let mut b = builder(TenantStatus::default());
        b.incremental_ran(&synced(0, 0, 0));
        assert!(b.finish().events.is_empty());
        let mut b = builder(TenantStatus::default());
        b.incremental_ran(&synced(0, 0, 40));
        let d = b.finish();
        assert!(is(
            &d,
            condition::DIRECTORY_SYNCED,
            "False",
            reason::DELETION_THRESHOLD_EXCEEDED
        ));
        assert_eq!(d.status.directory.unwrap().pending_deletions, 40);
    }

    #[test]
    fn a_scope_changed_in_dingtalk_names_who_changed_it() {
        let mut b = builder(TenantStatus::default());
        b.scope_changed_in_dingtalk(&["union-admin-1".to_string()].into());
        let d = b.finish();
        assert_eq!(events(&d), [(false, reason::SCOPE_CHANGED_IN_DINGTALK)]);
        assert!(d.events[0].note.contains("unionId union-admin-1"));
    }

    #[test]
    fn the_progress_of_a_sync_ends_with_the_reconciliation_that_ran_it() {
        let previous = TenantStatus {
            directory: Some(DirectoryStatus {
                members: 5,
                progress: Some(SyncProgress::default()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let b = builder(previous);
        let dir = b.status().directory.clone().unwrap();
        assert_eq!((dir.members, dir.progress), (5, None));
    }

    #[test]
    fn an_unbind_is_public_for_good_and_never_looked_at_again() {
        for (why, event) in [
            (UnbindReason::Requested, reason::UNBOUND),
            (UnbindReason::TrialExpired, reason::TRIAL_EXPIRED),
        ] {
            let mut b = builder(TenantStatus::default());
            b.sync_ran(&synced(0, 0, 0));
            b.unbound_now(&Unbind {
                at: t(0),
                reason: why,
                corp_id: "ding-acme".into(),
                agent_id: Some(1001),
            });
            let d = b.finish();
            assert_eq!(d.status.mode, Some(Mode::Public));
            assert_eq!(d.status.unbound_at, Some(Time(t(0))));
            assert_eq!(d.status.unbind_reason, Some(why));
            assert_eq!(d.status.directory, None);
            assert_eq!(d.status.bound_corp_id, None);
            assert!(is(&d, condition::BOUND, "False", reason::UNBOUND));
            assert!(is(&d, condition::READY, "True", reason::PUBLIC_MODE));
            assert_eq!(events(&d), [(false, event)]);
            assert_eq!(d.requeue_after, None);
        }
    }

    #[test]
    fn a_request_to_bind_again_after_an_unbind_is_refused_and_stalls() {
        let unbind = Unbind {
            at: t(-10),
            reason: UnbindReason::Requested,
            corp_id: "ding-acme".into(),
            agent_id: Some(1001),
        };
        let mut b = builder(TenantStatus::default());
        b.stays_unbound(
            &unbind,
            Repairs::default(),
            RepairSource::TenantStatus,
            true,
        );
        let d = b.finish();
        let why = reason::REBIND_FORBIDDEN;
        assert!(is(&d, condition::READY, "False", why));
        assert!(is(&d, condition::BOUND, "False", why));
        assert!(is(&d, condition::STALLED, "True", why));
        assert_eq!(events(&d), [(true, why)]);
        assert_eq!(d.status.mode, Some(Mode::Public));
        assert_eq!(d.requeue_after, None);

        let mut b = builder(TenantStatus::default());
        b.stays_unbound(
            &unbind,
            Repairs::default(),
            RepairSource::TenantStatus,
            false,
        );
        let d = b.finish();
        assert!(is(&d, condition::READY, "True", reason::PUBLIC_MODE));
        assert!(is(&d, condition::BOUND, "False", reason::UNBOUND));
        assert!(d.events.is_empty());
    }

    #[test]
    fn each_repaired_copy_of_an_unbind_is_a_warning_naming_its_source() {
        let unbind = Unbind {
            at: t(-10),
            reason: UnbindReason::Requested,
            corp_id: "ding-acme".into(),
            agent_id: Some(1001),
        };
        let mut b = builder(TenantStatus::default());
        let both = Repairs {
            ledger: true,
            record: true,
        };
        b.stays_unbound(&unbind, both, RepairSource::UnbindRecord, false);
        let d = b.finish();
        assert_eq!(
            events(&d),
            [
                (true, reason::LEDGER_REPAIRED),
                (true, reason::UNBIND_RECORD_REPAIRED)
            ]
        );
        assert!(d.events[0].note.contains("cluster's UnbindRecord"));
    }

    #[test]
    fn a_waiting_unbind_stays_bound_reconciling_and_is_checked_again() {
        let unmets = [
            Unmet::CreatorAccountIncomplete("no password".into()),
            Unmet::AppStillEnabled("enabled".into()),
        ];
        for unmet in unmets {
            let mut b = builder(TenantStatus::default());
            b.unbind_waiting(&acme(), &unmet);
            let d = b.finish();
            assert!(is(&d, condition::READY, "False", unmet.reason()));
            assert!(is(&d, condition::RECONCILING, "True", unmet.reason()));
            assert_eq!(d.status.mode, Some(Mode::DingTalk));
            assert_eq!(d.status.bound_corp_id.as_deref(), Some("ding-acme"));
            assert_eq!(d.requeue_after, Some(RECHECK));
        }
        let mut b = builder(TenantStatus::default());
        b.unbind_waiting(&acme(), &Unmet::AppStateUnproved("not listed".into()));
        let d = b.finish();
        assert!(is(
            &d,
            condition::STALLED,
            "True",
            reason::APP_STATE_UNPROVED
        ));

        let mut b = builder(TenantStatus::default());
        b.unbind_unchecked(&acme(), "HTTP 503");
        let d = b.finish();
        assert!(is(
            &d,
            condition::READY,
            "False",
            reason::DINGTALK_UNAVAILABLE
        ));
    }

    #[test]
    fn a_confirmed_app_removal_is_an_event_naming_the_value() {
        let mut b = builder(TenantStatus::default());
        b.app_removal_confirmed(&acme(), "ding-acme/1001");
        let d = b.finish();
        assert_eq!(events(&d), [(false, reason::APP_REMOVAL_CONFIRMED)]);
        assert!(d.events[0].note.contains("\"ding-acme/1001\""));
    }

    #[test]
    fn suspended_public_and_never_bound_tenants_wait_for_a_change_or_the_trial() {
        let mut b = builder(TenantStatus::default());
        b.suspended(None);
        let d = b.finish();
        assert!(is(&d, condition::READY, "True", reason::SUSPENDED));
        assert_eq!(cond(&d, condition::RECONCILING), None);
        assert_eq!(cond(&d, condition::STALLED), None);
        assert_eq!(d.requeue_after, None);

        let mut b = builder(TenantStatus::default());
        b.suspended(Some(t(90)));
        assert_eq!(b.finish().requeue_after, Some(Duration::from_secs(90)));

        let mut b = builder(TenantStatus::default());
        b.public();
        let d = b.finish();
        assert!(is(&d, condition::READY, "True", reason::PUBLIC_MODE));
        assert_eq!(d.status.mode, Some(Mode::Public));
        assert_eq!(d.requeue_after, None);

        let mut b = builder(TenantStatus::default());
        b.never_bound(t(-5));
        let d = b.finish();
        assert!(is(&d, condition::STALLED, "True", reason::TRIAL_EXPIRED));
        assert_eq!(d.requeue_after, None);
    }

    #[test]
    fn a_changed_binding_identity_stalls_with_a_warning_and_waits_for_the_trial() {
        let typo = Identity {
            agent_id: Some(1002),
            ..acme()
        };
        let mut b = builder(TenantStatus::default());
        b.binding_changed(&acme(), Some(&typo), Some(t(30)));
        let d = b.finish();
        let why = reason::BINDING_CHANGED;
        assert!(is(&d, condition::BOUND, "False", why));
        assert!(is(&d, condition::STALLED, "True", why));
        assert_eq!(events(&d), [(true, why)]);
        assert!(d.events[0].note.contains("agentId to 1001 again"));
        assert_eq!(d.requeue_after, Some(Duration::from_secs(30)));
    }

    #[test]
    fn an_unusable_store_keeps_the_status_and_reads_as_reconciling() {
        let mut b = builder(TenantStatus::default());
        b.sync_ran(&synced(1, 0, 0));
        let previous = b.finish().status;
        let s = store_unavailable(previous.clone(), GENERATION, "database is locked", t(5));
        let ready = conditions::get(&s.conditions, condition::READY).unwrap();
        assert_eq!(ready.reason, reason::STORE_UNAVAILABLE);
        assert!(ready.message.contains("database is locked"));
        let reconciling = conditions::get(&s.conditions, condition::RECONCILING).unwrap();
        assert_eq!(reconciling.reason, reason::STORE_UNAVAILABLE);
        assert_eq!(s.directory, previous.directory);
    }

    #[test]
    fn a_condition_keeps_its_transition_time_while_its_status_holds() {
        let decided = decision(None, None);
        let mut b = builder(TenantStatus::default());
        b.operated("ding-acme", &decided, None);
        let first = b.finish().status;
        let mut b = StatusBuilder::new(GENERATION, first, t(100));
        b.operated("ding-acme", &decided, None);
        let again = b.finish().status;
        let ready = conditions::get(&again.conditions, condition::READY).unwrap();
        assert_eq!(ready.last_transition_time, Time(t(0)));
    }

    #[test]
    fn a_bound_tenant_shows_its_events_channel_and_a_public_one_none() {
        let connected = ChannelFacts {
            connected_since: Some(t(-60)),
            events_received: 3,
            ..Default::default()
        };
        let mut b = builder(TenantStatus::default());
        b.bound("ding-acme", None);
        b.events_channel(Some(&connected));
        let d = b.finish();
        assert!(is(
            &d,
            condition::EVENTS_CONNECTED,
            "True",
            reason::CONNECTED
        ));
        assert_eq!(d.status.events.as_ref().unwrap().events_received, 3);

        // Not listened for any more (public now): both go.
        let mut b = builder(d.status);
        b.public();
        b.events_channel(Some(&connected));
        let d = b.finish();
        assert_eq!(cond(&d, condition::EVENTS_CONNECTED), None);
        assert_eq!(d.status.events, None);
    }

    #[test]
    fn a_lost_connection_flips_events_connected_but_not_ready() {
        let mut b = builder(TenantStatus::default());
        b.bound("ding-acme", None);
        b.events_channel(Some(&ChannelFacts {
            connected_since: Some(t(-60)),
            ..Default::default()
        }));
        let before = b.finish();
        let ready_before = cond(&before, condition::READY);

        let mut b = StatusBuilder::new(GENERATION, before.status, t(30));
        b.bound("ding-acme", None);
        b.events_channel(Some(&ChannelFacts {
            last_error: Some("the socket closed".into()),
            open_failures: 1,
            ..Default::default()
        }));
        let d = b.finish();
        assert!(is(
            &d,
            condition::EVENTS_CONNECTED,
            "False",
            reason::DISCONNECTED
        ));
        let c = conditions::get(&d.status.conditions, condition::EVENTS_CONNECTED).unwrap();
        assert_eq!(c.last_transition_time, Time(t(30)));
        assert_eq!(cond(&d, condition::READY), ready_before);
    }

    #[test]
    fn a_runner_that_does_not_listen_shows_no_channel() {
        let mut b = builder(TenantStatus::default());
        b.bound("ding-acme", None);
        b.events_channel(None);
        let d = b.finish();
        assert_eq!(cond(&d, condition::EVENTS_CONNECTED), None);
        assert_eq!(d.status.events, None);
    }
}
