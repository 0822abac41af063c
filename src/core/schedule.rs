//! When to sync and when to look at a tenant again.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

/// Why a sync runs now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncTrigger {
    /// Never synced, or the spec changed since the last sync.
    SpecChanged,
    /// `sync.interval` elapsed since the last sync.
    Interval,
    /// A new value of the `dingbind.dev/sync-requested-at` annotation.
    Requested(String),
}

/// What the schedule looks at.
#[derive(Clone, Debug, Default)]
pub struct SyncClock<'a> {
    pub now: Option<Timestamp>,
    pub last_sync: Option<Timestamp>,
    /// The generation the last successful sync was made for.
    pub synced_generation: Option<i64>,
    pub generation: Option<i64>,
    pub interval: Duration,
    pub requested: Option<&'a str>,
    pub handled_request: Option<&'a str>,
}

/// Whether a directory sync is due, and why.
pub fn sync_due(c: &SyncClock<'_>) -> Option<SyncTrigger> {
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
    let now = c.now.unwrap_or(last);
    let since = now.duration_since(last);
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
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    fn clock() -> SyncClock<'static> {
        SyncClock {
            now: Some(t(1000)),
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
        assert_eq!(sync_due(&clock()), None);
    }

    #[test]
    fn a_wall_clock_gone_back_does_not_stall_the_sync() {
        let c = SyncClock {
            now: Some(t(900 - 3600)),
            ..clock()
        };
        assert_eq!(sync_due(&c), Some(SyncTrigger::Interval));
    }

    #[test]
    fn first_sync_and_spec_change_are_due() {
        assert_eq!(
            sync_due(&SyncClock {
                last_sync: None,
                ..clock()
            }),
            Some(SyncTrigger::SpecChanged)
        );
        assert_eq!(
            sync_due(&SyncClock {
                generation: Some(3),
                ..clock()
            }),
            Some(SyncTrigger::SpecChanged)
        );
    }

    #[test]
    fn interval_elapsed_is_due() {
        assert_eq!(
            sync_due(&SyncClock {
                now: Some(t(1500)),
                ..clock()
            }),
            Some(SyncTrigger::Interval)
        );
    }

    #[test]
    fn a_new_request_value_is_due_once() {
        let c = SyncClock {
            requested: Some("2026-11-26T10:00:00Z"),
            ..clock()
        };
        assert_eq!(
            sync_due(&c),
            Some(SyncTrigger::Requested("2026-11-26T10:00:00Z".into()))
        );
        assert_eq!(
            sync_due(&SyncClock {
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
