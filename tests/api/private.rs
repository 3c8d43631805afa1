//! Private videos: their ladder is served only with a signed, expiring link, which the
//! resource carries and every playlist passes on to the files it names.

use std::time::Duration;

use reel::auth::playback::PlaybackSigner;
use serde_json::{Value, json};

use crate::fixtures;
use crate::helpers::TestApp;

const PLAYBACK_SECRET: &str = "playback-secret-for-the-private-spec-0123";

async fn get(app: &TestApp, path: &str) -> (u16, String) {
    let response = app.client.get(app.url(path)).send().await.expect("GET");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

#[tokio::test]
async fn a_private_ladder_needs_a_signed_link_that_its_playlists_pass_on() {
    let app = TestApp::spawn(&["--playback-secret", PLAYBACK_SECRET]);
    let bytes = tokio::fs::read(fixtures::standard())
        .await
        .expect("fixture");
    let response = app
        .client
        .post(app.url("/api/v1/videos"))
        .header("Content-Type", "video/mp4")
        .header("X-Visibility", "private")
        .body(bytes)
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status(), 202);
    let id = response.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let ready = app.wait_for(&id, "ready").await;
    assert_eq!(ready["visibility"], "private");
    let playlist = ready["links"]["playlist"]
        .as_str()
        .expect("playlist")
        .to_owned();
    let poster = ready["links"]["poster"]
        .as_str()
        .expect("poster")
        .to_owned();
    assert!(
        playlist.starts_with(&format!("/hls/{id}/master.m3u8?exp=")),
        "{playlist}"
    );
    assert!(poster.contains("&sig="), "{poster}");

    // Unsigned, tampered or expired: 403 in the error shape.
    let (status, body) = get(&app, &format!("/hls/{id}/master.m3u8")).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("\"code\""), "{body}");
    let tampered = format!("{}x", playlist);
    assert_eq!(get(&app, &tampered).await.0, 403);
    let signer = PlaybackSigner::new(PLAYBACK_SECRET, Duration::from_secs(60));
    let video_id = id.parse().expect("id");
    let old = signer.sign(video_id, 1_000);
    assert_eq!(
        get(&app, &format!("/hls/{id}/master.m3u8?exp=1000&sig={old}"))
            .await
            .0,
        403
    );
    let other = "01a22d47-b58a-70f7-b7c6-c05a8e65a8e8".parse().expect("id");
    let elsewhere = signer.sign(other, 4_000_000_000);
    assert_eq!(
        get(
            &app,
            &format!("/hls/{id}/master.m3u8?exp=4000000000&sig={elsewhere}")
        )
        .await
        .0,
        403,
        "a signature is for one video"
    );

    // Signed: the master and every file it leads to.
    let (status, master) = get(&app, &playlist).await;
    assert_eq!(status, 200);
    let query = playlist.split_once('?').expect("query").1;
    let variant = master
        .lines()
        .find(|l| !l.starts_with('#') && !l.trim().is_empty())
        .expect("a variant");
    assert!(variant.ends_with(query), "{variant}");
    let (status, media) = get(&app, &format!("/hls/{id}/{variant}")).await;
    assert_eq!(status, 200, "{media}");
    let rung = variant.split('/').next().expect("rung");
    let map = media
        .lines()
        .find_map(|l| {
            l.split_once("URI=\"")
                .map(|(_, rest)| rest.trim_end_matches('"').to_owned())
        })
        .expect("EXT-X-MAP");
    let segment = media
        .lines()
        .find(|l| !l.starts_with('#') && !l.trim().is_empty())
        .expect("a segment");
    for file in [map.as_str(), segment] {
        assert!(file.ends_with(query), "{file}");
        assert_eq!(
            get(&app, &format!("/hls/{id}/{rung}/{file}")).await.0,
            200,
            "{file}"
        );
        let unsigned = file.split('?').next().expect("name");
        assert_eq!(
            get(&app, &format!("/hls/{id}/{rung}/{unsigned}")).await.0,
            403
        );
    }
    assert_eq!(get(&app, &poster).await.0, 200);

    // Made public: plain links again, served to anyone.
    let patched = app
        .client
        .patch(app.url(&format!("/api/v1/videos/{id}")))
        .json(&json!({"visibility": "public"}))
        .send()
        .await
        .expect("PATCH");
    assert_eq!(patched.status(), 200);
    let public: Value = patched.json().await.expect("json");
    assert_eq!(
        public["links"]["playlist"],
        format!("/hls/{id}/master.m3u8")
    );
    assert_eq!(get(&app, &format!("/hls/{id}/master.m3u8")).await.0, 200);
    // And private again.
    let patched = app
        .client
        .patch(app.url(&format!("/api/v1/videos/{id}")))
        .json(&json!({"visibility": "private"}))
        .send()
        .await
        .expect("PATCH");
    assert_eq!(patched.status(), 200);
    assert_eq!(get(&app, &format!("/hls/{id}/master.m3u8")).await.0, 403);
}

#[tokio::test]
async fn a_server_without_a_playback_secret_refuses_private_videos() {
    let app = TestApp::spawn(&[]);
    let response = app
        .client
        .post(app.url("/api/v1/videos"))
        .header("Content-Type", "video/mp4")
        .header("X-Visibility", "private")
        .body(tokio::fs::read(fixtures::tiny()).await.expect("fixture"))
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "private_unavailable");
    let odd = app
        .client
        .post(app.url("/api/v1/videos"))
        .header("Content-Type", "video/mp4")
        .header("X-Visibility", "secret")
        .body(tokio::fs::read(fixtures::tiny()).await.expect("fixture"))
        .send()
        .await
        .expect("upload");
    assert_eq!(odd.status(), 400);
    assert!(app.files_in("sources").is_empty() && app.files_in("tmp").is_empty());
}
