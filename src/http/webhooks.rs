//! `/api/v1/webhooks`: endpoints that receive signed video events (Standard Webhooks), their
//! delivery state, and their dead letters.

use actix_web::{HttpResponse, delete, get, post, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Caller;
use crate::domain::Millis;
use crate::error::{ApiError, ErrorBody};
use crate::feed::EventType;
use crate::feed::breaker::Circuit;
use crate::service::{Service, ServiceError, WebhookInput};
use crate::store::{DeadLetter, Webhook};

/// A new endpoint.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateWebhook {
    /// `http` or `https` URL; refused when it is, or resolves to, a private, loopback or
    /// link-local address (unless the server runs with `--webhook-allow-private`).
    #[schema(example = "https://app.example.com/hooks/reel")]
    pub url: String,
    /// Event types to receive (`video.uploaded`, `video.processing`, `video.playable`,
    /// `video.ready`, `video.failed`, `video.canceled`, `video.deleted`); all when left out.
    pub events: Option<Vec<String>>,
    /// Free text for people, up to 500 characters.
    pub description: Option<String>,
}

/// An endpoint and where its delivery stands.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookResource {
    #[schema(format = Uuid)]
    pub id: String,
    pub url: String,
    pub events: Vec<EventType>,
    pub description: String,
    /// Who created it (absent with auth off).
    pub owner: Option<String>,
    /// Whose videos' events it receives: an owner, or absent for every video's (admins).
    pub scope: Option<String>,
    /// The signing secret (`whsec_…`, Standard Webhooks): only in the answer to the creation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    pub delivery: DeliveryResource,
}

/// Delivery state: the cursor over the change feed and the circuit breaker.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryResource {
    /// Change-feed `seq` up to which every event was delivered, skipped or dead-lettered.
    pub cursor: i64,
    pub circuit: Circuit,
    /// Consecutive failed calls.
    pub consecutive_failures: u32,
    /// Failed calls of the event being delivered.
    pub attempts: u32,
    /// RFC 3339: no call before then (back-off or breaker cool-down).
    pub next_attempt_at: Option<String>,
    pub last_attempt_at: Option<String>,
    pub last_success_at: Option<String>,
    /// HTTP status of the last call that got an answer.
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub dead_letters: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookList {
    /// Oldest first.
    pub items: Vec<WebhookResource>,
}

/// An event the endpoint gave up on after its last attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterResource {
    /// Change-feed `seq` of the event.
    pub seq: i64,
    /// The `webhook-id` it was (and will be) sent with.
    pub message_id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub attempts: u32,
    pub last_error: String,
    /// RFC 3339.
    pub failed_at: String,
    /// Queued for redelivery.
    pub redelivering: bool,
    /// The body that was sent.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterPage {
    /// Oldest first.
    pub items: Vec<DeadLetterResource>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct DeadLetterQuery {
    /// Only dead letters after this `seq` (a `next_cursor`).
    pub after: Option<i64>,
    /// 1 to 1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Redelivery {
    /// Dead letters queued for redelivery, oldest first, each with fresh attempts.
    pub redelivering: u64,
}

/// Create an endpoint. The answer holds its signing secret, shown this once.
#[utoipa::path(
    tag = "webhooks",
    request_body(content = CreateWebhook, content_type = "application/json"),
    responses(
        (status = 201, description = "Created; `Location` names it", body = WebhookResource),
        (status = 400, description = "Bad URL, destination, events or description", body = ErrorBody),
        (status = 403, description = "The caller may not manage webhooks", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
#[post("/api/v1/webhooks")]
pub async fn create_webhook(
    service: web::Data<Service>,
    caller: Caller,
    body: web::Json<CreateWebhook>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let input = WebhookInput {
        url: body.url,
        events: body.events,
        description: body.description,
    };
    let webhook = service.webhooks().create(&caller, input).await?;
    let mut resource = WebhookResource::from(&webhook);
    resource.secret = Some(webhook.secret.clone());
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/api/v1/webhooks/{}", webhook.id)))
        .json(resource))
}

/// The caller's endpoints (admins: every endpoint).
#[utoipa::path(
    tag = "webhooks",
    responses(
        (status = 200, description = "Endpoints, oldest first", body = WebhookList),
        (status = 403, description = "The caller may not manage webhooks", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
#[get("/api/v1/webhooks")]
pub async fn list_webhooks(
    service: web::Data<Service>,
    caller: Caller,
) -> Result<web::Json<WebhookList>, ApiError> {
    let webhooks = service.webhooks().list(&caller).await?;
    let items = webhooks.iter().map(WebhookResource::from).collect();
    Ok(web::Json(WebhookList { items }))
}

/// An endpoint with its delivery state (cursor, last call, circuit breaker, dead letters).
#[utoipa::path(
    tag = "webhooks",
    params(("id" = String, Path, description = "Webhook id")),
    responses(
        (status = 200, description = "The endpoint", body = WebhookResource),
        (status = 403, description = "The caller may not manage webhooks", body = ErrorBody),
        (status = 404, description = "No such webhook, or not the caller's", body = ErrorBody),
    )
)]
#[get("/api/v1/webhooks/{id}")]
pub async fn get_webhook(
    service: web::Data<Service>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<web::Json<WebhookResource>, ApiError> {
    let webhook = service.webhooks().get(&caller, parse_id(&id)?).await?;
    Ok(web::Json(WebhookResource::from(&webhook)))
}

/// Delete an endpoint and its dead letters; nothing more is sent to it.
#[utoipa::path(
    tag = "webhooks",
    params(("id" = String, Path, description = "Webhook id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "The caller may not manage webhooks", body = ErrorBody),
        (status = 404, description = "No such webhook, or not the caller's", body = ErrorBody),
    )
)]
#[delete("/api/v1/webhooks/{id}")]
pub async fn delete_webhook(
    service: web::Data<Service>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    service.webhooks().delete(&caller, parse_id(&id)?).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Events the endpoint gave up on after `--webhook-max-attempts` calls.
#[utoipa::path(
    tag = "webhooks",
    params(("id" = String, Path, description = "Webhook id"), DeadLetterQuery),
    responses(
        (status = 200, description = "Dead letters, oldest first", body = DeadLetterPage),
        (status = 400, description = "Bad `after` or `limit`", body = ErrorBody),
        (status = 403, description = "The caller may not manage webhooks", body = ErrorBody),
        (status = 404, description = "No such webhook, or not the caller's", body = ErrorBody),
    )
)]
#[get("/api/v1/webhooks/{id}/dead-letters")]
pub async fn dead_letters(
    service: web::Data<Service>,
    caller: Caller,
    id: web::Path<String>,
    query: web::Query<DeadLetterQuery>,
) -> Result<web::Json<DeadLetterPage>, ApiError> {
    let limit = super::page_limit(query.limit)?;
    let after = query.after.unwrap_or(0).max(0);
    let found = service
        .webhooks()
        .dead_letters(&caller, parse_id(&id)?, after, limit + 1)
        .await?;
    let more = found.len() > limit as usize;
    let items: Vec<DeadLetterResource> = found
        .iter()
        .take(limit as usize)
        .map(DeadLetterResource::from)
        .collect();
    let next_cursor = more
        .then(|| items.last().map(|item| item.seq.to_string()))
        .flatten();
    Ok(web::Json(DeadLetterPage { items, next_cursor }))
}

/// Send every dead letter of the endpoint again (oldest first, before newer events), each with
/// fresh attempts; one that fails them all is a dead letter again.
#[utoipa::path(
    tag = "webhooks",
    params(("id" = String, Path, description = "Webhook id")),
    responses(
        (status = 202, description = "Queued for redelivery", body = Redelivery),
        (status = 403, description = "The caller may not manage webhooks", body = ErrorBody),
        (status = 404, description = "No such webhook, or not the caller's", body = ErrorBody),
    )
)]
#[post("/api/v1/webhooks/{id}/dead-letters/redeliver")]
pub async fn redeliver(
    service: web::Data<Service>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let redelivering = service
        .webhooks()
        .redeliver(&caller, parse_id(&id)?)
        .await?;
    Ok(HttpResponse::Accepted().json(Redelivery { redelivering }))
}

fn parse_id(text: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(text).map_err(|_| ServiceError::NoSuchWebhook.into())
}

fn rfc3339(at: Option<Millis>) -> Option<String> {
    at.map(Millis::to_rfc3339)
}

impl From<&Webhook> for WebhookResource {
    fn from(webhook: &Webhook) -> Self {
        let delivery = &webhook.delivery;
        Self {
            id: webhook.id.to_string(),
            url: webhook.url.clone(),
            events: webhook.events.clone(),
            description: webhook.description.clone(),
            owner: webhook.owner.clone(),
            scope: webhook.scope.clone(),
            secret: None,
            created_at: webhook.created_at.to_rfc3339(),
            delivery: DeliveryResource {
                cursor: delivery.cursor,
                circuit: delivery.breaker.circuit,
                consecutive_failures: delivery.breaker.failures,
                attempts: delivery.attempts,
                next_attempt_at: rfc3339(delivery.next_attempt_at),
                last_attempt_at: rfc3339(delivery.last_attempt_at),
                last_success_at: rfc3339(delivery.last_success_at),
                last_status: delivery.last_status,
                last_error: delivery.last_error.clone(),
                dead_letters: delivery.dead_letters,
            },
        }
    }
}

impl From<&DeadLetter> for DeadLetterResource {
    fn from(dead: &DeadLetter) -> Self {
        Self {
            seq: dead.seq,
            message_id: crate::feed::message_id(dead.seq),
            event_type: dead.event_type.clone(),
            attempts: dead.attempts,
            last_error: dead.last_error.clone(),
            failed_at: dead.failed_at.to_rfc3339(),
            redelivering: dead.redeliver,
            payload: serde_json::from_str(&dead.payload).unwrap_or(serde_json::Value::Null),
        }
    }
}
