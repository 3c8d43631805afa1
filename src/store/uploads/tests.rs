use super::*;

async fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::connect(&Store::sqlite_url_in(dir.path()), 2)
        .await
        .expect("store");
    (dir, store)
}

fn lock(token: &str, node: &str) -> UploadLock {
    UploadLock {
        token: token.into(),
        node: node.into(),
    }
}

#[tokio::test]
async fn one_request_at_a_time_writes_an_upload() -> Result<()> {
    let (_dir, store) = store().await;
    let new = NewUpload {
        length: 1000,
        title: Some("Trip".into()),
        metadata: Some(serde_json::json!({"a": 1})),
        ..NewUpload::default()
    };
    let created = store.insert_upload(&new, Duration::from_secs(60)).await?;
    assert_eq!((created.offset, created.length), (0, 1000));
    assert_eq!(created.metadata, new.metadata);

    let (a, b) = (lock("a", "n1"), lock("b", "n1"));
    let lease = Duration::from_secs(30);
    assert!(matches!(
        store.lock_upload(new.id, &a, lease).await?,
        LockOutcome::Acquired(_)
    ));
    assert!(matches!(
        store.lock_upload(new.id, &b, lease).await?,
        LockOutcome::Busy
    ));
    // SQLite has one process: a lock of another process is a leftover from before a restart.
    assert!(matches!(
        store.lock_upload(new.id, &lock("c", "n2"), lease).await?,
        LockOutcome::Acquired(_)
    ));
    let expiry = Duration::from_secs(60);
    assert!(
        !store
            .checkpoint_upload(new.id, &a, 500, None, Some(lease), expiry)
            .await?,
        "a request that lost the lock cannot record bytes"
    );
    let c = lock("c", "n2");
    assert!(
        store
            .checkpoint_upload(new.id, &c, 500, Some("video/mp4"), Some(lease), expiry)
            .await?
    );
    store.unlock_upload(new.id, &c).await?;
    let LockOutcome::Acquired(row) = store.lock_upload(new.id, &b, lease).await? else {
        panic!("an unlocked upload can be locked");
    };
    assert_eq!(row.offset, 500);
    assert_eq!(row.container.as_deref(), Some("video/mp4"));
    let video = VideoId::new();
    assert!(store.mark_upload_filed(new.id, &b, video, expiry).await?);
    assert_eq!(
        store.upload(new.id).await?.and_then(|u| u.video),
        Some(video)
    );
    assert!(store.delete_upload(new.id).await?);
    assert!(matches!(
        store.lock_upload(new.id, &a, lease).await?,
        LockOutcome::Missing
    ));
    Ok(())
}

#[tokio::test]
async fn expired_uploads_are_invisible_and_swept_unless_being_written() -> Result<()> {
    let (_dir, store) = store().await;
    let idle = NewUpload {
        length: 10,
        ..NewUpload::default()
    };
    let busy = NewUpload {
        length: 10,
        ..NewUpload::default()
    };
    store.insert_upload(&idle, Duration::ZERO).await?;
    store.insert_upload(&busy, Duration::from_secs(60)).await?;
    let writer = lock("w", "n");
    store
        .lock_upload(busy.id, &writer, Duration::from_secs(30))
        .await?;
    store
        .checkpoint_upload(
            busy.id,
            &writer,
            5,
            None,
            Some(Duration::from_secs(30)),
            Duration::ZERO,
        )
        .await?;
    assert!(store.upload(idle.id).await?.is_none());
    assert_eq!(store.delete_expired_uploads(10).await?, vec![idle.id]);
    assert!(store.upload_exists(busy.id).await?, "a locked upload stays");
    assert!(!store.upload_exists(idle.id).await?);
    Ok(())
}
