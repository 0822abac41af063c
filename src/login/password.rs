//! The creator's password check. The Secret holds a PHC string (argon2id,
//! `$argon2id$v=19$…`, recommended) or a bcrypt hash (`$2b$…`), or the
//! password in plain text. Every comparison takes the same time whatever the
//! input; the caller checks the password even for an unknown account (and
//! ignores the result), so that an unknown account and a wrong password get
//! the same answer in the same time.

use argon2::{Argon2, PasswordHash, PasswordVerifier};
use subtle::ConstantTimeEq;

/// How the stored password is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Argon2,
    Bcrypt,
    Plain,
}

/// The kind of a stored password.
pub fn kind(stored: &str) -> Kind {
    if stored.starts_with("$argon2") {
        Kind::Argon2
    } else if ["$2a$", "$2b$", "$2x$", "$2y$"]
        .iter()
        .any(|p| stored.starts_with(p))
    {
        Kind::Bcrypt
    } else {
        Kind::Plain
    }
}

/// Whether `given` is the password `stored` keeps. A malformed hash matches
/// nothing.
pub fn matches(stored: &str, given: &str) -> bool {
    match kind(stored) {
        Kind::Argon2 => PasswordHash::new(stored).is_ok_and(|hash| {
            Argon2::default()
                .verify_password(given.as_bytes(), &hash)
                .is_ok()
        }),
        Kind::Bcrypt => bcrypt::verify(given, stored).unwrap_or(false),
        Kind::Plain => {
            // Equal lengths first would leak the length: compare digests.
            let a = digest(stored);
            let b = digest(given);
            bool::from(a.ct_eq(&b))
        }
    }
}

/// A fixed-size digest of `s`, for a comparison whose time does not depend
/// on where two strings differ nor on their lengths.
fn digest(s: &str) -> [u8; 20] {
    use sha1::Digest;
    sha1::Sha1::digest(s.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHasher, SaltString};

    #[test]
    fn an_argon2id_phc_string_is_checked() {
        let salt = SaltString::encode_b64(b"sixteen byte salt").unwrap();
        let hash = Argon2::default()
            .hash_password(b"correct-horse", &salt)
            .unwrap()
            .to_string();
        assert_eq!(kind(&hash), Kind::Argon2);
        assert!(matches(&hash, "correct-horse"));
        assert!(!matches(&hash, "correct-horse "));
    }

    #[test]
    fn a_bcrypt_hash_is_checked() {
        let hash = bcrypt::hash("correct-horse", 4).unwrap();
        assert_eq!(kind(&hash), Kind::Bcrypt);
        assert!(matches(&hash, "correct-horse"));
        assert!(!matches(&hash, "wrong"));
    }

    #[test]
    fn plain_text_is_compared_whole() {
        assert!(matches("correct-horse", "correct-horse"));
        assert!(!matches("correct-horse", "correct-hors"));
        assert!(!matches("correct-horse", ""));
        assert!(!matches("", "x"));
    }

    #[test]
    fn a_malformed_hash_matches_nothing() {
        assert!(!matches("$argon2id$garbage", "$argon2id$garbage"));
        assert!(!matches("$2b$garbage", "$2b$garbage"));
    }
}
