//! When to sync and when to look at a tenant again.

use std::{collections::BTreeMap, time::Duration};

use jiff::{SignedDuration, Timestamp};

use super::conditions;
use crate::api::{APPROVE_DELETIONS, SYNC_REQUESTED_AT, TenantStatus, condition, reason};

/// Why a sync runs now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncTrigger {
    /// Never synced, or the spec changed since the last sync.
    SpecChanged,
    /// `sync.interval` elapsed since the last sync.
    Interval,
    /// A new value of the `dingbind.dev/sync-requested-at` annotation.
    Requested(String),
    /// Events from DingTalk that only a full sync answers: a connection gap
    /// longer than the redelivery window, too many changes, an unreadable
    /// event.
    Events,
}

/// The sync a reconciliation runs, events from DingTalk counted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncKind {
    /// None: the directory is as last synced, as far as anyone knows.
    None,
    /// The whole scope read again.
    Full(SyncTrigger),
    /// Only what events marked dirty read again
    /// ([`super::incremental::Incremental`]).
    Incremental,
}

/// Which sync runs: a full sync that is due anyway answers every event too;
/// otherwise events that need a full sync ask for one, and users or
/// departments that events marked ask for an incremental sync.
pub fn sync_kind(decision: &SyncDecision, dirty: &super::dirty::Dirty) -> SyncKind {
    match &decision.trigger {
        Some(trigger) => SyncKind::Full(trigger.clone()),
        None if dirty.full_sync => SyncKind::Full(SyncTrigger::Events),
        None if dirty.needs_sync() => SyncKind::Incremental,
        None => SyncKind::None,
    }
}

/// What decides whether a sync is due: the time, the last sync, the
/// generations and the sync request.
#[derive(Clone, Debug)]
pub struct SyncFacts<'a> {
    pub now: Timestamp,
    pub last_sync: Option<Timestamp>,
    /// The generation the last successful sync was made for.
    pub synced_generation: Option<i64>,
    pub generation: Option<i64>,
    pub interval: Duration,
    pub requested: Option<&'a str>,
    pub handled_request: Option<&'a str>,
}

/// Whether a directory sync is due, and why.
pub fn sync_due(c: &SyncFacts<'_>) -> Option<SyncTrigger> {
    if let Some(req) = c.requested
        && Some(req) != c.handled_request
    {
        return Some(SyncTrigger::Requested(req.to_string()));
    }
    let Some(last) = c.last_sync else {
        return Some(SyncTrigger::SpecChanged);
    };
    if c.generation != c.synced_generation {
        return Some(SyncTrigger::SpecChanged);
    }
    let since = c.now.duration_since(last);
    // A last sync in the future means the wall clock went back: the interval
    // cannot be measured, so sync now rather than wait for the clock to catch
    // up (the requeue that brought us here was timed on the monotonic clock).
    if since.is_negative()
        || since >= SignedDuration::try_from(c.interval).unwrap_or(SignedDuration::MAX)
    {
        return Some(SyncTrigger::Interval);
    }
    None
}

/// Whether a sync whose removals the guard held back (`pending`) runs again now
/// for its approval: only once `dingbind.dev/approve-deletions` names exactly
/// that count. Re-running it at every reconciliation would loop: each held run
/// writes a new status, which starts the next reconciliation. (The periodic
/// sync and a sync request still run as usual.)
pub fn held_sync_approved(pending: u64, approved: Option<u64>) -> bool {
    pending > 0 && approved == Some(pending)
}

/// The count an approval annotation grants, unless that value was already used
/// (`handled`): an approval lets one held sync through, not every later one.
pub fn fresh_approval(annotation: Option<&str>, handled: Option<&str>) -> Option<u64> {
    let value = annotation?.trim();
    if Some(value) == handled.map(str::trim) {
        return None;
    }
    value.parse().ok()
}

/// What one reconciliation of a bound tenant does about its directory:
/// whether it syncs, with which approval, what it records as handled, and
/// when the next periodic sync is due.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncDecision {
    /// Why a sync runs now; `None`: no sync.
    pub trigger: Option<SyncTrigger>,
    /// The count of held removals the sync may let through: a
    /// `dingbind.dev/approve-deletions` value not used before.
    pub approved: Option<u64>,
    /// `status.lastHandledSyncRequest` to write.
    pub last_handled_sync_request: Option<String>,
    /// `status.lastHandledApproval` to write unless the sync lets the held
    /// removals through: the used value while the annotation stays, so that a
    /// used approval is forgotten once the annotation is removed.
    pub last_handled_approval: Option<String>,
    /// `status.lastHandledApproval` to write once the sync let the held
    /// removals through with `approved`.
    pub last_handled_approval_if_released: Option<String>,
    /// When the next periodic sync is due: an interval after this sync, or
    /// after the last one when none runs.
    pub next_sync: Option<Timestamp>,
}

impl SyncDecision {
    /// `status.lastHandledApproval` to write once the sync ran (`released`:
    /// it let held removals through) or did not.
    pub fn handled_approval(&self, released: bool) -> Option<String> {
        match &self.last_handled_approval_if_released {
            Some(value) if released => Some(value.clone()),
            _ => self.last_handled_approval.clone(),
        }
    }
}

/// The generation the directory was last synced for, a sync whose removals
/// the guard held back included: `status.directory.syncedGeneration`, or, in
/// a status written before that field, the `DirectorySynced` condition's
/// `observedGeneration` while it is `True` or held.
pub fn synced_generation(previous: &TenantStatus) -> Option<i64> {
    if let Some(g) = previous
        .directory
        .as_ref()
        .and_then(|d| d.synced_generation)
    {
        return Some(g);
    }
    conditions::get(&previous.conditions, condition::DIRECTORY_SYNCED)
        .filter(|c| c.status == "True" || c.reason == reason::DELETION_THRESHOLD_EXCEEDED)
        .and_then(|c| c.observed_generation)
}

/// Decides the directory sync of a bound tenant from the status before this
/// reconciliation (`previous`), its annotations, its `generation`, the sync
/// `interval` and `now`. A sync held by the guard runs again only for a fresh
/// approval of exactly its count.
pub fn sync_decision(
    previous: &TenantStatus,
    annotations: &BTreeMap<String, String>,
    generation: Option<i64>,
    interval: Duration,
    now: Timestamp,
) -> SyncDecision {
    let last_sync = previous
        .directory
        .as_ref()
        .and_then(|d| d.last_sync_time.as_ref())
        .map(|t| t.0);
    let facts = SyncFacts {
        now,
        last_sync,
        synced_generation: synced_generation(previous),
        generation,
        interval,
        requested: annotations.get(SYNC_REQUESTED_AT).map(String::as_str),
        handled_request: previous.last_handled_sync_request.as_deref(),
    };
    let pending = previous
        .directory
        .as_ref()
        .map_or(0, |d| d.pending_deletions);
    let annotation = annotations.get(APPROVE_DELETIONS).map(String::as_str);
    let handled = previous.last_handled_approval.as_deref();
    let approved = fresh_approval(annotation, handled);
    let trigger = sync_due(&facts)
        .or(held_sync_approved(pending, approved).then_some(SyncTrigger::SpecChanged));
    let last_handled_sync_request = match &trigger {
        Some(SyncTrigger::Requested(value)) => Some(value.clone()),
        _ => previous.last_handled_sync_request.clone(),
    };
    let next_sync = match trigger {
        Some(_) => now.checked_add(interval).ok(),
        None => last_sync.and_then(|t| t.checked_add(interval).ok()),
    };
    SyncDecision {
        trigger,
        approved,
        last_handled_sync_request,
        last_handled_approval: annotation.and(handled).map(str::to_owned),
        last_handled_approval_if_released: approved.and(annotation).map(str::to_owned),
        next_sync,
    }
}

/// How long until the tenant needs looking at again: the next periodic sync or
/// the trial's expiry, whichever comes first (never less than a second).
pub fn requeue_after(
    now: Timestamp,
    next_sync: Option<Timestamp>,
    trial_expires: Option<Timestamp>,
) -> Duration {
    let soonest = [next_sync, trial_expires]
        .into_iter()
        .flatten()
        .filter(|t| *t > now)
        .min();
    match soonest {
        Some(t) => Duration::try_from(t.duration_since(now))
            .unwrap_or(Duration::from_secs(1))
            .max(Duration::from_secs(1)),
        None => Duration::from_secs(1),
    }
}

#[cfg(test)]
mod events_tests {
    use super::*;
    use crate::core::dirty::Dirty;

    fn decided(trigger: Option<SyncTrigger>) -> SyncDecision {
        SyncDecision {
            trigger,
            approved: None,
            last_handled_sync_request: None,
            last_handled_approval: None,
            last_handled_approval_if_released: None,
            next_sync: None,
        }
    }

    #[test]
    fn a_due_full_sync_answers_the_events_and_events_ask_for_the_least_sync_that_answers_them() {
        let leaver = Dirty {
            users: ["u1".to_string()].into(),
            ..Dirty::default()
        };
        let gap = Dirty {
            full_sync: true,
            ..Dirty::default()
        };
        let scope_only = Dirty {
            scope: true,
            binding: true,
            ..Dirty::default()
        };
        let interval = Some(SyncTrigger::Interval);
        assert_eq!(
            sync_kind(&decided(interval.clone()), &leaver),
            SyncKind::Full(SyncTrigger::Interval)
        );
        assert_eq!(
            sync_kind(&decided(interval), &Dirty::default()),
            SyncKind::Full(SyncTrigger::Interval)
        );
        assert_eq!(sync_kind(&decided(None), &leaver), SyncKind::Incremental);
        assert_eq!(
            sync_kind(&decided(None), &gap),
            SyncKind::Full(SyncTrigger::Events)
        );
        // A scope or app-state change is answered by the reconciliation
        // itself (it reads both every time): no directory read.
        assert_eq!(sync_kind(&decided(None), &scope_only), SyncKind::None);
        assert_eq!(sync_kind(&decided(None), &Dirty::default()), SyncKind::None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    fn facts() -> SyncFacts<'static> {
        SyncFacts {
            now: t(1000),
            last_sync: Some(t(900)),
            synced_generation: Some(2),
            generation: Some(2),
            interval: Duration::from_secs(600),
            requested: None,
            handled_request: None,
        }
    }

    #[test]
    fn nothing_due_within_the_interval() {
        assert_eq!(sync_due(&facts()), None);
    }

    #[test]
    fn a_wall_clock_gone_back_does_not_stall_the_sync() {
        let c = SyncFacts {
            now: t(900 - 3600),
            ..facts()
        };
        assert_eq!(sync_due(&c), Some(SyncTrigger::Interval));
    }

    #[test]
    fn first_sync_and_spec_change_are_due() {
        assert_eq!(
            sync_due(&SyncFacts {
                last_sync: None,
                ..facts()
            }),
            Some(SyncTrigger::SpecChanged)
        );
        assert_eq!(
            sync_due(&SyncFacts {
                generation: Some(3),
                ..facts()
            }),
            Some(SyncTrigger::SpecChanged)
        );
    }

    #[test]
    fn interval_elapsed_is_due() {
        assert_eq!(
            sync_due(&SyncFacts {
                now: t(1500),
                ..facts()
            }),
            Some(SyncTrigger::Interval)
        );
    }

    #[test]
    fn a_new_request_value_is_due_once() {
        let c = SyncFacts {
            requested: Some("2026-11-26T10:00:00Z"),
            ..facts()
        };
        assert_eq!(
            sync_due(&c),
            Some(SyncTrigger::Requested("2026-11-26T10:00:00Z".into()))
        );
        assert_eq!(
            sync_due(&SyncFacts {
                handled_request: Some("2026-11-26T10:00:00Z"),
                ..c
            }),
            None
        );
    }

    #[test]
    fn an_approval_is_used_once() {
        assert_eq!(fresh_approval(Some("6"), None), Some(6));
        assert_eq!(fresh_approval(Some(" 6 "), Some("6")), None, "already used");
        assert_eq!(fresh_approval(Some("7"), Some("6")), Some(7));
        assert_eq!(fresh_approval(Some("all"), None), None, "not a count");
        assert_eq!(fresh_approval(None, Some("6")), None);
    }

    #[test]
    fn a_held_sync_runs_again_only_for_a_matching_approval() {
        assert!(
            !held_sync_approved(6, None),
            "no approval: wait, do not loop"
        );
        assert!(!held_sync_approved(6, Some(5)), "another count: wait");
        assert!(held_sync_approved(6, Some(6)));
        assert!(!held_sync_approved(0, Some(6)), "nothing held");
    }

    use crate::api::DirectoryStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    const INTERVAL: Duration = Duration::from_secs(600);

    /// A status after a sync at t(900) for generation 2, `pending` removals held.
    fn synced(pending: u64) -> TenantStatus {
        TenantStatus {
            directory: Some(DirectoryStatus {
                last_sync_time: Some(Time(t(900))),
                pending_deletions: pending,
                synced_generation: Some(2),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn decide(previous: &TenantStatus, pairs: &[(&str, &str)], now: i64) -> SyncDecision {
        sync_decision(previous, &annotations(pairs), Some(2), INTERVAL, t(now))
    }

    #[test]
    fn the_first_sync_is_due_and_the_next_one_an_interval_later() {
        let d = sync_decision(
            &TenantStatus::default(),
            &BTreeMap::new(),
            Some(1),
            INTERVAL,
            t(1000),
        );
        assert_eq!(d.trigger, Some(SyncTrigger::SpecChanged));
        assert_eq!(d.next_sync, Some(t(1600)));
        assert_eq!(d.approved, None);
        assert_eq!(d.last_handled_sync_request, None);
    }

    #[test]
    fn a_spec_change_is_due() {
        let d = sync_decision(&synced(0), &BTreeMap::new(), Some(3), INTERVAL, t(1000));
        assert_eq!(d.trigger, Some(SyncTrigger::SpecChanged));
    }

    #[test]
    fn within_the_interval_nothing_runs_and_the_next_sync_stays() {
        let d = decide(&synced(0), &[], 1000);
        assert_eq!(d.trigger, None);
        assert_eq!(
            d.next_sync,
            Some(t(1500)),
            "an interval after the last sync"
        );
    }

    #[test]
    fn an_elapsed_interval_is_due() {
        let d = decide(&synced(0), &[], 1500);
        assert_eq!(d.trigger, Some(SyncTrigger::Interval));
        assert_eq!(d.next_sync, Some(t(2100)));
    }

    #[test]
    fn a_sync_request_is_handled_once() {
        let pairs = [(SYNC_REQUESTED_AT, "r1")];
        let d = decide(&synced(0), &pairs, 1000);
        assert_eq!(d.trigger, Some(SyncTrigger::Requested("r1".into())));
        assert_eq!(d.last_handled_sync_request.as_deref(), Some("r1"));
        let handled = TenantStatus {
            last_handled_sync_request: Some("r1".into()),
            ..synced(0)
        };
        let d = decide(&handled, &pairs, 1000);
        assert_eq!(d.trigger, None, "handled already");
        assert_eq!(d.last_handled_sync_request.as_deref(), Some("r1"), "kept");
    }

    #[test]
    fn a_held_sync_runs_again_for_the_exact_count_only() {
        let d = decide(&synced(3), &[], 1000);
        assert_eq!(d.trigger, None, "no approval: wait, do not loop");
        let d = decide(&synced(3), &[(APPROVE_DELETIONS, "2")], 1000);
        assert_eq!(d.trigger, None, "another count lets nothing through");
        assert_eq!(d.approved, Some(2), "reported as not used");
        assert_eq!(d.handled_approval(false), None);
        let d = decide(&synced(3), &[(APPROVE_DELETIONS, "3")], 1000);
        assert_eq!(d.trigger, Some(SyncTrigger::SpecChanged));
        assert_eq!(d.approved, Some(3));
        assert_eq!(d.handled_approval(true).as_deref(), Some("3"), "used");
        assert_eq!(d.handled_approval(false), None, "not released: not used");
    }

    #[test]
    fn an_approval_is_used_for_one_hold_only() {
        let used = TenantStatus {
            last_handled_approval: Some("3".into()),
            ..synced(3)
        };
        // A later hold of the same count, with the same annotation: a stale approval.
        let pairs = [(APPROVE_DELETIONS, "3")];
        let d = decide(&used, &pairs, 1000);
        assert_eq!(d.trigger, None);
        assert_eq!(d.approved, None, "a stale approval approves nothing");
        assert_eq!(
            d.handled_approval(false).as_deref(),
            Some("3"),
            "remembered"
        );
        // A requested sync runs, still without the stale approval.
        let d = decide(
            &used,
            &[(APPROVE_DELETIONS, "3"), (SYNC_REQUESTED_AT, "r2")],
            1000,
        );
        assert_eq!(d.trigger, Some(SyncTrigger::Requested("r2".into())));
        assert_eq!(d.approved, None);
        // The annotation removed: the used value is forgotten ...
        let d = decide(&used, &[], 1000);
        assert_eq!(d.handled_approval(false), None);
        // ... so that setting it again approves the new hold.
        let forgotten = TenantStatus {
            last_handled_approval: None,
            ..used
        };
        let d = decide(&forgotten, &pairs, 1000);
        assert_eq!(d.trigger, Some(SyncTrigger::SpecChanged));
        assert_eq!(d.approved, Some(3));
    }

    #[test]
    fn the_synced_generation_is_the_typed_field_or_an_older_status_condition() {
        assert_eq!(synced_generation(&synced(0)), Some(2));
        // Written before status.directory.syncedGeneration: the condition.
        let older = |status: bool, why: &str| {
            let mut s = TenantStatus {
                directory: Some(DirectoryStatus {
                    last_sync_time: Some(Time(t(900))),
                    ..Default::default()
                }),
                ..Default::default()
            };
            conditions::set(
                &mut s.conditions,
                condition::DIRECTORY_SYNCED,
                status,
                why,
                "",
                Some(2),
                t(900),
            );
            s
        };
        assert_eq!(synced_generation(&older(true, reason::SYNCED)), Some(2));
        assert_eq!(
            synced_generation(&older(false, reason::DELETION_THRESHOLD_EXCEEDED)),
            Some(2),
            "a held sync was made for its generation too"
        );
        let failed = older(false, reason::DINGTALK_UNAVAILABLE);
        assert_eq!(synced_generation(&failed), None);
        assert_eq!(
            decide(&failed, &[], 1000).trigger,
            Some(SyncTrigger::SpecChanged),
            "a failed sync runs again"
        );
        assert_eq!(
            decide(&older(true, reason::SYNCED), &[], 1000).trigger,
            None
        );
    }

    #[test]
    fn requeue_at_the_trial_expiry_when_it_comes_first() {
        assert_eq!(
            requeue_after(t(0), Some(t(600)), Some(t(30))),
            Duration::from_secs(30)
        );
        assert_eq!(
            requeue_after(t(0), Some(t(600)), None),
            Duration::from_secs(600)
        );
        assert_eq!(
            requeue_after(t(0), Some(t(600)), Some(t(-5))),
            Duration::from_secs(600),
            "a past expiry is not a deadline"
        );
    }
}
