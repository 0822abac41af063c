//! What a reconciliation reports (status, Events, requeue, the record and the
//! sync it made), and the state one reconciliation carries between its steps.

use std::time::Duration;

use crate::{
    api::{Tenant, TenantStatus, UnbindRecordSpec},
    core::{
        dirty::Dirty,
        status::{Decided, StatusBuilder},
    },
    store::SyncRunRecord,
};

pub use crate::core::status::Event;

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
    /// Only what events marked was read again (not the whole scope).
    pub incremental: bool,
}

/// One reconciliation under way: the Tenant, what events from DingTalk
/// marked since the last one, the status core builds from what the steps
/// observe, and what the runner must act on afterwards.
pub(super) struct Run<'a> {
    pub(super) tenant: &'a Tenant,
    pub(super) events: &'a Dirty,
    pub(super) status: StatusBuilder,
    pub(super) record: Option<UnbindRecordSpec>,
    pub(super) sync: Option<SyncReport>,
}

impl<'a> Run<'a> {
    pub(super) fn new(tenant: &'a Tenant, events: &'a Dirty, status: StatusBuilder) -> Self {
        Self {
            tenant,
            events,
            status,
            record: None,
            sync: None,
        }
    }

    pub(super) fn finish(self) -> Outcome {
        let Decided {
            status,
            events,
            requeue_after,
        } = self.status.finish();
        Outcome {
            status,
            events,
            requeue_after,
            unbind_record: self.record,
            sync: self.sync,
        }
    }
}
