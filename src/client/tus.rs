//! `reel upload`'s transfer: tus 1.0 (creation, then `PATCH`es read straight from the file),
//! resumed after a dropped connection (`HEAD` for the offset, bounded back-off) and across
//! runs (the upload's URL is remembered per file until it is done).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::StreamExt;
use reqwest::{Method, Response, StatusCode};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use url::Url;

use super::http::{self, Api, ClientError, SMALL_REQUEST, backoff, refusal, retry_after};
use super::memory::{Memory, resume_key};

/// A `PATCH` that sends nothing for this long is dropped and resumed.
const SEND_STALL: Duration = Duration::from_secs(60);
/// How long the answer to a `PATCH` may take once its last byte is out.
const ANSWER_WAIT: Duration = Duration::from_secs(120);
/// Bytes read from the file at a time.
const READ_BUFFER: usize = 1024 * 1024;

/// What one file's upload asks for.
pub struct Transfer<'a> {
    pub path: &'a Path,
    pub title: Option<&'a str>,
    pub private: bool,
    /// Bytes per `PATCH`.
    pub chunk: u64,
    /// Consecutive failed attempts (without progress) before giving up.
    pub retries: u32,
}

/// What happens along the way, for the display.
pub enum Event {
    /// Sending from `offset`; `resumed` when that is where an interrupted upload (this run's or
    /// an earlier one's) stopped, rather than where the previous request ended.
    Sending {
        offset: u64,
        size: u64,
        resumed: bool,
    },
    /// Bytes sent so far (not yet acknowledged).
    Sent(u64),
    /// A failure that will be retried after `wait`.
    Retry {
        attempt: u32,
        wait: Duration,
        error: String,
    },
}

/// Uploads `transfer.path`; returns the URL of the video it became.
pub async fn upload(
    api: &Api,
    transfer: &Transfer<'_>,
    on: &mut (dyn FnMut(Event) + Send),
) -> Result<Url, ClientError> {
    let local = |e: std::io::Error| {
        ClientError::Local(format!("cannot read {}: {e}", transfer.path.display()))
    };
    let meta = tokio::fs::metadata(transfer.path).await.map_err(local)?;
    let size = meta.len();
    let key = resume_key(api, transfer.path, &meta);
    let memory = Memory::open();
    let remembered = match memory.get(&key) {
        Some(url) => match api.url(&url) {
            Ok(url) => match head(api, &url).await {
                Ok(Some(state)) if state.length == size => Some(url),
                _ => None,
            },
            Err(_) => None,
        },
        None => None,
    };
    let url = match remembered {
        Some(url) => url,
        None => {
            let url = with_retries(transfer.retries, on, || create(api, transfer, size)).await?;
            memory.put(&key, url.as_str());
            url
        }
    };
    let mut failures = 0;
    let mut last_offset = None;
    // Where the previous request ended, when it succeeded.
    let mut expected = Some(0);
    loop {
        let attempt = async {
            let state = head(api, &url).await?.ok_or_else(|| ClientError::Refused {
                status: 404,
                code: "upload_not_found".into(),
                message: "the upload expired or was removed on the server".into(),
            })?;
            if let Some(video) = state.video {
                return Ok(Some(video));
            }
            if last_offset.is_some_and(|before| state.offset > before) {
                failures = 0;
            }
            last_offset = Some(state.offset);
            on(Event::Sending {
                offset: state.offset,
                size,
                resumed: expected != Some(state.offset),
            });
            let length = transfer.chunk.min(size - state.offset);
            expected = None;
            let sent = patch(api, &url, transfer.path, state.offset, length, on).await;
            if let Ok(None) = sent {
                expected = Some(state.offset + length);
            }
            sent
        }
        .await;
        match attempt {
            Ok(Some(video)) => {
                memory.forget(&key);
                return Ok(video);
            }
            Ok(None) => failures = 0,
            Err(Failure { error, wait }) if error.is_transient() && failures < transfer.retries => {
                failures += 1;
                let wait = wait.unwrap_or_else(|| backoff(failures));
                on(Event::Retry {
                    attempt: failures,
                    wait,
                    error: error.to_string(),
                });
                tokio::time::sleep(wait).await;
            }
            Err(Failure { error, .. }) => {
                if !error.is_transient() {
                    memory.forget(&key);
                }
                return Err(error);
            }
        }
    }
}

/// A failed attempt, with the server's `Retry-After` when it gave one.
struct Failure {
    error: ClientError,
    wait: Option<Duration>,
}

impl From<ClientError> for Failure {
    fn from(error: ClientError) -> Self {
        Self { error, wait: None }
    }
}

async fn with_retries<T, F, Fut>(
    retries: u32,
    on: &mut (dyn FnMut(Event) + Send),
    mut step: F,
) -> Result<T, ClientError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Failure>>,
{
    let mut failures = 0;
    loop {
        match step().await {
            Ok(value) => return Ok(value),
            Err(Failure { error, wait }) if error.is_transient() && failures < retries => {
                failures += 1;
                let wait = wait.unwrap_or_else(|| backoff(failures));
                on(Event::Retry {
                    attempt: failures,
                    wait,
                    error: error.to_string(),
                });
                tokio::time::sleep(wait).await;
            }
            Err(Failure { error, .. }) => return Err(error),
        }
    }
}

async fn failure(response: Response) -> Failure {
    let wait = retry_after(&response);
    Failure {
        error: refusal(response).await,
        wait,
    }
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// `POST /api/v1/uploads` with the file's name, title and visibility.
async fn create(api: &Api, transfer: &Transfer<'_>, size: u64) -> Result<Url, Failure> {
    let url = api.url("/api/v1/uploads")?;
    let name = transfer
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut metadata = vec![format!("filename {}", b64(&name))];
    if let Some(title) = transfer.title {
        metadata.push(format!("title {}", b64(title)));
    }
    if transfer.private {
        metadata.push(format!("visibility {}", b64("private")));
    }
    let response = api
        .request(Method::POST, url.clone())
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", size.to_string())
        .header("Upload-Metadata", metadata.join(","))
        .timeout(SMALL_REQUEST)
        .send()
        .await
        .map_err(|e| http::unreachable(&url, &e))?;
    if response.status() != StatusCode::CREATED {
        return Err(failure(response).await);
    }
    let location = header(&response, "location").unwrap_or_default();
    Ok(api.url(&location)?)
}

/// Where an upload stands on the server.
struct State {
    offset: u64,
    length: u64,
    video: Option<Url>,
}

/// `HEAD` of an upload; `None` when the server does not know it (any more).
async fn head(api: &Api, url: &Url) -> Result<Option<State>, Failure> {
    let response = api
        .request(Method::HEAD, url.clone())
        .header("Tus-Resumable", "1.0.0")
        .timeout(SMALL_REQUEST)
        .send()
        .await
        .map_err(|e| http::unreachable(url, &e))?;
    match response.status() {
        StatusCode::NOT_FOUND | StatusCode::GONE => return Ok(None),
        status if !status.is_success() => return Err(failure(response).await),
        _ => {}
    }
    let number = |name| header(&response, name).and_then(|v| v.parse().ok());
    let (Some(offset), Some(length)) = (number("upload-offset"), number("upload-length")) else {
        return Err(
            ClientError::Unreachable("the server's HEAD lacks Upload-Offset".into()).into(),
        );
    };
    let video = match header(&response, "x-reel-video") {
        Some(video) => Some(api.url(&video)?),
        None => None,
    };
    Ok(Some(State {
        offset,
        length,
        video,
    }))
}

fn header(response: &Response, name: &str) -> Option<String> {
    Some(response.headers().get(name)?.to_str().ok()?.to_owned())
}

/// One `PATCH` of `length` bytes from `offset`, read from the file as it goes out. `Some` is
/// the video once the last byte is in.
async fn patch(
    api: &Api,
    url: &Url,
    path: &Path,
    offset: u64,
    length: u64,
    on: &mut (dyn FnMut(Event) + Send),
) -> Result<Option<Url>, Failure> {
    let local =
        |e: std::io::Error| ClientError::Local(format!("cannot read {}: {e}", path.display()));
    let mut file = tokio::fs::File::open(path).await.map_err(local)?;
    file.seek(std::io::SeekFrom::Start(offset))
        .await
        .map_err(local)?;
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    let body = tokio_util::io::ReaderStream::with_capacity(file.take(length), READ_BUFFER).inspect(
        move |chunk| {
            if let Ok(chunk) = chunk {
                counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            }
        },
    );
    let request = api
        .request(Method::PATCH, url.clone())
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Offset", offset.to_string())
        .header("Content-Type", "application/offset+octet-stream")
        .header("Content-Length", length.to_string())
        .body(reqwest::Body::wrap_stream(body))
        .send();
    let mut request = std::pin::pin!(request);
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let (mut seen, mut moved_at) = (0, Instant::now());
    let response = loop {
        tokio::select! {
            response = &mut request => break response.map_err(|e| http::unreachable(url, &e))?,
            _ = tick.tick() => {
                let now = sent.load(Ordering::Relaxed);
                if now != seen {
                    (seen, moved_at) = (now, Instant::now());
                    on(Event::Sent(offset + now));
                }
                let limit = if now < length { SEND_STALL } else { ANSWER_WAIT };
                if moved_at.elapsed() > limit {
                    return Err(ClientError::Unreachable(format!(
                        "the connection stalled for {} s", limit.as_secs()
                    )).into());
                }
            }
        }
    };
    if response.status() != StatusCode::NO_CONTENT {
        return Err(failure(response).await);
    }
    on(Event::Sent(offset + length));
    match header(&response, "x-reel-video") {
        Some(video) => Ok(Some(api.url(&video)?)),
        None => Ok(None),
    }
}
