//! The simulator's call counters (`GET /_sim/stats`).

use std::collections::BTreeMap;

use serde::Serialize;

/// Counters of one endpoint or one app.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Counter {
    /// Requests received.
    pub calls: u64,
    /// Requests refused by the rate limit.
    pub throttled: u64,
    /// Requests failed by an injected fault.
    pub faults: u64,
    /// Token endpoints only: requests answered with a token (a new one, or the
    /// same one extended); refused, throttled and failed requests are not
    /// counted.
    pub granted: u64,
}

/// Everything counted since the start or the last reset.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SimStats {
    /// By endpoint name (e.g. `topapi/v2/user/list`).
    pub endpoints: BTreeMap<String, Counter>,
    /// By appKey (calls made with a valid token or, for the token endpoint, the given appKey).
    pub apps: BTreeMap<String, Counter>,
    /// Distinct tokens issued.
    pub tokens_issued: u64,
}

impl SimStats {
    /// Zero counters for every endpoint in `endpoints`, so that a reader can
    /// tell "not called" (0) from "no such endpoint" (a missing key).
    pub fn with_endpoints<'a>(endpoints: impl IntoIterator<Item = &'a str>) -> SimStats {
        SimStats {
            endpoints: endpoints
                .into_iter()
                .map(|e| (e.to_owned(), Counter::default()))
                .collect(),
            ..SimStats::default()
        }
    }

    pub fn endpoint(&mut self, name: &str) -> &mut Counter {
        self.endpoints.entry(name.to_owned()).or_default()
    }

    pub fn app(&mut self, app_key: &str) -> &mut Counter {
        self.apps.entry(app_key.to_owned()).or_default()
    }
}
