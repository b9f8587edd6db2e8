//! Graph rows: loading the diff index (keys, types, hashes — never
//! properties), writing a plan's rows and their events, exporting and
//! counting.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::Value;

use super::events::{self, EventHead, EventRow};
use super::{Store, StoreError, WriteCounter};
use crate::diff::{Plan, StoredEntityMeta, StoredIndex, StoredRelationshipMeta};
use crate::events::{Action, ObjectKind};
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

fn text<'r>(row: &'r Row<'_>, index: usize) -> rusqlite::Result<&'r str> {
    Ok(row.get_ref(index)?.as_str()?)
}

/// The stored graph of one integration, as the diff needs it.
pub(super) fn load_index(conn: &Connection, integration: &str) -> Result<StoredIndex, StoreError> {
    let mut names = Names::default();
    let count = |table: &str| -> rusqlite::Result<usize> {
        let sql = format!("SELECT COUNT(*) FROM {table} WHERE integration = ?1");
        let n: i64 = conn
            .prepare_cached(&sql)?
            .query_row([integration], |r| r.get(0))?;
        Ok(usize::try_from(n).unwrap_or(0))
    };
    // Sized up front: growing a million-entry map doubles its peak memory.
    let mut index = StoredIndex {
        entities: HashMap::with_capacity(count("entities")?),
        relationships: HashMap::with_capacity(count("relationships")?),
    };

    let mut stmt =
        conn.prepare_cached("SELECT key, type, hash FROM entities WHERE integration = ?1")?;
    let mut rows = stmt.query([integration])?;
    while let Some(row) = rows.next()? {
        let meta = StoredEntityMeta {
            ty: names.get(text(row, 1)?),
            hash: row.get::<_, i64>(2)? as u64,
        };
        index.entities.insert(text(row, 0)?.to_owned(), meta);
    }

    let mut stmt = conn.prepare_cached(
        "SELECT key, type, hash, from_type, to_type FROM relationships WHERE integration = ?1",
    )?;
    let mut rows = stmt.query([integration])?;
    while let Some(row) = rows.next()? {
        let meta = StoredRelationshipMeta {
            ty: names.get(text(row, 1)?),
            hash: row.get::<_, i64>(2)? as u64,
            from_ty: names.get(text(row, 3)?),
            to_ty: names.get(text(row, 4)?),
        };
        index.relationships.insert(text(row, 0)?.to_owned(), meta);
    }
    Ok(index)
}

/// Writes one run's plan: graph rows and one event per change, in the
/// caller's transaction. Event order: entities created and updated,
/// relationships created, updated and deleted, entities deleted — so a
/// consumer never sees a relationship before its endpoints or after their
/// deletion. Each group is in key order.
pub(super) struct Writer<'c> {
    pub conn: &'c Connection,
    pub integration: &'c str,
    pub sync_id: i64,
    pub now: &'c str,
    pub next_seq: u64,
    pub counter: WriteCounter,
    pub body: String,
}

impl Writer<'_> {
    fn event(&mut self, row: EventRow<'_>) -> Result<(), StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "INSERT INTO events (seq, time, integration, sync_id, action, object, type, class, key, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?;
        let head = &row.head;
        stmt.execute(params![
            head.seq as i64,
            head.time,
            head.integration,
            head.sync_id,
            head.action.as_str(),
            head.object.as_str(),
            head.ty,
            head.class,
            head.key,
            row.body,
        ])?;
        self.counter.tick()
    }

    fn head<'a>(
        &mut self,
        action: Action,
        object: ObjectKind,
        ty: &'a str,
        class: &'a str,
        key: &'a str,
    ) -> EventHead<'a>
    where
        Self: 'a,
    {
        let seq = self.next_seq;
        self.next_seq += 1;
        EventHead {
            seq,
            time: self.now,
            integration: self.integration,
            sync_id: self.sync_id,
            action,
            object,
            ty,
            class,
            key,
        }
    }

    pub fn write(
        &mut self,
        plan: &Plan<'_>,
        index: &StoredIndex,
        collected: &Collected,
    ) -> Result<(), StoreError> {
        self.entities_created_updated(plan)?;
        self.relationships_created_updated(plan, index, collected)?;
        self.relationships_deleted(plan)?;
        self.entities_deleted(plan)?;
        self.seen(plan)
    }

    fn entities_created_updated(&mut self, plan: &Plan<'_>) -> Result<(), StoreError> {
        let conn = self.conn;
        let mut insert = conn.prepare_cached(
            "INSERT INTO entities (integration, key, type, class, props, hash, first_seen, last_seen, created_sync, changed_sync)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8, ?8)",
        )?;
        let mut body = std::mem::take(&mut self.body);
        for e in &plan.entities.created {
            insert.execute(params![
                self.integration,
                e.key,
                &*e.ty,
                &*e.class,
                &*e.props,
                e.hash as i64,
                self.now,
                self.sync_id
            ])?;
            self.counter.tick()?;
            let head = self.head(Action::Created, ObjectKind::Entity, &e.ty, &e.class, &e.key);
            body.clear();
            events::created_body(&mut body, &head, None, &e.props);
            self.event(EventRow { head, body: &body })?;
        }
        self.body = body;

        let mut old = conn.prepare_cached(
            "SELECT type, class, props FROM entities WHERE integration = ?1 AND key = ?2",
        )?;
        let mut update = conn.prepare_cached(
            "UPDATE entities SET type = ?3, class = ?4, props = ?5, hash = ?6, last_seen = ?7, changed_sync = ?8
             WHERE integration = ?1 AND key = ?2",
        )?;
        for e in &plan.entities.updated {
            let before = old.query_row(params![self.integration, e.key], |row| {
                Ok(entity_object(
                    &e.key,
                    text(row, 0)?,
                    text(row, 1)?,
                    &parse_props(text(row, 2)?),
                ))
            })?;
            update.execute(params![
                self.integration,
                e.key,
                &*e.ty,
                &*e.class,
                &*e.props,
                e.hash as i64,
                self.now,
                self.sync_id
            ])?;
            self.counter.tick()?;
            let after = entity_object(&e.key, &e.ty, &e.class, &e.properties());
            let head = self.head(Action::Updated, ObjectKind::Entity, &e.ty, &e.class, &e.key);
            let body = events::updated_body(&head, before, after)?;
            self.event(EventRow { head, body: &body })?;
        }
        Ok(())
    }

    fn relationships_created_updated(
        &mut self,
        plan: &Plan<'_>,
        index: &StoredIndex,
        collected: &Collected,
    ) -> Result<(), StoreError> {
        let conn = self.conn;
        // The endpoint's type from this run, else from the store, else ''
        // (an entity of another source).
        let endpoint_type = |key: &str| -> Arc<str> {
            match collected.entity(key) {
                Some(e) => e.ty.clone(),
                None => index
                    .entities
                    .get(key)
                    .map(|m| m.ty.clone())
                    .unwrap_or_else(|| Arc::from("")),
            }
        };
        let mut insert = conn.prepare_cached(
            "INSERT INTO relationships (integration, key, type, class, from_key, to_key, from_type, to_type, props, hash, first_seen, last_seen, created_sync, changed_sync)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11, ?12, ?12)",
        )?;
        let mut body = std::mem::take(&mut self.body);
        for r in &plan.relationships.created {
            let (from_ty, to_ty) = (endpoint_type(&r.from_key), endpoint_type(&r.to_key));
            insert.execute(params![
                self.integration,
                r.key,
                &*r.ty,
                &*r.class,
                r.from_key,
                r.to_key,
                &*from_ty,
                &*to_ty,
                &*r.props,
                r.hash as i64,
                self.now,
                self.sync_id
            ])?;
            self.counter.tick()?;
            let head = self.head(
                Action::Created,
                ObjectKind::Relationship,
                &r.ty,
                &r.class,
                &r.key,
            );
            body.clear();
            events::created_body(&mut body, &head, Some((&r.from_key, &r.to_key)), &r.props);
            self.event(EventRow { head, body: &body })?;
        }
        self.body = body;

        let mut old = conn.prepare_cached(
            "SELECT type, class, from_key, to_key, props FROM relationships WHERE integration = ?1 AND key = ?2",
        )?;
        let mut update = conn.prepare_cached(
            "UPDATE relationships SET type = ?3, class = ?4, from_key = ?5, to_key = ?6, from_type = ?7, to_type = ?8,
                 props = ?9, hash = ?10, last_seen = ?11, changed_sync = ?12
             WHERE integration = ?1 AND key = ?2",
        )?;
        for r in &plan.relationships.updated {
            let before = old.query_row(params![self.integration, r.key], |row| {
                Ok(relationship_object(
                    &r.key,
                    text(row, 0)?,
                    text(row, 1)?,
                    text(row, 2)?,
                    text(row, 3)?,
                    &parse_props(text(row, 4)?),
                ))
            })?;
            let (from_ty, to_ty) = (endpoint_type(&r.from_key), endpoint_type(&r.to_key));
            update.execute(params![
                self.integration,
                r.key,
                &*r.ty,
                &*r.class,
                r.from_key,
                r.to_key,
                &*from_ty,
                &*to_ty,
                &*r.props,
                r.hash as i64,
                self.now,
                self.sync_id
            ])?;
            self.counter.tick()?;
            let after = r.to_object();
            let head = self.head(
                Action::Updated,
                ObjectKind::Relationship,
                &r.ty,
                &r.class,
                &r.key,
            );
            let body = events::updated_body(&head, before, after)?;
            self.event(EventRow { head, body: &body })?;
        }
        Ok(())
    }

    fn relationships_deleted(&mut self, plan: &Plan<'_>) -> Result<(), StoreError> {
        let mut delete = self.conn.prepare_cached(
            "DELETE FROM relationships WHERE integration = ?1 AND key = ?2
             RETURNING type, class, from_key, to_key, props",
        )?;
        let mut body = String::new();
        for key in &plan.relationships.deleted {
            let (ty, class, from, to, props): (String, String, String, String, String) = delete
                .query_row(params![self.integration, key], |row| {
                    Ok((
                        row.get(0)?,
                        row.get(1)?,
                        row.get(2)?,
                        row.get(3)?,
                        row.get(4)?,
                    ))
                })?;
            self.counter.tick()?;
            let head = self.head(Action::Deleted, ObjectKind::Relationship, &ty, &class, key);
            body.clear();
            events::deleted_body(&mut body, &head, Some((&from, &to)), &props);
            self.event(EventRow { head, body: &body })?;
        }
        Ok(())
    }

    fn entities_deleted(&mut self, plan: &Plan<'_>) -> Result<(), StoreError> {
        let mut delete = self.conn.prepare_cached(
            "DELETE FROM entities WHERE integration = ?1 AND key = ?2 RETURNING type, class, props",
        )?;
        let mut body = String::new();
        for key in &plan.entities.deleted {
            let (ty, class, props): (String, String, String) = delete
                .query_row(params![self.integration, key], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                })?;
            self.counter.tick()?;
            let head = self.head(Action::Deleted, ObjectKind::Entity, &ty, &class, key);
            body.clear();
            events::deleted_body(&mut body, &head, None, &props);
            self.event(EventRow { head, body: &body })?;
        }
        Ok(())
    }

    /// Unchanged rows of incomplete types: collected, so their last-seen
    /// time moves; complete types get theirs from `type_seen` instead.
    fn seen(&mut self, plan: &Plan<'_>) -> Result<(), StoreError> {
        let mut entity = self.conn.prepare_cached(
            "UPDATE entities SET last_seen = ?3 WHERE integration = ?1 AND key = ?2",
        )?;
        for e in &plan.entities.seen {
            entity.execute(params![self.integration, e.key, self.now])?;
            self.counter.tick()?;
        }
        let mut rel = self.conn.prepare_cached(
            "UPDATE relationships SET last_seen = ?3 WHERE integration = ?1 AND key = ?2",
        )?;
        for r in &plan.relationships.seen {
            rel.execute(params![self.integration, r.key, self.now])?;
            self.counter.tick()?;
        }
        Ok(())
    }
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
