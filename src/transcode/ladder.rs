//! Plans the ladder from the probed source: pure, no I/O.

use crate::config::LadderSpec;

/// One configured rung: the short side in pixels and the video bit rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LadderRung {
    pub short_side: u32,
    pub video_kbps: u32,
}

/// A rung planned for one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedRung {
    /// Folder and display name, e.g. `720p`.
    pub name: String,
    pub width: u32,
    pub height: u32,
    pub video_kbps: u32,
}

/// Parses `1080:5000,720:2800,…` into rungs, highest first.
pub fn parse_ladder(text: &str) -> Result<LadderSpec, String> {
    let mut rungs = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (side, kbps) = part
            .split_once(':')
            .ok_or_else(|| format!("ladder rung {part:?} is not height:kbps"))?;
        let short_side: u32 = side
            .trim()
            .trim_end_matches('p')
            .parse()
            .map_err(|_| format!("bad height in {part:?}"))?;
        let video_kbps: u32 = kbps
            .trim()
            .trim_end_matches('k')
            .parse()
            .map_err(|_| format!("bad kbps in {part:?}"))?;
        if !(16..=4320).contains(&short_side) || !(50..=100_000).contains(&video_kbps) {
            return Err(format!(
                "ladder rung {part:?} is out of range (16-4320 px, 50-100000 kbps)"
            ));
        }
        rungs.push(LadderRung {
            short_side,
            video_kbps,
        });
    }
    if rungs.is_empty() {
        return Err("the ladder needs at least one rung".into());
    }
    rungs.sort_by_key(|rung| std::cmp::Reverse(rung.short_side));
    rungs.dedup_by_key(|r| r.short_side);
    Ok(LadderSpec(rungs))
}

/// Rungs for a source displayed at `width`×`height`, lowest first.
///
/// Planned on the displayed short side (so portrait video keeps its rungs), never upscaled, sizes
/// rounded to even numbers. A source below the lowest rung gets one rung at its own size.
pub fn plan(width: u32, height: u32, ladder: &LadderSpec) -> Vec<PlannedRung> {
    let (width, height) = (width.max(2), height.max(2));
    let short = width.min(height);
    let mut planned: Vec<PlannedRung> = ladder
        .0
        .iter()
        .filter(|rung| rung.short_side <= short)
        .map(|rung| {
            let (w, h) = scale_to_short_side(width, height, rung.short_side);
            PlannedRung {
                name: format!("{}p", rung.short_side),
                width: w,
                height: h,
                video_kbps: rung.video_kbps,
            }
        })
        .collect();
    if planned.is_empty() {
        let lowest = ladder.0.last().copied().unwrap_or(LadderRung {
            short_side: 240,
            video_kbps: 400,
        });
        let (w, h) = (even(width), even(height));
        let area_ratio = f64::from(w.min(h)) / f64::from(lowest.short_side);
        let kbps = (f64::from(lowest.video_kbps) * area_ratio * area_ratio).round() as u32;
        planned.push(PlannedRung {
            name: format!("{}p", w.min(h)),
            width: w,
            height: h,
            video_kbps: kbps.max(100),
        });
    }
    planned.sort_by_key(|rung| rung.width * rung.height);
    planned
}

fn scale_to_short_side(width: u32, height: u32, short_side: u32) -> (u32, u32) {
    // Nearest even size, never above the source's own (even) size.
    let scale = |long: u32, short: u32| {
        let exact = f64::from(long) * f64::from(short_side) / f64::from(short);
        (((exact / 2.0).round() as u32) * 2).clamp(2, even(long))
    };
    if width >= height {
        (scale(width, height), even(short_side))
    } else {
        (even(short_side), scale(height, width))
    }
}

/// Rounds down to an even number (x264 with 4:2:0 needs even sizes), at least 2.
fn even(n: u32) -> u32 {
    (n & !1).max(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_ladder() -> LadderSpec {
        parse_ladder("1080:5000,720:2800,480:1400,360:800,240:400")
            .unwrap_or(LadderSpec(Vec::new()))
    }

    fn sizes(rungs: &[PlannedRung]) -> Vec<(u32, u32)> {
        rungs.iter().map(|r| (r.width, r.height)).collect()
    }

    #[test]
    fn a_1080p_source_gets_every_rung_in_ascending_order() {
        let rungs = plan(1920, 1080, &default_ladder());
        assert_eq!(
            sizes(&rungs),
            vec![
                (426, 240),
                (640, 360),
                (854, 480),
                (1280, 720),
                (1920, 1080)
            ]
        );
        assert_eq!(rungs[0].name, "240p");
    }

    #[test]
    fn never_upscales() {
        let rungs = plan(640, 360, &default_ladder());
        assert_eq!(sizes(&rungs), vec![(426, 240), (640, 360)]);
        for rung in plan(1000, 562, &default_ladder()) {
            assert!(rung.width <= 1000 && rung.height <= 562);
        }
    }

    #[test]
    fn portrait_is_planned_on_its_short_side() {
        let rungs = plan(720, 1280, &default_ladder());
        assert_eq!(
            sizes(&rungs),
            vec![(240, 426), (360, 640), (480, 854), (720, 1280)]
        );
    }

    #[test]
    fn odd_sizes_become_even() {
        let rungs = plan(577, 323, &default_ladder());
        assert_eq!(sizes(&rungs), vec![(428, 240)]);
        assert!(rungs.iter().all(|r| r.width % 2 == 0 && r.height % 2 == 0));
    }

    #[test]
    fn a_source_below_the_lowest_rung_gets_one_rung_at_its_size() {
        let rungs = plan(161, 121, &default_ladder());
        assert_eq!(sizes(&rungs), vec![(160, 120)]);
        assert_eq!(rungs[0].name, "120p");
        assert!(rungs[0].video_kbps >= 100);
    }

    #[test]
    fn ladder_parsing_sorts_and_rejects_nonsense() {
        let ladder = parse_ladder("360:800, 720p:2800k").unwrap_or(LadderSpec(Vec::new()));
        assert_eq!(ladder.0[0].short_side, 720);
        assert!(parse_ladder("").is_err());
        assert!(parse_ladder("720").is_err());
        assert!(parse_ladder("0:100").is_err());
    }
}
