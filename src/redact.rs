//! The one place where text that may hold a credential is cleaned before it
//! is logged, evented or written to a status: DingTalk error bodies and
//! decoding messages (a gateway or proxy may echo the request, token and
//! secret included). Pure functions.

use std::sync::LazyLock;

use regex::Regex;

/// What a credential is replaced with.
pub const REDACTED: &str = "***";

/// Secrets shorter than this are not searched for (they would match ordinary
/// text); such values are refused as credentials anyway.
const MIN_KNOWN_LEN: usize = 4;

/// `key=value`, `key: value`, `"key":"value"` for every key that names a
/// credential: query parameters, JSON fields, HTTP headers.
static KEYED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?i)((?:access_?token|accesstoken|x-acs-dingtalk-access-token|refresh_?token|app_?secret|appsecret|client_?secret|suite_?secret|suite_?ticket|password|passwd|pwd|authorization)["']?\s*[:=]\s*["']?(?:bearer\s+)?)[^\s"'&,;}<>]+"#,
    )
    .unwrap_or_else(|e| unreachable!("constant regex: {e}"))
});

/// `scheme://user:password@`: the password of a URL's user info.
static USERINFO: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)([a-z][a-z0-9+.-]*://[^/\s:@]*:)[^/\s@]+@")
        .unwrap_or_else(|e| unreachable!("constant regex: {e}"))
});

/// `text` with every `known` secret, every credential-named value and every
/// URL password replaced by [`REDACTED`].
pub fn redact(text: &str, known: &[&str]) -> String {
    let mut out = text.to_string();
    for secret in known.iter().filter(|s| s.len() >= MIN_KNOWN_LEN) {
        if out.contains(secret) {
            out = out.replace(secret, REDACTED);
        }
        // A text cut short may end in the first part of a secret.
        if let Some(cut) = (MIN_KNOWN_LEN..secret.len())
            .rev()
            .filter(|&n| secret.is_char_boundary(n))
            .find(|&n| out.ends_with(&secret[..n]))
        {
            out.truncate(out.len() - cut);
            out.push_str(REDACTED);
        }
    }
    let out = KEYED.replace_all(&out, |c: &regex::Captures<'_>| {
        format!("{}{REDACTED}", &c[1])
    });
    USERINFO
        .replace_all(&out, |c: &regex::Captures<'_>| {
            format!("{}{REDACTED}@", &c[1])
        })
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_secrets_are_replaced_wherever_they_are() {
        let s = redact(
            "echo: tok-123456 and s3cr3t-value",
            &["tok-123456", "s3cr3t-value"],
        );
        assert_eq!(s, "echo: *** and ***");
    }

    #[test]
    fn a_text_cut_in_the_middle_of_a_secret_loses_its_first_part_too() {
        assert_eq!(redact("body: tok-1234", &["tok-123456"]), "body: ***");
        assert_eq!(
            redact("body: tok", &["tok-123456"]),
            "body: tok",
            "too short to tell"
        );
    }

    #[test]
    fn credential_named_values_are_replaced_in_queries_json_and_headers() {
        for (text, gone) in [
            (
                "GET /topapi/v2/user/list?access_token=abcdef&lang=zh",
                "abcdef",
            ),
            (r#"{"appKey":"k","appSecret":"hunter22"}"#, "hunter22"),
            ("x-acs-dingtalk-access-token: 0123456789", "0123456789"),
            ("Authorization: Bearer eyJhbGciOi", "eyJhbGciOi"),
            ("password=pw%21x&user=a", "pw%21x"),
            (r#"{'accessToken': 'zzzz9999'}"#, "zzzz9999"),
        ] {
            let r = redact(text, &[]);
            assert!(!r.contains(gone), "{text} -> {r}");
            assert!(r.contains(REDACTED), "{text} -> {r}");
        }
        let r = redact("GET /x?access_token=abcdef&lang=zh", &[]);
        assert_eq!(r, "GET /x?access_token=***&lang=zh");
    }

    #[test]
    fn url_passwords_are_replaced() {
        assert_eq!(
            redact("dial postgres://app:pw@db:5432/x failed", &[]),
            "dial postgres://app:***@db:5432/x failed"
        );
        assert_eq!(
            redact("see https://example.com:443/a", &[]),
            "see https://example.com:443/a"
        );
    }

    #[test]
    fn ordinary_text_is_left_alone() {
        let text = "HTTP 502 code 500: the token was rejected (request id r-1)";
        assert_eq!(redact(text, &["abc"]), text);
    }
}
