//! Kind 6 of issue 9: every audio rendition is AAC-LC at 48 kHz (44.1 kHz kept), mono or stereo,
//! and surround is downmixed, not cut to its first two channels.

use std::path::Path;
use std::process::Command;

use crate::fixtures::hygiene;
use crate::helpers::TestApp;
use crate::ladder_checks::{Expect, ready_ladder};

#[tokio::test]
async fn audio_becomes_aac_lc_at_48_khz_in_mono_or_stereo() {
    let app = TestApp::spawn(&["--encoders", "2"]);
    let cases = [
        (hygiene::audio_96k(), 2),
        (hygiene::audio_8k_mono(), 1),
        (hygiene::surround_51(), 2),
    ];
    let mut ids = Vec::new();
    for (clip, _) in &cases {
        ids.push(app.upload_id(clip).await);
    }
    for ((clip, channels), id) in cases.iter().zip(&ids) {
        let (_, rungs) = ready_ladder(&app, id, clip, Expect::default()).await;
        for rung in &rungs {
            let audio = rung.audio.as_ref().expect("audio");
            assert_eq!(audio["sample_rate"], "48000", "{}: {audio}", clip.display());
            assert_eq!(audio["channels"], *channels, "{}: {audio}", clip.display());
        }
    }
}

/// RMS level in dBFS of each channel of a stereo audio playlist between `from` and `to` s.
fn levels(playlist: &Path, from: f64, to: f64) -> (f64, f64) {
    let output = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-i"])
        .arg(playlist)
        .args(["-map", "0:a:0", "-f", "f32le", "-"])
        .output()
        .expect("ffmpeg");
    assert!(output.status.success());
    let samples: Vec<f32> = output
        .stdout
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let rate = 48_000.0;
    let frames = samples.chunks_exact(2).collect::<Vec<_>>();
    let window = &frames[(from * rate) as usize..((to * rate) as usize).min(frames.len())];
    let rms = |channel: usize| {
        let sum: f64 = window.iter().map(|f| f64::from(f[channel]).powi(2)).sum();
        10.0 * (sum / window.len() as f64).max(1e-12).log10()
    };
    (rms(0), rms(1))
}

#[tokio::test]
async fn surround_is_downmixed_with_the_centre_in_both_sides_and_surrounds_on_their_side() {
    let app = TestApp::spawn(&[]);
    let clip = hygiene::surround_51();
    let id = app.upload_id(&clip).await;
    let (_, rungs) = ready_ladder(&app, &id, &clip, Expect::default()).await;
    let rung = rungs.last().expect("rungs");
    let audio = rung.audio.as_ref().expect("audio");
    assert_eq!(
        (audio["sample_rate"].as_str(), audio["channels"].as_u64()),
        (Some("48000"), Some(2))
    );
    // 0-1 s: a tone in the centre only.
    let audio_playlist = rung.audio_playlist.as_ref().expect("the audio rendition");
    let (left, right) = levels(audio_playlist, 0.2, 0.8);
    assert!(
        left > -30.0 && (left - right).abs() < 1.0,
        "centre: L {left:.1} dB, R {right:.1} dB"
    );
    // 1-2 s: a tone in the left surround only.
    let (left, right) = levels(audio_playlist, 1.2, 1.8);
    assert!(
        left > -30.0 && right < left - 30.0,
        "left surround: L {left:.1} dB, R {right:.1} dB"
    );
}
