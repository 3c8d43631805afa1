//! The `-filter_complex` graph of a plan: one decode, every rung.
//!
//! Timestamps inside the graph count from ffmpeg's zero (the container's start); `plan.offset`
//! moves the output's first instant there. Video: deinterlace first (fields must not be scaled
//! or colour-converted apart), constant rate from the first instant (`fps` with `start_time=0`
//! holds the first picture over a late start and repeats pictures over holes), BT.709, then the
//! last picture held (`tpad`) to the end of the span. Audio: resampled with `async=1`, which
//! fills a late start (`first_pts=0`) and holes with silence, padded with silence to the end.
//! Both are cut at `plan.duration`, so each rung's audio and video cover the same span and the
//! playlists' EXTINF (from the video) match the media.

use super::EncodePlan;
use crate::transcode::probe::FieldOrder;

/// Seconds, printed exactly enough for filter options.
fn secs(value: f64) -> String {
    format!("{value:.6}")
}

/// Picture filters shared by the ladder and the poster: progressive, constant rate, BT.709.
fn pictures(plan: &EncodePlan, timeline: bool) -> Vec<String> {
    let mut chain = Vec::new();
    let parity = match plan.field_order {
        FieldOrder::TopFirst => Some("tff"),
        FieldOrder::BottomFirst => Some("bff"),
        FieldOrder::Progressive | FieldOrder::Unknown => None,
    };
    if let Some(parity) = parity {
        chain.push(format!("bwdif=mode=send_frame:parity={parity}:deint=all"));
    }
    if timeline && plan.offset > 0.0005 {
        chain.push(format!("setpts=PTS-{}/TB", secs(plan.offset)));
    }
    chain.push(if timeline {
        format!("fps={}:start_time=0", plan.frame_rate)
    } else {
        format!("fps={}", plan.frame_rate)
    });
    if !plan.colour.is_empty() {
        chain.push(plan.colour.clone());
    }
    chain
}

/// The swscale algorithm of every rung (see BENCHMARKS.md, "Faster than real time").
pub const SCALER: &str = "bicubic";

/// Output label of the storyboard's sheets in the graph.
pub const STORYBOARD_LABEL: &str = "board";

/// The whole graph: rungs `[v0]…` (lowest first) scaled in cascade, each from the rung above
/// (the top one from the source), the storyboard's sheets `[board]` from a branch of the
/// lowest rung (after a lead frame, see `Storyboard::branch`), and the audio once as `[a0]`.
///
/// Scaling each rung from the one above costs a fraction of scaling every rung from the full
/// picture, and the downscale steps stay at or below 1.5× (1080→720→480→360→240).
pub fn ladder_graph(plan: &EncodePlan) -> String {
    let n = plan.rungs.len();
    let mut video = pictures(plan, true);
    video.push("tpad=stop=-1:stop_mode=clone".into());
    video.push(format!("trim=end={}", secs(plan.duration)));
    let top = n.saturating_sub(1);
    let mut graph = format!("[0:v:{}]{}[s{top}]", plan.video_index, video.join(","));
    for (i, rung) in plan.rungs.iter().enumerate().rev() {
        // Every rung feeds its encoder and the next one down; the lowest feeds the storyboard.
        let next = if i == 0 {
            "sb".to_owned()
        } else {
            format!("s{}", i - 1)
        };
        graph.push_str(&format!(
            ";[s{i}]scale={}:{}:flags={SCALER},setsar=1,format=yuv420p,split=2[v{i}][{next}]",
            rung.width, rung.height
        ));
    }
    graph.push(';');
    graph.push_str(&plan.storyboard.branch("sb", SCALER, STORYBOARD_LABEL));
    if let Some(audio) = plan.audio {
        let mut chain = Vec::new();
        if plan.offset > 0.0005 {
            chain.push(format!("asetpts=PTS-{}/TB", secs(plan.offset)));
        }
        let layout = if audio.channels == 1 {
            "mono"
        } else {
            "stereo"
        };
        // swresample's default downmix is ITU-R BS.775: centre and surrounds at -3 dB, LFE out,
        // normalised so the sum cannot clip.
        chain.push(format!(
            "aresample={}:async=1:first_pts=0:ochl={layout}",
            audio.sample_rate
        ));
        chain.push("apad".into());
        chain.push(format!("atrim=end={}", secs(plan.duration)));
        graph.push_str(&format!(";[0:a:{}]{}[a0]", audio.index, chain.join(",")));
    }
    graph
}

/// The poster's filters: the source's pictures made progressive and BT.709, one well-chosen
/// frame scaled to `width`×`height`.
pub fn poster_filters(plan: &EncodePlan, width: u32, height: u32) -> String {
    let mut chain = pictures(plan, false);
    chain.push(format!(
        "thumbnail=12,scale={width}:{height},setsar=1,format=yuvj420p"
    ));
    chain.join(",")
}

#[cfg(test)]
mod tests {
    use super::super::{AudioPlan, storyboard};
    use super::*;
    use crate::transcode::ladder::PlannedRung;
    use crate::transcode::probe::Rational;

    pub(crate) fn plan(audio: bool) -> EncodePlan {
        EncodePlan {
            source: "/m/sources/x".into(),
            out_dir: "/m/tmp/job/ladder".into(),
            rungs: vec![
                PlannedRung {
                    name: "240p".into(),
                    width: 426,
                    height: 240,
                    video_kbps: 400,
                },
                PlannedRung {
                    name: "360p".into(),
                    width: 640,
                    height: 360,
                    video_kbps: 800,
                },
            ],
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
            duration: 6.0,
            pictures: (0.0, 6.0),
            segment_seconds: 4,
            preset: "veryfast".into(),
            storyboard: storyboard::plan(
                6.0,
                Rational {
                    num: 30000,
                    den: 1001,
                },
                426,
                240,
            ),
        }
    }

    #[test]
    fn video_and_audio_cover_the_same_span() {
        let graph = ladder_graph(&plan(true));
        assert!(
            graph.starts_with(
                "[0:v:0]fps=30000/1001:start_time=0,tpad=stop=-1:stop_mode=clone,\
                 trim=end=6.000000[s1];"
            ),
            "{graph}"
        );
        assert!(
            graph.ends_with(
                ";[0:a:0]aresample=48000:async=1:first_pts=0:ochl=stereo,apad,\
                 atrim=end=6.000000[a0]"
            ),
            "{graph}"
        );
    }

    #[test]
    fn each_rung_is_scaled_from_the_one_above_and_the_storyboard_from_the_lowest() {
        let graph = ladder_graph(&plan(true));
        let top = graph
            .find("[s1]scale=640:360:flags=bicubic,setsar=1,format=yuv420p,split=2[v1][s0]")
            .expect(&graph);
        let low = graph
            .find("[s0]scale=426:240:flags=bicubic,setsar=1,format=yuv420p,split=2[v0][sb]")
            .expect(&graph);
        assert!(top < low, "{graph}");
        assert!(
            graph.contains(";[sb]select=not(mod(n\\,30)),scale=160:90:flags=bicubic,setsar=1,format=yuvj420p,tile=6x1[tiles];"),
            "{graph}"
        );
    }

    #[test]
    fn a_late_first_stream_moves_the_start_and_interlace_is_undone_first() {
        let mut plan = plan(true);
        plan.offset = 1.5;
        plan.field_order = FieldOrder::BottomFirst;
        plan.colour = "zscale=m=bt709,format=yuv420p".into();
        let graph = ladder_graph(&plan);
        assert!(
            graph.starts_with(
                "[0:v:0]bwdif=mode=send_frame:parity=bff:deint=all,setpts=PTS-1.500000/TB,\
                 fps=30000/1001:start_time=0,zscale=m=bt709,format=yuv420p,tpad"
            ),
            "{graph}"
        );
        assert!(graph.contains("[0:a:0]asetpts=PTS-1.500000/TB,aresample"));
        let poster = poster_filters(&plan, 640, 360);
        assert!(
            poster.starts_with("bwdif=mode=send_frame:parity=bff:deint=all,fps=30000/1001,zscale")
        );
    }

    #[test]
    fn a_silent_source_has_no_audio_chain() {
        assert!(!ladder_graph(&plan(false)).contains("[0:a:"));
    }
}
