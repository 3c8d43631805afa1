//! The store against a real SQLite file (PostgreSQL runs the same checks in tests/api).

use std::time::Duration;

use super::*;
use crate::domain::{HistoryKind, JobError, NewVideo, VideoId, VideoStatus};

async fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::connect(&Store::sqlite_url_in(dir.path()), 4)
        .await
        .expect("connect");
    (dir, store)
}

fn upload(owner: Option<&str>) -> NewVideo {
    NewVideo {
        id: VideoId::new(),
        owner: owner.map(str::to_owned),
        source_size: 10,
        ..NewVideo::default()
    }
}

const LEASE: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_job_is_claimed_once_and_a_stale_lease_changes_nothing() {
    let (_dir, store) = store().await;
    let video = store.insert_video(&upload(None), 10).await.expect("insert");
    assert_eq!(video.queue_position, Some(1));
    let claim = store
        .claim("w1", LEASE)
        .await
        .expect("claim")
        .expect("a job");
    assert_eq!(claim.video.id, video.id);
    assert!(store.claim("w2", LEASE).await.expect("claim").is_none());

    // A stale token (an older claim) is fenced out of every write.
    let stale = Lease {
        video: video.id,
        token: claim.lease.token - 1,
    };
    assert!(!store.renew(&stale, LEASE).await.expect("renew"));
    let error = JobError {
        code: "x".into(),
        message: "y".into(),
    };
    assert!(
        store
            .finish(&stale, Outcome::Failed(&error))
            .await
            .expect("finish")
            .is_none()
    );
    let ready = store
        .finish(
            &claim.lease,
            Outcome::Ready {
                renditions: &[],
                encode_seconds: 1.0,
            },
        )
        .await
        .expect("finish")
        .expect("held");
    assert_eq!(ready.status, VideoStatus::Ready);
    let kinds: Vec<HistoryKind> = store
        .history(video.id, 0, 100)
        .await
        .expect("history")
        .events
        .iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            HistoryKind::Uploaded,
            HistoryKind::Queued,
            HistoryKind::Processing,
            HistoryKind::Ready
        ]
    );
}

#[tokio::test]
async fn an_expired_lease_is_reclaimed_as_an_interruption_not_an_attempt() {
    let (_dir, store) = store().await;
    store.insert_video(&upload(None), 10).await.expect("insert");
    let first = store
        .claim("w1", Duration::ZERO)
        .await
        .expect("claim")
        .expect("job");
    tokio::time::sleep(Duration::from_millis(5)).await;
    let second = store
        .claim("w2", LEASE)
        .await
        .expect("claim")
        .expect("reclaimed");
    assert!(second.lease.token > first.lease.token);
    assert_eq!(second.video.interruptions, 1);
    assert_eq!(second.video.attempts, 0);
    assert!(!store.renew(&first.lease, LEASE).await.expect("renew"));
}

#[tokio::test]
async fn the_queue_is_fair_across_owners_and_full_past_capacity() {
    let (_dir, store) = store().await;
    for _ in 0..4 {
        store.insert_video(&upload(Some("a")), 10).await.expect("a");
    }
    let b = store.insert_video(&upload(Some("b")), 10).await.expect("b");
    assert_eq!(
        b.queue_position,
        Some(2),
        "b's first job goes after a's first"
    );
    let first = store.claim("w", LEASE).await.expect("claim").expect("job");
    assert_eq!(first.video.owner.as_deref(), Some("a"));
    let second = store.claim("w", LEASE).await.expect("claim").expect("job");
    assert_eq!(second.video.id, b.id);

    for _ in 0..7 {
        store.insert_video(&upload(None), 10).await.expect("fill");
    }
    assert!(matches!(
        store.insert_video(&upload(None), 10).await,
        Err(StoreError::QueueFull { capacity: 10 })
    ));
}

#[tokio::test]
async fn history_outlives_a_delete_and_the_feed_sees_every_event_in_order() {
    let (_dir, store) = store().await;
    let video = store
        .insert_video(&upload(Some("a")), 10)
        .await
        .expect("insert");
    let other = store
        .insert_video(&upload(Some("b")), 10)
        .await
        .expect("insert");
    let deleted = store
        .delete_video(video.id, Some("a"))
        .await
        .expect("delete");
    assert!(deleted.is_some());
    assert!(store.video(video.id).await.expect("get").is_none());
    assert_eq!(
        store.history_owner(video.id).await.expect("owner"),
        Some(Some("a".to_owned()))
    );
    let kinds: Vec<HistoryKind> = store
        .history(video.id, 0, 10)
        .await
        .expect("history")
        .events
        .iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            HistoryKind::Uploaded,
            HistoryKind::Queued,
            HistoryKind::Canceled,
            HistoryKind::Deleted
        ]
    );
    let all = store
        .changes(0, 100, &ChangeScope::All)
        .await
        .expect("feed");
    assert!(all.events.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(all.events.len(), 6);
    let b_only = store
        .changes(0, 100, &ChangeScope::Owner("b".into()))
        .await
        .expect("feed");
    assert!(b_only.events.iter().all(|e| e.video == other.id));
    let rest = store
        .changes(all.events[2].seq, 100, &ChangeScope::All)
        .await
        .expect("feed");
    assert_eq!(rest.events.len(), 3);
}

#[tokio::test]
async fn history_past_retention_is_purged_and_recent_history_stays() {
    let (_dir, store) = store().await;
    let old = store.insert_video(&upload(None), 10).await.expect("insert");
    let recent = store.insert_video(&upload(None), 10).await.expect("insert");
    let forty_days_ms: i64 = 40 * 86_400_000;
    sqlx::query(store.sql("UPDATE history SET at = at - $1 WHERE video_id = $2"))
        .bind(forty_days_ms)
        .bind(old.id.to_string())
        .execute(&store.pool)
        .await
        .expect("backdate");
    assert_eq!(store.purge_history(365).await.expect("purge"), 0);
    assert_eq!(store.purge_history(30).await.expect("purge"), 2);
    assert!(
        store
            .history(old.id, 0, 10)
            .await
            .expect("history")
            .events
            .is_empty()
    );
    assert_eq!(
        store
            .history(recent.id, 0, 10)
            .await
            .expect("history")
            .events
            .len(),
        2
    );
}

#[tokio::test]
async fn lists_filter_by_owner_status_title_and_properties() {
    let (_dir, store) = store().await;
    let mut a = upload(Some("a"));
    a.title = Some("Summer 100% fun".into());
    a.properties
        .insert("country".into(), serde_json::json!("DE"));
    a.properties
        .insert("height".into(), serde_json::json!(1080));
    store.insert_video(&a, 10).await.expect("a");
    let mut b = upload(Some("b"));
    b.title = Some("Winter".into());
    store.insert_video(&b, 10).await.expect("b");
    let query = |f: fn(&mut VideoQuery)| {
        let mut q = VideoQuery {
            limit: 10,
            ..VideoQuery::default()
        };
        f(&mut q);
        q
    };
    let found = store
        .videos(&query(|q| q.title_contains = Some("summer 100%".into())))
        .await
        .expect("q");
    assert_eq!(found.len(), 1);
    let found = store
        .videos(&query(|q| q.title_contains = Some("_".into())))
        .await
        .expect("q");
    assert!(found.is_empty(), "wildcards match themselves");
    let found = store
        .videos(&query(|q| q.owner = Some("b".into())))
        .await
        .expect("q");
    assert_eq!(found.len(), 1);
    let found = store
        .videos(&query(|q| {
            q.properties = vec![
                ("country".into(), serde_json::json!("DE")),
                ("height".into(), serde_json::json!("1080")),
            ]
        }))
        .await
        .expect("q");
    assert_eq!(found.len(), 1);
    let found = store
        .videos(&query(|q| {
            q.properties = vec![("country".into(), serde_json::json!("FR"))]
        }))
        .await
        .expect("q");
    assert!(found.is_empty());
}

#[tokio::test]
async fn a_deleted_database_file_is_unavailable_not_recreated() {
    let (dir, store) = store().await;
    store.ping().await.expect("ready");
    std::fs::remove_file(dir.path().join("reel.db")).expect("remove");
    assert!(matches!(store.ping().await, Err(StoreError::FileGone(_))));
    assert!(store.insert_video(&upload(None), 10).await.is_err());
}

#[test]
fn a_postgres_url_gets_an_application_name_unless_it_has_one() {
    assert_eq!(
        with_application_name("postgres://u@h/db", "reel-work"),
        "postgres://u@h/db?application_name=reel-work"
    );
    assert_eq!(
        with_application_name("postgres://u@h/db?sslmode=require", "reel-serve"),
        "postgres://u@h/db?sslmode=require&application_name=reel-serve"
    );
    let named = "postgres://u@h/db?application_name=api-eu";
    assert_eq!(with_application_name(named, "reel-serve"), named);
}

#[tokio::test]
async fn properties_after_the_probe_are_fenced_by_the_lease_and_appended_to_history() {
    let (_dir, store) = store().await;
    let mut new = upload(None);
    new.properties
        .insert("album".into(), serde_json::json!("Summer"));
    new.property_context = Some(serde_json::json!({"claims": null, "request": {"country": "DE"}}));
    let video = store.insert_video(&new, 10).await.expect("insert");
    assert_eq!(
        store.property_context(video.id).await.expect("context"),
        new.property_context
    );
    let claim = store.claim("w1", LEASE).await.expect("claim").expect("job");
    let found = std::collections::BTreeMap::from([
        ("album".to_owned(), serde_json::json!("Summer")),
        ("codec".to_owned(), serde_json::json!("h264")),
    ]);
    let stale = Lease {
        video: video.id,
        token: claim.lease.token - 1,
    };
    assert!(
        !store
            .record_properties(&stale, &found)
            .await
            .expect("stale")
    );
    assert!(
        store
            .record_properties(&claim.lease, &found)
            .await
            .expect("held")
    );
    let stored = store.video(video.id).await.expect("read").expect("video");
    assert_eq!(stored.properties, found);
    let history = store.history(video.id, 0, 10).await.expect("history");
    let uploaded = &history.events[0];
    assert_eq!(uploaded.kind, HistoryKind::Uploaded);
    assert_eq!(uploaded.data["properties"]["album"], "Summer");
    let updated = history.events.last().expect("updated");
    assert_eq!(updated.kind, HistoryKind::Updated);
    assert_eq!(updated.data["properties"]["codec"], "h264");
}

#[tokio::test]
async fn the_latest_retry_reason_is_read_back_from_the_history() {
    let (_dir, store) = store().await;
    let video = store.insert_video(&upload(None), 10).await.expect("insert");
    assert_eq!(store.last_retry_reason(video.id).await.expect("read"), None);
    for reason in ["first", "second"] {
        let claim = store.claim("w1", LEASE).await.expect("claim").expect("job");
        let retry = Outcome::Retry {
            delay: Duration::ZERO,
            reason,
        };
        store.finish(&claim.lease, retry).await.expect("finish");
    }
    assert_eq!(
        store.last_retry_reason(video.id).await.expect("read"),
        Some("second".to_owned())
    );
}
