//! Properties at upload and the upload metrics by country: what [`Service::file_upload`] and
//! the upload handlers call (see `crate::properties`).

use std::collections::BTreeMap;

use serde_json::Value;

use super::{Service, UploadMeta};
use crate::auth::Caller;
use crate::geo;
use crate::properties::labels::UploadEnd;
use crate::properties::{Context, Properties, RequestFacts};

/// What the upload-time evaluation gives [`Service::file_upload`].
pub(super) struct AtUpload {
    pub properties: BTreeMap<String, Value>,
    /// Kept with the video for the evaluation after the probe (only when properties exist).
    pub context: Option<Value>,
}

impl Service {
    /// Evaluates every property on the upload's document without the probe.
    pub(super) fn properties_at_upload(
        &self,
        caller: &Caller,
        meta: &UploadMeta,
        content_type: &str,
    ) -> AtUpload {
        if self.properties.is_empty() {
            return AtUpload {
                properties: BTreeMap::new(),
                context: None,
            };
        }
        let context = Context {
            claims: caller.claims.clone(),
            request: RequestFacts {
                country: country(meta).to_owned(),
                user_agent: meta.user_agent.clone(),
                content_type: Some(content_type.to_owned()),
            },
        };
        let document = Properties::document(meta.metadata.as_ref(), None, &context);
        AtUpload {
            properties: self.properties.evaluate(&document),
            context: serde_json::to_value(&context).ok(),
        }
    }

    /// Counts an accepted upload by country, content type and its properties' labels.
    pub(super) fn count_accepted(
        &self,
        meta: &UploadMeta,
        content_type: &str,
        bytes: u64,
        properties: &BTreeMap<String, Value>,
    ) {
        self.labels.record(UploadEnd {
            country: country(meta),
            content_type: Some(content_type),
            outcome: "accepted",
            accepted: Some((bytes, meta.started.elapsed().as_secs_f64())),
            properties: Some(properties),
        });
    }

    /// Counts a refused upload by country (`outcome` is the refusal's error code).
    pub fn count_refused(&self, country: &str, outcome: &str) {
        self.labels.record(UploadEnd {
            country,
            content_type: None,
            outcome,
            accepted: None,
            properties: None,
        });
    }

    /// The declared property names (the list filter checks against them).
    pub fn property_names(&self) -> Vec<String> {
        self.properties.names().map(str::to_owned).collect()
    }
}

fn country(meta: &UploadMeta) -> &str {
    meta.country.as_deref().unwrap_or(geo::UNKNOWN)
}
