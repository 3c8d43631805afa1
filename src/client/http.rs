//! The client's HTTP side: one reqwest client with bounded timeouts, the bearer token, the
//! server's error envelope, and the client's errors with their exit codes.

use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::Value;
use url::Url;

/// Time to open a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Whole-request limit of small requests (everything but uploads and event streams).
pub const SMALL_REQUEST: Duration = Duration::from_secs(30);
/// Attempts of a small request that meets a network error or a passing server error.
const SMALL_ATTEMPTS: u32 = 4;

/// Why a command did not succeed; each kind has its exit code (see [`ClientError::exit_code`]).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server refused (a 4xx answer, or a 5xx that did not pass): exit 3.
    #[error("{message} (HTTP {status}, {code})")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    /// The server could not be reached, or kept failing past every retry: exit 4.
    #[error("{0}")]
    Unreachable(String),
    /// A local file could not be read: exit 5.
    #[error("{0}")]
    Local(String),
    /// A video ended `failed` or `canceled`: exit 1.
    #[error("{0}")]
    VideoFailed(String),
}

impl ClientError {
    /// 1 a video failed or was canceled, 3 refused by the server, 4 server unreachable or
    /// failing, 5 a local file unreadable (2 is a usage error, from the argument parser).
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::VideoFailed(_) => 1,
            Self::Refused { .. } => 3,
            Self::Unreachable(_) => 4,
            Self::Local(_) => 5,
        }
    }

    /// Worth retrying: a network error or a passing server state.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable(_) => true,
            Self::Refused { status, .. } => is_transient(*status),
            _ => false,
        }
    }
}

/// Statuses that pass: timeouts, conflicts a new `HEAD` resolves, locks, overload, 5xx.
pub fn is_transient(status: u16) -> bool {
    matches!(status, 408 | 409 | 423 | 429) || status >= 500
}

/// `Retry-After` in seconds, when the answer has one.
pub fn retry_after(response: &Response) -> Option<Duration> {
    let seconds: u64 = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds.min(300)))
}

/// A connection to one reel server.
pub struct Api {
    client: reqwest::Client,
    base: Url,
    token: Option<String>,
}

impl Api {
    pub fn new(server: &Url, token: Option<String>) -> Result<Self, ClientError> {
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("reel/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Local(format!("cannot set up HTTP: {e}")))?;
        Ok(Self {
            client,
            base: server.clone(),
            token,
        })
    }

    /// `path` (or an absolute URL) against the server.
    pub fn url(&self, path: &str) -> Result<Url, ClientError> {
        self.base
            .join(path)
            .map_err(|e| ClientError::Local(format!("bad URL {path:?}: {e}")))
    }

    /// A request with the token and no timeout of its own (callers set one).
    pub fn request(&self, method: Method, url: Url) -> RequestBuilder {
        let request = self.client.request(method, url);
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// A small JSON request (`GET`, `DELETE`), retried with back-off on network errors and
    /// passing failures. `Ok(None)` for an answer without a body (204).
    pub async fn json(&self, method: Method, path: &str) -> Result<Option<Value>, ClientError> {
        let url = self.url(path)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let sent = self
                .request(method.clone(), url.clone())
                .header("Accept", "application/json")
                .timeout(SMALL_REQUEST)
                .send()
                .await;
            let error = match sent {
                Ok(response) if response.status().is_success() => {
                    if response.status() == StatusCode::NO_CONTENT {
                        return Ok(None);
                    }
                    return response.json().await.map(Some).map_err(|e| {
                        ClientError::Unreachable(format!("bad answer from {url}: {e}"))
                    });
                }
                Ok(response) => refusal(response).await,
                Err(error) => unreachable(&url, &error),
            };
            if !error.is_transient() || attempt >= SMALL_ATTEMPTS {
                return Err(error);
            }
            tokio::time::sleep(backoff(attempt)).await;
        }
    }
}

/// The wait before retry `attempt` (1-based): 1, 2, 4, 8, 16, then 30 s.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.saturating_sub(1).min(5)).min(Duration::from_secs(30))
}

/// A failed request as a client error.
pub fn unreachable(url: &Url, error: &reqwest::Error) -> ClientError {
    let mut text = format!("cannot reach {}", url.origin().ascii_serialization());
    let mut source: Option<&dyn std::error::Error> = Some(error);
    // The innermost cause says what happened (refused, reset, timed out).
    while let Some(cause) = source {
        if cause.source().is_none() {
            text = format!("{text}: {cause}");
        }
        source = cause.source();
    }
    ClientError::Unreachable(text)
}

/// An error answer as a client error, with the server's own words when it sent its envelope.
pub async fn refusal(response: Response) -> ClientError {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let field = |name: &str| body["error"][name].as_str().map(str::to_owned);
    ClientError::Refused {
        status,
        code: field("code").unwrap_or_else(|| "http_error".into()),
        message: field("message").unwrap_or_else(|| format!("the server answered {status}")),
    }
}
