//! What one app's Stream connection observed, for status and metrics:
//! shared between the connection task (which writes) and readers, behind an
//! `Arc`.

use std::sync::{Mutex, MutexGuard};

use jiff::Timestamp;

/// The connection's state and counters at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamStatus {
    /// Since when the current connection is open (`None`: not connected).
    pub connected_since: Option<Timestamp>,
    /// When a frame last arrived (any frame, a WebSocket pong too).
    pub last_alive: Option<Timestamp>,
    /// When the last new event arrived.
    pub last_event_at: Option<Timestamp>,
    /// New events handed on.
    pub events_received: u64,
    /// Redeliveries of events already seen: acked and dropped.
    pub duplicates_dropped: u64,
    /// Tickets obtained from `connections/open`.
    pub tickets: u64,
    /// WebSocket connections opened.
    pub connections: u64,
    /// Connections opened after the first (after a drop or a SYSTEM disconnect).
    pub reconnects: u64,
    /// Failed attempts to open a connection (ticket or WebSocket).
    pub open_failures: u64,
    /// The last failure, redacted.
    pub last_error: Option<String>,
}

/// [`StreamStatus`] behind a lock (never held across an await).
#[derive(Debug, Default)]
pub struct StreamStats {
    status: Mutex<StreamStatus>,
}

impl StreamStats {
    fn lock(&self) -> MutexGuard<'_, StreamStatus> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of the current state.
    pub fn snapshot(&self) -> StreamStatus {
        self.lock().clone()
    }

    /// When the last connection was last known alive (before `connected`
    /// moves it forward).
    pub(crate) fn last_alive(&self) -> Option<Timestamp> {
        self.lock().last_alive
    }

    pub(crate) fn ticket(&self) {
        self.lock().tickets += 1;
    }

    pub(crate) fn open_failed(&self, error: String) {
        let mut s = self.lock();
        s.open_failures += 1;
        s.last_error = Some(error);
    }

    /// A connection opened; `true` when it is a reconnect.
    pub(crate) fn connected(&self, now: Timestamp) -> bool {
        let mut s = self.lock();
        let reconnect = s.connections > 0;
        if reconnect {
            s.reconnects += 1;
        }
        s.connections += 1;
        s.connected_since = Some(now);
        s.last_alive = Some(now);
        reconnect
    }

    pub(crate) fn alive(&self, now: Timestamp) {
        self.lock().last_alive = Some(now);
    }

    pub(crate) fn event(&self, now: Timestamp) {
        let mut s = self.lock();
        s.events_received += 1;
        s.last_event_at = Some(now);
    }

    pub(crate) fn duplicate(&self) {
        self.lock().duplicates_dropped += 1;
    }

    /// The connection ended (`error`: why, when it failed).
    pub(crate) fn disconnected(&self, error: Option<String>) {
        let mut s = self.lock();
        s.connected_since = None;
        if error.is_some() {
            s.last_error = error;
        }
    }
}
