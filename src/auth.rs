//! Edge authentication (`[route.auth]`): a JWT verified before any upstream is dialed.
//!
//! Owns: the route's [`Verifier`] built from its config (the HS256 secret, from the file or
//! the environment; the RS256/ES256 public key, read from its PEM file), finding the token in
//! the neutral [`Credentials`] a server role collected (its `token`, else a named cookie of the
//! upgrade), verifying it (signature with the one configured algorithm, `exp`/`nbf` with
//! leeway, `iss`, `aud`), the [`Identity`] its claims give (`sub`, `info`, `channels`), and
//! taking the token out of what goes upstream when the route says so.
//!
//! Must not touch: wire bytes or any dialect (where a dialect carries its token is its server
//! role's business, collected into `Credentials`), sockets, metrics and logs (the session
//! counts and logs a refusal once). A token is never formatted, logged or put in an error.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use jsonwebtoken::errors::ErrorKind as JwtErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::config::{JwtAlgorithm, RouteAuth};
use crate::frame::{Credentials, Identity};

/// Why a client was refused. The label is the `reason` of `switchboard_auth_failures_total`;
/// the message is what the client is told, in its dialect's error. No `:` in the messages:
/// a STOMP ERROR escapes it (`\c`), and stomp.js reads the escapes of no frame before
/// CONNECTED.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No token where the client's dialect carries one.
    #[error("unauthorized (token required)")]
    Missing,
    /// Not a JWT, a bad signature, another algorithm, malformed claims, no `exp`.
    #[error("unauthorized (invalid token)")]
    Invalid,
    /// `exp` passed (or `nbf` not reached) beyond the leeway.
    #[error("unauthorized (token expired or not yet valid)")]
    Expired,
    /// `iss` missing or not the configured issuer.
    #[error("unauthorized (token issuer not accepted)")]
    Issuer,
    /// `aud` missing, or not the configured audience.
    #[error("unauthorized (token audience not accepted)")]
    Audience,
}

impl Refusal {
    /// A stable label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Invalid => "invalid",
            Self::Expired => "expired",
            Self::Issuer => "issuer",
            Self::Audience => "audience",
        }
    }
}

/// Why a route's verifier cannot be built: the config key and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct SetupError {
    /// The key below `route.N`, e.g. `auth.public_key_file`.
    pub key: &'static str,
    /// Why.
    pub reason: String,
}

fn setup(key: &'static str, reason: impl Into<String>) -> SetupError {
    SetupError {
        key,
        reason: reason.into(),
    }
}

/// The claims Switchboard reads besides those `jsonwebtoken` validates (`exp`, `nbf`, `iss`,
/// `aud`). A claim of the wrong type makes the token invalid.
#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    info: Option<Box<RawValue>>,
    #[serde(default)]
    channels: Option<Vec<String>>,
}

/// A route's token verifier, shared by its sessions.
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
    required: bool,
    forward: bool,
    cookie: Option<String>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of debug output.
        f.debug_struct("Verifier")
            .field("algorithms", &self.validation.algorithms)
            .field("required", &self.required)
            .field("forward", &self.forward)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// Build from `[route.auth]`, reading `secret_env` from the environment and
    /// `public_key_file` from disk.
    pub fn new(cfg: &RouteAuth) -> Result<Self, SetupError> {
        cfg.validate().map_err(|(k, why)| setup(k, why))?;
        let (alg, key) = match cfg.algorithm {
            JwtAlgorithm::HS256 => {
                let secret = match (&cfg.secret, &cfg.secret_env) {
                    (Some(s), _) => s.clone(),
                    (None, Some(var)) => std::env::var(var).map_err(|e| {
                        setup(
                            "auth.secret_env",
                            format!("environment variable `{var}`: {e}"),
                        )
                    })?,
                    (None, None) => return Err(setup("auth.secret", "HS256 needs a secret")),
                };
                if secret.is_empty() {
                    return Err(setup("auth.secret_env", "the secret is empty"));
                }
                (
                    Algorithm::HS256,
                    DecodingKey::from_secret(secret.as_bytes()),
                )
            }
            JwtAlgorithm::RS256 => (
                Algorithm::RS256,
                public_key(cfg, DecodingKey::from_rsa_pem)?,
            ),
            JwtAlgorithm::ES256 => (Algorithm::ES256, public_key(cfg, DecodingKey::from_ec_pem)?),
        };
        let mut validation = Validation::new(alg);
        validation.leeway = cfg.leeway_secs;
        validation.validate_nbf = true;
        let mut required = vec!["exp"];
        if let Some(iss) = &cfg.issuer {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        match &cfg.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                required.push("aud");
            }
            // jsonwebtoken then refuses any token that names an audience: a token meant for
            // another service is not accepted here by accident.
            None => validation.validate_aud = true,
        }
        validation.set_required_spec_claims(&required);
        Ok(Self {
            key,
            validation,
            required: cfg.required,
            forward: cfg.forward_token,
            cookie: cfg.cookie.clone(),
        })
    }

    /// Verify a token and read the identity from its claims.
    pub fn verify(&self, token: &[u8]) -> Result<Identity, Refusal> {
        let token = std::str::from_utf8(token).map_err(|_| Refusal::Invalid)?;
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(
            |e| match e.kind() {
                JwtErrorKind::ExpiredSignature | JwtErrorKind::ImmatureSignature => {
                    Refusal::Expired
                }
                JwtErrorKind::InvalidIssuer => Refusal::Issuer,
                JwtErrorKind::InvalidAudience => Refusal::Audience,
                JwtErrorKind::MissingRequiredClaim(c) if c == "iss" => Refusal::Issuer,
                JwtErrorKind::MissingRequiredClaim(c) if c == "aud" => Refusal::Audience,
                _ => Refusal::Invalid,
            },
        )?;
        let c = data.claims;
        Ok(Identity {
            user_id: c.sub.map(Bytes::from),
            user_info: c
                .info
                .map(|raw| Bytes::from(String::from(Box::<str>::from(raw)))),
            channels: c
                .channels
                .unwrap_or_default()
                .into_iter()
                .map(Bytes::from)
                .collect(),
        })
    }

    /// The token a client presented: what its server role collected as `token`, else the
    /// configured cookie of its upgrade.
    pub fn token_of(&self, c: &Credentials) -> Option<Bytes> {
        if let Some(t) = c.token.as_ref().filter(|t| !t.is_empty()) {
            return Some(t.clone());
        }
        let name = self.cookie.as_deref()?;
        cookie_value(c.cookie.as_ref()?, name)
    }

    /// Admit a client: verify its token and set `identity`, or say why not. Without a token
    /// and with `required = false`, it is admitted without an identity. With
    /// `forward_token = false` the token is then taken out of what the backend gets.
    pub fn admit(&self, c: &mut Credentials) -> Result<(), Refusal> {
        c.identity = None;
        let Some(token) = self.token_of(c) else {
            return if self.required {
                Err(Refusal::Missing)
            } else {
                Ok(())
            };
        };
        let identity = self.verify(&token)?;
        c.identity = Some(Arc::new(identity));
        if self.forward {
            // A token from a cookie is the session's bearer token from now on: it reaches a
            // backend that takes tokens elsewhere (a Socket.IO `auth.token`) as well.
            c.token.get_or_insert(token);
        } else {
            self.strip(c, &token);
        }
        Ok(())
    }

    /// Take the verified token out of the credentials: the token itself, a passcode that was
    /// it, the `token` field of a Socket.IO-style auth object, and the cookie it came from.
    fn strip(&self, c: &mut Credentials, token: &Bytes) {
        if c.token.as_ref() == Some(token) {
            c.token = None;
        }
        if c.passcode.as_ref() == Some(token) {
            c.passcode = None;
        }
        if let Some(a) = c.auth_json.take() {
            c.auth_json = without_token_field(&a);
        }
        if let (Some(name), Some(cookie)) = (self.cookie.as_deref(), c.cookie.take()) {
            c.cookie = without_cookie(&cookie, name);
        }
    }
}

impl Verifier {
    /// Admit a join of one more scope (a Socket.IO namespace CONNECT on a route whose legs
    /// keep packet shapes) with its own auth object: its `token` field, else the session's
    /// upgrade credentials in `base`, is verified as a Connect's would be. Returns the auth
    /// object the backend gets (without its token under `forward_token = false`).
    pub fn admit_scope(
        &self,
        auth: Option<&Bytes>,
        base: &Credentials,
    ) -> Result<Option<Bytes>, Refusal> {
        let mut c = Credentials {
            token: auth
                .and_then(|a| token_field(a))
                .or_else(|| base.token.clone()),
            cookie: base.cookie.clone(),
            auth_json: auth.cloned(),
            ..Default::default()
        };
        self.admit(&mut c)?;
        Ok(c.auth_json)
    }
}

/// The string `token` field of a JSON auth object.
fn token_field(auth: &[u8]) -> Option<Bytes> {
    #[derive(serde::Deserialize)]
    struct Auth {
        token: Option<String>,
    }
    serde_json::from_slice::<Auth>(auth)
        .ok()?
        .token
        .filter(|t| !t.is_empty())
        .map(Bytes::from)
}

/// What `switchboard check` adds to the config's own validation: every `[route.auth]` can be
/// set up (its key file reads and parses as the algorithm's key, its secret's variable is set).
pub fn check(config: &crate::config::Config, text: &str) -> Result<(), crate::config::ConfigError> {
    for (i, r) in config.routes.iter().enumerate() {
        if let Some(a) = &r.auth {
            Verifier::new(a).map_err(|e| {
                crate::config::ConfigError::at(text, format!("route.{i}.{}", e.key), e.reason)
            })?;
        }
    }
    Ok(())
}

/// Read and parse a PEM public key for `public_key_file`.
fn public_key(
    cfg: &RouteAuth,
    parse: fn(&[u8]) -> jsonwebtoken::errors::Result<DecodingKey>,
) -> Result<DecodingKey, SetupError> {
    const KEY: &str = "auth.public_key_file";
    let path: &Path = cfg
        .public_key_file
        .as_deref()
        .ok_or_else(|| setup(KEY, "missing"))?;
    let pem = std::fs::read(path)
        .map_err(|e| setup(KEY, format!("cannot read {}: {e}", path.display())))?;
    parse(&pem).map_err(|e| {
        setup(
            KEY,
            format!(
                "{} is not a PEM {} public key: {e}",
                path.display(),
                match cfg.algorithm {
                    JwtAlgorithm::ES256 => "EC (P-256)",
                    _ => "RSA",
                }
            ),
        )
    })
}

/// The value of cookie `name` in a `Cookie` header (`a=1; b=2`), quotes removed.
fn cookie_value(header: &[u8], name: &str) -> Option<Bytes> {
    let header = std::str::from_utf8(header).ok()?;
    header
        .split(';')
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k.trim() == name).then(|| {
                let v = v.trim();
                let v = v
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(v);
                Bytes::from(v.to_owned())
            })
        })
        .filter(|v| !v.is_empty())
}

/// A `Cookie` header without cookie `name`; `None` when nothing is left.
fn without_cookie(header: &Bytes, name: &str) -> Option<Bytes> {
    let Ok(text) = std::str::from_utf8(header) else {
        return Some(header.clone());
    };
    let kept: Vec<&str> = text
        .split(';')
        .map(str::trim)
        .filter(|p| !p.is_empty() && p.split_once('=').is_none_or(|(k, _)| k.trim() != name))
        .collect();
    (!kept.is_empty()).then(|| Bytes::from(kept.join("; ")))
}

/// A JSON object without its `token` field (the rest of a Socket.IO auth object still goes
/// upstream); `None` when nothing is left. Not an object: kept as is.
fn without_token_field(auth: &Bytes) -> Option<Bytes> {
    let Ok(mut fields) = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(auth)
    else {
        return Some(auth.clone());
    };
    fields.remove("token");
    if fields.is_empty() {
        return None;
    }
    serde_json::to_vec(&fields).ok().map(Bytes::from)
}

#[cfg(test)]
mod tests;
