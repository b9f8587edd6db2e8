//! Stored connections (secrets as an opaque encrypted blob) and integration
//! instances. The store never sees a plaintext secret.

use rusqlite::{Connection, OptionalExtension, Row, ToSql, TransactionBehavior, params};

use super::{Store, StoreError, busy, busy_store};

/// A `connections` row. `secrets` is ciphertext.
#[derive(Clone, PartialEq)]
pub struct ConnectionRow {
    pub key: String,
    pub name: String,
    pub ty: String,
    pub description: Option<String>,
    pub disabled: bool,
    pub disabled_reason: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub secrets: Vec<u8>,
    pub last_test_at: Option<String>,
    pub last_test_succeeded: Option<bool>,
    pub last_test_error: Option<String>,
    /// HTTP overrides for every integration on this connection.
    pub requests_per_second: Option<u32>,
    pub timeout_ms: Option<u32>,
    /// Who owns the definition: `cli` (or the API) or `config`.
    pub managed_by: String,
}

impl std::fmt::Debug for ConnectionRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionRow")
            .field("key", &self.key)
            .field("name", &self.name)
            .field("ty", &self.ty)
            .field("disabled", &self.disabled)
            .finish_non_exhaustive()
    }
}

/// An `integrations` row. `interval` is its text form, `settings` JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct IntegrationRow {
    pub name: String,
    pub connection_key: Option<String>,
    pub account_name: Option<String>,
    pub description: Option<String>,
    pub interval: String,
    pub tag_account_name: bool,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub settings: String,
    pub created_at: String,
    pub updated_at: String,
    /// Who owns the definition: `cli` (or the API) or `config`.
    pub managed_by: String,
}

/// Column lists; `?1` is always the primary key and the order matches
/// [`connection_values`] / [`integration_values`] and the row readers.
const CONNECTION_COLUMNS: &str = "key, name, type, description, disabled, disabled_reason, \
created_at, updated_at, secrets, last_test_at, last_test_succeeded, last_test_error, \
requests_per_second, timeout_ms, managed_by";

const INTEGRATION_COLUMNS: &str = "name, connection_key, account_name, description, interval, \
tag_account_name, enabled, disabled_reason, settings, created_at, updated_at, managed_by";

fn connection_values(c: &ConnectionRow) -> [&dyn ToSql; 15] {
    [
        &c.key,
        &c.name,
        &c.ty,
        &c.description,
        &c.disabled,
        &c.disabled_reason,
        &c.created_at,
        &c.updated_at,
        &c.secrets,
        &c.last_test_at,
        &c.last_test_succeeded,
        &c.last_test_error,
        &c.requests_per_second,
        &c.timeout_ms,
        &c.managed_by,
    ]
}

fn integration_values(i: &IntegrationRow) -> [&dyn ToSql; 12] {
    [
        &i.name,
        &i.connection_key,
        &i.account_name,
        &i.description,
        &i.interval,
        &i.tag_account_name,
        &i.enabled,
        &i.disabled_reason,
        &i.settings,
        &i.created_at,
        &i.updated_at,
        &i.managed_by,
    ]
}

fn connection_row(row: &Row<'_>) -> rusqlite::Result<ConnectionRow> {
    Ok(ConnectionRow {
        key: row.get(0)?,
        name: row.get(1)?,
        ty: row.get(2)?,
        description: row.get(3)?,
        disabled: row.get(4)?,
        disabled_reason: row.get(5)?,
        created_at: row.get(6)?,
        updated_at: row.get(7)?,
        secrets: row.get(8)?,
        last_test_at: row.get(9)?,
        last_test_succeeded: row.get(10)?,
        last_test_error: row.get(11)?,
        requests_per_second: row.get(12)?,
        timeout_ms: row.get(13)?,
        managed_by: row.get(14)?,
    })
}

fn integration_row(row: &Row<'_>) -> rusqlite::Result<IntegrationRow> {
    Ok(IntegrationRow {
        name: row.get(0)?,
        connection_key: row.get(1)?,
        account_name: row.get(2)?,
        description: row.get(3)?,
        interval: row.get(4)?,
        tag_account_name: row.get(5)?,
        enabled: row.get(6)?,
        disabled_reason: row.get(7)?,
        settings: row.get(8)?,
        created_at: row.get(9)?,
        updated_at: row.get(10)?,
        managed_by: row.get(11)?,
    })
}

/// `INSERT` (`insert`) or full rewrite by primary key (every column but the
/// key, name and creation time, which never change; the update matches them
/// too so both statements bind the same values).
fn write_connection(conn: &Connection, c: &ConnectionRow, insert: bool) -> Result<(), StoreError> {
    let sql = if insert {
        format!(
            "INSERT INTO connections ({CONNECTION_COLUMNS}) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
        )
    } else {
        "UPDATE connections SET type = ?3, description = ?4, disabled = ?5, \
         disabled_reason = ?6, updated_at = ?8, secrets = ?9, last_test_at = ?10, \
         last_test_succeeded = ?11, last_test_error = ?12, requests_per_second = ?13, \
         timeout_ms = ?14, managed_by = ?15 WHERE key = ?1 AND name = ?2 AND created_at = ?7"
            .to_owned()
    };
    let written = conn.execute(&sql, &connection_values(c)[..])?;
    one_row(written, || format!("connection {:?}", c.name))
}

/// An update matched its row (by key, name and creation time): none means
/// the row was deleted or recreated since it was read, and the update must
/// not pass for written.
fn one_row(written: usize, what: impl FnOnce() -> String) -> Result<(), StoreError> {
    if written == 1 {
        Ok(())
    } else {
        Err(StoreError::ChangedMeanwhile { what: what() })
    }
}

/// `INSERT` (`insert`) or full rewrite by name (every column but the name
/// and creation time).
fn write_integration(
    conn: &Connection,
    i: &IntegrationRow,
    insert: bool,
) -> Result<(), StoreError> {
    let sql = if insert {
        format!(
            "INSERT INTO integrations ({INTEGRATION_COLUMNS}) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
        )
    } else {
        "UPDATE integrations SET connection_key = ?2, account_name = ?3, description = ?4, \
         interval = ?5, tag_account_name = ?6, enabled = ?7, disabled_reason = ?8, \
         settings = ?9, updated_at = ?11, managed_by = ?12 WHERE name = ?1 AND created_at = ?10"
            .to_owned()
    };
    let written = conn.execute(&sql, &integration_values(i)[..])?;
    one_row(written, || format!("integration {:?}", i.name))
}

/// A definition to write: a new row or a rewrite of an existing one.
#[derive(Debug, Clone)]
pub enum Upsert<T> {
    Insert(T),
    Update(T),
}

impl Store {
    /// Inserts a connection; fails on a duplicate key or name.
    pub fn insert_connection(&mut self, c: &ConnectionRow) -> Result<(), StoreError> {
        write_connection(&self.conn, c, true).map_err(|e| busy_store(&self.path, e))
    }

    /// Writes connections and integrations (provisioning from the config)
    /// in ONE transaction: all land or none do.
    pub fn write_definitions(
        &mut self,
        connections: &[Upsert<ConnectionRow>],
        integrations: &[Upsert<IntegrationRow>],
    ) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| busy(&self.path, e))?;
        for c in connections {
            match c {
                Upsert::Insert(row) => write_connection(&tx, row, true)?,
                Upsert::Update(row) => write_connection(&tx, row, false)?,
            }
        }
        for i in integrations {
            match i {
                Upsert::Insert(row) => write_integration(&tx, row, true)?,
                Upsert::Update(row) => write_integration(&tx, row, false)?,
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The connection whose name or key is `name`.
    pub fn connection(&self, name: &str) -> Result<Option<ConnectionRow>, StoreError> {
        Ok(self
            .conn
            .query_row(
                &format!(
                    "SELECT {CONNECTION_COLUMNS} FROM connections \
                     WHERE name = ?1 OR key = ?1 ORDER BY name = ?1 DESC LIMIT 1"
                ),
                [name],
                connection_row,
            )
            .optional()?)
    }

    /// Every connection, by name.
    pub fn connections(&self) -> Result<Vec<ConnectionRow>, StoreError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {CONNECTION_COLUMNS} FROM connections ORDER BY name"
        ))?;
        let rows = stmt.query_map([], connection_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Rewrites the mutable fields of a connection (secrets, state, test).
    pub fn update_connection(&mut self, c: &ConnectionRow) -> Result<(), StoreError> {
        write_connection(&self.conn, c, false).map_err(|e| busy_store(&self.path, e))
    }

    /// Names of the integrations that use a connection.
    pub fn integrations_using(&self, connection_key: &str) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT name FROM integrations WHERE connection_key = ?1 ORDER BY name")?;
        let rows = stmt.query_map([connection_key], |row| row.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Deletes a connection. Integrations using it are detached and disabled
    /// with `reason`, in the same transaction. Returns their names.
    pub fn delete_connection(
        &mut self,
        key: &str,
        reason: &str,
        now: &str,
    ) -> Result<Vec<String>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| busy(&self.path, e))?;
        let names: Vec<String> = {
            let mut stmt = tx
                .prepare("SELECT name FROM integrations WHERE connection_key = ?1 ORDER BY name")?;
            let rows = stmt.query_map([key], |row| row.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        tx.execute(
            "UPDATE integrations SET connection_key = NULL, enabled = 0, disabled_reason = ?2, \
             updated_at = ?3 WHERE connection_key = ?1",
            params![key, reason, now],
        )?;
        tx.execute("DELETE FROM connections WHERE key = ?1", [key])?;
        tx.commit()?;
        Ok(names)
    }

    /// Every connection's (key, encrypted secrets).
    pub fn connection_secrets(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT key, secrets FROM connections ORDER BY key")?;
        let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Replaces the secrets of many connections in ONE transaction (key
    /// rotation): all land or none do.
    pub fn replace_connection_secrets(
        &mut self,
        secrets: &[(String, Vec<u8>)],
        now: &str,
    ) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| busy(&self.path, e))?;
        for (key, blob) in secrets {
            tx.execute(
                "UPDATE connections SET secrets = ?2, updated_at = ?3 WHERE key = ?1",
                params![key, blob, now],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    pub fn insert_integration(&mut self, i: &IntegrationRow) -> Result<(), StoreError> {
        write_integration(&self.conn, i, true).map_err(|e| busy_store(&self.path, e))
    }

    /// Rewrites every field of an integration but its name and creation time.
    pub fn update_integration(&mut self, i: &IntegrationRow) -> Result<(), StoreError> {
        write_integration(&self.conn, i, false).map_err(|e| busy_store(&self.path, e))
    }

    pub fn integration(&self, name: &str) -> Result<Option<IntegrationRow>, StoreError> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {INTEGRATION_COLUMNS} FROM integrations WHERE name = ?1"),
                [name],
                integration_row,
            )
            .optional()?)
    }

    pub fn integrations(&self) -> Result<Vec<IntegrationRow>, StoreError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {INTEGRATION_COLUMNS} FROM integrations ORDER BY name"
        ))?;
        let rows = stmt.query_map([], integration_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Deletes an integration's definition and its HTTP cache (its graph
    /// rows and events stay). True if it existed.
    pub fn delete_integration(&mut self, name: &str) -> Result<bool, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| busy(&self.path, e))?;
        let n = tx.execute("DELETE FROM integrations WHERE name = ?1", [name])?;
        tx.execute("DELETE FROM http_cache WHERE integration = ?1", [name])?;
        tx.commit()?;
        Ok(n > 0)
    }
}
