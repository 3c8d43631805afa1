//! `--public-base-url`: a CDN in front of `/hls/`. The media links of a resource (playlist,
//! poster, storyboard, each rendition's playlist) become absolute URLs below the base, a private
//! video's signature kept; API links stay paths on reel. The path and query of such a link,
//! fetched from reel itself (what the CDN does on a miss), are served.

use serde_json::Value;

use crate::fixtures;
use crate::helpers::TestApp;

const BASE: &str = "https://cdn.example.com/media/";
const PLAYBACK_SECRET: &str = "playback-secret-for-the-public-base-spec-0";

async fn upload(app: &TestApp, visibility: &str) -> String {
    let response = app
        .client
        .post(app.url("/api/v1/videos"))
        .header("Content-Type", "video/mp4")
        .header("X-Visibility", visibility)
        .body(std::fs::read(fixtures::tiny()).expect("fixture"))
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status(), 202);
    let video: Value = response.json().await.expect("resource");
    video["id"].as_str().expect("id").to_owned()
}

async fn status_of(app: &TestApp, path: &str) -> u16 {
    let response = app.client.get(app.url(path)).send().await.expect("GET");
    response.status().as_u16()
}

/// The media links of a ready resource: `links.playlist`, `poster`, `storyboard` and every
/// rendition's playlist.
fn media_links(video: &Value) -> Vec<String> {
    let mut links: Vec<String> = ["playlist", "poster", "storyboard"]
        .iter()
        .map(|name| {
            video["links"][name]
                .as_str()
                .unwrap_or_else(|| panic!("links.{name} in {video}"))
                .to_owned()
        })
        .collect();
    let renditions = video["renditions"].as_array().expect("renditions");
    assert!(!renditions.is_empty(), "{video}");
    links.extend(renditions.iter().map(|r| {
        r["playlist"]
            .as_str()
            .expect("rendition playlist")
            .to_owned()
    }));
    links
}

/// The API links stay paths on reel, whatever the base.
fn assert_api_links_are_paths(video: &Value, id: &str) {
    assert_eq!(video["links"]["self"], format!("/api/v1/videos/{id}"));
    assert_eq!(
        video["links"]["events"],
        format!("/api/v1/videos/{id}/events")
    );
    assert_eq!(
        video["links"]["source"],
        format!("/api/v1/videos/{id}/source")
    );
}

#[tokio::test]
async fn media_links_point_below_the_public_base_url_and_a_private_one_s_signature_still_verifies()
{
    let app = TestApp::spawn(&[
        "--public-base-url",
        BASE,
        "--playback-secret",
        PLAYBACK_SECRET,
    ]);
    let public = upload(&app, "public").await;
    let private = upload(&app, "private").await;
    let base = BASE.trim_end_matches('/');

    let video = app.wait_for(&public, "ready").await;
    assert_eq!(
        video["links"]["playlist"],
        format!("{base}/hls/{public}/master.m3u8")
    );
    assert_eq!(
        video["links"]["poster"],
        format!("{base}/hls/{public}/poster.jpg")
    );
    assert_api_links_are_paths(&video, &public);
    for link in media_links(&video) {
        let path = link
            .strip_prefix(base)
            .unwrap_or_else(|| panic!("{link} is below {base}"));
        assert!(
            path.starts_with(&format!("/hls/{public}/")) && !path.contains('?'),
            "{link}"
        );
        assert_eq!(status_of(&app, path).await, 200, "{path} from reel");
    }

    let video = app.wait_for(&private, "ready").await;
    assert_api_links_are_paths(&video, &private);
    let playlist = video["links"]["playlist"].as_str().expect("playlist");
    assert!(
        playlist.starts_with(&format!("{base}/hls/{private}/master.m3u8?exp="))
            && playlist.contains("&sig="),
        "{playlist}"
    );
    for link in media_links(&video) {
        let path = link
            .strip_prefix(base)
            .unwrap_or_else(|| panic!("{link} is below {base}"));
        let (file, query) = path.split_once('?').expect("a signed link");
        assert!(
            query.starts_with("exp=") && query.contains("&sig="),
            "{link}"
        );
        assert_eq!(
            status_of(&app, path).await,
            200,
            "{path}: signed, from reel"
        );
        assert_eq!(status_of(&app, file).await, 403, "{file}: unsigned");
    }

    // The same links over SSE and in the list; the page may load media from the CDN's origin
    // and previews it from there.
    let events = app.events(&public, None, |e| e.event == "ready").await;
    let ready = events.last().expect("events");
    assert_eq!(
        ready.data["links"]["playlist"],
        format!("{base}/hls/{public}/master.m3u8")
    );
    let (_, list) = app.get_json("/api/v1/videos").await;
    let items = list["items"].as_array().expect("items");
    assert!(
        items.iter().all(|v| v["links"]["playlist"]
            .as_str()
            .is_some_and(|l| l.starts_with(base))),
        "{list}"
    );
    let page = app
        .client
        .get(app.url(&format!("/watch/{public}")))
        .send()
        .await
        .expect("watch page");
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .expect("policy")
        .to_owned();
    for directive in ["img-src", "media-src", "connect-src"] {
        assert!(
            policy.contains(&format!("{directive} 'self' https://cdn.example.com")),
            "{directive} allows the CDN: {policy}"
        );
    }
    assert!(policy.contains("script-src 'self';"), "{policy}");
    let html = page.text().await.expect("page");
    assert!(
        html.contains(&format!("content=\"{base}/hls/{public}/poster.jpg\"")),
        "og:image from the CDN"
    );
}

#[tokio::test]
async fn without_a_public_base_url_media_links_stay_paths_on_reel() {
    let app = TestApp::spawn(&[]);
    let id = upload(&app, "public").await;
    let video = app.wait_for(&id, "ready").await;
    assert_api_links_are_paths(&video, &id);
    assert_eq!(video["links"]["playlist"], format!("/hls/{id}/master.m3u8"));
    for link in media_links(&video) {
        assert!(link.starts_with(&format!("/hls/{id}/")), "{link}");
    }
    let page = app
        .client
        .get(app.url(&format!("/watch/{id}")))
        .send()
        .await
        .expect("watch page");
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .expect("policy")
        .to_owned();
    assert!(
        policy.contains("media-src 'self' blob:;") && policy.contains("connect-src 'self';"),
        "{policy}"
    );
}

#[test]
fn a_public_base_url_that_is_not_an_absolute_http_url_stops_the_start() {
    let media = tempfile::tempdir().expect("media");
    let start = |value: &str, by_env: bool| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_reel"));
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--media-dir"])
            .arg(media.path())
            .stdin(std::process::Stdio::null());
        if by_env {
            command.env("REEL_PUBLIC_BASE_URL", value);
        } else {
            command.args(["--public-base-url", value]);
        }
        let output = command.output().expect("run reel");
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(!output.status.success(), "{value:?} was accepted: {stderr}");
        assert!(
            !stderr.contains("\"listening\""),
            "{value:?}: refused before listening"
        );
        stderr
    };
    for (value, reason) in [
        ("cdn.example.com", "not an absolute URL"),
        ("/hls", "not an absolute URL"),
        ("ftp://cdn.example.com", "the scheme is \"ftp\""),
        ("https://cdn.example.com/?v=2", "has a query"),
        ("https://cdn.example.com/#top", "has a fragment"),
    ] {
        for by_env in [false, true] {
            let stderr = start(value, by_env);
            assert!(
                stderr.contains("--public-base-url") && stderr.contains(reason),
                "{value:?} (env: {by_env}) names the flag and says {reason:?}: {stderr}"
            );
        }
    }
}
