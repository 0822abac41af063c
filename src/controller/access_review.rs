//! Who may call dingbind's own endpoints: a bearer token that the API server
//! authenticates (TokenReview) and authorizes (SubjectAccessReview) for what
//! the call asks ([`Ask`]): `get` on the non-resource URL `/metrics`
//! (`--metrics-auth`, as controller-runtime's secure metrics do), or
//! `create` on `tenants/login` in the tenant's namespace (the login API).
//! Decisions are cached briefly, per token and ask, so that a caller calling
//! every few seconds costs two API calls per [`CACHE_FOR`].

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use k8s_openapi::api::{
    authentication::v1::{TokenReview, TokenReviewSpec},
    authorization::v1::{
        NonResourceAttributes, ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
    },
};
use kube::{Api, Client, api::PostParams};

/// How long a decision about one token is reused.
pub const CACHE_FOR: Duration = Duration::from_secs(30);
/// Tokens remembered at most (the cache is emptied when full).
const CACHE_MAX: usize = 256;

/// What `/metrics` answers a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The token is valid and may `get /metrics`.
    Allowed,
    /// No token, or one the API server does not authenticate: 401.
    Unauthenticated,
    /// A valid token without the permission: 403.
    Forbidden,
}

/// Checks bearer tokens against the API server.
/// What a call asks to do.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Ask {
    /// `get /metrics`.
    Metrics,
    /// `create` `tenants/login` in `namespace`: resolve logins for its tenants.
    TenantLogin { namespace: String },
}

pub struct AccessReview {
    client: Client,
    cache: Mutex<HashMap<(String, Ask), (Instant, Decision)>>,
}

impl AccessReview {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The decision for an `Authorization` header value, if the API server
    /// could be asked (`Err`: it could not; the request is refused with 503).
    pub async fn check(
        &self,
        authorization: Option<&str>,
        ask: &Ask,
    ) -> Result<Decision, kube::Error> {
        let Some(token) = authorization
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
        else {
            return Ok(Decision::Unauthenticated);
        };
        let key = (token.to_string(), ask.clone());
        if let Some(d) = self.cached(&key) {
            return Ok(d);
        }
        let decision = self.review(token, ask).await?;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(key, (Instant::now() + CACHE_FOR, decision));
        Ok(decision)
    }

    fn cached(&self, key: &(String, Ask)) -> Option<Decision> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(key)
            .filter(|(until, _)| *until > Instant::now())
            .map(|(_, d)| *d)
    }

    async fn review(&self, token: &str, ask: &Ask) -> Result<Decision, kube::Error> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                ..Default::default()
            },
            ..Default::default()
        };
        let reviewed = Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await?;
        let status = reviewed.status.unwrap_or_default();
        let (true, Some(user)) = (status.authenticated == Some(true), status.user) else {
            return Ok(Decision::Unauthenticated);
        };
        let access = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: user.username,
                uid: user.uid,
                groups: user.groups,
                extra: user.extra,
                non_resource_attributes: match ask {
                    Ask::Metrics => Some(NonResourceAttributes {
                        path: Some("/metrics".into()),
                        verb: Some("get".into()),
                    }),
                    Ask::TenantLogin { .. } => None,
                },
                resource_attributes: match ask {
                    Ask::Metrics => None,
                    Ask::TenantLogin { namespace } => Some(ResourceAttributes {
                        group: Some(crate::api::GROUP.into()),
                        resource: Some("tenants".into()),
                        subresource: Some("login".into()),
                        verb: Some("create".into()),
                        namespace: Some(namespace.clone()),
                        ..Default::default()
                    }),
                },
            },
            ..Default::default()
        };
        let decided = Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&PostParams::default(), &access)
            .await?;
        Ok(if decided.status.is_some_and(|s| s.allowed) {
            Decision::Allowed
        } else {
            Decision::Forbidden
        })
    }
}
