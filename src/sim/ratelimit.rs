//! DingTalk's server-side limit: calls per app per API in 1-second windows.
//! A call over the limit is refused (and not counted).

use std::collections::HashMap;

/// Counters of the current window, per (appKey, API name).
#[derive(Clone, Debug, Default)]
pub struct WindowLimiter {
    windows: HashMap<(String, &'static str), (u64, u32)>,
}

impl WindowLimiter {
    /// Admits a call of `app` to `api` in second `window` if fewer than `limit`
    /// were admitted in that second. `limit` 0 admits everything.
    pub fn admit(&mut self, app: &str, api: &'static str, window: u64, limit: u32) -> bool {
        if limit == 0 {
            return true;
        }
        let entry = self
            .windows
            .entry((app.to_owned(), api))
            .or_insert((window, 0));
        if entry.0 != window {
            *entry = (window, 0);
        }
        if entry.1 >= limit {
            return false;
        }
        entry.1 += 1;
        true
    }

    pub fn clear(&mut self) {
        self.windows.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_admits_the_limit_then_refuses_until_the_next_second() {
        let mut l = WindowLimiter::default();
        assert!((0..20).all(|_| l.admit("k", "user/list", 5, 20)));
        assert!(!l.admit("k", "user/list", 5, 20));
        assert!(l.admit("k", "user/list", 6, 20));
    }

    #[test]
    fn limits_are_per_app_and_per_api() {
        let mut l = WindowLimiter::default();
        assert!(l.admit("k", "a", 0, 1));
        assert!(!l.admit("k", "a", 0, 1));
        assert!(l.admit("k", "b", 0, 1));
        assert!(l.admit("other", "a", 0, 1));
    }
}
