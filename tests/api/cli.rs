//! `reel` as a client, run as a real process against a real server: several files in one
//! upload, `ls`, `show`, `watch`, `rm`, plain lines when stdout is not a terminal, and the
//! documented exit codes (0 done, 1 failed or canceled, 2 usage, 3 refused, 4 unreachable,
//! 5 local file unreadable).

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::fixtures;
use crate::helpers::TestApp;

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
            .collect()
    }
}

/// `reel <args>` with `server` as `--server`, its own state dir, stdout a pipe (not a
/// terminal), within 120 s.
async fn reel(server: &str, state: &Path, args: &[&str]) -> Run {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_reel"))
        .args(args)
        .args(["--server", server])
        .env("XDG_STATE_HOME", state)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .unwrap_or_else(|_| panic!("reel {args:?} finished within 2 min"))
        .expect("run reel");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[tokio::test]
async fn the_cli_uploads_several_files_lists_shows_watches_and_removes_with_its_exit_codes() {
    let app = TestApp::spawn(&[]);
    let state = tempfile::tempdir().expect("state");
    let (tiny, standard) = (fixtures::tiny(), fixtures::standard());
    let files = [
        tiny.to_str().expect("path"),
        standard.to_str().expect("path"),
    ];

    let up = reel(
        &app.base,
        state.path(),
        &["upload", "--follow", "--json", files[0], files[1]],
    )
    .await;
    assert_eq!(up.code, Some(0), "{}\n{}", up.stdout, up.stderr);
    let ready: Vec<Value> = up
        .json_lines()
        .into_iter()
        .filter(|l| l["event"] == "ready")
        .collect();
    assert_eq!(
        ready.len(),
        2,
        "both files followed to ready: {}",
        up.stdout
    );
    let ids: Vec<String> = ready
        .iter()
        .map(|l| l["id"].as_str().expect("id").to_owned())
        .collect();
    for line in &ready {
        assert!(
            line["playlist"]
                .as_str()
                .is_some_and(|p| p.ends_with("master.m3u8")),
            "{line}"
        );
    }

    // Plain lines on a pipe: no bars, no carriage returns, no colour.
    let ls = reel(&app.base, state.path(), &["ls", "--status", "ready"]).await;
    assert_eq!(ls.code, Some(0), "{}", ls.stderr);
    for id in &ids {
        assert!(ls.stdout.contains(id.as_str()), "{}", ls.stdout);
    }
    assert!(
        !ls.stdout.contains('\r') && !ls.stdout.contains('\u{1b}'),
        "{:?}",
        ls.stdout
    );
    let listed = reel(&app.base, state.path(), &["ls", "--json", "--limit", "1"]).await;
    let page = &listed.json_lines()[0];
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1), "{page}");

    let show = reel(&app.base, state.path(), &["show", "--json", &ids[0]]).await;
    assert_eq!(show.code, Some(0));
    assert_eq!(show.json_lines()[0]["status"], "ready");
    let plain = reel(&app.base, state.path(), &["show", &ids[1]]).await;
    assert!(plain.stdout.contains("status: ready"), "{}", plain.stdout);
    assert!(plain.stdout.contains("rendition:"), "{}", plain.stdout);
    let watch = reel(&app.base, state.path(), &["watch", &ids[0]]).await;
    assert_eq!(
        watch.code,
        Some(0),
        "watching a ready video ends at once: {}",
        watch.stderr
    );

    let rm = reel(&app.base, state.path(), &["rm", &ids[0], &ids[1]]).await;
    assert_eq!(rm.code, Some(0), "{}", rm.stderr);
    for id in &ids {
        assert_eq!(app.get_json(&format!("/api/v1/videos/{id}")).await.0, 404);
    }

    // The exit codes.
    let gone = reel(&app.base, state.path(), &["show", &ids[0]]).await;
    assert_eq!(
        gone.code,
        Some(3),
        "not found is a refusal: {}",
        gone.stderr
    );
    let bad_id = reel(&app.base, state.path(), &["show", "../etc"]).await;
    assert_eq!(bad_id.code, Some(2), "{}", bad_id.stderr);
    let junk = tempfile::NamedTempFile::new().expect("junk");
    std::fs::write(junk.path(), vec![b'x'; 4096]).expect("write");
    let refused = reel(
        &app.base,
        state.path(),
        &["upload", junk.path().to_str().expect("path")],
    )
    .await;
    assert_eq!(refused.code, Some(3), "not a video: {}", refused.stderr);
    let missing = reel(
        &app.base,
        state.path(),
        &["upload", "/nonexistent/clip.mp4"],
    )
    .await;
    assert_eq!(missing.code, Some(5), "{}", missing.stderr);
    // With several files, the largest code of any of them; the good one is still uploaded.
    let mixed = reel(
        &app.base,
        state.path(),
        &["upload", "--json", files[0], "/nonexistent/x.mp4"],
    )
    .await;
    assert_eq!(mixed.code, Some(5), "{}", mixed.stderr);
    assert!(
        mixed.json_lines().iter().any(|l| l["event"] == "uploaded"),
        "{}",
        mixed.stdout
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let nowhere = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    let unreachable = reel(&nowhere, state.path(), &["ls"]).await;
    assert_eq!(unreachable.code, Some(4), "{}", unreachable.stderr);
}
