//! Per-endpoint counters of the client, for metrics and benchmarks.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use super::types::Api;

/// Counters of one endpoint.
#[derive(Debug, Default)]
struct Counters {
    calls: AtomicU64,
    throttled: AtomicU64,
    retries: AtomicU64,
    errors: AtomicU64,
}

/// Live counters: one set per app, and one over every app of a [`super::Client`].
#[derive(Debug, Default)]
pub struct Stats {
    per_api: [Counters; Api::ALL.len()],
}

/// A copy of the counters of one endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct EndpointStats {
    /// HTTP requests sent (every attempt counts).
    pub calls: u64,
    /// Answers that were throttle errors.
    pub throttled: u64,
    /// Attempts that were retries of an earlier failed attempt.
    pub retries: u64,
    /// Calls that finally returned an error to the caller.
    pub errors: u64,
}

/// A copy of all counters, by endpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StatsSnapshot {
    pub endpoints: BTreeMap<Api, EndpointStats>,
}

impl StatsSnapshot {
    /// Counters of one endpoint (zero if never called).
    pub fn get(&self, api: Api) -> EndpointStats {
        self.endpoints.get(&api).copied().unwrap_or_default()
    }

    /// HTTP requests over all endpoints.
    pub fn total_calls(&self) -> u64 {
        self.endpoints.values().map(|e| e.calls).sum()
    }

    /// What was counted since `earlier` (a snapshot of the same counters).
    pub fn since(&self, earlier: &StatsSnapshot) -> StatsSnapshot {
        let endpoints = self
            .endpoints
            .iter()
            .map(|(&api, now)| {
                let then = earlier.get(api);
                let delta = EndpointStats {
                    calls: now.calls.saturating_sub(then.calls),
                    throttled: now.throttled.saturating_sub(then.throttled),
                    retries: now.retries.saturating_sub(then.retries),
                    errors: now.errors.saturating_sub(then.errors),
                };
                (api, delta)
            })
            .filter(|(_, d)| *d != EndpointStats::default())
            .collect();
        StatsSnapshot { endpoints }
    }

    /// Throttle answers over all endpoints.
    pub fn total_throttled(&self) -> u64 {
        self.endpoints.values().map(|e| e.throttled).sum()
    }
}

impl Serialize for Api {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl Stats {
    fn at(&self, api: Api) -> &Counters {
        &self.per_api[api.index()]
    }

    pub(crate) fn call(&self, api: Api, retry: bool) {
        self.at(api).calls.fetch_add(1, Ordering::Relaxed);
        if retry {
            self.at(api).retries.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn throttled(&self, api: Api) {
        self.at(api).throttled.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn error(&self, api: Api) {
        self.at(api).errors.fetch_add(1, Ordering::Relaxed);
    }

    /// A copy of the counters of every endpoint called at least once.
    pub fn snapshot(&self) -> StatsSnapshot {
        let endpoints = Api::ALL
            .iter()
            .map(|&api| {
                let c = self.at(api);
                let s = EndpointStats {
                    calls: c.calls.load(Ordering::Relaxed),
                    throttled: c.throttled.load(Ordering::Relaxed),
                    retries: c.retries.load(Ordering::Relaxed),
                    errors: c.errors.load(Ordering::Relaxed),
                };
                (api, s)
            })
            .filter(|(_, s)| s.calls > 0)
            .collect();
        StatsSnapshot { endpoints }
    }
}
