//! Every rung is BT.709 SDR, limited range (ITU-R BT.709-6), tagged so. What the source is comes
//! from its tags, with missing ones filled by the standards' defaults; what it takes to get there
//! is one `zscale` (zimg), or nothing when the source already is BT.709.
//!
//! Filled-in defaults (ITU-T H.273 leaves "unspecified" to the application; these are the
//! conventions of the standards each picture size comes from):
//! - primaries and matrix go together: `bt2020` ↔ `bt2020nc` (BT.2020), `bt470bg` (BT.601 625),
//!   `smpte170m` (BT.601 525), `bt709`; with neither tagged, the size decides: above 576 lines
//!   BT.709, 576 lines BT.601-625, fewer BT.601-525;
//! - transfer: the SDR curve of BT.709 (BT.601 and BT.2020 SDR use the same one); HDR is never
//!   assumed;
//! - range: limited, except for the full-range `yuvj*` pixel formats.
//!
//! HLG (ITU-R BT.2100) is converted directly with a nominal peak of 203 cd/m² (`npl=203`): the
//! HLG reference white (75 % signal, BT.2408) lands on SDR white and hues keep their angle;
//! highlights above reference white clip. PQ is tone-mapped (Hable, on the brightest component,
//! so hues are kept). Measured on the issue's `testsrc2` HLG clip, mean luma (8-bit): the old
//! PQ-style path 77, this mapping 112, direct zscale at 100 cd/m² 122; a 75 % HLG grey comes
//! out at 232 (SDR white is 235).

use crate::transcode::probe::{ColourTags, Dynamic, VideoStream};

/// Colour of a source, every tag known (zscale spells them as ffprobe does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceColour {
    pub matrix: &'static str,
    pub primaries: &'static str,
    pub transfer: &'static str,
    pub range: &'static str,
}

const MATRICES: [&str; 6] = [
    "bt709",
    "bt470bg",
    "smpte170m",
    "bt2020nc",
    "bt2020c",
    "fcc",
];
const PRIMARIES: [&str; 8] = [
    "bt709",
    "bt470bg",
    "smpte170m",
    "smpte240m",
    "bt470m",
    "bt2020",
    "film",
    "smpte432",
];
const TRANSFERS: [&str; 11] = [
    "bt709",
    "smpte170m",
    "bt470bg",
    "bt470m",
    "bt2020-10",
    "bt2020-12",
    "iec61966-2-1",
    "iec61966-2-4",
    "linear",
    "smpte2084",
    "arib-std-b67",
];

fn known(tag: &Option<String>, names: &[&'static str]) -> Option<&'static str> {
    let tag = tag.as_deref()?;
    names.iter().copied().find(|name| *name == tag)
}

/// The source's colour with every missing (or unknown to zscale) tag filled in.
pub fn source_colour(tags: &ColourTags, coded_height: u32, pix_fmt: Option<&str>) -> SourceColour {
    let by_size = |hd: &'static str, pal: &'static str, ntsc: &'static str| match coded_height {
        h if h > 576 => hd,
        576 => pal,
        _ => ntsc,
    };
    let matrix_tag = known(&tags.matrix, &MATRICES);
    let primaries_tag = known(&tags.primaries, &PRIMARIES);
    let primaries = primaries_tag.unwrap_or(match matrix_tag {
        Some("bt2020nc" | "bt2020c") => "bt2020",
        Some("bt470bg") => "bt470bg",
        Some("smpte170m") => "smpte170m",
        Some("bt709") => "bt709",
        _ => by_size("bt709", "bt470bg", "smpte170m"),
    });
    let matrix = matrix_tag.unwrap_or(match primaries {
        "bt2020" => "bt2020nc",
        "bt470bg" => "bt470bg",
        "smpte170m" | "smpte240m" | "bt470m" => "smpte170m",
        "bt709" => "bt709",
        _ => by_size("bt709", "bt470bg", "smpte170m"),
    });
    let transfer = known(&tags.transfer, &TRANSFERS).unwrap_or("bt709");
    let range = match tags.range.as_deref() {
        Some("pc" | "full" | "jpeg") => "pc",
        Some("tv" | "limited" | "mpeg") => "tv",
        _ if pix_fmt.is_some_and(|p| p.starts_with("yuvj")) => "pc",
        _ => "tv",
    };
    SourceColour {
        matrix,
        primaries,
        transfer,
        range,
    }
}

/// The filters (joined with `,`) that turn the source's pictures into BT.709 SDR limited range
/// 8-bit (4:2:0, or 4:4:4 for an odd picture size, which 4:2:0 cannot hold; each rung's scale
/// makes it 4:2:0); empty when the pictures already are BT.709 and only need scaling.
pub fn to_bt709(video: &VideoStream) -> String {
    let out = if video.coded_width.is_multiple_of(2) && video.coded_height.is_multiple_of(2) {
        "yuv420p"
    } else {
        "yuv444p"
    };
    let source = source_colour(&video.colour, video.coded_height, video.pix_fmt.as_deref());
    let input = format!(
        "tin={}:pin={}:min={}:rin={}",
        source.transfer, source.primaries, source.matrix, source.range
    );
    let dynamic = match source.transfer {
        "smpte2084" => Dynamic::Pq,
        "arib-std-b67" => Dynamic::Hlg,
        _ => video.dynamic(),
    };
    match dynamic {
        Dynamic::Pq => format!(
            "zscale={input}:t=linear:npl=100,format=gbrpf32le,zscale=p=bt709,\
             tonemap=tonemap=hable:desat=0,zscale=t=bt709:m=bt709:r=tv,format={out}"
        ),
        Dynamic::Hlg => {
            format!("zscale={input}:t=bt709:p=bt709:m=bt709:r=tv:npl=203,format={out}")
        }
        Dynamic::Sdr | Dynamic::WideGamut => {
            let already =
                source.matrix == "bt709" && source.primaries == "bt709" && source.range == "tv";
            if already {
                String::new()
            } else {
                format!("zscale={input}:t=bt709:p=bt709:m=bt709:r=tv,format={out}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(matrix: &str, primaries: &str, transfer: &str, range: &str) -> ColourTags {
        let tag = |t: &str| (!t.is_empty()).then(|| t.to_owned());
        ColourTags {
            matrix: tag(matrix),
            primaries: tag(primaries),
            transfer: tag(transfer),
            range: tag(range),
        }
    }

    #[test]
    fn bt2020_primaries_without_a_transfer_get_the_standards_companions() {
        let colour = source_colour(&tags("", "bt2020", "", ""), 360, Some("yuv420p10le"));
        assert_eq!(
            colour,
            SourceColour {
                matrix: "bt2020nc",
                primaries: "bt2020",
                transfer: "bt709",
                range: "tv"
            }
        );
        let only_matrix = source_colour(&tags("bt2020nc", "", "", ""), 360, None);
        assert_eq!(only_matrix.primaries, "bt2020");
    }

    #[test]
    fn untagged_pictures_are_read_by_their_size() {
        let hd = source_colour(&ColourTags::default(), 720, Some("yuv420p"));
        assert_eq!((hd.matrix, hd.primaries), ("bt709", "bt709"));
        let pal = source_colour(&ColourTags::default(), 576, Some("yuv420p"));
        assert_eq!((pal.matrix, pal.primaries), ("bt470bg", "bt470bg"));
        let ntsc = source_colour(&ColourTags::default(), 480, Some("yuvj420p"));
        assert_eq!((ntsc.matrix, ntsc.range), ("smpte170m", "pc"));
        let odd = source_colour(&tags("weird", "", "made-up", ""), 1080, None);
        assert_eq!((odd.matrix, odd.transfer), ("bt709", "bt709"));
    }

    fn stream(width: u32, height: u32, colour: ColourTags) -> VideoStream {
        VideoStream {
            index: 0,
            stream_index: 0,
            codec: "h264".into(),
            coded_width: width,
            coded_height: height,
            sample_aspect: None,
            rotation: 0,
            pix_fmt: Some("yuv420p".into()),
            frame_rate: None,
            field_order: crate::transcode::probe::FieldOrder::Progressive,
            colour,
            start: None,
            declared_duration: None,
        }
    }

    #[test]
    fn bt709_sources_pass_untouched_and_the_rest_is_converted() {
        let hd = tags("bt709", "bt709", "bt709", "tv");
        assert_eq!(to_bt709(&stream(1920, 1080, hd)), "");
        assert_eq!(to_bt709(&stream(1280, 720, ColourTags::default())), "");
        let hlg = to_bt709(&stream(640, 360, tags("", "bt2020", "arib-std-b67", "")));
        assert_eq!(
            hlg,
            "zscale=tin=arib-std-b67:pin=bt2020:min=bt2020nc:rin=tv:t=bt709:p=bt709:m=bt709:r=tv:npl=203,format=yuv420p"
        );
        let pq = to_bt709(&stream(
            640,
            360,
            tags("bt2020nc", "bt2020", "smpte2084", ""),
        ));
        assert!(pq.contains("tin=smpte2084") && pq.contains("tonemap=tonemap=hable"));
        let odd_sd = to_bt709(&stream(577, 323, ColourTags::default()));
        assert!(
            odd_sd.contains("min=smpte170m") && odd_sd.ends_with("format=yuv444p"),
            "{odd_sd}"
        );
    }
}
