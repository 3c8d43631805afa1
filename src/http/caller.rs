//! The [`Caller`] of a request, as an extractor: a bearer token (RFC 6750) from the
//! `Authorization` header, or, for the Server-Sent Events endpoints (EventSource cannot set
//! headers), from the `access_token` query parameter.

use std::future::{Ready, ready};

use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, dev::Payload, web};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::service::Service;

fn bearer(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

/// `?access_token=` on an event stream and a source download only (what a browser opens by
/// itself); tokens elsewhere in URLs end up in logs.
fn query_token(req: &HttpRequest) -> Option<String> {
    let path = req.path();
    if !(path.ends_with("/events")
        || path.ends_with("/changes/stream")
        || path.ends_with("/source"))
    {
        return None;
    }
    web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
        .ok()?
        .get("access_token")
        .cloned()
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let Some(service) = req.app_data::<web::Data<Service>>() else {
            return ready(Ok(Caller::local()));
        };
        let token = bearer(req).or_else(|| query_token(req));
        ready(
            service
                .authenticate(token.as_deref())
                .map_err(ApiError::unauthorized),
        )
    }
}
