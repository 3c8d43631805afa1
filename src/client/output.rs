//! What the client shows: progress bars on a terminal, plain lines when stdout is not one, or
//! one JSON object per line with `--json`.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};

/// How results and progress are shown.
pub enum Output {
    /// indicatif bars on stdout (a terminal).
    Bars(MultiProgress),
    /// Plain lines, progress every tenth.
    Lines,
    /// JSON lines for scripts.
    Json,
}

impl Output {
    pub fn new(json: bool) -> Self {
        if json {
            Self::Json
        } else if std::io::stdout().is_terminal() {
            Self::Bars(MultiProgress::with_draw_target(ProgressDrawTarget::stdout()))
        } else {
            Self::Lines
        }
    }

    pub fn is_json(&self) -> bool {
        matches!(self, Self::Json)
    }

    /// A line for people (not shown with `--json`).
    pub fn say(&self, text: &str) {
        match self {
            Self::Bars(multi) => {
                let _ = multi.println(text);
            }
            Self::Lines => println_flushed(text),
            Self::Json => {}
        }
    }

    /// A JSON object for scripts (only with `--json`).
    pub fn record(&self, value: Value) {
        if let Self::Json = self {
            println_flushed(&value.to_string());
        }
    }

    /// A problem: on stderr for people, as an `error` record for scripts.
    pub fn warn(&self, file: Option<&str>, text: &str) {
        match self {
            Self::Json => self.record(json!({"event": "error", "file": file, "message": text})),
            Self::Bars(multi) => {
                multi.suspend(|| eprintln!("reel: {text}"));
            }
            Self::Lines => eprintln!("reel: {text}"),
        }
    }

    /// A progress bar of `total` bytes (upload) or percent (transcode) for `label`.
    pub fn bar(&self, label: &str, total: u64, bytes: bool) -> Progress {
        let Self::Bars(multi) = self else {
            return Progress {
                bar: None,
                label: label.to_owned(),
                shown: Mutex::new((None, String::new())),
                total,
                bytes,
                lines: matches!(self, Self::Lines),
            };
        };
        let template = if bytes {
            "{prefix:.bold} [{bar:30.cyan/blue}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}"
        } else {
            "{prefix:.bold} [{bar:30.green/blue}] {pos:>3}% {msg}"
        };
        let style = ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        let bar = multi.add(ProgressBar::new(total).with_style(style));
        bar.set_prefix(label.to_owned());
        bar.enable_steady_tick(Duration::from_millis(250));
        Progress {
            bar: Some(bar),
            label: label.to_owned(),
            shown: Mutex::new((None, String::new())),
            total,
            bytes,
            lines: false,
        }
    }
}

fn println_flushed(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

/// One bar, or its plain-line stand-in (a line at every tenth).
pub struct Progress {
    bar: Option<ProgressBar>,
    label: String,
    /// The last tenth and the last message printed as lines.
    shown: Mutex<(Option<u64>, String)>,
    total: u64,
    bytes: bool,
    lines: bool,
}

impl Progress {
    pub fn set(&self, position: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(position);
            return;
        }
        if !self.lines || self.total == 0 {
            return;
        }
        let tenth = position.min(self.total) * 10 / self.total;
        let mut shown = self.shown.lock().unwrap_or_else(|e| e.into_inner());
        if shown.0 != Some(tenth) {
            shown.0 = Some(tenth);
            let what = if self.bytes { "uploaded" } else { "transcoded" };
            println_flushed(&format!("{}: {}% {what}", self.label, tenth * 10));
        }
    }

    /// A bar's message; as a line, only when it says something new.
    pub fn message(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.set_message(text.to_owned()),
            None if self.lines && !text.is_empty() => {
                let mut shown = self.shown.lock().unwrap_or_else(|e| e.into_inner());
                if shown.1 != text {
                    shown.1 = text.to_owned();
                    println_flushed(&format!("{}: {text}", self.label));
                }
            }
            None => {}
        }
    }

    /// True for a drawn bar (which may show fast-changing details a line should not).
    pub fn is_bar(&self) -> bool {
        self.bar.is_some()
    }

    pub fn finish(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.finish_with_message(text.to_owned()),
            None if self.lines => println_flushed(&format!("{}: {text}", self.label)),
            None => {}
        }
    }

    pub fn fail(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.abandon_with_message(text.to_owned()),
            None if self.lines => println_flushed(&format!("{}: {text}", self.label)),
            None => {}
        }
    }
}
