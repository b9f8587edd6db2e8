//! Change events in the outbox: building their JSON bodies (by hand for the
//! bulk create and delete cases, so a million-object first sync does not
//! parse and re-serialise every property bag) and reading them back.

use std::fmt::Write as _;

use rusqlite::{Connection, OptionalExtension};
use serde_json::Value;

use super::graph::{parse_props, text};
use super::{Store, StoreError};
use crate::diff::field_changes;
use crate::events::{Action, ChangeEvent, ObjectKind};
use crate::graph::{entity_object, relationship_object};

/// The fields every event has, in the order of DESIGN.md.
pub(super) struct EventHead<'a> {
    pub seq: u64,
    pub time: &'a str,
    pub integration: &'a str,
    pub sync_id: i64,
    pub action: Action,
    pub object: ObjectKind,
    pub ty: &'a str,
    pub class: &'a str,
    pub key: &'a str,
}

/// Appends `s` as a JSON string literal.
pub(super) fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// `{"seq":…,…,"_key":…` — the head without the closing brace.
fn push_head(out: &mut String, head: &EventHead<'_>) {
    let _ = write!(out, "{{\"seq\":{},\"time\":", head.seq);
    push_json_str(out, head.time);
    out.push_str(",\"integration\":");
    push_json_str(out, head.integration);
    let _ = write!(
        out,
        ",\"sync_id\":{},\"action\":\"{}\",\"object\":\"{}\",\"_type\":",
        head.sync_id,
        head.action.as_str(),
        head.object.as_str()
    );
    push_json_str(out, head.ty);
    out.push_str(",\"_class\":");
    push_json_str(out, head.class);
    out.push_str(",\"_key\":");
    push_json_str(out, head.key);
}

/// The flat graph object from its parts and its canonical property JSON,
/// as `graph::entity_object` / `relationship_object` would give it.
/// Property names never start with `_` (validation refuses them), so the
/// object has no duplicate names.
fn push_flat(out: &mut String, head: &EventHead<'_>, endpoints: Option<(&str, &str)>, props: &str) {
    out.push_str("{\"_key\":");
    push_json_str(out, head.key);
    out.push_str(",\"_type\":");
    push_json_str(out, head.ty);
    out.push_str(",\"_class\":");
    push_json_str(out, head.class);
    if let Some((from, to)) = endpoints {
        out.push_str(",\"_fromEntityKey\":");
        push_json_str(out, from);
        out.push_str(",\"_toEntityKey\":");
        push_json_str(out, to);
    }
    let inner = props.trim();
    let inner = inner
        .strip_prefix('{')
        .and_then(|p| p.strip_suffix('}'))
        .unwrap_or("")
        .trim();
    if !inner.is_empty() {
        out.push(',');
        out.push_str(inner);
    }
    out.push('}');
}

/// Body of an event whose `after` is still its graph row (migration 7): the
/// head alone. [`with_after`] completes it when the row is about to change;
/// [`Store::events`] completes it from the row when read.
pub(super) fn pending_body(out: &mut String, head: &EventHead<'_>) {
    push_head(out, head);
    out.push('}');
}

/// A pending body completed with `after` (flat object JSON).
pub(super) fn with_after(pending: &str, after: &str) -> String {
    let head = pending.trim_end().strip_suffix('}').unwrap_or(pending);
    format!("{head},\"after\":{after}}}")
}

/// The flat graph object of a stored row, as JSON.
pub(super) fn flat_json(
    head: &EventHead<'_>,
    endpoints: Option<(&str, &str)>,
    props: &str,
) -> String {
    let mut out = String::with_capacity(props.len() + 128);
    push_flat(&mut out, head, endpoints, props);
    out
}

/// Body of a delete: `before` only (the row's flat object); `head` carries
/// the stored type and class.
pub(super) fn deleted_body(out: &mut String, head: &EventHead<'_>, before: &str) {
    push_head(out, head);
    out.push_str(",\"before\":");
    out.push_str(before);
    out.push('}');
}

/// Body of an update: `changes` (over the flat objects, so `_type`,
/// `_class` and endpoint changes show), `before` and `after`. Updates are
/// few, so this goes through serde.
pub(super) fn updated_body(
    head: &EventHead<'_>,
    before: Value,
    after: Value,
) -> Result<String, StoreError> {
    let changes = match (&before, &after) {
        (Value::Object(old), Value::Object(new)) => field_changes(old, new),
        _ => Default::default(),
    };
    let event = ChangeEvent {
        seq: head.seq,
        time: head.time.to_owned(),
        integration: head.integration.to_owned(),
        sync_id: head.sync_id,
        action: head.action,
        object: head.object,
        ty: head.ty.to_owned(),
        class: head.class.to_owned(),
        key: head.key.to_owned(),
        changes: Some(changes),
        before: Some(before),
        after: Some(after),
    };
    serde_json::to_string(&event).map_err(|e| StoreError::Encode {
        what: "change event".into(),
        source: e,
    })
}

/// The highest event sequence number (0 when there is none).
pub(super) fn max_seq(conn: &Connection) -> Result<u64, StoreError> {
    let seq: Option<i64> = conn
        .prepare_cached(
            "SELECT MAX(m) FROM (SELECT MAX(seq) AS m FROM events
                                 UNION ALL SELECT MAX(last_seq) FROM event_batches)",
        )?
        .query_row([], |row| row.get(0))?;
    Ok(seq.unwrap_or(0).max(0) as u64)
}

/// A row of `event_batches` (migration 8): the create events
/// `first_seq ..= last_seq` of one commit, one kind of object, and adjacent
/// rows from `first_key` to `last_key`.
pub(super) struct Batch {
    pub first_seq: i64,
    pub last_seq: i64,
    pub integration: String,
    pub sync_id: i64,
    pub object: ObjectKind,
    pub time: String,
    pub first_key: String,
    pub last_key: String,
}

const BATCH_COLUMNS: &str =
    "first_seq, last_seq, integration, sync_id, object, time, first_key, last_key";

fn batch_row(row: &rusqlite::Row<'_>) -> Result<Batch, StoreError> {
    let first_seq: i64 = row.get(0)?;
    let object = match text(row, 4)? {
        "entity" => ObjectKind::Entity,
        "relationship" => ObjectKind::Relationship,
        other => {
            return Err(StoreError::Corrupt {
                what: format!("change events from {first_seq}"),
                reason: format!("{other:?} is not an object kind"),
            });
        }
    };
    Ok(Batch {
        first_seq,
        last_seq: row.get(1)?,
        integration: row.get(2)?,
        sync_id: row.get(3)?,
        object,
        time: row.get(5)?,
        first_key: row.get(6)?,
        last_key: row.get(7)?,
    })
}

/// The batch that holds event `seq`, if one does.
pub(super) fn batch_of(conn: &Connection, seq: i64) -> Result<Option<Batch>, StoreError> {
    let sql = format!(
        "SELECT {BATCH_COLUMNS} FROM event_batches WHERE first_seq <= ?1 ORDER BY first_seq DESC LIMIT 1"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query([seq])?;
    match rows.next()? {
        Some(row) => Ok(Some(batch_row(row)?).filter(|b| b.last_seq >= seq)),
        None => Ok(None),
    }
}

/// Calls `visit` with each batch holding events in `since < seq <= upper`,
/// ascending, until it returns false. Batches are read as they are visited:
/// a page of events reads as many as it needs, not every later one.
fn visit_batches(
    conn: &Connection,
    (since, upper): (i64, i64),
    integration: Option<&str>,
    mut visit: impl FnMut(Batch) -> Result<bool, StoreError>,
) -> Result<(), StoreError> {
    // Batches do not overlap: the last one to start at or before since + 1
    // is the first that can hold a later event.
    // Two statements, so the filtered one can use its index.
    let filter = if integration.is_some() {
        "AND integration = ?3"
    } else {
        "AND ?3 IS NULL"
    };
    let sql = format!(
        "SELECT {BATCH_COLUMNS} FROM event_batches
         WHERE first_seq >= (SELECT COALESCE(MAX(first_seq), 0) FROM event_batches WHERE first_seq <= ?1 + 1)
           AND first_seq <= ?2 AND last_seq > ?1 {filter}
         ORDER BY first_seq"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(rusqlite::params![since, upper, integration])?;
    while let Some(row) = rows.next()? {
        if !visit(batch_row(row)?)? {
            break;
        }
    }
    Ok(())
}

/// The events of `batch` in `lo ..= hi` whose rows still name them (the
/// others were written out whole), ascending, at most `limit`: each is its
/// row as stored now, unchanged since it was created.
fn batch_events(
    conn: &Connection,
    batch: &Batch,
    (lo, hi): (i64, i64),
    limit: i64,
) -> Result<Vec<ChangeEvent>, StoreError> {
    let event = |seq: i64, ty: &str, class: &str, key: &str, after: Value| ChangeEvent {
        seq: seq as u64,
        time: batch.time.clone(),
        integration: batch.integration.clone(),
        sync_id: batch.sync_id,
        action: Action::Created,
        object: batch.object,
        ty: ty.to_owned(),
        class: class.to_owned(),
        key: key.to_owned(),
        changes: None,
        before: None,
        after: Some(after),
    };
    let params = rusqlite::params![
        batch.integration,
        batch.first_key,
        batch.last_key,
        lo,
        hi,
        limit
    ];
    let mut out = Vec::new();
    match batch.object {
        ObjectKind::Entity => {
            let mut stmt = conn.prepare_cached(
                "SELECT key, type, class, props, pending_seq FROM entities
                 WHERE integration = ?1 AND key >= ?2 AND key <= ?3
                   AND pending_seq >= ?4 AND pending_seq <= ?5
                 ORDER BY key LIMIT ?6",
            )?;
            let mut rows = stmt.query(params)?;
            while let Some(row) = rows.next()? {
                let (key, ty, class) = (text(row, 0)?, text(row, 1)?, text(row, 2)?);
                let after = entity_object(key, ty, class, &parse_props(text(row, 3)?));
                out.push(event(row.get(4)?, ty, class, key, after));
            }
        }
        ObjectKind::Relationship => {
            let mut stmt = conn.prepare_cached(
                "SELECT key, type, class, from_key, to_key, props, pending_seq FROM relationships
                 WHERE integration = ?1 AND key >= ?2 AND key <= ?3
                   AND pending_seq >= ?4 AND pending_seq <= ?5
                 ORDER BY key LIMIT ?6",
            )?;
            let mut rows = stmt.query(params)?;
            while let Some(row) = rows.next()? {
                let (key, ty, class) = (text(row, 0)?, text(row, 1)?, text(row, 2)?);
                let props = parse_props(text(row, 5)?);
                let after =
                    relationship_object(key, ty, class, text(row, 3)?, text(row, 4)?, &props);
                out.push(event(row.get(6)?, ty, class, key, after));
            }
        }
    }
    Ok(out)
}

impl Store {
    /// Events with `seq > since`, ascending, at most `limit`: the event
    /// rows, merged with the create events of batches (migration 8).
    pub fn events(
        &self,
        since: u64,
        integration: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ChangeEvent>, StoreError> {
        let since = i64::try_from(since).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        // One snapshot for every query below: a commit in between could
        // write a batched event out (and clear its row's pending_seq) after
        // the event rows were read, and the event would be in neither.
        let _snapshot = self.conn.unchecked_transaction()?;
        let rows = self.event_rows(since, integration, limit)?;
        // With a full page of rows, a batched event past the last row's seq
        // cannot be in the answer.
        let upper = match rows.last() {
            Some(last) if rows.len() as i64 >= limit => last.seq as i64,
            _ => i64::MAX,
        };
        let mut batched: Vec<ChangeEvent> = Vec::new();
        visit_batches(&self.conn, (since, upper), integration, |batch| {
            let wanted = limit - batched.len() as i64;
            if wanted <= 0 {
                return Ok(false);
            }
            let (lo, hi) = (batch.first_seq.max(since + 1), batch.last_seq.min(upper));
            let found = batch_events(&self.conn, &batch, (lo, hi), wanted)?;
            // Every event of the range is a row that names it or an event
            // row written out when the row changed; anything else is lost.
            if (found.len() as i64) < wanted {
                let seq_at = |seq: i64| rows.partition_point(|e| (e.seq as i64) < seq);
                let written = (seq_at(hi + 1) - seq_at(lo)) as i64;
                let missing = (hi - lo + 1) - found.len() as i64 - written;
                if missing != 0 {
                    return Err(StoreError::Corrupt {
                        what: format!("change events {lo} to {hi}"),
                        reason: format!(
                            "{missing} of them have neither an event row nor a graph row that names them"
                        ),
                    });
                }
            }
            batched.extend(found);
            Ok(true)
        })?;
        if batched.is_empty() {
            return Ok(rows);
        }
        let mut out = rows;
        out.extend(batched);
        out.sort_unstable_by_key(|e| e.seq);
        out.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(out)
    }

    /// The rows of `events` with `seq > since`, ascending, at most `limit`;
    /// a pending one (migration 7) gets its `after` from its graph row.
    fn event_rows(
        &self,
        since: i64,
        integration: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ChangeEvent>, StoreError> {
        // Two statements so the filtered one can use events_by_integration.
        let mut stmt;
        let mut rows = match integration {
            None => {
                stmt = self.conn.prepare_cached(
                    "SELECT seq, body, after_pending FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                )?;
                stmt.query(rusqlite::params![since, limit])?
            }
            Some(name) => {
                stmt = self.conn.prepare_cached(
                    "SELECT seq, body, after_pending FROM events WHERE integration = ?3 AND seq > ?1 ORDER BY seq LIMIT ?2",
                )?;
                stmt.query(rusqlite::params![since, limit, name])?
            }
        };
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let seq: i64 = row.get(0)?;
            let body = row.get_ref(1)?.as_str().map_err(rusqlite::Error::from)?;
            let corrupt = |reason: String| StoreError::Corrupt {
                what: format!("change event {seq}"),
                reason,
            };
            let mut event: ChangeEvent =
                serde_json::from_str(body).map_err(|e| corrupt(e.to_string()))?;
            if row.get::<_, bool>(2)? {
                let after = self
                    .pending_after(&event)?
                    .ok_or_else(|| corrupt(format!("its object {:?} is not stored", event.key)))?;
                event.after = Some(after);
            }
            out.push(event);
        }
        Ok(out)
    }

    /// The `after` of a pending event: its object as stored now (unchanged
    /// since the event, or the event would have been completed).
    fn pending_after(&self, event: &ChangeEvent) -> Result<Option<Value>, StoreError> {
        let (integration, key) = (&event.integration, &event.key);
        let found = match event.object {
            ObjectKind::Entity => self
                .conn
                .prepare_cached(
                    "SELECT type, class, props FROM entities WHERE integration = ?1 AND key = ?2",
                )?
                .query_row(rusqlite::params![integration, key], |row| {
                    Ok(entity_object(
                        key,
                        text(row, 0)?,
                        text(row, 1)?,
                        &parse_props(text(row, 2)?),
                    ))
                })
                .optional()?,
            ObjectKind::Relationship => self
                .conn
                .prepare_cached(
                    "SELECT type, class, from_key, to_key, props FROM relationships WHERE integration = ?1 AND key = ?2",
                )?
                .query_row(rusqlite::params![integration, key], |row| {
                    Ok(relationship_object(
                        key,
                        text(row, 0)?,
                        text(row, 1)?,
                        text(row, 2)?,
                        text(row, 3)?,
                        &parse_props(text(row, 4)?),
                    ))
                })
                .optional()?,
        };
        Ok(found)
    }

    /// The sequence number of the newest event (0 when there is none).
    pub fn last_event_seq(&self) -> Result<u64, StoreError> {
        max_seq(&self.conn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_escape_like_serde() {
        for s in [
            "plain",
            "q\"uote",
            "back\\slash",
            "nl\n tab\t cr\r",
            "ctl\u{1}\u{1f}",
            "ünï ☃",
            "",
        ] {
            let mut out = String::new();
            push_json_str(&mut out, s);
            let back: String = serde_json::from_str(&out).expect("valid JSON string");
            assert_eq!(back, s);
        }
    }

    #[test]
    fn hand_built_bodies_parse_into_the_flat_objects() {
        let head = EventHead {
            seq: 7,
            time: "2024-01-01T00:00:00.000Z",
            integration: "ci \"prod\"",
            sync_id: 3,
            action: Action::Created,
            object: ObjectKind::Relationship,
            ty: "a_has_b",
            class: "HAS",
            key: "from:1|has|to:1",
        };
        let props = r#"{"n":1,"s":"x"}"#;
        // A pending create, completed as the writer completes it.
        let mut pending = String::new();
        pending_body(&mut pending, &head);
        let pending_event: ChangeEvent = serde_json::from_str(&pending).expect("pending parses");
        assert_eq!(pending_event.after, None);
        let body = with_after(&pending, &flat_json(&head, Some(("from:1", "to:1")), props));
        let event: ChangeEvent = serde_json::from_str(&body).expect("body parses");
        let expected = crate::graph::relationship_object(
            "from:1|has|to:1",
            "a_has_b",
            "HAS",
            "from:1",
            "to:1",
            &serde_json::from_str(props).expect("props"),
        );
        assert_eq!(event.after, Some(expected));
        assert_eq!(event.integration, "ci \"prod\"");
        assert_eq!((event.seq, event.sync_id, event.before), (7, 3, None));

        let mut body = String::new();
        let head = EventHead {
            action: Action::Deleted,
            object: ObjectKind::Entity,
            ..head
        };
        deleted_body(&mut body, &head, &flat_json(&head, None, "{}"));
        let event: ChangeEvent = serde_json::from_str(&body).expect("body parses");
        assert_eq!(
            event.before,
            Some(
                serde_json::json!({"_key": "from:1|has|to:1", "_type": "a_has_b", "_class": "HAS"})
            )
        );
        assert_eq!(event.action, Action::Deleted);
    }
}
