//! Faults the simulator injects on the DingTalk endpoints (not on `/_sim/`),
//! set with `PUT /_sim/faults`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The current fault settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Faults {
    /// Fraction (0..=1) of calls that fail with "system busy" (topapi -1, v1.0 500 systemBusy).
    pub error_rate: f64,
    /// The next N calls fail that way (deterministic; counted down).
    pub fail_next: u32,
    /// When set, failing calls answer this bare HTTP status (e.g. 503) instead.
    pub fail_status: Option<u16>,
    /// Added to every call, in milliseconds.
    pub latency_ms: u64,
    /// The next N calls are delayed by `slowMs` more (deterministic; counted down).
    pub slow_next: u32,
    pub slow_ms: u64,
    /// Calls per second per app per API (0 = unlimited). DingTalk: 20.
    pub throttle_qps: u32,
    /// Life of newly issued or extended tokens, in seconds. DingTalk: 7200.
    pub token_ttl_seconds: u64,
    /// A department whose next `user/list` answers an empty page (once).
    pub empty_members_once: Option<i64>,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            error_rate: 0.0,
            fail_next: 0,
            fail_status: None,
            latency_ms: 0,
            slow_next: 0,
            slow_ms: 0,
            throttle_qps: 20,
            token_ttl_seconds: 7200,
            empty_members_once: None,
        }
    }
}

/// A `PUT /_sim/faults` body: only the fields given change.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultsPatch {
    pub error_rate: Option<f64>,
    pub fail_next: Option<u32>,
    pub fail_status: Option<Option<u16>>,
    pub latency_ms: Option<u64>,
    pub slow_next: Option<u32>,
    pub slow_ms: Option<u64>,
    pub throttle_qps: Option<u32>,
    pub token_ttl_seconds: Option<u64>,
    pub empty_members_once: Option<Option<i64>>,
}

/// The longest token life, latency and added delay the simulator accepts.
pub const MAX_TOKEN_TTL_SECONDS: u64 = 10 * 365 * 86_400;
pub const MAX_DELAY_MS: u64 = 3_600_000;

impl FaultsPatch {
    /// Why this patch cannot be applied, if it cannot (answered with 400).
    pub fn check(&self) -> Result<(), String> {
        if let Some(v) = self.error_rate
            && !(0.0..=1.0).contains(&v)
        {
            return Err(format!("errorRate must be within 0..=1, got {v}"));
        }
        if let Some(Some(v)) = self.fail_status
            && !(100..=599).contains(&v)
        {
            return Err(format!(
                "failStatus must be an HTTP status (100..=599), got {v}"
            ));
        }
        for (name, v) in [("latencyMs", self.latency_ms), ("slowMs", self.slow_ms)] {
            if let Some(v) = v
                && v > MAX_DELAY_MS
            {
                return Err(format!("{name} must be at most {MAX_DELAY_MS}, got {v}"));
            }
        }
        if let Some(v) = self.token_ttl_seconds
            && v > MAX_TOKEN_TTL_SECONDS
        {
            return Err(format!(
                "tokenTtlSeconds must be at most {MAX_TOKEN_TTL_SECONDS}, got {v}"
            ));
        }
        Ok(())
    }
}

impl Faults {
    /// Applies the fields present in `patch`.
    pub fn apply(&mut self, patch: FaultsPatch) {
        if let Some(v) = patch.error_rate {
            self.error_rate = v.clamp(0.0, 1.0);
        }
        if let Some(v) = patch.fail_next {
            self.fail_next = v;
        }
        if let Some(v) = patch.fail_status {
            self.fail_status = v;
        }
        if let Some(v) = patch.latency_ms {
            self.latency_ms = v;
        }
        if let Some(v) = patch.slow_next {
            self.slow_next = v;
        }
        if let Some(v) = patch.slow_ms {
            self.slow_ms = v;
        }
        if let Some(v) = patch.throttle_qps {
            self.throttle_qps = v;
        }
        if let Some(v) = patch.token_ttl_seconds {
            self.token_ttl_seconds = v;
        }
        if let Some(v) = patch.empty_members_once {
            self.empty_members_once = v;
        }
    }

    /// The delay for the call that arrives now (counts `slowNext` down).
    pub fn take_delay(&mut self) -> Duration {
        let mut ms = self.latency_ms;
        if self.slow_next > 0 {
            self.slow_next -= 1;
            ms = ms.saturating_add(self.slow_ms);
        }
        Duration::from_millis(ms)
    }

    /// Whether the call that arrives now fails (counts `failNext` down).
    /// `roll` is uniform in `[0, 1)`.
    pub fn take_failure(&mut self, roll: f64) -> bool {
        if self.fail_next > 0 {
            self.fail_next -= 1;
            return true;
        }
        roll < self.error_rate
    }

    /// Whether this `user/list` of `dept_id` answers empty (clears the fault).
    pub fn take_empty_members(&mut self, dept_id: i64) -> bool {
        if self.empty_members_once == Some(dept_id) {
            self.empty_members_once = None;
            return true;
        }
        false
    }

    pub fn token_ttl(&self) -> Duration {
        Duration::from_secs(self.token_ttl_seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fail_next_counts_down_then_error_rate_applies() {
        let mut f = Faults {
            fail_next: 2,
            ..Default::default()
        };
        assert!(f.take_failure(0.99));
        assert!(f.take_failure(0.99));
        assert!(!f.take_failure(0.99));
        f.apply(FaultsPatch {
            error_rate: Some(0.5),
            ..Default::default()
        });
        assert!(f.take_failure(0.4));
        assert!(!f.take_failure(0.6));
    }

    #[test]
    fn empty_members_fault_fires_once_for_its_department() {
        let mut f = Faults {
            empty_members_once: Some(7),
            ..Default::default()
        };
        assert!(!f.take_empty_members(3));
        assert!(f.take_empty_members(7));
        assert!(!f.take_empty_members(7));
    }

    #[test]
    fn patch_changes_only_given_fields() {
        let mut f = Faults::default();
        let patch: FaultsPatch =
            serde_json::from_str(r#"{"throttleQps":5,"failStatus":503}"#).unwrap();
        f.apply(patch);
        assert_eq!(f.throttle_qps, 5);
        assert_eq!(f.fail_status, Some(503));
        assert_eq!(f.token_ttl_seconds, 7200);
    }
}
