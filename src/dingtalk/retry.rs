//! When to retry a failed call, and after how long. Pure: the caller passes the
//! jitter in, so the decision is testable without a clock or randomness.
//!
//! Rules:
//! - **Throttled**: DingTalk rejected the call before running it, so it is safe
//!   to retry any call, the scopes POST included. Wait one server window (1 s,
//!   plus up to 25 % jitter so that concurrent callers do not return in step);
//!   the caller also pauses the API's pacer for that window.
//! - **Token invalid**: also rejected before running: refresh the token and retry
//!   once. A second token error in a row is returned.
//! - **Busy / 5xx / timeouts / connection resets**: bounded retries with
//!   exponential backoff and jitter, for idempotent calls only.
//! - **The scopes POST** (a delta) is not retried after a 5xx, a timeout or a
//!   reset: DingTalk may have applied it. Replaying an add/del delta is harmless
//!   on its own, but not when the scope changed in between (a replayed `add`
//!   would undo an admin's removal). The error is returned; the reconciler reads
//!   the scope again (GET) and computes a fresh delta, which is always correct.
//!   It *is* retried when the connection could not even be opened (never sent).
//! - **The login code exchanges** (`v2/user/getuserinfo`, `userAccessToken`)
//!   are not retried after a 5xx, a timeout or a reset either: a code is
//!   single-use, DingTalk may have used it up, and a second send would be
//!   refused as a bad code, hiding the real failure. A throttle answer, a
//!   rejected app token and a connection never opened are retried as above.
//! - A token error on `users/me` is the user's token, not the app's: there is
//!   nothing to refresh, it is returned.
//! - Everything else (bad credentials, not found, bad or used code, outside
//!   the scope, permission, bad parameter, undecodable answer) is returned at once.

use std::time::Duration;

use super::error::{Error, ErrorKind};
use super::types::Api;

/// Retry bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all for busy/5xx/transport failures (1 = no retry).
    pub max_attempts: u32,
    /// Throttle errors tolerated for one call before giving up.
    pub max_throttled: u32,
    /// First backoff after a busy/5xx/transport failure; doubles each time.
    pub base_delay: Duration,
    /// Cap of that backoff.
    pub max_delay: Duration,
    /// Pause after a throttle error: DingTalk's window is 1 s.
    pub throttle_pause: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            max_throttled: 10,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            throttle_pause: Duration::from_secs(1),
        }
    }
}

/// What happened so far to one call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Attempts {
    /// Busy/5xx/transport failures.
    pub failures: u32,
    /// Throttle errors.
    pub throttled: u32,
    /// Token refreshes caused by token errors.
    pub token_refreshes: u32,
}

/// The next step after a failure.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Decision {
    /// Sleep, then send again.
    RetryAfter(Duration),
    /// The server window was exceeded: pause the API's pacer, then send again.
    Throttled(Duration),
    /// Drop the cached token, fetch a new one, send again.
    RefreshToken,
    /// Return the error.
    Fail,
}

/// Decides what to do after `err` on `api`. `jitter` is uniform in `[0, 1)`.
pub fn decide(
    policy: &RetryPolicy,
    api: Api,
    err: &Error,
    attempts: &Attempts,
    jitter: f64,
) -> Decision {
    let jitter = jitter.clamp(0.0, 1.0);
    match err.kind() {
        ErrorKind::Throttled if attempts.throttled < policy.max_throttled => {
            Decision::Throttled(policy.throttle_pause.mul_f64(1.0 + jitter / 4.0))
        }
        ErrorKind::TokenInvalid if api.uses_app_token() && attempts.token_refreshes == 0 => {
            Decision::RefreshToken
        }
        ErrorKind::Busy | ErrorKind::Transport if attempts.failures + 1 < policy.max_attempts => {
            let never_sent = matches!(err, Error::Transport { connect: true, .. });
            if api.idempotent() || never_sent {
                Decision::RetryAfter(backoff(policy, attempts.failures, jitter))
            } else {
                Decision::Fail
            }
        }
        _ => Decision::Fail,
    }
}

/// Exponential backoff with "equal jitter": half fixed, half random.
pub fn backoff(policy: &RetryPolicy, failures: u32, jitter: f64) -> Duration {
    let exp = policy.base_delay.saturating_mul(1u32 << failures.min(16));
    let capped = exp.min(policy.max_delay);
    capped.mul_f64(0.5 + jitter.clamp(0.0, 1.0) / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dingtalk::error::ApiFailure;

    fn api_err(api: Api, status: u16, code: &str, sub: Option<&str>) -> Error {
        Error::api(
            api,
            ApiFailure {
                http_status: status,
                code: code.into(),
                sub_code: sub.map(Into::into),
                message: String::new(),
                request_id: None,
            },
        )
    }

    #[test]
    fn throttle_waits_a_window_even_for_the_scopes_post() {
        let p = RetryPolicy::default();
        let e = api_err(
            Api::ScopesUpdate,
            403,
            "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi",
            None,
        );
        assert_eq!(
            decide(&p, Api::ScopesUpdate, &e, &Attempts::default(), 0.0),
            Decision::Throttled(Duration::from_secs(1))
        );
        let tired = Attempts {
            throttled: p.max_throttled,
            ..Default::default()
        };
        assert_eq!(
            decide(&p, Api::ScopesUpdate, &e, &tired, 0.0),
            Decision::Fail
        );
    }

    #[test]
    fn busy_is_retried_with_bounded_backoff_for_reads_only() {
        let p = RetryPolicy::default();
        let e = api_err(Api::UserList, 200, "-1", None);
        assert_eq!(
            decide(&p, Api::UserList, &e, &Attempts::default(), 0.0),
            Decision::RetryAfter(Duration::from_millis(100))
        );
        let last = Attempts {
            failures: p.max_attempts - 1,
            ..Default::default()
        };
        assert_eq!(decide(&p, Api::UserList, &e, &last, 0.0), Decision::Fail);
        let e5 = api_err(Api::ScopesUpdate, 500, "systemBusy", None);
        assert_eq!(
            decide(&p, Api::ScopesUpdate, &e5, &Attempts::default(), 0.0),
            Decision::Fail
        );
    }

    #[test]
    fn token_error_refreshes_once_then_fails() {
        let p = RetryPolicy::default();
        let e = api_err(Api::UserGet, 200, "88", Some("40014"));
        assert_eq!(
            decide(&p, Api::UserGet, &e, &Attempts::default(), 0.5),
            Decision::RefreshToken
        );
        let again = Attempts {
            token_refreshes: 1,
            ..Default::default()
        };
        assert_eq!(decide(&p, Api::UserGet, &e, &again, 0.5), Decision::Fail);
    }

    #[test]
    fn bad_credentials_and_not_found_are_never_retried() {
        let p = RetryPolicy::default();
        let creds = api_err(Api::AccessToken, 400, "invalidClientIdOrSecret", None);
        assert_eq!(
            decide(&p, Api::AccessToken, &creds, &Attempts::default(), 0.0),
            Decision::Fail
        );
        let gone = api_err(Api::UserGet, 200, "60121", None);
        assert_eq!(
            decide(&p, Api::UserGet, &gone, &Attempts::default(), 0.0),
            Decision::Fail
        );
    }

    #[test]
    fn a_login_code_exchange_is_not_resent_after_a_server_error_or_a_timeout() {
        let p = RetryPolicy::default();
        for api in [Api::UserInfoByCode, Api::UserAccessToken] {
            let busy = api_err(api, 500, "systemBusy", None);
            assert_eq!(
                decide(&p, api, &busy, &Attempts::default(), 0.0),
                Decision::Fail,
                "{api:?}"
            );
            let used = api_err(api, 200, "40078", None);
            assert_eq!(
                decide(&p, api, &used, &Attempts::default(), 0.0),
                Decision::Fail,
                "{api:?}"
            );
            let throttled = api_err(api, 200, "88", Some("90018"));
            assert!(
                matches!(
                    decide(&p, api, &throttled, &Attempts::default(), 0.0),
                    Decision::Throttled(_)
                ),
                "{api:?}: rejected before it ran"
            );
        }
        let token = api_err(Api::UserInfoByCode, 200, "88", Some("40014"));
        assert_eq!(
            decide(&p, Api::UserInfoByCode, &token, &Attempts::default(), 0.0),
            Decision::RefreshToken,
            "the app token was rejected before the code was looked at"
        );
        let busy = api_err(Api::UserByUnionId, 200, "-1", None);
        assert!(matches!(
            decide(&p, Api::UserByUnionId, &busy, &Attempts::default(), 0.0),
            Decision::RetryAfter(_)
        ));
    }

    #[test]
    fn a_rejected_user_token_is_not_refreshed() {
        let p = RetryPolicy::default();
        let e = api_err(Api::UsersMe, 400, "InvalidAuthentication", None);
        assert_eq!(
            decide(&p, Api::UsersMe, &e, &Attempts::default(), 0.0),
            Decision::Fail
        );
        let e = api_err(Api::UserAccessToken, 400, "InvalidAuthentication", None);
        assert_eq!(
            decide(&p, Api::UserAccessToken, &e, &Attempts::default(), 0.0),
            Decision::Fail
        );
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let p = RetryPolicy::default();
        assert_eq!(backoff(&p, 0, 1.0), Duration::from_millis(200));
        assert_eq!(backoff(&p, 1, 1.0), Duration::from_millis(400));
        assert_eq!(backoff(&p, 10, 1.0), Duration::from_secs(5));
        assert_eq!(backoff(&p, 40, 0.0), Duration::from_millis(2500));
    }
}
