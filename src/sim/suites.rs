//! Marketplace apps (suites, 第三方企业应用) and the corps that installed
//! them: each suite's credentials, its current suite ticket (only the newest
//! is accepted: "a new ticket invalidates the old one") and when the next is
//! due, and per corp the install: the agentId the corp gave the app, its
//! state (active or stopped, 停用), whether the micro-app was removed
//! (authorization kept), its visible scope and the admin who installed it.
//! Pure data and rules; the clock and fresh values are passed in. The tokens
//! live with the others in `model.rs` (`World`), the HTTP side in `api.rs`
//! and `suite_admin.rs`, the events in `changes.rs`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::model::{ModelError, SCOPE_MAX_IDS};
use super::org_file::ScopeSpec;
use crate::dingtalk::types::ROOT_DEPT_ID;

/// The first suiteId the simulator gives.
pub const FIRST_SUITE_ID: i64 = 100_001;

/// Allocated agentIds are above every agentId of the corp and at least this.
pub const FIRST_AGENT_ID: i64 = 10_001;

/// What a corp token's `auth/scopes` lists as readable user fields.
pub const AUTH_USER_FIELDS: [&str; 12] = [
    "userid",
    "unionid",
    "name",
    "mobile",
    "email",
    "position",
    "jobnumber",
    "department",
    "avatar",
    "active",
    "isAdmin",
    "isBoss",
];

/// An install's state in the corp's console.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum InstallState {
    Active,
    /// 停用 (`org_micro_app_stop`); `org_micro_app_restore` makes it active.
    Stopped,
}

/// One corp's install of a suite.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Install {
    pub agent_id: i64,
    pub state: InstallState,
    /// The micro-app was deleted (`org_micro_app_remove`), the authorization kept.
    pub removed: bool,
    /// The visible scope, which is also the contacts scope of a marketplace app.
    pub scope: ScopeSpec,
    /// The admin who installed it (`authUserInfo.userId`).
    pub admin_user_id: Option<String>,
    /// The `permanentCode` of `org_suite_auth`.
    pub permanent_code: String,
}

/// A marketplace app.
#[derive(Clone, Debug)]
pub struct Suite {
    pub suite_key: String,
    suite_secret: String,
    pub suite_id: i64,
    /// The app's name in every corp (`agentName`).
    pub name: String,
    /// A new ticket this often once one was issued; `None`: only on connect.
    pub ticket_period: Option<Duration>,
    ticket: Option<String>,
    next_ticket_at: Option<Instant>,
    /// By corpId.
    pub installs: BTreeMap<String, Install>,
}

impl Suite {
    /// The current suite ticket, if one was issued.
    pub fn ticket(&self) -> Option<&str> {
        self.ticket.as_deref()
    }

    /// The app id DingTalk lists in `authInfo` (`appId`): the suiteId here.
    pub fn app_id(&self) -> i64 {
        self.suite_id
    }

    /// The suite's `eventUnifiedAppId`, the same in every corp.
    pub fn unified_app_id(&self) -> String {
        format!("suite-{}", self.suite_id)
    }

    fn secret_matches(&self, secret: &str) -> bool {
        self.suite_secret == secret
    }
}

/// Why a marketplace token request was refused, as DingTalk's v1.0 codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SuiteAuthError {
    #[error("invalidSuiteKey")]
    Key,
    #[error("invalidSuiteSecret")]
    Secret,
    /// No ticket issued yet, or not the current one.
    #[error("invalidSuiteTicket")]
    Ticket,
    /// The corp does not exist, has not installed the suite, or uninstalled it.
    #[error("invalidAuthInfo")]
    NotInstalled,
}

impl SuiteAuthError {
    /// The v1.0 `code`.
    pub fn code(self) -> &'static str {
        match self {
            SuiteAuthError::Key => "invalidSuiteKey",
            SuiteAuthError::Secret => "invalidSuiteSecret",
            SuiteAuthError::Ticket => "invalidSuiteTicket",
            SuiteAuthError::NotInstalled => "invalidAuthInfo",
        }
    }

    /// The v1.0 `message`.
    pub fn message(self) -> &'static str {
        match self {
            SuiteAuthError::Key => "无效的suiteKey",
            SuiteAuthError::Secret => "无效的suiteSecret",
            SuiteAuthError::Ticket => "无效的suiteTicket",
            SuiteAuthError::NotInstalled => "授权信息不存在，企业未授权该应用",
        }
    }
}

/// An install or its update (`PUT /_sim/corps/{corpId}/suites/{suiteKey}`):
/// absent fields keep their value, or take the default on a first install
/// (an allocated agentId, all employees, the corp's first admin).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InstallRequest {
    pub agent_id: Option<i64>,
    pub scope: Option<ScopeSpec>,
    pub admin_user_id: Option<String>,
}

/// What an install did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Installed {
    /// The corp had not installed the suite (`org_suite_auth`; otherwise `org_suite_change`).
    pub first: bool,
    /// The agentId changed (the corp's tokens of the suite are revoked).
    pub agent_changed: bool,
}

/// A change of an install's state in the corp's console.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifecycle {
    Stop,
    Restore,
    Remove,
}

impl Lifecycle {
    /// The event DingTalk sends for it.
    pub fn event_type(self) -> &'static str {
        match self {
            Lifecycle::Stop => "org_micro_app_stop",
            Lifecycle::Restore => "org_micro_app_restore",
            Lifecycle::Remove => "org_micro_app_remove",
        }
    }
}

/// "All employees": the root department.
pub fn all_employees() -> ScopeSpec {
    ScopeSpec {
        dept_ids: vec![ROOT_DEPT_ID],
        ..ScopeSpec::default()
    }
}

fn check_scope(scope: &ScopeSpec) -> Result<(), ModelError> {
    if scope.dept_ids.len() > SCOPE_MAX_IDS || scope.user_ids.len() > SCOPE_MAX_IDS {
        return Err(ModelError::Invalid(format!(
            "a visible scope holds at most {SCOPE_MAX_IDS} ids per list"
        )));
    }
    Ok(())
}

/// Every suite, by suiteKey.
#[derive(Clone, Debug, Default)]
pub struct Suites {
    by_key: BTreeMap<String, Suite>,
}

impl Suites {
    /// Adds a suite; answers its suiteId. Refused when the key exists.
    pub fn add(
        &mut self,
        suite_key: &str,
        suite_secret: &str,
        ticket_period_secs: u64,
        name: Option<String>,
    ) -> Result<i64, ModelError> {
        if suite_key.is_empty() || suite_secret.is_empty() {
            return Err(ModelError::Invalid(
                "suiteKey and suiteSecret must not be empty".into(),
            ));
        }
        if self.by_key.contains_key(suite_key) {
            return Err(ModelError::Conflict(format!("suite {suite_key} exists")));
        }
        let suite_id = self
            .by_key
            .values()
            .map(|s| s.suite_id + 1)
            .max()
            .unwrap_or(FIRST_SUITE_ID)
            .max(FIRST_SUITE_ID);
        self.by_key.insert(
            suite_key.to_owned(),
            Suite {
                suite_key: suite_key.to_owned(),
                suite_secret: suite_secret.to_owned(),
                suite_id,
                name: name.unwrap_or_else(|| suite_key.to_owned()),
                ticket_period: (ticket_period_secs > 0)
                    .then(|| Duration::from_secs(ticket_period_secs)),
                ticket: None,
                next_ticket_at: None,
                installs: BTreeMap::new(),
            },
        );
        Ok(suite_id)
    }

    pub fn get(&self, suite_key: &str) -> Result<&Suite, ModelError> {
        self.by_key
            .get(suite_key)
            .ok_or_else(|| ModelError::SuiteNotFound(suite_key.to_owned()))
    }

    fn get_mut(&mut self, suite_key: &str) -> Result<&mut Suite, ModelError> {
        self.by_key
            .get_mut(suite_key)
            .ok_or_else(|| ModelError::SuiteNotFound(suite_key.to_owned()))
    }

    pub fn contains(&self, suite_key: &str) -> bool {
        self.by_key.contains_key(suite_key)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Suite> {
        self.by_key.values()
    }

    /// The install of `suite_key` in `corp_id`.
    pub fn install_of(&self, suite_key: &str, corp_id: &str) -> Result<&Install, ModelError> {
        self.get(suite_key)?
            .installs
            .get(corp_id)
            .ok_or_else(|| ModelError::NotInstalled {
                suite_key: suite_key.to_owned(),
                corp_id: corp_id.to_owned(),
            })
    }

    fn install_mut(&mut self, suite_key: &str, corp_id: &str) -> Result<&mut Install, ModelError> {
        self.get_mut(suite_key)?
            .installs
            .get_mut(corp_id)
            .ok_or_else(|| ModelError::NotInstalled {
                suite_key: suite_key.to_owned(),
                corp_id: corp_id.to_owned(),
            })
    }

    /// The suites installed (and not uninstalled) in `corp_id`, stopped and
    /// removed ones included, with their installs.
    pub fn installed_in<'a>(
        &'a self,
        corp_id: &'a str,
    ) -> impl Iterator<Item = (&'a Suite, &'a Install)> + 'a {
        self.by_key
            .values()
            .filter_map(move |s| s.installs.get(corp_id).map(|i| (s, i)))
    }

    /// The suite whose key and secret these are.
    pub fn check_secret(
        &self,
        suite_key: &str,
        suite_secret: &str,
    ) -> Result<&Suite, SuiteAuthError> {
        let suite = self.by_key.get(suite_key).ok_or(SuiteAuthError::Key)?;
        if !suite.secret_matches(suite_secret) {
            return Err(SuiteAuthError::Secret);
        }
        Ok(suite)
    }

    /// Checks a token request: the key, the secret, then the ticket (the
    /// current one only).
    pub fn authenticate(
        &self,
        suite_key: &str,
        suite_secret: &str,
        suite_ticket: &str,
    ) -> Result<&Suite, SuiteAuthError> {
        let suite = self.check_secret(suite_key, suite_secret)?;
        match suite.ticket() {
            Some(t) if t == suite_ticket => Ok(suite),
            _ => Err(SuiteAuthError::Ticket),
        }
    }

    /// Issues a new ticket now (the previous one is refused from now on);
    /// the next is due a period later.
    pub fn issue_ticket(
        &mut self,
        suite_key: &str,
        now: Instant,
        fresh: impl FnOnce() -> String,
    ) -> Result<String, ModelError> {
        let suite = self.get_mut(suite_key)?;
        let ticket = fresh();
        suite.ticket = Some(ticket.clone());
        suite.next_ticket_at = suite.ticket_period.and_then(|p| now.checked_add(p));
        Ok(ticket)
    }

    /// The ticket a new connection of the suite is sent: the current one, or
    /// a new one when none was issued yet.
    pub fn ticket_for_connect(
        &mut self,
        suite_key: &str,
        now: Instant,
        fresh: impl FnOnce() -> String,
    ) -> Result<String, ModelError> {
        match self.get(suite_key)?.ticket() {
            Some(t) => Ok(t.to_owned()),
            None => self.issue_ticket(suite_key, now, fresh),
        }
    }

    /// The suites whose next periodic ticket is due at `now`.
    pub fn due_tickets(&self, now: Instant) -> Vec<String> {
        self.by_key
            .values()
            .filter(|s| s.next_ticket_at.is_some_and(|at| at <= now))
            .map(|s| s.suite_key.clone())
            .collect()
    }

    /// Installs `suite_key` in `corp_id`, or updates the install. `taken`
    /// are the agentIds of the corp's internal apps; an agentId is also
    /// distinct from every other suite's install in the corp.
    pub fn install(
        &mut self,
        suite_key: &str,
        corp_id: &str,
        req: InstallRequest,
        taken: &[i64],
        default_admin: Option<String>,
        permanent_code: impl FnOnce() -> String,
    ) -> Result<Installed, ModelError> {
        let others: Vec<i64> = self
            .by_key
            .values()
            .filter(|s| s.suite_key != suite_key)
            .filter_map(|s| s.installs.get(corp_id).map(|i| i.agent_id))
            .chain(taken.iter().copied())
            .collect();
        if let Some(scope) = &req.scope {
            check_scope(scope)?;
        }
        if let Some(a) = req.agent_id {
            if a <= 0 {
                return Err(ModelError::Invalid(format!("agentId {a} must be positive")));
            }
            if others.contains(&a) {
                return Err(ModelError::Conflict(format!(
                    "agentId {a} is another app's in {corp_id}"
                )));
            }
        }
        let suite = self.get_mut(suite_key)?;
        match suite.installs.get_mut(corp_id) {
            Some(install) => {
                let agent_changed = req.agent_id.is_some_and(|a| a != install.agent_id);
                if let Some(a) = req.agent_id {
                    install.agent_id = a;
                }
                if let Some(scope) = req.scope {
                    install.scope = scope;
                }
                if let Some(admin) = req.admin_user_id {
                    install.admin_user_id = Some(admin);
                }
                // Added again from the market: the micro-app is back.
                install.removed = false;
                Ok(Installed {
                    first: false,
                    agent_changed,
                })
            }
            None => {
                let agent_id = req.agent_id.unwrap_or_else(|| {
                    others
                        .iter()
                        .copied()
                        .max()
                        .map_or(FIRST_AGENT_ID, |m| (m + 1).max(FIRST_AGENT_ID))
                });
                suite.installs.insert(
                    corp_id.to_owned(),
                    Install {
                        agent_id,
                        state: InstallState::Active,
                        removed: false,
                        scope: req.scope.unwrap_or_else(all_employees),
                        admin_user_id: req.admin_user_id.or(default_admin),
                        permanent_code: permanent_code(),
                    },
                );
                Ok(Installed {
                    first: true,
                    agent_changed: false,
                })
            }
        }
    }

    /// Uninstalls (`org_suite_relieve`): the install is gone.
    pub fn uninstall(&mut self, suite_key: &str, corp_id: &str) -> Result<Install, ModelError> {
        self.install_of(suite_key, corp_id)?;
        self.get_mut(suite_key)?
            .installs
            .remove(corp_id)
            .ok_or_else(|| ModelError::NotInstalled {
                suite_key: suite_key.to_owned(),
                corp_id: corp_id.to_owned(),
            })
    }

    /// Stops, restores or removes the install; answers whether it changed
    /// (no event when it did not). Restoring does not undo a removal; a
    /// removed app comes back when installed again.
    pub fn set_lifecycle(
        &mut self,
        suite_key: &str,
        corp_id: &str,
        change: Lifecycle,
    ) -> Result<bool, ModelError> {
        let install = self.install_mut(suite_key, corp_id)?;
        let before = install.clone();
        match change {
            Lifecycle::Stop => install.state = InstallState::Stopped,
            Lifecycle::Restore => install.state = InstallState::Active,
            Lifecycle::Remove => install.removed = true,
        }
        Ok(*install != before)
    }

    /// Replaces the install's visible scope; answers whether it changed.
    pub fn set_scope(
        &mut self,
        suite_key: &str,
        corp_id: &str,
        scope: ScopeSpec,
    ) -> Result<bool, ModelError> {
        check_scope(&scope)?;
        let install = self.install_mut(suite_key, corp_id)?;
        let changed = install.scope != scope;
        install.scope = scope;
        Ok(changed)
    }

    /// Whether a suite's install in `corp_id` has `agent_id` (an internal
    /// app may not take it).
    pub fn agent_in_use(&self, corp_id: &str, agent_id: i64) -> bool {
        self.installed_in(corp_id)
            .any(|(_, i)| i.agent_id == agent_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn suites() -> Suites {
        let mut s = Suites::default();
        assert_eq!(s.add("sk", "ss", 60, None), Ok(FIRST_SUITE_ID));
        s
    }

    fn install(s: &mut Suites, corp: &str, req: InstallRequest) -> Result<Installed, ModelError> {
        s.install("sk", corp, req, &[1001], Some("boss".into()), || {
            "pc".into()
        })
    }

    #[test]
    fn a_suite_key_is_added_once_and_ids_grow() {
        let mut s = suites();
        assert!(matches!(
            s.add("sk", "other", 0, None),
            Err(ModelError::Conflict(_))
        ));
        assert_eq!(s.add("sk2", "ss2", 0, None), Ok(FIRST_SUITE_ID + 1));
        assert!(s.add("", "x", 0, None).is_err());
        assert_eq!(s.get("sk2").unwrap().ticket_period, None);
        assert_eq!(
            s.get("sk").unwrap().ticket_period,
            Some(Duration::from_secs(60))
        );
    }

    #[test]
    fn only_the_newest_ticket_is_accepted() {
        let mut s = suites();
        let t0 = Instant::now();
        assert_eq!(
            s.authenticate("sk", "ss", "").err(),
            Some(SuiteAuthError::Ticket)
        );
        let first = s.ticket_for_connect("sk", t0, || "t1".into()).unwrap();
        assert_eq!(first, "t1");
        // A second connection gets the same ticket.
        assert_eq!(
            s.ticket_for_connect("sk", t0, || "never".into()).unwrap(),
            "t1"
        );
        assert!(s.authenticate("sk", "ss", "t1").is_ok());
        s.issue_ticket("sk", t0, || "t2".into()).unwrap();
        assert_eq!(
            s.authenticate("sk", "ss", "t1").err(),
            Some(SuiteAuthError::Ticket)
        );
        assert!(s.authenticate("sk", "ss", "t2").is_ok());
        assert_eq!(
            s.authenticate("sk", "bad", "t2").err(),
            Some(SuiteAuthError::Secret)
        );
        assert_eq!(
            s.authenticate("nope", "ss", "t2").err(),
            Some(SuiteAuthError::Key)
        );
    }

    #[test]
    fn periodic_tickets_are_due_a_period_after_the_last() {
        let mut s = suites();
        s.add("once", "x", 0, None).unwrap();
        let t0 = Instant::now();
        assert!(
            s.due_tickets(t0 + Duration::from_secs(1000)).is_empty(),
            "none before the first"
        );
        s.issue_ticket("sk", t0, || "t1".into()).unwrap();
        s.issue_ticket("once", t0, || "o1".into()).unwrap();
        assert!(s.due_tickets(t0 + Duration::from_secs(59)).is_empty());
        assert_eq!(s.due_tickets(t0 + Duration::from_secs(60)), ["sk"]);
        s.issue_ticket("sk", t0 + Duration::from_secs(60), || "t2".into())
            .unwrap();
        assert!(s.due_tickets(t0 + Duration::from_secs(119)).is_empty());
    }

    #[test]
    fn an_install_gets_a_fresh_agent_id_all_employees_and_the_default_admin() {
        let mut s = suites();
        let done = install(&mut s, "c1", InstallRequest::default()).unwrap();
        assert!(done.first);
        let i = s.install_of("sk", "c1").unwrap().clone();
        assert_eq!(i.agent_id, FIRST_AGENT_ID);
        assert_eq!(i.scope.dept_ids, vec![1]);
        assert_eq!(i.admin_user_id.as_deref(), Some("boss"));
        assert_eq!(i.state, InstallState::Active);
        // Another suite in the same corp: distinct from both.
        s.add("sk2", "ss2", 0, None).unwrap();
        s.install(
            "sk2",
            "c1",
            InstallRequest::default(),
            &[20_000],
            None,
            String::new,
        )
        .unwrap();
        assert_eq!(s.install_of("sk2", "c1").unwrap().agent_id, 20_001);
        // A given agentId of another app is refused.
        let clash = InstallRequest {
            agent_id: Some(1001),
            ..InstallRequest::default()
        };
        assert!(matches!(
            install(&mut s, "c2", clash),
            Err(ModelError::Conflict(_))
        ));
        assert!(s.install_of("sk", "c2").is_err());
    }

    #[test]
    fn installing_again_updates_and_reports_an_agent_change() {
        let mut s = suites();
        install(&mut s, "c1", InstallRequest::default()).unwrap();
        s.set_lifecycle("sk", "c1", Lifecycle::Remove).unwrap();
        let scope = ScopeSpec {
            dept_ids: vec![2],
            user_ids: vec!["u1".into()],
            ..ScopeSpec::default()
        };
        let again = install(
            &mut s,
            "c1",
            InstallRequest {
                agent_id: Some(7),
                scope: Some(scope.clone()),
                admin_user_id: None,
            },
        )
        .unwrap();
        assert_eq!(
            again,
            Installed {
                first: false,
                agent_changed: true
            }
        );
        let i = s.install_of("sk", "c1").unwrap();
        assert_eq!((i.agent_id, &i.scope, i.removed), (7, &scope, false));
        assert_eq!(i.admin_user_id.as_deref(), Some("boss"), "kept");
    }

    #[test]
    fn stop_restore_remove_change_state_once_and_uninstall_forgets() {
        let mut s = suites();
        install(&mut s, "c1", InstallRequest::default()).unwrap();
        assert_eq!(s.set_lifecycle("sk", "c1", Lifecycle::Stop), Ok(true));
        assert_eq!(s.set_lifecycle("sk", "c1", Lifecycle::Stop), Ok(false));
        assert_eq!(
            s.install_of("sk", "c1").unwrap().state,
            InstallState::Stopped
        );
        assert_eq!(s.set_lifecycle("sk", "c1", Lifecycle::Restore), Ok(true));
        assert_eq!(s.set_lifecycle("sk", "c1", Lifecycle::Remove), Ok(true));
        let i = s.install_of("sk", "c1").unwrap();
        assert_eq!((i.state, i.removed), (InstallState::Active, true));
        assert_eq!(
            s.installed_in("c1").count(),
            1,
            "removed is still installed"
        );
        assert_eq!(s.set_scope("sk", "c1", all_employees()), Ok(false));
        s.uninstall("sk", "c1").unwrap();
        assert_eq!(s.installed_in("c1").count(), 0);
        assert!(matches!(
            s.set_lifecycle("sk", "c1", Lifecycle::Stop),
            Err(ModelError::NotInstalled { .. })
        ));
        assert!(s.uninstall("sk", "c1").is_err());
        assert!(matches!(
            s.uninstall("nope", "c1"),
            Err(ModelError::SuiteNotFound(_))
        ));
    }

    #[test]
    fn a_scope_over_the_limit_is_refused() {
        let mut s = suites();
        install(&mut s, "c1", InstallRequest::default()).unwrap();
        let big = ScopeSpec {
            user_ids: (0..=SCOPE_MAX_IDS).map(|i| format!("u{i}")).collect(),
            ..ScopeSpec::default()
        };
        assert!(matches!(
            s.set_scope("sk", "c1", big),
            Err(ModelError::Invalid(_))
        ));
    }
}
