//! The frames the simulator's Stream gateway sends, in DingTalk's shapes
//! (`specVersion`, `type`, `headers`, `data` as a JSON string), and how it
//! reads the client's answers. `core::events::parse_frame` reads what is
//! built here; the unit tests check that it does.

use serde_json::{Value, json};

/// The headers of one event delivery.
#[derive(Clone, Debug, PartialEq)]
pub struct EventHeaders<'a> {
    /// This delivery's id (a redelivery gets a new one).
    pub message_id: &'a str,
    /// The event's id, the same on every delivery.
    pub event_id: &'a str,
    pub event_type: &'a str,
    /// When the event was produced, in milliseconds since the epoch.
    pub born_ms: i64,
    pub corp_id: &'a str,
    pub app_key: &'a str,
    pub unified_app_id: &'a str,
}

/// An EVENT frame carrying `data` (sent as a JSON string, as DingTalk does).
pub fn event(h: &EventHeaders<'_>, data: &Value, now_ms: i64) -> Value {
    json!({
        "specVersion": "1.0",
        "type": "EVENT",
        "headers": {
            "appId": h.app_key,
            "topic": "*",
            "contentType": "application/json",
            "messageId": h.message_id,
            "time": now_ms.to_string(),
            "eventId": h.event_id,
            "eventBornTime": h.born_ms.to_string(),
            "eventCorpId": h.corp_id,
            "eventType": h.event_type,
            "eventUnifiedAppId": h.unified_app_id,
        },
        "data": data.to_string(),
    })
}

/// A SYSTEM frame of `topic` with `data` (a JSON string).
fn system(topic: &str, message_id: &str, data: &Value, now_ms: i64) -> Value {
    json!({
        "specVersion": "1.0",
        "type": "SYSTEM",
        "headers": {
            "topic": topic,
            "messageId": message_id,
            "contentType": "application/json",
            "time": now_ms.to_string(),
        },
        "data": data.to_string(),
    })
}

/// SYSTEM `ping` with an `opaque` value the answer must echo.
pub fn ping(message_id: &str, opaque: &str, now_ms: i64) -> Value {
    system("ping", message_id, &json!({ "opaque": opaque }), now_ms)
}

/// SYSTEM `disconnect`: the connection closes some seconds later.
pub fn disconnect(message_id: &str, reason: &str, now_ms: i64) -> Value {
    system(
        "disconnect",
        message_id,
        &json!({ "reason": reason }),
        now_ms,
    )
}

/// A client's answer to one frame.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    /// The frame answered.
    pub message_id: String,
    /// `code` 200 (an ack, or a pong).
    pub ok: bool,
    /// `data.status` when `data` holds one (`SUCCESS`, `LATER`), upper-cased.
    pub status: Option<String>,
    /// `data` as sent (a JSON string for an ack, the echoed ping data).
    pub data: Value,
}

/// Reads an answer: an object with `headers.messageId`. Lenient like the
/// client's reading: `code` may be a number or a numeric string; `data` may
/// be a JSON string or JSON.
pub fn read_answer(text: &str) -> Option<Answer> {
    let frame: Value = serde_json::from_str(text).ok()?;
    let message_id = frame
        .get("headers")?
        .get("messageId")?
        .as_str()?
        .to_string();
    let code = match frame.get("code") {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    };
    let data = frame.get("data").cloned().unwrap_or(Value::Null);
    let parsed = match &data {
        Value::String(s) => serde_json::from_str(s).unwrap_or(Value::Null),
        other => other.clone(),
    };
    let status = parsed
        .get("status")
        .and_then(Value::as_str)
        .map(str::to_ascii_uppercase);
    Some(Answer {
        message_id,
        ok: code == Some(200),
        status,
        data,
    })
}

/// Whether an answer's `data` echoes a ping's `opaque` value.
pub fn echoes(answer: &Answer, opaque: &str) -> bool {
    let parsed = match &answer.data {
        Value::String(s) => serde_json::from_str(s).unwrap_or(Value::Null),
        other => other.clone(),
    };
    parsed.get("opaque").and_then(Value::as_str) == Some(opaque)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::events::{Action, Frame, Seen, decide, parse_frame};

    fn headers() -> EventHeaders<'static> {
        EventHeaders {
            message_id: "m-1",
            event_id: "e-1",
            event_type: "user_leave_org",
            born_ms: 1_690_362_102_194,
            corp_id: "dingacme",
            app_key: "acme-key",
            unified_app_id: "u-1",
        }
    }

    #[test]
    fn the_core_reads_the_event_frames_the_gateway_sends() {
        let frame = event(&headers(), &json!({"userId": ["u1"]}), 1);
        let Ok(Frame::Event(e)) = parse_frame(&frame) else {
            panic!("an event: {frame}");
        };
        assert_eq!(e.message_id, "m-1");
        assert_eq!(e.event_id.as_deref(), Some("e-1"));
        assert_eq!(e.event_type.as_deref(), Some("user_leave_org"));
        assert_eq!(e.corp_id.as_deref(), Some("dingacme"));
        assert_eq!(e.data["userId"], json!(["u1"]));
        assert!(e.born_at.is_some());
    }

    #[test]
    fn the_core_reads_ping_and_disconnect_and_its_answers_are_read_back() {
        let now = jiff::Timestamp::UNIX_EPOCH;
        let Ok(frame) = parse_frame(&ping("m-2", "abc", 1)) else {
            panic!("a ping");
        };
        let Action::Pong(pong) = decide(frame, &mut Seen::default(), now) else {
            panic!("a pong");
        };
        let answer = read_answer(&pong.to_string()).expect("an answer");
        assert_eq!(answer.message_id, "m-2");
        assert!(answer.ok);
        assert!(echoes(&answer, "abc"));
        assert_eq!(
            parse_frame(&disconnect("m-3", "bye", 1)),
            Ok(Frame::Disconnect {
                reason: Some("bye".into())
            })
        );
        let Ok(frame) = parse_frame(&event(&headers(), &json!({}), 1)) else {
            panic!("an event");
        };
        let Action::Ack { ack, .. } = decide(frame, &mut Seen::default(), now) else {
            panic!("an ack");
        };
        let answer = read_answer(&ack.to_string()).expect("an answer");
        assert_eq!(answer.status.as_deref(), Some("SUCCESS"));
        assert!(answer.ok);
        assert_eq!(read_answer("not json"), None);
        assert_eq!(read_answer(r#"{"code":200}"#), None);
    }
}
