//! One webhook call: a signed `POST` per the Standard Webhooks specification
//! (<https://www.standardwebhooks.com>, `spec/standard-webhooks.md`), with a 10 s timeout, no
//! redirects, no proxies from the environment, bounded idle connections, and a resolver that
//! refuses private addresses on every connection (see [`super::destination`]).

use std::sync::Arc;
use std::time::Duration;

use super::destination::{self, DestinationError, GuardedResolver};
use super::message_id;
use super::signing::Secret;
use crate::telemetry;

/// How long one call may take, connecting included.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The delivery client of a process (cheap to share: one connection pool).
pub struct Client {
    http: reqwest::Client,
    allow_private: bool,
}

/// How one call ended; its `outcome` label in `/metrics` is [`CallResult::label`].
pub enum CallResult {
    Delivered(u16),
    /// An answer that is not 2xx (3xx included: redirects are not followed).
    Rejected(u16),
    Timeout,
    Unreachable(String),
    /// The destination is, or now resolves to, a private address.
    Refused(String),
}

impl CallResult {
    pub fn label(&self) -> &'static str {
        match self {
            Self::Delivered(_) => "delivered",
            Self::Rejected(_) => "rejected",
            Self::Timeout => "timeout",
            Self::Unreachable(_) => "unreachable",
            Self::Refused(_) => "refused",
        }
    }

    pub fn error(&self) -> String {
        match self {
            Self::Delivered(status) | Self::Rejected(status) => format!("HTTP {status}"),
            Self::Timeout => format!("no answer within {} s", CALL_TIMEOUT.as_secs()),
            Self::Unreachable(why) | Self::Refused(why) => why.clone(),
        }
    }
}

impl Client {
    /// Errors: no TLS backend could be set up.
    pub fn new(allow_private: bool) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            .connect_timeout(CALL_TIMEOUT / 2)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .pool_max_idle_per_host(1)
            .pool_idle_timeout(Duration::from_secs(30))
            .user_agent(concat!("reel-webhooks/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(GuardedResolver { allow_private }))
            .build()?;
        Ok(Self {
            http,
            allow_private,
        })
    }

    /// One signed POST. Never follows redirects; never reads more than the status.
    /// Sends `body` (the event of history `seq`) to `url`, signed with `secret` (`whsec_…`).
    pub async fn call(&self, url: &str, secret: &str, seq: i64, body: &str) -> CallResult {
        let url = match destination::parse(url) {
            Ok(url) => url,
            Err(error) => return CallResult::Refused(error.to_string()),
        };
        // Names are checked by the client's resolver on connect; literal addresses here.
        if !self.allow_private
            && let Err(error) = destination::check_literal(&url)
        {
            return CallResult::Refused(error.to_string());
        }
        let Ok(secret) = Secret::parse(secret) else {
            return CallResult::Refused("the endpoint's stored secret is unreadable".into());
        };
        let id = message_id(seq);
        let timestamp = crate::domain::Millis::now().0 / 1000;
        let signature = secret.sign(&id, timestamp, body.as_bytes());
        let sent = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body.to_owned())
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => {
                CallResult::Delivered(response.status().as_u16())
            }
            Ok(response) => CallResult::Rejected(response.status().as_u16()),
            Err(error) if error.is_timeout() => CallResult::Timeout,
            Err(error) => match private_cause(&error) {
                Some(private) => CallResult::Refused(private.to_string()),
                None => CallResult::Unreachable(telemetry::chain(&error)),
            },
        }
    }
}

/// The resolver's refusal inside a client error, if that is what failed.
fn private_cause(error: &reqwest::Error) -> Option<&DestinationError> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<DestinationError>() {
            return Some(refused);
        }
        source = cause.source();
    }
    None
}
