//! The binding state machine: what a tenant's mode allows next, and the
//! preconditions an unbind must prove.
//!
//! Three records can prove that a tenant was unbound: the store's ledger, the
//! cluster's `UnbindRecord` and the Tenant's own status. Any one of them is
//! enough: once one exists, nothing brings the tenant back to DingTalk mode,
//! whatever the spec says or however the object got there.

use jiff::Timestamp;

use crate::api::{DingTalkSpec, Mode, TenantSpec, UnbindReason};

/// The binding identity: the app of a DingTalk organization a tenant is bound to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub corp_id: String,
    /// `None` while neither the ledger nor the spec names it (a marketplace
    /// app not installed yet, an entry written before the app was recorded).
    pub agent_id: Option<i64>,
}

impl Identity {
    /// The identity a spec declares.
    pub fn of(dt: &DingTalkSpec) -> Self {
        Self {
            corp_id: dt.corp_id.clone(),
            agent_id: dt.agent_id,
        }
    }

    /// `app <agentId>`, or `the app` while the agentId is unknown.
    pub fn app(&self) -> String {
        match self.agent_id {
            Some(agent) => format!("app {agent}"),
            None => "the app".into(),
        }
    }

    /// `<corpId>/<agentId>`, the value of the confirm-app-removed annotation.
    pub fn confirmation(&self) -> String {
        match self.agent_id {
            Some(agent) => format!("{}/{agent}", self.corp_id),
            None => format!("{}/", self.corp_id),
        }
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.agent_id {
            Some(agent) => write!(f, "app {agent} of organization {}", self.corp_id),
            None => write!(f, "the app of organization {}", self.corp_id),
        }
    }
}

/// The trial end recorded when the tenant was bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordedTrial {
    /// The entry predates recording trials: the spec's trial is taken as is.
    Unrecorded,
    /// The tenant was bound without a trial.
    None,
    /// The trial the tenant was bound with ends then.
    EndsAt(Timestamp),
}

/// The latest binding in the ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    pub at: Timestamp,
    pub corp_id: String,
    /// `None` in entries written before the app was recorded.
    pub agent_id: Option<i64>,
    pub trial: RecordedTrial,
}

impl Binding {
    /// Whether `dt` declares this binding's identity.
    /// A marketplace spec may leave the agentId out: the install's, which the
    /// ledger holds, is then the one.
    pub fn matches(&self, dt: &DingTalkSpec) -> bool {
        self.corp_id == dt.corp_id
            && match (self.agent_id, dt.agent_id) {
                (Some(bound), Some(declared)) => bound == declared,
                _ => true,
            }
    }

    /// The identity, taking the spec's agentId where the entry has none.
    pub fn identity(&self, dt: Option<&DingTalkSpec>) -> Identity {
        Identity {
            corp_id: self.corp_id.clone(),
            agent_id: self.agent_id.or(dt.and_then(|d| d.agent_id)),
        }
    }
}

/// One record of an unbind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unbind {
    pub at: Timestamp,
    pub reason: UnbindReason,
    /// Empty when the record that proves it does not say (a Tenant status).
    pub corp_id: String,
    pub agent_id: Option<i64>,
}

/// Every record of an unbind the shell found for a tenant.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Proofs {
    /// The store's ledger.
    pub ledger: Option<Unbind>,
    /// The cluster's `UnbindRecord`; always `None` where no cluster keeps records.
    pub record: Option<Unbind>,
    /// The Tenant's own status (`mode: Public` with `unboundAt`).
    pub status: Option<Unbind>,
}

/// The copies of an unbind that are missing and must be written again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Repairs {
    pub ledger: bool,
    pub record: bool,
}

impl Proofs {
    /// The unbind these records prove, if any: the earliest, with the most
    /// detailed record's organization and app.
    pub fn unbind(&self) -> Option<Unbind> {
        let all = [&self.ledger, &self.record, &self.status];
        let mut found: Option<Unbind> = None;
        for u in all.into_iter().flatten() {
            found = Some(match found {
                None => u.clone(),
                Some(f) => Unbind {
                    at: f.at.min(u.at),
                    reason: if u.at < f.at { u.reason } else { f.reason },
                    corp_id: if f.corp_id.is_empty() {
                        u.corp_id.clone()
                    } else {
                        f.corp_id
                    },
                    agent_id: f.agent_id.or(u.agent_id),
                },
            });
        }
        found
    }

    /// Which copies to write again, given that an unbind is proved.
    /// `records_kept`: the runner keeps `UnbindRecord`s (a cluster).
    pub fn repairs(&self, records_kept: bool) -> Repairs {
        if self.unbind().is_none() {
            return Repairs::default();
        }
        Repairs {
            ledger: self.ledger.is_none(),
            record: records_kept && self.record.is_none(),
        }
    }
}

/// The next step for a tenant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Suspended: syncs and scope pushes pause.
    Suspended,
    /// Public mode, never bound: nothing to do with DingTalk.
    Public,
    /// The tenant was unbound: finish the unbind wherever it stopped, and stay
    /// public. `rebind_requested`: the spec asks for DingTalk mode, which is refused.
    Unbound {
        unbind: Unbind,
        rebind_requested: bool,
    },
    /// The trial ended before the tenant was ever bound: it is never bound.
    TrialEndedBeforeBinding { ended: Timestamp },
    /// Unbind now, without preconditions: the trial ended.
    UnbindTrialExpired { bound: Identity },
    /// The spec names another organization or app than the binding: act on neither.
    BindingChanged {
        bound: Identity,
        declared: Option<Identity>,
    },
    /// `spec.mode: Public` on a bound tenant: prove the preconditions, then unbind.
    RequestedUnbind { bound: Identity },
    /// DingTalk mode: check the binding, push the scope, sync the directory.
    Operate,
}

/// Decides the next step from the spec, the ledger's latest binding, the
/// proved unbind (if any) and the time. Pure.
pub fn next_step(
    spec: &TenantSpec,
    binding: Option<&Binding>,
    unbind: Option<&Unbind>,
    now: Timestamp,
) -> Step {
    if let Some(u) = unbind {
        return Step::Unbound {
            unbind: u.clone(),
            rebind_requested: spec.mode == Mode::DingTalk,
        };
    }
    let trial_end = trial_end(spec, binding).filter(|&end| end <= now);
    let Some(binding) = binding else {
        // Never bound.
        return match (spec.mode, trial_end) {
            (Mode::DingTalk, Some(ended)) => Step::TrialEndedBeforeBinding { ended },
            _ if spec.suspend => Step::Suspended,
            (Mode::DingTalk, None) => Step::Operate,
            (Mode::Public, _) => Step::Public,
        };
    };
    let dt = spec.dingtalk.as_ref();
    // A trial's end is part of the contract: carried out even while suspended,
    // and on the bound identity whatever the spec now says.
    if trial_end.is_some() {
        return Step::UnbindTrialExpired {
            bound: binding.identity(dt),
        };
    }
    if spec.suspend {
        return Step::Suspended;
    }
    if !dt.is_some_and(|d| binding.matches(d)) {
        return Step::BindingChanged {
            bound: binding.identity(dt),
            declared: dt.map(Identity::of),
        };
    }
    match spec.mode {
        Mode::DingTalk => Step::Operate,
        Mode::Public => Step::RequestedUnbind {
            bound: binding.identity(dt),
        },
    }
}

/// The trial end the controller acts on. A trial may be removed (the tenant
/// paid) or moved later; one added after binding, or moved earlier than the
/// end recorded at binding, is never acted on.
pub fn trial_end(spec: &TenantSpec, binding: Option<&Binding>) -> Option<Timestamp> {
    let declared = spec.trial.as_ref()?.expires_at.0;
    match binding.map_or(RecordedTrial::Unrecorded, |b| b.trial) {
        RecordedTrial::Unrecorded => Some(declared),
        RecordedTrial::None => None,
        RecordedTrial::EndsAt(recorded) => Some(declared.max(recorded)),
    }
}

/// What was found about the creator account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreatorCheck {
    pub has_contact: bool,
    /// The password Secret exists and its key holds a non-empty value.
    pub has_password: bool,
}

/// What DingTalk showed of the bound app, read with the tenant's credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppSeen {
    /// Listed in `allInnerApps` with `appStatus` 0 (停用), read with
    /// credentials of the bound organization.
    Disabled,
    /// Listed and enabled.
    Enabled,
    /// The credentials work for the bound organization, but it does not list the app.
    NotListed,
    /// DingTalk refused the credentials.
    CredentialsRefused,
    /// The credentials belong to another organization.
    OtherOrganization,
    /// A marketplace app: DingTalk, asked with the suite's own token, says
    /// the organization has not installed it (any more).
    Uninstalled,
    /// No usable credentials (the Secret is missing or incomplete): why.
    NoCredentials(String),
}

impl AppSeen {
    fn describe(&self, bound: &Identity) -> String {
        match self {
            AppSeen::Disabled => format!("DingTalk shows {bound} disabled"),
            AppSeen::Enabled => format!("DingTalk shows {bound} enabled"),
            AppSeen::NotListed => format!(
                "organization {} does not list {}",
                bound.corp_id,
                bound.app()
            ),
            AppSeen::CredentialsRefused => "DingTalk refuses the app credentials".into(),
            AppSeen::Uninstalled => format!(
                "DingTalk shows the platform's app uninstalled from organization {}",
                bound.corp_id
            ),
            AppSeen::OtherOrganization => format!(
                "the app credentials belong to another organization than {}",
                bound.corp_id
            ),
            AppSeen::NoCredentials(why) => why.trim_end_matches('.').to_string(),
        }
    }
}

/// How the app was proved disabled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppProof {
    /// DingTalk shows the bound app disabled.
    Seen,
    /// DingTalk can no longer show it, and a person confirmed its removal with this value.
    Confirmed(String),
}

/// A precondition of a requested unbind that is not proved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unmet {
    CreatorAccountIncomplete(String),
    AppStillEnabled(String),
    /// DingTalk cannot show the bound app, and nobody confirmed its removal.
    AppStateUnproved(String),
}

impl Unmet {
    pub fn reason(&self) -> &'static str {
        match self {
            Unmet::CreatorAccountIncomplete(_) => crate::api::reason::CREATOR_ACCOUNT_INCOMPLETE,
            Unmet::AppStillEnabled(_) => crate::api::reason::APP_STILL_ENABLED,
            Unmet::AppStateUnproved(_) => crate::api::reason::APP_STATE_UNPROVED,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Unmet::CreatorAccountIncomplete(m)
            | Unmet::AppStillEnabled(m)
            | Unmet::AppStateUnproved(m) => m,
        }
    }
}

/// The first precondition of an unbind: the creator account is complete.
pub fn creator_unmet(creator: &CreatorCheck) -> Option<Unmet> {
    if creator.has_contact && creator.has_password {
        return None;
    }
    let mut missing = Vec::new();
    if !creator.has_contact {
        missing.push("an email or phone in spec.creator");
    }
    if !creator.has_password {
        missing.push("a non-empty password in the Secret named by spec.creator.passwordSecretRef");
    }
    Some(Unmet::CreatorAccountIncomplete(format!(
        "The unbind waits for the creator account: add {}.",
        missing.join(" and ")
    )))
}

/// The second precondition: the bound app is disabled in DingTalk. Proved
/// when DingTalk shows it disabled, or, when DingTalk can no longer show it
/// at all (停用并删除 removes the app and its credentials), when `confirmation`
/// (the `dingbind.dev/confirm-app-removed` annotation) names exactly the bound
/// identity. Anything else is not proved: fail closed.
pub fn app_disabled(
    bound: &Identity,
    seen: &AppSeen,
    confirmation: Option<&str>,
) -> Result<AppProof, Unmet> {
    let expected = bound.confirmation();
    let seen_text = seen.describe(bound);
    match seen {
        AppSeen::Disabled | AppSeen::Uninstalled => Ok(AppProof::Seen),
        AppSeen::Enabled => Err(Unmet::AppStillEnabled(format!(
            "The unbind waits for the DingTalk admin to disable (停用) {} in the DingTalk admin console ({seen_text}); set spec.mode back to DingTalk to withdraw the request.",
            bound.app()
        ))),
        _ if confirmation == Some(expected.as_str()) => Ok(AppProof::Confirmed(expected)),
        _ => Err(Unmet::AppStateUnproved(format!(
            "The unbind waits for proof that {bound} is disabled: {seen_text}. If the app was disabled and deleted (停用并删除) in DingTalk, confirm with the annotation {}: \"{expected}\"; set spec.mode back to DingTalk to withdraw the request.",
            crate::api::CONFIRM_APP_REMOVED
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{AppKind, CredentialsSecretRef, SyncSpec, TrialSpec, VisibleScope};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use proptest::prelude::*;

    fn dingtalk(corp: &str, agent: i64) -> DingTalkSpec {
        DingTalkSpec {
            app: AppKind::Internal,
            corp_id: corp.into(),
            agent_id: Some(agent),
            credentials_secret_ref: Some(CredentialsSecretRef {
                name: "creds".into(),
                app_key_key: "appKey".into(),
                app_secret_key: "appSecret".into(),
                token_key: "token".into(),
                aes_key_key: "aesKey".into(),
            }),
            visible_scope: Some(VisibleScope {
                all_employees: true,
                ..Default::default()
            }),
            events: None,
        }
    }

    fn spec(mode: Mode) -> TenantSpec {
        TenantSpec {
            mode,
            dingtalk: Some(dingtalk("dingacme", 1001)),
            creator: None,
            trial: None,
            sync: SyncSpec::default(),
            deletion_policy: Default::default(),
            suspend: false,
        }
    }

    fn with_trial(mut s: TenantSpec, at: i64) -> TenantSpec {
        s.trial = Some(TrialSpec {
            expires_at: Time(t(at)),
        });
        s
    }

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap()
    }

    fn bound(trial: RecordedTrial) -> Binding {
        Binding {
            at: t(0),
            corp_id: "dingacme".into(),
            agent_id: Some(1001),
            trial,
        }
    }

    fn acme() -> Identity {
        Identity {
            corp_id: "dingacme".into(),
            agent_id: Some(1001),
        }
    }

    fn unbind(at: i64) -> Unbind {
        Unbind {
            at: t(at),
            reason: UnbindReason::Requested,
            corp_id: "dingacme".into(),
            agent_id: Some(1001),
        }
    }

    #[test]
    fn dingtalk_mode_operates() {
        assert_eq!(
            next_step(&spec(Mode::DingTalk), None, None, t(0)),
            Step::Operate
        );
        let b = bound(RecordedTrial::None);
        assert_eq!(
            next_step(&spec(Mode::DingTalk), Some(&b), None, t(0)),
            Step::Operate
        );
    }

    #[test]
    fn public_on_a_bound_tenant_requests_an_unbind_of_the_bound_app() {
        let b = bound(RecordedTrial::None);
        assert_eq!(
            next_step(&spec(Mode::Public), Some(&b), None, t(0)),
            Step::RequestedUnbind { bound: acme() }
        );
    }

    #[test]
    fn public_from_the_start_is_just_public() {
        assert_eq!(
            next_step(&spec(Mode::Public), None, None, t(0)),
            Step::Public
        );
    }

    #[test]
    fn a_proved_unbind_wins_over_everything_and_refuses_dingtalk() {
        let mut s = spec(Mode::DingTalk);
        s.suspend = true;
        let b = bound(RecordedTrial::None);
        assert_eq!(
            next_step(&s, Some(&b), Some(&unbind(5)), t(9)),
            Step::Unbound {
                unbind: unbind(5),
                rebind_requested: true
            }
        );
        assert_eq!(
            next_step(&spec(Mode::Public), None, Some(&unbind(5)), t(9)),
            Step::Unbound {
                unbind: unbind(5),
                rebind_requested: false
            }
        );
    }

    #[test]
    fn a_changed_identity_is_never_acted_on() {
        let b = bound(RecordedTrial::None);
        for (corp, agent) in [("dingacme", 1002), ("dingother", 1001)] {
            for mode in [Mode::DingTalk, Mode::Public] {
                let mut s = spec(mode);
                s.dingtalk = Some(dingtalk(corp, agent));
                assert_eq!(
                    next_step(&s, Some(&b), None, t(0)),
                    Step::BindingChanged {
                        bound: acme(),
                        declared: Some(Identity {
                            corp_id: corp.into(),
                            agent_id: Some(agent)
                        })
                    },
                    "{corp}/{agent} in {mode}"
                );
            }
        }
        let mut s = spec(Mode::Public);
        s.dingtalk = None;
        assert_eq!(
            next_step(&s, Some(&b), None, t(0)),
            Step::BindingChanged {
                bound: acme(),
                declared: None
            }
        );
    }

    #[test]
    fn an_entry_without_an_app_matches_on_the_organization() {
        let mut b = bound(RecordedTrial::Unrecorded);
        b.agent_id = None;
        assert_eq!(
            next_step(&spec(Mode::Public), Some(&b), None, t(0)),
            Step::RequestedUnbind { bound: acme() }
        );
    }

    #[test]
    fn suspend_pauses_operation_but_not_the_trial() {
        let mut s = with_trial(spec(Mode::DingTalk), 100);
        s.suspend = true;
        let b = bound(RecordedTrial::EndsAt(t(100)));
        assert_eq!(next_step(&s, Some(&b), None, t(99)), Step::Suspended);
        assert_eq!(
            next_step(&s, Some(&b), None, t(100)),
            Step::UnbindTrialExpired { bound: acme() }
        );
    }

    #[test]
    fn trial_expiry_unbinds_at_the_instant() {
        let s = with_trial(spec(Mode::DingTalk), 100);
        let b = bound(RecordedTrial::EndsAt(t(100)));
        assert_eq!(next_step(&s, Some(&b), None, t(99)), Step::Operate);
        assert_eq!(
            next_step(&s, Some(&b), None, t(100)),
            Step::UnbindTrialExpired { bound: acme() }
        );
        // A public tenant that was never bound has nothing to unbind.
        let p = with_trial(spec(Mode::Public), 100);
        assert_eq!(next_step(&p, None, None, t(200)), Step::Public);
    }

    #[test]
    fn a_trial_that_ended_before_binding_means_never_bound() {
        let s = with_trial(spec(Mode::DingTalk), 100);
        assert_eq!(next_step(&s, None, None, t(99)), Step::Operate);
        assert_eq!(
            next_step(&s, None, None, t(100)),
            Step::TrialEndedBeforeBinding { ended: t(100) }
        );
    }

    #[test]
    fn a_trial_added_after_binding_or_moved_earlier_is_not_acted_on() {
        // Bound without a trial: a trial in the past added later does nothing.
        let added = with_trial(spec(Mode::DingTalk), 1);
        let b = bound(RecordedTrial::None);
        assert_eq!(next_step(&added, Some(&b), None, t(500)), Step::Operate);
        // Bound with a trial ending at 100: moved to 50, it still ends at 100.
        let earlier = with_trial(spec(Mode::DingTalk), 50);
        let b = bound(RecordedTrial::EndsAt(t(100)));
        assert_eq!(next_step(&earlier, Some(&b), None, t(60)), Step::Operate);
        assert_eq!(
            next_step(&earlier, Some(&b), None, t(100)),
            Step::UnbindTrialExpired { bound: acme() }
        );
        // Moved later, it ends later; removed, it never ends.
        let later = with_trial(spec(Mode::DingTalk), 300);
        assert_eq!(next_step(&later, Some(&b), None, t(200)), Step::Operate);
        assert_eq!(
            next_step(&spec(Mode::DingTalk), Some(&b), None, t(10_000)),
            Step::Operate
        );
    }

    #[test]
    fn any_one_record_proves_the_unbind_and_the_others_are_repaired() {
        let u = unbind(5);
        let status_only = Proofs {
            status: Some(Unbind {
                corp_id: String::new(),
                agent_id: None,
                ..u.clone()
            }),
            ..Default::default()
        };
        assert!(status_only.unbind().is_some());
        assert_eq!(
            status_only.repairs(true),
            Repairs {
                ledger: true,
                record: true
            }
        );
        assert_eq!(
            status_only.repairs(false),
            Repairs {
                ledger: true,
                record: false
            }
        );
        let all = Proofs {
            ledger: Some(u.clone()),
            record: Some(unbind(7)),
            status: Some(unbind(9)),
        };
        assert_eq!(all.unbind(), Some(u.clone()), "the earliest");
        assert_eq!(all.repairs(true), Repairs::default());
        let record_only = Proofs {
            record: Some(u.clone()),
            ..Default::default()
        };
        assert_eq!(record_only.unbind(), Some(u));
        assert_eq!(
            record_only.repairs(true),
            Repairs {
                ledger: true,
                record: false
            }
        );
        assert_eq!(Proofs::default().unbind(), None);
        assert_eq!(Proofs::default().repairs(true), Repairs::default());
    }

    #[test]
    fn the_creator_needs_a_contact_and_a_password() {
        let incomplete = CreatorCheck {
            has_contact: true,
            has_password: false,
        };
        assert!(
            matches!(creator_unmet(&incomplete), Some(Unmet::CreatorAccountIncomplete(ref m)) if m.contains("password"))
        );
        let complete = CreatorCheck {
            has_contact: true,
            has_password: true,
        };
        assert_eq!(creator_unmet(&complete), None);
    }

    #[test]
    fn the_app_is_disabled_only_when_proved() {
        let id = acme();
        assert_eq!(
            app_disabled(&id, &AppSeen::Disabled, None),
            Ok(AppProof::Seen)
        );
        assert!(matches!(
            app_disabled(&id, &AppSeen::Enabled, Some("dingacme/1001")),
            Err(Unmet::AppStillEnabled(_))
        ));
        for seen in [
            AppSeen::NotListed,
            AppSeen::CredentialsRefused,
            AppSeen::OtherOrganization,
            AppSeen::NoCredentials("Secret acme/creds does not exist.".into()),
        ] {
            let unmet = app_disabled(&id, &seen, None).unwrap_err();
            assert_eq!(
                unmet.reason(),
                crate::api::reason::APP_STATE_UNPROVED,
                "{seen:?}"
            );
            assert!(
                unmet.message().contains("\"dingacme/1001\""),
                "{}",
                unmet.message()
            );
            for wrong in ["dingacme/1002", "dingacme", "dingacme/1001 ", ""] {
                assert!(app_disabled(&id, &seen, Some(wrong)).is_err(), "{wrong:?}");
            }
            assert_eq!(
                app_disabled(&id, &seen, Some("dingacme/1001")),
                Ok(AppProof::Confirmed("dingacme/1001".into()))
            );
        }
        let msg = app_disabled(&id, &AppSeen::NotListed, None)
            .unwrap_err()
            .message()
            .to_string();
        assert!(msg.contains("does not list app 1001"), "{msg}");
    }

    #[derive(Clone, Debug)]
    enum Edit {
        SetMode(Mode),
        Suspend(bool),
        Clock(i64),
        ChangeAgent(i64),
        SetTrial(Option<i64>),
        Recreate { mode: Mode, trial: Option<i64> },
        LoseLedger,
        LoseStatus,
    }

    fn arb_edit() -> impl Strategy<Value = Edit> {
        let mode = || prop_oneof![Just(Mode::DingTalk), Just(Mode::Public)];
        prop_oneof![
            mode().prop_map(Edit::SetMode),
            any::<bool>().prop_map(Edit::Suspend),
            (-300i64..1000).prop_map(Edit::Clock),
            (1000i64..1003).prop_map(Edit::ChangeAgent),
            prop::option::of(0i64..2000).prop_map(Edit::SetTrial),
            (mode(), prop::option::of(0i64..2000))
                .prop_map(|(mode, trial)| Edit::Recreate { mode, trial }),
            Just(Edit::LoseLedger),
            Just(Edit::LoseStatus),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// Whatever the edits, recreations, clock jumps and lost records (one
        /// record of an unbind always survives: the cluster's), once a tenant
        /// is unbound it never operates in DingTalk mode again; it is unbound
        /// only by a request whose preconditions were proved or by its trial;
        /// and the bound identity never changes while bound.
        #[test]
        fn once_unbound_never_operates_again(edits in prop::collection::vec(arb_edit(), 1..40)) {
            let mut s = spec(Mode::DingTalk);
            let mut ledger_binding: Option<Binding> = None;
            let mut proofs = Proofs::default();
            let mut now = 0i64;
            for edit in edits {
                match edit {
                    Edit::SetMode(m) => s.mode = m,
                    Edit::Suspend(b) => s.suspend = b,
                    Edit::Clock(dt) => now += dt,
                    Edit::ChangeAgent(a) => s.dingtalk = Some(dingtalk("dingacme", a)),
                    Edit::SetTrial(at) => s = match at { Some(at) => with_trial(s, at), None => TenantSpec { trial: None, ..s } },
                    Edit::Recreate { mode, trial } => {
                        s = spec(mode);
                        if let Some(at) = trial { s = with_trial(s, at); }
                        proofs.status = None;
                    }
                    Edit::LoseLedger => { ledger_binding = None; proofs.ledger = None; }
                    Edit::LoseStatus => proofs.status = None,
                }
                let was_unbound = proofs.unbind().is_some();
                let step = next_step(&s, ledger_binding.as_ref(), proofs.unbind().as_ref(), t(now));
                if was_unbound {
                    prop_assert!(matches!(step, Step::Unbound { .. }), "{step:?}");
                }
                // Carry the step out as the shell would.
                let agent = ledger_binding.as_ref().and_then(|b| b.agent_id);
                let unbound = |at, reason| Unbind { at: t(at), reason, corp_id: "dingacme".into(), agent_id: agent };
                match step {
                    Step::Operate => {
                        let dt = s.dingtalk.clone().unwrap();
                        if let Some(b) = &ledger_binding {
                            prop_assert!(b.matches(&dt), "operating on another identity");
                        } else {
                            ledger_binding = Some(Binding { at: t(now), corp_id: dt.corp_id, agent_id: dt.agent_id, trial: s.trial.as_ref().map_or(RecordedTrial::None, |tr| RecordedTrial::EndsAt(tr.expires_at.0)) });
                        }
                    }
                    Step::UnbindTrialExpired { .. } => {
                        let b = ledger_binding.as_ref().unwrap();
                        let end = trial_end(&s, Some(b)).unwrap();
                        prop_assert!(end <= t(now));
                        if let RecordedTrial::EndsAt(recorded) = b.trial { prop_assert!(end >= recorded); }
                        prop_assert!(b.trial != RecordedTrial::None, "a trial added after binding was acted on");
                        let u = unbound(now, UnbindReason::TrialExpired);
                        proofs = Proofs { ledger: Some(u.clone()), record: Some(u.clone()), status: Some(u) };
                    }
                    Step::RequestedUnbind { bound } => {
                        let b = ledger_binding.as_ref().unwrap();
                        prop_assert_eq!(bound.agent_id, b.agent_id, "the bound app is the one unbound");
                        prop_assert_eq!(s.mode, Mode::Public);
                        // Preconditions proved.
                        let u = unbound(now, UnbindReason::Requested);
                        proofs = Proofs { ledger: Some(u.clone()), record: Some(u.clone()), status: Some(u) };
                    }
                    Step::Unbound { .. } => {
                        let r = proofs.repairs(true);
                        let u = proofs.unbind().unwrap();
                        if r.ledger { proofs.ledger = Some(u.clone()); }
                        proofs.status = Some(u);
                    }
                    Step::BindingChanged { bound, declared } => {
                        prop_assert_ne!(Some(bound), declared);
                    }
                    Step::Suspended | Step::Public | Step::TrialEndedBeforeBinding { .. } => {}
                }
            }
        }
    }
}
