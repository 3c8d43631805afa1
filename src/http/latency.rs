//! API request latency by route: `reel_http_request_duration_seconds{route, method, status}`,
//! a histogram. `route` is the pattern the request matched (`/api/v1/videos/{id}`), never the
//! raw path, so ids and junk paths cannot grow the series; `unmatched` when none did. `status`
//! is the class (`2xx` … `5xx`). Measured to the response head (a stream's body, like SSE, is
//! not waited for).

use std::time::Instant;

use actix_web::Error;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;

use crate::telemetry;

/// The middleware (`App::wrap(from_fn(latency::record))`).
pub async fn record(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let method = method_label(req.method());
    let result = next.call(req).await;
    let (route, status) = match &result {
        Ok(response) => (
            response
                .request()
                .match_pattern()
                .unwrap_or_else(|| "unmatched".to_owned()),
            response.status().as_u16(),
        ),
        Err(error) => (
            "unmatched".to_owned(),
            error.error_response().status().as_u16(),
        ),
    };
    metrics::histogram!(
        telemetry::HTTP_DURATION,
        "route" => route,
        "method" => method,
        "status" => format!("{}xx", status / 100),
    )
    .record(started.elapsed().as_secs_f64());
    result
}

/// The standard methods by name; anything else is `other`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}
