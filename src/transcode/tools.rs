//! ffmpeg and ffprobe, checked once at start (present, runnable, with the filters and encoders
//! the ladder needs) and cheaply again for `/readyz` (still there).

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Filters the ladder, poster, deinterlacing, timeline and colour handling use (see
/// `transcode::plan`).
pub const REQUIRED_FILTERS: [&str; 18] = [
    "split",
    "scale",
    "setsar",
    "format",
    "fps",
    "zscale",
    "tonemap",
    "thumbnail",
    "bwdif",
    "idet",
    "setpts",
    "tpad",
    "trim",
    "asetpts",
    "aresample",
    "apad",
    "atrim",
    "asplit",
];
/// Encoders the ladder and poster use.
pub const REQUIRED_ENCODERS: [&str; 3] = ["libx264", "aac", "mjpeg"];
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error(
        "{tool} was not found ({path}); install ffmpeg (on Debian: apt-get install ffmpeg) or \
         point --{tool} at it"
    )]
    NotFound { tool: &'static str, path: String },
    #[error("{tool} ({path}) could not be run: {reason}")]
    NotRunnable {
        tool: &'static str,
        path: String,
        reason: String,
    },
    #[error("{tool} ({path}) lacks the {kind} {missing}; reel needs an ffmpeg build that has them")]
    Missing {
        tool: &'static str,
        path: String,
        kind: &'static str,
        missing: String,
    },
}

/// The checked tools, by absolute path.
#[derive(Debug, Clone)]
pub struct Tools {
    pub ffmpeg: PathBuf,
    pub ffprobe: PathBuf,
    /// `ffmpeg -version`'s first line.
    pub version: String,
}

impl Tools {
    /// Resolves both tools on `PATH` (unless given as paths), runs them, and checks that
    /// ffmpeg has every filter and encoder reel uses.
    pub async fn check(ffmpeg: &Path, ffprobe: &Path) -> Result<Self, ToolError> {
        let ffmpeg_path = resolve("ffmpeg", ffmpeg)?;
        let ffprobe_path = resolve("ffprobe", ffprobe)?;
        let version = run("ffmpeg", &ffmpeg_path, &["-hide_banner", "-version"]).await?;
        run("ffprobe", &ffprobe_path, &["-hide_banner", "-version"]).await?;
        let filters = run("ffmpeg", &ffmpeg_path, &["-hide_banner", "-filters"]).await?;
        missing(
            "ffmpeg",
            &ffmpeg_path,
            "filters",
            &filters,
            &REQUIRED_FILTERS,
        )?;
        let encoders = run("ffmpeg", &ffmpeg_path, &["-hide_banner", "-encoders"]).await?;
        missing(
            "ffmpeg",
            &ffmpeg_path,
            "encoders",
            &encoders,
            &REQUIRED_ENCODERS,
        )?;
        Ok(Self {
            ffmpeg: ffmpeg_path,
            ffprobe: ffprobe_path,
            version: version.lines().next().unwrap_or_default().to_owned(),
        })
    }

    /// Both tools are still executable files where the start-up check found them.
    pub fn available(&self) -> bool {
        is_executable(&self.ffmpeg) && is_executable(&self.ffprobe)
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `name` as given when it has a `/`, else the first executable of that name on `PATH`.
fn resolve(tool: &'static str, name: &Path) -> Result<PathBuf, ToolError> {
    let not_found = || ToolError::NotFound {
        tool,
        path: name.display().to_string(),
    };
    if name.components().count() > 1 || name.is_absolute() {
        return is_executable(name)
            .then(|| name.to_path_buf())
            .ok_or_else(not_found);
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(not_found)
}

async fn run(tool: &'static str, path: &Path, args: &[&str]) -> Result<String, ToolError> {
    let failed = |reason: String| ToolError::NotRunnable {
        tool,
        path: path.display().to_string(),
        reason,
    };
    let output = tokio::process::Command::new(path)
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(CHECK_TIMEOUT, output)
        .await
        .map_err(|_| {
            failed(format!(
                "it did not answer `{}` within {CHECK_TIMEOUT:?}",
                args.join(" ")
            ))
        })?
        .map_err(|error| failed(error.to_string()))?;
    if !output.status.success() {
        return Err(failed(format!(
            "`{}` exited with {}",
            args.join(" "),
            output.status
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Names listed by `-filters` / `-encoders`: the second column of each entry line.
fn listed(output: &str) -> std::collections::HashSet<&str> {
    output
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let flags = words.next()?;
            let name = words.next()?;
            // Entry lines start with a flags column (`T.C`, `V....D`), legend lines with `=`.
            (!flags.contains('=') && !name.starts_with('=')).then_some(name)
        })
        .collect()
}

fn missing(
    tool: &'static str,
    path: &Path,
    kind: &'static str,
    output: &str,
    required: &[&str],
) -> Result<(), ToolError> {
    let found = listed(output);
    let absent: Vec<&str> = required
        .iter()
        .copied()
        .filter(|name| !found.contains(name))
        .collect();
    if absent.is_empty() {
        Ok(())
    } else {
        Err(ToolError::Missing {
            tool,
            path: path.display().to_string(),
            kind,
            missing: absent.join(", "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_and_encoder_lists_are_read_by_name() {
        let filters = "Filters:\n  T.. = Timeline support\n ... split             V->N       Pass on.\n T.C scale             V->V       Scale.\n";
        let found = listed(filters);
        assert!(found.contains("split") && found.contains("scale"));
        assert!(!found.contains("Timeline"));
        let error = missing(
            "ffmpeg",
            Path::new("/x"),
            "filters",
            filters,
            &["split", "zscale"],
        );
        assert!(matches!(error, Err(ToolError::Missing { missing, .. }) if missing == "zscale"));
    }

    #[test]
    fn a_missing_tool_names_the_fix() {
        let error = resolve("ffmpeg", Path::new("/nowhere/ffmpeg")).unwrap_err();
        assert!(
            error.to_string().contains("apt-get install ffmpeg"),
            "{error}"
        );
        assert!(resolve("ffmpeg", Path::new("no-such-tool-here")).is_err());
    }
}
