//! The Content-Security-Policy of the pages, and who may frame the embed page.

use std::str::FromStr;

/// Sites allowed to frame `/embed/{id}`: a CSP `frame-ancestors` source list such as `*`,
/// `'self' https://blog.example` or `'none'`.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameAncestors(String);

impl FrameAncestors {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for FrameAncestors {
    fn default() -> Self {
        Self("*".into())
    }
}

impl FromStr for FrameAncestors {
    type Err = String;

    /// Accepts `*`, `'self'`, `'none'` (alone), schemes (`https:`) and hosts
    /// (`https://*.example.com:8443`); nothing that could end the directive or the header.
    fn from_str(text: &str) -> Result<Self, String> {
        let sources: Vec<&str> = text.split_ascii_whitespace().collect();
        let plain = |s: &str| {
            s.chars().all(|c| {
                c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':' | '/' | '*')
            })
        };
        if sources.is_empty() {
            return Err("give at least one source, e.g. * or 'self'".into());
        }
        if sources.len() > 1 && sources.contains(&"'none'") {
            return Err("'none' cannot be combined with other sources".into());
        }
        if let Some(bad) = sources
            .iter()
            .find(|s| !matches!(**s, "'self'" | "'none'") && !plain(s))
        {
            return Err(format!(
                "{bad:?} is not a frame-ancestors source (examples: *, 'self', https://blog.example)"
            ));
        }
        Ok(Self(sources.join(" ")))
    }
}

/// The policy of every page: `frame_ancestors` names who may frame it, and `media_origin`
/// (the origin of `--public-base-url`, when set) may serve the playlists, segments, posters and
/// storyboards the page loads.
pub fn content_security_policy(frame_ancestors: &str, media_origin: Option<&str>) -> String {
    let media = media_origin
        .map(|origin| format!(" {origin}"))
        .unwrap_or_default();
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'{media} data: blob:; \
         media-src 'self'{media} blob:; worker-src 'self' blob:; connect-src 'self'{media}; \
         object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors {frame_ancestors}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_media_origin_may_serve_images_media_and_fetches_only() {
        let policy = content_security_policy("'none'", Some("https://cdn.example.com"));
        for directive in [
            "img-src 'self' https://cdn.example.com data: blob:;",
            "media-src 'self' https://cdn.example.com blob:;",
            "connect-src 'self' https://cdn.example.com;",
            "script-src 'self';",
        ] {
            assert!(policy.contains(directive), "{directive} in {policy}");
        }
        assert!(!content_security_policy("*", None).contains("cdn"));
    }

    #[test]
    fn frame_ancestors_take_sources_and_refuse_what_would_break_the_header() {
        for good in [
            "*",
            "'self'",
            "'none'",
            "https://blog.example 'self'",
            "https:",
            "https://*.example.com:8443/x",
        ] {
            assert!(good.parse::<FrameAncestors>().is_ok(), "{good}");
        }
        assert_eq!(
            "  'self' \n  https://a.example ".parse::<FrameAncestors>(),
            Ok(FrameAncestors("'self' https://a.example".into())),
            "whitespace, newlines included, becomes one space"
        );
        for bad in [
            "",
            "   ",
            "* ; script-src *",
            "https://a.example,https://b",
            "'unsafe-inline'",
            "'none' *",
        ] {
            assert!(bad.parse::<FrameAncestors>().is_err(), "{bad:?}");
        }
    }
}
