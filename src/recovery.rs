//! What a start does so that, after a crash at any instant, no file is left without a row and
//! no row points at missing files.
//!
//! Every multi-step operation is ordered so that one side can be repaired from the other:
//! an upload writes its source, then its row (a crash between leaves a source without a row:
//! removed); a delete removes the row, then its files (files without a row: removed); a job
//! renames its ladder into place inside its `ready` transaction (a crash before the commit
//! leaves a ladder for a job that is requeued and redone from scratch). A `ready` row whose
//! ladder went missing anyway is queued again; a row waiting without its source fails.

use std::time::Duration;

use tracing::{info, warn};

use crate::domain::{JobError, VideoStatus, Visibility};
use crate::media::MediaStore;
use crate::store::{Repair, Store, StoreError};

/// On a shared volume, files this young may belong to an upload another node is filing.
const FOREIGN_GRACE: Duration = Duration::from_secs(15 * 60);

/// Aborts the multipart uploads (a bucket's) fed nothing for [`FOREIGN_GRACE`]: what a
/// creation the bucket finished after reel gave up on it left. Returns how many. A single
/// node runs it periodically (its start-up sweep takes the rest); shared nodes have the
/// janitor's [`reconcile`].
pub async fn sweep_idle_uploads(media: &dyn MediaStore) -> usize {
    media.sweep_stale_uploads(false, FOREIGN_GRACE).await
}

/// What one reconciliation did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub requeued_interrupted: usize,
    pub requeued_unpublished: usize,
    pub failed_without_source: usize,
    pub orphans_removed: usize,
    pub tmp_swept: usize,
    pub stale_uploads_aborted: usize,
}

/// Reconciles the media store with the database. `single_node`: this process is the only
/// one using them (SQLite), so every `processing` job died with the previous process and all
/// of `tmp/` (and every unfinished multipart upload) is garbage; otherwise only what is
/// certainly orphaned is touched: files or objects of no row, older than [`FOREIGN_GRACE`]
/// (another node may be filing them), and multipart uploads fed nothing for as long.
///
/// A store that cannot be listed (a bucket that is away) changes no row: nothing is known.
pub async fn reconcile(
    store: &Store,
    media: &dyn MediaStore,
    single_node: bool,
) -> Result<Report, StoreError> {
    let mut report = Report::default();
    if single_node {
        report.requeued_interrupted = store.recover_interrupted().await?.len();
    }
    report.stale_uploads_aborted = media.sweep_stale_uploads(single_node, FOREIGN_GRACE).await;
    let inventory = match media.inventory().await {
        Ok(inventory) => inventory,
        Err(error) => {
            warn!(%error, "cannot list the media store; nothing reconciled");
            return Ok(report);
        }
    };
    let rows = store.all_ids().await?;
    let known: std::collections::HashSet<_> = rows.iter().map(|(id, _, _)| *id).collect();
    for (id, status, visibility) in &rows {
        let id = *id;
        // A visibility change that crashed between the row and the marker.
        let private = *visibility == Visibility::Private;
        let ladder = inventory.ladders.get(&id).copied().unwrap_or_default();
        if *status == VideoStatus::Ready
            && ladder.published
            && ladder.private != private
            && let Err(error) = media.set_private(id, private).await
        {
            warn!(video.id = %id, %error, "cannot fix the private marker");
        }
        // A ladder that was growing when its job died: gone until the job runs again, so no
        // player ever mixes two attempts' segments. On a shared database a `processing` job
        // may be running elsewhere, and its ladder is left to it. Only videos with something
        // below `hls/<id>/` are asked (a bucket answers each with a request).
        if *status != VideoStatus::Ready
            && (single_node || *status != VideoStatus::Processing)
            && inventory.ladders.contains_key(&id)
            && let Err(error) = media.withdraw_growing(id, None).await
        {
            warn!(video.id = %id, %error, "cannot remove a partial ladder");
        }
        match status {
            VideoStatus::Ready if !ladder.published => {
                let reason = "the published ladder was missing";
                if store.repair(id, Repair::Requeue { reason }).await? {
                    report.requeued_unpublished += 1;
                }
            }
            VideoStatus::Queued | VideoStatus::Processing
                if !inventory.sources.contains_key(&id)
                    && (single_node || *status == VideoStatus::Queued) =>
            {
                let error = JobError {
                    code: "source_missing".into(),
                    message:
                        "The uploaded file is no longer on the server; please upload it again."
                            .into(),
                };
                if store.repair(id, Repair::Fail(&error)).await? {
                    report.failed_without_source += 1;
                }
            }
            _ => {}
        }
    }
    for (id, age) in inventory.ids() {
        if !known.contains(&id) && (single_node || age > FOREIGN_GRACE) {
            match media.remove_video(id).await {
                Ok(()) => report.orphans_removed += 1,
                Err(error) => warn!(video.id = %id, %error, "cannot remove an orphaned file"),
            }
        }
    }
    if single_node {
        report.tmp_swept = media.work().remove_tmp_where(|_| true).unwrap_or(0);
    }
    if report != Report::default() {
        info!(?report, "reconciled the media store with the database");
    }
    Ok(report)
}
