//! Kind 5 of issue 9: colour metadata that is partial or not PQ. Every rung is tagged BT.709
//! (the ladder checks); these specs compare what the pictures look like with a direct
//! conversion of the source made here by another route.

use std::path::Path;
use std::process::Command;

use crate::fixtures::hygiene;
use crate::helpers::TestApp;
use crate::ladder_checks::{Expect, ready_ladder};

/// The first frame of `path` through `filters`, cropped to `crop` (`w:h:x:y`, empty for the
/// whole frame), averaged to one pixel: (Y, R, G, B), Y on the 8-bit limited scale.
fn average(path: &Path, filters: &str, crop: &str) -> (f64, [f64; 3]) {
    let crop = if crop.is_empty() {
        String::new()
    } else {
        format!("crop={crop},")
    };
    let run = |tail: &str| -> Vec<u8> {
        let output = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-i"])
            .arg(path)
            .args([
                "-frames:v",
                "1",
                "-vf",
                &format!("{filters}format=yuv420p,{crop}scale=1:1:flags=area,{tail}"),
                "-f",
                "rawvideo",
                "-",
            ])
            .output()
            .expect("ffmpeg");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        output.stdout
    };
    let luma = run("format=yuv444p")[0];
    let rgb = run("scale=in_color_matrix=bt709:in_range=tv,format=rgb24");
    (
        f64::from(luma),
        [f64::from(rgb[0]), f64::from(rgb[1]), f64::from(rgb[2])],
    )
}

/// Hue angle in degrees (0 red, 60 yellow, 120 green) of an RGB triple.
fn hue([r, g, b]: [f64; 3]) -> f64 {
    let (max, min) = (r.max(g).max(b), r.min(g).min(b));
    if max - min < 1.0 {
        return 0.0;
    }
    let h = if max == r {
        60.0 * ((g - b) / (max - min))
    } else if max == g {
        60.0 * ((b - r) / (max - min) + 2.0)
    } else {
        60.0 * ((r - g) / (max - min) + 4.0)
    };
    h.rem_euclid(360.0)
}

/// The yellow bar of `testsrc2` at 640×360, away from the moving band.
const YELLOW_BAR: &str = "60:100:240:220";

/// Compares the top rung's first frame with `reference` applied to the source: mean luma within
/// 5 %, the yellow bar's hue within 8°.
fn assert_looks_like(top: &Path, source: &Path, reference: &str) {
    let (luma, _) = average(top, "", "");
    let (expected, _) = average(source, &format!("{reference},"), "");
    assert!(
        (luma / expected - 1.0).abs() <= 0.05,
        "{}: mean luma {luma}, direct conversion {expected}",
        source.display()
    );
    let (_, bar) = average(top, "", YELLOW_BAR);
    let (_, expected_bar) = average(source, &format!("{reference},"), YELLOW_BAR);
    assert!(
        (hue(bar) - hue(expected_bar)).abs() <= 8.0,
        "{}: yellow bar {bar:?} (hue {:.0}), direct conversion {expected_bar:?} (hue {:.0})",
        source.display(),
        hue(bar),
        hue(expected_bar)
    );
}

#[tokio::test]
async fn wide_gamut_sdr_with_missing_tags_is_converted_to_bt709() {
    let app = TestApp::spawn(&["--encoders", "2"]);
    // The HEVC without a transfer tag, and H.264 tagged with the BT.2020 matrix only.
    let clips = [hygiene::bt2020_no_transfer(), hygiene::bt2020_matrix_only()];
    let mut ids = Vec::new();
    for clip in &clips {
        ids.push(app.upload_id(clip).await);
    }
    let mut tops = Vec::new();
    for (clip, id) in clips.iter().zip(&ids) {
        let (_, rungs) = ready_ladder(&app, id, clip, Expect::default()).await;
        tops.push(rungs.last().expect("rungs").playlist.clone());
    }
    for (clip, top) in clips.iter().zip(&tops) {
        // A direct conversion with the tags the standard implies for BT.2020 SDR. (libavfilter's
        // `colorspace` differs on colours outside BT.709, which it does not clip in linear light.)
        assert_looks_like(
            top,
            clip,
            "zscale=pin=bt2020:min=bt2020nc:tin=bt2020-10:rin=tv:p=bt709:m=bt709:t=bt709:r=tv",
        );
        // Not merely relabelled: a BT.2020 picture read as BT.709 looks different.
        let (luma, _) = average(top, "", "");
        let (relabelled, _) = average(clip, "", "");
        assert!(
            (luma / relabelled - 1.0).abs() > 0.05,
            "{}: {luma} is the unconverted {relabelled}",
            clip.display()
        );
    }
}

#[tokio::test]
async fn hlg_keeps_reference_white_and_hues() {
    let app = TestApp::spawn(&["--encoders", "2"]);
    let example = hygiene::hlg_mov();
    let white = hygiene::hlg_reference_white();
    let example_id = app.upload_id(&example).await;
    let white_id = app.upload_id(&white).await;
    let (_, example_rungs) = ready_ladder(&app, &example_id, &example, Expect::default()).await;
    let (_, rungs) = ready_ladder(&app, &white_id, &white, Expect::default()).await;

    // Direct HLG to BT.709 with HLG reference white at 203 cd/m² (ITU-R BT.2408).
    assert_looks_like(
        &example_rungs.last().expect("rungs").playlist,
        &example,
        "zscale=tin=arib-std-b67:pin=bt2020:min=bt2020nc:t=bt709:p=bt709:m=bt709:r=tv:npl=203",
    );
    let top = &rungs.last().expect("rungs").playlist;
    let (grey, _) = average(top, "", "200:200:60:80");
    assert!(
        (213.0..=240.0).contains(&grey),
        "HLG reference white (75 %) comes out at Y={grey}, SDR white is 235"
    );
    let (_, yellow) = average(top, "", "200:200:380:80");
    assert!(
        (hue(yellow) - 60.0).abs() <= 8.0 && yellow[2] < 0.5 * yellow[1],
        "75 % HLG yellow comes out {yellow:?} (hue {:.0})",
        hue(yellow)
    );
}
