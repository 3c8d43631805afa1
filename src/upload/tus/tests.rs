use super::*;

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[test]
fn the_version_header_must_be_1_0_0() {
    assert!(check_resumable(Some("1.0.0")).is_ok());
    assert!(matches!(check_resumable(None), Err(TusError::Version)));
    assert!(matches!(
        check_resumable(Some("0.2.2")),
        Err(TusError::Version)
    ));
}

#[test]
fn sizes_are_plain_non_negative_integers() {
    assert_eq!(parse_size("Upload-Offset", "0").ok(), Some(0));
    assert_eq!(parse_size("Upload-Length", " 1024 ").ok(), Some(1024));
    for bad in [
        "",
        "-1",
        "+5",
        "1e3",
        "0x10",
        "1 2",
        "99999999999999999999999",
    ] {
        assert!(parse_size("Upload-Offset", bad).is_err(), "{bad:?}");
    }
}

#[test]
fn metadata_gives_name_title_visibility_and_json() -> Result<(), TusError> {
    let header = format!(
        "filename {},title {},visibility {},metadata {},filetype {},is_confidential",
        b64("trip.mp4"),
        b64("  Summer\n trip  "),
        b64("private"),
        b64(r#"{"album":"2026"}"#),
        b64("video/mp4"),
    );
    let fields = parse_metadata(&header)?;
    assert_eq!(fields.filename.as_deref(), Some("trip.mp4"));
    assert_eq!(fields.title.as_deref(), Some("Summer trip"));
    assert_eq!(fields.visibility, Visibility::Private);
    assert_eq!(fields.metadata, Some(serde_json::json!({"album": "2026"})));
    // Uppy's `name`, unpadded base64, an empty header.
    let fields = parse_metadata(&format!("name {}", b64("a.mov").trim_end_matches('=')))?;
    assert_eq!(fields.filename.as_deref(), Some("a.mov"));
    assert_eq!(parse_metadata("")?, UploadFields::default());
    Ok(())
}

#[test]
fn bad_metadata_is_refused() {
    for bad in [
        "title !!!".to_owned(),
        format!("title {},title {}", b64("a"), b64("b")),
        format!("title {} extra", b64("a")),
        format!("visibility {}", b64("secret")),
        format!(
            "title {}",
            base64::engine::general_purpose::STANDARD.encode([0xff, 0xfe])
        ),
        "a,,b".to_owned(),
        "x".repeat(MAX_METADATA_HEADER + 1),
    ] {
        assert!(
            matches!(parse_metadata(&bad), Err(TusError::InvalidHeader { .. })),
            "{bad:?}"
        );
    }
    // Client metadata follows the one rule of every upload (see `properties::metadata`).
    for bad in [
        b64("[1,2]"),
        b64("{not json"),
        b64(&format!("{{\"a\":\"{}\"}}", "x".repeat(16_400))),
    ] {
        assert!(
            matches!(
                parse_metadata(&format!("metadata {bad}")),
                Err(TusError::Upload(crate::upload::UploadError::Metadata(_)))
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn checksums_are_verified_as_the_body_streams() -> Result<(), TusError> {
    // sha1("hello world"), as `printf 'hello world' | openssl sha1 -binary | base64` gives.
    let expected = parse_checksum("sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0=")?;
    let mut hasher = Hasher::new(expected.algorithm);
    hasher.update(b"hello ");
    hasher.update(b"world");
    assert!(hasher.matches(&expected));
    let mut hasher = Hasher::new(expected.algorithm);
    hasher.update(b"hello there");
    assert!(!hasher.matches(&expected));
    let sha256 = parse_checksum("sha256 uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek=")?;
    let mut hasher = Hasher::new(sha256.algorithm);
    hasher.update(b"hello world");
    assert!(hasher.matches(&sha256));
    assert!(matches!(
        parse_checksum("crc32 AAAAAA=="),
        Err(TusError::UnsupportedChecksum(_))
    ));
    assert!(parse_checksum("sha1").is_err());
    assert!(parse_checksum("sha1 AAAA").is_err(), "wrong digest length");
    Ok(())
}
