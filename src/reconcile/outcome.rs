//! What a reconciliation reports (status, Events, requeue), and the builder
//! that collects it.

use super::*;

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

/// The status being built by one reconciliation.
pub(super) struct Run<'a> {
    pub(super) tenant: &'a Tenant,
    pub(super) now: Timestamp,
    pub(super) status: TenantStatus,
    pub(super) events: Vec<Event>,
    pub(super) requeue: Option<Duration>,
    /// The status before this reconciliation (see `Reconciler::previous_status`).
    pub(super) previous: TenantStatus,
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

    pub(super) fn fill_unbound(&mut self, ledger: &LedgerState) {
        if let Some((at, why)) = ledger.unbound {
            self.status.unbound_at = Some(Time(at));
            self.status.unbind_reason = Some(why);
        }
        self.status.bound_corp_id = None;
    }

    pub(super) fn finish(self) -> Outcome {
        Outcome {
            status: self.status,
            events: self.events,
            requeue_after: self.requeue,
        }
    }
}
