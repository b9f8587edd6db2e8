//! API tokens of the daemon: name, owner, type, scopes, expiry and last use.
//! Only the SHA-256 hash of a token is stored; the token itself is shown
//! once, when it is created, and never again.

use std::time::Duration;

use rusqlite::{OptionalExtension, Row, params};
use serde::Serialize;
use time::OffsetDateTime;

use super::{Store, StoreError, busy, format_time, now};

/// A stored token, without its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenRecord {
    pub name: String,
    pub username: String,
    /// `user` or `service`.
    pub token_type: String,
    pub scopes: Vec<String>,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub last_used_at: Option<String>,
}

impl TokenRecord {
    /// Whether the token has expired at `now` (a stored time string).
    pub fn expired_at(&self, now: &str) -> bool {
        self.expires_at.as_deref().is_some_and(|e| e <= now)
    }
}

const COLUMNS: &str = "name, username, token_type, scopes, created_at, expires_at, last_used_at";

fn token_row(row: &Row<'_>) -> rusqlite::Result<TokenRecord> {
    let scopes: String = row.get(3)?;
    Ok(TokenRecord {
        name: row.get(0)?,
        username: row.get(1)?,
        token_type: row.get(2)?,
        scopes: scopes.split_whitespace().map(str::to_owned).collect(),
        created_at: row.get(4)?,
        expires_at: row.get(5)?,
        last_used_at: row.get(6)?,
    })
}

/// The stored form of a time `after` from now.
pub(crate) fn time_after(after: Duration) -> String {
    let after = time::Duration::try_from(after).unwrap_or(time::Duration::MAX);
    format_time(
        OffsetDateTime::now_utc()
            .checked_add(after)
            .unwrap_or(OffsetDateTime::now_utc()),
    )
}

impl Store {
    /// Stores a new token by its hash. Fails with [`StoreError::TokenExists`]
    /// if the name is taken.
    pub fn insert_token(&mut self, token: &TokenRecord, hash: &[u8; 32]) -> Result<(), StoreError> {
        let result = self
            .conn
            .prepare_cached(&format!(
                "INSERT INTO api_tokens ({COLUMNS}, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
            ))?
            .execute(params![
                token.name,
                token.username,
                token.token_type,
                token.scopes.join(" "),
                token.created_at,
                token.expires_at,
                token.last_used_at,
                &hash[..]
            ]);
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation) => {
                Err(StoreError::TokenExists(token.name.clone()))
            }
            Err(e) => Err(busy(&self.path, e)),
        }
    }

    /// The token with this hash, if any.
    pub fn token_by_hash(&self, hash: &[u8; 32]) -> Result<Option<TokenRecord>, StoreError> {
        Ok(self
            .conn
            .prepare_cached(&format!("SELECT {COLUMNS} FROM api_tokens WHERE hash = ?1"))?
            .query_row([&hash[..]], token_row)
            .optional()?)
    }

    /// Every token, by name.
    pub fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT {COLUMNS} FROM api_tokens ORDER BY name"))?;
        let rows = stmt.query_map([], token_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Deletes a token; false if there was none of that name.
    pub fn revoke_token(&mut self, name: &str) -> Result<bool, StoreError> {
        let n = self
            .conn
            .prepare_cached("DELETE FROM api_tokens WHERE name = ?1")?
            .execute([name])
            .map_err(|e| busy(&self.path, e))?;
        Ok(n > 0)
    }

    /// Records that a token was used now.
    pub fn touch_token(&mut self, name: &str) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("UPDATE api_tokens SET last_used_at = ?2 WHERE name = ?1")?
            .execute(params![name, now()])
            .map_err(|e| busy(&self.path, e))?;
        Ok(())
    }
}
