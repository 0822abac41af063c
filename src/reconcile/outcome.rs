//! What a reconciliation reports (status, Events, requeue), and the builder
//! that collects it.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::RECHECK;
use crate::{
    api::{DirectoryStatus, Mode, Tenant, TenantStatus, UnbindRecordSpec, condition, reason},
    core::{
        binding::{self, Binding, Identity, Unbind},
        conditions, kstatus, schedule,
    },
    store::SyncRunRecord,
};

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
    /// The `UnbindRecord` that must exist (the tenant is unbound and the
    /// runner keeps records); the runner creates it when it is missing.
    pub unbind_record: Option<UnbindRecordSpec>,
    /// The directory sync this reconciliation ran, if it ran one.
    pub sync: Option<SyncReport>,
}

/// What a directory sync did: its run record (as stored) and how long it took.
#[derive(Clone, Debug)]
pub struct SyncReport {
    pub run: SyncRunRecord,
    pub duration: Duration,
}

/// The status being built by one reconciliation.
pub(super) struct Run<'a> {
    pub(super) tenant: &'a Tenant,
    pub(super) now: Timestamp,
    pub(super) status: TenantStatus,
    pub(super) events: Vec<Event>,
    pub(super) requeue: Option<Duration>,
    /// The status before this reconciliation (see `Reconciler::previous_status`).
    pub(super) previous: TenantStatus,
    pub(super) record: Option<UnbindRecordSpec>,
    pub(super) sync: Option<SyncReport>,
}

impl<'a> Run<'a> {
    pub(super) fn new(tenant: &'a Tenant, previous: TenantStatus, now: Timestamp) -> Self {
        // What was observed before stays until this reconciliation observes
        // otherwise (an unbind clears the directory, a sync replaces it).
        let status = TenantStatus {
            observed_generation: tenant.metadata.generation,
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
            tenant,
            now,
            status,
            events: Vec::new(),
            requeue: Some(RECHECK),
            previous,
            record: None,
            sync: None,
        }
    }

    pub(super) fn set(&mut self, type_: &str, ok: bool, reason: &str, message: &str) {
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

    pub(super) fn ready(&mut self, ok: bool, reason: &str, message: &str) {
        self.set(condition::READY, ok, reason, message);
    }

    pub(super) fn not_bound(&mut self, reason: &'static str, message: String) {
        self.set(condition::BOUND, false, reason, &message);
        self.ready(false, reason, &message);
        self.warn(reason, message);
        self.requeue = Some(RECHECK);
    }

    pub(super) fn event(&mut self, reason: &'static str, note: String) {
        self.events.push(Event {
            warning: false,
            reason,
            note,
        });
    }

    pub(super) fn warn(&mut self, reason: &'static str, note: String) {
        self.events.push(Event {
            warning: true,
            reason,
            note,
        });
    }

    /// Public mode after an unbind: the directory and scope are gone, the unbind stays.
    pub(super) fn fill_unbound(&mut self, unbind: &Unbind) {
        self.status.mode = Some(Mode::Public);
        self.status.unbound_at = Some(Time(unbind.at));
        self.status.unbind_reason = Some(unbind.reason);
        self.status.bound_corp_id = None;
        self.status.directory = None;
        self.status.visible_scope = None;
    }

    /// When to look again so that a trial ends on time, if it will.
    pub(super) fn until_trial_end(&self, binding: Option<&Binding>) -> Option<Duration> {
        binding::trial_end(&self.tenant.spec, binding)
            .map(|end| schedule::requeue_after(self.now, None, Some(end)))
    }

    pub(super) fn public_from_the_start(&mut self) {
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

    pub(super) fn never_bound(&mut self, ended: Timestamp) {
        let msg = format!(
            "The trial ended on {ended}, before the tenant was bound: it is not bound to DingTalk. Remove spec.trial once the tenant has paid to bind it."
        );
        self.set(condition::BOUND, false, reason::TRIAL_EXPIRED, &msg);
        self.ready(false, reason::TRIAL_EXPIRED, &msg);
        self.requeue = None;
    }

    pub(super) fn binding_changed(&mut self, bound: &Identity, declared: Option<&Identity>) {
        let declared = declared.map_or_else(|| "no DingTalk app".to_string(), Identity::to_string);
        let msg = format!(
            "The tenant is bound to {bound}, but the spec names {declared}: the binding identity cannot change while the tenant is bound, and nothing is done on either. Set spec.dingtalk.corpId to {} and agentId to {} again.",
            bound.corp_id, bound.agent_id
        );
        self.set(condition::BOUND, false, reason::BINDING_CHANGED, &msg);
        self.ready(false, reason::BINDING_CHANGED, &msg);
        self.warn(reason::BINDING_CHANGED, msg);
    }

    /// The finished outcome, with the kstatus conditions decided from the others.
    pub(super) fn finish(mut self) -> Outcome {
        let progress = kstatus::progress(&self.status);
        kstatus::set(
            &mut self.status.conditions,
            &progress,
            self.tenant.metadata.generation,
            self.now,
        );
        Outcome {
            status: self.status,
            events: self.events,
            requeue_after: self.requeue,
            unbind_record: self.record,
            sync: self.sync,
        }
    }
}
