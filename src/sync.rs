//! One sync run of one integration: resolve the connection, collect through
//! the source's steps, then diff and commit in one store transaction.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::config::IntegrationConfig;
use crate::graph::Schema;
use crate::run::{RunStatus, StepOutcome, complete_types, run_status};
use crate::source::dag::{Progress, RunState};
use crate::source::http::{CachedResponse, ResponseCache};
use crate::source::{ResolvedConnection, SourceError, SourceKind};
use crate::store::{HttpCacheRow, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("no integration named {0:?}; list them with: sextant integration list")]
    UnknownIntegration(String),
    #[error("integration {0:?} is disabled; enable it before syncing")]
    Disabled(String),
    #[error("sync {sync_id} of {integration:?} aborted: {reason}; nothing of it was written")]
    Aborted {
        integration: String,
        sync_id: i64,
        reason: String,
    },
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What `sextant sync --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct SyncReport {
    pub sync_id: i64,
    pub integration: String,
    pub status: RunStatus,
    pub started_at: String,
    pub ended_at: String,
    pub duration_ms: u64,
    pub requests: u64,
    pub entities: u64,
    pub relationships: u64,
    pub created: u64,
    pub updated: u64,
    pub deleted: u64,
    pub steps: Vec<StepOutcome>,
}

pub fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// How long a run's lease lasts without renewal. Longer than the slowest
/// commit (the lease is renewed just before it, and the commit's write lock
/// keeps any reclaimer waiting until it ends).
pub const LEASE_TTL: Duration = Duration::from_secs(120);
/// How often a run renews its lease while it collects.
pub const LEASE_RENEW: Duration = Duration::from_secs(20);

/// A process-unique lease holder id, `KIND:pidPID:RANDOM`.
pub fn holder_id(kind: &str) -> String {
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!(
        "{kind}:pid{}:{}",
        std::process::id(),
        random.get(..8).unwrap_or(&random)
    )
}

/// A run that holds its integration's lease and has a `running` row; drive
/// it to the end with [`StartedRun::run`].
pub struct StartedRun {
    pub sync_id: i64,
    pub integration: String,
    holder: String,
    source: SourceKind,
    /// The integration's ETag cache, shared with the source's HTTP client.
    cache: ResponseCache,
    started_at: String,
    clock: Instant,
}

/// Checks the integration, builds its source, takes its lease and records
/// the run as `running`. Fails with [`StoreError::LeaseHeld`] (wrapped) while
/// another process runs the same integration.
pub fn start_run(
    store: &mut Store,
    integration: &IntegrationConfig,
    connection: &ResolvedConnection,
    holder: &str,
) -> Result<StartedRun, SyncError> {
    if !integration.enabled {
        return Err(SyncError::Disabled(integration.name.clone()));
    }
    store.acquire_lease(&integration.name, holder, LEASE_TTL)?;
    // Conditional requests: the integration's ETag cache, kept between runs
    // (read under the lease, so a refused run reads nothing).
    let cache = load_response_cache(store, &integration.name);
    let mut connection = connection.clone();
    connection.http.response_cache = Some(cache.clone());
    let started_at = now_rfc3339();
    let begun = SourceKind::new(integration, &connection)
        .map_err(SyncError::from)
        .and_then(|source| Ok((source, store.begin_run(&integration.name)?)));
    let (source, sync_id) = match begun {
        Ok(begun) => begun,
        Err(e) => {
            release(store, &integration.name, holder);
            return Err(e);
        }
    };
    tracing::info!(integration = %integration.name, sync_id, holder, source = source.name(), "Sync started.");
    Ok(StartedRun {
        sync_id,
        integration: integration.name.clone(),
        holder: holder.to_owned(),
        source,
        cache,
        started_at,
        clock: Instant::now(),
    })
}

impl StartedRun {
    /// The source's name (`circleci`).
    pub fn source(&self) -> &'static str {
        self.source.name()
    }
}

/// Runs one sync: take the lease, collect, then commit graph changes and
/// events atomically, then release the lease.
pub async fn run_sync(
    store: &mut Store,
    schema: Arc<Schema>,
    integration: &IntegrationConfig,
    connection: &ResolvedConnection,
    progress: Option<&Progress>,
) -> Result<SyncReport, SyncError> {
    let run = start_run(store, integration, connection, &holder_id("sync"))?;
    run.run(store, schema, progress, std::future::pending())
        .await
}

enum Collection {
    Done(Vec<StepOutcome>),
    Aborted(String),
    LeaseLost(StoreError),
}

impl StartedRun {
    /// Collects (renewing the lease), commits, and releases the lease. When
    /// `abort` completes first, collection is dropped, nothing of the graph
    /// is written, the run is recorded `aborted` with the reason `abort`
    /// gave, and the lease is released. The commit itself is never
    /// interrupted: it is synchronous and atomic.
    pub async fn run(
        self,
        store: &mut Store,
        schema: Arc<Schema>,
        progress: Option<&Progress>,
        abort: impl Future<Output = String>,
    ) -> Result<SyncReport, SyncError> {
        let name = self.integration.clone();
        let sync_id = self.sync_id;
        let state = RunState::new(schema.clone());
        let outcome = {
            let collect = self.source.collect(&state, progress);
            tokio::pin!(collect);
            tokio::pin!(abort);
            let start = tokio::time::Instant::now() + LEASE_RENEW;
            let mut renew = tokio::time::interval_at(start, LEASE_RENEW);
            loop {
                tokio::select! {
                    steps = &mut collect => break Collection::Done(steps),
                    reason = &mut abort => break Collection::Aborted(reason),
                    _ = renew.tick() => match store.renew_lease(&name, &self.holder, LEASE_TTL) {
                        Ok(()) => {}
                        Err(e @ StoreError::LeaseLost { .. }) => break Collection::LeaseLost(e),
                        // Busy: another writer holds the database; the lease
                        // has time left, try again at the next tick.
                        Err(e) => tracing::warn!(integration = %name, sync_id, error = %e, "Could not renew the run lease."),
                    },
                }
            }
        };
        let steps = match outcome {
            Collection::Done(steps) => steps,
            Collection::Aborted(reason) => {
                let _ = store.finish_run(sync_id, RunStatus::Aborted, &[], Some(&reason));
                release(store, &name, &self.holder);
                tracing::warn!(integration = %name, sync_id, reason, "Sync aborted.");
                return Err(SyncError::Aborted {
                    integration: name,
                    sync_id,
                    reason,
                });
            }
            Collection::LeaseLost(e) => {
                let _ = store.finish_run(sync_id, RunStatus::Aborted, &[], Some(&e.to_string()));
                return Err(e.into());
            }
        };
        // Renew right before committing; a lost lease means another run
        // owns the integration now, and this one must not write.
        match store.renew_lease(&name, &self.holder, LEASE_TTL) {
            Ok(()) => {}
            Err(e @ StoreError::LeaseLost { .. }) => {
                let _ = store.finish_run(sync_id, RunStatus::Aborted, &steps, Some(&e.to_string()));
                return Err(e.into());
            }
            // Busy: the lease still has time left; the commit's own
            // check_running guards against a reclaim meanwhile.
            Err(e) => {
                tracing::warn!(integration = %name, sync_id, error = %e, "Could not renew the run lease before committing.")
            }
        }
        let collected = state.into_graph();
        let complete = complete_types(&schema, &steps);
        let status = run_status(&steps);
        let committed = store.commit_run(sync_id, &name, &collected, &complete, &steps, status);
        if let Err(e) = &committed {
            // Nothing of the run landed; record why, if the store still can.
            let _ = store.finish_run(sync_id, RunStatus::Failed, &steps, Some(&e.to_string()));
        }
        if committed.is_ok() {
            save_response_cache(store, &name, &self.cache);
        }
        release(store, &name, &self.holder);
        let changes = committed?;
        tracing::info!(
            integration = %name,
            sync_id,
            status = status.as_str(),
            created = changes.created,
            updated = changes.updated,
            deleted = changes.deleted,
            "Sync finished."
        );
        Ok(SyncReport {
            sync_id,
            integration: name,
            status,
            started_at: self.started_at,
            ended_at: now_rfc3339(),
            duration_ms: u64::try_from(self.clock.elapsed().as_millis()).unwrap_or(u64::MAX),
            requests: steps.iter().map(|s| s.requests).sum(),
            entities: collected.entity_count() as u64,
            relationships: collected.relationship_count() as u64,
            created: changes.created,
            updated: changes.updated,
            deleted: changes.deleted,
            steps,
        })
    }
}

/// Releases a run lease. A failure is logged, not returned: the run's own
/// outcome matters more, and the lease expires by itself.
fn release(store: &mut Store, integration: &str, holder: &str) {
    if let Err(error) = store.release_lease(integration, holder) {
        tracing::warn!(integration, %error, expires_in_s = LEASE_TTL.as_secs(), "Could not release the run lease; it expires by itself.");
    }
}

/// The integration's stored ETag cache. A cache that cannot be read costs
/// full requests, never the run: it is logged and replaced by an empty one.
fn load_response_cache(store: &Store, integration: &str) -> ResponseCache {
    match store.load_http_cache(integration) {
        Ok(rows) => ResponseCache::from_entries(rows.into_iter().map(|row| {
            let entry = CachedResponse {
                etag: row.etag,
                link: row.link,
                body: row.body,
            };
            (row.url, entry)
        })),
        Err(e) => {
            tracing::warn!(integration, error = %e, "The HTTP cache could not be read; requesting everything in full.");
            ResponseCache::new()
        }
    }
}

/// Saves what the run's requests kept (after the graph commit, in its own
/// transaction: the cache only ever saves requests, it holds no graph state).
fn save_response_cache(store: &mut Store, integration: &str, cache: &ResponseCache) {
    if !cache.needs_saving() {
        return;
    }
    let rows: Vec<HttpCacheRow> = cache
        .entries_to_keep()
        .into_iter()
        .map(|(url, entry)| HttpCacheRow {
            url,
            etag: entry.etag,
            link: entry.link,
            body: entry.body,
        })
        .collect();
    if let Err(e) = store.save_http_cache(integration, &rows) {
        tracing::warn!(integration, error = %e, "The HTTP cache could not be saved; the next run requests everything in full.");
    }
}
