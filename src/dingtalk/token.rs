//! Access tokens: where they come from ([`TokenSource`]: an internal app, a
//! marketplace suite, or a suite in one enterprise) and the per-app cache
//! ([`TokenCache`]).
//!
//! The cache refreshes a token before it expires (at 90 % of its life, at most
//! 5 minutes early) and when an API call reports it invalid. Its async mutex is
//! held while a fetch runs, so under concurrency exactly one fetch happens and
//! the other callers wait for its result (single flight).

use std::future::Future;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use super::error::Error;
use super::secret::Secret;
use super::suite::Suite;

/// How an app obtains its access token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenSource {
    /// An internal app (企业内部应用): `POST /v1.0/oauth2/accessToken` with appKey/appSecret.
    InternalApp { app_key: String, app_secret: Secret },
    /// A marketplace app's own token (`POST /v1.0/oauth2/suiteAccessToken`),
    /// for the calls about its installs (`apps/authInfo`).
    Suite(Suite),
    /// A marketplace app in one enterprise that installed it
    /// (`POST /v1.0/oauth2/corpAccessToken`): the contacts and scope calls there.
    Marketplace { suite: Suite, auth_corp_id: String },
}

impl TokenSource {
    pub fn internal_app(app_key: impl Into<String>, app_secret: impl Into<Secret>) -> Self {
        TokenSource::InternalApp {
            app_key: app_key.into(),
            app_secret: app_secret.into(),
        }
    }

    /// The suite `suite` in enterprise `auth_corp_id`.
    pub fn marketplace(suite: Suite, auth_corp_id: impl Into<String>) -> Self {
        TokenSource::Marketplace {
            suite,
            auth_corp_id: auth_corp_id.into(),
        }
    }

    /// A non-secret label for logs: the app key, or the suite key.
    pub fn label(&self) -> &str {
        match self {
            TokenSource::InternalApp { app_key, .. } => app_key,
            TokenSource::Suite(suite) | TokenSource::Marketplace { suite, .. } => suite.key(),
        }
    }

    /// The OAuth client of the login endpoints (`clientId`, `clientSecret`):
    /// an internal app's appKey and appSecret, a marketplace app's suiteKey
    /// and suiteSecret (its own client and each enterprise's alike).
    pub(crate) fn client_credentials(&self) -> (&str, &Secret) {
        match self {
            TokenSource::InternalApp {
                app_key,
                app_secret,
            } => (app_key, app_secret),
            TokenSource::Suite(suite) | TokenSource::Marketplace { suite, .. } => {
                (suite.key(), suite.secret())
            }
        }
    }

    /// What must never leave in an error: the app or suite secret and the
    /// suite ticket.
    pub(crate) fn secrets(&self) -> Vec<Secret> {
        match self {
            TokenSource::InternalApp { app_secret, .. } => vec![app_secret.clone()],
            TokenSource::Suite(suite) | TokenSource::Marketplace { suite, .. } => {
                let mut known = vec![suite.secret().clone()];
                known.extend(suite.ticket());
                known
            }
        }
    }
}

/// A token with the instant the cache stops handing it out.
#[derive(Clone, Debug)]
struct CachedToken {
    token: Secret,
    refresh_at: Instant,
}

/// One app's token, fetched once and shared by all its calls.
#[derive(Debug, Default)]
pub struct TokenCache {
    slot: Mutex<Option<CachedToken>>,
}

/// How long a token of life `ttl` is used before it is refreshed.
pub fn refresh_after(ttl: Duration) -> Duration {
    let margin = (ttl / 10).min(Duration::from_secs(300));
    ttl.saturating_sub(margin)
}

impl TokenCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// The cached token, or a fresh one from `fetch` (which returns the token
    /// and its life). Concurrent callers share one fetch.
    pub async fn get_or_fetch<F, Fut>(&self, fetch: F) -> Result<Secret, Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(Secret, Duration), Error>>,
    {
        let mut slot = self.slot.lock().await;
        if let Some(cached) = slot.as_ref()
            && Instant::now() < cached.refresh_at
        {
            return Ok(cached.token.clone());
        }
        let (token, ttl) = fetch().await?;
        *slot = Some(CachedToken {
            token: token.clone(),
            refresh_at: Instant::now() + refresh_after(ttl),
        });
        Ok(token)
    }

    /// Forgets `bad` if it is still the cached token. A caller holding an older
    /// token does not throw away the fresh one another caller just fetched.
    pub async fn invalidate(&self, bad: &Secret) {
        let mut slot = self.slot.lock().await;
        if slot.as_ref().is_some_and(|c| &c.token == bad) {
            *slot = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    async fn fetch_counting(n: Arc<AtomicU32>, ttl: Duration) -> Result<(Secret, Duration), Error> {
        let i = n.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok((Secret::new(format!("tok{i}")), ttl))
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_one_fetch() {
        let cache = Arc::new(TokenCache::new());
        let n = Arc::new(AtomicU32::new(0));
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let (cache, n) = (cache.clone(), n.clone());
                tokio::spawn(async move {
                    cache
                        .get_or_fetch(|| fetch_counting(n, Duration::from_secs(7200)))
                        .await
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap(), Secret::new("tok0"));
        }
        assert_eq!(n.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn token_is_refreshed_before_it_expires() {
        let cache = TokenCache::new();
        let n = Arc::new(AtomicU32::new(0));
        let ttl = Duration::from_secs(7200);
        cache
            .get_or_fetch(|| fetch_counting(n.clone(), ttl))
            .await
            .unwrap();
        tokio::time::advance(Duration::from_secs(7200 - 301)).await;
        assert_eq!(
            cache
                .get_or_fetch(|| fetch_counting(n.clone(), ttl))
                .await
                .unwrap(),
            Secret::new("tok0")
        );
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(
            cache
                .get_or_fetch(|| fetch_counting(n.clone(), ttl))
                .await
                .unwrap(),
            Secret::new("tok1")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn invalidating_a_stale_token_keeps_the_fresh_one() {
        let cache = TokenCache::new();
        let n = Arc::new(AtomicU32::new(0));
        let ttl = Duration::from_secs(7200);
        let first = cache
            .get_or_fetch(|| fetch_counting(n.clone(), ttl))
            .await
            .unwrap();
        cache.invalidate(&first).await;
        let second = cache
            .get_or_fetch(|| fetch_counting(n.clone(), ttl))
            .await
            .unwrap();
        cache.invalidate(&first).await;
        assert_eq!(
            cache
                .get_or_fetch(|| fetch_counting(n.clone(), ttl))
                .await
                .unwrap(),
            second
        );
        assert_eq!(n.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn refresh_margin_is_a_tenth_of_life_capped_at_five_minutes() {
        assert_eq!(
            refresh_after(Duration::from_secs(7200)),
            Duration::from_secs(6900)
        );
        assert_eq!(
            refresh_after(Duration::from_secs(10)),
            Duration::from_secs(9)
        );
    }
}
