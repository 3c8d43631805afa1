//! Kinds 1 and 2 of issue 9: non-square pixels and interlaced pictures.

use std::path::PathBuf;

use super::size;
use crate::fixtures::{self, hygiene};
use crate::helpers::TestApp;
use crate::ladder_checks::{Expect, ready_ladder};

#[tokio::test]
async fn anamorphic_sources_are_planned_and_shown_at_their_displayed_aspect() {
    let app = TestApp::spawn(&["--encoders", "2"]);
    // (clip, rung sizes, displayed source size)
    type Case = (PathBuf, &'static [(u64, u64)], (u64, u64));
    let cases: [Case; 2] = [
        // The 16:9 DVD: 720×576 coded, 1024×576 displayed; 852 (clamped) or 854 wide.
        (
            hygiene::dvd_16x9(),
            &[(426, 240), (640, 360), (854, 480)],
            (1024, 576),
        ),
        (
            hygiene::squeezed_h264(),
            &[(426, 240), (640, 360)],
            (640, 360),
        ),
    ];
    let mut ids = Vec::new();
    for (clip, _, _) in &cases {
        ids.push(app.upload_id(clip).await);
    }
    for ((clip, rungs, displayed), id) in cases.iter().zip(&ids) {
        let (video, _) = ready_ladder(&app, id, clip, Expect::default()).await;
        let sizes: Vec<(u64, u64)> = video["renditions"]
            .as_array()
            .expect("renditions")
            .iter()
            .map(size)
            .collect();
        assert_eq!(&sizes, rungs, "{}", clip.display());
        assert_eq!(
            (
                video["source"]["width"].as_u64(),
                video["source"]["height"].as_u64()
            ),
            (Some(displayed.0), Some(displayed.1)),
            "the source is described as displayed: {}",
            clip.display()
        );
    }
}

#[tokio::test]
async fn flagged_interlaced_sources_are_deinterlaced() {
    let app = TestApp::spawn(&["--encoders", "2"]);
    let clips = [hygiene::interlaced_ts(), hygiene::interlaced_bff()];
    let mut ids = Vec::new();
    for clip in &clips {
        ids.push(app.upload_id(clip).await);
    }
    for (clip, id) in clips.iter().zip(&ids) {
        ready_ladder(&app, id, clip, Expect { interlaced: true }).await;
    }
}

#[tokio::test]
async fn combed_pictures_without_an_interlace_flag_are_detected_and_deinterlaced() {
    let app = TestApp::spawn(&[]);
    let combed = hygiene::combed_unflagged();
    let id = app.upload_id(&combed).await;
    ready_ladder(&app, &id, &combed, Expect { interlaced: true }).await;
    // Sharp progressive test patterns, which fool idet at its default threshold, are left alone.
    let plain = fixtures::standard();
    let id = app.upload_id(&plain).await;
    ready_ladder(&app, &id, &plain, Expect::default()).await;
    let detections = app
        .logs()
        .lines()
        .filter(|l| l.contains("interlaced pictures without an interlace flag"))
        .count();
    assert_eq!(detections, 1, "only the combed clip is detected");
}
