//! Webhook endpoints: create, list, read, delete, dead letters and their redelivery.
//!
//! Who may do what: creators and admins manage webhooks (others get 403). Admins see every
//! endpoint and their endpoints receive every video's events; a creator sees only their own
//! endpoints (another's is 404), which receive only their own videos' events.

use uuid::Uuid;

use super::{Result, Service, ServiceError};
use crate::auth::Caller;
use crate::feed::EventType;
use crate::feed::destination::{self, DestinationError};
use crate::feed::signing::Secret;
use crate::store::{DeadLetter, NewWebhook, Store, Webhook};

/// Most endpoints one owner may have.
pub const MAX_WEBHOOKS_PER_OWNER: usize = 100;
/// Most endpoints a list returns.
const LIST_LIMIT: u32 = 1000;
/// Longest description, in characters.
pub const MAX_DESCRIPTION: usize = 500;

/// What a client asks for when it creates an endpoint.
#[derive(Debug, Clone, Default)]
pub struct WebhookInput {
    pub url: String,
    /// Event type names; `None` for every type.
    pub events: Option<Vec<String>>,
    pub description: Option<String>,
}

/// The webhook operations, over the store (see [`Service::webhooks`]).
pub struct Webhooks<'a> {
    store: &'a Store,
    allow_private: bool,
}

impl Service {
    pub fn webhooks(&self) -> Webhooks<'_> {
        Webhooks {
            store: &self.store,
            allow_private: self.config.webhook_allow_private,
        }
    }
}

impl<'a> Webhooks<'a> {
    pub fn new(store: &'a Store, allow_private: bool) -> Self {
        Self {
            store,
            allow_private,
        }
    }

    /// Creates an endpoint; the returned webhook carries its secret (shown this once).
    ///
    /// Errors: `Forbidden` without the creator or admin role; `Invalid` for a bad URL
    /// (`invalid_url`), a private or unresolvable destination (`destination_not_allowed`),
    /// unknown or no event types (`invalid_events`), a long description (`invalid_description`)
    /// or too many endpoints (`too_many_webhooks`).
    pub async fn create(&self, caller: &Caller, input: WebhookInput) -> Result<Webhook> {
        if !caller.can_upload() {
            return Err(ServiceError::Forbidden);
        }
        let url = destination::parse(input.url.trim()).map_err(|e| invalid("invalid_url", e))?;
        destination::check(&url, self.allow_private)
            .await
            .map_err(|e| match e {
                DestinationError::Invalid(_) => invalid("invalid_url", e),
                DestinationError::Private(_) | DestinationError::Unresolvable(_) => {
                    invalid("destination_not_allowed", e)
                }
            })?;
        let events = parse_events(input.events.as_deref())?;
        let description = input.description.unwrap_or_default();
        if description.chars().count() > MAX_DESCRIPTION {
            return Err(ServiceError::Invalid {
                code: "invalid_description",
                message: format!("`description` is longer than {MAX_DESCRIPTION} characters."),
            });
        }
        let owner = caller.user.clone();
        let existing = self
            .store
            .webhooks(Some(owner.as_deref().unwrap_or_default()), LIST_LIMIT)
            .await?;
        if existing.len() >= MAX_WEBHOOKS_PER_OWNER {
            return Err(ServiceError::Invalid {
                code: "too_many_webhooks",
                message: format!("At most {MAX_WEBHOOKS_PER_OWNER} webhooks per owner."),
            });
        }
        let new = NewWebhook {
            id: Uuid::now_v7(),
            scope: if caller.is_admin() {
                None
            } else {
                Some(owner.clone().unwrap_or_default())
            },
            owner,
            url: url.to_string(),
            events,
            description,
            secret: Secret::generate()?.expose(),
        };
        Ok(self.store.insert_webhook(&new).await?)
    }

    /// The endpoints the caller sees (admins: all), oldest first.
    pub async fn list(&self, caller: &Caller) -> Result<Vec<Webhook>> {
        if !caller.can_upload() {
            return Err(ServiceError::Forbidden);
        }
        let owner = if caller.is_admin() {
            None
        } else {
            Some(caller.user.clone().unwrap_or_default())
        };
        Ok(self.store.webhooks(owner.as_deref(), LIST_LIMIT).await?)
    }

    /// One endpoint with its delivery state; `NoSuchWebhook` when the caller may not see it.
    pub async fn get(&self, caller: &Caller, id: Uuid) -> Result<Webhook> {
        if !caller.can_upload() {
            return Err(ServiceError::Forbidden);
        }
        match self.store.webhook(id).await? {
            Some(webhook) if caller.owns(webhook.owner.as_deref()) => Ok(webhook),
            _ => Err(ServiceError::NoSuchWebhook),
        }
    }

    /// Deletes an endpoint and its dead letters; its deliveries stop.
    pub async fn delete(&self, caller: &Caller, id: Uuid) -> Result<()> {
        self.get(caller, id).await?;
        if self.store.delete_webhook(id).await? {
            Ok(())
        } else {
            Err(ServiceError::NoSuchWebhook)
        }
    }

    /// An endpoint's dead letters after `after` (a `seq`), oldest first.
    pub async fn dead_letters(
        &self,
        caller: &Caller,
        id: Uuid,
        after: i64,
        limit: u32,
    ) -> Result<Vec<DeadLetter>> {
        self.get(caller, id).await?;
        Ok(self.store.dead_letters(id, after, limit).await?)
    }

    /// Queues every dead letter of an endpoint for redelivery; returns how many.
    pub async fn redeliver(&self, caller: &Caller, id: Uuid) -> Result<u64> {
        self.get(caller, id).await?;
        Ok(self.store.redeliver_dead_letters(id).await?)
    }
}

fn invalid(code: &'static str, error: DestinationError) -> ServiceError {
    ServiceError::Invalid {
        code,
        message: format!("{}.", upper_first(&error.to_string())),
    }
}

fn upper_first(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// Event type names, deduplicated in the order of [`EventType::ALL`]; `None` means all.
fn parse_events(names: Option<&[String]>) -> Result<Vec<EventType>> {
    let Some(names) = names else {
        return Ok(EventType::ALL.to_vec());
    };
    let mut wanted = Vec::new();
    for name in names {
        match EventType::parse(name) {
            Some(event_type) => wanted.push(event_type),
            None => {
                return Err(ServiceError::Invalid {
                    code: "invalid_events",
                    message: format!(
                        "Unknown event type {name:?}; known: {}.",
                        EventType::ALL.map(EventType::as_str).join(", ")
                    ),
                });
            }
        }
    }
    if wanted.is_empty() {
        return Err(ServiceError::Invalid {
            code: "invalid_events",
            message: "`events` needs at least one event type (or leave it out for all).".into(),
        });
    }
    Ok(EventType::ALL
        .into_iter()
        .filter(|t| wanted.contains(t))
        .collect())
}
