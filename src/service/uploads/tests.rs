use std::sync::Arc;

use bytes::Bytes;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::auth::Role;
use crate::bus::Node;
use crate::bus::local::LocalBus;
use crate::config::Config;
use crate::media::folder::FolderStore;
use crate::progress::Hub;
use crate::store::Store;
use crate::transcode::tools::Tools;

async fn service(dir: &std::path::Path) -> Result<Service, Box<dyn std::error::Error>> {
    let config = Config::for_dir(dir);
    let media: crate::media::Media = Arc::new(FolderStore::open(dir)?);
    let store = Store::connect(&Store::sqlite_url_in(dir), 2).await?;
    let node = Node::new(Arc::new(Hub::new()));
    let tools = Tools::check(&config.ffmpeg, &config.ffprobe).await?;
    Ok(Service::new(crate::service::Parts {
        config: Arc::new(config),
        store,
        media,
        bus: Arc::new(LocalBus::new(node.clone())),
        node,
        tools,
        auth: crate::auth::Auth::None,
        shutdown: CancellationToken::new(),
    }))
}

fn not_found<T>(result: &Result<T>) -> bool {
    matches!(result, Err(ServiceError::Tus(TusError::NotFound)))
}

#[tokio::test]
async fn an_upload_belongs_to_its_creator() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let service = service(dir.path()).await?;
    let alice = Caller::user("alice", vec![Role::Creator], json!({}));
    let bob = Caller::user("bob", vec![Role::Creator], json!({}));
    let viewer = Caller::user("vera", vec![Role::Viewer], json!({}));
    let new = || CreateUpload {
        length: 1000,
        ..CreateUpload::default()
    };
    assert!(matches!(
        service.create_upload(&viewer, new()).await,
        Err(ServiceError::Forbidden)
    ));
    let id = service.create_upload(&alice, new()).await?.id;

    let nothing = || futures_util::stream::empty::<Result<Bytes, std::io::Error>>();
    for other in [&bob, &viewer] {
        assert!(not_found(&service.upload_status(other, id).await));
        assert!(not_found(
            &service
                .append_upload(other, id, Append::default(), nothing())
                .await
        ));
        assert!(not_found(&service.terminate_upload(other, id).await));
    }
    assert_eq!(service.upload_status(&alice, id).await?.offset, 0);
    assert_eq!(
        service.upload_status(&Caller::local(), id).await?.length,
        1000
    );
    service.terminate_upload(&alice, id).await?;
    assert!(not_found(&service.upload_status(&alice, id).await));
    Ok(())
}
