//! Standard Webhooks signing (<https://www.standardwebhooks.com>, spec document
//! `spec/standard-webhooks.md`, "Signature scheme"): a symmetric secret `whsec_<base64 key>`,
//! and `webhook-signature: v1,<base64 HMAC-SHA256(key, "{webhook-id}.{webhook-timestamp}.{body}")>`.
//!
//! HMAC-SHA256 comes from RustCrypto's `hmac` + `sha2` (already in the tree through sqlx), base64
//! from `base64`; nothing here is hand-rolled crypto.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The prefix of a Standard Webhooks symmetric secret.
const PREFIX: &str = "whsec_";
/// Key bytes of a new secret (the spec asks for 24 to 64).
const KEY_BYTES: usize = 32;

/// An endpoint's signing secret: `whsec_` and the base64 of the key bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    key: Vec<u8>,
}

/// A secret that is not `whsec_<base64>`.
#[derive(Debug, thiserror::Error)]
#[error("a webhook secret is `whsec_` followed by base64")]
pub struct BadSecret;

/// The operating system's random source failed (no entropy: nothing safe to sign with).
#[derive(Debug, thiserror::Error)]
#[error("no randomness for a webhook secret: {0}")]
pub struct NoRandomness(String);

impl Secret {
    /// A fresh random secret.
    pub fn generate() -> Result<Self, NoRandomness> {
        let mut key = vec![0u8; KEY_BYTES];
        getrandom::fill(&mut key).map_err(|e| NoRandomness(e.to_string()))?;
        Ok(Self { key })
    }

    /// Parses `whsec_<base64>`.
    pub fn parse(text: &str) -> Result<Self, BadSecret> {
        let encoded = text.strip_prefix(PREFIX).ok_or(BadSecret)?;
        let key = STANDARD.decode(encoded).map_err(|_| BadSecret)?;
        if key.is_empty() {
            return Err(BadSecret);
        }
        Ok(Self { key })
    }

    /// `whsec_<base64>`, the form shown once at creation and stored.
    pub fn expose(&self) -> String {
        format!("{PREFIX}{}", STANDARD.encode(&self.key))
    }

    /// The `webhook-signature` header value for one message: `v1,<base64 HMAC-SHA256>` of
    /// `"{id}.{timestamp}.{body}"`; `timestamp` in seconds since the Unix epoch.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        // HMAC takes keys of any length: this cannot fail.
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.key) {
            Ok(mac) => mac,
            Err(_) => return String::new(),
        };
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_the_reference_message_of_the_standard_webhooks_documentation() {
        // The example of the Standard Webhooks reference libraries' test suites.
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("secret");
        let signature = secret.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn a_new_secret_round_trips_and_differs_every_time() {
        let one = Secret::generate().expect("random");
        let two = Secret::generate().expect("random");
        assert_ne!(one, two);
        let text = one.expose();
        assert!(text.starts_with("whsec_"));
        assert_eq!(Secret::parse(&text).expect("parse"), one);
        assert_eq!(one.key.len(), 32);
        assert!(Secret::parse("whsec_").is_err());
        assert!(Secret::parse("sk_abc").is_err());
        assert!(Secret::parse("whsec_!!").is_err());
        assert_eq!(format!("{one:?}"), "Secret(…)");
    }
}
