//! Storyboards: thumbnails of the whole timeline on a few JPEG sprite sheets, and a WebVTT track
//! whose cues point into them with media fragments (`sprite_0.jpg#xywh=x,y,w,h`, W3C Media
//! Fragments URI 1.0 §4.2.1), the form players read for seek-bar previews. Pure: the sheets come
//! from a branch of the ladder's one decode (see `filters`); [`cues`] and [`vtt`] describe
//! what ffmpeg wrote.

use std::fmt::Write as _;
use std::path::Path;

use crate::transcode::probe::Rational;

/// Folder of the sheets inside the ladder, and the track beside it.
pub const DIR: &str = "storyboard";
pub const TRACK: &str = "storyboard.vtt";
/// The longer side of a thumbnail, pixels.
const LONG_SIDE: u32 = 160;
/// Thumbnails per sheet row, and rows per sheet at most: a sheet is at most 10 × 10 thumbnails.
const COLUMNS: u32 = 10;
const ROWS: u32 = 10;
/// At most this many thumbnails (two full sheets): the interval grows with the duration.
const MAX_THUMBNAILS: f64 = 200.0;
/// Seconds between thumbnails: the first that keeps a video under [`MAX_THUMBNAILS`].
const STEPS: [f64; 12] = [
    1.0, 2.0, 3.0, 5.0, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// The storyboard of one encode.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Storyboard {
    /// Output frames from one thumbnail to the next (the first is frame 0).
    pub every: u32,
    /// Output frame rate, frames per second.
    pub frame_rate: f64,
    /// Seconds the output lasts.
    pub duration: f64,
    /// One thumbnail, pixels (even).
    pub width: u32,
    pub height: u32,
    /// Grid of one sheet (every sheet has this size; the last may have blank cells).
    pub columns: u32,
    pub rows: u32,
    /// Thumbnails expected: one per `every` frames of the output.
    pub count: u32,
}

/// One cue: `[start, end)` seconds shows `sheet`'s cell at `x`,`y` (pixels from top left).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cue {
    pub start: f64,
    pub end: f64,
    pub sheet: u32,
    pub x: u32,
    pub y: u32,
}

/// Plans the storyboard of an output of `duration` seconds at `frame_rate`, whose pictures are
/// `width`×`height` (the lowest rung, which the thumbnails are scaled from).
pub fn plan(duration: f64, frame_rate: Rational, width: u32, height: u32) -> Storyboard {
    let rate = frame_rate.as_f64().max(1.0);
    let interval = STEPS
        .iter()
        .copied()
        .find(|step| duration / step <= MAX_THUMBNAILS)
        .unwrap_or(duration / MAX_THUMBNAILS);
    let every = ((interval * rate).round() as u32).max(1);
    // The graph keeps frames whose time is before `duration` (`trim=end`).
    let frames = ((duration * rate - 1e-3).ceil() as u32).max(1);
    let count = frames.div_ceil(every);
    let (long, short) = (width.max(height).max(2), width.min(height).max(2));
    let long_side = LONG_SIDE.min(long) & !1;
    let short_side =
        ((f64::from(long_side) * f64::from(short) / f64::from(long) / 2.0).round() as u32 * 2)
            .max(2);
    let (tile_w, tile_h) = if width >= height {
        (long_side, short_side)
    } else {
        (short_side, long_side)
    };
    let columns = count.clamp(1, COLUMNS);
    let rows = count.div_ceil(columns).clamp(1, ROWS);
    Storyboard {
        every,
        frame_rate: rate,
        duration,
        width: tile_w,
        height: tile_h,
        columns,
        rows,
        count,
    }
}

impl Storyboard {
    /// Thumbnails on one sheet.
    pub fn per_sheet(&self) -> u32 {
        self.columns * self.rows
    }

    /// Sheets ffmpeg writes for [`Storyboard::count`] thumbnails.
    pub fn sheets(&self) -> u32 {
        self.count.div_ceil(self.per_sheet())
    }

    /// A sheet's size in pixels.
    pub fn sheet_size(&self) -> (u32, u32) {
        (self.columns * self.width, self.rows * self.height)
    }

    /// The file name of sheet `n` inside [`DIR`].
    pub fn sheet_name(n: u32) -> String {
        format!("sprite_{n}.jpg")
    }

    /// The graph's branch from `input` to `output`: a lead frame, then the sheets.
    ///
    /// ffmpeg (5.1 to 7.x) prints no `-progress` report until every output has written its
    /// header, and the sheets' output writes its header with its first frame, which `tile`
    /// emits only once a sheet is full: a quarter to half of the way into a long video, at the
    /// end of a short one. Until then the job had no progress to show, and the stall watchdog,
    /// which feeds on that progress, stopped healthy encodes. So one black frame of the
    /// sheets' size goes first (`concat` passes it at once); ffmpeg writes it as
    /// [`Storyboard::ffmpeg_name`] 0, and [`adopt_sheets`] drops it when the encode is done.
    /// The frames are then timed one second apart (`setpts=N/TB`): a sheet carries its first
    /// thumbnail's time, 0 for the first, which `concat` does not always move past a
    /// one-frame lead, and the encoder refuses two frames at one time.
    pub fn branch(&self, input: &str, scaler: &str, output: &str) -> String {
        let (w, h) = self.sheet_size();
        format!(
            "[{input}]{}[tiles];color=c=black:s={w}x{h}:r=1:d=1,setsar=1,format=yuvj420p[lead];\
             [lead][tiles]concat=n=2:v=1:a=0,setpts=N/TB[{output}]",
            self.filters(scaler)
        )
    }

    /// The file name ffmpeg gives the `n`-th frame of the branch (0 is the lead, 1 the first
    /// sheet).
    pub fn ffmpeg_name(n: u32) -> String {
        format!("frame_{n}.jpg")
    }

    /// [`Storyboard::ffmpeg_name`] as an `-f image2` pattern (numbered from 0).
    pub const FFMPEG_PATTERN: &'static str = "frame_%d.jpg";

    /// The filters after the branch: keep every `every`-th frame, scale, tile into sheets.
    pub fn filters(&self, scaler: &str) -> String {
        format!(
            "select=not(mod(n\\,{every})),scale={w}:{h}:flags={scaler},setsar=1,\
             format=yuvj420p,tile={c}x{r}",
            every = self.every,
            w = self.width,
            h = self.height,
            c = self.columns,
            r = self.rows,
        )
    }
}

/// Cues covering `[0, duration)` with no gap, one per thumbnail on the first `sheets` sheets
/// (those written; normally [`Storyboard::sheets`]); the last cue runs to the end. A last
/// thumbnail that would show for less than half an interval (the tail of a stream a few
/// milliseconds longer than the other) is left out, its time given to the one before.
pub fn cues(board: &Storyboard, sheets: u32) -> Vec<Cue> {
    let step = f64::from(board.every) / board.frame_rate;
    let mut available = board.count.min(sheets * board.per_sheet());
    if available > 1 && board.duration - f64::from(available - 1) * step < step / 2.0 {
        available -= 1;
    }
    (0..available)
        .map(|j| {
            let cell = j % board.per_sheet();
            let last = j + 1 == available;
            Cue {
                start: f64::from(j) * step,
                end: if last {
                    board.duration
                } else {
                    f64::from(j + 1) * step
                },
                sheet: j / board.per_sheet(),
                x: (cell % board.columns) * board.width,
                y: (cell / board.columns) * board.height,
            }
        })
        .collect()
}

/// A WebVTT timestamp (`hh:mm:ss.ttt`, W3C WebVTT §4.5), rounded to the millisecond.
fn timestamp(seconds: f64) -> String {
    let ms = (seconds.max(0.0) * 1000.0).round() as u64;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

/// The WebVTT track: one cue per thumbnail, its text the sheet's URL relative to the track
/// with the cell as an `#xywh=` fragment. Cue times are rounded to the millisecond, so
/// consecutive cues share their boundary exactly.
pub fn vtt(board: &Storyboard, cues: &[Cue]) -> String {
    let mut out = String::from("WEBVTT\n");
    for cue in cues {
        let _ = write!(
            out,
            "\n{} --> {}\n{DIR}/{}#xywh={},{},{},{}\n",
            timestamp(cue.start),
            timestamp(cue.end),
            Storyboard::sheet_name(cue.sheet),
            cue.x,
            cue.y,
            board.width,
            board.height
        );
    }
    out
}

/// Renames the sheets ffmpeg wrote in `dir` to their published names (frame `n + 1` becomes
/// sheet `n`) and removes the lead frame and anything past the planned sheets (blocking file
/// I/O). A missing frame is left for the caller's count to notice.
pub fn adopt_sheets(dir: &Path, board: &Storyboard) -> std::io::Result<()> {
    for n in 0..board.sheets() {
        let from = dir.join(Storyboard::ffmpeg_name(n + 1));
        match std::fs::rename(&from, dir.join(Storyboard::sheet_name(n))) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
            _ => {}
        }
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with("frame_") {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: Rational = Rational { num: 30, den: 1 };

    #[test]
    fn the_interval_grows_with_the_duration_and_sheets_stay_small() {
        let short = plan(6.0, RATE, 426, 240);
        assert_eq!(
            (short.every, short.count, short.columns, short.rows),
            (30, 6, 6, 1)
        );
        assert_eq!((short.width, short.height), (160, 90));
        let ten_minutes = plan(600.0, RATE, 426, 240);
        assert_eq!((ten_minutes.every, ten_minutes.count), (90, 200));
        assert_eq!(ten_minutes.sheets(), 2);
        assert_eq!(ten_minutes.sheet_size(), (1600, 900));
        let three_hours = plan(3.0 * 3600.0, RATE, 426, 240);
        assert_eq!((three_hours.every, three_hours.count), (1800, 180));
        let portrait = plan(4.0, RATE, 240, 426);
        assert_eq!((portrait.width, portrait.height), (90, 160));
        let tiny = plan(0.2, RATE, 120, 90);
        assert_eq!((tiny.count, tiny.width, tiny.height), (1, 120, 90));
    }

    #[test]
    fn cues_cover_the_whole_duration_without_gaps_inside_the_sheets() {
        for (duration, rate) in [
            (6.0, RATE),
            (
                12.345,
                Rational {
                    num: 30000,
                    den: 1001,
                },
            ),
            (601.0, RATE),
            (0.2, RATE),
        ] {
            let board = plan(duration, rate, 426, 240);
            let cues = cues(&board, board.sheets());
            assert!(cues.len() as u32 + 1 >= board.count && cues.len() as u32 <= board.count);
            assert_eq!(cues[0].start, 0.0);
            assert!((cues.last().map_or(0.0, |c| c.end) - duration).abs() < 1e-9);
            for pair in cues.windows(2) {
                assert_eq!(pair[0].end, pair[1].start);
                assert!(pair[0].start < pair[0].end);
            }
            let (w, h) = board.sheet_size();
            assert!(
                cues.iter()
                    .all(|c| c.x + board.width <= w && c.y + board.height <= h)
            );
        }
    }

    #[test]
    fn a_tail_shorter_than_half_an_interval_goes_to_the_thumbnail_before() {
        let board = plan(110.016, RATE, 192, 108);
        assert_eq!(board.count, 111);
        let cues = cues(&board, board.sheets());
        assert_eq!(cues.len(), 110);
        assert_eq!(
            cues.last().map(|c| (c.start, c.end)),
            Some((109.0, 110.016))
        );
    }

    #[test]
    fn a_missing_sheet_shortens_the_track_and_the_last_cue_still_reaches_the_end() {
        let board = plan(300.0, RATE, 426, 240);
        assert_eq!((board.count, board.sheets()), (150, 2));
        let cues = cues(&board, 1);
        assert_eq!(cues.len(), 100);
        assert_eq!(cues.last().map(|c| c.end), Some(300.0));
    }

    #[test]
    fn the_track_is_webvtt_with_xywh_fragments() {
        let board = plan(2.5, RATE, 426, 240);
        let text = vtt(&board, &cues(&board, 1));
        assert_eq!(
            text,
            "WEBVTT\n\n00:00:00.000 --> 00:00:01.000\nstoryboard/sprite_0.jpg#xywh=0,0,160,90\n\
             \n00:00:01.000 --> 00:00:02.000\nstoryboard/sprite_0.jpg#xywh=160,0,160,90\n\
             \n00:00:02.000 --> 00:00:02.500\nstoryboard/sprite_0.jpg#xywh=320,0,160,90\n"
        );
        assert_eq!(timestamp(3725.0004), "01:02:05.000");
        assert!(
            board
                .filters("bicubic")
                .starts_with("select=not(mod(n\\,30)),scale=160:90")
        );
    }

    #[test]
    fn the_branch_starts_with_a_lead_frame_of_the_sheets_size() {
        let board = plan(6.0, RATE, 426, 240);
        assert_eq!(
            board.branch("sb", "bicubic", "board"),
            "[sb]select=not(mod(n\\,30)),scale=160:90:flags=bicubic,setsar=1,format=yuvj420p,\
             tile=6x1[tiles];color=c=black:s=960x90:r=1:d=1,setsar=1,format=yuvj420p[lead];\
             [lead][tiles]concat=n=2:v=1:a=0,setpts=N/TB[board]"
        );
    }

    #[test]
    fn adopting_the_sheets_drops_the_lead_and_renames_the_rest() {
        let dir = tempfile::tempdir().expect("dir");
        let board = plan(300.0, RATE, 426, 240);
        assert_eq!(board.sheets(), 2);
        for n in 0..4 {
            std::fs::write(dir.path().join(Storyboard::ffmpeg_name(n)), [n as u8]).expect("write");
        }
        adopt_sheets(dir.path(), &board).expect("adopt");
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["sprite_0.jpg", "sprite_1.jpg"]);
        assert_eq!(
            std::fs::read(dir.path().join("sprite_0.jpg")).ok(),
            Some(vec![1])
        );
        // A run that wrote no sheet: nothing to rename, nothing fails.
        let empty = tempfile::tempdir().expect("dir");
        adopt_sheets(empty.path(), &board).expect("adopt nothing");
    }
}
