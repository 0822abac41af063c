//! What a tenant's status says about the channel events from DingTalk arrive
//! by: the `EventsConnected` condition and `status.events`, from what the
//! runner's connection observed. A tenant the runner does not listen for
//! (`--events off`, public, suspended, not bound) has neither.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::{EventDelivery, EventsStatus, reason};

/// What the connection serving a tenant observed (the app's connection:
/// every Tenant of an app shares it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChannelFacts {
    pub delivery: EventDelivery,
    /// Stream: since when the current connection is open (`None`: not
    /// connected). HTTP: since when the receiver takes the tenant's pushes
    /// (`None`: it cannot, `last_error` says why).
    pub connected_since: Option<Timestamp>,
    /// When the last new event arrived.
    pub last_event_at: Option<Timestamp>,
    pub events_received: u64,
    pub duplicates_dropped: u64,
    pub reconnects: u64,
    /// Failed attempts to open a connection.
    pub open_failures: u64,
    /// The last failure, already redacted.
    pub last_error: Option<String>,
}

/// The `EventsConnected` condition, as [`describe`] words it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connected {
    pub status: bool,
    pub reason: &'static str,
    pub message: String,
}

/// `status.events` and the `EventsConnected` condition for `facts`.
pub fn describe(facts: &ChannelFacts) -> (EventsStatus, Connected) {
    let events = EventsStatus {
        mode: facts.delivery,
        connected_since: facts.connected_since.map(Time),
        last_event_time: facts.last_event_at.map(Time),
        events_received: facts.events_received,
        duplicates_dropped: facts.duplicates_dropped,
        reconnects: facts.reconnects,
    };
    if facts.delivery == EventDelivery::Http {
        return (events, http(facts));
    }
    let connected = match (&facts.connected_since, &facts.last_error) {
        (Some(since), _) => Connected {
            status: true,
            reason: reason::CONNECTED,
            message: format!(
                "The Stream connection to DingTalk is open since {since}: changes reach the directory within seconds."
            ),
        },
        (None, None) => Connected {
            status: false,
            reason: reason::CONNECTING,
            message: "Opening the Stream connection to DingTalk.".to_string(),
        },
        (None, Some(error)) => Connected {
            status: false,
            reason: reason::DISCONNECTED,
            message: format!(
                "No Stream connection to DingTalk ({} failed attempts to open one; last: {error}). It is retried with backoff; meanwhile changes reach the directory at the periodic sync.",
                facts.open_failures
            ),
        },
    };
    (events, connected)
}

/// HTTP push: no connection, a receiver that takes the tenant's pushes.
fn http(facts: &ChannelFacts) -> Connected {
    match (&facts.connected_since, &facts.last_error) {
        (Some(since), _) => Connected {
            status: true,
            reason: reason::RECEIVING,
            message: format!(
                "DingTalk's HTTP pushes to this tenant's URL are taken since {since}: changes reach the directory within seconds."
            ),
        },
        (None, error) => Connected {
            status: false,
            reason: reason::RECEIVER_UNAVAILABLE,
            message: format!(
                "HTTP pushes cannot be taken: {}. Meanwhile changes reach the directory at the periodic sync.",
                error.as_deref().unwrap_or("the receiver is not running")
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn an_open_connection_is_connected_with_its_counts() {
        let facts = ChannelFacts {
            connected_since: Some(t(100)),
            last_event_at: Some(t(150)),
            events_received: 7,
            duplicates_dropped: 2,
            reconnects: 1,
            ..Default::default()
        };
        let (events, c) = describe(&facts);
        assert!(c.status);
        assert_eq!(c.reason, "Connected");
        assert_eq!(events.connected_since, Some(Time(t(100))));
        assert_eq!(events.last_event_time, Some(Time(t(150))));
        assert_eq!(
            (
                events.events_received,
                events.duplicates_dropped,
                events.reconnects
            ),
            (7, 2, 1)
        );
        assert_eq!(events.mode, EventDelivery::Stream);
    }

    #[test]
    fn a_connection_not_yet_open_is_connecting() {
        let (events, c) = describe(&ChannelFacts::default());
        assert!(!c.status);
        assert_eq!(c.reason, "Connecting");
        assert_eq!(events.connected_since, None);
    }

    #[test]
    fn a_lost_connection_says_why_and_that_the_periodic_sync_remains() {
        let facts = ChannelFacts {
            open_failures: 3,
            last_error: Some("connections/open refused: authFailed".into()),
            events_received: 4,
            ..Default::default()
        };
        let (events, c) = describe(&facts);
        assert!(!c.status);
        assert_eq!(c.reason, "Disconnected");
        assert!(c.message.contains("authFailed"), "{}", c.message);
        assert!(c.message.contains("periodic sync"), "{}", c.message);
        assert_eq!(events.events_received, 4, "counts survive a drop");
    }

    #[test]
    fn http_push_is_receiving_or_says_why_not() {
        let (events, c) = describe(&ChannelFacts {
            delivery: EventDelivery::Http,
            connected_since: Some(t(5)),
            ..Default::default()
        });
        assert_eq!((c.status, c.reason), (true, "Receiving"));
        assert_eq!(events.mode, EventDelivery::Http);
        let (_, c) = describe(&ChannelFacts {
            delivery: EventDelivery::Http,
            last_error: Some("no --events-addr".into()),
            ..Default::default()
        });
        assert_eq!((c.status, c.reason), (false, "ReceiverUnavailable"));
        assert!(c.message.contains("--events-addr"), "{}", c.message);
    }
}
