//! Events from DingTalk, the shell around `core::events`: Stream mode, one
//! long-lived connection per app (`stream.rs`), a ticket asked for before
//! every connect (`open.rs`), what it observed (`stats.rs`), what can go
//! wrong (`error.rs`), and the routing of what the connections receive to
//! the tenants of each app (`hub.rs`). Every decision (the answer to a frame, de-duplication,
//! the backoff, the gap that needs a full sync) is `core::events`'s; this
//! module owns the sockets and the clock. What it hands on are
//! [`StreamEvent`]s on a `tokio::sync::mpsc` channel; acting on them is the
//! reconciler's. See `docs/events.md`.

pub mod error;
pub mod http;
pub mod hub;
pub mod open;
pub mod stats;
pub mod stream;

use std::time::Duration;

use crate::core::events::Event;
use crate::dingtalk::{API_BASE_URL, Secret};

/// How a runner (`dingbind controller`, `dingbind dev`) hears of changes in
/// DingTalk.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EventsMode {
    /// Stream mode: outbound connections to DingTalk's gateway.
    #[default]
    Stream,
    /// No events: only the periodic and requested syncs.
    Off,
}

pub use error::StreamError;
pub use hub::EventsHub;
pub use stats::{StreamStats, StreamStatus};
pub use stream::{StreamHandle, spawn};

/// Settings of the Stream client. `Default` is production DingTalk.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamConfig {
    /// Base URL of `connections/open`: `https://api.dingtalk.com`, or a
    /// simulator's URL. The WebSocket goes wherever its answer points.
    pub base_url: String,
    /// The `ua` sent with `connections/open`.
    pub ua: String,
    /// Deadline of `connections/open` and of the WebSocket handshake.
    pub open_timeout: Duration,
    /// A WebSocket ping is sent after this long without a frame.
    pub idle_ping: Duration,
    /// Nothing received this long after that ping: the connection is dead.
    pub pong_timeout: Duration,
    /// The largest frame accepted from DingTalk.
    pub max_frame_bytes: usize,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            base_url: API_BASE_URL.to_owned(),
            ua: concat!("dingbind/", env!("CARGO_PKG_VERSION")).to_owned(),
            open_timeout: Duration::from_secs(5),
            idle_ping: Duration::from_secs(60),
            pong_timeout: Duration::from_secs(10),
            max_frame_bytes: 1 << 20,
        }
    }
}

impl StreamConfig {
    /// Production settings with another base URL (a simulator, a proxy).
    pub fn with_base_url(url: &str) -> Self {
        Self {
            base_url: url.trim_end_matches('/').to_owned(),
            ..Self::default()
        }
    }
}

/// The credentials of one internal app: `clientId` is its appKey.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamApp {
    pub app_key: String,
    pub app_secret: Secret,
}

impl StreamApp {
    pub fn new(app_key: impl Into<String>, app_secret: impl Into<Secret>) -> Self {
        Self {
            app_key: app_key.into(),
            app_secret: app_secret.into(),
        }
    }
}

/// What a connection hands on, with the app it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamEvent {
    pub app_key: String,
    pub item: StreamItem,
}

/// One thing a connection observed.
#[derive(Clone, Debug, PartialEq)]
pub enum StreamItem {
    /// A connection opened. `needs_full_sync`: the previous one was last
    /// alive longer ago than DingTalk redelivers, or there was none
    /// (`core::events::gap_needs_full_sync`): events may have been missed.
    /// `reconnect`: an earlier connection of the app was open before.
    Connected {
        needs_full_sync: bool,
        reconnect: bool,
    },
    /// The connection was lost, or none could be opened (sent once until
    /// the next [`StreamItem::Connected`]).
    Disconnected,
    /// An event seen for the first time (already acked).
    Event(Event),
}
