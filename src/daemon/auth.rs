//! API tokens and scopes, after Gafaelfawr's and FoundriesFactory's: a token
//! is `sxt_` followed by 256 random bits (base64url), so secret scanners can
//! recognise a leaked one; only its SHA-256 is stored. Scopes are
//! `resource:action`. A service token's name starts with `bot-`.
//!
//! Used by `sextant token` and by the API's authorization check.

use std::time::Duration;

use base64::Engine as _;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::store::{Store, StoreError, TokenRecord};

/// The fixed prefix of every token.
pub const TOKEN_PREFIX: &str = "sxt_";

/// Every scope a token may carry. `read-update` implies `read`.
pub const SCOPES: &[&str] = &[
    "connections:read",
    "connections:read-update",
    "connections:create",
    "connections:delete",
    "integrations:read",
    "integrations:read-update",
    "integrations:create",
    "integrations:delete",
    "sync:run",
    "graph:read",
    "events:read",
    "admin:token",
];

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{0}")]
    Invalid(String),
    #[error("cannot read random bytes for a token: {0}")]
    Random(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A token to create.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub name: String,
    pub username: String,
    /// `user` or `service`.
    pub token_type: String,
    pub scopes: Vec<String>,
    pub expires: Option<Duration>,
}

/// A created token: the only time the token itself is available.
#[derive(Serialize)]
pub struct CreatedToken {
    pub token: String,
    #[serde(flatten)]
    pub record: TokenRecord,
}

impl std::fmt::Debug for CreatedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedToken")
            .field("token", &"[redacted]")
            .field("record", &self.record)
            .finish()
    }
}

/// The SHA-256 of a token, as stored.
pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Whether `granted` includes `needed` (`X:read-update` implies `X:read`).
pub fn has_scope(granted: &[String], needed: &str) -> bool {
    granted.iter().any(|g| {
        g == needed
            || needed
                .strip_suffix(":read")
                .is_some_and(|resource| g == &format!("{resource}:read-update"))
    })
}

/// Checks a token request: known scopes, at least one, a name, and the
/// `bot-` rule for service tokens. Every problem at once.
pub fn validate(new: &NewToken) -> Result<(), TokenError> {
    let mut problems = Vec::new();
    let name = new.name.trim();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        problems.push(format!(
            "name {:?} must be letters, digits, '-', '_' or '.'",
            new.name
        ));
    }
    if new.username.trim().is_empty() {
        problems.push("username must not be empty".to_owned());
    }
    match new.token_type.as_str() {
        "service" if !name.starts_with("bot-") => problems.push(format!(
            "a service token's name must start with \"bot-\" (got {name:?}); name it e.g. bot-{name}"
        )),
        "user" if name.starts_with("bot-") => problems.push(format!(
            "names starting with \"bot-\" are for service tokens; pass token_type \"service\" or rename {name:?}"
        )),
        "service" | "user" => {}
        other => problems.push(format!(
            "token_type {other:?} is not a token type; use \"user\" or \"service\""
        )),
    }
    if new.scopes.is_empty() {
        problems.push(format!(
            "a token needs at least one scope; scopes are {}",
            SCOPES.join(", ")
        ));
    }
    for scope in &new.scopes {
        if !SCOPES.contains(&scope.as_str()) {
            problems.push(format!(
                "{scope:?} is not a scope; scopes are {}",
                SCOPES.join(", ")
            ));
        }
    }
    if new.expires.is_some_and(|e| e > MAX_EXPIRY || e.is_zero()) {
        problems.push(format!(
            "expires must be between 1s and {}d; leave it out for a token that does not expire",
            MAX_EXPIRY.as_secs() / 86_400
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(TokenError::Invalid(problems.join("; ")))
    }
}

/// The longest expiry a token may be given (ten years).
pub const MAX_EXPIRY: Duration = Duration::from_secs(3650 * 86_400);

/// Creates and stores a token; the result holds the token, once.
pub fn create_token(store: &mut Store, new: NewToken) -> Result<CreatedToken, TokenError> {
    validate(&new)?;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| TokenError::Random(e.to_string()))?;
    let token = format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let mut scopes = new.scopes;
    scopes.sort();
    scopes.dedup();
    let record = TokenRecord {
        name: new.name.trim().to_owned(),
        username: new.username.trim().to_owned(),
        token_type: new.token_type,
        scopes,
        created_at: crate::store::now(),
        expires_at: new.expires.map(crate::store::time_after),
        last_used_at: None,
    };
    store.insert_token(&record, &hash_token(&token))?;
    Ok(CreatedToken { token, record })
}

/// Why a request's token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// 401: no token, not ours, or expired.
    Unauthenticated(String),
    /// 403: valid token without the scope.
    MissingScope { token: String, scope: String },
}

/// 403 unless `record` carries `scope`.
pub fn require(record: &TokenRecord, scope: &str) -> Result<(), AuthError> {
    if has_scope(&record.scopes, scope) {
        Ok(())
    } else {
        Err(AuthError::Denied(Denied::MissingScope {
            token: record.name.clone(),
            scope: scope.to_owned(),
        }))
    }
}

/// Finds the valid (known, unexpired) token of an `Authorization` header
/// value, whatever its scopes.
pub fn authenticate(store: &Store, header: Option<&str>) -> Result<TokenRecord, AuthError> {
    let Some(header) = header else {
        return Err(AuthError::Denied(Denied::Unauthenticated(
            "no token; send Authorization: Bearer sxt_… (create one with: sextant token create NAME --scope SCOPE)".into(),
        )));
    };
    let token = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| t.starts_with(TOKEN_PREFIX))
        .ok_or_else(|| {
            AuthError::Denied(Denied::Unauthenticated(
                "the Authorization header must be Bearer sxt_…".into(),
            ))
        })?;
    let Some(record) = store.token_by_hash(&hash_token(token))? else {
        return Err(AuthError::Denied(Denied::Unauthenticated(
            "unknown or revoked token".into(),
        )));
    };
    if record.expired_at(&crate::store::now()) {
        return Err(AuthError::Denied(Denied::Unauthenticated(format!(
            "token {:?} expired at {}; create a new one",
            record.name,
            record.expires_at.as_deref().unwrap_or_default()
        ))));
    }
    Ok(record)
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("access denied")]
    Denied(Denied),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(name: &str, ty: &str, scopes: &[&str]) -> NewToken {
        NewToken {
            name: name.into(),
            username: "alice".into(),
            token_type: ty.into(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            expires: None,
        }
    }

    fn problem(t: NewToken) -> String {
        validate(&t)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn scopes_and_names_are_checked() {
        assert!(validate(&new("bot-ci", "service", &["sync:run"])).is_ok());
        assert!(validate(&new("alice-laptop", "user", &["graph:read"])).is_ok());
        assert!(problem(new("ci", "service", &["sync:run"])).contains("must start with \"bot-\""));
        assert!(problem(new("bot-x", "user", &["sync:run"])).contains("for service tokens"));
        let bad = problem(new("x", "user", &["graph:write"]));
        assert!(bad.contains("\"graph:write\" is not a scope"), "{bad}");
        assert!(bad.contains("graph:read"), "{bad}");
        assert!(problem(new("x", "user", &[])).contains("at least one scope"));
        assert!(
            problem(new("x", "robot", &["sync:run"])).contains("\"robot\" is not a token type")
        );
    }

    #[test]
    fn read_update_implies_read() {
        let granted = vec!["connections:read-update".to_owned()];
        assert!(has_scope(&granted, "connections:read"));
        assert!(has_scope(&granted, "connections:read-update"));
        assert!(!has_scope(&granted, "connections:create"));
        assert!(!has_scope(&granted, "integrations:read"));
    }

    #[test]
    fn tokens_are_prefixed_random_and_stored_hashed() {
        let mut store = Store::open_in_memory().expect("store");
        let a = create_token(&mut store, new("bot-a", "service", &["sync:run"])).expect("a");
        let b = create_token(&mut store, new("bot-b", "service", &["sync:run"])).expect("b");
        assert!(a.token.starts_with(TOKEN_PREFIX) && a.token.len() > 40);
        assert_ne!(a.token, b.token);
        assert!(!format!("{a:?}").contains(&a.token));
        let found =
            authenticate(&store, Some(&format!("Bearer {}", a.token))).expect("authenticated");
        assert_eq!(found.name, "bot-a");
        require(&found, "sync:run").expect("authorized");
        let denied = require(&found, "graph:read");
        assert!(matches!(
            denied,
            Err(AuthError::Denied(Denied::MissingScope { ref scope, .. })) if scope == "graph:read"
        ));
        let mut forever = new("bot-forever", "service", &["sync:run"]);
        forever.expires = Some(Duration::from_secs(3_000_000 * 86_400));
        let refused = create_token(&mut store, forever).expect_err("beyond the maximum");
        assert!(
            refused
                .to_string()
                .contains("expires must be between 1s and 3650d"),
            "{refused}"
        );
        let again = create_token(&mut store, new("bot-a", "service", &["sync:run"]));
        assert!(
            again
                .err()
                .is_some_and(|e| e.to_string().contains("already exists"))
        );
    }
}
