//! Login codes and user tokens (`dingtalk-events-isv-login.md` §4): what the
//! simulator hands out for `POST /_sim/corps/{corpId}/authcodes` and takes
//! back on `v2/user/getuserinfo` (an in-app code), `oauth2/userAccessToken`
//! (a web code, for a user token) and `contact/users/me` (that token).
//!
//! - A code belongs to one person, one flow (`inApp` or `web`) and one app
//!   (an internal app by appKey, or a suite installed in the corp by
//!   suiteKey). It is single-use: **any** presentation of it uses it up,
//!   also one refused for the wrong app or flow; it expires
//!   [`CODE_TTL`] after it was issued.
//! - An in-app code is always a member's. A web code may be a person's of
//!   another organization (their unionid maps to no member of the app's corp).
//!
//! Pure data and rules: the clock and fresh values are passed in. The HTTP
//! side is `login.rs`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::model::{ModelError, TokenError, World};

/// How long a login code lives (DingTalk: five minutes).
pub const CODE_TTL: Duration = Duration::from_secs(300);

/// How the code was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Flow {
    /// JSAPI `requestAuthCode` in DingTalk's workbench: for `v2/user/getuserinfo`.
    InApp,
    /// The web login's redirect (`authCode`): for `oauth2/userAccessToken`.
    Web,
}

/// Which kind of app a code was issued for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientKind {
    /// An internal app of the corp, by appKey.
    InternalApp,
    /// A marketplace app (suite) installed in the corp, by suiteKey.
    Suite,
}

/// The app a code was issued for, as the OAuth client of the login.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeClient {
    /// The appKey or the suiteKey (the login's `clientId`).
    pub client_id: String,
    pub kind: ClientKind,
    /// The corp the app belongs to, or the suite is installed in.
    pub corp_id: String,
}

/// A person with a DingTalk account: a member of `corp_id`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Person {
    pub corp_id: String,
    pub userid: String,
}

/// What a code stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub client: CodeClient,
    pub person: Person,
    pub flow: Flow,
}

/// Why a code was refused. DingTalk says only "no such code" (40078 /
/// `invalidCode`); the kinds are for tests and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    #[error("no such code, or used already")]
    Unknown,
    #[error("the code expired")]
    Expired,
    #[error("the code was issued for the other login flow")]
    WrongFlow,
    #[error("the code was issued for another app")]
    WrongApp,
}

#[derive(Clone, Debug)]
struct IssuedCode {
    grant: Grant,
    expires_at: Instant,
}

/// The holder of a user token: who logged in, through which app.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserSession {
    /// The appKey or suiteKey the token was issued to.
    pub client_id: String,
    pub person: Person,
}

#[derive(Clone, Debug)]
struct IssuedToken {
    session: UserSession,
    expires_at: Instant,
}

/// Every code and user token issued and not used up or expired.
#[derive(Clone, Debug, Default)]
pub struct Logins {
    codes: HashMap<String, IssuedCode>,
    tokens: HashMap<String, IssuedToken>,
}

impl Logins {
    /// Issues code `fresh()` for `grant`, living `ttl` from `now`.
    pub fn issue_code(
        &mut self,
        grant: Grant,
        now: Instant,
        ttl: Duration,
        fresh: impl FnOnce() -> String,
    ) -> String {
        self.codes.retain(|_, c| c.expires_at > now);
        let code = fresh();
        self.codes.insert(
            code.clone(),
            IssuedCode {
                grant,
                expires_at: now.checked_add(ttl).unwrap_or(now),
            },
        );
        code
    }

    /// Takes `code` back for `flow` and an app that `fits`: the grant, or
    /// why not. The code is used up either way.
    pub fn redeem(
        &mut self,
        code: &str,
        flow: Flow,
        now: Instant,
        fits: impl FnOnce(&CodeClient) -> bool,
    ) -> Result<Grant, CodeError> {
        let issued = self.codes.remove(code).ok_or(CodeError::Unknown)?;
        if issued.expires_at <= now {
            return Err(CodeError::Expired);
        }
        if issued.grant.flow != flow {
            return Err(CodeError::WrongFlow);
        }
        if !fits(&issued.grant.client) {
            return Err(CodeError::WrongApp);
        }
        Ok(issued.grant)
    }

    /// How many codes are waiting (expired ones until the next issue).
    pub fn pending_codes(&self) -> usize {
        self.codes.len()
    }

    /// Issues user token `fresh()` for `session`, living `ttl` from `now`.
    pub fn issue_user_token(
        &mut self,
        session: UserSession,
        now: Instant,
        ttl: Duration,
        fresh: impl FnOnce() -> String,
    ) -> String {
        self.tokens.retain(|_, t| t.expires_at > now);
        let token = fresh();
        self.tokens.insert(
            token.clone(),
            IssuedToken {
                session,
                expires_at: now.checked_add(ttl).unwrap_or(now),
            },
        );
        token
    }

    /// Who holds user token `token`, if it is valid at `now`.
    pub fn check_user_token(
        &self,
        token: Option<&str>,
        now: Instant,
    ) -> Result<UserSession, TokenError> {
        let token = token.filter(|t| !t.is_empty()).ok_or(TokenError::Missing)?;
        match self.tokens.get(token) {
            Some(t) if t.expires_at > now => Ok(t.session.clone()),
            _ => Err(TokenError::Invalid),
        }
    }

    /// Every user token expires now (codes are kept).
    pub fn expire_user_tokens(&mut self) {
        self.tokens.clear();
    }
}

/// A request for a code (the body of `POST /_sim/corps/{corpId}/authcodes`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CodeRequest {
    pub userid: String,
    pub flow: Option<Flow>,
    #[serde(default)]
    pub app_key: Option<String>,
    #[serde(default)]
    pub suite_key: Option<String>,
    /// The person is `userid` of this other corp (a web code only): someone
    /// who is not a member of the app's corp.
    #[serde(default)]
    pub person_of: Option<String>,
    /// Seconds, at most [`CODE_TTL`]; 0 issues a code that is expired already
    /// (for tests).
    #[serde(default)]
    pub expires_in: Option<u64>,
}

/// The grant and life a code request asks for, checked against the world:
/// the corp, the person (a member of the corp, or of `personOf` for a web
/// code), and the app (by `appKey`, by `suiteKey`, or the corp's only one).
pub fn grant_for(
    world: &World,
    corp_id: &str,
    req: &CodeRequest,
) -> Result<(Grant, Duration), ModelError> {
    let corp = world.corp(corp_id)?;
    let flow = req
        .flow
        .ok_or_else(|| ModelError::Invalid("flow is required: \"inApp\" or \"web\"".into()))?;
    let ttl = match req.expires_in {
        None => CODE_TTL,
        Some(s) if s <= CODE_TTL.as_secs() => Duration::from_secs(s),
        Some(s) => {
            return Err(ModelError::Invalid(format!(
                "expiresIn must be at most {}, got {s}",
                CODE_TTL.as_secs()
            )));
        }
    };
    let person_corp = match req.person_of.as_deref() {
        None => corp_id,
        Some(other) if other == corp_id => corp_id,
        Some(other) => {
            if flow == Flow::InApp {
                return Err(ModelError::Invalid(
                    "an in-app code is a member's: personOf needs flow \"web\"".into(),
                ));
            }
            other
        }
    };
    if world.corp(person_corp)?.member(&req.userid).is_none() {
        return Err(ModelError::UserNotFound(req.userid.clone()));
    }
    let internal = |key: &str| CodeClient {
        client_id: key.to_owned(),
        kind: ClientKind::InternalApp,
        corp_id: corp_id.to_owned(),
    };
    let suite = |key: &str| CodeClient {
        client_id: key.to_owned(),
        kind: ClientKind::Suite,
        corp_id: corp_id.to_owned(),
    };
    let client = match (req.app_key.as_deref(), req.suite_key.as_deref()) {
        (Some(_), Some(_)) => {
            return Err(ModelError::Invalid(
                "name appKey or suiteKey, not both".into(),
            ));
        }
        (Some(key), None) => {
            if !corp.apps.values().any(|a| a.app_key == key) {
                return Err(ModelError::Invalid(format!(
                    "appKey {key} is no app of {corp_id}"
                )));
            }
            internal(key)
        }
        (None, Some(key)) => {
            world.suites.install_of(key, corp_id)?;
            suite(key)
        }
        (None, None) => {
            let apps: Vec<CodeClient> = corp
                .apps
                .values()
                .map(|a| internal(&a.app_key))
                .chain(
                    world
                        .suites
                        .installed_in(corp_id)
                        .map(|(s, _)| suite(&s.suite_key)),
                )
                .collect();
            match <[CodeClient; 1]>::try_from(apps) {
                Ok([only]) => only,
                Err(apps) => {
                    return Err(ModelError::Invalid(format!(
                        "{corp_id} has {} apps and suites: name appKey or suiteKey",
                        apps.len()
                    )));
                }
            }
        }
    };
    Ok((
        Grant {
            client,
            person: Person {
                corp_id: person_corp.to_owned(),
                userid: req.userid.clone(),
            },
            flow,
        },
        ttl,
    ))
}

/// FNV-1a over `parts` (separated), stable across runs and platforms.
pub fn stable_hash(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, part) in parts.iter().enumerate() {
        let sep: &[u8] = if i == 0 { &[] } else { &[0] };
        for b in sep.iter().chain(part.as_bytes()) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// The personal email `users/me` answers: the account's, deliberately not
/// the organization's (`personal-<userid>@example.net`).
pub fn personal_email(person: &Person) -> String {
    format!("personal-{}@example.net", person.userid)
}

/// The personal mobile `users/me` answers: `199` and eight digits of a hash
/// of corp and userid, not the organization's `mobile`.
pub fn personal_mobile(person: &Person) -> String {
    format!(
        "199{:08}",
        stable_hash(&[&person.corp_id, &person.userid]) % 100_000_000
    )
}

/// The account's openId for one app (DingTalk's differs per app).
pub fn open_id(client_id: &str, unionid: &str) -> String {
    format!("oi{:016x}", stable_hash(&[client_id, unionid]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::org_file::OrgFile;
    use crate::sim::suites::InstallRequest;

    fn grant(flow: Flow, client_id: &str) -> Grant {
        Grant {
            client: CodeClient {
                client_id: client_id.into(),
                kind: ClientKind::InternalApp,
                corp_id: "dingacme".into(),
            },
            person: Person {
                corp_id: "dingacme".into(),
                userid: "u1".into(),
            },
            flow,
        }
    }

    fn is_k(c: &CodeClient) -> bool {
        c.client_id == "k"
    }

    #[test]
    fn a_code_is_single_use() {
        let mut l = Logins::default();
        let t0 = Instant::now();
        let code = l.issue_code(grant(Flow::InApp, "k"), t0, CODE_TTL, || "c1".into());
        assert_eq!(
            l.redeem(&code, Flow::InApp, t0, is_k),
            Ok(grant(Flow::InApp, "k"))
        );
        assert_eq!(
            l.redeem(&code, Flow::InApp, t0, is_k),
            Err(CodeError::Unknown)
        );
        assert_eq!(
            l.redeem("never-issued", Flow::InApp, t0, is_k),
            Err(CodeError::Unknown)
        );
    }

    #[test]
    fn a_code_expires_five_minutes_after_it_was_issued() {
        let mut l = Logins::default();
        let t0 = Instant::now();
        let a = l.issue_code(grant(Flow::Web, "k"), t0, CODE_TTL, || "a".into());
        let b = l.issue_code(grant(Flow::Web, "k"), t0, CODE_TTL, || "b".into());
        let just_before = t0 + CODE_TTL - Duration::from_millis(1);
        assert!(l.redeem(&a, Flow::Web, just_before, is_k).is_ok());
        assert_eq!(
            l.redeem(&b, Flow::Web, t0 + CODE_TTL, is_k),
            Err(CodeError::Expired)
        );
        let born_expired = l.issue_code(grant(Flow::Web, "k"), t0, Duration::ZERO, || "z".into());
        assert_eq!(
            l.redeem(&born_expired, Flow::Web, t0, is_k),
            Err(CodeError::Expired)
        );
    }

    #[test]
    fn expired_codes_are_forgotten_at_the_next_issue() {
        let mut l = Logins::default();
        let t0 = Instant::now();
        l.issue_code(grant(Flow::Web, "k"), t0, CODE_TTL, || "a".into());
        l.issue_code(grant(Flow::Web, "k"), t0 + CODE_TTL, CODE_TTL, || {
            "b".into()
        });
        assert_eq!(l.pending_codes(), 1);
    }

    #[test]
    fn a_code_of_the_other_flow_or_another_app_is_refused_and_used_up() {
        let mut l = Logins::default();
        let t0 = Instant::now();
        let web = l.issue_code(grant(Flow::Web, "k"), t0, CODE_TTL, || "w".into());
        assert_eq!(
            l.redeem(&web, Flow::InApp, t0, is_k),
            Err(CodeError::WrongFlow)
        );
        assert_eq!(l.redeem(&web, Flow::Web, t0, is_k), Err(CodeError::Unknown));
        let other = l.issue_code(grant(Flow::InApp, "other"), t0, CODE_TTL, || "o".into());
        assert_eq!(
            l.redeem(&other, Flow::InApp, t0, is_k),
            Err(CodeError::WrongApp)
        );
        assert_eq!(
            l.redeem(&other, Flow::InApp, t0, |c| c.client_id == "other"),
            Err(CodeError::Unknown)
        );
    }

    #[test]
    fn a_user_token_is_valid_for_its_life_and_expires_with_the_others() {
        let mut l = Logins::default();
        let t0 = Instant::now();
        let session = UserSession {
            client_id: "k".into(),
            person: grant(Flow::Web, "k").person,
        };
        let ttl = Duration::from_secs(10);
        let t = l.issue_user_token(session.clone(), t0, ttl, || "ut".into());
        assert_eq!(l.check_user_token(Some(&t), t0), Ok(session));
        assert_eq!(
            l.check_user_token(Some(&t), t0 + ttl),
            Err(TokenError::Invalid)
        );
        assert_eq!(l.check_user_token(None, t0), Err(TokenError::Missing));
        assert_eq!(l.check_user_token(Some(""), t0), Err(TokenError::Missing));
        l.expire_user_tokens();
        assert_eq!(l.check_user_token(Some(&t), t0), Err(TokenError::Invalid));
    }

    fn world() -> World {
        let file = OrgFile::parse(
            r#"
corps:
  - corpId: dingacme
    apps: [{agentId: 1001, appKey: k, appSecret: s}]
    users: [{userid: u1, name: A, deptIds: [1]}]
  - corpId: dingbeta
    apps: [{agentId: 2001, appKey: kb, appSecret: sb}]
    users: [{userid: b1, name: B, deptIds: [1]}]
"#,
        )
        .unwrap();
        World::from_file(file).unwrap()
    }

    fn req(userid: &str, flow: Flow) -> CodeRequest {
        CodeRequest {
            userid: userid.into(),
            flow: Some(flow),
            ..CodeRequest::default()
        }
    }

    #[test]
    fn a_code_request_takes_the_corps_only_app_or_the_one_named() {
        let mut w = world();
        let (g, ttl) = grant_for(&w, "dingacme", &req("u1", Flow::InApp)).unwrap();
        assert_eq!((g.client.client_id.as_str(), ttl), ("k", CODE_TTL));
        assert_eq!(g.client.kind, ClientKind::InternalApp);
        w.add_suite("sk", "ss", 0, None).unwrap();
        w.install_suite("sk", "dingacme", InstallRequest::default())
            .unwrap();
        assert!(
            matches!(
                grant_for(&w, "dingacme", &req("u1", Flow::InApp)),
                Err(ModelError::Invalid(_))
            ),
            "two candidates"
        );
        let by_suite = CodeRequest {
            suite_key: Some("sk".into()),
            ..req("u1", Flow::InApp)
        };
        let (g, _) = grant_for(&w, "dingacme", &by_suite).unwrap();
        assert_eq!(
            (g.client.client_id.as_str(), g.client.kind),
            ("sk", ClientKind::Suite)
        );
        let by_key = CodeRequest {
            app_key: Some("k".into()),
            ..req("u1", Flow::InApp)
        };
        assert!(grant_for(&w, "dingacme", &by_key).is_ok());
        for bad in [
            CodeRequest {
                app_key: Some("kb".into()),
                ..req("u1", Flow::InApp)
            },
            CodeRequest {
                app_key: Some("k".into()),
                suite_key: Some("sk".into()),
                ..req("u1", Flow::InApp)
            },
            CodeRequest {
                expires_in: Some(301),
                ..by_key.clone()
            },
            CodeRequest {
                flow: None,
                ..by_key.clone()
            },
        ] {
            assert!(
                matches!(grant_for(&w, "dingacme", &bad), Err(ModelError::Invalid(_))),
                "{bad:?}"
            );
        }
        let not_installed = CodeRequest {
            suite_key: Some("sk".into()),
            ..req("b1", Flow::InApp)
        };
        assert!(matches!(
            grant_for(&w, "dingbeta", &not_installed),
            Err(ModelError::NotInstalled { .. })
        ));
    }

    #[test]
    fn a_person_of_another_corp_gets_a_web_code_only_and_only_when_named() {
        let w = world();
        assert_eq!(
            grant_for(&w, "dingacme", &req("b1", Flow::Web)),
            Err(ModelError::UserNotFound("b1".into())),
            "b1 is no member of ACME"
        );
        let outsider = CodeRequest {
            person_of: Some("dingbeta".into()),
            ..req("b1", Flow::Web)
        };
        let (g, _) = grant_for(&w, "dingacme", &outsider).unwrap();
        assert_eq!(
            g.person,
            Person {
                corp_id: "dingbeta".into(),
                userid: "b1".into()
            }
        );
        assert_eq!(g.client.corp_id, "dingacme");
        let in_app = CodeRequest {
            flow: Some(Flow::InApp),
            ..outsider.clone()
        };
        assert!(matches!(
            grant_for(&w, "dingacme", &in_app),
            Err(ModelError::Invalid(_))
        ));
        let nowhere = CodeRequest {
            person_of: Some("dingnowhere".into()),
            ..outsider
        };
        assert!(matches!(
            grant_for(&w, "dingacme", &nowhere),
            Err(ModelError::CorpNotFound(_))
        ));
    }

    #[test]
    fn personal_email_and_mobile_are_not_the_organizations() {
        let p = Person {
            corp_id: "dingacme".into(),
            userid: "u1".into(),
        };
        assert_eq!(personal_email(&p), "personal-u1@example.net");
        let m = personal_mobile(&p);
        assert!(m.starts_with("199") && m.len() == 11, "{m}");
        assert_eq!(m, personal_mobile(&p.clone()), "stable");
        assert_ne!(open_id("k", "un1"), open_id("kb", "un1"), "per app");
    }
}
