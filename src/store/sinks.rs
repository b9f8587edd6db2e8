//! Alert delivery state: each sink's cursors (what it acknowledged of the
//! change-event outbox and of the system events), and the system events
//! themselves, derived from `sync_runs` (failed and partial runs) and
//! `connections` (a test result that turned to failure or back).
//!
//! Invariant: a cursor only moves forward, and only after the sink
//! acknowledged what it covers; so a restart re-sends nothing acknowledged.

use rusqlite::{Row, TransactionBehavior, params};
use serde_json::{Value, json};

use super::{Store, StoreError, busy, now};
use crate::alerts::event::{
    CONNECTION_TEST_FAILED, CONNECTION_TEST_RECOVERED, CONNECTION_TYPE, SYNC_FAILED, SYNC_PARTIAL,
    SYNC_RUN_TYPE, Stream, SystemEvent, SystemObject,
};
use crate::events::FieldChange;
use crate::run::RunStatus;

/// A sink's delivery state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkCursor {
    pub name: String,
    /// Every alert for change events up to here is acknowledged.
    pub change_seq: u64,
    /// Rules already acknowledged for change event `change_seq + 1`.
    pub change_done: Vec<String>,
    pub system_seq: u64,
    pub system_done: Vec<String>,
    /// Alerts acknowledged since the sink was first used.
    pub delivered: u64,
    pub last_delivered_at: Option<String>,
    pub last_error: Option<String>,
    pub failing_since: Option<String>,
    pub created_at: String,
}

impl SinkCursor {
    pub fn seq(&self, stream: Stream) -> u64 {
        match stream {
            Stream::Change => self.change_seq,
            Stream::System => self.system_seq,
        }
    }

    pub fn done(&self, stream: Stream) -> &[String] {
        match stream {
            Stream::Change => &self.change_done,
            Stream::System => &self.system_done,
        }
    }
}

const SINK_COLUMNS: &str = "name, change_seq, change_done, system_seq, system_done, delivered, \
    last_delivered_at, last_error, failing_since, created_at";

fn sink_cursor(row: &Row<'_>) -> Result<SinkCursor, StoreError> {
    let name: String = row.get(0)?;
    let done = |i: usize| -> Result<Vec<String>, StoreError> {
        let text: String = row.get(i)?;
        serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
            what: format!("cursor of alert sink {name:?}"),
            reason: e.to_string(),
        })
    };
    let seq = |i: usize| -> Result<u64, StoreError> { Ok(row.get::<_, i64>(i)?.max(0) as u64) };
    Ok(SinkCursor {
        change_seq: seq(1)?,
        change_done: done(2)?,
        system_seq: seq(3)?,
        system_done: done(4)?,
        delivered: seq(5)?,
        last_delivered_at: row.get(6)?,
        last_error: row.get(7)?,
        failing_since: row.get(8)?,
        created_at: row.get(9)?,
        name,
    })
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn encode(what: &str, value: &impl serde::Serialize) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|source| StoreError::Encode {
        what: what.to_owned(),
        source,
    })
}

impl Store {
    pub fn sink_cursor(&self, name: &str) -> Result<Option<SinkCursor>, StoreError> {
        let sql = format!("SELECT {SINK_COLUMNS} FROM alert_sinks WHERE name = ?1");
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let mut rows = stmt.query([name])?;
        match rows.next()? {
            Some(row) => Ok(Some(sink_cursor(row)?)),
            None => Ok(None),
        }
    }

    /// The sink's cursor, created on first use: at the newest events when
    /// `from_end`, else before the first.
    pub fn register_sink(&mut self, name: &str, from_end: bool) -> Result<SinkCursor, StoreError> {
        let (change, system) = if from_end {
            (self.last_event_seq()?, self.last_system_seq()?)
        } else {
            (0, 0)
        };
        let now = now();
        self.conn
            .prepare_cached(
                "INSERT INTO alert_sinks (name, change_seq, system_seq, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?4) ON CONFLICT (name) DO NOTHING",
            )?
            .execute(params![name, to_i64(change), to_i64(system), now])
            .map_err(|e| busy(&self.path, e))?;
        self.sink_cursor(name)?.ok_or_else(|| StoreError::Corrupt {
            what: format!("cursor of alert sink {name:?}"),
            reason: "missing right after it was written".into(),
        })
    }

    /// Records that `sink` acknowledged everything of `stream` up to `seq`,
    /// and the rules in `done` for `seq + 1`; `delivered` alerts more. The
    /// cursor never moves back.
    pub fn ack_sink(
        &mut self,
        sink: &str,
        stream: Stream,
        seq: u64,
        done: &[String],
        delivered: u64,
    ) -> Result<(), StoreError> {
        let sql = match stream {
            Stream::Change => {
                "UPDATE alert_sinks SET change_seq = ?2, change_done = ?3, delivered = delivered + ?4,
                 last_delivered_at = CASE WHEN ?4 > 0 THEN ?5 ELSE last_delivered_at END, updated_at = ?5
                 WHERE name = ?1 AND change_seq <= ?2"
            }
            Stream::System => {
                "UPDATE alert_sinks SET system_seq = ?2, system_done = ?3, delivered = delivered + ?4,
                 last_delivered_at = CASE WHEN ?4 > 0 THEN ?5 ELSE last_delivered_at END, updated_at = ?5
                 WHERE name = ?1 AND system_seq <= ?2"
            }
        };
        let done = encode("acknowledged rules", &done)?;
        self.conn
            .prepare_cached(sql)?
            .execute(params![sink, to_i64(seq), done, to_i64(delivered), now()])
            .map_err(|e| busy(&self.path, e))?;
        Ok(())
    }

    /// Records a failed delivery pass (`Some(error)`) or a clean one (`None`).
    pub fn set_sink_error(&mut self, sink: &str, error: Option<&str>) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "UPDATE alert_sinks SET last_error = ?2,
                 failing_since = CASE WHEN ?2 IS NULL THEN NULL ELSE COALESCE(failing_since, ?3) END,
                 updated_at = ?3 WHERE name = ?1",
            )?
            .execute(params![sink, error, now()])
            .map_err(|e| busy(&self.path, e))?;
        Ok(())
    }

    /// The integration's first run that collected anything (success or
    /// partial): its events are a baseline (everything is new in it). A
    /// first run that found nothing still counts, so what a later run finds
    /// is news.
    pub fn first_sync_id(&self, integration: &str) -> Result<Option<i64>, StoreError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT MIN(id) FROM sync_runs WHERE integration = ?1 AND status IN (?2, ?3)",
            )?
            .query_row(
                params![
                    integration,
                    RunStatus::Success.as_str(),
                    RunStatus::Partial.as_str()
                ],
                |row| row.get(0),
            )?)
    }

    /// System events with `seq > since`, ascending, at most `limit`.
    pub fn system_events(&self, since: u64, limit: usize) -> Result<Vec<SystemEvent>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, body FROM alert_system_events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )?;
        let mut rows = stmt.query(params![
            to_i64(since),
            i64::try_from(limit).unwrap_or(i64::MAX)
        ])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let seq: i64 = row.get(0)?;
            let body = row.get_ref(1)?.as_str().map_err(rusqlite::Error::from)?;
            out.push(serde_json::from_str(body).map_err(|e| StoreError::Corrupt {
                what: format!("system event {seq}"),
                reason: e.to_string(),
            })?);
        }
        Ok(out)
    }

    /// The newest system event's seq (0 when there is none).
    pub fn last_system_seq(&self) -> Result<u64, StoreError> {
        let seq: Option<i64> = self
            .conn
            .prepare_cached("SELECT MAX(seq) FROM alert_system_events")?
            .query_row([], |row| row.get(0))?;
        Ok(seq.unwrap_or(0).max(0) as u64)
    }

    /// Records the system events that happened since the last call: runs
    /// that ended failed or partial, and connections whose latest test
    /// failed after a success (or a first test that failed), or succeeded
    /// after a failure. Returns how many were recorded. Idempotent.
    pub fn record_system_events(&mut self) -> Result<usize, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| busy(&self.path, e))?;
        let mut next: i64 = tx
            .prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM alert_system_events")?
            .query_row([], |row| row.get(0))?;
        let mut found: Vec<(String, SystemEvent)> = Vec::new();

        let mut runs = tx.prepare_cached(
            "SELECT r.id, r.integration, r.started_at, r.ended_at, r.status, r.steps, r.error
             FROM sync_runs r
             WHERE r.id > COALESCE((SELECT value FROM alert_state WHERE name = 'sync_runs_from'), 0)
               AND r.status IN ('failed', 'partial')
               AND NOT EXISTS (SELECT 1 FROM alert_system_events e WHERE e.subject = 'sextant_sync_run:' || r.id)
             ORDER BY r.id",
        )?;
        let mut rows = runs.query([])?;
        while let Some(row) = rows.next()? {
            let id: i64 = row.get(0)?;
            let integration: String = row.get(1)?;
            let started_at: String = row.get(2)?;
            let ended_at: Option<String> = row.get(3)?;
            let status: String = row.get(4)?;
            let steps: String = row.get(5)?;
            let error: Option<String> = row.get(6)?;
            let steps: Value = serde_json::from_str(&steps).unwrap_or(Value::Null);
            let (failed_steps, step_errors) = step_failures(&steps);
            let error = error.or_else(|| step_errors.first().cloned());
            let key = format!("{SYNC_RUN_TYPE}:{id}");
            next += 1;
            found.push((
                key.clone(),
                SystemEvent {
                    seq: next.max(0) as u64,
                    time: ended_at.clone().unwrap_or_else(now),
                    integration: Some(integration.clone()),
                    sync_id: Some(id),
                    object: SystemObject::System,
                    action: if status == "failed" {
                        SYNC_FAILED
                    } else {
                        SYNC_PARTIAL
                    }
                    .to_owned(),
                    ty: SYNC_RUN_TYPE.to_owned(),
                    class: "SyncRun".to_owned(),
                    key,
                    changes: None,
                    before: None,
                    after: Some(json!({
                        "_key": format!("{SYNC_RUN_TYPE}:{id}"),
                        "_type": SYNC_RUN_TYPE,
                        "_class": "SyncRun",
                        "id": id,
                        "integration": integration,
                        "status": status,
                        "startedAt": started_at,
                        "endedAt": ended_at,
                        "error": error,
                        "failedSteps": failed_steps,
                        "stepErrors": step_errors,
                    })),
                },
            ));
        }
        drop(rows);
        drop(runs);

        let mut tests = tx.prepare_cached(
            "SELECT c.key, c.name, c.type, c.last_test_at, c.last_test_succeeded, c.last_test_error,
                    s.succeeded
             FROM connections c LEFT JOIN alert_connection_tests s ON s.key = c.key
             WHERE c.last_test_at IS NOT NULL AND c.last_test_succeeded IS NOT NULL
               AND (s.at IS NULL OR s.at <> c.last_test_at)
             ORDER BY c.last_test_at, c.key",
        )?;
        let mut seen = Vec::new();
        let mut rows = tests.query([])?;
        while let Some(row) = rows.next()? {
            let key: String = row.get(0)?;
            let name: String = row.get(1)?;
            let ty: String = row.get(2)?;
            let at: String = row.get(3)?;
            let succeeded: bool = row.get(4)?;
            let error: Option<String> = row.get(5)?;
            let before: Option<bool> = row.get(6)?;
            seen.push((key.clone(), succeeded, at.clone()));
            let action = match (before, succeeded) {
                (Some(true) | None, false) => CONNECTION_TEST_FAILED,
                (Some(false), true) => CONNECTION_TEST_RECOVERED,
                _ => continue,
            };
            let object_key = format!("{CONNECTION_TYPE}:{key}");
            let object = |ok: Option<bool>, error: Option<&str>| {
                json!({
                    "_key": object_key,
                    "_type": CONNECTION_TYPE,
                    "_class": "Connection",
                    "key": key,
                    "name": name,
                    "type": ty,
                    "lastTestAt": at,
                    "lastTestSucceeded": ok,
                    "error": error,
                })
            };
            let mut changes = std::collections::BTreeMap::new();
            changes.insert(
                "lastTestSucceeded".to_owned(),
                FieldChange {
                    old: before.map_or(Value::Null, Value::Bool),
                    new: Value::Bool(succeeded),
                },
            );
            next += 1;
            found.push((
                format!("{object_key}@{at}"),
                SystemEvent {
                    seq: next.max(0) as u64,
                    time: at.clone(),
                    integration: None,
                    sync_id: None,
                    object: SystemObject::System,
                    action: action.to_owned(),
                    ty: CONNECTION_TYPE.to_owned(),
                    class: "Connection".to_owned(),
                    key: object_key.clone(),
                    changes: Some(changes),
                    before: before.map(|b| object(Some(b), None)),
                    after: Some(object(Some(succeeded), error.as_deref())),
                },
            ));
        }
        drop(rows);
        drop(tests);

        let mut insert = tx.prepare_cached(
            "INSERT INTO alert_system_events (seq, subject, body) VALUES (?1, ?2, ?3)",
        )?;
        for (subject, event) in &found {
            insert.execute(params![
                to_i64(event.seq),
                subject,
                encode("system event", event)?
            ])?;
        }
        drop(insert);
        let mut upsert = tx.prepare_cached(
            "INSERT INTO alert_connection_tests (key, succeeded, at) VALUES (?1, ?2, ?3)
             ON CONFLICT (key) DO UPDATE SET succeeded = excluded.succeeded, at = excluded.at",
        )?;
        for (key, succeeded, at) in &seen {
            upsert.execute(params![key, succeeded, at])?;
        }
        drop(upsert);
        // Every run up to the oldest still running has now been looked at:
        // the next pass starts after them instead of rescanning all history.
        tx.prepare_cached(
            "UPDATE alert_state SET value = MAX(value, COALESCE(
                 (SELECT MIN(id) - 1 FROM sync_runs WHERE status = ?1),
                 (SELECT MAX(id) FROM sync_runs),
                 value))
             WHERE name = 'sync_runs_from'",
        )?
        .execute([RunStatus::Running.as_str()])?;
        tx.commit().map_err(|e| busy(&self.path, e))?;
        Ok(found.len())
    }
}

/// The ids of the steps that did not succeed, and `"step: error"` lines.
fn step_failures(steps: &Value) -> (Vec<String>, Vec<String>) {
    let mut ids = Vec::new();
    let mut errors = Vec::new();
    for step in steps.as_array().map(Vec::as_slice).unwrap_or(&[]) {
        let status = step.get("status").and_then(Value::as_str).unwrap_or("");
        if matches!(status, "success" | "skipped") {
            continue;
        }
        let id = step.get("id").and_then(Value::as_str).unwrap_or("?");
        ids.push(id.to_owned());
        if let Some(error) = step.get("error").and_then(Value::as_str) {
            errors.push(format!("{id}: {error}"));
        } else if let Some(warning) = step
            .get("warnings")
            .and_then(Value::as_array)
            .and_then(|w| w.first())
            .and_then(Value::as_str)
        {
            errors.push(format!("{id}: {warning}"));
        }
    }
    (ids, errors)
}
