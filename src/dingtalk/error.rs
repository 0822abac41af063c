//! One error type for both DingTalk error styles, classified into the kinds a
//! caller acts on. Pure classification functions; no I/O.

use std::fmt;

use super::types::Api;

/// What a DingTalk error means to the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The app key or secret is wrong (`invalidClientIdOrSecret`, 40089, 40096). Not retried.
    InvalidCredentials,
    /// The access token is invalid or expired (40014, 42001, 88/40014, `InvalidAuthentication`).
    /// The client refreshes the token and retries once.
    TokenInvalid,
    /// A rate limit (88/90018, 90018, 90002, 90005, 90006, 90019, 403 `…QpsLimit…`/`…QpmLimit…`).
    Throttled,
    /// The department or user does not exist (60121, 33012, 60003, v1.0 404).
    NotFound,
    /// DingTalk is busy or failed (-1, 400001, HTTP 5xx, `systemBusy`). Retryable.
    Busy,
    /// A marketplace app has no suite ticket yet, or DingTalk refused the one
    /// it sent (`invalidSuiteTicket`): wait for the next `suite_ticket` event.
    SuiteTicket,
    /// The enterprise has not installed the marketplace app, uninstalled it,
    /// or does not exist (`orgNotAuthApp`, `invalidAuthInfo`, `orgNotExist`,
    /// `invalidCorpId`).
    NotInstalled,
    /// A login code DingTalk does not accept: unknown, expired, used already,
    /// or issued for another app (40078 不存在的临时授权码; `userAccessToken`'s
    /// code errors, see [`classify_v1`]). Not retried.
    CodeInvalid,
    /// The user is outside what the app may see: not in its visible scope,
    /// or no such authorization (40079 不存在的授权信息). Not retried.
    NotInScope,
    /// Any other API error (permission, bad parameter, quota…). Not retried.
    Other,
    /// The request did not complete (connect, timeout, reset).
    Transport,
    /// The response could not be decoded.
    Decode,
}

/// The error body DingTalk sent, in either style.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiFailure {
    /// HTTP status (200 for topapi errors).
    pub http_status: u16,
    /// topapi `errcode` as a string, or the v1.0 `code`.
    pub code: String,
    /// topapi `sub_code` (the real cause of an errcode 88).
    pub sub_code: Option<String>,
    /// `errmsg`/`sub_msg` or the v1.0 `message`.
    pub message: String,
    pub request_id: Option<String>,
}

impl fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {} code {}", self.http_status, self.code)?;
        if let Some(sub) = &self.sub_code {
            write!(f, "/{sub}")?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(id) = &self.request_id {
            write!(f, " (request id {id})")?;
        }
        Ok(())
    }
}

/// An error from the DingTalk client. Every variant names the endpoint; none
/// carries a token or secret (URLs are stripped from transport errors, since
/// topapi URLs hold the token).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("DingTalk {endpoint}: {kind:?}: {failure}")]
    Api {
        endpoint: Api,
        kind: ErrorKind,
        failure: ApiFailure,
    },
    #[error("DingTalk {endpoint}: request failed{}: {source}", if *.timeout { " (timeout)" } else { "" })]
    Transport {
        endpoint: Api,
        /// The request timed out.
        timeout: bool,
        /// The request was never sent (connection failed), so retrying is always safe.
        connect: bool,
        #[source]
        source: reqwest::Error,
    },
    #[error("DingTalk {endpoint}: cannot decode the response (HTTP {http_status}): {message}")]
    Decode {
        endpoint: Api,
        http_status: u16,
        message: String,
    },
    #[error("DingTalk client configuration: {0}")]
    Config(String),
    #[error(
        "DingTalk suite {suite_key}: no suite ticket yet; DingTalk sends one on the suite's Stream connection"
    )]
    NoSuiteTicket { suite_key: String },
}

impl Error {
    /// The kind the caller acts on.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Api { kind, .. } => *kind,
            Error::Transport { .. } => ErrorKind::Transport,
            Error::Decode { .. } => ErrorKind::Decode,
            Error::Config(_) => ErrorKind::Other,
            Error::NoSuiteTicket { .. } => ErrorKind::SuiteTicket,
        }
    }

    /// The endpoint that failed (none for a configuration error).
    pub fn endpoint(&self) -> Option<Api> {
        match self {
            Error::Api { endpoint, .. }
            | Error::Transport { endpoint, .. }
            | Error::Decode { endpoint, .. } => Some(*endpoint),
            Error::Config(_) | Error::NoSuiteTicket { .. } => None,
        }
    }

    /// The DingTalk code (`errcode`, `sub_code` for an 88, or the v1.0 `code`).
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Api { failure, .. } => {
                Some(failure.sub_code.as_deref().unwrap_or(&failure.code))
            }
            _ => None,
        }
    }

    pub(crate) fn transport(endpoint: Api, source: reqwest::Error) -> Self {
        Error::Transport {
            endpoint,
            timeout: source.is_timeout(),
            connect: source.is_connect(),
            source: source.without_url(),
        }
    }

    /// The same error with every credential removed from the text DingTalk
    /// (or whatever answered in its place) sent back: the `known` secrets of
    /// the request (token, app secret) and any credential-named value. Every
    /// error leaving the client has been through here.
    pub(crate) fn redacted(self, known: &[&str]) -> Self {
        let redact = |text: &str| shorten(&crate::redact::redact(text, known), MESSAGE_MAX);
        match self {
            Error::Api {
                endpoint,
                kind,
                failure,
            } => Error::Api {
                endpoint,
                kind,
                failure: ApiFailure {
                    http_status: failure.http_status,
                    code: redact(&failure.code),
                    sub_code: failure.sub_code.map(|s| redact(&s)),
                    message: redact(&failure.message),
                    request_id: failure.request_id.map(|s| redact(&s)),
                },
            },
            Error::Decode {
                endpoint,
                http_status,
                message,
            } => Error::Decode {
                endpoint,
                http_status,
                message: redact(&message),
            },
            Error::Config(message) => Error::Config(redact(&message)),
            other @ (Error::Transport { .. } | Error::NoSuiteTicket { .. }) => other,
        }
    }

    pub(crate) fn api(endpoint: Api, failure: ApiFailure) -> Self {
        let kind = classify(&failure);
        Error::Api {
            endpoint,
            kind,
            failure,
        }
    }
}

/// Most characters of DingTalk's text an error message keeps.
pub(crate) const MESSAGE_MAX: usize = 200;

/// The first `max` characters of `s`, with `…` when cut.
fn shorten(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// Classifies an error body of either style.
pub fn classify(f: &ApiFailure) -> ErrorKind {
    if f.http_status == 200 {
        classify_topapi(&f.code, f.sub_code.as_deref())
    } else {
        classify_v1(f.http_status, &f.code)
    }
}

/// topapi: HTTP 200 with `errcode`; an errcode 88 is classified by its `sub_code`.
pub fn classify_topapi(errcode: &str, sub_code: Option<&str>) -> ErrorKind {
    let effective = match (errcode, sub_code) {
        ("88", Some(sub)) if !sub.is_empty() => sub,
        _ => errcode,
    };
    match effective {
        "40089" | "40096" => ErrorKind::InvalidCredentials,
        "40014" | "42001" => ErrorKind::TokenInvalid,
        "90018" | "90002" | "90005" | "90006" | "90019" => ErrorKind::Throttled,
        "60121" | "33012" | "60003" => ErrorKind::NotFound,
        "40078" => ErrorKind::CodeInvalid,
        "40079" => ErrorKind::NotInScope,
        "-1" | "400001" => ErrorKind::Busy,
        _ => ErrorKind::Other,
    }
}

/// Whether a v1.0 `code` says the login code is bad. DingTalk does not list
/// `userAccessToken`'s errors; its global table has `invalidCode` (无效的授权码),
/// and the spellings below are accepted too (case and separators ignored),
/// as is the topapi number 40078 sent as a v1.0 code.
pub fn is_code_error(code: &str) -> bool {
    let folded: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    matches!(
        folded.as_str(),
        "invalidcode"
            | "invalidauthcode"
            | "invalidauthorizationcode"
            | "invalidtmpauthcode"
            | "authcodeinvalid"
            | "authcodeexpired"
            | "codeexpired"
            | "codeinvalid"
            | "invalidgrant"
            | "40078"
    )
}

/// v1.0: HTTP 4xx/5xx with a string `code`.
pub fn classify_v1(status: u16, code: &str) -> ErrorKind {
    if is_code_error(code) {
        return ErrorKind::CodeInvalid;
    }
    match code {
        "invalidClientIdOrSecret" | "invalid.client" | "invalidSuiteKey" | "invalidSuiteSecret" => {
            return ErrorKind::InvalidCredentials;
        }
        "invalidSuiteTicket" => return ErrorKind::SuiteTicket,
        "orgNotAuthApp" | "invalidAuthInfo" | "orgNotExist" | "invalidCorpId" => {
            return ErrorKind::NotInstalled;
        }
        "InvalidAuthentication" => return ErrorKind::TokenInvalid,
        "systemBusy" | "systemError" | "system.error" => return ErrorKind::Busy,
        _ => {}
    }
    if code.starts_with("Forbidden.AccessDenied.Qps")
        || code.starts_with("Forbidden.AccessDenied.Qpm")
    {
        return ErrorKind::Throttled;
    }
    if status == 404 || code.ends_with(".notFound") {
        return ErrorKind::NotFound;
    }
    if status == 429 {
        return ErrorKind::Throttled;
    }
    if status >= 500 {
        return ErrorKind::Busy;
    }
    ErrorKind::Other
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topapi_codes_are_classified_by_sub_code_for_88() {
        assert_eq!(classify_topapi("88", Some("90018")), ErrorKind::Throttled);
        assert_eq!(
            classify_topapi("88", Some("40014")),
            ErrorKind::TokenInvalid
        );
        assert_eq!(classify_topapi("88", Some("60011")), ErrorKind::Other);
        assert_eq!(classify_topapi("88", None), ErrorKind::Other);
        assert_eq!(classify_topapi("90018", None), ErrorKind::Throttled);
        assert_eq!(classify_topapi("90002", None), ErrorKind::Throttled);
        assert_eq!(classify_topapi("90006", None), ErrorKind::Throttled);
        assert_eq!(classify_topapi("40014", None), ErrorKind::TokenInvalid);
        assert_eq!(classify_topapi("42001", None), ErrorKind::TokenInvalid);
        assert_eq!(
            classify_topapi("40089", None),
            ErrorKind::InvalidCredentials
        );
        assert_eq!(
            classify_topapi("40096", None),
            ErrorKind::InvalidCredentials
        );
        assert_eq!(classify_topapi("60121", None), ErrorKind::NotFound);
        assert_eq!(classify_topapi("33012", None), ErrorKind::NotFound);
        assert_eq!(classify_topapi("60003", None), ErrorKind::NotFound);
        assert_eq!(classify_topapi("-1", None), ErrorKind::Busy);
        assert_eq!(classify_topapi("40035", None), ErrorKind::Other);
        assert_eq!(classify_topapi("40078", None), ErrorKind::CodeInvalid);
        assert_eq!(classify_topapi("40079", None), ErrorKind::NotInScope);
        assert_eq!(classify_topapi("88", Some("40078")), ErrorKind::CodeInvalid);
    }

    #[test]
    fn the_bad_code_answers_of_user_access_token_are_read_leniently() {
        for code in [
            "invalidCode",
            "InvalidCode",
            "invalid.code",
            "invalidAuthCode",
            "invalid_grant",
            "authCode.expired",
            "40078",
        ] {
            assert_eq!(classify_v1(400, code), ErrorKind::CodeInvalid, "{code}");
        }
        assert_eq!(classify_v1(409, "invalidCode"), ErrorKind::CodeInvalid);
        assert_eq!(
            classify_v1(400, "invalidClientIdOrSecret"),
            ErrorKind::InvalidCredentials,
            "not a code error"
        );
        assert_eq!(classify_v1(400, "invalidParameter"), ErrorKind::Other);
    }

    #[test]
    fn v1_codes_are_classified_by_code_then_status() {
        assert_eq!(
            classify_v1(400, "invalidClientIdOrSecret"),
            ErrorKind::InvalidCredentials
        );
        assert_eq!(
            classify_v1(400, "InvalidAuthentication"),
            ErrorKind::TokenInvalid
        );
        assert_eq!(
            classify_v1(403, "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi"),
            ErrorKind::Throttled
        );
        assert_eq!(
            classify_v1(403, "Forbidden.AccessDenied.QpmLimitForAppkeyAndApi"),
            ErrorKind::Throttled
        );
        assert_eq!(
            classify_v1(403, "Forbidden.AccessDenied.QpsLimitForApi"),
            ErrorKind::Throttled
        );
        assert_eq!(
            classify_v1(403, "Forbidden.AccessDenied.AccessTokenPermissionDenied"),
            ErrorKind::Other
        );
        assert_eq!(
            classify_v1(404, "invalidParameter.user.notFound"),
            ErrorKind::NotFound
        );
        assert_eq!(classify_v1(500, "systemBusy"), ErrorKind::Busy);
        assert_eq!(classify_v1(503, ""), ErrorKind::Busy);
        assert_eq!(classify_v1(400, "invalidParam"), ErrorKind::Other);
    }

    #[test]
    fn error_message_names_endpoint_and_code() {
        let e = Error::api(
            Api::UserList,
            ApiFailure {
                http_status: 200,
                code: "88".into(),
                sub_code: Some("90018".into()),
                message: "too many".into(),
                request_id: None,
            },
        );
        assert_eq!(e.kind(), ErrorKind::Throttled);
        assert_eq!(e.code(), Some("90018"));
        let text = e.to_string();
        assert!(text.contains("topapi/v2/user/list"), "{text}");
        assert!(text.contains("88/90018"), "{text}");
    }
}
