//! Which bucket, where, and with which credentials; the clients made from that.

use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder, AwsCredential};
use object_store::{BackoffConfig, ClientOptions, RetryConfig};

use super::stale::Raw;
use crate::media::MediaError;

/// A bucket as configured (`--storage s3://BUCKET[/PREFIX]`, `--s3-endpoint`, `AWS_*`).
#[derive(Clone)]
pub struct BucketConfig {
    pub bucket: String,
    /// Key prefix without leading or trailing `/` (may be empty).
    pub prefix: String,
    /// An S3-compatible server's URL (path-style requests); AWS when `None`.
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
    /// Longest wait for one request (a part, a segment, the next bytes of a GET).
    pub timeout: Duration,
}

impl std::fmt::Debug for BucketConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BucketConfig")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// `s3://BUCKET[/PREFIX]` → (bucket, prefix without surrounding slashes).
pub fn parse_storage_url(url: &str) -> Result<(String, String), String> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| format!("{url:?} is neither `file` nor `s3://BUCKET[/PREFIX]`"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let valid = (3..=63).contains(&bucket.len())
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    if !valid {
        return Err(format!(
            "{bucket:?} is not a bucket name (3 to 63 lowercase letters, digits, `-` or `.`)"
        ));
    }
    let prefix = prefix.trim_matches('/');
    if prefix.split('/').any(|p| p == "." || p == "..") || prefix.contains("//") {
        return Err(format!("{prefix:?} is not a usable key prefix"));
    }
    Ok((bucket.to_owned(), prefix.to_owned()))
}

impl BucketConfig {
    fn builder(&self) -> AmazonS3Builder {
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&self.bucket)
            .with_region(&self.region)
            .with_access_key_id(&self.access_key_id)
            .with_secret_access_key(&self.secret_access_key)
            .with_retry(RetryConfig {
                backoff: BackoffConfig::default(),
                max_retries: 1,
                retry_timeout: self.timeout,
            });
        if let Some(token) = &self.session_token {
            builder = builder.with_token(token);
        }
        if let Some(endpoint) = &self.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_virtual_hosted_style_request(false);
        }
        builder
    }

    /// The request client (total time-out), the streaming client (none: reads are bounded
    /// per chunk instead), and the raw client for multipart housekeeping.
    pub(super) fn clients(&self) -> Result<(AmazonS3, AmazonS3, Raw), MediaError> {
        // Client options replace the builder's whole set, so `allow_http` is given here.
        let plain_http = self
            .endpoint
            .as_deref()
            .is_some_and(|e| e.starts_with("http://"));
        let options = ClientOptions::new()
            .with_allow_http(plain_http)
            .with_connect_timeout(Duration::from_secs(5).min(self.timeout))
            .with_pool_idle_timeout(Duration::from_secs(30));
        let refused = |source: object_store::Error| MediaError::Refused {
            what: format!("the settings of bucket {}", self.bucket),
            source,
        };
        let store = self
            .builder()
            .with_client_options(options.clone().with_timeout(self.timeout))
            .build()
            .map_err(refused)?;
        let streaming = self
            .builder()
            .with_client_options(options.with_timeout_disabled())
            .build()
            .map_err(refused)?;
        let http = reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(Duration::from_secs(5).min(self.timeout))
            .build()
            .map_err(|e| {
                refused(object_store::Error::Generic {
                    store: "S3",
                    source: Box::new(e),
                })
            })?;
        let base = match &self.endpoint {
            Some(endpoint) => format!("{}/{}", endpoint.trim_end_matches('/'), self.bucket),
            None => format!("https://{}.s3.{}.amazonaws.com", self.bucket, self.region),
        };
        let raw = Raw {
            http,
            base,
            region: self.region.clone(),
            credential: AwsCredential {
                key_id: self.access_key_id.clone(),
                secret_key: self.secret_access_key.clone(),
                token: self.session_token.clone(),
            },
        };
        Ok((store, streaming, raw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_urls_name_a_bucket_and_an_optional_prefix() {
        assert_eq!(
            parse_storage_url("s3://media"),
            Ok(("media".into(), String::new()))
        );
        assert_eq!(
            parse_storage_url("s3://media/reel/prod/"),
            Ok(("media".into(), "reel/prod".into()))
        );
        assert!(parse_storage_url("s3://Media").is_err());
        assert!(parse_storage_url("gs://media").is_err());
        assert!(parse_storage_url("s3://media/a/../b").is_err());
        assert!(parse_storage_url("s3://ab").is_err());
    }
}
