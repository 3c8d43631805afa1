//! `--public-base-url`: where browsers fetch the media (`/hls/…`) from when a CDN fronts it.

use std::str::FromStr;

/// An absolute `http://` or `https://` URL without query, fragment or user info, kept without
/// its trailing slash, e.g. `https://cdn.example.com` or `https://cdn.example.com/reel`. A media
/// link is this followed by reel's own path (`/hls/<id>/master.m3u8`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicBaseUrl {
    /// The URL as links start, without a trailing `/`.
    base: String,
    /// `scheme://host[:port]`, for the pages' Content-Security-Policy.
    origin: String,
}

impl PublicBaseUrl {
    /// The absolute URL of `path` (which starts with `/`) under this base.
    pub fn join(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `scheme://host[:port]`: the origin browsers fetch media links from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn as_str(&self) -> &str {
        &self.base
    }
}

impl FromStr for PublicBaseUrl {
    type Err = String;

    /// Accepts `https://cdn.example.com`, `https://cdn.example.com/`, `http://10.0.0.5:8080/reel`;
    /// refuses relative URLs, other schemes, a query (`?…`), a fragment (`#…`) and user info.
    fn from_str(text: &str) -> Result<Self, String> {
        let example = "give an absolute http:// or https:// URL such as https://cdn.example.com";
        let url = url::Url::parse(text.trim())
            .map_err(|error| format!("not an absolute URL ({error}): {example}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("the scheme is {:?}: {example}", url.scheme()));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!("no host: {example}"));
        }
        if url.query().is_some() {
            return Err(
                "it has a query (`?…`): remove it, links append their own (a private video's \
                 signature)"
                    .into(),
            );
        }
        if url.fragment().is_some() {
            return Err("it has a fragment (`#…`): remove it".into());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(
                "it carries a user name or password: every viewer would see it in the links".into(),
            );
        }
        Ok(Self {
            base: url.as_str().trim_end_matches('/').to_owned(),
            origin: url.origin().ascii_serialization(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_base_keeps_its_path_without_the_trailing_slash() {
        let base: PublicBaseUrl = "https://cdn.example.com/".parse().expect("valid");
        assert_eq!(
            base.join("/hls/x/master.m3u8"),
            "https://cdn.example.com/hls/x/master.m3u8"
        );
        assert_eq!(base.origin(), "https://cdn.example.com");
        let base: PublicBaseUrl = "http://10.0.0.5:8080/reel".parse().expect("valid");
        assert_eq!(base.join("/hls/x"), "http://10.0.0.5:8080/reel/hls/x");
        assert_eq!(base.origin(), "http://10.0.0.5:8080");
        assert_eq!(
            "https://cdn.example.com"
                .parse::<PublicBaseUrl>()
                .map(|b| b.join("/a")),
            Ok("https://cdn.example.com/a".to_owned())
        );
    }

    #[test]
    fn relative_urls_other_schemes_queries_fragments_and_user_info_are_refused() {
        for bad in [
            "",
            "cdn.example.com",
            "/hls",
            "ftp://cdn.example.com",
            "https://cdn.example.com/?v=1",
            "https://cdn.example.com/?",
            "https://cdn.example.com/#top",
            "https://user:pw@cdn.example.com",
            "file:///srv/media",
        ] {
            assert!(bad.parse::<PublicBaseUrl>().is_err(), "{bad:?}");
        }
    }
}
