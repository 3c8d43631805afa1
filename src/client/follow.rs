//! Following a video's transcode over Server-Sent Events until it is `ready`, `failed` or
//! `canceled`: reconnects with `Last-Event-ID` when the stream drops or the server restarts.

use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::Value;
use url::Url;

use super::http::{self, Api, ClientError, backoff, refusal};

/// The server sends a keep-alive every 15 s; a stream silent for this long is dropped.
const SILENCE: Duration = Duration::from_secs(60);
/// Consecutive reconnections that brought no event before giving up.
const RECONNECTS: u32 = 10;

/// Where a transcode stands, for the display.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub status: String,
    /// 0 to 100.
    pub percent: f64,
    pub step: Option<String>,
    pub eta_seconds: Option<f64>,
    pub queue_position: Option<u64>,
}

impl Stage {
    fn of(data: &Value) -> Self {
        let progress = data["progress"].as_f64().unwrap_or(0.0);
        Self {
            status: data["status"].as_str().unwrap_or("queued").to_owned(),
            percent: data["percent"].as_f64().unwrap_or(progress * 100.0),
            step: data["step"].as_str().map(str::to_owned),
            eta_seconds: data["eta_seconds"].as_f64(),
            queue_position: data["queue_position"].as_u64(),
        }
    }

    /// `encoding · ETA 12 s`, `queued (#3 in the queue)`, … (`eta`: with the estimate).
    pub fn describe(&self, eta: bool) -> String {
        let mut text = self.step.clone().unwrap_or_else(|| self.status.clone());
        if let Some(position) = self.queue_position {
            text.push_str(&format!(" (#{position} in the queue)"));
        }
        if let Some(eta) = self
            .eta_seconds
            .filter(|e| eta && e.is_finite() && *e > 0.0)
        {
            text.push_str(&format!(" · ETA {} s", eta.round()));
        }
        text
    }
}

fn is_terminal(status: &str) -> bool {
    matches!(status, "ready" | "failed" | "canceled")
}

/// Follows `video` (its API URL) until it ends; returns its final resource, whatever the
/// outcome (`status` says which).
pub async fn follow(
    api: &Api,
    video: &Url,
    on: &mut (dyn FnMut(&Stage) + Send),
) -> Result<Value, ClientError> {
    let events = Url::parse(&format!("{}/events", video.as_str().trim_end_matches('/')))
        .map_err(|e| ClientError::Local(format!("bad video URL {video}: {e}")))?;
    let mut last_id: Option<String> = None;
    let mut idle_reconnects = 0;
    loop {
        let mut request = api
            .request(Method::GET, events.clone())
            .header("Accept", "text/event-stream");
        if let Some(id) = &last_id {
            request = request.header("Last-Event-ID", id.as_str());
        }
        let mut got_event = false;
        match request.send().await {
            Ok(response) if response.status().is_success() => {
                let mut stream = response.bytes_stream().eventsource();
                loop {
                    let event = match tokio::time::timeout(SILENCE, stream.next()).await {
                        Ok(Some(Ok(event))) => event,
                        // Ended, broken or silent: reconnect below.
                        _ => break,
                    };
                    got_event = true;
                    if !event.id.is_empty() {
                        last_id = Some(event.id.clone());
                    }
                    let data: Value = serde_json::from_str(&event.data).unwrap_or(Value::Null);
                    match event.event.as_str() {
                        "ready" | "failed" => return Ok(data),
                        "canceled" => return Ok(serde_json::json!({"status": "canceled"})),
                        "snapshot" if is_terminal(data["status"].as_str().unwrap_or("")) => {
                            return Ok(data);
                        }
                        "snapshot" | "progress" | "status" => on(&Stage::of(&data)),
                        // The server is going away: reconnect shortly.
                        "reconnect" => break,
                        _ => {}
                    }
                }
            }
            Ok(response) => {
                let error = refusal(response).await;
                if !error.is_transient() {
                    return Err(error);
                }
            }
            Err(error) => {
                if idle_reconnects >= RECONNECTS {
                    return Err(http::unreachable(&events, &error));
                }
            }
        }
        // Between streams the video may have ended: its resource says so.
        if let Ok(Some(current)) = api.json(Method::GET, video.as_str()).await
            && is_terminal(current["status"].as_str().unwrap_or(""))
        {
            return Ok(current);
        }
        idle_reconnects = if got_event { 0 } else { idle_reconnects + 1 };
        if idle_reconnects > RECONNECTS {
            return Err(ClientError::Unreachable(format!(
                "lost the event stream of {video} and could not get it back"
            )));
        }
        tokio::time::sleep(backoff(idle_reconnects.max(1))).await;
    }
}
