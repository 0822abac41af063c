//! The crypto of DingTalk's HTTP push (event callbacks): the signature over a
//! push, the decryption of its `encrypt` field and the encrypted `success`
//! reply. See "HTTP push" in `docs/events.md`; after DingTalk's
//! `DingCallbackCrypto`
//! (<https://open.dingtalk.com/document/development/callback-event-message-body-encryption-and-decryption>).
//!
//! Pure code: no I/O, no clock, no randomness. Callers pass the timestamp, the
//! nonce and the 16 random bytes of each encryption.
//!
//! - Key: `base64_decode(EncodingAESKey + "=")`, 32 bytes, AES-256-CBC with the
//!   IV = the key's first 16 bytes and no cipher-level padding.
//! - Padding: PKCS#7 with a block size of 32 (1 to 32 bytes), done by hand.
//! - Plaintext: `random(16) ‖ msg_len (u32 big-endian) ‖ msg ‖ owner_key`,
//!   where the owner key is the AppKey (console-configured internal app), the
//!   CorpId (legacy `register_call_back`), the suiteKey or the customKey.
//! - `encrypt = base64(AES-CBC(pad32(plaintext)))`, standard base64.
//! - Signature: `sha1_hex(concat(sort([token, timestamp, nonce, encrypt])))`.

use std::fmt;

use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};

type Aes256CbcEnc = cbc::Encryptor<aes::Aes256>;
type Aes256CbcDec = cbc::Decryptor<aes::Aes256>;

/// Length of an EncodingAESKey, in characters.
const ENCODING_AES_KEY_LEN: usize = 43;
/// AES block size; the ciphertext is a whole number of these.
const AES_BLOCK: usize = 16;
/// Block size of DingTalk's PKCS#7 padding (not the AES block size).
const PAD_BLOCK: usize = 32;
/// The random prefix and the big-endian length field that open the plaintext.
const RANDOM_LEN: usize = 16;
const HEADER_LEN: usize = RANDOM_LEN + 4;

/// The base64 engine for the EncodingAESKey. 43 characters carry 258 bits of
/// which the key uses 256: the last character's two low bits are ignored (as
/// Java's decoder does), so keys such as the documented
/// `1234567890123456789012345678901234567890123` decode.
const KEY_ENGINE: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
);

/// Why a key could not be used or a push was refused. No message carries the
/// token, the key or any plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("the token is empty")]
    EmptyToken,
    #[error("the owner key (AppKey, CorpId, suiteKey or customKey) is empty")]
    EmptyOwnerKey,
    #[error("the aesKey must be 43 letters and digits, got {0} characters")]
    AesKeyLength(usize),
    #[error("the aesKey must be 43 letters and digits, it has other characters")]
    AesKeyCharacters,
    #[error("the signature does not match")]
    BadSignature,
    #[error("the encrypt field is not valid base64: {0}")]
    Base64(#[source] base64::DecodeError),
    #[error("the ciphertext is {0} bytes, not a non-zero multiple of 16")]
    CiphertextLength(usize),
    #[error("the plaintext is {0} bytes, too short for the random prefix and the length field")]
    PlaintextTooShort(usize),
    #[error("the message length field says {declared} bytes, but only {available} follow it")]
    MessageLength { declared: usize, available: usize },
    #[error("the message is for another app (owner key differs)")]
    OwnerKeyMismatch,
    #[error("the message is not valid UTF-8")]
    NotUtf8,
}

/// The body of the answer to a push: HTTP 200 with this as JSON. Note the
/// camel-case `timeStamp`, where the push's query string has `timestamp`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    pub msg_signature: String,
    #[serde(rename = "timeStamp")]
    pub time_stamp: String,
    pub nonce: String,
    pub encrypt: String,
}

/// The token, the AES key and the owner key of one app's HTTP push.
/// `Debug` shows the owner key only.
#[derive(Clone)]
pub struct CallbackCrypto {
    token: String,
    key: [u8; 32],
    owner_key: String,
}

impl fmt::Debug for CallbackCrypto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallbackCrypto")
            .field("token", &"***")
            .field("key", &"***")
            .field("owner_key", &self.owner_key)
            .finish()
    }
}

impl CallbackCrypto {
    /// `encoding_aes_key` is the 43-character EncodingAESKey of the console;
    /// `owner_key` is what DingTalk appends to each plaintext (the AppKey for
    /// a console-configured internal app, see the module doc).
    pub fn new(token: &str, encoding_aes_key: &str, owner_key: &str) -> Result<Self, CryptoError> {
        if token.is_empty() {
            return Err(CryptoError::EmptyToken);
        }
        if owner_key.is_empty() {
            return Err(CryptoError::EmptyOwnerKey);
        }
        let chars = encoding_aes_key.chars().count();
        if chars != ENCODING_AES_KEY_LEN {
            return Err(CryptoError::AesKeyLength(chars));
        }
        if !encoding_aes_key.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(CryptoError::AesKeyCharacters);
        }
        // 43 letters and digits plus "=" always decode to 32 bytes with this engine.
        let decoded = KEY_ENGINE
            .decode(format!("{encoding_aes_key}="))
            .map_err(|_| CryptoError::AesKeyCharacters)?;
        let key: [u8; 32] = decoded
            .try_into()
            .map_err(|_| CryptoError::AesKeyCharacters)?;
        Ok(Self {
            token: token.to_owned(),
            key,
            owner_key: owner_key.to_owned(),
        })
    }

    /// The owner key that every plaintext must end with.
    pub fn owner_key(&self) -> &str {
        &self.owner_key
    }

    /// The lower-case hex SHA-1 of the token, timestamp, nonce and encrypt,
    /// sorted and concatenated. (Sorted by bytes; Java sorts by UTF-16 units,
    /// which is the same order for the ASCII values DingTalk sends.)
    pub fn signature(&self, timestamp: &str, nonce: &str, encrypt: &str) -> String {
        let mut parts = [self.token.as_str(), timestamp, nonce, encrypt];
        parts.sort_unstable();
        let mut hasher = Sha1::new();
        for part in parts {
            hasher.update(part.as_bytes());
        }
        hex_lower(&hasher.finalize())
    }

    /// Whether `signature` is the signature of the other three, compared in
    /// constant time (the length is not secret).
    pub fn verify(&self, signature: &str, timestamp: &str, nonce: &str, encrypt: &str) -> bool {
        let expected = self.signature(timestamp, nonce, encrypt);
        constant_time_eq(expected.as_bytes(), signature.as_bytes())
    }

    /// The message inside `encrypt`, after checking the ciphertext's shape,
    /// the length field and the owner key. Does not check the signature: use
    /// [`CallbackCrypto::open`] for a push.
    pub fn decrypt(&self, encrypt: &str) -> Result<String, CryptoError> {
        let plain = self.decipher(encrypt)?;
        if plain.len() < HEADER_LEN {
            return Err(CryptoError::PlaintextTooShort(plain.len()));
        }
        let len_field: [u8; 4] = plain[RANDOM_LEN..HEADER_LEN]
            .try_into()
            .expect("the length field is 4 bytes");
        let declared = u32::from_be_bytes(len_field) as usize;
        let rest = &plain[HEADER_LEN..];
        if declared > rest.len() {
            return Err(CryptoError::MessageLength {
                declared,
                available: rest.len(),
            });
        }
        let (msg, owner) = rest.split_at(declared);
        if owner != self.owner_key.as_bytes() {
            return Err(CryptoError::OwnerKeyMismatch);
        }
        String::from_utf8(msg.to_vec()).map_err(|_| CryptoError::NotUtf8)
    }

    /// `msg` encrypted for DingTalk: base64 of AES-256-CBC over
    /// `random ‖ len ‖ msg ‖ owner_key`, padded to a multiple of 32.
    /// `random` may be any bytes (DingTalk's library uses 16 letters and digits).
    ///
    /// # Panics
    /// If `msg` is 4 GiB or longer (the length field is a `u32`).
    pub fn encrypt(&self, msg: &str, random: [u8; 16]) -> String {
        let msg_len = u32::try_from(msg.len()).expect("a message shorter than 4 GiB");
        let mut buf = Vec::with_capacity(HEADER_LEN + msg.len() + self.owner_key.len() + PAD_BLOCK);
        buf.extend_from_slice(&random);
        buf.extend_from_slice(&msg_len.to_be_bytes());
        buf.extend_from_slice(msg.as_bytes());
        buf.extend_from_slice(self.owner_key.as_bytes());
        pad32(&mut buf);
        let mut cipher = Aes256CbcEnc::new((&self.key).into(), self.key[..AES_BLOCK].into());
        for block in buf.chunks_exact_mut(AES_BLOCK) {
            cipher.encrypt_block_mut(block.into());
        }
        STANDARD.encode(&buf)
    }

    /// A push's message: [`CallbackCrypto::verify`], then [`CallbackCrypto::decrypt`].
    pub fn open(
        &self,
        signature: &str,
        timestamp: &str,
        nonce: &str,
        encrypt: &str,
    ) -> Result<String, CryptoError> {
        if !self.verify(signature, timestamp, nonce, encrypt) {
            return Err(CryptoError::BadSignature);
        }
        self.decrypt(encrypt)
    }

    /// The reply body carrying `msg` (DingTalk expects `success`), signed over
    /// `timestamp` (milliseconds, as a string) and `nonce`.
    pub fn reply(&self, msg: &str, timestamp: &str, nonce: &str, random: [u8; 16]) -> Reply {
        let encrypt = self.encrypt(msg, random);
        Reply {
            msg_signature: self.signature(timestamp, nonce, &encrypt),
            time_stamp: timestamp.to_owned(),
            nonce: nonce.to_owned(),
            encrypt,
        }
    }

    /// base64 → AES-256-CBC → unpadded plaintext bytes.
    fn decipher(&self, encrypt: &str) -> Result<Vec<u8>, CryptoError> {
        let mut buf = STANDARD.decode(encrypt).map_err(CryptoError::Base64)?;
        if buf.is_empty() || buf.len() % AES_BLOCK != 0 {
            return Err(CryptoError::CiphertextLength(buf.len()));
        }
        let mut cipher = Aes256CbcDec::new((&self.key).into(), self.key[..AES_BLOCK].into());
        for block in buf.chunks_exact_mut(AES_BLOCK) {
            cipher.decrypt_block_mut(block.into());
        }
        unpad32(&mut buf);
        Ok(buf)
    }
}

/// PKCS#7 padding to a multiple of 32: 1 to 32 bytes, each equal to the count.
fn pad32(buf: &mut Vec<u8>) {
    let pad = PAD_BLOCK - buf.len() % PAD_BLOCK;
    buf.resize(buf.len() + pad, pad as u8);
}

/// Strips the padding named by the last byte when it is 1 to 32 (and no longer
/// than the buffer), otherwise nothing, as DingTalk's library does. The pad
/// bytes themselves are not checked.
fn unpad32(buf: &mut Vec<u8>) {
    if let Some(&last) = buf.last() {
        let pad = usize::from(last);
        if (1..=PAD_BLOCK).contains(&pad) && pad <= buf.len() {
            buf.truncate(buf.len() - pad);
        }
    }
}

fn hex_lower(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Equality whose time depends on the lengths only, not on where the bytes differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Section 8.3, first vector (the console FAQ's `success`).
    const V1_TOKEN: &str = "123456";
    const V1_AES_KEY: &str = "1234567890123456789012345678901234567890123";
    const V1_OWNER: &str = "dingsnotzck6pm5veliw";
    const V1_TIMESTAMP: &str = "1614767836";
    const V1_NONCE: &str = "A7Co0cJLMzIDtMMI";
    const V1_SIGNATURE: &str = "9a95a004dd16f5c307e849b994173f76aa26e5eb";
    const V1_ENCRYPT: &str =
        "YvkvaGe4hQxd3VxRmEty0dVlnCOAqwf56xwTRHDHoOURqhalbmBJQk5FNcRk42Gl5T0YQXZNwpwWSm1xAFJ5ZA==";

    /// Section 8.3, second vector (an ISV `check_create_suite_url`).
    const V2_TOKEN: &str = "123456";
    const V2_AES_KEY: &str = "4g5j64qlyl3zvetqxz5jiocdr586fn2zvjpa8zls3ij";
    const V2_OWNER: &str = "suite4xxxxxxxxxxxxxxx";
    const V2_TIMESTAMP: &str = "1445827045067";
    const V2_NONCE: &str = "nEXhMP4r";
    const V2_SIGNATURE: &str = "5a65ceeef9aab2d149439f82dc191dd6c5cbe2c0";
    const V2_ENCRYPT: &str = "1a3NBxmCFwkCJvfoQ7WhJHB+iX3qHPsc9JbaDznE1i03peOk1LaOQoRz3+nlyGNhwmwJ3vDMG+OzrHMeiZI7gTRWVdUBmfxjZ8Ej23JVYa9VrYeJ5as7XM/ZpulX8NEQis44w53h1qAgnC3PRzM7Zc/D6Ibr0rgUathB6zRHP8PYrfgnNOS9PhSBdHlegK+AGGanfwjXuQ9+0pZcy0w9lQ==";
    const V2_PLAINTEXT: &str = r#"{"EventType":"check_create_suite_url","Random":"LPIdSnlF","TestSuiteKey":"suite4xxxxxxxxxxxxxxx"}"#;

    fn v1() -> CallbackCrypto {
        CallbackCrypto::new(V1_TOKEN, V1_AES_KEY, V1_OWNER).unwrap()
    }

    fn v2() -> CallbackCrypto {
        CallbackCrypto::new(V2_TOKEN, V2_AES_KEY, V2_OWNER).unwrap()
    }

    /// The raw padded plaintext, before unpadding.
    fn padded_plaintext(crypto: &CallbackCrypto, encrypt: &str) -> Vec<u8> {
        let mut buf = STANDARD.decode(encrypt).unwrap();
        let mut cipher = Aes256CbcDec::new((&crypto.key).into(), crypto.key[..AES_BLOCK].into());
        for block in buf.chunks_exact_mut(AES_BLOCK) {
            cipher.decrypt_block_mut(block.into());
        }
        buf
    }

    #[test]
    fn first_reference_vector_signature_matches() {
        let crypto = v1();
        assert_eq!(
            crypto.signature(V1_TIMESTAMP, V1_NONCE, V1_ENCRYPT),
            V1_SIGNATURE
        );
        assert!(crypto.verify(V1_SIGNATURE, V1_TIMESTAMP, V1_NONCE, V1_ENCRYPT));
    }

    #[test]
    fn first_reference_vector_decrypts_to_success_for_its_owner_key() {
        let crypto = v1();
        assert_eq!(
            crypto
                .open(V1_SIGNATURE, V1_TIMESTAMP, V1_NONCE, V1_ENCRYPT)
                .unwrap(),
            "success"
        );
        let padded = padded_plaintext(&crypto, V1_ENCRYPT);
        assert_eq!(padded.last(), Some(&17), "the documented pad byte");
        let plain = crypto.decipher(V1_ENCRYPT).unwrap();
        assert!(plain.ends_with(V1_OWNER.as_bytes()));
    }

    #[test]
    fn second_reference_vector_signature_matches() {
        let crypto = v2();
        assert_eq!(
            crypto.signature(V2_TIMESTAMP, V2_NONCE, V2_ENCRYPT),
            V2_SIGNATURE
        );
        assert!(crypto.verify(V2_SIGNATURE, V2_TIMESTAMP, V2_NONCE, V2_ENCRYPT));
    }

    #[test]
    fn second_reference_vector_decrypts_to_check_create_suite_url_for_its_suite_key() {
        let crypto = v2();
        assert_eq!(
            crypto
                .open(V2_SIGNATURE, V2_TIMESTAMP, V2_NONCE, V2_ENCRYPT)
                .unwrap(),
            V2_PLAINTEXT
        );
        let padded = padded_plaintext(&crypto, V2_ENCRYPT);
        assert_eq!(padded.last(), Some(&22), "the documented pad byte");
        let plain = crypto.decipher(V2_ENCRYPT).unwrap();
        assert!(plain.ends_with(V2_OWNER.as_bytes()));
    }

    /// The reference does not give the random prefixes; they are read back from
    /// the vectors. Encrypting again with them must give the same bytes,
    /// padding included.
    #[test]
    fn encrypt_reproduces_the_reference_ciphertexts_given_their_random_prefix() {
        for (crypto, encrypt, msg) in [
            (v1(), V1_ENCRYPT, "success"),
            (v2(), V2_ENCRYPT, V2_PLAINTEXT),
        ] {
            let plain = crypto.decipher(encrypt).unwrap();
            let random: [u8; 16] = plain[..16].try_into().unwrap();
            assert_eq!(crypto.encrypt(msg, random), encrypt);
        }
    }

    #[test]
    fn encrypt_then_decrypt_round_trips() {
        let crypto = v1();
        for msg in [
            "",
            "success",
            "{\"EventType\":\"user_add_org\",\"UserId\":[\"张三\"]}",
            &"x".repeat(1000),
        ] {
            let encrypt = crypto.encrypt(msg, *b"0123456789abcdef");
            assert_eq!(crypto.decrypt(&encrypt).unwrap(), msg);
        }
    }

    #[test]
    fn a_layout_of_a_multiple_of_32_bytes_gets_a_full_block_of_padding_and_round_trips() {
        let crypto = v1();
        // 16 + 4 + 24 + 20 (owner key) = 64 bytes.
        let msg = "a".repeat(64 - HEADER_LEN - V1_OWNER.len());
        let encrypt = crypto.encrypt(&msg, [7; 16]);
        let padded = padded_plaintext(&crypto, &encrypt);
        assert_eq!(padded.len(), 96);
        assert!(padded[64..].iter().all(|&b| b == 32));
        assert_eq!(crypto.decrypt(&encrypt).unwrap(), msg);
    }

    #[test]
    fn encrypt_is_deterministic_for_a_fixed_random_and_differs_with_another() {
        let crypto = v1();
        assert_eq!(
            crypto.encrypt("success", [1; 16]),
            crypto.encrypt("success", [1; 16])
        );
        assert_ne!(
            crypto.encrypt("success", [1; 16]),
            crypto.encrypt("success", [2; 16])
        );
    }

    #[test]
    fn a_message_for_another_owner_key_is_refused() {
        let other = CallbackCrypto::new(V1_TOKEN, V1_AES_KEY, "dingotherapp0000000").unwrap();
        assert_eq!(
            other.decrypt(V1_ENCRYPT),
            Err(CryptoError::OwnerKeyMismatch)
        );
        assert_eq!(
            other.open(V1_SIGNATURE, V1_TIMESTAMP, V1_NONCE, V1_ENCRYPT),
            Err(CryptoError::OwnerKeyMismatch)
        );
    }

    #[test]
    fn a_tampered_ciphertext_fails_the_signature() {
        let mut bytes = STANDARD.decode(V1_ENCRYPT).unwrap();
        bytes[40] ^= 0x01;
        let tampered = STANDARD.encode(&bytes);
        assert_eq!(
            v1().open(V1_SIGNATURE, V1_TIMESTAMP, V1_NONCE, &tampered),
            Err(CryptoError::BadSignature)
        );
    }

    #[test]
    fn a_tampered_ciphertext_does_not_decrypt() {
        // Flipping a bit of the third AES block garbles that block of the
        // plaintext, where the owner key lies; the pad byte stays intact.
        let mut bytes = STANDARD.decode(V1_ENCRYPT).unwrap();
        bytes[32] ^= 0x01;
        assert_eq!(
            v1().decrypt(&STANDARD.encode(&bytes)),
            Err(CryptoError::OwnerKeyMismatch)
        );
        // Flipping a bit of the first block flips the same bit of the second
        // plaintext block: here the length field's high byte.
        let mut bytes = STANDARD.decode(V1_ENCRYPT).unwrap();
        bytes[0] ^= 0x80;
        assert!(matches!(
            v1().decrypt(&STANDARD.encode(&bytes)),
            Err(CryptoError::MessageLength { .. })
        ));
    }

    #[test]
    fn a_ciphertext_of_a_wrong_length_or_not_base64_is_refused() {
        let crypto = v1();
        assert_eq!(crypto.decrypt(""), Err(CryptoError::CiphertextLength(0)));
        let short = STANDARD.encode(&STANDARD.decode(V1_ENCRYPT).unwrap()[..63]);
        assert_eq!(
            crypto.decrypt(&short),
            Err(CryptoError::CiphertextLength(63))
        );
        assert!(matches!(
            crypto.decrypt("not base64!"),
            Err(CryptoError::Base64(_))
        ));
    }

    #[test]
    fn a_bad_signature_is_refused() {
        let crypto = v1();
        let mut wrong = V1_SIGNATURE.to_owned();
        wrong.replace_range(0..1, "0");
        assert!(!crypto.verify(&wrong, V1_TIMESTAMP, V1_NONCE, V1_ENCRYPT));
        assert!(!crypto.verify(
            &V1_SIGNATURE.to_uppercase(),
            V1_TIMESTAMP,
            V1_NONCE,
            V1_ENCRYPT
        ));
        assert!(!crypto.verify("", V1_TIMESTAMP, V1_NONCE, V1_ENCRYPT));
        assert!(!crypto.verify(V1_SIGNATURE, "1614767837", V1_NONCE, V1_ENCRYPT));
        assert_eq!(
            crypto.open(&wrong, V1_TIMESTAMP, V1_NONCE, V1_ENCRYPT),
            Err(CryptoError::BadSignature)
        );
        let other_token = CallbackCrypto::new("654321", V1_AES_KEY, V1_OWNER).unwrap();
        assert_eq!(
            other_token.open(V1_SIGNATURE, V1_TIMESTAMP, V1_NONCE, V1_ENCRYPT),
            Err(CryptoError::BadSignature)
        );
    }

    #[test]
    fn a_key_of_the_wrong_length_or_alphabet_is_refused() {
        let err = CallbackCrypto::new(V1_TOKEN, "123456789012", V1_OWNER).unwrap_err();
        assert_eq!(err, CryptoError::AesKeyLength(12));
        assert_eq!(
            err.to_string(),
            "the aesKey must be 43 letters and digits, got 12 characters"
        );
        assert_eq!(
            CallbackCrypto::new(V1_TOKEN, &format!("{V1_AES_KEY}4"), V1_OWNER).unwrap_err(),
            CryptoError::AesKeyLength(44)
        );
        let with_plus = format!("{}+", &V1_AES_KEY[..42]);
        assert_eq!(
            CallbackCrypto::new(V1_TOKEN, &with_plus, V1_OWNER).unwrap_err(),
            CryptoError::AesKeyCharacters
        );
        // 43 characters, one of them not ASCII: counted as characters, refused for the alphabet.
        let with_umlaut = format!("{}ä", &V1_AES_KEY[..42]);
        assert_eq!(
            CallbackCrypto::new(V1_TOKEN, &with_umlaut, V1_OWNER).unwrap_err(),
            CryptoError::AesKeyCharacters
        );
    }

    #[test]
    fn an_empty_token_or_owner_key_is_refused() {
        assert_eq!(
            CallbackCrypto::new("", V1_AES_KEY, V1_OWNER).unwrap_err(),
            CryptoError::EmptyToken
        );
        assert_eq!(
            CallbackCrypto::new(V1_TOKEN, V1_AES_KEY, "").unwrap_err(),
            CryptoError::EmptyOwnerKey
        );
    }

    #[test]
    fn error_messages_carry_no_secret_or_plaintext() {
        let token = "tokentokentoken";
        let key = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ";
        let crypto = CallbackCrypto::new(token, key, "dingowner").unwrap();
        let foreign = CallbackCrypto::new(token, key, "dingother").unwrap();
        let encrypt = foreign.encrypt("secret-payload", [3; 16]);
        let errors = [
            crypto.decrypt(&encrypt).unwrap_err(),
            crypto.open("bad", "1", "n", &encrypt).unwrap_err(),
            CallbackCrypto::new(token, &key[..42], "dingowner").unwrap_err(),
        ];
        for err in errors {
            let text = format!("{err} {err:?}");
            for secret in [token, key, &key[..42], "secret-payload"] {
                assert!(!text.contains(secret), "{text}");
            }
        }
    }

    #[test]
    fn debug_output_shows_neither_the_token_nor_the_key() {
        let token = "tokentokentoken";
        let key = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ";
        let crypto = CallbackCrypto::new(token, key, "dingowner").unwrap();
        let text = format!("{crypto:?} {crypto:#?}");
        assert!(!text.contains(token), "{text}");
        assert!(!text.contains(key), "{text}");
        assert!(!text.contains(&format!("{:?}", crypto.key)), "{text}");
        assert!(!text.contains(&hex_lower(&crypto.key)), "{text}");
        assert!(text.contains("dingowner"), "{text}");
    }

    #[test]
    fn reply_is_signed_and_decrypts_to_success() {
        let crypto = v1();
        let reply = crypto.reply("success", "1614767836000", "Zx4nQp8LmW2rT6yB", [9; 16]);
        assert_eq!(reply.time_stamp, "1614767836000");
        assert_eq!(reply.nonce, "Zx4nQp8LmW2rT6yB");
        assert!(crypto.verify(
            &reply.msg_signature,
            &reply.time_stamp,
            &reply.nonce,
            &reply.encrypt
        ));
        assert_eq!(
            crypto
                .open(
                    &reply.msg_signature,
                    &reply.time_stamp,
                    &reply.nonce,
                    &reply.encrypt
                )
                .unwrap(),
            "success"
        );
    }

    #[test]
    fn reply_serializes_with_camel_case_time_stamp() {
        let reply = v1().reply("success", "1614767836000", "nonce", [0; 16]);
        let json: serde_json::Value = serde_json::to_value(&reply).unwrap();
        let object = json.as_object().unwrap();
        let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["encrypt", "msg_signature", "nonce", "timeStamp"]);
        assert_eq!(json["timeStamp"], "1614767836000");
        let back: Reply = serde_json::from_value(json).unwrap();
        assert_eq!(back, reply);
    }

    #[test]
    fn unpad_strips_nothing_when_the_last_byte_is_out_of_range() {
        let mut zero = vec![1, 2, 3, 0];
        unpad32(&mut zero);
        assert_eq!(zero, [1, 2, 3, 0]);
        let mut big = vec![5; 40];
        big.push(33);
        unpad32(&mut big);
        assert_eq!(big.len(), 41);
        let mut longer_than_buffer = vec![9, 9, 9];
        unpad32(&mut longer_than_buffer);
        assert_eq!(longer_than_buffer, [9, 9, 9]);
        let mut empty = Vec::new();
        unpad32(&mut empty);
        assert!(empty.is_empty());
    }

    #[test]
    fn pad_adds_one_to_thirty_two_bytes() {
        for len in 0..=70 {
            let mut buf = vec![0xaa; len];
            pad32(&mut buf);
            let pad = buf.len() - len;
            assert!((1..=32).contains(&pad));
            assert_eq!(buf.len() % 32, 0);
            assert!(buf[len..].iter().all(|&b| usize::from(b) == pad));
            unpad32(&mut buf);
            assert_eq!(buf.len(), len);
        }
    }

    #[test]
    fn constant_time_eq_compares_bytes() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }
}
