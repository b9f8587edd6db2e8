//! The schedule: one tokio-cron-scheduler job per enabled stored
//! integration — a repeated job for an interval such as `1h`, a cron job for
//! `cron:<expr>` — each firing after a random jitter. The integrations table
//! is re-read periodically and after API changes, and jobs are added,
//! replaced or removed to match, so changes apply without a restart.
//!
//! Runs missed while the daemon was down are not replayed: jobs live in
//! memory and count from now. An interval integration whose last run is
//! older than its interval (or that never ran) gets one catch-up run.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio_cron_scheduler::{Job, JobScheduler, JobSchedulerError};
use uuid::Uuid;

use super::{Shared, TriggerError};
use crate::config::Interval;
use crate::store::StoreError;

/// What decides when an integration runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    Every(Duration),
    /// A six- or seven-field expression (seconds first).
    Cron(String),
}

impl Schedule {
    /// The schedule of a stored interval; `None` when disabled.
    pub fn from_interval(text: &str) -> Result<Option<Schedule>, String> {
        Ok(match Interval::parse(text)? {
            Interval::Disabled => None,
            Interval::Every(d) => Some(Schedule::Every(d)),
            Interval::Cron(expr) => Some(Schedule::Cron(crate::config::cron_with_seconds(&expr))),
        })
    }
}

/// Whether an interval integration last started at `last` (stored time)
/// is due at `now`: never ran, or ran at least `every` ago.
pub fn due_for_catch_up(last: Option<&str>, every: Duration, now: OffsetDateTime) -> bool {
    let Some(last) = last else { return true };
    match OffsetDateTime::parse(last, &Rfc3339) {
        Ok(last) => (now - last) >= every,
        Err(_) => true,
    }
}

struct Scheduled {
    schedule: Schedule,
    job: Uuid,
}

pub struct Scheduler {
    sched: JobScheduler,
    shared: Arc<Shared>,
    jobs: BTreeMap<String, Scheduled>,
}

impl Scheduler {
    pub async fn start(shared: Arc<Shared>) -> Result<Self, JobSchedulerError> {
        let sched = JobScheduler::new().await?;
        sched.start().await?;
        let mut scheduler = Scheduler {
            sched,
            shared,
            jobs: BTreeMap::new(),
        };
        scheduler.reconcile().await;
        Ok(scheduler)
    }

    /// Re-reads the integrations and makes the jobs match.
    pub async fn reconcile(&mut self) {
        if self.shared.is_stopping() {
            return;
        }
        let rows = self
            .shared
            .pool
            .with(|store| {
                let disabled: BTreeSet<String> = store
                    .connections()?
                    .into_iter()
                    .filter(|c| c.disabled)
                    .map(|c| c.key)
                    .collect();
                let mut rows = Vec::new();
                for row in store.integrations()? {
                    // A run on a disabled connection is refused at once:
                    // scheduling it would only fail each firing.
                    if row
                        .connection_key
                        .as_ref()
                        .is_some_and(|key| disabled.contains(key))
                    {
                        continue;
                    }
                    let last = store
                        .runs(Some(&row.name), 1)?
                        .into_iter()
                        .next()
                        .map(|r| r.started_at);
                    rows.push((row, last));
                }
                Ok::<_, TriggerError>(rows)
            })
            .await;
        let rows = match rows {
            Ok(rows) => rows,
            Err(error) => {
                tracing::warn!(%error, "Could not read the integrations; keeping the current schedule.");
                return;
            }
        };
        let mut desired = BTreeMap::new();
        let mut last_runs = BTreeMap::new();
        for (row, last) in rows {
            if !row.enabled || row.connection_key.is_none() {
                continue;
            }
            match Schedule::from_interval(&row.interval) {
                Ok(Some(schedule)) => {
                    desired.insert(row.name.clone(), schedule);
                    last_runs.insert(row.name, last);
                }
                Ok(None) => {}
                Err(message) => tracing::warn!(
                    integration = %row.name,
                    message,
                    "Not scheduled: the interval is not valid; fix it with sextant integration update --interval."
                ),
            }
        }
        let stale: Vec<String> = self
            .jobs
            .iter()
            .filter(|(name, job)| desired.get(*name) != Some(&job.schedule))
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            let Some(job) = self.jobs.get(&name) else {
                continue;
            };
            // A job that could not be removed stays known (and is tried
            // again at the next reload) rather than being scheduled twice.
            match self.sched.remove(&job.job).await {
                Ok(()) => {
                    self.jobs.remove(&name);
                    tracing::info!(integration = %name, "Unscheduled.");
                }
                Err(error) => {
                    tracing::warn!(integration = %name, %error, "Could not unschedule; trying again at the next reload.")
                }
            }
        }
        for (name, schedule) in desired {
            if self.jobs.contains_key(&name) {
                continue;
            }
            let job = match self.job(&name, &schedule) {
                Ok(job) => job,
                Err(error) => {
                    tracing::warn!(
                        integration = %name,
                        %error,
                        "Not scheduled: the cron expression is not valid; fix it with sextant integration update --interval."
                    );
                    continue;
                }
            };
            match self.sched.add(job).await {
                Ok(id) => {
                    tracing::info!(integration = %name, schedule = ?schedule, "Scheduled.");
                    if let Schedule::Every(every) = &schedule {
                        let last = last_runs.get(&name).cloned().flatten();
                        if due_for_catch_up(last.as_deref(), *every, OffsetDateTime::now_utc()) {
                            fire(Arc::clone(&self.shared), name.clone(), "catch-up");
                        }
                    }
                    self.jobs.insert(name, Scheduled { schedule, job: id });
                }
                Err(error) => tracing::warn!(integration = %name, %error, "Could not schedule."),
            }
        }
    }

    fn job(&self, name: &str, schedule: &Schedule) -> Result<Job, JobSchedulerError> {
        let shared = Arc::clone(&self.shared);
        let name = name.to_owned();
        let callback = move |_id, _sched| {
            fire(Arc::clone(&shared), name.clone(), "schedule");
            Box::pin(async {}) as std::pin::Pin<Box<dyn Future<Output = ()> + Send>>
        };
        match schedule {
            Schedule::Every(every) => Job::new_repeated_async(*every, callback),
            Schedule::Cron(expr) => Job::new_async(expr.as_str(), callback),
        }
    }

    /// Stops firing jobs.
    pub async fn shutdown(&mut self) {
        if let Err(error) = self.sched.shutdown().await {
            tracing::warn!(%error, "The scheduler did not stop cleanly.");
        }
    }
}

/// A random delay in `0..=max`.
fn jitter(max: Duration) -> Duration {
    let max_ms = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
    if max_ms == 0 {
        return Duration::ZERO;
    }
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        return Duration::ZERO;
    }
    Duration::from_millis(u64::from_le_bytes(bytes) % (max_ms + 1))
}

/// Starts a scheduled run after a jitter, in the background.
fn fire(shared: Arc<Shared>, name: String, cause: &'static str) {
    tokio::spawn(async move {
        tokio::time::sleep(jitter(shared.options.jitter)).await;
        if shared.is_stopping() {
            return;
        }
        match shared.trigger(&name, cause).await {
            Ok(_) => {}
            Err(TriggerError::Sync(crate::sync::SyncError::Store(
                e @ StoreError::LeaseHeld { .. },
            ))) => {
                tracing::info!(integration = %name, reason = %e, "Scheduled run skipped.");
            }
            Err(TriggerError::ShuttingDown) => {}
            Err(error) => {
                tracing::warn!(integration = %name, %error, "Scheduled run could not start.")
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_field_cron_runs_at_second_zero() {
        assert_eq!(
            crate::config::cron_with_seconds("0 */4 * * *"),
            "0 0 */4 * * *"
        );
        assert_eq!(
            crate::config::cron_with_seconds("*/2 * * * * *"),
            "*/2 * * * * *"
        );
        assert_eq!(Schedule::from_interval("DISABLED").expect("valid"), None);
        assert_eq!(
            Schedule::from_interval("1h").expect("valid"),
            Some(Schedule::Every(Duration::from_secs(3600)))
        );
    }

    #[test]
    fn one_catch_up_run_only_when_the_last_is_older_than_the_interval() {
        let now = OffsetDateTime::parse("2026-01-02T12:00:00.000Z", &Rfc3339).expect("time");
        let hour = Duration::from_secs(3600);
        assert!(due_for_catch_up(None, hour, now));
        assert!(due_for_catch_up(
            Some("2026-01-02T10:00:00.000Z"),
            hour,
            now
        ));
        assert!(!due_for_catch_up(
            Some("2026-01-02T11:30:00.000Z"),
            hour,
            now
        ));
    }

    #[test]
    fn jitter_stays_within_its_bound() {
        assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
        for _ in 0..100 {
            assert!(jitter(Duration::from_millis(50)) <= Duration::from_millis(50));
        }
    }
}
