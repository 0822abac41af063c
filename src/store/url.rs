//! Store URLs: `sqlite://PATH` (the default, [`DEFAULT_URL`]) and
//! `postgres://...` / `postgresql://...`. Parsing is strict so that a typo is a
//! clear error at start-up; every way a URL is shown ([`StoreUrl`]'s `Display`
//! and `Debug`, [`redact`], the errors) hides the password.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;

use super::error::Error;

/// The store used when none is given: a SQLite file in the working directory.
pub const DEFAULT_URL: &str = "sqlite://dingbind.db";

/// What the password is replaced with when a URL or message is shown.
pub const REDACTED: &str = "***";

/// A parsed store URL.
#[derive(Clone)]
pub enum StoreUrl {
    /// An embedded SQLite database file (created if missing).
    Sqlite {
        /// The database file.
        path: PathBuf,
    },
    /// A PostgreSQL server.
    Postgres {
        /// Connection options, credentials included. Never printed.
        options: Box<PgConnectOptions>,
        /// The URL with the password replaced by [`REDACTED`].
        redacted: String,
        /// Secrets to scrub from driver messages (the password, raw and decoded).
        secrets: Vec<String>,
    },
}

impl StoreUrl {
    /// Parse a store URL.
    pub fn parse(url: &str) -> Result<Self, Error> {
        let url = url.trim();
        let invalid = |reason: String| Error::InvalidUrl {
            url: redact(url),
            reason: scrub(&reason, &secrets_of(url)),
        };
        if let Some(rest) = url.strip_prefix("sqlite:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() {
                return Err(invalid(
                    "the SQLite URL has no file path (expected sqlite://PATH)".into(),
                ));
            }
            if path.contains('?') {
                return Err(invalid(
                    "query parameters are not supported in SQLite store URLs".into(),
                ));
            }
            if path.starts_with(':') {
                return Err(invalid(
                    "in-memory SQLite databases are not supported; give a file path".into(),
                ));
            }
            return Ok(StoreUrl::Sqlite {
                path: PathBuf::from(path),
            });
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url).map_err(|e| invalid(e.to_string()))?;
            return Ok(StoreUrl::Postgres {
                options: Box::new(options),
                redacted: redact(url),
                secrets: secrets_of(url),
            });
        }
        Err(invalid(
            "unsupported scheme (expected sqlite://PATH or postgres://USER@HOST/DB)".into(),
        ))
    }

    /// The URL with any password replaced by [`REDACTED`]; safe to log.
    pub fn redacted(&self) -> String {
        match self {
            StoreUrl::Sqlite { path } => format!("sqlite://{}", path.display()),
            StoreUrl::Postgres { redacted, .. } => redacted.clone(),
        }
    }

    /// `message` with the URL's password (if any) replaced by [`REDACTED`].
    pub(crate) fn scrub(&self, message: &str) -> String {
        match self {
            StoreUrl::Sqlite { .. } => message.to_string(),
            StoreUrl::Postgres { secrets, .. } => scrub(message, secrets),
        }
    }
}

impl FromStr for StoreUrl {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StoreUrl::parse(s)
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("StoreUrl").field(&self.redacted()).finish()
    }
}

/// Split `url` into (scheme and `://`, the rest); `None` if there is no `://`.
fn split_scheme(url: &str) -> Option<(&str, &str)> {
    let i = url.find("://")?;
    Some((&url[..i + 3], &url[i + 3..]))
}

/// Where the userinfo ends: the last `@` before the query string, if any.
fn userinfo_end(rest: &str) -> Option<usize> {
    let before_query = rest.find('?').unwrap_or(rest.len());
    rest[..before_query].rfind('@')
}

/// `url` with the password of its userinfo and the values of `password` /
/// `sslpassword` query parameters replaced by [`REDACTED`]. Works on malformed
/// URLs too (it never needs to parse them fully).
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = split_scheme(url) else {
        // No authority at all: keep only what cannot hold a password.
        return match url.split_once(':') {
            Some((scheme, rest))
                if !rest.is_empty() && (rest.contains('@') || rest.contains(':')) =>
            {
                format!("{scheme}:{REDACTED}")
            }
            _ => url.to_string(),
        };
    };
    let mut out = String::from(scheme);
    let rest = match userinfo_end(rest) {
        Some(at) => {
            let userinfo = &rest[..at];
            match userinfo.split_once(':') {
                Some((user, _password)) => out.push_str(&format!("{user}:{REDACTED}@")),
                None => out.push_str(&format!("{userinfo}@")),
            }
            &rest[at + 1..]
        }
        None => rest,
    };
    match rest.split_once('?') {
        None => out.push_str(rest),
        Some((path, query)) => {
            out.push_str(path);
            out.push('?');
            let params: Vec<String> = query
                .split('&')
                .map(|param| match param.split_once('=') {
                    Some((key, _)) if is_secret_param(key) => format!("{key}={REDACTED}"),
                    _ => param.to_string(),
                })
                .collect();
            out.push_str(&params.join("&"));
        }
    }
    out
}

fn is_secret_param(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key == "password" || key == "sslpassword"
}

/// The secrets a URL holds (its password, as written and percent-decoded), so
/// that they can be scrubbed from any message.
fn secrets_of(url: &str) -> Vec<String> {
    let mut raw = Vec::new();
    if let Some((_, rest)) = split_scheme(url) {
        if let Some(at) = userinfo_end(rest)
            && let Some((_, password)) = rest[..at].split_once(':')
        {
            raw.push(password.to_string());
        }
        if let Some((_, query)) = rest.split_once('?') {
            for param in query.split('&') {
                if let Some((key, value)) = param.split_once('=')
                    && is_secret_param(key)
                {
                    raw.push(value.to_string());
                }
            }
        }
    }
    let mut secrets = Vec::new();
    for secret in raw.into_iter().filter(|s| !s.is_empty()) {
        let decoded = percent_decode(&secret);
        if decoded != secret && !decoded.is_empty() {
            secrets.push(decoded);
        }
        secrets.push(secret);
    }
    // Longest first, so that a secret containing another is replaced whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets
}

/// `message` with every secret replaced by [`REDACTED`].
fn scrub(message: &str, secrets: &[String]) -> String {
    secrets
        .iter()
        .fold(message.to_string(), |m, s| m.replace(s.as_str(), REDACTED))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_the_password_and_keeps_the_rest() {
        assert_eq!(
            redact("postgres://app:s3cret@db.example:5432/dingbind"),
            "postgres://app:***@db.example:5432/dingbind"
        );
        assert_eq!(
            redact("postgres://app@db/dingbind"),
            "postgres://app@db/dingbind"
        );
        assert_eq!(
            redact("postgres://db/dingbind?user=app&password=s3cret&sslmode=require"),
            "postgres://db/dingbind?user=app&password=***&sslmode=require"
        );
        assert_eq!(
            redact("postgresql://a:p%40ss@w0rd@h/d"),
            "postgresql://a:***@h/d"
        );
        assert_eq!(redact("sqlite://dingbind.db"), "sqlite://dingbind.db");
        assert!(!redact("postgres:app:s3cret@h").contains("s3cret"));
    }

    #[test]
    fn parse_accepts_sqlite_paths() {
        match StoreUrl::parse(DEFAULT_URL) {
            Ok(StoreUrl::Sqlite { path }) => assert_eq!(path, PathBuf::from("dingbind.db")),
            other => panic!("unexpected {other:?}"),
        }
        match StoreUrl::parse("sqlite:///var/lib/dingbind/store.db") {
            Ok(StoreUrl::Sqlite { path }) => {
                assert_eq!(path, PathBuf::from("/var/lib/dingbind/store.db"))
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn parse_rejects_bad_urls_with_a_reason_and_no_password() {
        for bad in [
            "mysql://u:s3cret@h/d",
            "sqlite://",
            "sqlite://x.db?mode=ro",
            "postgres://u:s3cret@h:notaport/d",
            "s3cret",
        ] {
            let err = StoreUrl::parse(bad)
                .err()
                .unwrap_or_else(|| panic!("{bad} parsed"));
            let shown = format!("{err} {err:?}");
            assert!(matches!(err, Error::InvalidUrl { .. }), "{bad}: {shown}");
            if bad != "s3cret" {
                assert!(!shown.contains("s3cret"), "{bad}: {shown}");
            }
        }
    }

    #[test]
    fn display_and_debug_of_a_postgres_url_hide_the_password() {
        let url = StoreUrl::parse("postgres://app:s3cret@localhost/dingbind").unwrap();
        assert_eq!(url.to_string(), "postgres://app:***@localhost/dingbind");
        assert!(!format!("{url:?}").contains("s3cret"));
    }

    #[test]
    fn scrub_removes_raw_and_decoded_passwords() {
        let url = StoreUrl::parse("postgres://app:p%21ss@localhost/dingbind").unwrap();
        assert_eq!(
            url.scrub("auth failed for p!ss and p%21ss"),
            "auth failed for *** and ***"
        );
    }
}
