//! Finding and aborting multipart uploads that a crashed reel left in the bucket.
//!
//! object_store has no call for ListMultipartUploads, ListParts or an abort by upload id, so
//! these three requests are made here with reqwest and signed by object_store's own SigV4
//! signer ([`AwsAuthorizer`]). An incomplete upload is invisible to readers but costs storage
//! until aborted.

use std::time::{Duration, SystemTime};

use object_store::aws::{AwsAuthorizer, AwsCredential};
use object_store::client::HttpRequestBody;
use serde::Deserialize;
use tracing::{info, warn};

/// Uploads listed per request, and pages read per sweep.
const PAGE: u32 = 1000;
const MAX_PAGES: usize = 20;

/// What signs and sends the raw requests.
#[derive(Debug)]
pub struct Raw {
    pub http: reqwest::Client,
    /// `scheme://host[:port]/bucket` (path style) or `https://bucket.host` (virtual host).
    pub base: String,
    pub region: String,
    pub credential: AwsCredential,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListUploads {
    #[serde(default)]
    upload: Vec<UploadEntry>,
    #[serde(default)]
    is_truncated: bool,
    next_key_marker: Option<String>,
    next_upload_id_marker: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UploadEntry {
    key: String,
    upload_id: String,
    initiated: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListParts {
    #[serde(default)]
    part: Vec<PartEntry>,
    #[serde(default)]
    is_truncated: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PartEntry {
    last_modified: String,
}

fn age(timestamp: &str) -> Option<Duration> {
    let at = humantime::parse_rfc3339_weak(timestamp).ok()?;
    Some(SystemTime::now().duration_since(at).unwrap_or_default())
}

impl Raw {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<String, String> {
        let mut url = url::Url::parse(&format!("{}/{path}", self.base))
            .map_err(|e| format!("bad bucket URL: {e}"))?;
        if !query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (key, value) in query {
                pairs.append_pair(key, value);
            }
        }
        let mut request = http::Request::builder()
            .method(method.clone())
            .uri(url.as_str())
            .body(HttpRequestBody::empty())
            .map_err(|e| e.to_string())?;
        AwsAuthorizer::new(&self.credential, "s3", &self.region).authorize(&mut request, None);
        let response = self
            .http
            .request(method, url)
            .headers(request.headers().clone())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let body = response.text().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("{status}: {body}"));
        }
        Ok(body)
    }

    /// Multipart uploads below `prefix`: (key, upload id, age since initiated).
    pub async fn list_uploads(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, String, Duration)>, String> {
        let mut found = Vec::new();
        let (mut key_marker, mut id_marker) = (String::new(), String::new());
        for _ in 0..MAX_PAGES {
            let page = PAGE.to_string();
            let mut query = vec![("uploads", ""), ("prefix", prefix), ("max-uploads", &page)];
            if !key_marker.is_empty() {
                query.push(("key-marker", &key_marker));
                query.push(("upload-id-marker", &id_marker));
            }
            let body = self.send(reqwest::Method::GET, "", &query).await?;
            let list: ListUploads = quick_xml::de::from_str(&body).map_err(|e| e.to_string())?;
            for upload in list.upload {
                let age = age(&upload.initiated).unwrap_or_default();
                found.push((upload.key, upload.upload_id, age));
            }
            match (
                list.is_truncated,
                list.next_key_marker,
                list.next_upload_id_marker,
            ) {
                (true, Some(key), Some(id)) => (key_marker, id_marker) = (key, id),
                _ => break,
            }
        }
        Ok(found)
    }

    /// How long ago a part of the upload last arrived; `None` when unknown (many parts).
    async fn last_part_age(&self, key: &str, upload_id: &str) -> Result<Option<Duration>, String> {
        let body = self
            .send(reqwest::Method::GET, key, &[("uploadId", upload_id)])
            .await?;
        let parts: ListParts = quick_xml::de::from_str(&body).map_err(|e| e.to_string())?;
        if parts.is_truncated {
            return Ok(None);
        }
        Ok(parts
            .part
            .iter()
            .filter_map(|p| age(&p.last_modified))
            .min())
    }

    pub async fn abort(&self, key: &str, upload_id: &str) -> Result<(), String> {
        self.send(reqwest::Method::DELETE, key, &[("uploadId", upload_id)])
            .await
            .map(drop)
    }

    /// Aborts the stale uploads below `prefix`: all of them when `all`, else those started
    /// and last fed more than `grace` ago (another node may be receiving the rest).
    pub async fn sweep(&self, prefix: &str, all: bool, grace: Duration) -> usize {
        let uploads = match self.list_uploads(prefix).await {
            Ok(uploads) => uploads,
            Err(error) => {
                warn!(%error, "cannot list unfinished multipart uploads");
                return 0;
            }
        };
        let mut aborted = 0;
        for (key, upload_id, started) in uploads {
            if !all {
                if started < grace {
                    continue;
                }
                match self.last_part_age(&key, &upload_id).await {
                    Ok(Some(fed)) if fed >= grace => {}
                    // Still being fed, unknown, or no part yet after the grace: keep unless old.
                    Ok(None) if started >= grace * 8 => {}
                    Ok(_) | Err(_) => continue,
                }
            }
            match self.abort(&key, &upload_id).await {
                Ok(()) => aborted += 1,
                Err(error) => warn!(%key, %error, "cannot abort a stale multipart upload"),
            }
        }
        if aborted > 0 {
            info!(aborted, "stale multipart uploads aborted");
        }
        aborted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listing_answers_parse() -> Result<(), quick_xml::DeError> {
        let body = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Bucket>b</Bucket><KeyMarker></KeyMarker><UploadIdMarker></UploadIdMarker>
  <NextKeyMarker>p/sources/2</NextKeyMarker><NextUploadIdMarker>u2</NextUploadIdMarker>
  <MaxUploads>1000</MaxUploads><IsTruncated>true</IsTruncated>
  <Upload><Key>p/sources/1</Key><UploadId>u1</UploadId><Initiated>2024-05-01T10:00:00.000Z</Initiated></Upload>
  <Upload><Key>p/sources/2</Key><UploadId>u2</UploadId><Initiated>2024-05-01T10:00:01Z</Initiated></Upload>
</ListMultipartUploadsResult>"#;
        let list: ListUploads = quick_xml::de::from_str(body)?;
        assert_eq!(list.upload.len(), 2);
        assert!(list.is_truncated);
        assert_eq!(list.next_upload_id_marker.as_deref(), Some("u2"));
        assert!(age(&list.upload[0].initiated).is_some_and(|a| a > Duration::from_secs(3600)));
        let empty: ListUploads = quick_xml::de::from_str(
            "<ListMultipartUploadsResult><IsTruncated>false</IsTruncated></ListMultipartUploadsResult>",
        )?;
        assert!(empty.upload.is_empty());
        Ok(())
    }
}
