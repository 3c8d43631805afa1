//! `GET /api/v1/tls/pins`: the certificate pins an app may pin (RFC 7469 SPKI SHA-256).

use actix_web::http::StatusCode;
use actix_web::{get, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorBody};
use crate::tls::Tls;

/// The pins of this server: base64 SHA-256 digests of SubjectPublicKeyInfo (RFC 7469 §2.4).
#[derive(Debug, Serialize, ToSchema)]
pub struct TlsPins {
    /// Every pin, the current one first: an app should accept a connection whose leaf key
    /// matches any of them.
    #[schema(example = json!(["47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="]))]
    pub pins: Vec<String>,
    /// The pin of the certificate in use now (served by reel, or `--tls-pin-cert` when TLS ends
    /// in front of it); null when only backup pins are configured.
    pub current: Option<String>,
    /// Pins of spare keys (`--tls-backup-pin`), so a key change does not lock apps out.
    pub backup: Vec<String>,
    /// The same pins in `curl --pinnedpubkey` form (`sha256//…;sha256//…`).
    pub curl: String,
}

/// SPKI pins of the certificate in use and of the backup keys.
#[utoipa::path(
    tag = "tls",
    responses(
        (status = 200, description = "The pins: the current certificate's first, then the backups", body = TlsPins),
        (status = 404, description = "This server publishes no pins (no --tls-cert, --tls-pin-cert or --tls-backup-pin)", body = ErrorBody),
    )
)]
#[get("/api/v1/tls/pins")]
pub async fn pins(tls: Option<web::Data<Tls>>) -> Result<web::Json<TlsPins>, ApiError> {
    let set = tls.map(|tls| tls.pins()).unwrap_or(crate::tls::PinSet {
        current: None,
        backup: Vec::new(),
    });
    let pins: Vec<String> = set.current.iter().chain(&set.backup).cloned().collect();
    if pins.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_pins",
            "This server publishes no certificate pins.",
        ));
    }
    let curl = pins
        .iter()
        .map(|pin| format!("sha256//{pin}"))
        .collect::<Vec<_>>()
        .join(";");
    Ok(web::Json(TlsPins {
        pins,
        current: set.current,
        backup: set.backup,
        curl,
    }))
}
