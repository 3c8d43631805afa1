//! What `/api/` answers when no route took the request: a JSON 405 with `Allow` when the path
//! exists with other methods, else a JSON 404.
//!
//! The routes are read off the OpenAPI document, which is generated from the handlers, so the
//! `Allow` list and the document cannot disagree.

use actix_web::dev::ResourceDef;
use actix_web::{HttpRequest, HttpResponse, web};

use crate::error::ApiError;

/// Path templates of the API and the methods each answers.
pub struct Routes(Vec<(String, ResourceDef, Vec<&'static str>)>);

impl Routes {
    pub fn of(document: &utoipa::openapi::OpenApi) -> Self {
        let routes = document
            .paths
            .paths
            .iter()
            .map(|(path, item)| {
                let methods = [
                    ("GET", item.get.is_some()),
                    ("HEAD", item.head.is_some()),
                    ("POST", item.post.is_some()),
                    ("PUT", item.put.is_some()),
                    ("PATCH", item.patch.is_some()),
                    ("DELETE", item.delete.is_some()),
                    ("OPTIONS", item.options.is_some()),
                ]
                .into_iter()
                .filter_map(|(name, present)| present.then_some(name))
                .collect();
                (path.clone(), ResourceDef::new(path.as_str()), methods)
            })
            .collect();
        Self(routes)
    }

    /// Documented paths outside `/api/` (`/healthz`, `/readyz`), which need a fallback of their
    /// own: the `/api` scope does not see them.
    pub fn outside_api(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|(path, _, _)| path.clone())
            .filter(|path| !path.starts_with("/api/"))
            .collect()
    }

    /// The methods `path` answers, or `None` when no route has this path.
    fn allowed(&self, path: &str) -> Option<Vec<&'static str>> {
        let mut found: Option<Vec<&'static str>> = None;
        for (_, definition, methods) in &self.0 {
            if definition.is_match(path) {
                found.get_or_insert_with(Vec::new).extend(methods);
            }
        }
        found
    }
}

/// The default service of the `/api` scope and of the documented paths outside it: always an
/// error.
pub async fn api_fallback(
    req: HttpRequest,
    routes: web::Data<Routes>,
) -> Result<HttpResponse, ApiError> {
    Err(match routes.allowed(req.path()) {
        Some(methods) if !methods.contains(&req.method().as_str()) => {
            ApiError::method_not_allowed(&methods.join(", "))
        }
        _ => ApiError::no_route(),
    })
}
