//! The DingTalk open-platform client (see `dingtalk-api.md`).
//!
//! - [`Client`]: one HTTP connection pool, the configuration (base URLs, rate
//!   limit, retries, timeouts) and the call counters. Cheap to clone.
//! - [`AppClient`]: one app of one organization. Holds its token cache and one
//!   pacer per API (DingTalk limits calls per app per API; a marketplace app
//!   per suite, enterprise and API). Every endpoint method and stream lives
//!   here (`endpoints.rs`, `walk.rs`, the login endpoints in `login.rs`).
//! - [`Suite`]: a marketplace app's credentials and newest suite ticket,
//!   shared by its own client ([`TokenSource::Suite`]) and each enterprise's
//!   ([`TokenSource::Marketplace`]).
//!
//! Production and tests differ only in [`Config::oapi_base_url`] and
//! [`Config::api_base_url`]; the simulator serves both families on one address.

pub mod callback_crypto;
mod endpoints;
pub mod error;
mod login;
pub mod ratelimit;
pub mod retry;
pub mod secret;
pub mod stats;
mod suite;
pub mod token;
mod transport;
pub mod types;
mod walk;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub use endpoints::DEFAULT_LANGUAGE;
pub use error::{ApiFailure, Error, ErrorKind};
pub use ratelimit::RateLimit;
pub use retry::RetryPolicy;
pub use secret::Secret;
pub use stats::{EndpointStats, StatsSnapshot};
pub use suite::Suite;
pub use token::TokenSource;
pub use types::Api;
pub use walk::{OrgItem, OrgPage};

use ratelimit::Pacer;
use stats::Stats;
use token::TokenCache;

/// Production host of the legacy topapi family.
pub const OAPI_BASE_URL: &str = "https://oapi.dingtalk.com";
/// Production host of the v1.0 family.
pub const API_BASE_URL: &str = "https://api.dingtalk.com";

/// Client settings. `Default` is production DingTalk at 20 calls/s per app per API.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Base URL of topapi calls (`https://oapi.dingtalk.com`).
    pub oapi_base_url: String,
    /// Base URL of v1.0 calls (`https://api.dingtalk.com`).
    pub api_base_url: String,
    /// Pacing per app per API.
    pub rate_limit: RateLimit,
    pub retry: RetryPolicy,
    /// Deadline of one HTTP request (connect, send, read the answer).
    pub request_timeout: Duration,
    /// Requests in flight per API in the streams (departments, users).
    pub concurrency: usize,
    /// The largest response body read; a larger one is refused.
    pub max_body_bytes: usize,
}

/// The default [`Config::max_body_bytes`]: 16 MiB.
pub const MAX_BODY_BYTES: usize = 16 << 20;

impl Default for Config {
    fn default() -> Self {
        Self {
            oapi_base_url: OAPI_BASE_URL.to_owned(),
            api_base_url: API_BASE_URL.to_owned(),
            rate_limit: RateLimit::default(),
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_secs(10),
            concurrency: 8,
            max_body_bytes: MAX_BODY_BYTES,
        }
    }
}

impl Config {
    /// Both families on one base URL (a simulator, a proxy).
    pub fn with_base_url(url: &str) -> Self {
        let url = url.trim_end_matches('/');
        Self {
            oapi_base_url: url.to_owned(),
            api_base_url: url.to_owned(),
            ..Self::default()
        }
    }
}

/// The shared part of the client: HTTP pool, configuration, counters.
#[derive(Clone)]
pub struct Client {
    inner: Arc<ClientInner>,
}

struct ClientInner {
    http: reqwest::Client,
    config: Config,
    stats: Stats,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// Installs the process's rustls provider, ring, before any TLS client is
/// built (reqwest's and the Stream WebSocket's). Idempotent: it fails only
/// when a provider is installed already.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl Client {
    /// Builds the HTTP client (rustls with the ring provider).
    pub fn new(config: Config) -> Result<Self, Error> {
        install_crypto_provider();
        if config.concurrency == 0 {
            return Err(Error::Config("concurrency must be at least 1".into()));
        }
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout)
            .user_agent(concat!("dingbind/", env!("CARGO_PKG_VERSION")))
            // DingTalk never redirects; following one would carry the topapi
            // token (a query parameter) to wherever it points.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            inner: Arc::new(ClientInner {
                http,
                config,
                stats: Stats::default(),
            }),
        })
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// A handle for one app, with its own token cache and pacers.
    pub fn app(&self, source: TokenSource) -> AppClient {
        let pacers = Api::ALL.map(|_| Pacer::new(self.inner.config.rate_limit));
        AppClient {
            inner: Arc::new(AppInner {
                client: self.clone(),
                source,
                tokens: TokenCache::new(),
                pacers,
                stats: Stats::default(),
            }),
        }
    }

    /// Calls, throttle answers, retries and errors per endpoint, over all apps.
    pub fn stats(&self) -> StatsSnapshot {
        self.inner.stats.snapshot()
    }
}

/// One app of one organization. Cheap to clone; clones share token and pacers.
#[derive(Clone)]
pub struct AppClient {
    inner: Arc<AppInner>,
}

struct AppInner {
    client: Client,
    source: TokenSource,
    tokens: TokenCache,
    /// One pacer per API, indexed by [`Api::index`].
    pacers: [Pacer; Api::ALL.len()],
    /// This app's own counters (the client's count every app).
    stats: Stats,
}

impl fmt::Debug for AppClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppClient")
            .field("source", &self.inner.source)
            .finish_non_exhaustive()
    }
}

impl AppClient {
    /// The client this app belongs to.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// Counters of this app alone: what it cost, whatever other apps of
    /// the same client do meanwhile.
    pub fn stats(&self) -> StatsSnapshot {
        self.inner.stats.snapshot()
    }

    /// Counts on the app's counters and the client's.
    fn count(&self, f: impl Fn(&Stats)) {
        f(&self.inner.stats);
        f(&self.inner.client.inner.stats);
    }

    fn pacer(&self, api: Api) -> &Pacer {
        &self.inner.pacers[api.index()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_shows_no_secret() {
        let client = Client::new(Config::default()).unwrap();
        let app = client.app(TokenSource::internal_app("acme-key", "acme-secret"));
        let text = format!("{app:?}");
        assert!(text.contains("acme-key"), "{text}");
        assert!(!text.contains("acme-secret"), "{text}");
    }

    #[test]
    fn one_base_url_serves_both_families() {
        let c = Config::with_base_url("http://127.0.0.1:8089/");
        assert_eq!(c.oapi_base_url, "http://127.0.0.1:8089");
        assert_eq!(c.api_base_url, "http://127.0.0.1:8089");
    }
}
