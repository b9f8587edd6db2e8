//! One sync run of one integration: resolve the connection, collect through
//! the source's steps, then diff and commit in one store transaction.

use std::sync::Arc;
use std::time::Instant;

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

/// Runs one sync: collect, then commit graph changes and events atomically.
pub async fn run_sync(
    store: &mut Store,
    schema: Arc<Schema>,
    integration: &IntegrationConfig,
    connection: &ResolvedConnection,
    progress: Option<&Progress>,
) -> Result<SyncReport, SyncError> {
    if !integration.enabled {
        return Err(SyncError::Disabled(integration.name.clone()));
    }
    // Conditional requests: the integration's ETag cache, kept between runs.
    let cache = load_response_cache(store, &integration.name);
    let mut connection = connection.clone();
    connection.http.response_cache = Some(cache.clone());
    let source = SourceKind::new(integration, &connection)?;
    let started_at = now_rfc3339();
    let clock = Instant::now();
    let sync_id = store.begin_run(&integration.name)?;
    tracing::info!(integration = %integration.name, sync_id, source = source.name(), "Sync started.");

    let state = RunState::new(schema.clone());
    let steps = source.collect(&state, progress).await;
    let collected = state.into_graph();
    let complete = complete_types(&schema, &steps);
    let status = run_status(&steps);
    let changes = match store.commit_run(
        sync_id,
        &integration.name,
        &collected,
        &complete,
        &steps,
        status,
    ) {
        Ok(changes) => changes,
        Err(e) => {
            // Nothing of the run landed; record why, if the store still can.
            let _ = store.finish_run(sync_id, RunStatus::Failed, &steps, Some(&e.to_string()));
            return Err(e.into());
        }
    };
    save_response_cache(store, &integration.name, &cache);
    tracing::info!(
        integration = %integration.name,
        sync_id,
        status = status.as_str(),
        created = changes.created,
        updated = changes.updated,
        deleted = changes.deleted,
        "Sync finished."
    );
    Ok(SyncReport {
        sync_id,
        integration: integration.name.clone(),
        status,
        started_at,
        ended_at: now_rfc3339(),
        duration_ms: u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX),
        requests: steps.iter().map(|s| s.requests).sum(),
        entities: collected.entity_count() as u64,
        relationships: collected.relationship_count() as u64,
        created: changes.created,
        updated: changes.updated,
        deleted: changes.deleted,
        steps,
    })
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
