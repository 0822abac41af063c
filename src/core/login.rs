//! Who may log in to a tenant, and how: the product's rules per mode
//! (`shared/domain.md`, "Login, per mode") as one pure decision over what
//! dingbind holds: the account's mode, the binding, the app's state, the
//! creator account, the directory entry, and the DingTalk identity the shell
//! resolved from a login code.
//!
//! - A member in the visible scope logs in with DingTalk (QR scan on the web,
//!   the PC or mobile workbench) while the tenant is bound in DingTalk mode
//!   and the app runs. "In the scope" is the directory's word: a leaver is
//!   refused as soon as the directory drops them.
//! - A person outside the scope, or of another organization, is refused.
//! - The creator comes in from DingTalk's admin console (the organization's
//!   main admin and sub-admins come in as the creator), or with email/phone
//!   and password once the account is complete. In public mode, by password
//!   only. The creator is never a member.
//! - The identity is the organization's userid, never an email or mobile.

use jiff::{SignedDuration, Timestamp};

use crate::api::Mode;

/// Where a DingTalk login code came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Inside DingTalk: the PC or mobile workbench (JSAPI `requestAuthCode`).
    InApp,
    /// The QR scan or DingTalk login page on the website or the tenant's URL.
    Web,
    /// The app's admin page in DingTalk's admin console (an in-app code).
    Admin,
}

/// What dingbind holds about the tenant's account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Account {
    /// The account's actual mode (the store's, not the spec's wish).
    pub mode: Mode,
    /// Bound to its DingTalk organization.
    pub bound: bool,
    /// The bound app runs (not disabled, stopped or uninstalled).
    pub app_running: bool,
    /// The creator has an email or phone and a non-empty password.
    pub creator_complete: bool,
}

/// The DingTalk identity behind a login code, as the shell resolved it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    /// DingTalk refused the code: unknown, expired or used (40078).
    CodeInvalid,
    /// DingTalk says the person is outside the app's visible range (40079).
    OutsideScope,
    /// The person is not a member of the organization (another
    /// organization, or an external contact: `getbyunionid` 60121).
    NotMember,
    /// A member of the organization: their userid, and whether DingTalk
    /// shows them as its main admin or a sub-admin (`sys_level` 1 or 2).
    Member { userid: String, admin: bool },
}

/// A member as the directory holds them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub userid: String,
    pub unionid: String,
    pub name: String,
    pub departments: Vec<i64>,
}

/// Who a person logs in as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum As {
    Member,
    Creator,
}

/// A way in that the answer lists for the person.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    /// QR scan or DingTalk login on the website or the tenant's URL.
    DingTalkWeb,
    /// The PC or mobile workbench.
    DingTalkWorkbench,
    /// The app's admin page in DingTalk's admin console.
    DingTalkAdminConsole,
    /// Email or phone and password (on a PC).
    Password,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::DingTalkWeb => "dingtalkWeb",
            Channel::DingTalkWorkbench => "dingtalkWorkbench",
            Channel::DingTalkAdminConsole => "dingtalkAdminConsole",
            Channel::Password => "password",
        }
    }
}

/// Why a login is refused. Reasons are CamelCase, as the API answers them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The tenant is in public mode: nobody logs in with DingTalk.
    TenantPublic,
    /// The tenant is not bound to its organization (yet).
    NotBound,
    /// The bound app is disabled, stopped or uninstalled in DingTalk.
    AppDisabled,
    /// The person is outside the visible scope, or not of the organization.
    NotInScope,
    /// DingTalk refused the login code.
    CodeInvalid,
    /// A password login before the creator account is complete.
    CreatorIncomplete,
    /// Unknown account or wrong password (the same answer for both).
    InvalidCredentials,
    /// Too many password attempts: try again later.
    Throttled,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::TenantPublic => "TenantPublic",
            Refusal::NotBound => "NotBound",
            Refusal::AppDisabled => "AppDisabled",
            Refusal::NotInScope => "NotInScope",
            Refusal::CodeInvalid => "CodeInvalid",
            Refusal::CreatorIncomplete => "CreatorIncomplete",
            Refusal::InvalidCredentials => "InvalidCredentials",
            Refusal::Throttled => "Throttled",
        }
    }

    /// What the person is told.
    pub fn message(self) -> &'static str {
        match self {
            Refusal::TenantPublic => {
                "This tenant no longer uses DingTalk login: log in with the account's email or phone and password."
            }
            Refusal::NotBound => "This tenant is not bound to its DingTalk organization.",
            Refusal::AppDisabled => {
                "The tenant's app is disabled in DingTalk: the organization's admin enables it again in DingTalk's admin console."
            }
            Refusal::NotInScope => {
                "You are not among the people this tenant's app is visible to in DingTalk; the organization's admin can add you to its visible scope."
            }
            Refusal::CodeInvalid => {
                "The DingTalk login code is invalid, expired or used: log in again."
            }
            Refusal::CreatorIncomplete => {
                "The owner account has no password yet: log in from DingTalk's admin console, or complete the account first."
            }
            Refusal::InvalidCredentials => "The account or the password is wrong.",
            Refusal::Throttled => "Too many attempts: try again in a few minutes.",
        }
    }
}

/// The decision on one login.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allowed {
        as_: As,
        /// The member's directory entry (`None` for the creator).
        member: Option<Entry>,
        /// The ways in open to this person now.
        channels: Vec<Channel>,
    },
    Refused(Refusal),
}

/// The ways in open to the creator of `account`.
fn creator_channels(account: &Account) -> Vec<Channel> {
    let dingtalk = account.mode == Mode::DingTalk && account.bound && account.app_running;
    let mut channels = Vec::new();
    if dingtalk {
        channels.push(Channel::DingTalkAdminConsole);
    }
    if account.creator_complete {
        channels.push(Channel::Password);
    }
    channels
}

/// Why nobody can log in to `account` with DingTalk now, if so: decided
/// before any code is exchanged.
pub fn dingtalk_closed(account: &Account) -> Option<Refusal> {
    if account.mode == Mode::Public {
        Some(Refusal::TenantPublic)
    } else if !account.bound {
        Some(Refusal::NotBound)
    } else if !account.app_running {
        Some(Refusal::AppDisabled)
    } else {
        None
    }
}

/// A login with a DingTalk code of `flow`, whose identity the shell resolved
/// to `identity`; `entry` is the directory's member of that userid, if any.
pub fn dingtalk(
    account: &Account,
    flow: Flow,
    identity: &Identity,
    entry: Option<&Entry>,
) -> Decision {
    if let Some(refusal) = dingtalk_closed(account) {
        return Decision::Refused(refusal);
    }
    let (userid, admin) = match identity {
        Identity::CodeInvalid => return Decision::Refused(Refusal::CodeInvalid),
        Identity::OutsideScope | Identity::NotMember => {
            return Decision::Refused(Refusal::NotInScope);
        }
        Identity::Member { userid, admin } => (userid, *admin),
    };
    // From the admin console, the organization's admins come in as the creator.
    if flow == Flow::Admin {
        return if admin {
            Decision::Allowed {
                as_: As::Creator,
                member: None,
                channels: creator_channels(account),
            }
        } else {
            Decision::Refused(Refusal::NotInScope)
        };
    }
    // Otherwise the directory decides: only a member in the scope, and the
    // entry must be the person DingTalk named.
    match entry {
        Some(e) if &e.userid == userid => Decision::Allowed {
            as_: As::Member,
            member: Some(e.clone()),
            channels: vec![Channel::DingTalkWeb, Channel::DingTalkWorkbench],
        },
        _ => Decision::Refused(Refusal::NotInScope),
    }
}

/// A login with email or phone and password. `matched`: the account is the
/// creator's and the password is theirs (checked by the shell in constant
/// time); `throttled`: too many attempts for this account.
pub fn password(account: &Account, matched: bool, throttled: bool) -> Decision {
    if throttled {
        return Decision::Refused(Refusal::Throttled);
    }
    if !account.creator_complete {
        return Decision::Refused(Refusal::CreatorIncomplete);
    }
    if !matched {
        return Decision::Refused(Refusal::InvalidCredentials);
    }
    Decision::Allowed {
        as_: As::Creator,
        member: None,
        channels: creator_channels(account),
    }
}

/// Failures of one account that cost nothing; each later one makes the
/// account wait, twice as long each time.
pub const FREE_FAILURES: u32 = 3;
/// The first wait, after [`FREE_FAILURES`] failures.
pub const FIRST_WAIT: SignedDuration = SignedDuration::from_secs(1);
/// After this many failures in a row, the account is locked for [`LOCKOUT`].
pub const LOCKOUT_AFTER: u32 = 10;
pub const LOCKOUT: SignedDuration = SignedDuration::from_mins(15);

/// The password attempts of one account of one tenant: a few failures are
/// free, then each makes the account wait twice as long, and a run of
/// [`LOCKOUT_AFTER`] locks it for [`LOCKOUT`]. A success clears them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Attempts {
    failures: u32,
    blocked_until: Option<Timestamp>,
}

impl Attempts {
    /// Whether an attempt at `now` is refused without being checked.
    pub fn blocked(&self, now: Timestamp) -> bool {
        self.blocked_until.is_some_and(|until| now < until)
    }

    /// Whether the account is locked out (not merely waiting), for metrics.
    pub fn locked_out(&self, now: Timestamp) -> bool {
        self.failures >= LOCKOUT_AFTER && self.blocked(now)
    }

    /// A wrong password at `now`.
    pub fn failed(&mut self, now: Timestamp) {
        self.failures = self.failures.saturating_add(1);
        let wait = if self.failures >= LOCKOUT_AFTER {
            Some(LOCKOUT)
        } else if self.failures > FREE_FAILURES {
            let doublings = (self.failures - FREE_FAILURES - 1).min(16);
            Some(FIRST_WAIT * (1i32 << doublings))
        } else {
            None
        };
        self.blocked_until = wait.and_then(|w| now.checked_add(w).ok());
    }

    /// The right password: the count starts again.
    pub fn succeeded(&mut self) {
        *self = Attempts::default();
    }

    /// Nothing to remember any more at `now` (no wait running, and a lockout
    /// over): the entry can be dropped.
    pub fn forgettable(&self, now: Timestamp) -> bool {
        !self.blocked(now) && (self.failures == 0 || self.failures >= LOCKOUT_AFTER)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUND: Account = Account {
        mode: Mode::DingTalk,
        bound: true,
        app_running: true,
        creator_complete: true,
    };

    fn entry(userid: &str) -> Entry {
        Entry {
            userid: userid.into(),
            unionid: format!("un-{userid}"),
            name: userid.to_uppercase(),
            departments: vec![2],
        }
    }

    fn member(userid: &str) -> Identity {
        Identity::Member {
            userid: userid.into(),
            admin: false,
        }
    }

    fn admin(userid: &str) -> Identity {
        Identity::Member {
            userid: userid.into(),
            admin: true,
        }
    }

    fn allowed(as_: As) -> impl Fn(&Decision) -> bool {
        move |d| matches!(d, Decision::Allowed { as_: a, .. } if *a == as_)
    }

    fn refused(r: Refusal) -> impl Fn(&Decision) -> bool {
        move |d| *d == Decision::Refused(r)
    }

    /// Every row of the domain's login table, and the refusals around them.
    #[test]
    fn the_login_table() {
        let public = Account {
            mode: Mode::Public,
            bound: false,
            app_running: false,
            ..BOUND
        };
        let unbound = Account {
            bound: false,
            ..BOUND
        };
        let disabled = Account {
            app_running: false,
            ..BOUND
        };
        let incomplete = Account {
            creator_complete: false,
            ..BOUND
        };
        let zhang = entry("zhang");
        type Check = Box<dyn Fn(&Decision) -> bool>;
        let rows: Vec<(&str, Decision, Check)> = vec![
            // A member in the visible scope, DingTalk mode: in with DingTalk, every flow but the console.
            (
                "member, web",
                dingtalk(&BOUND, Flow::Web, &member("zhang"), Some(&zhang)),
                Box::new(allowed(As::Member)),
            ),
            (
                "member, workbench",
                dingtalk(&BOUND, Flow::InApp, &member("zhang"), Some(&zhang)),
                Box::new(allowed(As::Member)),
            ),
            // An admin who is also a member logs in as the member from the workbench.
            (
                "admin member, workbench",
                dingtalk(&BOUND, Flow::InApp, &admin("zhang"), Some(&zhang)),
                Box::new(allowed(As::Member)),
            ),
            // Public mode: nobody through DingTalk any more.
            (
                "member, public",
                dingtalk(&public, Flow::Web, &member("zhang"), Some(&zhang)),
                Box::new(refused(Refusal::TenantPublic)),
            ),
            (
                "admin, console, public",
                dingtalk(&public, Flow::Admin, &admin("boss"), None),
                Box::new(refused(Refusal::TenantPublic)),
            ),
            // Outside the scope or of another organization: refused, in both modes.
            (
                "outside the scope (DingTalk says)",
                dingtalk(&BOUND, Flow::InApp, &Identity::OutsideScope, None),
                Box::new(refused(Refusal::NotInScope)),
            ),
            (
                "another organization",
                dingtalk(&BOUND, Flow::Web, &Identity::NotMember, None),
                Box::new(refused(Refusal::NotInScope)),
            ),
            (
                "a member not in the directory (a leaver)",
                dingtalk(&BOUND, Flow::Web, &member("gone"), None),
                Box::new(refused(Refusal::NotInScope)),
            ),
            (
                "a directory entry of someone else",
                dingtalk(&BOUND, Flow::Web, &member("li"), Some(&zhang)),
                Box::new(refused(Refusal::NotInScope)),
            ),
            // The creator from DingTalk's admin console: the main admin and sub-admins.
            (
                "admin, console",
                dingtalk(&BOUND, Flow::Admin, &admin("boss"), None),
                Box::new(allowed(As::Creator)),
            ),
            (
                "admin, console, creator incomplete",
                dingtalk(&incomplete, Flow::Admin, &admin("boss"), None),
                Box::new(allowed(As::Creator)),
            ),
            (
                "not an admin, console",
                dingtalk(&BOUND, Flow::Admin, &member("zhang"), Some(&zhang)),
                Box::new(refused(Refusal::NotInScope)),
            ),
            // The creator by password: once complete in DingTalk mode; always in public mode.
            (
                "creator password, complete",
                password(&BOUND, true, false),
                Box::new(allowed(As::Creator)),
            ),
            (
                "creator password, incomplete",
                password(&incomplete, true, false),
                Box::new(refused(Refusal::CreatorIncomplete)),
            ),
            (
                "creator password, public",
                password(
                    &Account {
                        creator_complete: true,
                        ..public
                    },
                    true,
                    false,
                ),
                Box::new(allowed(As::Creator)),
            ),
            (
                "wrong password",
                password(&BOUND, false, false),
                Box::new(refused(Refusal::InvalidCredentials)),
            ),
            (
                "throttled",
                password(&BOUND, true, true),
                Box::new(refused(Refusal::Throttled)),
            ),
            // The binding and the app come first.
            (
                "not bound",
                dingtalk(&unbound, Flow::Web, &member("zhang"), Some(&zhang)),
                Box::new(refused(Refusal::NotBound)),
            ),
            (
                "app disabled",
                dingtalk(&disabled, Flow::Web, &member("zhang"), Some(&zhang)),
                Box::new(refused(Refusal::AppDisabled)),
            ),
            (
                "bad code",
                dingtalk(&BOUND, Flow::InApp, &Identity::CodeInvalid, None),
                Box::new(refused(Refusal::CodeInvalid)),
            ),
        ];
        for (row, decision, check) in rows {
            assert!(check(&decision), "{row}: {decision:?}");
        }
    }

    #[test]
    fn a_member_is_answered_with_their_entry_and_the_dingtalk_channels() {
        let zhang = entry("zhang");
        let d = dingtalk(&BOUND, Flow::Web, &member("zhang"), Some(&zhang));
        assert_eq!(
            d,
            Decision::Allowed {
                as_: As::Member,
                member: Some(zhang),
                channels: vec![Channel::DingTalkWeb, Channel::DingTalkWorkbench],
            }
        );
    }

    #[test]
    fn the_creator_is_told_every_way_in_that_is_open() {
        let channels = |a: &Account| match password(a, true, false) {
            Decision::Allowed { channels, .. } => channels,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            channels(&BOUND),
            vec![Channel::DingTalkAdminConsole, Channel::Password]
        );
        let public = Account {
            mode: Mode::Public,
            bound: false,
            app_running: false,
            creator_complete: true,
        };
        assert_eq!(channels(&public), vec![Channel::Password]);
    }

    #[test]
    fn failures_wait_longer_each_time_then_lock_the_account() {
        let t0: Timestamp = "2026-12-04T00:00:00Z".parse().unwrap();
        let at = |s: i64| t0 + SignedDuration::from_secs(s);
        let mut a = Attempts::default();
        for _ in 0..FREE_FAILURES {
            a.failed(t0);
            assert!(!a.blocked(t0), "the first failures are free");
        }
        a.failed(t0);
        assert!(a.blocked(at(0)) && !a.blocked(at(1)), "then 1 s");
        a.failed(at(1));
        assert!(a.blocked(at(2)) && !a.blocked(at(3)), "then 2 s");
        for i in 0..(LOCKOUT_AFTER - FREE_FAILURES - 2) {
            a.failed(at(10 + i64::from(i)));
        }
        assert!(a.locked_out(at(20)));
        assert!(a.blocked(at(20 + 14 * 60)) && !a.blocked(at(30 + 15 * 60)));
        assert!(a.forgettable(at(30 + 15 * 60)));
        a.succeeded();
        assert_eq!(a, Attempts::default());
    }

    #[test]
    fn reasons_are_camel_case_and_each_has_a_message() {
        for r in [
            Refusal::TenantPublic,
            Refusal::NotBound,
            Refusal::AppDisabled,
            Refusal::NotInScope,
            Refusal::CodeInvalid,
            Refusal::CreatorIncomplete,
            Refusal::InvalidCredentials,
            Refusal::Throttled,
        ] {
            let s = r.as_str();
            assert!(s.chars().next().is_some_and(char::is_uppercase) && !s.contains('_'));
            assert!(!r.message().is_empty());
        }
    }
}
