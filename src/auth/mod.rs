//! Who is asking: the [`Caller`] every service method takes.
//!
//! With `--auth none` every request is the local operator, who may do everything; with
//! `--auth jwt` the caller comes from a verified bearer token (see `jwt`).

pub mod jwt;
pub mod playback;

use std::io::Write;

use serde::Serialize;

use crate::config::TokenArgs;

/// How the server authenticates requests.
pub enum Auth {
    /// `--auth none`: every request is [`Caller::local`].
    None,
    /// `--auth jwt`: bearer tokens.
    Jwt(Box<jwt::Verifier>),
}

impl Auth {
    /// The caller behind a request's bearer token.
    pub fn authenticate(&self, token: Option<&str>) -> Result<Caller, jwt::TokenError> {
        match self {
            Self::None => Ok(Caller::local()),
            Self::Jwt(verifier) => verifier.verify(token.ok_or(jwt::TokenError::Missing)?),
        }
    }

    pub fn is_on(&self) -> bool {
        matches!(self, Self::Jwt(_))
    }
}

/// `reel token`: prints a token on stdout; errors in plain words on stderr.
pub fn print_token(args: &TokenArgs) -> std::process::ExitCode {
    let roles: Result<Vec<Role>, String> = args
        .roles
        .iter()
        .map(|name| {
            Role::parse(name.trim())
                .ok_or_else(|| format!("unknown role {name:?} (creator, viewer, admin)"))
        })
        .collect();
    let token = roles.and_then(|roles| {
        args.jwt
            .sign(&args.sub, &roles, args.ttl)
            .map_err(|e| e.to_string())
    });
    match token {
        Ok(token) => {
            let mut out = std::io::stdout().lock();
            if writeln!(out, "{token}").is_ok() {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::FAILURE
            }
        }
        Err(reason) => {
            tracing::error!("reel token: {reason}");
            std::process::ExitCode::from(2)
        }
    }
}

/// A role a token can grant (`roles` claim).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Uploads and manages their own videos.
    Creator,
    /// Reads and follows what they are allowed to see.
    Viewer,
    /// Everything, on every video.
    Admin,
}

impl Role {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "creator" => Some(Self::Creator),
            "viewer" => Some(Self::Viewer),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }
}

/// The identity and rights behind a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's `sub`; `None` for the local operator (auth off).
    pub user: Option<String>,
    pub roles: Vec<Role>,
    /// The verified claims, for properties (`claims` in the JSONPath document).
    pub claims: Option<serde_json::Value>,
}

impl Caller {
    /// Auth is off: the operator on this machine, with every right.
    pub fn local() -> Self {
        Self {
            user: None,
            roles: vec![Role::Admin],
            claims: None,
        }
    }

    /// A caller from a verified token.
    pub fn user(sub: impl Into<String>, roles: Vec<Role>, claims: serde_json::Value) -> Self {
        Self {
            user: Some(sub.into()),
            roles,
            claims: Some(claims),
        }
    }

    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    pub fn is_admin(&self) -> bool {
        self.has(Role::Admin)
    }

    /// May read and follow what they own (any role).
    pub fn can_read(&self) -> bool {
        !self.roles.is_empty()
    }

    /// May upload (creators and admins).
    pub fn can_upload(&self) -> bool {
        self.has(Role::Creator) || self.is_admin()
    }

    /// May see, follow and manage a video owned by `owner`: its owner, or an admin.
    pub fn owns(&self, owner: Option<&str>) -> bool {
        self.is_admin() || (self.user.is_some() && self.user.as_deref() == owner)
    }

    /// Whose videos a list shows: `None` for everyone's (admins).
    pub fn scope(&self) -> Option<String> {
        if self.is_admin() {
            None
        } else {
            Some(self.user.clone().unwrap_or_default())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_and_admins_may_see_a_video_others_may_not() {
        let alice = Caller::user("alice", vec![Role::Creator], serde_json::json!({}));
        assert!(alice.owns(Some("alice")));
        assert!(!alice.owns(Some("bob")));
        assert!(!alice.owns(None));
        assert!(Caller::local().owns(Some("bob")));
        let viewer = Caller::user("v", vec![Role::Viewer], serde_json::json!({}));
        assert!(!viewer.can_upload());
        assert_eq!(alice.scope().as_deref(), Some("alice"));
        assert_eq!(Caller::local().scope(), None);
    }
}
