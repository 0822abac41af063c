//! The login decisions, with what they need gathered: the tenant's account,
//! binding and app state from the store, the directory entry, the DingTalk
//! identity behind a code, and the creator's password. `core::login`
//! decides; this file reads and exchanges. Served by every replica: it
//! reads the store and DingTalk, and never writes either.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use jiff::Timestamp;
use serde::Serialize;

use crate::{
    api::{Mode, Tenant, TenantKey, TenantStatus, condition},
    core::{
        conditions,
        login::{self, As, Attempts, Decision, Entry, Flow, Identity, Refusal},
    },
    dingtalk::{self, AppClient, ErrorKind, Secret, Suite, TokenSource},
    reconcile::{APP_DOCUMENT, AppRunning, Credentials, STATUS_DOCUMENT},
    store::Store,
};

use super::password;

/// A tenant as the login API needs it: the object (mode, the app, the
/// creator), the app's credentials (an internal app's) and the creator's
/// password as its Secret holds it.
pub struct TenantFacts {
    pub tenant: Tenant,
    pub credentials: Option<Credentials>,
    pub creator_password: Option<String>,
}

impl TenantFacts {
    /// `tenant` with its Secrets, given a lookup of a Secret's data by name
    /// in the Tenant's namespace.
    pub fn resolve(
        tenant: Tenant,
        lookup: impl Fn(&str) -> Option<std::collections::BTreeMap<String, String>>,
    ) -> Self {
        let resolved = crate::reconcile::Secrets::resolve(&tenant, &lookup);
        let creator_password = tenant
            .spec
            .creator
            .as_ref()
            .and_then(|c| c.password_secret_ref.as_ref())
            .and_then(|r| lookup(&r.name).and_then(|d| d.get(&r.key).cloned()));
        TenantFacts {
            credentials: resolved.credentials.and_then(Result::ok),
            creator_password,
            tenant,
        }
    }
}

/// Where the login API finds tenants: the API server (the controller), or
/// the watched folder (`dingbind dev`).
pub trait Tenants: Send + Sync {
    /// The tenant `key` and its Secrets; `Ok(None)` when it does not exist.
    fn get<'a>(&'a self, key: &'a TenantKey) -> BoxFuture<'a, Result<Option<TenantFacts>, String>>;
}

/// Why a login could not be decided (the HTTP status says which).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no tenant {0}")]
    UnknownTenant(TenantKey),
    #[error("reading the tenant: {0}")]
    Tenants(String),
    #[error("{0}")]
    Store(#[from] crate::store::Error),
    #[error("DingTalk could not be asked: {0}")]
    DingTalk(dingtalk::Error),
    #[error("{0}")]
    Unavailable(String),
}

/// The answer of the login API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Answer {
    pub allowed: bool,
    #[serde(rename = "as", skip_serializing_if = "Option::is_none")]
    pub as_: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member: Option<MemberAnswer>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<&'static str>,
}

/// The member a login is allowed as.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MemberAnswer {
    pub userid: String,
    pub unionid: String,
    pub name: String,
    pub departments: Vec<i64>,
}

impl Answer {
    fn of(decision: &Decision) -> Self {
        match decision {
            Decision::Allowed {
                as_,
                member,
                channels,
            } => Answer {
                allowed: true,
                as_: Some(match as_ {
                    As::Member => "member",
                    As::Creator => "creator",
                }),
                member: member.as_ref().map(|m| MemberAnswer {
                    userid: m.userid.clone(),
                    unionid: m.unionid.clone(),
                    name: m.name.clone(),
                    departments: m.departments.clone(),
                }),
                channels: channels.iter().map(|c| c.as_str()).collect(),
                reason: None,
                message: None,
            },
            Decision::Refused(r) => Answer {
                allowed: false,
                as_: None,
                member: None,
                channels: Vec::new(),
                reason: Some(r.as_str()),
                message: Some(r.message()),
            },
        }
    }
}

/// One decision, as the log line and the metrics see it.
#[derive(Clone, Debug)]
pub struct Logged<'a> {
    pub tenant: &'a TenantKey,
    pub answer: &'a Answer,
    /// A password attempt was refused without a check (backoff or lockout).
    pub throttled: bool,
}

/// Told of every decision (metrics).
pub type Observer = Box<dyn Fn(&Logged<'_>) + Send + Sync>;

/// The login service of one runner.
pub struct Logins {
    store: Store,
    dingtalk: dingtalk::Client,
    suite: Option<Suite>,
    tenants: Arc<dyn Tenants>,
    observer: Option<Observer>,
    /// Password attempts per tenant and account (lower case).
    attempts: Mutex<HashMap<(TenantKey, String), Attempts>>,
    /// App clients by key (internal apps: appKey; marketplace: corpId), with
    /// the secret each was made for.
    apps: Mutex<HashMap<String, (Option<Secret>, AppClient)>>,
}

impl Logins {
    pub fn new(store: Store, dingtalk: dingtalk::Client, tenants: Arc<dyn Tenants>) -> Self {
        Self {
            store,
            dingtalk,
            suite: None,
            tenants,
            observer: None,
            attempts: Mutex::new(HashMap::new()),
            apps: Mutex::new(HashMap::new()),
        }
    }

    /// Marketplace tenants' codes are exchanged with `suite`.
    pub fn with_suite(mut self, suite: Suite) -> Self {
        self.suite = Some(suite);
        self
    }

    pub fn observed(mut self, observer: Observer) -> Self {
        self.observer = Some(observer);
        self
    }

    /// A login with a DingTalk code (`flow`: where the code came from).
    pub async fn dingtalk(
        &self,
        key: &TenantKey,
        code: &Secret,
        flow: Flow,
    ) -> Result<Answer, Error> {
        let facts = self.facts(key).await?;
        let account = self.account(key, &facts).await?;
        // Closed to DingTalk logins: refused before the code is exchanged.
        if let Some(refusal) = login::dingtalk_closed(&account) {
            return Ok(self.answer(key, &Decision::Refused(refusal), None, false));
        }
        let app = self.app(&facts)?;
        let identity = exchange(&app, code, flow).await?;
        self.decide_identity(key, &account, flow, identity).await
    }

    /// The same decision for a platform that exchanged the code itself:
    /// the person is the organization's `userid`, or the `unionid` the
    /// directory maps to one.
    pub async fn member(
        &self,
        key: &TenantKey,
        userid: Option<&str>,
        unionid: Option<&str>,
    ) -> Result<Answer, Error> {
        let facts = self.facts(key).await?;
        let account = self.account(key, &facts).await?;
        let userid = match (userid, unionid) {
            (Some(u), _) => Some(u.to_string()),
            (None, Some(union)) => self.store.userid_of_unionid(key, union).await?,
            (None, None) => None,
        };
        let identity = match userid {
            Some(userid) => Identity::Member {
                userid,
                admin: false,
            },
            None => Identity::NotMember,
        };
        self.decide_identity(key, &account, Flow::Web, identity)
            .await
    }

    /// A login with the creator's email or phone and password.
    pub async fn creator(
        &self,
        key: &TenantKey,
        account_name: &str,
        given: &str,
    ) -> Result<Answer, Error> {
        let facts = self.facts(key).await?;
        let account = self.account(key, &facts).await?;
        let now = Timestamp::now();
        let slot = (key.clone(), account_name.trim().to_lowercase());
        let throttled = self.attempts().get(&slot).is_some_and(|a| a.blocked(now));
        let creator = facts.tenant.spec.creator.clone().unwrap_or_default();
        let named = creator
            .email
            .as_deref()
            .is_some_and(|e| e.eq_ignore_ascii_case(account_name.trim()))
            || creator
                .phone
                .as_deref()
                .is_some_and(|p| digits(p) == digits(account_name) && !digits(p).is_empty());
        // The password is checked whatever the account: an unknown account
        // and a wrong password take the same time.
        let password_ok = !throttled
            && facts
                .creator_password
                .as_deref()
                .filter(|p| !p.is_empty())
                .is_some_and(|stored| password::matches(stored, given));
        let decision = login::password(&account, named && password_ok, throttled);
        if !throttled {
            let mut attempts = self.attempts();
            match &decision {
                Decision::Refused(Refusal::InvalidCredentials) => {
                    attempts.entry(slot).or_default().failed(now);
                }
                Decision::Allowed { .. } => {
                    attempts.remove(&slot);
                }
                _ => {}
            }
            attempts.retain(|_, a| !a.forgettable(now));
        }
        Ok(self.answer(key, &decision, None, throttled))
    }

    fn attempts(&self) -> std::sync::MutexGuard<'_, HashMap<(TenantKey, String), Attempts>> {
        self.attempts.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn decide_identity(
        &self,
        key: &TenantKey,
        account: &login::Account,
        flow: Flow,
        identity: Identity,
    ) -> Result<Answer, Error> {
        let entry = match &identity {
            Identity::Member { userid, .. } => {
                self.store.member(key, userid).await?.map(|m| Entry {
                    userid: m.userid,
                    unionid: m.unionid,
                    name: m.name,
                    departments: m.dept_ids,
                })
            }
            _ => None,
        };
        let decision = login::dingtalk(account, flow, &identity, entry.as_ref());
        let userid = match &identity {
            Identity::Member { userid, .. } => Some(userid.as_str()),
            _ => None,
        };
        Ok(self.answer(key, &decision, userid, false))
    }

    /// The answer of `decision`, logged on one line and observed.
    fn answer(
        &self,
        key: &TenantKey,
        decision: &Decision,
        userid: Option<&str>,
        throttled: bool,
    ) -> Answer {
        let answer = Answer::of(decision);
        tracing::info!(
            tenant = %key,
            login_as = answer.as_.unwrap_or("-"),
            userid = userid.unwrap_or("-"),
            allowed = answer.allowed,
            reason = answer.reason.unwrap_or("-"),
            "login decided"
        );
        if let Some(observe) = &self.observer {
            observe(&Logged {
                tenant: key,
                answer: &answer,
                throttled,
            });
        }
        answer
    }

    async fn facts(&self, key: &TenantKey) -> Result<TenantFacts, Error> {
        self.tenants
            .get(key)
            .await
            .map_err(Error::Tenants)?
            .ok_or_else(|| Error::UnknownTenant(key.clone()))
    }

    /// What the store holds of the tenant's account: the actual mode, the
    /// binding and the app's state, as the last reconciliation left them.
    async fn account(&self, key: &TenantKey, facts: &TenantFacts) -> Result<login::Account, Error> {
        let found = self
            .store
            .login_facts(key, [STATUS_DOCUMENT, APP_DOCUMENT])
            .await?;
        let [status, app] = found.documents;
        // A document that does not read as its type reads as absent.
        let status: Option<TenantStatus> = status.and_then(|v| serde_json::from_value(v).ok());
        let app: Option<AppRunning> = app.and_then(|v| serde_json::from_value(v).ok());
        let unbound = found.unbound;
        let mode = if unbound {
            Mode::Public
        } else {
            found.mode.unwrap_or(facts.tenant.spec.mode)
        };
        let bound = !unbound
            && status.as_ref().is_some_and(|s| {
                s.mode == Some(Mode::DingTalk)
                    && conditions::get(&s.conditions, condition::BOUND)
                        .is_some_and(|c| c.status == "True")
            });
        let creator = facts.tenant.spec.creator.clone().unwrap_or_default();
        Ok(login::Account {
            mode,
            bound,
            // Before the first check wrote it, a bound tenant's app ran.
            app_running: app.is_none_or(|a| a.running),
            creator_complete: (creator.email.is_some() || creator.phone.is_some())
                && facts
                    .creator_password
                    .as_deref()
                    .is_some_and(|p| !p.is_empty()),
        })
    }

    /// The client that exchanges the tenant's codes: its internal app, or
    /// the suite in its organization.
    fn app(&self, facts: &TenantFacts) -> Result<AppClient, Error> {
        let dt = facts
            .tenant
            .spec
            .dingtalk
            .as_ref()
            .ok_or_else(|| Error::Unavailable("the tenant names no DingTalk app".into()))?;
        let mut apps = self.apps.lock().unwrap_or_else(|p| p.into_inner());
        if dt.is_marketplace() {
            let suite = self.suite.as_ref().ok_or_else(|| {
                Error::Unavailable("no marketplace suite is configured (--suite-secret)".into())
            })?;
            let app = apps
                .entry(format!("corp:{}", dt.corp_id))
                .or_insert_with(|| {
                    (
                        None,
                        self.dingtalk
                            .app(TokenSource::marketplace(suite.clone(), dt.corp_id.clone())),
                    )
                });
            return Ok(app.1.clone());
        }
        let creds = facts
            .credentials
            .as_ref()
            .ok_or_else(|| Error::Unavailable("the app credentials are not available".into()))?;
        let key = format!("app:{}", creds.app_key);
        match apps.get(&key) {
            Some((Some(secret), app)) if *secret == creds.app_secret => Ok(app.clone()),
            _ => {
                let app = self.dingtalk.app(TokenSource::internal_app(
                    creds.app_key.clone(),
                    creds.app_secret.clone(),
                ));
                apps.insert(key, (Some(creds.app_secret.clone()), app.clone()));
                Ok(app)
            }
        }
    }
}

/// The DingTalk identity behind `code`: in the app (and from the admin
/// console), `v2/user/getuserinfo`; on the web, the user's token, then only
/// the unionId from `users/me`, mapped to the organization's userid by
/// `getbyunionid` (never an email or mobile).
async fn exchange(app: &AppClient, code: &Secret, flow: Flow) -> Result<Identity, Error> {
    let refused = |e: dingtalk::Error| match e.kind() {
        ErrorKind::CodeInvalid => Ok(Identity::CodeInvalid),
        ErrorKind::NotInScope => Ok(Identity::OutsideScope),
        ErrorKind::NotFound => Ok(Identity::NotMember),
        _ => Err(Error::DingTalk(e)),
    };
    match flow {
        Flow::InApp | Flow::Admin => match app.user_by_code(code).await {
            Ok(user) => Ok(Identity::Member {
                userid: user.userid,
                admin: matches!(user.sys_level, 1 | 2),
            }),
            Err(e) => refused(e),
        },
        Flow::Web => {
            let token = match app.user_access_token(code).await {
                Ok(t) => t,
                Err(e) => return refused(e),
            };
            let me = match app.me(&token.access_token).await {
                Ok(me) => me,
                Err(e) => return refused(e),
            };
            match app.userid_by_unionid(&me.union_id).await {
                Ok(Some(userid)) => Ok(Identity::Member {
                    userid,
                    admin: false,
                }),
                Ok(None) => Ok(Identity::NotMember),
                Err(e) => refused(e),
            }
        }
    }
}

/// The digits of a phone number (`+86 138-0000-0000` → `8613800000000`).
fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_have_the_documented_shape() {
        let refused =
            serde_json::to_value(Answer::of(&Decision::Refused(Refusal::NotInScope))).unwrap();
        assert_eq!(refused["allowed"], false);
        assert_eq!(refused["reason"], "NotInScope");
        assert!(refused.get("as").is_none() && refused["message"].is_string());
        let allowed = serde_json::to_value(Answer::of(&Decision::Allowed {
            as_: As::Member,
            member: Some(Entry {
                userid: "u1".into(),
                unionid: "un1".into(),
                name: "Zhang San".into(),
                departments: vec![2],
            }),
            channels: vec![login::Channel::DingTalkWeb],
        }))
        .unwrap();
        assert_eq!(allowed["as"], "member");
        assert_eq!(allowed["member"]["departments"], serde_json::json!([2]));
        assert_eq!(allowed["channels"], serde_json::json!(["dingtalkWeb"]));
        assert!(allowed.get("reason").is_none());
    }

    #[test]
    fn phone_numbers_compare_by_their_digits() {
        assert_eq!(digits("+86 138-0000-0000"), "8613800000000");
        assert_eq!(digits("abc"), "");
    }
}
