//! HTTP push, as DingTalk does it for an internal app whose events are set
//! to HTTP in the developer console: each event is POSTed, signed and
//! AES-encrypted (`dingtalk::callback_crypto`, owner key = the appKey), to
//! the app's registered URL with `msg_signature`, `signature` (older pages'
//! name), `timestamp` and `nonce` in the query; the answer must be the
//! encrypted `success` within 1.5 s, or the push is tried again 10 s and
//! 30 s later. Registering a URL first pushes `check_url`, and a URL that
//! does not answer it is refused, as DingTalk's console refuses it. An app
//! with a URL gets its events here instead of over Stream.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::dingtalk::callback_crypto::{CallbackCrypto, Reply};

/// The deadline of an answer.
pub const DEADLINE: Duration = Duration::from_millis(1500);
/// When a failed push is tried again, after the first attempt.
pub const RETRIES: [Duration; 2] = [Duration::from_secs(10), Duration::from_secs(30)];

/// What HTTP push did since the start (`GET /_sim/http-push`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PushStats {
    /// The registered URL of each appKey.
    pub registered: BTreeMap<String, String>,
    /// Events pushed (first attempts; `check_url` not included).
    pub pushes: u64,
    /// Attempts answered with a valid encrypted `success`.
    pub succeeded: u64,
    /// Attempts that failed (no answer in time, an error status, a wrong reply).
    pub failed: u64,
    /// Attempts after the first.
    pub retries: u64,
    /// Events given up after the last retry.
    pub given_up: u64,
}

struct Callback {
    url: String,
    crypto: Arc<CallbackCrypto>,
}

/// The registered URLs and what was pushed to them.
pub struct Pusher {
    http: reqwest::Client,
    callbacks: HashMap<String, Callback>,
    stats: Arc<Mutex<PushStats>>,
}

impl Default for Pusher {
    fn default() -> Self {
        crate::dingtalk::install_crypto_provider();
        Self {
            http: reqwest::Client::builder()
                .timeout(DEADLINE)
                .build()
                .unwrap_or_default(),
            callbacks: HashMap::new(),
            stats: Arc::default(),
        }
    }
}

/// Everything needed to push to one URL, outside the simulator's lock.
#[derive(Clone)]
pub struct Target {
    http: reqwest::Client,
    url: String,
    crypto: Arc<CallbackCrypto>,
    stats: Arc<Mutex<PushStats>>,
}

impl Pusher {
    /// The keys of a URL to register for `app_key`, checked (DingTalk's
    /// console takes a 3–32 character token and a 43 character key).
    pub fn target(
        &self,
        app_key: &str,
        url: &str,
        token: &str,
        aes_key: &str,
    ) -> Result<Target, String> {
        let crypto = CallbackCrypto::new(token, aes_key, app_key).map_err(|e| e.to_string())?;
        Ok(Target {
            http: self.http.clone(),
            url: url.to_owned(),
            crypto: Arc::new(crypto),
            stats: self.stats.clone(),
        })
    }

    /// `target` (answered `check_url`) takes `app_key`'s events from now on.
    pub fn register(&mut self, app_key: &str, target: Target) {
        self.stats_mut()
            .registered
            .insert(app_key.to_owned(), target.url.clone());
        self.callbacks.insert(
            app_key.to_owned(),
            Callback {
                url: target.url,
                crypto: target.crypto,
            },
        );
    }

    /// `app_key` goes back to Stream mode.
    pub fn unregister(&mut self, app_key: &str) -> bool {
        self.stats_mut().registered.remove(app_key);
        self.callbacks.remove(app_key).is_some()
    }

    /// Every URL forgotten (`POST /_sim/reset`); counters cleared.
    pub fn reset(&mut self) {
        self.callbacks.clear();
        *self.stats_mut() = PushStats::default();
    }

    fn stats_mut(&self) -> std::sync::MutexGuard<'_, PushStats> {
        self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn stats(&self) -> PushStats {
        self.stats_mut().clone()
    }

    /// Whether `app_key`'s events go over HTTP.
    pub fn takes(&self, app_key: &str) -> bool {
        self.callbacks.contains_key(app_key)
    }

    /// Pushes one event of `app_key` (in the background, with its retries).
    pub fn push(&self, app_key: &str, event_type: &str, corp_id: &str, data: &Value, born_ms: i64) {
        let Some(c) = self.callbacks.get(app_key) else {
            return;
        };
        let target = Target {
            http: self.http.clone(),
            url: c.url.clone(),
            crypto: c.crypto.clone(),
            stats: self.stats.clone(),
        };
        let plaintext = plaintext(event_type, corp_id, data, born_ms).to_string();
        self.stats_mut().pushes += 1;
        tokio::spawn(async move {
            if target.attempt(&plaintext).await.is_ok() {
                return;
            }
            for delay in RETRIES {
                tokio::time::sleep(delay).await;
                target.lock().retries += 1;
                if target.attempt(&plaintext).await.is_ok() {
                    return;
                }
            }
            target.lock().given_up += 1;
        });
    }
}

impl Target {
    fn lock(&self) -> std::sync::MutexGuard<'_, PushStats> {
        self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Pushes `check_url`: `Ok` when the URL answers it as DingTalk expects.
    pub async fn check(&self) -> Result<(), String> {
        self.attempt(&json!({"EventType": "check_url"}).to_string())
            .await
    }

    /// One POST of `plaintext`, and the check of its answer.
    async fn attempt(&self, plaintext: &str) -> Result<(), String> {
        let result = self.post(plaintext).await;
        let mut stats = self.lock();
        match &result {
            Ok(()) => stats.succeeded += 1,
            Err(_) => stats.failed += 1,
        }
        result
    }

    async fn post(&self, plaintext: &str) -> Result<(), String> {
        let timestamp = jiff::Timestamp::now().as_millisecond().to_string();
        let nonce: String = (0..8).map(|_| fastrand::alphanumeric()).collect();
        let mut random = [0u8; 16];
        random.iter_mut().for_each(|b| *b = fastrand::u8(..));
        let encrypt = self.crypto.encrypt(plaintext, random);
        let signature = self.crypto.signature(&timestamp, &nonce, &encrypt);
        let response = self
            .http
            .post(&self.url)
            .query(&[
                ("msg_signature", signature.as_str()),
                ("signature", signature.as_str()),
                ("timestamp", timestamp.as_str()),
                ("nonce", nonce.as_str()),
            ])
            .json(&json!({"encrypt": encrypt}))
            .send()
            .await
            .map_err(|e| format!("no answer within {DEADLINE:?}: {e}"))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("answered {status}"));
        }
        let reply: Reply = response
            .json()
            .await
            .map_err(|e| format!("the answer is not the reply JSON: {e}"))?;
        let answer = self
            .crypto
            .open(
                &reply.msg_signature,
                &reply.time_stamp,
                &reply.nonce,
                &reply.encrypt,
            )
            .map_err(|e| format!("the reply does not open: {e}"))?;
        if answer != "success" {
            return Err("the reply is not success".into());
        }
        Ok(())
    }
}

/// The decrypted body of a push: DingTalk's HTTP payloads name their fields
/// in PascalCase (`EventType`, `CorpId`, `TimeStamp`, `UserId`).
pub fn plaintext(event_type: &str, corp_id: &str, data: &Value, born_ms: i64) -> Value {
    let mut out = Map::new();
    out.insert("EventType".into(), json!(event_type));
    out.insert("CorpId".into(), json!(corp_id));
    out.insert("TimeStamp".into(), json!(born_ms.to_string()));
    if let Some(fields) = data.as_object() {
        for (k, v) in fields {
            let mut chars = k.chars();
            let key: String = match chars.next() {
                Some(first) => first.to_uppercase().chain(chars).collect(),
                None => continue,
            };
            out.entry(key).or_insert_with(|| v.clone());
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{
        dirty,
        push::{self as core_push, Push},
    };

    #[test]
    fn a_push_reads_as_the_same_change_as_its_stream_event() {
        let data = json!({"timeStamp": "1", "userId": ["u1"]});
        let p = plaintext("user_leave_org", "ding1", &data, 1_700_000_000_000);
        assert_eq!(p["EventType"], "user_leave_org");
        assert_eq!(p["UserId"], json!(["u1"]));
        assert_eq!(p["CorpId"], "ding1");
        let Ok(Push::Event(e)) = core_push::read(&p.to_string()) else {
            panic!("an event");
        };
        assert_eq!(
            dirty::change("user_leave_org", &e.data),
            dirty::change("user_leave_org", &data)
        );
    }
}
