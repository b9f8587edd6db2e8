//! Alerts an operator skipped (`sextant alerts skip`): a sink's cursor moved
//! past alerts its receiver refuses, without delivering them, and one
//! `alert_skips` row per alert so that what was never delivered stays on
//! record.
//!
//! Invariant: the cursor move and the rows are one transaction, and the
//! move happens only if the cursor is still where the skip was planned from;
//! so each alert is delivered or skipped, once.

use rusqlite::{OptionalExtension, TransactionBehavior, params};
use serde::Serialize;

use super::{Store, StoreError, busy};
use crate::alerts::event::Stream;

/// One skipped alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkipRecord {
    /// The alert's delivery id, `sink/stream/seq/rule`.
    pub id: String,
    pub stream: Stream,
    /// The event's seq in its stream.
    pub seq: u64,
    pub rule: String,
    pub skipped_at: String,
    /// Who skipped it: user and process.
    pub skipped_by: String,
}

/// What a sink skipped so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SkipSummary {
    pub count: u64,
    pub last: Option<SkipRecord>,
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn stream_from(text: &str) -> Option<Stream> {
    match text {
        "change" => Some(Stream::Change),
        "system" => Some(Stream::System),
        _ => None,
    }
}

impl Store {
    /// Moves `sink`'s cursor of `stream` from `from` (seq and the rules
    /// acknowledged for the next event) to `to`, and records `skipped`, in
    /// one transaction. Returns false, changing nothing, when the cursor is
    /// no longer at `from` (something delivered meanwhile).
    pub fn skip_alerts(
        &mut self,
        sink: &str,
        stream: Stream,
        from: (u64, &[String]),
        to: (u64, &[String]),
        skipped: &[SkipRecord],
    ) -> Result<bool, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| busy(&self.path, e))?;
        let (read, write) = match stream {
            Stream::Change => (
                "SELECT change_seq, change_done FROM alert_sinks WHERE name = ?1",
                "UPDATE alert_sinks SET change_seq = ?2, change_done = ?3, updated_at = ?4 WHERE name = ?1",
            ),
            Stream::System => (
                "SELECT system_seq, system_done FROM alert_sinks WHERE name = ?1",
                "UPDATE alert_sinks SET system_seq = ?2, system_done = ?3, updated_at = ?4 WHERE name = ?1",
            ),
        };
        let current: Option<(i64, String)> = tx
            .prepare_cached(read)?
            .query_row([sink], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()?;
        let Some((seq, done)) = current else {
            return Ok(false);
        };
        let done: Vec<String> = serde_json::from_str(&done).map_err(|e| StoreError::Corrupt {
            what: format!("cursor of alert sink {sink:?}"),
            reason: e.to_string(),
        })?;
        if seq != to_i64(from.0) || done != from.1 {
            return Ok(false);
        }
        let done = serde_json::to_string(to.1).map_err(|source| StoreError::Encode {
            what: "acknowledged rules".to_owned(),
            source,
        })?;
        let now = super::now();
        tx.prepare_cached(write)?
            .execute(params![sink, to_i64(to.0), done, now])?;
        let mut insert = tx.prepare_cached(
            "INSERT INTO alert_skips (sink, alert_id, stream, seq, rule, skipped_at, skipped_by)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for record in skipped {
            insert.execute(params![
                sink,
                record.id,
                record.stream.as_str(),
                to_i64(record.seq),
                record.rule,
                record.skipped_at,
                record.skipped_by
            ])?;
        }
        drop(insert);
        tx.commit().map_err(|e| busy(&self.path, e))?;
        Ok(true)
    }

    /// How many alerts `sink` skipped, and the last one.
    pub fn sink_skips(&self, sink: &str) -> Result<SkipSummary, StoreError> {
        let count: i64 = self
            .conn
            .prepare_cached("SELECT COUNT(*) FROM alert_skips WHERE sink = ?1")?
            .query_row([sink], |row| row.get(0))?;
        let last = self
            .conn
            .prepare_cached(
                "SELECT alert_id, stream, seq, rule, skipped_at, skipped_by FROM alert_skips
                 WHERE sink = ?1 ORDER BY id DESC LIMIT 1",
            )?
            .query_row([sink], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, i64>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, String>(4)?,
                    row.get::<_, String>(5)?,
                ))
            })
            .optional()?;
        let last = match last {
            None => None,
            Some((id, stream, seq, rule, skipped_at, skipped_by)) => Some(SkipRecord {
                stream: stream_from(&stream).ok_or_else(|| StoreError::Corrupt {
                    what: format!("skipped alert {id:?}"),
                    reason: format!("unknown stream {stream:?}"),
                })?,
                id,
                seq: seq.max(0) as u64,
                rule,
                skipped_at,
                skipped_by,
            }),
        };
        Ok(SkipSummary {
            count: count.max(0) as u64,
            last,
        })
    }
}
