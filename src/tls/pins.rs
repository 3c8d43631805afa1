//! SPKI pins (RFC 7469 §2.4): the SHA-256 digest of a certificate's DER-encoded
//! SubjectPublicKeyInfo, in base64 (RFC 4648 §4, padded: 44 characters). A pin names a key,
//! not a certificate, so it survives a renewal that keeps the key; `curl --pinnedpubkey
//! sha256//PIN` and mobile pinning libraries compare the same digest.
//!
//! The SPKI is read by `rustls-webpki` (already rustls' certificate parser), which gives it
//! with its outer SEQUENCE, exactly as `openssl x509 -pubkey | openssl pkey -pubin -outform
//! der` writes it.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use sha2::{Digest as _, Sha256};

/// Why a certificate or a pin could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error("cannot read certificates from {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{path} holds no PEM certificate")]
    Empty { path: String },
    #[error("certificate {index} of {path} is not a valid X.509 v3 certificate: {reason}")]
    Parse {
        path: String,
        index: usize,
        reason: String,
    },
}

/// The pin of one DER certificate.
pub fn spki_pin(certificate: &CertificateDer<'_>) -> Result<String, webpki::Error> {
    let parsed = webpki::EndEntityCert::try_from(certificate)?;
    let spki = parsed.subject_public_key_info();
    Ok(STANDARD.encode(Sha256::digest(spki.as_ref())))
}

/// Every certificate of a PEM file, leaf first (as servers send them).
pub fn read_chain(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, PinError> {
    let shown = path.display().to_string();
    let chain = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|error| PinError::Read {
            path: shown.clone(),
            reason: error.to_string(),
        })?;
    if chain.is_empty() {
        return Err(PinError::Empty { path: shown });
    }
    Ok(chain)
}

/// The pins of every certificate in a PEM file, in order (the leaf's first).
pub fn file_pins(path: &std::path::Path) -> Result<Vec<String>, PinError> {
    read_chain(path)?
        .iter()
        .enumerate()
        .map(|(index, cert)| {
            spki_pin(cert).map_err(|error| PinError::Parse {
                path: path.display().to_string(),
                index: index + 1,
                reason: error.to_string(),
            })
        })
        .collect()
}

/// A pin as an operator writes it: base64 of 32 bytes, optionally after `sha256//` (curl's
/// form) or `pin-sha256=` (RFC 7469's directive, quotes allowed).
pub fn parse_pin(text: &str) -> Result<String, String> {
    let trimmed = text.trim();
    let bare = trimmed
        .strip_prefix("sha256//")
        .or_else(|| trimmed.strip_prefix("pin-sha256="))
        .unwrap_or(trimmed)
        .trim_matches('"');
    match STANDARD.decode(bare) {
        Ok(digest) if digest.len() == 32 => Ok(bare.to_owned()),
        _ => Err(format!(
            "{text:?} is not a SHA-256 pin (base64 of 32 bytes, 44 characters)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_base64_sha256_digests() {
        let pin = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
        assert_eq!(parse_pin(pin), Ok(pin.to_owned()));
        assert_eq!(parse_pin(&format!("sha256//{pin}")), Ok(pin.to_owned()));
        assert_eq!(
            parse_pin(&format!("pin-sha256=\"{pin}\"")),
            Ok(pin.to_owned())
        );
        assert!(parse_pin("abc").is_err());
        assert!(parse_pin("47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuA==").is_err());
    }

    #[test]
    fn a_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("empty.pem");
        std::fs::write(&path, "no pem here\n").expect("write");
        assert!(matches!(file_pins(&path), Err(PinError::Empty { .. })));
        assert!(matches!(
            file_pins(&dir.path().join("missing.pem")),
            Err(PinError::Read { .. })
        ));
    }
}
