//! DingTalk's Stream mode, decided purely: the frames DingTalk sends over the
//! WebSocket, read leniently into [`Frame`]; the answer to each
//! ([`decide`]: ack an event, echo a ping, reconnect on `disconnect`);
//! de-duplication by `eventId` in a bounded memory ([`Seen`]); the reconnect
//! backoff ([`Backoff`], the random number passed in); and whether a
//! connection gap needs a full sync ([`gap_needs_full_sync`]). The shell
//! owns the connection and the clock. Facts and sources:
//! `docs/events.md` and DingTalk's Stream protocol.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

/// The only EVENT topic DingTalk accepts in `connections/open`: the event
/// types themselves are ticked in the developer console.
pub const EVENT_TOPIC: &str = "*";

/// The `subscriptions` of a `connections/open` request: every event, no
/// callback.
pub fn subscriptions() -> Value {
    json!([{ "type": "EVENT", "topic": EVENT_TOPIC }])
}

/// Why a frame could not be read. The shell logs it and goes on: a frame
/// that cannot be read cannot be answered either.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("a Stream frame must be a JSON object")]
    NotAnObject,
    #[error("a Stream frame has no `type`")]
    MissingType,
    #[error("unknown Stream frame type {0:?}")]
    UnknownType(String),
    #[error("a Stream {0} frame has no `headers.messageId`, so it cannot be answered")]
    MissingMessageId(&'static str),
}

/// One EVENT frame: its headers, and its `data` parsed from the JSON string
/// DingTalk sends.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// The frame's id; the ack carries it back.
    pub message_id: String,
    /// The event's id, the same on every redelivery (`None` when absent: such
    /// an event is never de-duplicated).
    pub event_id: Option<String>,
    /// `user_leave_org`, `org_dept_create`, …, as sent.
    pub event_type: Option<String>,
    /// When DingTalk produced the event (`eventBornTime`, milliseconds).
    pub born_at: Option<Timestamp>,
    /// The organization the event is about (`eventCorpId`).
    pub corp_id: Option<String>,
    pub unified_app_id: Option<String>,
    pub topic: Option<String>,
    /// The payload: the parsed `data` string, the value itself when DingTalk
    /// sent JSON rather than a string, the raw string when it does not parse,
    /// `Null` when absent.
    pub data: Value,
}

/// A frame from DingTalk's Stream gateway.
#[derive(Clone, Debug, PartialEq)]
pub enum Frame {
    /// An event (`type: EVENT`).
    Event(Event),
    /// SYSTEM `ping`: answered by echoing `data`.
    Ping { message_id: String, data: Value },
    /// SYSTEM `disconnect`: DingTalk closes this connection about 10 s later.
    Disconnect { reason: Option<String> },
    /// A SYSTEM topic dingbind does not know (`CONNECTED`, `KEEPALIVE`, …).
    UnknownSystem { topic: Option<String> },
    /// A CALLBACK frame (bot messages, cards): dingbind subscribes to none.
    Callback { topic: Option<String> },
}

/// A header as a string: DingTalk sends strings, numbers are taken as their
/// decimal text, anything else (or an empty string) as absent.
fn header(headers: Option<&serde_json::Map<String, Value>>, name: &str) -> Option<String> {
    match headers?.get(name)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `eventBornTime` in milliseconds, as a string or a number.
fn born_at(headers: Option<&serde_json::Map<String, Value>>) -> Option<Timestamp> {
    let ms: i64 = header(headers, "eventBornTime")?.trim().parse().ok()?;
    Timestamp::from_millisecond(ms).ok()
}

/// `data` as JSON: DingTalk sends a string holding JSON.
fn payload(data: Option<&Value>) -> Value {
    match data {
        None => Value::Null,
        Some(Value::String(s)) => {
            serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone()))
        }
        Some(other) => other.clone(),
    }
}

/// Reads one frame. Lenient: the frame type and SYSTEM topics are matched
/// without regard to case, headers may be missing (only an event's and a
/// ping's `messageId` is required, since the answer carries it), header
/// values may be strings or numbers.
pub fn parse_frame(frame: &Value) -> Result<Frame, FrameError> {
    let object = frame.as_object().ok_or(FrameError::NotAnObject)?;
    let kind = object
        .get("type")
        .and_then(Value::as_str)
        .ok_or(FrameError::MissingType)?;
    let headers = object.get("headers").and_then(Value::as_object);
    let topic = header(headers, "topic");
    match kind.to_ascii_uppercase().as_str() {
        "EVENT" => Ok(Frame::Event(Event {
            message_id: header(headers, "messageId")
                .ok_or(FrameError::MissingMessageId("EVENT"))?,
            event_id: header(headers, "eventId"),
            event_type: header(headers, "eventType"),
            born_at: born_at(headers),
            corp_id: header(headers, "eventCorpId"),
            unified_app_id: header(headers, "eventUnifiedAppId"),
            topic,
            data: payload(object.get("data")),
        })),
        "SYSTEM" => {
            let lower = topic.as_deref().map(str::to_ascii_lowercase);
            match lower.as_deref() {
                Some("ping") => Ok(Frame::Ping {
                    message_id: header(headers, "messageId")
                        .ok_or(FrameError::MissingMessageId("SYSTEM ping"))?,
                    data: object.get("data").cloned().unwrap_or(Value::Null),
                }),
                Some("disconnect") => Ok(Frame::Disconnect {
                    reason: payload(object.get("data"))
                        .get("reason")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                }),
                _ => Ok(Frame::UnknownSystem { topic }),
            }
        }
        "CALLBACK" => Ok(Frame::Callback { topic }),
        other => Err(FrameError::UnknownType(other.to_string())),
    }
}

/// What to do with a frame.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Send `ack`, then hand `event` on (`None`: a redelivery already seen,
    /// acked again and dropped).
    Ack { ack: Value, event: Option<Event> },
    /// Send `pong`.
    Pong(Value),
    /// DingTalk is about to close this connection: open a new one first,
    /// then drop this one. Nothing is sent back (DingTalk expects no answer).
    Reconnect { reason: Option<String> },
    /// Nothing to send, nothing to do.
    Ignore,
}

/// The answer frame to the frame `message_id`: code 200 and `data` (a JSON
/// string, as DingTalk's SDKs send it).
fn answer(message_id: &str, data: Value) -> Value {
    json!({
        "code": 200,
        "headers": { "messageId": message_id, "contentType": "application/json" },
        "message": "OK",
        "data": data,
    })
}

/// The ack of an event: status `SUCCESS`, as DingTalk's protocol page shows.
pub fn event_ack(message_id: &str) -> Value {
    answer(
        message_id,
        Value::String(r#"{"status":"SUCCESS","message":"success"}"#.to_string()),
    )
}

/// Decides the answer to `frame`. Every event is acked, a duplicate too (its
/// earlier ack may have been lost); only an event seen for the first time
/// (by `eventId`, in `seen`, at `now`) is handed on.
pub fn decide(frame: Frame, seen: &mut Seen, now: Timestamp) -> Action {
    match frame {
        Frame::Event(event) => {
            let ack = event_ack(&event.message_id);
            let first = match &event.event_id {
                Some(id) => seen.first_time(id, now),
                None => true,
            };
            Action::Ack {
                ack,
                event: first.then_some(event),
            }
        }
        Frame::Ping { message_id, data } => Action::Pong(answer(&message_id, data)),
        Frame::Disconnect { reason } => Action::Reconnect { reason },
        Frame::UnknownSystem { .. } | Frame::Callback { .. } => Action::Ignore,
    }
}

/// How long an `eventId` is remembered: DingTalk redelivers within about a
/// minute; ten leave a wide margin.
pub const SEEN_WINDOW: SignedDuration = SignedDuration::from_mins(10);

/// How many `eventId`s are remembered at most (the oldest goes first).
pub const SEEN_CAPACITY: usize = 10_000;

/// The `eventId`s seen lately, within a window of time and a number of ids:
/// memory stays bounded whatever DingTalk sends. An id forgotten and seen
/// again passes as new, which costs one re-read, never a wrong directory.
#[derive(Clone, Debug)]
pub struct Seen {
    window: SignedDuration,
    capacity: usize,
    order: VecDeque<(Timestamp, String)>,
    ids: HashSet<String>,
}

impl Default for Seen {
    fn default() -> Self {
        Self::new(SEEN_WINDOW, SEEN_CAPACITY)
    }
}

impl Seen {
    /// An empty memory of `capacity` ids (at least one) over `window`.
    pub fn new(window: SignedDuration, capacity: usize) -> Self {
        Self {
            window,
            capacity: capacity.max(1),
            order: VecDeque::new(),
            ids: HashSet::new(),
        }
    }

    /// Whether `event_id` is new at `now`; it is remembered from now on.
    pub fn first_time(&mut self, event_id: &str, now: Timestamp) -> bool {
        self.forget_before(now);
        if self.ids.contains(event_id) {
            return false;
        }
        while self.order.len() >= self.capacity {
            self.pop_oldest();
        }
        self.order.push_back((now, event_id.to_string()));
        self.ids.insert(event_id.to_string());
        true
    }

    /// Ids remembered.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Forgets the ids seen more than the window before `now`.
    fn forget_before(&mut self, now: Timestamp) {
        while let Some((at, _)) = self.order.front() {
            if now.duration_since(*at) <= self.window {
                break;
            }
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) {
        if let Some((_, id)) = self.order.pop_front() {
            self.ids.remove(&id);
        }
    }
}

/// The first reconnect delay.
pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// The longest reconnect delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// How long a connection must have lasted for the next failure to start
/// again from [`BACKOFF_MIN`].
pub const BACKOFF_STABLE: Duration = Duration::from_secs(30);

/// The reconnect backoff of one connection: capped exponential with jitter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Backoff {
    /// Failures since the last stable connection.
    attempts: u32,
}

impl Backoff {
    /// The delay before the next attempt, and counts the failure. `random`
    /// is a number in `[0, 1)` from the shell (out of range is clamped):
    /// the delay is `min(1 s × 2^attempts, 60 s)` less up to 20 % of it,
    /// never under 1 s, so connections failing together spread out.
    pub fn next_delay(&mut self, random: f64) -> Duration {
        let delay = reconnect_delay(self.attempts, random);
        self.attempts = self.attempts.saturating_add(1);
        delay
    }

    /// A connection opened and lasted `up_for`: once it lasted
    /// [`BACKOFF_STABLE`], the next failure starts from the shortest delay.
    pub fn connected_for(&mut self, up_for: Duration) {
        if up_for >= BACKOFF_STABLE {
            self.attempts = 0;
        }
    }

    /// Failures counted since the last stable connection.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }
}

/// The delay before attempt `attempt` (0 for the first retry); see
/// [`Backoff::next_delay`].
pub fn reconnect_delay(attempt: u32, random: f64) -> Duration {
    let random = if random.is_finite() {
        random.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let base = BACKOFF_MIN
        .checked_mul(2u32.saturating_pow(attempt.min(31)))
        .unwrap_or(BACKOFF_MAX)
        .min(BACKOFF_MAX);
    base.mul_f64(1.0 - 0.2 * random).max(BACKOFF_MIN)
}

/// How long DingTalk keeps pushing an event it could not deliver, as
/// dingbind assumes it (DingTalk does not publish it): after a longer gap,
/// events may be lost.
pub const REDELIVERY_WINDOW: SignedDuration = SignedDuration::from_mins(5);

/// Whether the connection opened at `connected_at` needs a full sync of the
/// app's tenants: the previous connection was last known alive (a frame, a
/// pong) at `last_alive`, more than [`REDELIVERY_WINDOW`] earlier, or there
/// was none (`None`: dingbind just started, or just became the leader, and
/// cannot know what it missed).
pub fn gap_needs_full_sync(last_alive: Option<Timestamp>, connected_at: Timestamp) -> bool {
    match last_alive {
        None => true,
        Some(alive) => connected_at.duration_since(alive) > REDELIVERY_WINDOW,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).expect("a valid time")
    }

    /// The event frame of DingTalk's protocol page.
    fn event_frame() -> Value {
        json!({
            "specVersion": "1.0",
            "type": "EVENT",
            "headers": {
                "appId": "app-1",
                "topic": "*",
                "contentType": "application/json",
                "messageId": "msg-1",
                "time": "1690362102194",
                "eventId": "ev-1",
                "eventBornTime": "1690362102194",
                "eventCorpId": "ding-corp",
                "eventType": "user_leave_org",
                "eventUnifiedAppId": "unified-1"
            },
            "data": "{\"timeStamp\":\"1690362102194\",\"userId\":[\"u1\"]}"
        })
    }

    #[test]
    fn an_event_frame_is_read_with_its_headers_and_payload() {
        let Ok(Frame::Event(e)) = parse_frame(&event_frame()) else {
            panic!("an event");
        };
        assert_eq!(e.message_id, "msg-1");
        assert_eq!(e.event_id.as_deref(), Some("ev-1"));
        assert_eq!(e.event_type.as_deref(), Some("user_leave_org"));
        assert_eq!(e.corp_id.as_deref(), Some("ding-corp"));
        assert_eq!(e.unified_app_id.as_deref(), Some("unified-1"));
        assert_eq!(e.topic.as_deref(), Some("*"));
        assert_eq!(
            e.born_at,
            Some(Timestamp::from_millisecond(1_690_362_102_194).expect("valid"))
        );
        assert_eq!(e.data["userId"], json!(["u1"]));
    }

    #[test]
    fn event_frames_are_read_leniently() {
        let mut f = event_frame();
        f["type"] = json!("event");
        f["headers"]["eventBornTime"] = json!(1_690_362_102_194_i64);
        f["headers"]["eventId"] = json!("");
        f["data"] = json!({"deptId": [5]});
        let Ok(Frame::Event(e)) = parse_frame(&f) else {
            panic!("an event");
        };
        assert!(e.born_at.is_some(), "a number is a time too");
        assert_eq!(e.event_id, None, "an empty id is no id");
        assert_eq!(e.data["deptId"], json!([5]), "data sent as JSON itself");
        f["data"] = json!("not json");
        let Ok(Frame::Event(e)) = parse_frame(&f) else {
            panic!("an event");
        };
        assert_eq!(e.data, json!("not json"));
        f.as_object_mut().expect("an object").remove("data");
        let Ok(Frame::Event(e)) = parse_frame(&f) else {
            panic!("an event");
        };
        assert_eq!(e.data, Value::Null);
    }

    #[test]
    fn frames_that_cannot_be_answered_are_errors() {
        assert_eq!(parse_frame(&json!([])), Err(FrameError::NotAnObject));
        assert_eq!(parse_frame(&json!({})), Err(FrameError::MissingType));
        assert_eq!(
            parse_frame(&json!({"type": "GOSSIP"})),
            Err(FrameError::UnknownType("GOSSIP".into()))
        );
        let mut f = event_frame();
        f["headers"]
            .as_object_mut()
            .expect("headers")
            .remove("messageId");
        assert_eq!(parse_frame(&f), Err(FrameError::MissingMessageId("EVENT")));
        assert_eq!(
            parse_frame(&json!({"type": "SYSTEM", "headers": {"topic": "ping"}})),
            Err(FrameError::MissingMessageId("SYSTEM ping"))
        );
    }

    #[test]
    fn system_and_callback_frames() {
        let ping = json!({
            "specVersion": "1.0", "type": "SYSTEM",
            "headers": {"topic": "ping", "messageId": "m-9", "contentType": "application/json", "time": "1"},
            "data": "{\"opaque\":\"abc\"}"
        });
        assert_eq!(
            parse_frame(&ping),
            Ok(Frame::Ping {
                message_id: "m-9".into(),
                data: json!("{\"opaque\":\"abc\"}")
            })
        );
        let disconnect = json!({
            "type": "SYSTEM", "headers": {"topic": "disconnect", "messageId": "m-10"},
            "data": "{\"reason\":\"persistent connection is timeout\"}"
        });
        assert_eq!(
            parse_frame(&disconnect),
            Ok(Frame::Disconnect {
                reason: Some("persistent connection is timeout".into())
            })
        );
        assert_eq!(
            parse_frame(&json!({"type": "SYSTEM", "headers": {"topic": "KEEPALIVE"}})),
            Ok(Frame::UnknownSystem {
                topic: Some("KEEPALIVE".into())
            })
        );
        assert_eq!(
            parse_frame(
                &json!({"type": "CALLBACK", "headers": {"topic": "/v1.0/im/bot/messages/get"}})
            ),
            Ok(Frame::Callback {
                topic: Some("/v1.0/im/bot/messages/get".into())
            })
        );
    }

    #[test]
    fn an_event_is_acked_with_its_message_id_and_success() {
        let frame = parse_frame(&event_frame()).expect("a frame");
        let Action::Ack { ack, event } = decide(frame, &mut Seen::default(), at(0)) else {
            panic!("an ack");
        };
        assert!(event.is_some());
        assert_eq!(ack["code"], 200);
        assert_eq!(ack["headers"]["messageId"], "msg-1");
        assert_eq!(ack["headers"]["contentType"], "application/json");
        let data: Value =
            serde_json::from_str(ack["data"].as_str().expect("a string")).expect("JSON");
        assert_eq!(data["status"], "SUCCESS");
    }

    #[test]
    fn a_redelivered_event_is_acked_again_and_dropped() {
        let mut seen = Seen::default();
        let frame = parse_frame(&event_frame()).expect("a frame");
        assert!(matches!(
            decide(frame.clone(), &mut seen, at(0)),
            Action::Ack { event: Some(_), .. }
        ));
        assert!(matches!(
            decide(frame, &mut seen, at(20)),
            Action::Ack { event: None, .. }
        ));
        // Without an eventId nothing can be recognised: handed on each time.
        let mut f = event_frame();
        f["headers"]
            .as_object_mut()
            .expect("headers")
            .remove("eventId");
        let frame = parse_frame(&f).expect("a frame");
        for t in 0..2 {
            assert!(matches!(
                decide(frame.clone(), &mut seen, at(t)),
                Action::Ack { event: Some(_), .. }
            ));
        }
    }

    #[test]
    fn a_ping_is_echoed_and_a_disconnect_reconnects() {
        let mut seen = Seen::default();
        let pong = decide(
            Frame::Ping {
                message_id: "m".into(),
                data: json!("{\"opaque\":\"x\"}"),
            },
            &mut seen,
            at(0),
        );
        let Action::Pong(pong) = pong else {
            panic!("a pong");
        };
        assert_eq!(pong["headers"]["messageId"], "m");
        assert_eq!(pong["data"], json!("{\"opaque\":\"x\"}"));
        assert_eq!(
            decide(Frame::Disconnect { reason: None }, &mut seen, at(0)),
            Action::Reconnect { reason: None }
        );
        assert_eq!(
            decide(Frame::UnknownSystem { topic: None }, &mut seen, at(0)),
            Action::Ignore
        );
        assert_eq!(
            decide(Frame::Callback { topic: None }, &mut seen, at(0)),
            Action::Ignore
        );
    }

    #[test]
    fn seen_forgets_after_the_window() {
        let mut seen = Seen::new(SignedDuration::from_mins(10), 100);
        assert!(seen.first_time("a", at(0)));
        assert!(!seen.first_time("a", at(600)), "ten minutes: still known");
        assert!(seen.first_time("b", at(601)));
        assert!(seen.first_time("a", at(601)), "forgotten after the window");
        assert_eq!(seen.len(), 2);
    }

    #[test]
    fn seen_holds_at_most_its_capacity() {
        let mut seen = Seen::new(SignedDuration::from_mins(10), 3);
        for id in ["a", "b", "c", "d"] {
            assert!(seen.first_time(id, at(0)));
        }
        assert_eq!(seen.len(), 3);
        assert!(seen.first_time("a", at(0)), "the oldest went first");
        assert!(!seen.first_time("d", at(0)));
        assert_eq!(seen.len(), 3);
    }

    #[test]
    fn the_backoff_doubles_up_to_a_minute_with_jitter() {
        let secs = |attempt, r| reconnect_delay(attempt, r).as_secs_f64();
        assert_eq!(secs(0, 0.0), 1.0);
        assert_eq!(secs(0, 0.99), 1.0, "never under a second");
        assert_eq!(secs(1, 0.0), 2.0);
        assert_eq!(secs(3, 0.0), 8.0);
        assert_eq!(secs(6, 0.0), 60.0, "64 s is capped");
        assert_eq!(secs(1_000, 0.0), 60.0);
        assert!(
            (secs(6, 0.5) - 54.0).abs() < 1e-9,
            "jitter takes up to 20 %"
        );
        assert!((secs(6, 7.0) - 48.0).abs() < 1e-9, "random clamped to 1");
        assert_eq!(secs(6, f64::NAN), 60.0);
        let mut b = Backoff::default();
        let delays: Vec<u64> = (0..8).map(|_| b.next_delay(0.0).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60]);
        b.connected_for(Duration::from_secs(5));
        assert_eq!(b.attempts(), 8, "a short connection does not reset");
        b.connected_for(BACKOFF_STABLE);
        assert_eq!(b.next_delay(0.0), BACKOFF_MIN);
    }

    #[test]
    fn a_gap_longer_than_the_redelivery_window_needs_a_full_sync() {
        assert!(gap_needs_full_sync(None, at(0)), "nothing known before");
        assert!(!gap_needs_full_sync(Some(at(0)), at(300)));
        assert!(gap_needs_full_sync(Some(at(0)), at(301)));
        assert!(
            !gap_needs_full_sync(Some(at(10)), at(0)),
            "a clock gone back is no gap"
        );
    }

    #[test]
    fn the_subscription_is_every_event() {
        assert_eq!(subscriptions(), json!([{"type": "EVENT", "topic": "*"}]));
    }
}
