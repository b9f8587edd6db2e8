//! Writing one run's plan inside the commit transaction: graph rows and one
//! change event per change, each statement prepared once per commit.
//!
//! Creates are recorded in batches (migration 8): the creates of a run of
//! adjacent rows are one `event_batches` row, and each create event's
//! `after` is its graph row (`pending_seq`) until the row is next updated or
//! deleted, when the event is written out whole first. A first ingest
//! writes each object once, and an event never changes content.
//!
//! Event order: entities created and updated, relationships created, updated
//! and deleted, entities deleted — a consumer never sees a relationship
//! before its endpoints exist or after they are gone. Each group is in key
//! order, so the same input always gives the same sequence.

use std::borrow::Cow;
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

/// The `_type` of a relationship endpoint: as collected with the
/// relationship, else from this run's graph, else from the store, else ''
/// (an entity of another source). Validation puts every endpoint in the run
/// before its relationship, so the lookups are a safety net, not a path.
fn endpoint_type<'a>(
    known: Option<&'a Arc<str>>,
    key: &str,
    collected: &'a Collected,
    conn: &Connection,
    integration: &str,
) -> Result<Cow<'a, str>, StoreError> {
    if let Some(ty) = known.or_else(|| collected.entity(key).map(|e| &e.ty)) {
        return Ok(Cow::Borrowed(&**ty));
    }
    let stored: Option<String> = conn
        .prepare_cached("SELECT type FROM entities WHERE integration = ?1 AND key = ?2")?
        .query_row(params![integration, key], |row| row.get(0))
        .optional()?;
    Ok(Cow::Owned(stored.unwrap_or_default()))
}

/// The most create events one `event_batches` row stands for: a reader
/// that starts inside a batch walks at most this many rows to its place.
const BATCH: usize = 1024;

pub(super) struct Writer<'c> {
    conn: &'c Connection,
    integration: &'c str,
    sync_id: i64,
    /// The commit's time: text for events, Unix ms for rows (migration 9).
    now: &'c str,
    now_ms: i64,
    next_seq: u64,
    counter: WriteCounter,
    insert_event: CachedStatement<'c>,
    // Prepared once per commit: a cache lookup hashes the SQL text, a
    // tenth of a million-row first ingest when done per row.
    put_entity: CachedStatement<'c>,
    put_relationship: CachedStatement<'c>,
    body: String,
}

impl<'c> Writer<'c> {
    pub fn new(
        conn: &'c Connection,
        integration: &'c str,
        sync_id: i64,
        (now, now_ms): (&'c str, i64),
        first_seq: u64,
        counter: WriteCounter,
    ) -> Result<Self, StoreError> {
        // The event's other fields live in `body`; the columns are the ones
        // consumers filter on.
        let insert_event = conn.prepare_cached(
            "INSERT INTO events (seq, integration, sync_id, action, object, type, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        let put_entity = conn.prepare_cached(
            "INSERT INTO entities (integration, key, type, class, props, hash, first_seen, last_seen, created_sync, changed_sync, pending_seq)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8, ?8, ?9)
             ON CONFLICT (integration, key) DO UPDATE SET type = excluded.type, class = excluded.class,
                 props = excluded.props, hash = excluded.hash, last_seen = excluded.last_seen,
                 changed_sync = excluded.changed_sync, pending_seq = excluded.pending_seq",
        )?;
        let put_relationship = conn.prepare_cached(
            "INSERT INTO relationships (integration, key, type, class, from_key, to_key, from_type, to_type, props, hash, first_seen, last_seen, created_sync, changed_sync, pending_seq)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11, ?12, ?12, ?13)
             ON CONFLICT (integration, key) DO UPDATE SET type = excluded.type, class = excluded.class,
                 from_key = excluded.from_key, to_key = excluded.to_key, from_type = excluded.from_type,
                 to_type = excluded.to_type, props = excluded.props, hash = excluded.hash,
                 last_seen = excluded.last_seen, changed_sync = excluded.changed_sync,
                 pending_seq = excluded.pending_seq",
        )?;
        Ok(Writer {
            conn,
            integration,
            sync_id,
            now,
            now_ms,
            next_seq: first_seq,
            counter,
            insert_event,
            put_entity,
            put_relationship,
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

    fn take_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq - 1
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
        let seq = self.take_seq();
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

    /// Inserts the event whose body is in `self.body`.
    fn event(&mut self, head: &EventHead<'_>) -> Result<(), StoreError> {
        self.insert_event.execute(params![
            head.seq as i64,
            head.integration,
            head.sync_id,
            head.action.as_str(),
            head.object.as_str(),
            head.ty,
            self.body,
        ])?;
        self.counter.tick()
    }

    /// Writes out the create event `seq` whose `after` is the row about to
    /// change (`head`: the row's type, class and key; `after`: its flat
    /// object), so the event keeps its content once the row moves on.
    fn complete_pending(
        &mut self,
        seq: Option<i64>,
        object: ObjectKind,
        row: (&str, &str, &str),
        after: &str,
    ) -> Result<(), StoreError> {
        let Some(seq) = seq else {
            return Ok(());
        };
        // Batched (migration 8) — the common case, one lookup — or else an
        // event row of migration 7 that waits for its `after`.
        let Some(batch) = events::batch_of(self.conn, seq)? else {
            let pending: Option<String> = self
                .conn
                .prepare_cached("SELECT body FROM events WHERE seq = ?1 AND after_pending = 1")?
                .query_row([seq], |r| r.get(0))
                .optional()?;
            if let Some(pending) = pending {
                self.conn
                    .prepare_cached(
                        "UPDATE events SET body = ?2, after_pending = 0 WHERE seq = ?1",
                    )?
                    .execute(params![seq, events::with_after(&pending, after)])?;
                self.counter.tick()?;
            }
            return Ok(());
        };
        let (ty, class, key) = row;
        let head = EventHead {
            seq: seq as u64,
            time: &batch.time,
            integration: &batch.integration,
            sync_id: batch.sync_id,
            action: Action::Created,
            object,
            ty,
            class,
            key,
        };
        self.body.clear();
        events::pending_body(&mut self.body, &head);
        self.body = events::with_after(&self.body, after);
        self.event(&head)
    }

    /// Records the create events of `first_seq ..= last_seq`, whose rows
    /// (adjacent, from `first_key` to `last_key`) name them.
    fn batch(
        &mut self,
        object: ObjectKind,
        first_seq: u64,
        first_key: &str,
        last_key: &str,
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO event_batches (first_seq, last_seq, integration, sync_id, object, time, first_key, last_key)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                first_seq as i64,
                (self.next_seq - 1) as i64,
                self.integration,
                self.sync_id,
                object.as_str(),
                self.now,
                first_key,
                last_key
            ])?;
        self.counter.tick()
    }

    /// Writes an entity row: a new one, or every changing column of an
    /// existing one (`first_seen` and `created_sync` stay). `pending`: the
    /// event whose `after` this row is (see migration 7).
    fn put_entity(&mut self, e: &CollectedEntity, pending: Option<u64>) -> Result<(), StoreError> {
        self.put_entity.execute(params![
            self.integration,
            &*e.key,
            &*e.ty,
            &*e.class,
            &*e.props,
            e.hash as i64,
            self.now_ms,
            self.sync_id,
            pending.map(|seq| seq as i64)
        ])?;
        self.counter.tick()
    }

    /// New rows, their create events recorded in batches (see the module
    /// documentation).
    fn entities_created(&mut self, plan: &Plan<'_>) -> Result<(), StoreError> {
        for batch in plan.entities.created_batches(BATCH) {
            let first_seq = self.next_seq;
            for e in batch {
                let seq = self.take_seq();
                self.put_entity(e, Some(seq))?;
            }
            if let (Some(first), Some(last)) = (batch.first(), batch.last()) {
                self.batch(ObjectKind::Entity, first_seq, &first.key, &last.key)?;
            }
        }
        Ok(())
    }

    fn entities_updated(&mut self, plan: &Plan<'_>) -> Result<(), StoreError> {
        let mut old = self.conn.prepare_cached(
            "SELECT type, class, props, pending_seq FROM entities WHERE integration = ?1 AND key = ?2",
        )?;
        for e in &plan.entities.updated {
            let (before, ty, class, pending) =
                old.query_row(params![self.integration, &*e.key], |row| {
                    let (ty, class) = (text(row, 0)?, text(row, 1)?);
                    let before = entity_object(&e.key, ty, class, &parse_props(text(row, 2)?));
                    Ok((
                        before,
                        ty.to_owned(),
                        class.to_owned(),
                        row.get::<_, Option<i64>>(3)?,
                    ))
                })?;
            let row = (ty.as_str(), class.as_str(), &*e.key);
            self.complete_pending(pending, ObjectKind::Entity, row, &before.to_string())?;
            self.put_entity(e, None)?;
            let head = self.head(Action::Updated, ObjectKind::Entity, &e.ty, &e.class, &e.key);
            self.body = events::updated_body(&head, before, e.to_object())?;
            self.event(&head)?;
        }
        Ok(())
    }

    /// Writes a relationship row like [`Writer::put_entity`]; the endpoint
    /// types are this run's (or the store's) types of its endpoints.
    fn put_relationship(
        &mut self,
        r: &CollectedRelationship,
        collected: &Collected,
        pending: Option<u64>,
    ) -> Result<(), StoreError> {
        let (conn, integration) = (self.conn, self.integration);
        let known = &*r.endpoint_types;
        let from_ty = endpoint_type(
            known.from.as_ref(),
            &r.from_key,
            collected,
            conn,
            integration,
        )?;
        let to_ty = endpoint_type(known.to.as_ref(), &r.to_key, collected, conn, integration)?;
        self.put_relationship.execute(params![
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
            self.now_ms,
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
        for batch in plan.relationships.created_batches(BATCH) {
            let first_seq = self.next_seq;
            for r in batch {
                let seq = self.take_seq();
                self.put_relationship(r, collected, Some(seq))?;
            }
            if let (Some(first), Some(last)) = (batch.first(), batch.last()) {
                self.batch(ObjectKind::Relationship, first_seq, &first.key, &last.key)?;
            }
        }

        let mut old = self.conn.prepare_cached(
            "SELECT type, class, from_key, to_key, props, pending_seq FROM relationships WHERE integration = ?1 AND key = ?2",
        )?;
        for r in &plan.relationships.updated {
            let (before, ty, class, pending) =
                old.query_row(params![self.integration, &*r.key], |row| {
                    let (ty, class) = (text(row, 0)?, text(row, 1)?);
                    let props = parse_props(text(row, 4)?);
                    let before = relationship_object(
                        &r.key,
                        ty,
                        class,
                        text(row, 2)?,
                        text(row, 3)?,
                        &props,
                    );
                    Ok((
                        before,
                        ty.to_owned(),
                        class.to_owned(),
                        row.get::<_, Option<i64>>(5)?,
                    ))
                })?;
            let row = (ty.as_str(), class.as_str(), &*r.key);
            self.complete_pending(pending, ObjectKind::Relationship, row, &before.to_string())?;
            self.put_relationship(r, collected, None)?;
            let head = self.head(
                Action::Updated,
                ObjectKind::Relationship,
                &r.ty,
                &r.class,
                &r.key,
            );
            self.body = events::updated_body(&head, before, r.to_object())?;
            self.event(&head)?;
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
            let row = (ty.as_str(), class.as_str(), key.as_str());
            self.complete_pending(pending, ObjectKind::Relationship, row, &before)?;
            self.body.clear();
            events::deleted_body(&mut self.body, &head, &before);
            self.event(&head)?;
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
            let row = (ty.as_str(), class.as_str(), key.as_str());
            self.complete_pending(pending, ObjectKind::Entity, row, &before)?;
            self.body.clear();
            events::deleted_body(&mut self.body, &head, &before);
            self.event(&head)?;
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
            entity.execute(params![self.integration, e.key, self.now_ms])?;
            self.counter.tick()?;
        }
        let mut rel = self.conn.prepare_cached(
            "UPDATE relationships SET last_seen = ?3 WHERE integration = ?1 AND key = ?2",
        )?;
        for r in &plan.relationships.seen {
            rel.execute(params![self.integration, r.key, self.now_ms])?;
            self.counter.tick()?;
        }
        Ok(())
    }
}
