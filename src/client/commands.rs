//! The client commands, each returning its exit code (see the module docs of `client`).

use std::sync::Arc;

use reqwest::Method;
use serde_json::{Value, json};
use url::Url;

use super::follow::{self, Stage};
use super::http::{Api, ClientError};
use super::output::Output;
use super::tus::{self, Event, Transfer};
use super::{ClientCommand, LsArgs, RmArgs, ShowArgs, UploadArgs, WatchArgs};

/// Exit code of bad usage (as the argument parser's own).
const USAGE: u8 = 2;

pub async fn run(command: ClientCommand) -> u8 {
    let connection = match &command {
        ClientCommand::Upload(a) => &a.connection,
        ClientCommand::Ls(a) => &a.connection,
        ClientCommand::Show(a) => &a.connection,
        ClientCommand::Rm(a) => &a.connection,
        ClientCommand::Watch(a) => &a.connection,
    };
    let out = Arc::new(Output::new(connection.json));
    let api = match Api::new(&connection.server, connection.token.clone()) {
        Ok(api) => Arc::new(api),
        Err(error) => {
            out.warn(None, &error.to_string());
            return error.exit_code();
        }
    };
    let result = match command {
        ClientCommand::Upload(args) => return upload(api, out, args).await,
        ClientCommand::Ls(args) => ls(&api, &out, &args).await,
        ClientCommand::Show(args) => show(&api, &out, &args).await,
        ClientCommand::Rm(args) => return rm(&api, &out, &args).await,
        ClientCommand::Watch(args) => watch(&api, &out, &args).await,
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            out.warn(None, &error.to_string());
            error.exit_code()
        }
    }
}

/// A video id as typed: letters, digits and dashes only (it goes into a URL path).
fn video_path(id: &str) -> Option<String> {
    let plain = !id.is_empty()
        && id.len() <= 64
        && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    plain.then(|| format!("/api/v1/videos/{id}"))
}

fn usage(out: &Output, text: &str) -> u8 {
    out.warn(None, text);
    USAGE
}

fn absolute(api: &Api, path: Option<&str>) -> Option<String> {
    api.url(path?).ok().map(String::from)
}

async fn upload(api: Arc<Api>, out: Arc<Output>, args: UploadArgs) -> u8 {
    if args.title.is_some() && args.files.len() > 1 {
        return usage(&out, "--title names one video: give one file with it");
    }
    if args.chunk_size == 0 {
        return usage(&out, "--chunk-size must be at least 1 byte");
    }
    let mut code = 0;
    let mut follows = tokio::task::JoinSet::new();
    for path in &args.files {
        let label = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let size = std::fs::metadata(path).map_or(0, |m| m.len());
        let bar = out.bar(&label, size, true);
        let transfer = Transfer {
            path,
            title: args.title.as_deref(),
            private: args.private,
            chunk: args.chunk_size,
            retries: args.retries,
        };
        let file = path.display().to_string();
        let mut on = |event: Event| match event {
            Event::Sending {
                offset,
                size,
                resumed,
            } => {
                bar.set(offset);
                if resumed {
                    bar.message(&format!(
                        "resuming at {:.0}%",
                        offset as f64 * 100.0 / size as f64
                    ));
                    out.record(
                        json!({"event": "resume", "file": file, "offset": offset, "size": size}),
                    );
                } else {
                    bar.message("");
                }
            }
            Event::Sent(sent) => bar.set(sent),
            Event::Retry {
                attempt,
                wait,
                error,
            } => {
                bar.message(&format!(
                    "connection lost — retrying in {} s ({error})",
                    wait.as_secs().max(1)
                ));
                out.record(json!({"event": "retry", "file": file, "attempt": attempt,
                    "wait_seconds": wait.as_secs_f64(), "error": error}));
            }
        };
        match tus::upload(&api, &transfer, &mut on).await {
            Ok(video) => {
                let id = video
                    .path_segments()
                    .and_then(|mut s| s.next_back())
                    .unwrap_or("")
                    .to_owned();
                bar.finish(&format!("uploaded: {video}"));
                out.record(
                    json!({"event": "uploaded", "file": file, "id": id, "video": video.as_str()}),
                );
                if args.follow {
                    let (api, out) = (api.clone(), out.clone());
                    follows.spawn(
                        async move { follow_video(&api, &out, &label, &file, &video).await },
                    );
                }
            }
            Err(error) => {
                bar.fail(&format!("failed: {error}"));
                out.warn(Some(&file), &format!("{file}: {error}"));
                code = code.max(error.exit_code());
            }
        }
    }
    while let Some(done) = follows.join_next().await {
        code = code.max(done.unwrap_or(4));
    }
    code
}

/// Follows one video with a bar until it ends; prints the playlist URL when ready.
async fn follow_video(api: &Api, out: &Output, label: &str, file: &str, video: &Url) -> u8 {
    let bar = out.bar(&format!("{label} transcode"), 100, false);
    let mut on = |stage: &Stage| {
        bar.set(stage.percent.clamp(0.0, 100.0) as u64);
        bar.message(&stage.describe(bar.is_bar()));
    };
    match follow::follow(api, video, &mut on).await {
        Ok(resource) => finished(api, out, &bar, file, &resource),
        Err(error) => {
            bar.fail(&format!("lost: {error}"));
            out.warn(Some(file), &format!("{file}: {error}"));
            error.exit_code()
        }
    }
}

/// Reports a video's end: ready (0, the playlist URL), failed or canceled (1).
fn finished(
    api: &Api,
    out: &Output,
    bar: &super::output::Progress,
    file: &str,
    resource: &Value,
) -> u8 {
    let status = resource["status"].as_str().unwrap_or("canceled");
    let id = resource["id"].as_str();
    if status == "ready" {
        let playlist = absolute(api, resource["links"]["playlist"].as_str());
        bar.set(100);
        bar.finish(&format!("ready: {}", playlist.as_deref().unwrap_or("")));
        out.record(json!({"event": "ready", "file": file, "id": id, "playlist": playlist}));
        return 0;
    }
    let reason = resource["error"]["message"].as_str().unwrap_or(status);
    bar.fail(&format!("{status}: {reason}"));
    out.record(json!({"event": status, "file": file, "id": id, "error": resource["error"]}));
    ClientError::VideoFailed(reason.to_owned()).exit_code()
}

async fn ls(api: &Api, out: &Output, args: &LsArgs) -> Result<u8, ClientError> {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query.append_pair("limit", &args.limit.to_string());
    if let Some(status) = &args.status {
        query.append_pair("status", status);
    }
    if let Some(q) = &args.search {
        query.append_pair("q", q);
    }
    let page = api
        .json(Method::GET, &format!("/api/v1/videos?{}", query.finish()))
        .await?
        .unwrap_or(Value::Null);
    if out.is_json() {
        out.record(page);
        return Ok(0);
    }
    let items = page["items"].as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        out.say("No videos.");
    }
    for video in items {
        let title = video["title"]
            .as_str()
            .or(video["filename"].as_str())
            .unwrap_or("");
        out.say(&format!(
            "{}  {:<10} {:>5.1}%  {}  {title}",
            video["id"].as_str().unwrap_or(""),
            video["status"].as_str().unwrap_or(""),
            video["progress"].as_f64().unwrap_or(0.0) * 100.0,
            video["created_at"].as_str().unwrap_or(""),
        ));
    }
    Ok(0)
}

async fn show(api: &Api, out: &Output, args: &ShowArgs) -> Result<u8, ClientError> {
    let Some(path) = video_path(&args.id) else {
        return Ok(usage(out, "a video id is letters, digits and dashes"));
    };
    let video = api.json(Method::GET, &path).await?.unwrap_or(Value::Null);
    if out.is_json() {
        out.record(video);
        return Ok(0);
    }
    let text = |v: &Value| match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    for (name, value) in [
        ("id", text(&video["id"])),
        ("title", text(&video["title"])),
        ("file", text(&video["filename"])),
        ("status", text(&video["status"])),
        (
            "progress",
            format!("{:.1}%", video["progress"].as_f64().unwrap_or(0.0) * 100.0),
        ),
        ("created", text(&video["created_at"])),
        (
            "playlist",
            absolute(api, video["links"]["playlist"].as_str()).unwrap_or_else(|| "-".into()),
        ),
    ] {
        out.say(&format!("{name:>9}: {value}"));
    }
    if let Some(error) = video["error"]["message"].as_str() {
        out.say(&format!("{:>9}: {error}", "error"));
    }
    for rendition in video["renditions"].as_array().into_iter().flatten() {
        out.say(&format!(
            "{:>9}: {} {}x{} {} kbit/s",
            "rendition",
            text(&rendition["name"]),
            text(&rendition["width"]),
            text(&rendition["height"]),
            rendition["bandwidth"].as_u64().unwrap_or(0) / 1000
        ));
    }
    Ok(0)
}

async fn rm(api: &Api, out: &Output, args: &RmArgs) -> u8 {
    let mut code = 0;
    for id in &args.ids {
        let Some(path) = video_path(id) else {
            code = code.max(usage(out, &format!("{id:?} is not a video id")));
            continue;
        };
        match api.json(Method::DELETE, &path).await {
            Ok(_) => {
                out.say(&format!("deleted {id}"));
                out.record(json!({"event": "deleted", "id": id}));
            }
            Err(error) => {
                out.warn(None, &format!("{id}: {error}"));
                code = code.max(error.exit_code());
            }
        }
    }
    code
}

async fn watch(api: &Api, out: &Output, args: &WatchArgs) -> Result<u8, ClientError> {
    let Some(path) = video_path(&args.id) else {
        return Ok(usage(out, "a video id is letters, digits and dashes"));
    };
    let video = api.url(&path)?;
    Ok(follow_video(api, out, &args.id, &args.id, &video).await)
}
