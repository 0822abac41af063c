//! A marketplace app, a suite in DingTalk's words: one app that every
//! enterprise installs from DingTalk's app market. [`Suite`] holds its key,
//! its secret and the newest suite ticket; the suite's own client and the
//! client of each enterprise that installed it share one.
//!
//! DingTalk pushes a `suite_ticket` about every five hours; every token the
//! suite asks for names the newest one, and a newer ticket replaces the old.
//! Without a ticket no token can be had: calls fail with
//! [`ErrorKind::SuiteTicket`](super::ErrorKind::SuiteTicket) until one comes.

use std::fmt;
use std::sync::{Arc, RwLock};

use super::secret::Secret;

/// A suite's credentials and its newest ticket. Cheap to clone; clones share
/// the ticket.
#[derive(Clone)]
pub struct Suite {
    inner: Arc<SuiteInner>,
}

struct SuiteInner {
    key: String,
    secret: Secret,
    ticket: RwLock<Option<Secret>>,
}

impl Suite {
    /// A suite with no ticket yet.
    pub fn new(key: impl Into<String>, secret: impl Into<Secret>) -> Self {
        Self {
            inner: Arc::new(SuiteInner {
                key: key.into(),
                secret: secret.into(),
                ticket: RwLock::new(None),
            }),
        }
    }

    /// The suiteKey: the clientId of its Stream connection, a label for logs.
    pub fn key(&self) -> &str {
        &self.inner.key
    }

    pub(crate) fn secret(&self) -> &Secret {
        &self.inner.secret
    }

    /// The newest ticket, if one came.
    pub fn ticket(&self) -> Option<Secret> {
        self.inner
            .ticket
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Keeps `ticket` as the newest. Returns whether it differs from the one
    /// held (a redelivered ticket changes nothing).
    pub fn set_ticket(&self, ticket: Secret) -> bool {
        let mut slot = self
            .inner
            .ticket
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if slot.as_ref() == Some(&ticket) {
            return false;
        }
        *slot = Some(ticket);
        true
    }
}

impl PartialEq for Suite {
    fn eq(&self, other: &Self) -> bool {
        self.inner.key == other.inner.key && self.inner.secret == other.inner.secret
    }
}

impl Eq for Suite {}

impl fmt::Debug for Suite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Suite")
            .field("key", &self.inner.key)
            .field("ticket", &self.ticket().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_ticket_replaces_the_old_and_a_redelivered_one_changes_nothing() {
        let suite = Suite::new("suite-key", "suite-secret");
        assert_eq!(suite.ticket(), None);
        assert!(suite.set_ticket(Secret::new("t1")));
        let clone = suite.clone();
        assert!(!clone.set_ticket(Secret::new("t1")));
        assert!(clone.set_ticket(Secret::new("t2")));
        assert_eq!(suite.ticket(), Some(Secret::new("t2")));
    }

    #[test]
    fn debug_output_shows_neither_secret_nor_ticket() {
        let suite = Suite::new("suite-key", "suite-secret");
        suite.set_ticket(Secret::new("ticket-value"));
        let text = format!("{suite:?}");
        assert!(text.contains("suite-key"), "{text}");
        assert!(
            !text.contains("suite-secret") && !text.contains("ticket-value"),
            "{text}"
        );
    }
}
