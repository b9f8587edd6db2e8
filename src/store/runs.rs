//! Sync runs: starting, committing (graph rows, events, type last-seen times
//! and the run row in one transaction), finishing without graph changes, and
//! reading them back.

use std::collections::BTreeSet;

use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};
use serde::Serialize;
use serde_json::Value;

use super::graph::{plan_run, relationships_touching};
use super::write::Writer;
use super::{Store, StoreError, WriteCounter, busy, events, now, now_and_ms};
use crate::graph::Collected;
use crate::run::{ChangeCounts, RunStatus, StepOutcome};

/// A recorded sync run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunRecord {
    pub id: i64,
    pub integration: String,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub status: RunStatus,
    pub steps: Value,
    pub changes: ChangeCounts,
    pub error: Option<String>,
}

const RUN_COLUMNS: &str =
    "id, integration, started_at, ended_at, status, steps, created, updated, deleted, error";

fn run_record(row: &Row<'_>) -> Result<RunRecord, StoreError> {
    let id: i64 = row.get(0)?;
    let corrupt = |what: &str, reason: String| StoreError::Corrupt {
        what: format!("{what} of sync run {id}"),
        reason,
    };
    let status: String = row.get(4)?;
    let status = RunStatus::parse(&status)
        .ok_or_else(|| corrupt("status", format!("{status:?} is not a run status")))?;
    let steps: String = row.get(5)?;
    let steps = serde_json::from_str(&steps).map_err(|e| corrupt("steps", e.to_string()))?;
    let count = |i: usize| -> Result<u64, StoreError> { Ok(row.get::<_, i64>(i)?.max(0) as u64) };
    Ok(RunRecord {
        id,
        integration: row.get(1)?,
        started_at: row.get(2)?,
        ended_at: row.get(3)?,
        status,
        steps,
        changes: ChangeCounts {
            created: count(6)?,
            updated: count(7)?,
            deleted: count(8)?,
        },
        error: row.get(9)?,
    })
}

fn encode_steps(steps: &[StepOutcome]) -> Result<String, StoreError> {
    serde_json::to_string(steps).map_err(|source| StoreError::Encode {
        what: "step outcomes".into(),
        source,
    })
}

/// Refuses to commit a run that is unknown, finished, or another integration's.
fn check_running(conn: &Connection, sync_id: i64, integration: &str) -> Result<(), StoreError> {
    let found: Option<(String, String)> = conn
        .prepare_cached("SELECT integration, status FROM sync_runs WHERE id = ?1")?
        .query_row([sync_id], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    let Some((actual, status)) = found else {
        return Err(StoreError::UnknownRun(sync_id));
    };
    if actual != integration {
        return Err(StoreError::WrongIntegration {
            sync_id,
            actual,
            given: integration.to_owned(),
        });
    }
    if status != RunStatus::Running.as_str() {
        return Err(StoreError::RunNotRunning { sync_id, status });
    }
    Ok(())
}

impl Store {
    /// Records the start of a run (status `running`) and returns its id.
    pub fn begin_run(&mut self, integration: &str) -> Result<i64, StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO sync_runs (integration, started_at, status) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![integration, now(), RunStatus::Running.as_str()])
            .map_err(|e| busy(&self.path, e))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Diffs `collected` into the stored graph of `integration` and writes
    /// the changes, one event per change, the last-seen time of every
    /// complete type and the run's outcome — all in one transaction.
    /// Objects of types not in `complete` are never deleted. On error
    /// nothing of the commit is written and the run stays `running`; record
    /// its outcome with [`Store::finish_run`].
    pub fn commit_run(
        &mut self,
        sync_id: i64,
        integration: &str,
        collected: &Collected,
        complete: &BTreeSet<String>,
        steps: &[StepOutcome],
        status: RunStatus,
    ) -> Result<ChangeCounts, StoreError> {
        let steps = encode_steps(steps)?;
        let (now, now_ms) = now_and_ms();
        let counter = WriteCounter::new(self.fault.take());
        let tx = match self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
        {
            Ok(tx) => tx,
            Err(e) => return Err(busy(&self.path, e)),
        };
        check_running(&tx, sync_id, integration)?;

        let mut plan = plan_run(&tx, integration, collected, complete)?;
        if plan.may_dangle() {
            let touching = relationships_touching(&tx, integration, &plan.entities.deleted)?;
            plan.cascade(touching, collected);
        }
        let counts = plan.counts();
        let first_seq = events::max_seq(&tx)? + 1;
        let mut writer = Writer::new(
            &tx,
            integration,
            sync_id,
            (&now, now_ms),
            first_seq,
            counter,
        )?;
        writer.write(&plan, collected)?;
        drop(writer);
        drop(plan);

        let mut seen = tx.prepare_cached(
            "INSERT INTO type_seen (integration, type, sync_id, time) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (integration, type) DO UPDATE SET sync_id = excluded.sync_id, time = excluded.time",
        )?;
        for ty in complete {
            seen.execute(params![integration, ty, sync_id, now])?;
        }
        drop(seen);
        tx.prepare_cached(
            "UPDATE sync_runs SET ended_at = ?2, status = ?3, steps = ?4, created = ?5, updated = ?6, deleted = ?7
             WHERE id = ?1",
        )?
        .execute(params![
            sync_id,
            now,
            status.as_str(),
            steps,
            counts.created as i64,
            counts.updated as i64,
            counts.deleted as i64
        ])?;
        tx.commit()?;
        Ok(counts)
    }

    /// Ends a running run without touching the graph (aborted, or failed
    /// before anything could be committed).
    pub fn finish_run(
        &mut self,
        sync_id: i64,
        status: RunStatus,
        steps: &[StepOutcome],
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let steps = encode_steps(steps)?;
        // Only a running run: one already closed (e.g. as abandoned, by the
        // process that reclaimed its lease) keeps its record.
        let changed = self
            .conn
            .prepare_cached(
                "UPDATE sync_runs SET ended_at = ?2, status = ?3, steps = ?4, error = ?5
                 WHERE id = ?1 AND status = ?6",
            )?
            .execute(params![
                sync_id,
                now(),
                status.as_str(),
                steps,
                error,
                RunStatus::Running.as_str()
            ])
            .map_err(|e| busy(&self.path, e))?;
        if changed == 0 {
            let status: Option<String> = self
                .conn
                .prepare_cached("SELECT status FROM sync_runs WHERE id = ?1")?
                .query_row([sync_id], |row| row.get(0))
                .optional()?;
            return Err(match status {
                None => StoreError::UnknownRun(sync_id),
                Some(status) => StoreError::RunNotRunning { sync_id, status },
            });
        }
        Ok(())
    }

    pub fn run(&self, sync_id: i64) -> Result<Option<RunRecord>, StoreError> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM sync_runs WHERE id = ?1");
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let mut rows = stmt.query([sync_id])?;
        match rows.next()? {
            Some(row) => Ok(Some(run_record(row)?)),
            None => Ok(None),
        }
    }

    /// The newest runs first, optionally of one integration.
    pub fn runs(
        &self,
        integration: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RunRecord>, StoreError> {
        // Two statements: `?1 IS NULL OR integration = ?1` would keep
        // SQLite from using sync_runs_by_integration (a full scan).
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut stmt;
        let mut rows = match integration {
            None => {
                stmt = self.conn.prepare_cached(&format!(
                    "SELECT {RUN_COLUMNS} FROM sync_runs ORDER BY id DESC LIMIT ?1"
                ))?;
                stmt.query(params![limit])?
            }
            Some(name) => {
                stmt = self.conn.prepare_cached(&format!(
                    "SELECT {RUN_COLUMNS} FROM sync_runs WHERE integration = ?1 ORDER BY id DESC LIMIT ?2"
                ))?;
                stmt.query(params![name, limit])?
            }
        };
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(run_record(row)?);
        }
        Ok(out)
    }
}
