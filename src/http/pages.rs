//! The web page: the library at `/`, `/watch/{id}`, `/embed/{id}`, `/favicon.ico`, and the
//! page's scripts and styles.
//!
//! The files are built into the binary (`static/` at compile time), so reel serves its page
//! from any working directory; `--static-dir` reads them from a folder instead, for working on
//! the page without rebuilding. Every page carries a Content-Security-Policy; only the embed
//! page may be framed, by the sites `--embed-frame-ancestors` names.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, route, web};
use bytes::Bytes;

use crate::domain::Video;
use crate::domain::{VideoId, VideoStatus};
use crate::media::PublicBaseUrl;
use crate::service::Service;

mod policy;

pub use policy::FrameAncestors;
use policy::content_security_policy;

/// The `static/` folder, compiled in (in debug builds too, so tests see what ships).
#[derive(rust_embed::Embed)]
#[folder = "static/"]
struct Embedded;

/// Where page files come from: the built-in copy, or `--static-dir`.
#[derive(Debug, Clone)]
pub struct PageFiles {
    dir: Option<PathBuf>,
}

/// One page file: its bytes and, for built-in files, a content hash for `ETag`.
struct PageFile {
    body: Cow<'static, [u8]>,
    etag: Option<String>,
}

impl PageFiles {
    pub fn new(dir: Option<PathBuf>) -> Self {
        Self { dir }
    }

    /// `path` is relative to the page folder and must be made of [`plain_name`]s.
    async fn get(&self, path: &str) -> Option<PageFile> {
        if !path.split('/').all(plain_name) {
            return None;
        }
        match &self.dir {
            Some(dir) => {
                let body = tokio::fs::read(dir.join(path)).await.ok()?;
                Some(PageFile {
                    body: Cow::Owned(body),
                    etag: None,
                })
            }
            None => {
                let file = Embedded::get(path)?;
                let hash = file.metadata.sha256_hash();
                let etag = hash[..12].iter().fold(String::from("\""), |mut s, b| {
                    let _ = write!(s, "{b:02x}");
                    s
                }) + "\"";
                Some(PageFile {
                    body: file.data,
                    etag: Some(etag),
                })
            }
        }
    }
}

/// Letters, digits, `_`, `-` and inner dots: no `..`, no hidden files, no empty segments.
fn plain_name(part: &str) -> bool {
    !part.is_empty()
        && !part.starts_with('.')
        && !part.contains("..")
        && part
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// The content type of a page asset; other kinds of files are not served (HTML pages have
/// their own routes).
fn asset_type(path: &str) -> Option<&'static str> {
    Some(match path.rsplit_once('.')?.1 {
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "ico" => "image/x-icon",
        "png" => "image/png",
        "woff2" => "font/woff2",
        _ => return None,
    })
}

fn not_found() -> HttpResponse {
    HttpResponse::NotFound()
        .content_type(mime::TEXT_PLAIN_UTF_8)
        .body("Not found.\n")
}

/// Security and caching headers shared by every page file (revalidated, never stale).
fn file_response(
    status: StatusCode,
    content_type: &'static str,
    etag: Option<&str>,
) -> HttpResponseBuilder {
    let mut response = HttpResponse::build(status);
    response
        .insert_header((header::CONTENT_TYPE, content_type))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "same-origin"));
    if let Some(etag) = etag {
        response.insert_header((header::ETAG, etag));
    }
    response
}

/// An HTML page with its policy: `frame_ancestors` names the sites that may frame it; with
/// `None`, no site may. The page may load media from `--public-base-url`'s origin.
fn html(
    service: &Service,
    status: StatusCode,
    body: String,
    frame_ancestors: Option<&str>,
) -> HttpResponse {
    let mut response = file_response(status, "text/html; charset=utf-8", None);
    let media_origin = service.config.storage.public_base_url.as_ref();
    response.insert_header((
        header::CONTENT_SECURITY_POLICY,
        content_security_policy(
            frame_ancestors.unwrap_or("'none'"),
            media_origin.map(PublicBaseUrl::origin),
        ),
    ));
    if frame_ancestors.is_none() {
        response.insert_header((header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")));
    }
    response.body(body)
}

fn escape_html(text: &str) -> String {
    text.chars()
        .fold(String::with_capacity(text.len()), |mut out, c| {
            match c {
                '&' => out.push_str("&amp;"),
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                '"' => out.push_str("&quot;"),
                '\'' => out.push_str("&#39;"),
                c => out.push(c),
            }
            out
        })
}

/// `<title>` and link-preview tags (Open Graph) for a video page, so a shared link shows
/// the title and the poster (`media` is where `/hls/` is fetched from: this server's origin,
/// or `--public-base-url`).
fn video_head(video: &Video, origin: &str, media: &str, page: &str) -> (String, String) {
    let name = video
        .title
        .as_deref()
        .or(video.filename.as_deref())
        .unwrap_or("Video");
    let name = escape_html(name);
    let id = video.id;
    let mut meta = format!(
        "<meta property=\"og:type\" content=\"video.other\">\n  \
         <meta property=\"og:title\" content=\"{name}\">\n  \
         <meta property=\"og:url\" content=\"{origin}/{page}/{id}\">"
    );
    if video.status == VideoStatus::Ready {
        let _ = write!(
            meta,
            "\n  <meta property=\"og:image\" content=\"{media}/hls/{id}/poster.jpg\">\n  \
             <meta name=\"twitter:card\" content=\"summary_large_image\">"
        );
    }
    (format!("<title>{name} · reel</title>"), meta)
}

/// `scheme://host[:port]` as the client sees this server. Behind nginx, `Host` is `$host`
/// (no port) and the port comes in `X-Forwarded-Port`.
fn origin(req: &HttpRequest) -> String {
    let info = req.connection_info();
    let scheme = info.scheme();
    let host = info.host();
    let has_port = host
        .rsplit_once(':')
        .is_some_and(|(name, port)| !name.is_empty() && port.bytes().all(|b| b.is_ascii_digit()));
    let forwarded_port = req
        .headers()
        .get("x-forwarded-port")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u16>().ok());
    match forwarded_port {
        Some(port) if !has_port && !matches!((scheme, port), ("http", 80) | ("https", 443)) => {
            format!("{scheme}://{host}:{port}")
        }
        _ => format!("{scheme}://{host}"),
    }
}

/// Fills a video page's head; a page whose video does not exist is still the page (it tells
/// the viewer in words), with a 404 status.
async fn video_page(
    service: &Service,
    files: &PageFiles,
    req: &HttpRequest,
    id: &str,
    page: &'static str,
) -> Option<(StatusCode, String)> {
    let file = files.get(&format!("{page}.html")).await?;
    let mut body = String::from_utf8_lossy(&file.body).into_owned();
    let video = match id.parse::<VideoId>() {
        Ok(id) => service.page_video(id).await,
        Err(_) => None,
    };
    let Some(video) = video else {
        return Some((StatusCode::NOT_FOUND, body));
    };
    let origin = escape_html(&origin(req));
    let media = match &service.config.storage.public_base_url {
        Some(base) => escape_html(base.as_str()),
        None => origin.clone(),
    };
    let (title, meta) = video_head(&video, &origin, &media, page);
    body = body
        .replacen("<title>reel</title>", &title, 1)
        .replacen("<!-- reel:meta -->", &meta, 1);
    Some((StatusCode::OK, body))
}

/// The library (the creator's studio).
#[route("/", method = "GET", method = "HEAD")]
pub async fn library(service: web::Data<Service>, files: web::Data<PageFiles>) -> HttpResponse {
    match files.get("index.html").await {
        Some(file) => html(
            &service,
            StatusCode::OK,
            String::from_utf8_lossy(&file.body).into_owned(),
            None,
        ),
        None => not_found(),
    }
}

/// The watch page of one video.
#[route("/watch/{id}", method = "GET", method = "HEAD")]
pub async fn watch(
    service: web::Data<Service>,
    files: web::Data<PageFiles>,
    id: web::Path<String>,
    req: HttpRequest,
) -> HttpResponse {
    match video_page(&service, &files, &req, &id, "watch").await {
        Some((status, body)) => html(&service, status, body, None),
        None => not_found(),
    }
}

/// The bare player for iframes on other sites.
#[route("/embed/{id}", method = "GET", method = "HEAD")]
pub async fn embed(
    service: web::Data<Service>,
    files: web::Data<PageFiles>,
    id: web::Path<String>,
    req: HttpRequest,
) -> HttpResponse {
    match video_page(&service, &files, &req, &id, "embed").await {
        Some((status, body)) => html(
            &service,
            status,
            body,
            Some(service.config.embed_frame_ancestors.as_str()),
        ),
        None => not_found(),
    }
}

/// Scripts, styles, the icon and `vendor/hls.min.js`.
#[route("/{path:.*}", method = "GET", method = "HEAD")]
pub async fn asset(
    files: web::Data<PageFiles>,
    path: web::Path<String>,
    req: HttpRequest,
) -> HttpResponse {
    let Some(content_type) = asset_type(&path) else {
        return not_found();
    };
    let Some(file) = files.get(&path).await else {
        return not_found();
    };
    let etag = file.etag.as_deref();
    let fresh = etag.is_some_and(|etag| {
        req.headers()
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    });
    if fresh {
        return file_response(StatusCode::NOT_MODIFIED, content_type, etag).finish();
    }
    // Built-in files are served from the binary's memory, not copied per request.
    let body = match file.body {
        Cow::Borrowed(bytes) => Bytes::from_static(bytes),
        Cow::Owned(bytes) => Bytes::from(bytes),
    };
    file_response(StatusCode::OK, content_type, etag).body(body)
}

/// Registers the page routes; the asset route matches everything, so this comes last.
pub fn configure(config: &mut web::ServiceConfig, static_dir: Option<&Path>) {
    config
        .app_data(web::Data::new(PageFiles::new(
            static_dir.map(Path::to_path_buf),
        )))
        .service(library)
        .service(watch)
        .service(embed)
        .service(asset);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asset_paths_are_plain_names_with_a_known_type() {
        assert!(
            ["js", "lib.js", "vendor", "hls.min.js"]
                .iter()
                .all(|p| plain_name(p))
        );
        assert!(
            ["", ".", "..", ".git", "a..b", "a b", "a%2e"]
                .iter()
                .all(|p| !plain_name(p))
        );
        assert_eq!(
            asset_type("js/library.js"),
            Some("text/javascript; charset=utf-8")
        );
        assert_eq!(asset_type("index.html"), None);
        assert_eq!(asset_type("reel.db"), None);
    }

    #[test]
    fn the_page_and_its_modules_are_built_in() {
        for path in [
            "index.html",
            "watch.html",
            "embed.html",
            "favicon.ico",
            "style.css",
        ] {
            assert!(Embedded::get(path).is_some(), "{path} is embedded");
        }
    }

    #[test]
    fn titles_are_escaped_in_the_head() {
        assert_eq!(
            escape_html(r#"<script>"Tom & 'Jerry'"#),
            "&lt;script&gt;&quot;Tom &amp; &#39;Jerry&#39;"
        );
    }
}
