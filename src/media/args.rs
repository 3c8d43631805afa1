//! The storage settings (`--storage`, `--s3-*`, `AWS_*`), and opening the store they name.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use super::bucket::{BucketConfig, BucketStore, parse_storage_url};
use super::folder::FolderStore;
use super::{Media, MediaError, WorkDir};

#[derive(Debug, Clone, Args)]
pub struct StorageArgs {
    /// Where sources and ladders live: `file` (the --media-dir folder) or
    /// `s3://BUCKET[/PREFIX]` (any S3-compatible bucket; --media-dir then holds only work in
    /// progress). Credentials and region come from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
    /// AWS_SESSION_TOKEN and AWS_REGION.
    #[arg(long, env = "REEL_STORAGE", default_value = "file")]
    pub storage: String,

    /// URL of an S3-compatible server (`http://127.0.0.1:9000`), addressed path-style;
    /// unset: AWS S3 in AWS_REGION.
    #[arg(long, env = "REEL_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,

    /// Longest wait, in seconds, for one bucket request (a part, a ladder file) or for the
    /// next bytes of a read; one retry follows a passing failure.
    #[arg(long, env = "REEL_S3_TIMEOUT_SECS", default_value_t = 20)]
    pub s3_timeout_secs: u64,

    /// Without nginx: answer `/hls/` files (playlists excepted) and source downloads with a
    /// redirect to a presigned bucket URL instead of streaming them through reel.
    #[arg(long, env = "REEL_STORAGE_REDIRECT", value_parser = clap::builder::BoolishValueParser::new(), default_value_t = false, num_args = 0..=1, default_missing_value = "true")]
    pub storage_redirect: bool,

    /// Absolute URL a CDN serves reel's `/hls/` under (`https://cdn.example.com`): the media
    /// links of video resources (playlist, poster, storyboard, renditions) become absolute URLs
    /// below it, a private video's signature kept. Unset: links are paths on reel itself.
    #[arg(long, env = "REEL_PUBLIC_BASE_URL", value_name = "URL")]
    pub public_base_url: Option<super::PublicBaseUrl>,

    #[arg(long, env = "AWS_ACCESS_KEY_ID", hide = true, hide_env_values = true)]
    pub aws_access_key_id: Option<String>,
    #[arg(
        long,
        env = "AWS_SECRET_ACCESS_KEY",
        hide = true,
        hide_env_values = true
    )]
    pub aws_secret_access_key: Option<String>,
    #[arg(long, env = "AWS_SESSION_TOKEN", hide = true, hide_env_values = true)]
    pub aws_session_token: Option<String>,
    #[arg(long, env = "AWS_REGION", hide = true, default_value = "us-east-1")]
    pub aws_region: String,
}

impl Default for StorageArgs {
    fn default() -> Self {
        Self {
            storage: "file".into(),
            s3_endpoint: None,
            s3_timeout_secs: 20,
            storage_redirect: false,
            public_base_url: None,
            aws_access_key_id: None,
            aws_secret_access_key: None,
            aws_session_token: None,
            aws_region: "us-east-1".into(),
        }
    }
}

/// A storage setting that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum StorageConfigError {
    #[error("--storage: {0}")]
    Url(String),
    #[error(
        "--storage s3://… needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (instance \
         credentials are not looked up)"
    )]
    NoCredentials,
    #[error("--s3-endpoint {0:?} is not an http:// or https:// URL")]
    Endpoint(String),
    #[error(
        "--s3-timeout-secs {timeout} is too long for --lease-secs {lease}: a ladder write must \
         land well inside a lease (2 × timeout + 1 < lease)"
    )]
    Timeout { timeout: u64, lease: u64 },
}

impl StorageArgs {
    pub fn is_bucket(&self) -> bool {
        self.storage != "file"
    }

    /// The bucket settings, when `--storage` names one.
    pub fn bucket(&self) -> Result<Option<BucketConfig>, StorageConfigError> {
        if !self.is_bucket() {
            return Ok(None);
        }
        let (bucket, prefix) = parse_storage_url(&self.storage).map_err(StorageConfigError::Url)?;
        if let Some(endpoint) = &self.s3_endpoint
            && url::Url::parse(endpoint).map_or(true, |u| !matches!(u.scheme(), "http" | "https"))
        {
            return Err(StorageConfigError::Endpoint(endpoint.clone()));
        }
        let (Some(key), Some(secret)) = (&self.aws_access_key_id, &self.aws_secret_access_key)
        else {
            return Err(StorageConfigError::NoCredentials);
        };
        Ok(Some(BucketConfig {
            bucket,
            prefix,
            endpoint: self.s3_endpoint.clone(),
            region: self.aws_region.clone(),
            access_key_id: key.clone(),
            secret_access_key: secret.clone(),
            session_token: self.aws_session_token.clone(),
            timeout: Duration::from_secs(self.s3_timeout_secs.max(1)),
        }))
    }

    /// Checks what depends on other settings: a ladder write must fit inside a lease.
    pub fn validate(&self, lease_secs: u64) -> Result<(), StorageConfigError> {
        if self.bucket()?.is_some() && self.s3_timeout_secs * 2 + 1 >= lease_secs {
            return Err(StorageConfigError::Timeout {
                timeout: self.s3_timeout_secs,
                lease: lease_secs,
            });
        }
        Ok(())
    }

    /// Opens the store (nothing is sent to a bucket yet: see `MediaStore::check`).
    pub fn open(&self, media_dir: &Path) -> Result<Media, OpenError> {
        match self.bucket()? {
            None => Ok(Arc::new(FolderStore::open(media_dir)?)),
            Some(config) => {
                let work = WorkDir::open(media_dir)?;
                Ok(Arc::new(BucketStore::open(&config, work)?))
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Config(#[from] StorageConfigError),
    #[error(transparent)]
    Media(#[from] MediaError),
}
