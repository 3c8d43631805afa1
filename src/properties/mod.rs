//! Properties: named values the operator pulls out of every upload with JSONPath (RFC 9535,
//! evaluated by the `serde_json_path` crate), declared as `--property NAME=JSONPATH`.
//!
//! Each expression runs against one document:
//!
//! ```json
//! {"metadata": <the client's JSON object, or null>,
//!  "probe":    <ffprobe -show_format -show_streams of the source, or null before the probe>,
//!  "claims":   <the verified JWT claims, or null without auth>,
//!  "request":  {"country": "DE", "user_agent": "Chrome", "content_type": "video/mp4"}}
//! ```
//!
//! `request.country` is ISO 3166-1 alpha-2 (`XX` unknown), `user_agent` the coarse family reel
//! records (never the raw header), `content_type` the container sniffed from the first bytes
//! (never the header a client sent). The probe's `format.filename` (a server path) is removed.
//!
//! The first node an expression selects is the value when it is a string, number or bool
//! (strings cut to [`MAX_VALUE_BYTES`]); anything else, or no node, leaves the property absent.
//!
//! Evaluated twice: when an upload is filed, with `probe: null` (so the 202 answer, the
//! `uploaded` history event and the upload metrics' labels already have every property that does
//! not need the probe), and by the worker after the probe, on the whole document; that second
//! result replaces the first, is written fenced by the job's lease, and is appended to the
//! history as `updated` when it differs. What only the upload request knew (`claims`,
//! `request`) is kept with the video for the second evaluation ([`Context`]).

pub mod labels;
pub mod metadata;
pub mod worker;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use serde_json_path::JsonPath;

/// Most properties a server may declare.
pub const MAX_PROPERTIES: usize = 32;
/// Longest property name, in bytes.
pub const MAX_NAME: usize = 64;
/// Longest stored string value, in bytes (cut at a character boundary).
pub const MAX_VALUE_BYTES: usize = 1024;

/// One `--property NAME=JSONPATH`, parsed when the configuration is read.
#[derive(Debug, Clone)]
pub struct PropertySpec {
    /// `[A-Za-z_][A-Za-z0-9_]*`, at most [`MAX_NAME`] bytes: usable as `property.NAME` in a
    /// query string and as a Prometheus label name.
    pub name: String,
    pub path: JsonPath,
    /// The expression as written, for messages.
    pub expression: String,
}

/// The property flags (`reel serve --help` shows these docs).
#[derive(Debug, Clone, clap::Args)]
pub struct PropertyArgs {
    /// A property: `NAME=JSONPATH` (RFC 9535), evaluated against
    /// `{"metadata", "probe", "claims", "request": {"country", "user_agent", "content_type"}}`.
    /// Repeatable; in REEL_PROPERTIES one per line.
    #[arg(long = "property", value_name = "NAME=JSONPATH", env = "REEL_PROPERTIES", value_delimiter = '\n', value_parser = parse_property)]
    pub properties: Vec<PropertySpec>,

    /// A property that becomes a label of the upload metrics (by-country counter, size and
    /// duration histograms). Repeatable; comma separated in REEL_METRIC_LABELS.
    #[arg(
        long = "metric-label",
        value_name = "NAME",
        env = "REEL_METRIC_LABELS",
        value_delimiter = ','
    )]
    pub metric_labels: Vec<String>,

    /// Distinct values a metric label keeps per process; later new values are counted as
    /// `other`, so a free-text property cannot explode the series.
    #[arg(long, env = "REEL_METRIC_LABEL_CAP", default_value_t = 32)]
    pub metric_label_cap: usize,
}

impl Default for PropertyArgs {
    fn default() -> Self {
        Self {
            properties: Vec::new(),
            metric_labels: Vec::new(),
            metric_label_cap: 32,
        }
    }
}

/// Why the property flags were refused at start-up.
#[derive(Debug, thiserror::Error)]
pub enum PropertyConfigError {
    #[error("--property {0:?} is declared twice")]
    Duplicate(String),
    #[error("at most {MAX_PROPERTIES} properties may be declared")]
    TooMany,
    #[error("--metric-label {0:?} names no --property")]
    UnknownLabel(String),
    #[error("--metric-label {0:?} is a label reel sets itself; rename the property")]
    ReservedLabel(String),
    #[error("--metric-label-cap must be between 1 and 1000, got {0}")]
    Cap(usize),
}

/// Labels the upload metrics already carry (and Prometheus' own).
const RESERVED_LABELS: [&str; 5] = ["country", "content_type", "outcome", "le", "quantile"];

impl PropertyArgs {
    pub fn validate(&self) -> Result<(), PropertyConfigError> {
        if self.properties.len() > MAX_PROPERTIES {
            return Err(PropertyConfigError::TooMany);
        }
        for (i, spec) in self.properties.iter().enumerate() {
            if self.properties[..i].iter().any(|p| p.name == spec.name) {
                return Err(PropertyConfigError::Duplicate(spec.name.clone()));
            }
        }
        for (i, label) in self.metric_labels.iter().enumerate() {
            if !self.properties.iter().any(|p| &p.name == label) {
                return Err(PropertyConfigError::UnknownLabel(label.clone()));
            }
            if RESERVED_LABELS.contains(&label.as_str()) || label.starts_with("__") {
                return Err(PropertyConfigError::ReservedLabel(label.clone()));
            }
            if self.metric_labels[..i].contains(label) {
                return Err(PropertyConfigError::Duplicate(label.clone()));
            }
        }
        if !(1..=1000).contains(&self.metric_label_cap) {
            return Err(PropertyConfigError::Cap(self.metric_label_cap));
        }
        Ok(())
    }
}

/// Parses `NAME=JSONPATH`. An invalid expression is refused with the position of the error
/// (1-based, in characters of the expression) and a caret under it.
pub fn parse_property(text: &str) -> Result<PropertySpec, String> {
    let text = text.trim();
    let Some((name, expression)) = text.split_once('=') else {
        return Err(format!("{text:?} is not NAME=JSONPATH"));
    };
    let (name, expression) = (name.trim(), expression.trim());
    let mut chars = name.chars();
    let valid_name = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= MAX_NAME;
    if !valid_name {
        return Err(format!(
            "property name {name:?} must be letters, digits and `_` (not first a digit), at most {MAX_NAME} bytes"
        ));
    }
    let path = JsonPath::parse(expression).map_err(|error| {
        let position = error.position().max(1);
        let caret = format!("{}^", " ".repeat(position - 1));
        format!(
            "the JSONPath of property `{name}` is not valid at position {position}: {}\n  {expression}\n  {caret}",
            error.message()
        )
    })?;
    Ok(PropertySpec {
        name: name.to_owned(),
        path,
        expression: expression.to_owned(),
    })
}

/// The parts of the request a property may read (`request` in the document).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestFacts {
    /// ISO 3166-1 alpha-2, `XX` when unknown.
    pub country: String,
    /// The coarse family (`Chrome`, `curl`, …).
    pub user_agent: Option<String>,
    /// The container's type as sniffed (`video/mp4`, …).
    pub content_type: Option<String>,
}

/// What only the upload request knew, kept with the video (`property_context_json`) for the
/// evaluation after the probe.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Context {
    pub claims: Option<Value>,
    pub request: RequestFacts,
}

/// The declared properties, ready to evaluate.
#[derive(Debug, Clone, Default)]
pub struct Properties {
    specs: Vec<PropertySpec>,
}

impl Properties {
    pub fn new(specs: Vec<PropertySpec>) -> Self {
        Self { specs }
    }

    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    /// Declared names, in declaration order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.specs.iter().map(|spec| spec.name.as_str())
    }

    pub fn has(&self, name: &str) -> bool {
        self.specs.iter().any(|spec| spec.name == name)
    }

    /// The document every expression runs against (see the module docs).
    pub fn document(metadata: Option<&Value>, probe: Option<&Value>, context: &Context) -> Value {
        let probe = probe.map(|probe| {
            let mut probe = probe.clone();
            if let Some(format) = probe.get_mut("format").and_then(Value::as_object_mut) {
                format.remove("filename");
            }
            probe
        });
        json!({
            "metadata": metadata,
            "probe": probe,
            "claims": context.claims,
            "request": context.request,
        })
    }

    /// Every property whose expression selects a scalar first.
    pub fn evaluate(&self, document: &Value) -> BTreeMap<String, Value> {
        self.specs
            .iter()
            .filter_map(|spec| {
                let value = scalar(spec.path.query(document).first()?)?;
                Some((spec.name.clone(), value))
            })
            .collect()
    }
}

/// A string (cut to [`MAX_VALUE_BYTES`]), number or bool; anything else is no value.
fn scalar(value: &Value) -> Option<Value> {
    match value {
        Value::String(text) if text.len() > MAX_VALUE_BYTES => {
            let mut end = MAX_VALUE_BYTES;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            Some(Value::String(text[..end].to_owned()))
        }
        Value::String(_) | Value::Number(_) | Value::Bool(_) => Some(value.clone()),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

#[cfg(test)]
mod tests;
