//! Client metadata: a JSON object an upload may carry, stored and returned as the video's
//! `metadata` and read by properties as `metadata`.
//!
//! Three ways in, one rule: at most [`MAX_METADATA_BYTES`] of JSON text (RFC 8259) whose top
//! level is an object.
//! - multipart: the `metadata` part, as JSON text;
//! - raw upload: the `X-Metadata` header, the JSON text in base64url (RFC 4648 §5, padding
//!   optional);
//! - tus: the `metadata` key of `Upload-Metadata` (base64, as every tus value).

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde_json::Value;

/// Largest metadata accepted, in bytes of JSON text (16 KiB).
pub const MAX_METADATA_BYTES: usize = 16 * 1024;

/// Why client metadata was refused: `413` when too large, `400` otherwise.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    #[error("metadata is larger than {MAX_METADATA_BYTES} bytes of JSON")]
    TooLarge,
    #[error("the X-Metadata header is not base64url")]
    NotBase64,
    #[error("metadata is not valid JSON: {0}")]
    NotJson(String),
    #[error("metadata must be a JSON object (`{{…}}`)")]
    NotObject,
}

/// Parses metadata JSON text: size first, then an object.
pub fn parse(text: &[u8]) -> Result<Value, MetadataError> {
    if text.len() > MAX_METADATA_BYTES {
        return Err(MetadataError::TooLarge);
    }
    match serde_json::from_slice::<Value>(text) {
        Ok(value @ Value::Object(_)) => Ok(value),
        Ok(_) => Err(MetadataError::NotObject),
        Err(error) => Err(MetadataError::NotJson(error.to_string())),
    }
}

/// Parses an `X-Metadata` header value: base64url (padding optional) of the JSON text. The
/// encoded length is checked before decoding.
pub fn from_header(value: &str) -> Result<Value, MetadataError> {
    let value = value.trim();
    if value.len() > MAX_METADATA_BYTES.div_ceil(3) * 4 {
        return Err(MetadataError::TooLarge);
    }
    let engine = GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let bytes = engine.decode(value).map_err(|_| MetadataError::NotBase64)?;
    parse(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    #[test]
    fn an_object_up_to_the_limit_is_accepted() {
        let value = parse(br#"{"album": "2026", "n": 3}"#).expect("object");
        assert_eq!(value["album"], "2026");
        let padding = "x".repeat(MAX_METADATA_BYTES - 8);
        let at_limit = format!(r#"{{"a":"{padding}"}}"#);
        assert_eq!(at_limit.len(), MAX_METADATA_BYTES);
        assert!(parse(at_limit.as_bytes()).is_ok());
        let over = format!(r#"{{"a":"{padding}x"}}"#);
        assert_eq!(parse(over.as_bytes()), Err(MetadataError::TooLarge));
    }

    #[test]
    fn anything_but_an_object_is_refused() {
        assert_eq!(parse(b"[1, 2]"), Err(MetadataError::NotObject));
        assert_eq!(parse(b"\"text\""), Err(MetadataError::NotObject));
        assert!(matches!(parse(b"{nope"), Err(MetadataError::NotJson(_))));
        // Nesting past serde_json's recursion limit is a parse error, not a stack overflow.
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(1000), "]".repeat(1000));
        assert!(matches!(
            parse(deep.as_bytes()),
            Err(MetadataError::NotJson(_))
        ));
    }

    #[test]
    fn the_header_is_base64url_with_or_without_padding() {
        let json = r#"{"trip": "Ølberg ✓", "tags": ["a?b", ">"]}"#;
        let unpadded = URL_SAFE_NO_PAD.encode(json);
        assert_eq!(
            from_header(&unpadded).expect("unpadded")["trip"],
            "Ølberg ✓"
        );
        let padded = base64::engine::general_purpose::URL_SAFE.encode(json);
        assert!(from_header(&padded).is_ok());
        assert_eq!(from_header("not base64!"), Err(MetadataError::NotBase64));
        let huge = URL_SAFE_NO_PAD.encode("x".repeat(MAX_METADATA_BYTES + 10));
        assert_eq!(from_header(&huge), Err(MetadataError::TooLarge));
    }
}
