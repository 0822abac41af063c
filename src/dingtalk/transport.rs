//! Sending one call: pacing, token, HTTP, decoding both error styles, retries.
//! The decoding and retry decisions are pure functions (`decode`, `retry::decide`);
//! this file is the thin imperative loop around them.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use reqwest::Method;
use serde::de::DeserializeOwned;

use super::AppClient;
use super::error::{ApiFailure, Error};
use super::retry::{self, Attempts, Decision};
use super::secret::Secret;
use super::suite::Suite;
use super::token::TokenSource;
use super::types::{
    AccessTokenRequest, AccessTokenResponse, Api, AuthCorpTokenRequest, Family, SuiteTokenRequest,
    TopResponse, V1_TOKEN_HEADER, V1Error,
};

/// One call, described before the token is known. Not `Debug`: the token
/// request body holds the app secret.
pub(crate) struct Request {
    pub api: Api,
    pub method: Method,
    /// Path with parameters filled in (`/v1.0/microApp/apps/1001/scopes`).
    pub path: String,
    pub query: Vec<(&'static str, String)>,
    pub body: Option<serde_json::Value>,
    /// The token sent instead of the app's, for a call made on behalf of a
    /// user (`users/me`: the token of the user who logged in).
    pub user_token: Option<Secret>,
    /// What else the request carries that must not leave in an error (a
    /// login code).
    pub secrets: Vec<Secret>,
}

impl Request {
    pub fn new(api: Api, method: Method) -> Self {
        Self {
            api,
            method,
            path: api.path().to_owned(),
            query: Vec::new(),
            body: None,
            user_token: None,
            secrets: Vec::new(),
        }
    }

    /// Sends `token` (a user's) instead of the app's token.
    pub fn user_token(mut self, token: &Secret) -> Self {
        self.user_token = Some(token.clone());
        self
    }

    /// Redacts `secret` from any error of this call.
    pub fn secret(mut self, secret: &Secret) -> Self {
        self.secrets.push(secret.clone());
        self
    }

    pub fn path(mut self, path: String) -> Self {
        self.path = path;
        self
    }

    pub fn query(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.query.push((key, value.into()));
        self
    }

    pub fn json<B: serde::Serialize>(mut self, body: &B) -> Result<Self, Error> {
        let value = serde_json::to_value(body).map_err(|e| Error::Decode {
            endpoint: self.api,
            http_status: 0,
            message: format!("cannot encode the request: {e}"),
        })?;
        self.body = Some(value);
        Ok(self)
    }
}

type TokenFuture<'a> = Pin<Box<dyn Future<Output = Result<(Secret, Duration), Error>> + Send + 'a>>;

impl AppClient {
    /// Sends `req` with pacing, a valid token and retries; decodes the answer.
    pub(crate) async fn call<T: DeserializeOwned>(&self, req: Request) -> Result<T, Error> {
        let api = req.api;
        let client = &self.inner.client.inner;
        let policy = client.config.retry;
        let mut attempts = Attempts::default();
        let mut is_retry = false;
        loop {
            self.pacer(api).acquire().await;
            let token = if api.uses_app_token() {
                Some(self.token().await?)
            } else {
                req.user_token.clone()
            };
            self.count(|s| s.call(api, is_retry));
            let err = match self.send::<T>(&req, token.as_ref()).await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    let known = self.known_secrets(token.as_ref(), &req.secrets);
                    e.redacted(&known.iter().map(Secret::expose).collect::<Vec<_>>())
                }
            };
            is_retry = true;
            match retry::decide(&policy, api, &err, &attempts, fastrand::f64()) {
                Decision::Throttled(pause) => {
                    self.count(|s| s.throttled(api));
                    attempts.throttled += 1;
                    tracing::debug!(endpoint = %api, app = self.inner.source.label(), ?pause, "throttled; pausing the API");
                    self.pacer(api).pause(pause);
                }
                Decision::RetryAfter(delay) => {
                    attempts.failures += 1;
                    tracing::debug!(endpoint = %api, app = self.inner.source.label(), ?delay, error = %err, "retrying");
                    tokio::time::sleep(delay).await;
                }
                Decision::RefreshToken => {
                    attempts.token_refreshes += 1;
                    tracing::debug!(endpoint = %api, app = self.inner.source.label(), "token rejected; refreshing");
                    if let Some(t) = &token {
                        self.inner.tokens.invalidate(t).await;
                    }
                }
                Decision::Fail => {
                    if err.kind() == super::ErrorKind::Throttled {
                        self.count(|s| s.throttled(api));
                    }
                    self.count(|s| s.error(api));
                    return Err(err);
                }
            }
        }
    }

    /// What must never leave in an error: the token of the request (the
    /// app's or the user's), the app or suite secret, the suite ticket, and
    /// what else the request carries (a login code).
    fn known_secrets(&self, token: Option<&Secret>, extra: &[Secret]) -> Vec<Secret> {
        let mut known = self.inner.source.secrets();
        known.extend(token.cloned());
        known.extend(extra.iter().cloned());
        known
    }

    /// The app's token, from the cache or fetched (single flight).
    async fn token(&self) -> Result<Secret, Error> {
        self.inner.tokens.get_or_fetch(|| self.fetch_token()).await
    }

    /// Boxed to break the recursion `call → token → fetch_token → call`.
    fn fetch_token(&self) -> TokenFuture<'_> {
        Box::pin(async move {
            let req = match &self.inner.source {
                TokenSource::InternalApp {
                    app_key,
                    app_secret,
                } => Request::new(Api::AccessToken, Method::POST).json(&AccessTokenRequest {
                    app_key: app_key.clone(),
                    app_secret: app_secret.clone(),
                })?,
                TokenSource::Suite(suite) => {
                    Request::new(Api::SuiteToken, Method::POST).json(&SuiteTokenRequest {
                        suite_key: suite.key().to_owned(),
                        suite_secret: suite.secret().clone(),
                        suite_ticket: ticket(suite)?,
                    })?
                }
                TokenSource::Marketplace {
                    suite,
                    auth_corp_id,
                } => {
                    Request::new(Api::AuthCorpToken, Method::POST).json(&AuthCorpTokenRequest {
                        suite_key: suite.key().to_owned(),
                        suite_secret: suite.secret().clone(),
                        auth_corp_id: auth_corp_id.clone(),
                        suite_ticket: ticket(suite)?,
                    })?
                }
            };
            let resp: AccessTokenResponse = self.call(req).await?;
            let ttl = Duration::from_secs(u64::try_from(resp.expire_in).unwrap_or(0));
            Ok((resp.access_token, ttl))
        })
    }

    /// One HTTP exchange, no retry.
    async fn send<T: DeserializeOwned>(
        &self,
        req: &Request,
        token: Option<&Secret>,
    ) -> Result<T, Error> {
        let client = &self.inner.client.inner;
        let family = req.api.family();
        let base = match family {
            Family::Topapi => &client.config.oapi_base_url,
            Family::V1 => &client.config.api_base_url,
        };
        let mut rb = client
            .http
            .request(req.method.clone(), format!("{base}{}", req.path));
        match (family, token) {
            (Family::Topapi, Some(t)) => rb = rb.query(&[("access_token", t.expose())]),
            (Family::V1, Some(t)) => rb = rb.header(V1_TOKEN_HEADER, t.expose()),
            (_, None) => {}
        }
        if !req.query.is_empty() {
            rb = rb.query(&req.query);
        }
        if let Some(body) = &req.body {
            rb = rb.json(body);
        }
        let mut resp = rb.send().await.map_err(|e| Error::transport(req.api, e))?;
        let status = resp.status().as_u16();
        let max = client.config.max_body_bytes;
        let too_large = |declared: Option<u64>| Error::Decode {
            endpoint: req.api,
            http_status: status,
            message: match declared {
                Some(n) => format!(
                    "the response body ({n} bytes) is larger than the {max} bytes read; refused"
                ),
                None => format!("the response body is larger than the {max} bytes read; refused"),
            },
        };
        if let Some(n) = resp.content_length().filter(|n| *n > max as u64) {
            return Err(too_large(Some(n)));
        }
        // Read in chunks up to the cap: a body without a length (or lying
        // about it) cannot make the client buffer more.
        let mut bytes = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| Error::transport(req.api, e))?
        {
            if bytes.len() + chunk.len() > max {
                return Err(too_large(None));
            }
            bytes.extend_from_slice(&chunk);
        }
        decode(req.api, status, &bytes)
    }
}

/// Most bytes of a non-JSON error body kept for redaction; the message shows
/// the first [`super::error::MESSAGE_MAX`] characters of what is left.
const BODY_IN_ERROR: usize = 4096;

/// The suite's newest ticket, or the error that says none came yet.
fn ticket(suite: &Suite) -> Result<Secret, Error> {
    suite.ticket().ok_or_else(|| Error::NoSuiteTicket {
        suite_key: suite.key().to_owned(),
    })
}

/// Turns an answer of either family into the value or a classified error.
pub(crate) fn decode<T: DeserializeOwned>(api: Api, status: u16, body: &[u8]) -> Result<T, Error> {
    let decode_err = |e: serde_json::Error| Error::Decode {
        endpoint: api,
        http_status: status,
        message: e.to_string(),
    };
    match api.family() {
        Family::Topapi if status == 200 => {
            let env: TopResponse<T> = serde_json::from_slice(body).map_err(decode_err)?;
            if env.errcode != 0 {
                return Err(Error::api(
                    api,
                    ApiFailure {
                        http_status: status,
                        code: env.errcode.to_string(),
                        sub_code: env.sub_code.filter(|s| !s.is_empty()),
                        message: env.sub_msg.filter(|s| !s.is_empty()).unwrap_or(env.errmsg),
                        request_id: env.request_id,
                    },
                ));
            }
            if api.flat_answer() {
                return serde_json::from_slice(body).map_err(decode_err);
            }
            env.result.ok_or_else(|| Error::Decode {
                endpoint: api,
                http_status: status,
                message: "errcode 0 without a result".into(),
            })
        }
        Family::V1 if (200..300).contains(&status) => {
            serde_json::from_slice(body).map_err(decode_err)
        }
        _ => {
            // A v1.0 error, or a topapi answer that is not HTTP 200 (gateway error).
            let failure = match serde_json::from_slice::<V1Error>(body) {
                Ok(e) if !e.code.is_empty() => ApiFailure {
                    http_status: status,
                    code: e.code,
                    sub_code: None,
                    message: e.message,
                    request_id: e.requestid,
                },
                _ => ApiFailure {
                    http_status: status,
                    code: format!("HTTP {status}"),
                    sub_code: None,
                    // Cut after redaction (`Error::redacted`), so that no
                    // secret is left half in the message.
                    message: String::from_utf8_lossy(&body[..body.len().min(BODY_IN_ERROR)])
                        .into_owned(),
                    request_id: None,
                },
            };
            Err(Error::api(api, failure))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dingtalk::ErrorKind;
    use crate::dingtalk::types::{AppScopes, ResultWrapper, UserListResult};

    #[test]
    fn topapi_error_at_http_200_is_an_api_error() {
        let body = br#"{"errcode":88,"sub_code":"40014","sub_msg":"bad token","errmsg":"ding talk error","request_id":"r1"}"#;
        let err = decode::<UserListResult>(Api::UserList, 200, body).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TokenInvalid);
        assert_eq!(err.code(), Some("40014"));
    }

    #[test]
    fn v1_error_status_and_code_are_kept() {
        let body = br#"{"code":"Forbidden.AccessDenied.QpsLimitForAppkeyAndApi","message":"too fast","requestid":"r2"}"#;
        let err = decode::<ResultWrapper<AppScopes>>(Api::ScopesGet, 403, body).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Throttled);
        match err {
            Error::Api { failure, .. } => {
                assert_eq!(failure.http_status, 403);
                assert_eq!(failure.request_id.as_deref(), Some("r2"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn gateway_error_without_json_is_busy() {
        let err =
            decode::<UserListResult>(Api::UserList, 502, b"<html>bad gateway</html>").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Busy);
    }

    #[test]
    fn an_echoed_request_leaves_the_error_without_its_credentials() {
        let body = b"<html>502: upstream failed for GET /topapi/v2/user/list?access_token=tok-planted-1&cursor=0 appSecret=sec-planted-2</html>";
        let err = decode::<UserListResult>(Api::UserList, 502, body)
            .unwrap_err()
            .redacted(&["tok-planted-1", "sec-planted-2"]);
        let text = err.to_string();
        assert!(!text.contains("tok-planted-1"), "{text}");
        assert!(!text.contains("sec-planted-2"), "{text}");
        assert!(text.contains("access_token=***"), "{text}");
        assert_eq!(err.kind(), ErrorKind::Busy, "classified before redaction");
    }

    #[test]
    fn garbage_at_http_200_is_a_decode_error() {
        let err = decode::<UserListResult>(Api::UserList, 200, b"not json").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Decode);
    }
}
