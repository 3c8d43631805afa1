//! The evaluation after the probe, in the worker: the whole document (the probe included),
//! written fenced by the job's lease.

use serde_json::Value;
use tracing::{debug, warn};

use super::{Context, Properties, RequestFacts};
use crate::domain::Video;
use crate::store::{Lease, Store};

/// Evaluates every property on `video`'s whole document and records the result when it
/// differs from what the upload stored. Best effort, like the probe's own record: a database
/// that is away does not stop the encode. `false` only when the lease is lost (the job is
/// another worker's now, or was deleted).
pub async fn after_probe(
    store: &Store,
    properties: &Properties,
    lease: &Lease,
    video: &Video,
    probe: Option<&Value>,
) -> bool {
    if properties.is_empty() {
        return true;
    }
    let context = match store.property_context(video.id).await {
        Ok(Some(kept)) => serde_json::from_value(kept).unwrap_or_else(|error| {
            warn!(%error, "the kept property context is unreadable; evaluating without it");
            unknown()
        }),
        Ok(None) => unknown(),
        Err(error) => {
            warn!(%error, "cannot read the property context; properties stay as uploaded");
            return true;
        }
    };
    let document = Properties::document(video.metadata.as_ref(), probe, &context);
    let found = properties.evaluate(&document);
    if found == video.properties {
        return true;
    }
    match store.record_properties(lease, &found).await {
        Ok(kept) => {
            debug!(count = found.len(), "properties recorded after the probe");
            kept
        }
        Err(error) => {
            warn!(%error, "cannot record the properties; going on");
            true
        }
    }
}

/// The context of a video uploaded while no property was declared.
fn unknown() -> Context {
    Context {
        claims: None,
        request: RequestFacts {
            country: crate::geo::UNKNOWN.to_owned(),
            ..RequestFacts::default()
        },
    }
}
