//! The two conditions GitOps tools wait on (kstatus, sigs.k8s.io/cli-utils):
//! `Reconciling` while work the spec asked for is under way, `Stalled` when
//! nothing will change without a person. Both are "abnormal-true": present
//! only while `True`, removed otherwise, so a Tenant with neither and
//! `Ready=True` is `Current`. Decided from the conditions the reconciliation
//! just chose, so they never disagree with `Ready`.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use super::conditions;
use crate::api::{SyncProgress, TenantStatus, condition, reason};

/// What kstatus is to read from a Tenant's status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Nothing under way and nothing stuck (ready, public, or suspended):
    /// neither condition is present.
    Settled,
    /// Work the spec asked for is under way: `Reconciling=True`.
    Reconciling { reason: String, message: String },
    /// Nothing changes until a person acts: `Stalled=True`.
    Stalled { reason: String, message: String },
}

/// `Ready=False` reasons that only a person can resolve: a spec, a Secret or
/// DingTalk's configuration must change, or an approval or confirmation be given.
pub const NEEDS_A_PERSON: &[&str] = &[
    reason::INVALID_CREDENTIALS,
    reason::SECRET_NOT_FOUND,
    reason::CORP_MISMATCH,
    reason::APP_NOT_FOUND,
    reason::SUITE_NOT_CONFIGURED,
    reason::APP_UNINSTALLED,
    reason::REBIND_FORBIDDEN,
    reason::DELETION_THRESHOLD_EXCEEDED,
    reason::BINDING_CHANGED,
    reason::APP_STATE_UNPROVED,
    // The trial ended before the tenant was bound: it binds only once
    // spec.trial is removed, and is not looked at again until then.
    reason::TRIAL_EXPIRED,
];

/// What kstatus reads from `status`. A sync under way (`directory.progress`,
/// as the progress writer reports it; a finished status has none) is
/// reconciling; `Ready=True` (a suspended tenant too) is settled; a `Ready`
/// that needs a person is stalled; any other `Ready=False` (a first sync or an
/// unbind waiting on DingTalk, DingTalk unavailable: checked again soon) is
/// reconciling. Stalled and Reconciling carry `Ready`'s reason and message.
pub fn progress(status: &TenantStatus) -> Progress {
    if let Some(p) = status.directory.as_ref().and_then(|d| d.progress.as_ref()) {
        return Progress::Reconciling {
            reason: reason::SYNCING.into(),
            message: format!(
                "Syncing the directory: {} departments and {} members read so far.",
                p.departments, p.members
            ),
        };
    }
    let Some(ready) = conditions::get(&status.conditions, condition::READY) else {
        return Progress::Reconciling {
            reason: reason::SYNCING.into(),
            message: "Waiting for the first reconciliation to finish.".into(),
        };
    };
    if ready.status == "True" {
        return Progress::Settled;
    }
    let (reason, message) = (ready.reason.clone(), ready.message.clone());
    if NEEDS_A_PERSON.contains(&ready.reason.as_str()) {
        Progress::Stalled { reason, message }
    } else {
        Progress::Reconciling { reason, message }
    }
}

/// The status of a Tenant the controller sees for the first time, written
/// before its first reconciliation (a first sync can take minutes): its
/// generation observed and `Reconciling=True`, so that a GitOps wait reads it
/// as in progress, not as current.
pub fn first_status(generation: Option<i64>, now: Timestamp) -> TenantStatus {
    let mut status = TenantStatus {
        observed_generation: generation,
        ..TenantStatus::default()
    };
    let first = progress(&status);
    set(&mut status.conditions, &first, generation, now);
    status
}

/// The status written while a sync runs: the last written `status` with the
/// sync's `progress` and, decided from it, `Reconciling=True Syncing`, so
/// that a GitOps wait reads a long later sync as in progress, not as current.
/// The reconciliation's final status replaces it.
pub fn syncing(
    mut status: TenantStatus,
    progress_so_far: SyncProgress,
    generation: Option<i64>,
    now: Timestamp,
) -> TenantStatus {
    status
        .directory
        .get_or_insert_with(Default::default)
        .progress = Some(progress_so_far);
    let now_progress = progress(&status);
    set(&mut status.conditions, &now_progress, generation, now);
    status
}

/// Writes `progress` into `conditions`: the condition that is `True` is set
/// (with `generation`), the other removed.
pub fn set(
    conditions: &mut Vec<Condition>,
    progress: &Progress,
    generation: Option<i64>,
    now: Timestamp,
) {
    let (present, absent) = match progress {
        Progress::Settled => {
            conditions::remove(conditions, condition::RECONCILING);
            conditions::remove(conditions, condition::STALLED);
            return;
        }
        Progress::Reconciling { reason, message } => (
            (condition::RECONCILING, reason, message),
            condition::STALLED,
        ),
        Progress::Stalled { reason, message } => (
            (condition::STALLED, reason, message),
            condition::RECONCILING,
        ),
    };
    conditions::remove(conditions, absent);
    let (type_, reason, message) = present;
    conditions::set(conditions, type_, true, reason, message, generation, now);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{DirectoryStatus, SyncProgress};

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    fn with_ready(status: bool, reason: &str) -> TenantStatus {
        let mut s = TenantStatus::default();
        conditions::set(
            &mut s.conditions,
            condition::READY,
            status,
            reason,
            format!("details of {reason}"),
            Some(3),
            t(10),
        );
        s
    }

    fn reconciling(reason: &str) -> Progress {
        Progress::Reconciling {
            reason: reason.into(),
            message: format!("details of {reason}"),
        }
    }

    fn stalled(reason: &str) -> Progress {
        Progress::Stalled {
            reason: reason.into(),
            message: format!("details of {reason}"),
        }
    }

    /// Every `Ready` the reconciler writes, and what kstatus is to read from it.
    #[test]
    fn each_ready_state_maps_to_one_kstatus_state() {
        let table: &[(bool, &str, Progress)] = &[
            (true, reason::RECONCILED, Progress::Settled),
            (true, reason::PUBLIC_MODE, Progress::Settled),
            (true, reason::SUSPENDED, Progress::Settled),
            // Under way: checked again without anyone acting.
            (
                false,
                reason::DINGTALK_UNAVAILABLE,
                reconciling(reason::DINGTALK_UNAVAILABLE),
            ),
            (
                false,
                reason::APP_STILL_ENABLED,
                reconciling(reason::APP_STILL_ENABLED),
            ),
            (
                false,
                reason::CREATOR_ACCOUNT_INCOMPLETE,
                reconciling(reason::CREATOR_ACCOUNT_INCOMPLETE),
            ),
            (
                false,
                reason::STORE_UNAVAILABLE,
                reconciling(reason::STORE_UNAVAILABLE),
            ),
            // Stuck until a person acts.
            (
                false,
                reason::INVALID_CREDENTIALS,
                stalled(reason::INVALID_CREDENTIALS),
            ),
            (
                false,
                reason::SECRET_NOT_FOUND,
                stalled(reason::SECRET_NOT_FOUND),
            ),
            (false, reason::CORP_MISMATCH, stalled(reason::CORP_MISMATCH)),
            (false, reason::APP_NOT_FOUND, stalled(reason::APP_NOT_FOUND)),
            (
                false,
                reason::REBIND_FORBIDDEN,
                stalled(reason::REBIND_FORBIDDEN),
            ),
            (
                false,
                reason::DELETION_THRESHOLD_EXCEEDED,
                stalled(reason::DELETION_THRESHOLD_EXCEEDED),
            ),
            (
                false,
                reason::BINDING_CHANGED,
                stalled(reason::BINDING_CHANGED),
            ),
            (
                false,
                reason::APP_STATE_UNPROVED,
                stalled(reason::APP_STATE_UNPROVED),
            ),
            (false, reason::TRIAL_EXPIRED, stalled(reason::TRIAL_EXPIRED)),
        ];
        for (ready, why, expected) in table {
            assert_eq!(
                progress(&with_ready(*ready, why)),
                *expected,
                "Ready={ready} {why}"
            );
        }
    }

    #[test]
    fn a_sync_under_way_is_reconciling_even_when_ready() {
        let mut s = with_ready(true, reason::RECONCILED);
        s.directory = Some(DirectoryStatus {
            progress: Some(SyncProgress {
                departments: 4,
                members: 1200,
                started_at: None,
            }),
            ..Default::default()
        });
        let Progress::Reconciling { reason, message } = progress(&s) else {
            panic!("not reconciling: {:?}", progress(&s));
        };
        assert_eq!(reason, reason::SYNCING);
        assert!(message.contains("1200 members"), "{message}");
    }

    #[test]
    fn a_later_sync_under_way_is_written_as_reconciling_over_a_ready_status() {
        let mut ready = with_ready(true, reason::RECONCILED);
        set(&mut ready.conditions, &Progress::Settled, Some(3), t(10));
        let so_far = SyncProgress {
            departments: 7,
            members: 900,
            started_at: None,
        };
        let s = syncing(ready.clone(), so_far.clone(), Some(3), t(20));
        let r = conditions::get(&s.conditions, condition::RECONCILING).unwrap();
        assert_eq!(
            (r.status.as_str(), r.reason.as_str(), r.observed_generation),
            ("True", reason::SYNCING, Some(3))
        );
        assert!(r.message.contains("900 members"), "{}", r.message);
        assert!(conditions::get(&s.conditions, condition::STALLED).is_none());
        // Everything else is the last written status, untouched.
        assert_eq!(s.directory.as_ref().unwrap().progress, Some(so_far));
        assert_eq!(
            conditions::get(&s.conditions, condition::READY),
            conditions::get(&ready.conditions, condition::READY)
        );
        assert_eq!(s.mode, ready.mode);
    }

    #[test]
    fn no_ready_condition_yet_is_reconciling() {
        assert!(matches!(
            progress(&TenantStatus::default()),
            Progress::Reconciling { .. }
        ));
    }

    #[test]
    fn the_true_condition_is_present_and_the_other_removed() {
        let mut c = Vec::new();
        set(&mut c, &stalled(reason::SECRET_NOT_FOUND), Some(2), t(10));
        let s = conditions::get(&c, condition::STALLED).unwrap();
        assert_eq!(
            (s.status.as_str(), s.reason.as_str()),
            ("True", "SecretNotFound")
        );
        assert_eq!(s.message, "details of SecretNotFound");
        assert_eq!(s.observed_generation, Some(2));
        assert!(conditions::get(&c, condition::RECONCILING).is_none());

        set(
            &mut c,
            &reconciling(reason::DINGTALK_UNAVAILABLE),
            Some(3),
            t(20),
        );
        assert!(conditions::get(&c, condition::STALLED).is_none());
        let r = conditions::get(&c, condition::RECONCILING).unwrap();
        assert_eq!(
            (r.status.as_str(), r.observed_generation),
            ("True", Some(3))
        );

        set(&mut c, &Progress::Settled, Some(3), t(30));
        assert!(c.is_empty(), "{c:?}");
    }

    #[test]
    fn the_other_conditions_are_left_alone() {
        let mut s = with_ready(true, reason::RECONCILED);
        set(&mut s.conditions, &Progress::Settled, Some(3), t(20));
        assert_eq!(s.conditions.len(), 1);
        assert_eq!(s.conditions[0].type_, condition::READY);
    }

    #[test]
    fn a_new_tenant_is_reconciling_before_its_first_reconciliation_ends() {
        let s = first_status(Some(3), t(10));
        assert_eq!(s.observed_generation, Some(3));
        let c = conditions::get(&s.conditions, condition::RECONCILING).expect("Reconciling");
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("True", reason::SYNCING)
        );
        assert_eq!(c.observed_generation, Some(3));
        assert!(conditions::get(&s.conditions, condition::STALLED).is_none());
    }
}
