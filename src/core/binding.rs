//! The binding state machine: what a tenant's mode allows next.
//!
//! The ledger (in the store) is the source of truth for "was this tenant ever
//! unbound": once it holds an unbind, nothing brings the tenant back to
//! DingTalk mode, whatever the spec says or however the object got there.

use jiff::Timestamp;

use crate::api::{Mode, TenantSpec, UnbindReason};

/// What the ledger says about a tenant.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct LedgerState {
    /// The corp the tenant was last bound to, if any.
    pub bound_corp: Option<String>,
    /// When and why the tenant was unbound, if it was.
    pub unbound: Option<(Timestamp, UnbindReason)>,
}

/// The next step for a tenant, decided from its spec, its ledger and the time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Suspended: do nothing at all.
    Suspended,
    /// The tenant is (and stays) in public mode; nothing to do with DingTalk.
    Public {
        unbound: Option<(Timestamp, UnbindReason)>,
    },
    /// The ledger holds an unbind but the spec asks for DingTalk: refuse, make no DingTalk call.
    RebindForbidden { unbound_at: Timestamp },
    /// Unbind now, without preconditions (the trial expired).
    UnbindTrialExpired,
    /// `spec.mode: Public` on a bound tenant: check the preconditions, then unbind.
    RequestedUnbind,
    /// DingTalk mode: check the binding, push the scope, sync the directory.
    Operate,
}

/// Decides the next step. Pure.
pub fn next_step(spec: &TenantSpec, ledger: &LedgerState, now: Timestamp) -> Step {
    if spec.suspend {
        return Step::Suspended;
    }
    if let Some((at, _)) = ledger.unbound {
        return match spec.mode {
            Mode::DingTalk => Step::RebindForbidden { unbound_at: at },
            Mode::Public => Step::Public {
                unbound: ledger.unbound,
            },
        };
    }
    let bound_or_binding = ledger.bound_corp.is_some() || spec.mode == Mode::DingTalk;
    if bound_or_binding && trial_expired(spec, now) {
        return Step::UnbindTrialExpired;
    }
    match (spec.mode, ledger.bound_corp.is_some()) {
        (Mode::DingTalk, _) => Step::Operate,
        (Mode::Public, true) => Step::RequestedUnbind,
        (Mode::Public, false) => Step::Public { unbound: None },
    }
}

/// Whether the trial (if any) has expired at `now`.
pub fn trial_expired(spec: &TenantSpec, now: Timestamp) -> bool {
    spec.trial.as_ref().is_some_and(|t| t.expires_at.0 <= now)
}

/// What was found about the creator account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreatorCheck {
    pub has_contact: bool,
    /// The password Secret exists and holds a non-empty password.
    pub has_password: bool,
}

/// A precondition of a requested unbind that does not hold yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unmet {
    CreatorAccountIncomplete(String),
    AppStillEnabled(String),
}

impl Unmet {
    pub fn reason(&self) -> &'static str {
        match self {
            Unmet::CreatorAccountIncomplete(_) => crate::api::reason::CREATOR_ACCOUNT_INCOMPLETE,
            Unmet::AppStillEnabled(_) => crate::api::reason::APP_STILL_ENABLED,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Unmet::CreatorAccountIncomplete(m) | Unmet::AppStillEnabled(m) => m,
        }
    }
}

/// The first unmet precondition of a requested unbind, in the product's order:
/// the creator account is complete, then the app is disabled in DingTalk.
/// `app_enabled` is only consulted once the creator check passes.
pub fn unbind_precondition(
    creator: &CreatorCheck,
    app_enabled: impl FnOnce() -> bool,
    agent_id: i64,
) -> Option<Unmet> {
    if !creator.has_contact || !creator.has_password {
        let mut missing = Vec::new();
        if !creator.has_contact {
            missing.push("an email or phone in spec.creator");
        }
        if !creator.has_password {
            missing
                .push("a non-empty password in the Secret named by spec.creator.passwordSecretRef");
        }
        return Some(Unmet::CreatorAccountIncomplete(format!(
            "The unbind waits for the creator account: add {}.",
            missing.join(" and ")
        )));
    }
    if app_enabled() {
        return Some(Unmet::AppStillEnabled(format!(
            "The unbind waits for the DingTalk admin to disable (停用) app {agent_id} in the DingTalk admin console; set spec.mode back to DingTalk to withdraw the request."
        )));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{SyncSpec, TrialSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use proptest::prelude::*;

    fn spec(mode: Mode) -> TenantSpec {
        TenantSpec {
            mode,
            dingtalk: None,
            creator: None,
            trial: None,
            sync: SyncSpec::default(),
            deletion_policy: Default::default(),
            suspend: false,
        }
    }

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap()
    }

    fn bound() -> LedgerState {
        LedgerState {
            bound_corp: Some("dingacme".into()),
            unbound: None,
        }
    }

    fn unbound(at: i64) -> LedgerState {
        LedgerState {
            bound_corp: Some("dingacme".into()),
            unbound: Some((t(at), UnbindReason::Requested)),
        }
    }

    #[test]
    fn dingtalk_mode_operates() {
        assert_eq!(
            next_step(&spec(Mode::DingTalk), &LedgerState::default(), t(0)),
            Step::Operate
        );
        assert_eq!(
            next_step(&spec(Mode::DingTalk), &bound(), t(0)),
            Step::Operate
        );
    }

    #[test]
    fn public_on_a_bound_tenant_requests_an_unbind() {
        assert_eq!(
            next_step(&spec(Mode::Public), &bound(), t(0)),
            Step::RequestedUnbind
        );
    }

    #[test]
    fn public_from_the_start_is_just_public() {
        assert_eq!(
            next_step(&spec(Mode::Public), &LedgerState::default(), t(0)),
            Step::Public { unbound: None }
        );
    }

    #[test]
    fn an_unbound_tenant_asking_for_dingtalk_is_forbidden() {
        assert_eq!(
            next_step(&spec(Mode::DingTalk), &unbound(5), t(9)),
            Step::RebindForbidden { unbound_at: t(5) }
        );
    }

    #[test]
    fn suspend_wins_over_everything() {
        let mut s = spec(Mode::DingTalk);
        s.suspend = true;
        assert_eq!(next_step(&s, &unbound(5), t(9)), Step::Suspended);
    }

    #[test]
    fn trial_expiry_unbinds_at_the_instant() {
        let mut s = spec(Mode::DingTalk);
        s.trial = Some(TrialSpec {
            expires_at: Time(t(100)),
        });
        assert_eq!(next_step(&s, &bound(), t(99)), Step::Operate);
        assert_eq!(next_step(&s, &bound(), t(100)), Step::UnbindTrialExpired);
        // A trial on a tenant that is public from the start unbinds nothing.
        let mut p = spec(Mode::Public);
        p.trial = s.trial.clone();
        assert_eq!(
            next_step(&p, &LedgerState::default(), t(200)),
            Step::Public { unbound: None }
        );
    }

    #[test]
    fn preconditions_are_checked_in_order() {
        let incomplete = CreatorCheck {
            has_contact: true,
            has_password: false,
        };
        let complete = CreatorCheck {
            has_contact: true,
            has_password: true,
        };
        let mut asked = false;
        let unmet = unbind_precondition(
            &incomplete,
            || {
                asked = true;
                true
            },
            1001,
        );
        assert!(
            matches!(unmet, Some(Unmet::CreatorAccountIncomplete(ref m)) if m.contains("password"))
        );
        assert!(
            !asked,
            "the app status is only checked once the creator is complete"
        );
        assert!(
            matches!(unbind_precondition(&complete, || true, 1001), Some(Unmet::AppStillEnabled(ref m)) if m.contains("1001"))
        );
        assert_eq!(unbind_precondition(&complete, || false, 1001), None);
    }

    #[derive(Clone, Debug)]
    enum Event {
        SetMode(Mode),
        Suspend(bool),
        Clock(i64),
        DeleteAndRecreate,
    }

    fn arb_event() -> impl Strategy<Value = Event> {
        prop_oneof![
            prop_oneof![Just(Mode::DingTalk), Just(Mode::Public)].prop_map(Event::SetMode),
            any::<bool>().prop_map(Event::Suspend),
            (0i64..1000).prop_map(Event::Clock),
            Just(Event::DeleteAndRecreate),
        ]
    }

    proptest! {
        /// Whatever the sequence of edits, recreations and clock jumps, a tenant
        /// whose ledger holds an unbind never operates in DingTalk mode again.
        #[test]
        fn once_unbound_never_operates_again(events in prop::collection::vec(arb_event(), 1..40), trial_at in prop::option::of(0i64..1000)) {
            let mut s = spec(Mode::DingTalk);
            s.trial = trial_at.map(|at| TrialSpec { expires_at: Time(t(at)) });
            let mut ledger = LedgerState::default();
            let mut now = 0;
            for event in events {
                match event {
                    Event::SetMode(m) => s.mode = m,
                    Event::Suspend(b) => s.suspend = b,
                    Event::Clock(dt) => now += dt,
                    Event::DeleteAndRecreate => { s = spec(Mode::DingTalk); }
                }
                let step = next_step(&s, &ledger, t(now));
                if ledger.unbound.is_some() {
                    prop_assert!(matches!(step, Step::RebindForbidden { .. } | Step::Public { .. } | Step::Suspended), "{step:?}");
                }
                // Carry the step out as the shell would (preconditions always met).
                match step {
                    Step::Operate => ledger.bound_corp = Some("dingacme".into()),
                    Step::UnbindTrialExpired => ledger.unbound = Some((t(now), UnbindReason::TrialExpired)),
                    Step::RequestedUnbind => ledger.unbound = Some((t(now), UnbindReason::Requested)),
                    _ => {}
                }
            }
        }
    }
}
