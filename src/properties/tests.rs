use serde_json::json;

use super::*;

fn declared(pairs: &[&str]) -> Properties {
    Properties::new(
        pairs
            .iter()
            .map(|p| parse_property(p).expect("valid property"))
            .collect(),
    )
}

fn context() -> Context {
    Context {
        claims: Some(json!({"sub": "alice", "tier": "pro", "org": {"id": 42}})),
        request: RequestFacts {
            country: "DE".into(),
            user_agent: Some("curl".into()),
            content_type: Some("video/mp4".into()),
        },
    }
}

#[test]
fn the_first_scalar_match_is_the_value_and_no_match_is_absent() {
    let properties = declared(&[
        "album=$.metadata.album",
        "tier=$.claims.tier",
        "org=$.claims.org.id",
        "country=$.request.country",
        "codec=$.probe.streams[?@.codec_type == 'video'].codec_name",
        "first_tag=$.metadata.tags[*]",
        "hd=$.metadata.hd",
        "missing=$.metadata.nope",
        "object=$.metadata",
    ]);
    let metadata = json!({"album": "Summer", "tags": ["beach", "sea"], "hd": true});
    let probe = json!({
        "streams": [{"codec_type": "audio", "codec_name": "aac"},
                    {"codec_type": "video", "codec_name": "h264"}],
        "format": {"filename": "/srv/media/sources/x", "format_name": "mov,mp4"}
    });
    let document = Properties::document(Some(&metadata), Some(&probe), &context());
    let found = properties.evaluate(&document);
    assert_eq!(found["album"], "Summer");
    assert_eq!(found["tier"], "pro");
    assert_eq!(found["org"], 42);
    assert_eq!(found["country"], "DE");
    assert_eq!(found["codec"], "h264");
    assert_eq!(found["first_tag"], "beach");
    assert_eq!(found["hd"], true);
    assert!(!found.contains_key("missing"));
    assert!(!found.contains_key("object"), "objects are not values");
    assert!(document["probe"]["format"].get("filename").is_none());
}

#[test]
fn before_the_probe_probe_properties_are_absent() {
    let properties = declared(&["codec=$.probe.streams[0].codec_name", "c=$.request.country"]);
    let document = Properties::document(None, None, &context());
    let found = properties.evaluate(&document);
    assert_eq!(found.len(), 1);
    assert_eq!(found["c"], "DE");
}

#[test]
fn long_strings_are_cut_at_a_character_boundary() {
    let properties = declared(&["note=$.metadata.note"]);
    let note = "é".repeat(MAX_VALUE_BYTES);
    let metadata = json!({ "note": note });
    let found = properties.evaluate(&Properties::document(Some(&metadata), None, &context()));
    let kept = found["note"].as_str().expect("string");
    assert!(kept.len() <= MAX_VALUE_BYTES && kept.len() >= MAX_VALUE_BYTES - 1);
    assert!(kept.chars().all(|c| c == 'é'));
}

#[test]
fn an_invalid_expression_is_refused_with_its_position() {
    let error = parse_property("codec=$.probe.streams[?@.x ==]").expect_err("invalid");
    assert!(error.contains("property `codec`"), "{error}");
    assert!(error.contains("position"), "{error}");
    assert!(error.contains('^'), "{error}");
    let position: usize = error
        .split("position ")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .and_then(|n| n.parse().ok())
        .expect("a number after `position`");
    assert!((2..=31).contains(&position), "{error}");
    assert!(parse_property("no-equals").is_err());
    assert!(parse_property("1st=$.a").is_err());
    assert!(parse_property("has space=$.a").is_err());
    assert!(parse_property("ok_name=$.a").is_ok());
}

#[test]
fn labels_must_name_declared_unreserved_properties() {
    let args = |props: &[&str], labels: &[&str]| PropertyArgs {
        properties: props
            .iter()
            .map(|p| parse_property(p).expect("p"))
            .collect(),
        metric_labels: labels.iter().map(|l| (*l).to_owned()).collect(),
        metric_label_cap: 32,
    };
    assert!(args(&["tier=$.claims.tier"], &["tier"]).validate().is_ok());
    assert!(matches!(
        args(&["tier=$.claims.tier"], &["plan"]).validate(),
        Err(PropertyConfigError::UnknownLabel(_))
    ));
    assert!(matches!(
        args(&["country=$.request.country"], &["country"]).validate(),
        Err(PropertyConfigError::ReservedLabel(_))
    ));
    assert!(matches!(
        args(&["a=$.x", "a=$.y"], &[]).validate(),
        Err(PropertyConfigError::Duplicate(_))
    ));
    let mut capped = args(&[], &[]);
    capped.metric_label_cap = 0;
    assert!(matches!(
        capped.validate(),
        Err(PropertyConfigError::Cap(0))
    ));
}
