//! The upload metrics by country, content type and outcome, with properties as extra labels
//! (`--metric-label NAME`), each capped in distinct values.
//!
//! Series (names in `telemetry`):
//! - `reel_uploads_by_country_total{country, content_type, outcome, <labels>}`: every upload
//!   that ended, accepted or refused;
//! - `reel_upload_size_bytes{country, <labels>}`: accepted uploads' bytes, a histogram;
//! - `reel_upload_duration_seconds{country, <labels>}`: accepted uploads' wall time from the
//!   request (a tus upload: its creation) to filing, a histogram.
//!
//! Cardinality is bounded: `country` is two ASCII letters, `content_type` one of the sniffed
//! containers or `unknown`, `outcome` a stable error code, and each property label keeps the
//! first `--metric-label-cap` distinct values this process saw; later new values, and values
//! longer than [`MAX_LABEL_VALUE`] bytes, are `other`; an absent property is `none`.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use metrics::Label;
use serde_json::Value;

use crate::telemetry;

/// Longest property value used as a label value, in bytes.
pub const MAX_LABEL_VALUE: usize = 64;
/// The label value of an absent property (refused uploads have none).
pub const NONE: &str = "none";
/// The label value past the cap.
pub const OTHER: &str = "other";
/// `content_type` when no container was sniffed (the upload was refused before).
pub const UNKNOWN_TYPE: &str = "unknown";

/// The property labels of the upload metrics.
#[derive(Debug, Default)]
pub struct MetricLabels {
    slots: Vec<Slot>,
    cap: usize,
}

#[derive(Debug)]
struct Slot {
    name: String,
    seen: Mutex<HashSet<String>>,
}

/// One upload that ended, as the metrics see it.
#[derive(Debug, Clone, Copy)]
pub struct UploadEnd<'a> {
    pub country: &'a str,
    /// The sniffed container's type, or `None` when refused before one was known.
    pub content_type: Option<&'a str>,
    /// `accepted` or the refusal's error code.
    pub outcome: &'a str,
    /// Accepted uploads: their size and wall time.
    pub accepted: Option<(u64, f64)>,
    /// Properties evaluated at upload (`None`: refused, none evaluated).
    pub properties: Option<&'a BTreeMap<String, Value>>,
}

impl MetricLabels {
    pub fn new(names: &[String], cap: usize) -> Self {
        Self {
            slots: names
                .iter()
                .map(|name| Slot {
                    name: name.clone(),
                    seen: Mutex::new(HashSet::new()),
                })
                .collect(),
            cap,
        }
    }

    /// The property labels for `properties` (`None`: every label is `none`).
    pub fn labels(&self, properties: Option<&BTreeMap<String, Value>>) -> Vec<Label> {
        self.slots
            .iter()
            .map(|slot| {
                let value = properties
                    .and_then(|p| p.get(&slot.name))
                    .map_or_else(|| NONE.to_owned(), |v| self.admit(slot, v));
                Label::new(slot.name.clone(), value)
            })
            .collect()
    }

    fn admit(&self, slot: &Slot, value: &Value) -> String {
        let text = match value {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        if text.len() > MAX_LABEL_VALUE || text == OTHER || text == NONE {
            return OTHER.to_owned();
        }
        let Ok(mut seen) = slot.seen.lock() else {
            return OTHER.to_owned();
        };
        if seen.contains(&text) {
            return text;
        }
        if seen.len() >= self.cap {
            return OTHER.to_owned();
        }
        seen.insert(text.clone());
        text
    }

    /// Counts one upload that ended (see the module docs for the series).
    pub fn record(&self, end: UploadEnd<'_>) {
        let country = Label::new("country", end.country.to_owned());
        let properties = self.labels(end.properties);
        let mut counted = vec![
            country.clone(),
            Label::new(
                "content_type",
                end.content_type.unwrap_or(UNKNOWN_TYPE).to_owned(),
            ),
            Label::new("outcome", end.outcome.to_owned()),
        ];
        counted.extend(properties.iter().cloned());
        metrics::counter!(telemetry::UPLOADS_BY_COUNTRY, counted).increment(1);
        if let Some((bytes, seconds)) = end.accepted {
            let mut labels = vec![country];
            labels.extend(properties);
            metrics::histogram!(telemetry::UPLOAD_SIZE, labels.clone()).record(bytes as f64);
            metrics::histogram!(telemetry::UPLOAD_DURATION, labels).record(seconds);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn value_of(labels: &[Label], name: &str) -> String {
        labels
            .iter()
            .find(|l| l.key() == name)
            .map(|l| l.value().to_owned())
            .unwrap_or_default()
    }

    #[test]
    fn values_past_the_cap_are_other_and_known_ones_stay() {
        let labels = MetricLabels::new(&["tier".into()], 2);
        let props = |v: Value| BTreeMap::from([("tier".to_owned(), v)]);
        assert_eq!(
            value_of(&labels.labels(Some(&props(json!("free")))), "tier"),
            "free"
        );
        assert_eq!(
            value_of(&labels.labels(Some(&props(json!(3)))), "tier"),
            "3"
        );
        assert_eq!(
            value_of(&labels.labels(Some(&props(json!("pro")))), "tier"),
            "other"
        );
        assert_eq!(
            value_of(&labels.labels(Some(&props(json!("free")))), "tier"),
            "free"
        );
        assert_eq!(
            value_of(&labels.labels(Some(&BTreeMap::new())), "tier"),
            "none"
        );
        assert_eq!(value_of(&labels.labels(None), "tier"), "none");
        let long = json!("x".repeat(MAX_LABEL_VALUE + 1));
        assert_eq!(
            value_of(&labels.labels(Some(&props(long))), "tier"),
            "other"
        );
    }

    #[test]
    fn a_value_spelled_like_a_reserved_one_cannot_pose_as_it() {
        let labels = MetricLabels::new(&["tier".into()], 10);
        let props = BTreeMap::from([("tier".to_owned(), json!("none"))]);
        assert_eq!(value_of(&labels.labels(Some(&props)), "tier"), "other");
    }
}
