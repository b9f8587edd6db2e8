//! Graph rows: planning a run against them (keys, types, hashes — never
//! properties), exporting and counting.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, Row};
use serde_json::Value;

use super::{Store, StoreError};
use crate::diff::{self, Plan, StoredEntityMeta, StoredRelationshipMeta};
use crate::graph::{Collected, Properties, entity_object, relationship_object};

/// Interns type names so a million index rows share a handful of strings.
#[derive(Default)]
struct Names(HashMap<Box<str>, Arc<str>>);

impl Names {
    fn get(&mut self, name: &str) -> Arc<str> {
        if let Some(interned) = self.0.get(name) {
            return interned.clone();
        }
        let interned: Arc<str> = Arc::from(name);
        self.0.insert(name.into(), interned.clone());
        interned
    }
}

pub(super) fn text<'r>(row: &'r Row<'_>, index: usize) -> rusqlite::Result<&'r str> {
    Ok(row.get_ref(index)?.as_str()?)
}

/// Plans a run against the stored graph of one integration, read in
/// primary-key order (keys, types, hashes — never properties) and merged
/// with the collected graph as it streams: nothing of the stored graph is
/// held in memory.
pub(super) fn plan_run<'a>(
    conn: &Connection,
    integration: &str,
    collected: &'a Collected,
    complete: &BTreeSet<String>,
) -> Result<Plan<'a>, StoreError> {
    // `ORDER BY key` walks the (integration, key) primary key: no sort.
    let mut entities = conn.prepare_cached(
        "SELECT key, type, hash FROM entities WHERE integration = ?1 ORDER BY key",
    )?;
    let mut names = Names::default();
    let entities = entities.query_map([integration], move |row| {
        Ok((
            row.get::<_, String>(0)?,
            StoredEntityMeta {
                ty: names.get(text(row, 1)?),
                hash: row.get::<_, i64>(2)? as u64,
            },
        ))
    })?;
    let mut relationships = conn.prepare_cached(
        "SELECT key, type, hash, from_type, to_type FROM relationships WHERE integration = ?1 ORDER BY key",
    )?;
    let mut names = Names::default();
    let relationships = relationships.query_map([integration], move |row| {
        Ok((
            row.get::<_, String>(0)?,
            StoredRelationshipMeta {
                ty: names.get(text(row, 1)?),
                hash: row.get::<_, i64>(2)? as u64,
                from_ty: names.get(text(row, 3)?),
                to_ty: names.get(text(row, 4)?),
            },
        ))
    })?;
    diff::plan_sorted(
        entities.map(|r| r.map_err(StoreError::from)),
        relationships.map(|r| r.map_err(StoreError::from)),
        collected,
        complete,
    )
}

/// Stored properties were written by us from canonical JSON.
pub(super) fn parse_props(json: &str) -> Properties {
    serde_json::from_str(json).unwrap_or_default()
}

impl Store {
    /// The `_type` of a stored entity.
    pub fn entity_type(&self, integration: &str, key: &str) -> Result<Option<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT type FROM entities WHERE integration = ?1 AND key = ?2")?;
        Ok(stmt
            .query_row([integration, key], |row| row.get(0))
            .optional()?)
    }

    /// Streams the stored graph as flat JupiterOne objects: every entity,
    /// then every relationship, each ordered by integration then key.
    pub fn export(
        &self,
        integration: Option<&str>,
        on_entity: &mut dyn FnMut(Value) -> std::io::Result<()>,
        on_relationship: &mut dyn FnMut(Value) -> std::io::Result<()>,
    ) -> Result<(), StoreError> {
        let filter = if integration.is_some() {
            "WHERE integration = ?1"
        } else {
            "WHERE ?1 IS NULL"
        };
        let sql = format!(
            "SELECT key, type, class, props FROM entities {filter} ORDER BY integration, key"
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let mut rows = stmt.query([integration])?;
        while let Some(row) = rows.next()? {
            let object = entity_object(
                text(row, 0)?,
                text(row, 1)?,
                text(row, 2)?,
                &props_of(row, 3)?,
            );
            on_entity(object).map_err(StoreError::Export)?;
        }
        let sql = format!(
            "SELECT key, type, class, from_key, to_key, props FROM relationships {filter} ORDER BY integration, key"
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let mut rows = stmt.query([integration])?;
        while let Some(row) = rows.next()? {
            let object = relationship_object(
                text(row, 0)?,
                text(row, 1)?,
                text(row, 2)?,
                text(row, 3)?,
                text(row, 4)?,
                &props_of(row, 5)?,
            );
            on_relationship(object).map_err(StoreError::Export)?;
        }
        Ok(())
    }

    /// Entity and relationship counts per `_type` of one integration.
    pub fn counts_by_type(&self, integration: &str) -> Result<BTreeMap<String, u64>, StoreError> {
        let mut counts = BTreeMap::new();
        for table in ["entities", "relationships"] {
            let sql =
                format!("SELECT type, COUNT(*) FROM {table} WHERE integration = ?1 GROUP BY type");
            let mut stmt = self.conn.prepare_cached(&sql)?;
            let mut rows = stmt.query([integration])?;
            while let Some(row) = rows.next()? {
                let n: i64 = row.get(1)?;
                *counts.entry(row.get::<_, String>(0)?).or_insert(0) += n as u64;
            }
        }
        Ok(counts)
    }
}

/// Properties of an exported row; a row that is not a JSON object was
/// written outside sextant.
fn props_of(row: &Row<'_>, index: usize) -> Result<Properties, StoreError> {
    let json = text(row, index)?;
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt {
        what: "graph object's properties".into(),
        reason: e.to_string(),
    })
}

/// Keys of the stored relationships of `integration` with an endpoint among
/// `entities`. One scan of the integration's relationships (there is no
/// endpoint index, see migration 1); only run when a plan deletes entities
/// while keeping relationships.
pub(super) fn relationships_touching(
    conn: &Connection,
    integration: &str,
    entities: &[String],
) -> Result<Vec<String>, StoreError> {
    let entities: std::collections::HashSet<&str> = entities.iter().map(String::as_str).collect();
    let mut stmt = conn
        .prepare_cached("SELECT key, from_key, to_key FROM relationships WHERE integration = ?1")?;
    let mut rows = stmt.query([integration])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        if entities.contains(text(row, 1)?) || entities.contains(text(row, 2)?) {
            out.push(text(row, 0)?.to_owned());
        }
    }
    Ok(out)
}
