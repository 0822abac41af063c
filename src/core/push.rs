//! What a decrypted HTTP push says: DingTalk's URL check, or an event in the
//! shape the Stream client hands on (`core::events::Event`), so that both
//! modes mark tenants the same way. The crypto is `dingtalk::callback_crypto`'s;
//! reading is lenient as for Stream frames (keys whatever their case).

use jiff::Timestamp;
use serde_json::{Map, Value};
use sha1::{Digest, Sha1};

use super::events::Event;

/// A push, decrypted.
#[derive(Clone, Debug, PartialEq)]
pub enum Push {
    /// `check_url` (and a marketplace suite's `check_create_suite_url`):
    /// DingTalk checks the receiver; only the reply matters.
    CheckUrl,
    /// An event. Its `event_id` is the payload's `eventId` or, without one,
    /// a digest of the whole payload (a retry of the same push has the same
    /// one), so that retries are de-duplicated as redeliveries are.
    Event(Event),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PushError {
    #[error("the decrypted push is not a JSON object")]
    NotAnObject,
    #[error("the decrypted push has no EventType")]
    MissingEventType,
}

/// The value of `name` in `object`, whatever the case of its key.
fn field<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    object
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

fn text(object: &Map<String, Value>, name: &str) -> Option<String> {
    match field(object, name)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Reads the plaintext of a push.
pub fn read(plaintext: &str) -> Result<Push, PushError> {
    let value: Value = serde_json::from_str(plaintext).map_err(|_| PushError::NotAnObject)?;
    let object = value.as_object().ok_or(PushError::NotAnObject)?;
    let event_type = text(object, "EventType").ok_or(PushError::MissingEventType)?;
    if matches!(
        event_type.as_str(),
        "check_url" | "check_create_suite_url" | "check_update_suite_url"
    ) {
        return Ok(Push::CheckUrl);
    }
    let event_id = text(object, "eventId").unwrap_or_else(|| {
        let digest = Sha1::digest(plaintext.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("sha1:{hex}")
    });
    let born_at = text(object, "TimeStamp")
        .and_then(|ms| ms.trim().parse::<i64>().ok())
        .and_then(|ms| Timestamp::from_millisecond(ms).ok());
    Ok(Push::Event(Event {
        message_id: String::new(),
        event_id: Some(event_id),
        event_type: Some(event_type),
        born_at,
        corp_id: text(object, "CorpId"),
        unified_app_id: text(object, "unifiedAppId"),
        topic: None,
        data: value,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::dirty::{self, Change};

    #[test]
    fn a_url_check_is_read_as_such() {
        assert_eq!(read(r#"{"EventType":"check_url"}"#), Ok(Push::CheckUrl));
        assert_eq!(
            read(r#"{"EventType":"check_create_suite_url","Random":"x","TestSuiteKey":"s"}"#),
            Ok(Push::CheckUrl)
        );
    }

    #[test]
    fn an_event_marks_what_the_same_stream_event_marks() {
        let plain = r#"{"EventType":"user_leave_org","TimeStamp":"1690362102194","UserId":["u1"],"CorpId":"ding1"}"#;
        let Ok(Push::Event(e)) = read(plain) else {
            panic!("an event");
        };
        assert_eq!(e.event_type.as_deref(), Some("user_leave_org"));
        assert_eq!(e.corp_id.as_deref(), Some("ding1"));
        assert_eq!(
            e.born_at,
            Some(Timestamp::from_millisecond(1_690_362_102_194).expect("valid"))
        );
        let stream = dirty::change("user_leave_org", &serde_json::json!({"userId": ["u1"]}));
        assert_eq!(dirty::change("user_leave_org", &e.data), stream);
        assert_ne!(stream, Change::Ignored);
    }

    #[test]
    fn the_same_push_has_the_same_id_and_another_push_another() {
        let a = r#"{"EventType":"user_add_org","UserId":["u1"]}"#;
        let b = r#"{"EventType":"user_add_org","UserId":["u2"]}"#;
        let id = |p: &str| match read(p) {
            Ok(Push::Event(e)) => e.event_id,
            other => panic!("{other:?}"),
        };
        assert_eq!(id(a), id(a));
        assert_ne!(id(a), id(b));
        assert_eq!(
            id(r#"{"EventType":"user_add_org","eventId":"e-1"}"#).as_deref(),
            Some("e-1"),
            "the payload's own id first"
        );
    }

    #[test]
    fn a_push_without_a_type_or_not_json_is_refused() {
        assert_eq!(read("[1]"), Err(PushError::NotAnObject));
        assert_eq!(read("success"), Err(PushError::NotAnObject));
        assert_eq!(
            read(r#"{"UserId":["u1"]}"#),
            Err(PushError::MissingEventType)
        );
    }
}
