use super::*;
use crate::media::folder::FolderStore;
use std::sync::Arc;
use std::time::Duration;

fn limits() -> UploadLimits {
    UploadLimits {
        max_bytes: 1 << 30,
        min_free_bytes: 0,
        idle_timeout: Duration::from_secs(5),
    }
}

fn mp4(size: usize) -> Vec<u8> {
    let mut data = vec![0, 0, 0, 0x20];
    data.extend_from_slice(b"ftypisom");
    data.extend((0..size - 12).map(|i| (i % 251) as u8));
    data
}

#[tokio::test]
async fn an_upload_grows_over_requests_and_a_crashed_tail_is_cut()
-> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let folder = Arc::new(FolderStore::open(dir.path())?);
    let media: Media = folder.clone();
    let data = mp4(3000);
    let length = data.len() as u64;

    // Tiny first request: the container is not known yet.
    let mut first = Appender::open(&media, "u1", 0, length, None, None, limits()).await?;
    first.push(Bytes::copy_from_slice(&data[..100])).await?;
    let appended = first.finish(true).await?;
    assert_eq!(appended.offset, 100);
    assert_eq!(appended.container, None);

    // A request that wrote 900 more bytes and died before recording them.
    std::fs::OpenOptions::new()
        .append(true)
        .open(partial_path(&*folder, "u1"))
        .and_then(|mut f| std::io::Write::write_all(&mut f, &[9; 900]))?;

    // The next request starts at the recorded offset; the head is read back for sniffing.
    let mut second = Appender::open(&media, "u1", 100, length, None, None, limits()).await?;
    second
        .push(Bytes::copy_from_slice(&data[100..1000]))
        .await?;
    assert_eq!(second.checkpoint().await?, 1000);
    second.push(Bytes::copy_from_slice(&data[1000..])).await?;
    let appended = second.finish(true).await?;
    assert_eq!(appended.offset, length);
    assert_eq!(appended.container, Some(Container::IsoBmff));
    assert_eq!(std::fs::read(partial_path(&*folder, "u1"))?, data);

    let received = stage_complete(&media, "u1", length, Container::IsoBmff).await?;
    let id = received.id;
    received.persist(media.as_ref()).await?;
    assert_eq!(std::fs::read(folder.source_path(id))?, data);
    assert!(partial_path(&*folder, "u1").exists(), "kept until filed");
    Ok(())
}

#[tokio::test]
async fn refusals_overlong_junk_checksum_and_lost_bytes() -> Result<(), Box<dyn std::error::Error>>
{
    let dir = tempfile::tempdir()?;
    let folder = Arc::new(FolderStore::open(dir.path())?);
    let media: Media = folder.clone();
    let data = mp4(1000);

    let mut over = Appender::open(&media, "u2", 0, 10, None, None, limits()).await?;
    let refused = over.push(Bytes::copy_from_slice(&data[..11])).await;
    assert!(matches!(
        refused,
        Err(TusError::BeyondLength { length: 10 })
    ));

    let mut junk = Appender::open(&media, "u3", 0, 1000, None, None, limits()).await?;
    let refused = junk.push(Bytes::from(vec![b'x'; 600])).await;
    assert!(matches!(
        refused,
        Err(TusError::Upload(UploadError::NotAVideo))
    ));

    let wrong = super::super::tus::parse_checksum("sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0=")?;
    let mut summed = Appender::open(&media, "u4", 0, 1000, None, Some(wrong), limits()).await?;
    summed.push(Bytes::copy_from_slice(&data)).await?;
    assert_eq!(
        summed.checkpoint().await?,
        0,
        "unverified bytes are not durable"
    );
    assert!(matches!(
        summed.finish(true).await,
        Err(TusError::ChecksumMismatch)
    ));
    let again = Appender::open(&media, "u4", 0, 1000, None, None, limits()).await?;
    assert_eq!(again.offset(), 0);
    assert_eq!(std::fs::metadata(partial_path(&*folder, "u4"))?.len(), 0);

    let lost = Appender::open(&media, "u5", 500, 1000, None, None, limits()).await;
    assert!(matches!(lost, Err(TusError::Lost)));
    Ok(())
}
