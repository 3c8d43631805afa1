//! Bearer tokens (RFC 6750) carrying JWTs (RFC 7519): verified with an HS256 secret or a PEM
//! public key (RS256, ES256 or EdDSA), with the `jsonwebtoken` crate.
//!
//! A token must carry `sub` (the user) and `exp`; `iss` and `aud` are checked (and required)
//! when configured; roles come from a claim (default `roles`: an array, or a space-separated
//! string) and unknown role names are ignored.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Value, json};

use super::{Caller, Role};

/// Where keys and claims rules come from (the `--jwt-*` flags).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct JwtArgs {
    /// HS256 secret that signs and verifies tokens.
    #[arg(long, env = "REEL_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// A file holding the HS256 secret (surrounding whitespace ignored).
    #[arg(long, env = "REEL_JWT_SECRET_FILE")]
    pub jwt_secret_file: Option<PathBuf>,
    /// A PEM public key (RSA, P-256 or Ed25519) that verifies RS256, ES256 or EdDSA tokens.
    #[arg(long, env = "REEL_JWT_PUBLIC_KEY_FILE")]
    pub jwt_public_key_file: Option<PathBuf>,
    /// When set, tokens must carry this `iss`.
    #[arg(long, env = "REEL_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// When set, tokens must carry this `aud`.
    #[arg(long, env = "REEL_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// The claim that lists the caller's roles (`creator`, `viewer`, `admin`).
    #[arg(long, env = "REEL_JWT_ROLES_CLAIM", default_value = "roles")]
    pub jwt_roles_claim: String,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("--auth jwt needs a key: --jwt-secret, --jwt-secret-file or --jwt-public-key-file")]
    Missing,
    #[error("give one key: a secret (--jwt-secret or --jwt-secret-file) or --jwt-public-key-file")]
    Both,
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the JWT secret must be at least 32 bytes (it is {0})")]
    ShortSecret(usize),
    #[error("{0} is not a PEM public key of a kind reel verifies (RSA, P-256, Ed25519)")]
    BadPem(String),
    #[error("signing tokens needs the HS256 secret (--jwt-secret or --jwt-secret-file)")]
    NoSecret,
    #[error("cannot sign the token: {0}")]
    Sign(String),
}

/// Why a request's token was refused (each becomes a 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no bearer token was given")]
    Missing,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid: {0}")]
    Invalid(&'static str),
}

/// Verifies tokens with the configured key and rules.
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
    roles_claim: String,
}

impl JwtArgs {
    fn secret(&self) -> Result<Option<Vec<u8>>, KeyError> {
        let secret = match (&self.jwt_secret, &self.jwt_secret_file) {
            (Some(secret), _) => secret.clone().into_bytes(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|source| KeyError::Read {
                    path: path.display().to_string(),
                    source,
                })?
                .trim()
                .as_bytes()
                .to_vec(),
            (None, None) => return Ok(None),
        };
        if secret.len() < 32 {
            return Err(KeyError::ShortSecret(secret.len()));
        }
        Ok(Some(secret))
    }

    /// The verifier these flags describe; a startup error names what is wrong.
    pub fn verifier(&self) -> Result<Verifier, KeyError> {
        let secret = self.secret()?;
        let (key, algorithms) = match (secret, &self.jwt_public_key_file) {
            (Some(_), Some(_)) => return Err(KeyError::Both),
            (None, None) => return Err(KeyError::Missing),
            (Some(secret), None) => (DecodingKey::from_secret(&secret), vec![Algorithm::HS256]),
            (None, Some(path)) => public_key(path)?,
        };
        let mut validation = Validation::new(algorithms[0]);
        validation.algorithms = algorithms;
        validation.leeway = 30;
        validation.required_spec_claims = HashSet::from(["exp".to_owned(), "sub".to_owned()]);
        if let Some(issuer) = &self.jwt_issuer {
            validation.set_issuer(&[issuer]);
            validation.required_spec_claims.insert("iss".into());
        }
        match &self.jwt_audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                validation.required_spec_claims.insert("aud".into());
            }
            None => validation.validate_aud = false,
        }
        Ok(Verifier {
            key,
            validation,
            roles_claim: self.jwt_roles_claim.clone(),
        })
    }

    /// An HS256 token for `sub` with `roles`, valid for `ttl` (`reel token`), with the
    /// configured issuer and audience.
    pub fn sign(&self, sub: &str, roles: &[Role], ttl: Duration) -> Result<String, KeyError> {
        let secret = self.secret()?.ok_or(KeyError::NoSecret)?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let mut claims = json!({
            "sub": sub,
            "iat": now,
            "exp": now + ttl.as_secs(),
        });
        claims[&self.jwt_roles_claim] = json!(roles);
        if let Some(issuer) = &self.jwt_issuer {
            claims["iss"] = json!(issuer);
        }
        if let Some(audience) = &self.jwt_audience {
            claims["aud"] = json!(audience);
        }
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&secret),
        )
        .map_err(|e| KeyError::Sign(e.to_string()))
    }
}

/// Reads a PEM public key and the algorithms it verifies.
fn public_key(path: &PathBuf) -> Result<(DecodingKey, Vec<Algorithm>), KeyError> {
    let pem = std::fs::read(path).map_err(|source| KeyError::Read {
        path: path.display().to_string(),
        source,
    })?;
    if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
        return Ok((key, vec![Algorithm::RS256]));
    }
    if let Ok(key) = DecodingKey::from_ec_pem(&pem) {
        return Ok((key, vec![Algorithm::ES256]));
    }
    if let Ok(key) = DecodingKey::from_ed_pem(&pem) {
        return Ok((key, vec![Algorithm::EdDSA]));
    }
    Err(KeyError::BadPem(path.display().to_string()))
}

impl Verifier {
    /// The caller a token stands for.
    pub fn verify(&self, token: &str) -> Result<Caller, TokenError> {
        use jsonwebtoken::errors::ErrorKind;
        let data =
            jsonwebtoken::decode::<Value>(token, &self.key, &self.validation).map_err(|error| {
                match error.kind() {
                    ErrorKind::ExpiredSignature => TokenError::Expired,
                    ErrorKind::InvalidSignature => TokenError::Invalid("bad signature"),
                    ErrorKind::InvalidAudience => TokenError::Invalid("wrong audience"),
                    ErrorKind::InvalidIssuer => TokenError::Invalid("wrong issuer"),
                    ErrorKind::InvalidAlgorithm => TokenError::Invalid("algorithm not accepted"),
                    ErrorKind::MissingRequiredClaim(_) => {
                        TokenError::Invalid("a required claim is missing")
                    }
                    ErrorKind::ImmatureSignature => TokenError::Invalid("not valid yet"),
                    _ => TokenError::Invalid("malformed"),
                }
            })?;
        let claims = data.claims;
        let sub = claims["sub"]
            .as_str()
            .filter(|s| !s.is_empty() && s.len() <= 200)
            .ok_or(TokenError::Invalid("`sub` is not a string"))?
            .to_owned();
        let roles = roles(&claims[self.roles_claim.as_str()]);
        Ok(Caller::user(sub, roles, claims))
    }
}

/// Roles from an array of names or a space-separated string; unknown names are ignored.
fn roles(claim: &Value) -> Vec<Role> {
    let names: Vec<&str> = match claim {
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
        Value::String(text) => text.split_whitespace().collect(),
        _ => Vec::new(),
    };
    let mut roles: Vec<Role> = names.into_iter().filter_map(Role::parse).collect();
    roles.dedup();
    roles
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> JwtArgs {
        JwtArgs {
            jwt_secret: Some("0123456789abcdef0123456789abcdef".into()),
            jwt_roles_claim: "roles".into(),
            ..JwtArgs::default()
        }
    }

    #[test]
    fn a_signed_token_round_trips_and_a_tampered_one_does_not()
    -> Result<(), Box<dyn std::error::Error>> {
        let args = args();
        let token = args.sign("alice", &[Role::Creator], Duration::from_secs(60))?;
        let caller = args.verifier()?.verify(&token).map_err(|e| e.to_string())?;
        assert_eq!(caller.user.as_deref(), Some("alice"));
        assert_eq!(caller.roles, vec![Role::Creator]);
        let mut other = args.clone();
        other.jwt_secret = Some("another-secret-of-at-least-32-bytes!".into());
        assert_eq!(
            other.verifier()?.verify(&token),
            Err(TokenError::Invalid("bad signature"))
        );
        Ok(())
    }

    #[test]
    fn issuer_and_audience_are_required_when_configured() -> Result<(), Box<dyn std::error::Error>>
    {
        let plain = args().sign("bob", &[Role::Viewer], Duration::from_secs(60))?;
        let mut strict = args();
        strict.jwt_audience = Some("reel".into());
        assert_eq!(
            strict.verifier()?.verify(&plain),
            Err(TokenError::Invalid("a required claim is missing"))
        );
        let right = strict.sign("bob", &[Role::Viewer], Duration::from_secs(60))?;
        assert!(strict.verifier()?.verify(&right).is_ok());
        let mut wrong = strict.clone();
        wrong.jwt_audience = Some("elsewhere".into());
        let elsewhere = wrong.sign("bob", &[], Duration::from_secs(60))?;
        assert_eq!(
            strict.verifier()?.verify(&elsewhere),
            Err(TokenError::Invalid("wrong audience"))
        );
        Ok(())
    }

    #[test]
    fn roles_come_as_an_array_or_a_string_and_keys_are_checked() {
        assert_eq!(roles(&json!(["admin", "nope"])), vec![Role::Admin]);
        assert_eq!(
            roles(&json!("creator viewer")),
            vec![Role::Creator, Role::Viewer]
        );
        assert!(roles(&json!(5)).is_empty());
        let mut short = args();
        short.jwt_secret = Some("short".into());
        assert!(matches!(short.verifier(), Err(KeyError::ShortSecret(5))));
        assert!(matches!(
            JwtArgs::default().verifier(),
            Err(KeyError::Missing)
        ));
    }
}
