//! Run leases: one row per integration naming the process that is syncing
//! it and until when. Taken before a run starts, renewed while it goes,
//! released when it ends; a lease past its expiry (its process died) may be
//! reclaimed. This is what keeps two daemons on one database, or a daemon and
//! a one-shot `sextant sync`, from running one integration at once.

use std::time::Duration;

use rusqlite::{OptionalExtension, TransactionBehavior, params};
use serde::Serialize;

use super::{Store, StoreError, busy, now_and_ms};
use crate::run::RunStatus;

/// A lease as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeaseRecord {
    pub integration: String,
    pub holder: String,
    pub acquired_at: String,
    pub renewed_at: String,
    /// Unix milliseconds.
    pub expires_ms: i64,
}

/// Why a run row was closed when its lease was reclaimed.
pub const ABANDONED: &str =
    "abandoned: the process running it stopped renewing its lease (crashed or killed)";

/// A stored expiry as a time string.
fn expiry_text(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map(super::format_time)
        .unwrap_or_else(|_| ms.to_string())
}

fn ttl_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)
}

impl Store {
    /// Takes the lease of `integration` for `holder` until now + `ttl`.
    ///
    /// Refused with [`StoreError::LeaseHeld`] while another holder's lease
    /// has not expired. An expired lease is reclaimed, and the `running`
    /// rows its holder left behind are closed as `aborted` (nobody else can
    /// be running them: every run holds the lease). Returns the reclaimed
    /// lease, if there was one. One `BEGIN IMMEDIATE` transaction, so two
    /// processes racing for a lease cannot both win.
    pub fn acquire_lease(
        &mut self,
        integration: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<LeaseRecord>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| busy(&self.path, e))?;
        let current = tx
            .prepare_cached(
                "SELECT integration, holder, acquired_at, renewed_at, expires_ms FROM run_leases WHERE integration = ?1",
            )?
            .query_row([integration], |row| {
                Ok(LeaseRecord {
                    integration: row.get(0)?,
                    holder: row.get(1)?,
                    acquired_at: row.get(2)?,
                    renewed_at: row.get(3)?,
                    expires_ms: row.get(4)?,
                })
            })
            .optional()?;
        let (now, now_ms) = now_and_ms();
        if let Some(lease) = &current
            && lease.expires_ms > now_ms
        {
            return Err(StoreError::LeaseHeld {
                integration: integration.to_owned(),
                holder: lease.holder.clone(),
                since: lease.acquired_at.clone(),
                expires: expiry_text(lease.expires_ms),
            });
        }
        tx.prepare_cached(
            "INSERT INTO run_leases (integration, holder, acquired_at, renewed_at, expires_ms)
             VALUES (?1, ?2, ?3, ?3, ?4)
             ON CONFLICT (integration) DO UPDATE SET holder = excluded.holder,
                 acquired_at = excluded.acquired_at, renewed_at = excluded.renewed_at,
                 expires_ms = excluded.expires_ms",
        )?
        .execute(params![
            integration,
            holder,
            now,
            now_ms.saturating_add(ttl_ms(ttl))
        ])?;
        let closed = tx
            .prepare_cached(
                "UPDATE sync_runs SET status = ?2, ended_at = ?3, error = ?4
                 WHERE integration = ?1 AND status = ?5",
            )?
            .execute(params![
                integration,
                RunStatus::Aborted.as_str(),
                now,
                ABANDONED,
                RunStatus::Running.as_str()
            ])?;
        tx.commit().map_err(|e| busy(&self.path, e))?;
        if let Some(lease) = &current {
            tracing::warn!(
                integration,
                previous_holder = %lease.holder,
                abandoned_runs = closed,
                "Reclaimed an expired run lease."
            );
        }
        Ok(current)
    }

    /// Extends `holder`'s lease to now + `ttl`. [`StoreError::LeaseLost`]
    /// if the lease is no longer `holder`'s (it expired and was reclaimed).
    pub fn renew_lease(
        &mut self,
        integration: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let (now, now_ms) = now_and_ms();
        let changed = self
            .conn
            .prepare_cached(
                "UPDATE run_leases SET renewed_at = ?3, expires_ms = ?4
                 WHERE integration = ?1 AND holder = ?2",
            )?
            .execute(params![
                integration,
                holder,
                now,
                now_ms.saturating_add(ttl_ms(ttl))
            ])
            .map_err(|e| busy(&self.path, e))?;
        if changed == 0 {
            return Err(StoreError::LeaseLost {
                integration: integration.to_owned(),
                holder: holder.to_owned(),
            });
        }
        Ok(())
    }

    /// Gives up `holder`'s lease (no-op if it is not theirs any more).
    pub fn release_lease(&mut self, integration: &str, holder: &str) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("DELETE FROM run_leases WHERE integration = ?1 AND holder = ?2")?
            .execute(params![integration, holder])
            .map_err(|e| busy(&self.path, e))?;
        Ok(())
    }
}
