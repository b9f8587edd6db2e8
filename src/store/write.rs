//! Writing one run's plan inside the commit transaction: graph rows and one
//! change event per change, each statement prepared once per commit.
//!
//! A create event's `after` stays in its row (`pending_seq`, migration 7)
//! until the row is next updated or deleted, when it is written into the
//! event first: a first ingest writes each object once, and an event never
//! changes content.
//!
//! Event order: entities created and updated, relationships created, updated
//! and deleted, entities deleted — a consumer never sees a relationship
//! before its endpoints exist or after they are gone. Each group is in key
//! order, so the same input always gives the same sequence.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use rusqlite::{CachedStatement, Connection, OptionalExtension, params};

use super::events::{self, EventHead};
use super::graph::{parse_props, text};
use super::{StoreError, WriteCounter};
use crate::diff::Plan;
use crate::events::{Action, ObjectKind};
use crate::graph::{
    Collected, CollectedEntity, CollectedRelationship, entity_object, relationship_object,
};

/// The `_type` of a relationship endpoint: from this run, else from the
/// store, else '' (an entity of another source). A bulk load looks keys up
/// in a hash map, not the collected B-tree: two tree walks per relationship
/// were a tenth of a million-row first ingest. (Validation puts every
/// endpoint in the run, so the store is a safety net, not a path.)
struct EndpointTypes<'a> {
    collected: &'a Collected,
    conn: &'a Connection,
    integration: &'a str,
    by_key: HashMap<&'a str, &'a Arc<str>>,
}

impl<'a> EndpointTypes<'a> {
    const BULK: usize = 1024;

    fn new(
        collected: &'a Collected,
        conn: &'a Connection,
        integration: &'a str,
        plan: &Plan<'_>,
    ) -> Self {
        let lookups = 2 * (plan.relationships.created.len() + plan.relationships.updated.len());
        let by_key = if lookups > Self::BULK {
            collected.entities().map(|e| (&*e.key, &e.ty)).collect()
        } else {
            HashMap::new()
        };
        EndpointTypes {
            collected,
            conn,
            integration,
            by_key,
        }
    }

    fn get(&self, key: &str) -> Result<Cow<'a, str>, StoreError> {
        let from_run = if self.by_key.is_empty() {
            self.collected.entity(key).map(|e| &e.ty)
        } else {
            self.by_key.get(key).copied()
        };
        if let Some(ty) = from_run {
            return Ok(Cow::Borrowed(&**ty));
        }
        let stored: Option<String> = self
            .conn
            .prepare_cached("SELECT type FROM entities WHERE integration = ?1 AND key = ?2")?
            .query_row(params![self.integration, key], |row| row.get(0))
            .optional()?;
        Ok(Cow::Owned(stored.unwrap_or_default()))
    }
}

pub(super) struct Writer<'c> {
    conn: &'c Connection,
    integration: &'c str,
    sync_id: i64,
    now: &'c str,
    next_seq: u64,
    counter: WriteCounter,
    insert_event: CachedStatement<'c>,
    body: String,
}

impl<'c> Writer<'c> {
    pub fn new(
        conn: &'c Connection,
        integration: &'c str,
        sync_id: i64,
        now: &'c str,
        first_seq: u64,
        counter: WriteCounter,
    ) -> Result<Self, StoreError> {
        // The event's other fields live in `body`; the columns are the ones
        // consumers filter on.
        let insert_event = conn.prepare_cached(
            "INSERT INTO events (seq, integration, sync_id, action, object, type, body, after_pending)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        Ok(Writer {
            conn,
            integration,
            sync_id,
            now,
            next_seq: first_seq,
            counter,
            insert_event,
            body: String::with_capacity(1024),
        })
    }

    pub fn write(&mut self, plan: &Plan<'_>, collected: &Collected) -> Result<(), StoreError> {
        self.entities_created(plan)?;
        self.entities_updated(plan)?;
        self.relationships_created_updated(plan, collected)?;
        self.relationships_deleted(plan)?;
        self.entities_deleted(plan)?;
        self.seen(plan)
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
        'c: 'a,
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

    /// Inserts the event whose body is in `self.body`; `pending`: its
    /// `after` is the object's row (see migration 7).
    fn event(&mut self, head: &EventHead<'_>, pending: bool) -> Result<(), StoreError> {
        self.insert_event.execute(params![
            head.seq as i64,
            head.integration,
            head.sync_id,
            head.action.as_str(),
            head.object.as_str(),
            head.ty,
            self.body,
            pending,
        ])?;
        self.counter.tick()
    }

    /// Writes `after` (the row as it is, about to change) into the pending
    /// event `seq`, so the event keeps its content once the row moves on.
    fn complete_pending(&mut self, seq: Option<i64>, after: &str) -> Result<(), StoreError> {
        let Some(seq) = seq else {
            return Ok(());
        };
        let pending: Option<String> = self
            .conn
            .prepare_cached("SELECT body FROM events WHERE seq = ?1 AND after_pending = 1")?
            .query_row([seq], |row| row.get(0))
            .optional()?;
        if let Some(pending) = pending {
            self.conn
                .prepare_cached("UPDATE events SET body = ?2, after_pending = 0 WHERE seq = ?1")?
                .execute(params![seq, events::with_after(&pending, after)])?;
            self.counter.tick()?;
        }
        Ok(())
    }

    /// Writes an entity row: a new one, or every changing column of an
    /// existing one (`first_seen` and `created_sync` stay). `pending`: the
    /// event whose `after` this row is (see migration 7).
    fn put_entity(&mut self, e: &CollectedEntity, pending: Option<u64>) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO entities (integration, key, type, class, props, hash, first_seen, last_seen, created_sync, changed_sync, pending_seq)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8, ?8, ?9)
                 ON CONFLICT (integration, key) DO UPDATE SET type = excluded.type, class = excluded.class,
                     props = excluded.props, hash = excluded.hash, last_seen = excluded.last_seen,
                     changed_sync = excluded.changed_sync, pending_seq = excluded.pending_seq",
            )?
            .execute(params![
                self.integration,
                &*e.key,
                &*e.ty,
                &*e.class,
                &*e.props,
                e.hash as i64,
                self.now,
                self.sync_id,
                pending.map(|seq| seq as i64)
            ])?;
        self.counter.tick()
    }

    /// New rows and their create events, whose `after` stays in the row
    /// until the row changes (a first ingest writes each object once).
    fn entities_created(&mut self, plan: &Plan<'_>) -> Result<(), StoreError> {
        for e in &plan.entities.created {
            let head = self.head(Action::Created, ObjectKind::Entity, &e.ty, &e.class, &e.key);
            self.put_entity(e, Some(head.seq))?;
            self.body.clear();
            events::pending_body(&mut self.body, &head);
            self.event(&head, true)?;
        }
        Ok(())
    }

    fn entities_updated(&mut self, plan: &Plan<'_>) -> Result<(), StoreError> {
        let mut old = self.conn.prepare_cached(
            "SELECT type, class, props, pending_seq FROM entities WHERE integration = ?1 AND key = ?2",
        )?;
        for e in &plan.entities.updated {
            let (before, pending) = old.query_row(params![self.integration, &*e.key], |row| {
                let before = entity_object(
                    &e.key,
                    text(row, 0)?,
                    text(row, 1)?,
                    &parse_props(text(row, 2)?),
                );
                Ok((before, row.get::<_, Option<i64>>(3)?))
            })?;
            self.complete_pending(pending, &before.to_string())?;
            self.put_entity(e, None)?;
            let head = self.head(Action::Updated, ObjectKind::Entity, &e.ty, &e.class, &e.key);
            self.body = events::updated_body(&head, before, e.to_object())?;
            self.event(&head, false)?;
        }
        Ok(())
    }

    /// Writes a relationship row like [`Writer::put_entity`]; the endpoint
    /// types are this run's (or the store's) types of its endpoints.
    fn put_relationship(
        &mut self,
        r: &CollectedRelationship,
        endpoints: &EndpointTypes<'_>,
        pending: Option<u64>,
    ) -> Result<(), StoreError> {
        let (from_ty, to_ty) = (endpoints.get(&r.from_key)?, endpoints.get(&r.to_key)?);
        self.conn
            .prepare_cached(
                "INSERT INTO relationships (integration, key, type, class, from_key, to_key, from_type, to_type, props, hash, first_seen, last_seen, created_sync, changed_sync, pending_seq)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11, ?12, ?12, ?13)
                 ON CONFLICT (integration, key) DO UPDATE SET type = excluded.type, class = excluded.class,
                     from_key = excluded.from_key, to_key = excluded.to_key, from_type = excluded.from_type,
                     to_type = excluded.to_type, props = excluded.props, hash = excluded.hash,
                     last_seen = excluded.last_seen, changed_sync = excluded.changed_sync,
                     pending_seq = excluded.pending_seq",
            )?
            .execute(params![
                self.integration,
                &*r.key,
                &*r.ty,
                &*r.class,
                &*r.from_key,
                &*r.to_key,
                &*from_ty,
                &*to_ty,
                &*r.props,
                r.hash as i64,
                self.now,
                self.sync_id,
                pending.map(|seq| seq as i64)
            ])?;
        self.counter.tick()
    }

    fn relationships_created_updated(
        &mut self,
        plan: &Plan<'_>,
        collected: &Collected,
    ) -> Result<(), StoreError> {
        let endpoints = EndpointTypes::new(collected, self.conn, self.integration, plan);
        for r in &plan.relationships.created {
            let head = self.head(
                Action::Created,
                ObjectKind::Relationship,
                &r.ty,
                &r.class,
                &r.key,
            );
            self.put_relationship(r, &endpoints, Some(head.seq))?;
            self.body.clear();
            events::pending_body(&mut self.body, &head);
            self.event(&head, true)?;
        }

        let mut old = self.conn.prepare_cached(
            "SELECT type, class, from_key, to_key, props, pending_seq FROM relationships WHERE integration = ?1 AND key = ?2",
        )?;
        for r in &plan.relationships.updated {
            let (before, pending) = old.query_row(params![self.integration, &*r.key], |row| {
                let props = parse_props(text(row, 4)?);
                let before = relationship_object(
                    &r.key,
                    text(row, 0)?,
                    text(row, 1)?,
                    text(row, 2)?,
                    text(row, 3)?,
                    &props,
                );
                Ok((before, row.get::<_, Option<i64>>(5)?))
            })?;
            self.complete_pending(pending, &before.to_string())?;
            self.put_relationship(r, &endpoints, None)?;
            let head = self.head(
                Action::Updated,
                ObjectKind::Relationship,
                &r.ty,
                &r.class,
                &r.key,
            );
            self.body = events::updated_body(&head, before, r.to_object())?;
            self.event(&head, false)?;
        }
        Ok(())
    }

    /// `DELETE … RETURNING` hands back the old row, so a delete reads and
    /// removes it in one statement; a pending event of the row gets its
    /// `after` (the row as it was) first.
    fn relationships_deleted(&mut self, plan: &Plan<'_>) -> Result<(), StoreError> {
        let mut delete = self.conn.prepare_cached(
            "DELETE FROM relationships WHERE integration = ?1 AND key = ?2
             RETURNING type, class, from_key, to_key, props, pending_seq",
        )?;
        for key in &plan.relationships.deleted {
            type Row = (String, String, String, String, String, Option<i64>);
            let (ty, class, from, to, props, pending): Row =
                delete.query_row(params![self.integration, key], |row| {
                    Ok((
                        row.get(0)?,
                        row.get(1)?,
                        row.get(2)?,
                        row.get(3)?,
                        row.get(4)?,
                        row.get(5)?,
                    ))
                })?;
            self.counter.tick()?;
            let head = self.head(Action::Deleted, ObjectKind::Relationship, &ty, &class, key);
            let before = events::flat_json(&head, Some((&from, &to)), &props);
            self.complete_pending(pending, &before)?;
            self.body.clear();
            events::deleted_body(&mut self.body, &head, &before);
            self.event(&head, false)?;
        }
        Ok(())
    }

    fn entities_deleted(&mut self, plan: &Plan<'_>) -> Result<(), StoreError> {
        let mut delete = self.conn.prepare_cached(
            "DELETE FROM entities WHERE integration = ?1 AND key = ?2
             RETURNING type, class, props, pending_seq",
        )?;
        for key in &plan.entities.deleted {
            let (ty, class, props, pending): (String, String, String, Option<i64>) = delete
                .query_row(params![self.integration, key], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
                })?;
            self.counter.tick()?;
            let head = self.head(Action::Deleted, ObjectKind::Entity, &ty, &class, key);
            let before = events::flat_json(&head, None, &props);
            self.complete_pending(pending, &before)?;
            self.body.clear();
            events::deleted_body(&mut self.body, &head, &before);
            self.event(&head, false)?;
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
