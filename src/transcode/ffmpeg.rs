//! The one ffmpeg process of a job: its arguments (pure) and its supervised run.

use std::ffi::OsString;
use std::path::Path;

pub use super::plan::{AUDIO_GROUP, AUDIO_RENDITION, EncodePlan, output_frame_rate};
use super::plan::{filters, storyboard};
pub(crate) use super::supervise::prepare_child;
pub use super::supervise::{FfmpegError, ProgressParser, ProgressSample, RunLimits, run};

/// x264 settings reel adds on top of `preset`, or `None` to leave the preset as it is.
///
/// With the default `veryfast`, P and B macroblocks are analysed whole (`partitions=none`: no
/// 8x8/4x4 sub-partitions, no 4x4/8x8 intra in inter frames; I frames keep their full intra
/// analysis). Measured on one core (BENCHMARKS.md, scenario 9, the ‡ rows): the ladder's
/// real-time factor 0.737 → 0.788 on testsrc2 and 0.511 → 0.556 on a grainy natural source
/// (7–9 % faster), each rung's SSIM within 0.0011 of plain `veryfast` and bytes within 0.4 %.
/// Other presets are left alone: whoever picks a slower one wants its quality, and the faster
/// ones already analyse less.
pub fn x264_params(preset: &str) -> Option<&'static str> {
    (preset == "veryfast").then_some("partitions=none")
}

/// ffmpeg arguments that decode once and encode every rung as fMP4 HLS with aligned keyframes:
/// video-only rungs in `<out>/<rung>/`, the audio once in `<out>/audio/` (one rendition of an
/// `EXT-X-MEDIA` group that every rung names, RFC 8216 §4.3.4.1.1), and the storyboard's
/// sheets in `<out>/storyboard/sprite_<n>.jpg` (a second output of the same graph).
pub fn ladder_args(plan: &EncodePlan) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    let mut push = |items: &[&str]| args.extend(items.iter().map(OsString::from));
    let graph = filters::ladder_graph(plan);
    let gop = (plan.frame_rate.as_f64() * f64::from(plan.segment_seconds))
        .round()
        .max(1.0) as u32;
    push(&["-nostats", "-progress", "pipe:1", "-y"]);
    args.push("-i".into());
    args.push(plan.source.clone().into_os_string());
    let mut push = |items: &[&str]| args.extend(items.iter().map(OsString::from));
    push(&["-filter_complex", &graph]);
    let mut stream_map = Vec::new();
    for (i, rung) in plan.rungs.iter().enumerate() {
        push(&["-map", &format!("[v{i}]")]);
        let kbps = rung.video_kbps;
        push(&[
            &format!("-b:v:{i}"),
            &format!("{kbps}k"),
            &format!("-maxrate:v:{i}"),
            &format!("{}k", kbps * 11 / 10),
            &format!("-bufsize:v:{i}"),
            &format!("{}k", kbps * 3 / 2),
        ]);
        if plan.audio.is_some() {
            stream_map.push(format!("v:{i},agroup:{AUDIO_GROUP},name:{}", rung.name));
        } else {
            stream_map.push(format!("v:{i},name:{}", rung.name));
        }
    }
    if plan.audio.is_some() {
        push(&["-map", "[a0]"]);
        stream_map.push(format!("a:0,agroup:{AUDIO_GROUP},name:{AUDIO_RENDITION}"));
    }
    let segment = plan.segment_seconds.to_string();
    push(&[
        "-c:v",
        "libx264",
        "-preset",
        &plan.preset,
        "-profile:v",
        "high",
        "-pix_fmt",
        "yuv420p",
        "-g",
        &gop.to_string(),
        "-keyint_min",
        &gop.to_string(),
        "-sc_threshold",
        "0",
        "-force_key_frames",
        &format!("expr:gte(t,n_forced*{segment})"),
    ]);
    if let Some(params) = x264_params(&plan.preset) {
        push(&["-x264-params", params]);
    }
    // Every rung is BT.709 limited range, and says so (ITU-R BT.709-6).
    push(&[
        "-color_primaries",
        "bt709",
        "-color_trc",
        "bt709",
        "-colorspace",
        "bt709",
        "-color_range",
        "tv",
    ]);
    if plan.audio.is_some() {
        // The sample rate and channels come from the graph (see `plan::filters`).
        push(&[
            "-c:a",
            "aac",
            "-profile:a",
            "aac_low",
            "-b:a",
            &format!("{}k", plan.audio_kbps),
        ]);
    }
    push(&[
        "-f",
        "hls",
        "-hls_time",
        &segment,
        // EVENT, so ffmpeg rewrites each playlist (temp file + rename) as every segment
        // closes and `live` can follow; `outputs` makes the finished ones VOD.
        "-hls_playlist_type",
        "event",
        "-hls_segment_type",
        "fmp4",
        "-hls_flags",
        "independent_segments",
        "-hls_fmp4_init_filename",
        "init.mp4",
        "-var_stream_map",
        &stream_map.join(" "),
    ]);
    args.push("-hls_segment_filename".into());
    args.push(
        plan.out_dir
            .join("%v")
            .join("seg_%05d.m4s")
            .into_os_string(),
    );
    args.push(plan.out_dir.join("%v").join("index.m3u8").into_os_string());
    // The storyboard: a lead frame, then one JPEG per sheet as the tile filter fills it
    // (`outputs` renames them to the sheets' names).
    let mut push = |items: &[&str]| args.extend(items.iter().map(OsString::from));
    push(&[
        "-map",
        &format!("[{}]", filters::STORYBOARD_LABEL),
        "-c:v",
        "mjpeg",
        "-q:v",
        "5",
        "-fps_mode",
        "passthrough",
        "-f",
        "image2",
        "-start_number",
        "0",
    ]);
    args.push(
        plan.out_dir
            .join(storyboard::DIR)
            .join(storyboard::Storyboard::FFMPEG_PATTERN)
            .into_os_string(),
    );
    args
}

/// ffmpeg arguments for a poster frame picked from a short window well inside the video's own
/// pictures (not the padded span: 20 s of audio over 2 s of video has its pictures at the start).
pub fn poster_args(plan: &EncodePlan, output: &Path) -> Vec<OsString> {
    let (start, length) = plan.pictures;
    let at = start + if length > 2.0 { length * 0.3 } else { 0.0 };
    let top = plan.rungs.last();
    let (width, height) = top.map_or((640, 360), |r| (r.width, r.height));
    let filters = filters::poster_filters(plan, width, height);
    let mut args: Vec<OsString> = ["-y", "-ss", &format!("{at:.3}")]
        .iter()
        .map(OsString::from)
        .collect();
    args.push("-i".into());
    args.push(plan.source.clone().into_os_string());
    args.extend(
        [
            "-map",
            &format!("0:v:{}", plan.video_index),
            "-vf",
            &filters,
            "-frames:v",
            "1",
            "-q:v",
            "3",
        ]
        .iter()
        .map(OsString::from),
    );
    args.push(output.as_os_str().to_owned());
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transcode::ladder::PlannedRung;
    use crate::transcode::plan::AudioPlan;
    use crate::transcode::probe::{FieldOrder, Rational};

    fn plan(audio: bool) -> EncodePlan {
        EncodePlan {
            source: "/m/sources/x".into(),
            out_dir: "/m/tmp/job/ladder".into(),
            rungs: ["240p", "360p"]
                .iter()
                .zip([(426, 240, 400), (640, 360, 800)])
                .map(|(name, (width, height, video_kbps))| PlannedRung {
                    name: (*name).into(),
                    width,
                    height,
                    video_kbps,
                })
                .collect(),
            frame_rate: Rational {
                num: 30000,
                den: 1001,
            },
            video_index: 0,
            field_order: FieldOrder::Progressive,
            colour: String::new(),
            audio: audio.then_some(AudioPlan {
                index: 0,
                sample_rate: 48_000,
                channels: 2,
            }),
            audio_kbps: 128,
            offset: 0.0,
            duration: 3.0,
            pictures: (0.0, 3.0),
            segment_seconds: 4,
            preset: "veryfast".into(),
            storyboard: storyboard::plan(3.0, Rational { num: 30, den: 1 }, 426, 240),
        }
    }

    fn joined(args: &[OsString]) -> String {
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn one_process_decodes_once_and_aligns_keyframes() {
        let args = joined(&ladder_args(&plan(true)));
        assert!(args.contains("split=2[v1][s0]"), "{args}");
        assert!(
            args.contains("-g 120 -keyint_min 120 -sc_threshold 0"),
            "{args}"
        );
        assert!(args.contains("expr:gte(t,n_forced*4)"));
        assert!(
            args.contains("-bufsize:v:1 1200k -map [a0] -c:v libx264"),
            "{args}"
        );
        assert!(
            args.contains(
                "-var_stream_map v:0,agroup:audio,name:240p v:1,agroup:audio,name:360p \
                 a:0,agroup:audio,name:audio "
            ),
            "{args}"
        );
        assert!(args.contains("-pix_fmt yuv420p"));
        assert!(args.contains("-c:a aac -profile:a aac_low -b:a 128k"));
        assert_eq!(args.matches(" -i ").count(), 1);
        assert_eq!(args.matches("-c:a aac").count(), 1, "audio is encoded once");
    }

    #[test]
    fn the_storyboard_is_a_second_output_of_the_same_graph() {
        let args = joined(&ladder_args(&plan(true)));
        assert!(
            args.ends_with(
                "/index.m3u8 -map [board] -c:v mjpeg -q:v 5 -fps_mode passthrough -f image2 \
                 -start_number 0 /m/tmp/job/ladder/storyboard/frame_%d.jpg"
            ),
            "{args}"
        );
    }

    #[test]
    fn a_silent_source_gets_video_only_rungs() {
        let args = joined(&ladder_args(&plan(false)));
        assert!(args.contains("-var_stream_map v:0,name:240p v:1,name:360p -hls_segment_filename"));
        assert!(!args.contains("agroup"));
        assert!(!args.contains("[a0]"));
        assert!(!args.contains("-c:a"));
    }

    #[test]
    fn the_poster_comes_from_the_pictures_not_the_padded_span() {
        let mut short_video = plan(true);
        (short_video.duration, short_video.pictures) = (20.0, (0.0, 2.0));
        let args = joined(&poster_args(&short_video, Path::new("p.jpg")));
        assert!(args.starts_with("-y -ss 0.000 -i"), "{args}");
        short_video.pictures = (1.5, 10.0);
        let args = joined(&poster_args(&short_video, Path::new("p.jpg")));
        assert!(args.starts_with("-y -ss 4.500 -i"), "{args}");
    }

    #[test]
    fn only_the_default_preset_gets_whole_macroblock_analysis() {
        let args = joined(&ladder_args(&plan(true)));
        assert!(
            args.contains("-force_key_frames expr:gte(t,n_forced*4) -x264-params partitions=none -color_primaries"),
            "{args}"
        );
        for preset in ["medium", "slow", "superfast"] {
            let mut slower = plan(true);
            slower.preset = preset.into();
            let args = joined(&ladder_args(&slower));
            assert!(!args.contains("-x264-params"), "{preset}: {args}");
            assert!(args.contains(&format!("-preset {preset} ")), "{args}");
        }
    }

    #[test]
    fn every_rung_is_tagged_bt709() {
        let args = joined(&ladder_args(&plan(true)));
        assert!(
            args.contains(
                "-color_primaries bt709 -color_trc bt709 -colorspace bt709 -color_range tv"
            ),
            "{args}"
        );
    }
}
