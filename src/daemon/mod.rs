//! `sextant daemon`: runs every enabled stored integration on its schedule
//! and serves the HTTP API.
//!
//! `scheduler` turns the integrations table into tokio-cron-scheduler jobs
//! and re-reads it when it changes · `runner` (here) starts runs: each on its
//! own store connection and blocking thread, under the integration's run
//! lease · `api` the axum routes · `auth` tokens and scopes · `metrics`
//! Prometheus counters · `pool` store connections for API requests.
//!
//! Shutdown: stop scheduling and serving, let running syncs finish within
//! the grace period, then abort them (nothing of an aborted run is written;
//! it is recorded `aborted` and its lease released).

mod api;
pub mod auth;
mod metrics;
mod pool;
mod scheduler;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};

use crate::alerts::{AlertsConfig, Deliverer};
use crate::connection::MasterKey;
use crate::connection::service::{ServiceError, resolve_stored};
use crate::graph::Schema;
use crate::store::{Store, StoreError};
use crate::sync::{SyncError, holder_id, start_run};
pub use metrics::Metrics;
use pool::StorePool;

/// How the daemon runs.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// The data directory (master key file).
    pub home: PathBuf,
    /// The database.
    pub db_path: PathBuf,
    pub listen: SocketAddr,
    /// How long running syncs may take to finish after a shutdown signal.
    pub grace: Duration,
    /// At most this much random delay before each scheduled run.
    pub jitter: Duration,
    /// How often the integrations table is re-read (API changes apply at once).
    pub reload_every: Duration,
    /// Alert rules and sinks; delivery runs after every commit and at least
    /// every [`DELIVERY_EVERY`].
    pub alerts: AlertsConfig,
}

/// How often alert delivery runs when nothing commits (system events, a
/// sink that was down).
pub const DELIVERY_EVERY: Duration = Duration::from_secs(10);
/// The longest pause between delivery passes while a sink keeps failing.
pub const DELIVERY_BACKOFF_MAX: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot listen on {addr}: {source}; pick a free address with --listen")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the scheduler failed to start: {0}")]
    Scheduler(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a run could not be started.
#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    #[error("the daemon is shutting down; no new runs start")]
    ShuttingDown,
    #[error("no integration named {0:?}; list them with GET /api/v1/integrations")]
    Unknown(String),
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error(transparent)]
    Sync(#[from] SyncError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal error: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// State shared by the scheduler, the runner and the API.
pub struct Shared {
    pub options: DaemonOptions,
    schema: Arc<Schema>,
    /// This daemon's lease holder id.
    holder: String,
    pool: Arc<StorePool>,
    pub metrics: Metrics,
    /// Number of runs going; shutdown waits for 0.
    running: watch::Sender<usize>,
    /// Set on a shutdown signal: no new runs, long polls return.
    stopping: watch::Sender<bool>,
    /// Set when the grace period ends: running syncs abort.
    abort: watch::Sender<bool>,
    /// Integrations changed through the API: reschedule now.
    pub changed: Notify,
    /// A run of this process committed: wake event long-polls.
    pub committed: Notify,
}

impl Shared {
    fn new(options: DaemonOptions, schema: Arc<Schema>) -> Arc<Self> {
        Arc::new(Shared {
            pool: StorePool::new(options.db_path.clone()),
            options,
            schema,
            holder: holder_id("daemon"),
            metrics: Metrics::default(),
            running: watch::Sender::new(0),
            stopping: watch::Sender::new(false),
            abort: watch::Sender::new(false),
            changed: Notify::new(),
            committed: Notify::new(),
        })
    }

    pub fn is_stopping(&self) -> bool {
        *self.stopping.borrow()
    }

    pub fn master_key(&self) -> Result<MasterKey, ServiceError> {
        Ok(MasterKey::load(&self.options.home).map(|(key, _)| key)?)
    }

    /// Starts a run of `name` and returns its sync id once it holds the
    /// lease and its `running` row exists; the run goes on in the
    /// background. Refused while another run (here or in another process)
    /// holds the integration's lease.
    pub async fn trigger(
        self: &Arc<Self>,
        name: &str,
        cause: &'static str,
    ) -> Result<i64, TriggerError> {
        // Counted before the check, so a shutdown that starts in between
        // either is seen here or waits for this run.
        let counted = Counted::new(Arc::clone(self));
        if self.is_stopping() {
            return Err(TriggerError::ShuttingDown);
        }
        let this = Arc::clone(self);
        let owned = name.to_owned();
        let (store, started) = tokio::task::spawn_blocking(move || {
            let mut store = Store::open(this.pool.path())?;
            let (integration, connection) = resolve_stored(&store, || this.master_key(), &owned)?
                .ok_or_else(|| TriggerError::Unknown(owned.clone()))?;
            let started = start_run(&mut store, &integration, &connection, &this.holder)?;
            Ok::<_, TriggerError>((store, started))
        })
        .await??;
        let sync_id = started.sync_id;
        let source = started.source();
        self.metrics.started(name, source);
        tracing::info!(integration = name, sync_id, cause, "Run started.");

        let this = Arc::clone(self);
        let name = name.to_owned();
        let handle = tokio::runtime::Handle::current();
        // The run's SQL (a commit can take seconds) stays off the workers
        // that serve HTTP: the whole run is driven on a blocking thread.
        tokio::task::spawn_blocking(move || {
            let _counted = counted;
            let mut store = store;
            let clock = Instant::now();
            let mut abort = this.abort.subscribe();
            let grace = this.options.grace;
            let result = handle.block_on(started.run(
                &mut store,
                Arc::clone(&this.schema),
                None,
                async move {
                    let _ = abort.wait_for(|a| *a).await;
                    format!(
                        "the daemon shut down and the run did not finish within the {}s grace period",
                        grace.as_secs()
                    )
                },
            ));
            this.metrics.finished(&name, &result, clock.elapsed());
            match &result {
                Ok(report) => tracing::info!(
                    integration = %name,
                    sync_id,
                    status = report.status.as_str(),
                    "Run finished."
                ),
                Err(error) => {
                    tracing::warn!(integration = %name, sync_id, %error, "Run did not finish.")
                }
            }
            this.committed.notify_waiters();
        });
        Ok(sync_id)
    }

    /// Waits until no run is going.
    async fn idle(&self) {
        let mut rx = self.running.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }
}

/// One run in progress, from before its lease is taken until it ends.
struct Counted(Arc<Shared>);

impl Counted {
    fn new(shared: Arc<Shared>) -> Self {
        shared.running.send_modify(|n| *n += 1);
        Counted(shared)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.running.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// Runs the daemon until `shutdown` completes, then shuts down gracefully.
/// `listening` is told the bound address once the API accepts connections.
pub async fn run(
    options: DaemonOptions,
    schema: Arc<Schema>,
    shutdown: impl Future<Output = ()>,
    listening: impl FnOnce(SocketAddr),
) -> Result<(), DaemonError> {
    // Creates or migrates the database before anything else uses it.
    drop(Store::open(&options.db_path)?);

    // Config-declared connections and integrations were provisioned into
    // the store by the caller (`cli::daemon`), so the scheduler sees one list.

    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|source| DaemonError::Bind {
            addr: options.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| DaemonError::Bind {
        addr: options.listen,
        source,
    })?;
    let shared = Shared::new(options, schema);

    let mut scheduler = scheduler::Scheduler::start(Arc::clone(&shared))
        .await
        .map_err(|e| DaemonError::Scheduler(e.to_string()))?;

    let (stop_delivery, delivery_stopping) = watch::channel(false);
    // Delivery's SQL (and file syncs) stay off the workers that serve HTTP,
    // like runs: the loop is driven on a blocking thread.
    let handle = tokio::runtime::Handle::current();
    let delivering = Arc::clone(&shared);
    let delivery = tokio::task::spawn_blocking(move || {
        handle.block_on(deliver_alerts(delivering, delivery_stopping));
    });

    let mut stop_http = shared.stopping.subscribe();
    let server = axum::serve(listener, api::router(Arc::clone(&shared))).with_graceful_shutdown(
        async move {
            let _ = stop_http.wait_for(|s| *s).await;
        },
    );
    let server = tokio::spawn(async move {
        if let Err(error) = server.await {
            tracing::error!(%error, "The HTTP server stopped with an error.");
        }
    });
    tracing::info!(%addr, "The daemon is listening.");
    listening(addr);

    let reload = shared.options.reload_every;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            () = shared.changed.notified() => scheduler.reconcile().await,
            () = tokio::time::sleep(reload) => scheduler.reconcile().await,
        }
    }

    tracing::info!("Shutting down: no new runs; waiting for running syncs.");
    shared.stopping.send_replace(true);
    scheduler.shutdown().await;
    let grace = shared.options.grace;
    if tokio::time::timeout(grace, shared.idle()).await.is_err() {
        tracing::warn!(
            grace_s = grace.as_secs(),
            "Grace period over; aborting running syncs."
        );
        shared.abort.send_replace(true);
        shared.idle().await;
    }
    let _ = server.await;
    // Every run has ended: a last pass for what they committed, then stop.
    stop_delivery.send_replace(true);
    let _ = delivery.await;
    tracing::info!("The daemon stopped.");
    Ok(())
}

/// Continuous alert delivery: a pass after each commit of this daemon and
/// every [`DELIVERY_EVERY`]; while a sink keeps failing, passes back off
/// (doubling, up to [`DELIVERY_BACKOFF_MAX`]) so a receiver that is down is
/// not hammered. Stops after one last pass once `stopping` turns true.
async fn deliver_alerts(shared: Arc<Shared>, mut stopping: watch::Receiver<bool>) {
    if shared.options.alerts.sinks.is_empty() {
        return;
    }
    let mut store = match Store::open(&shared.options.db_path) {
        Ok(store) => store,
        Err(error) => {
            tracing::error!(%error, "Alert delivery cannot open the database; no alerts will be sent.");
            return;
        }
    };
    let deliverer = Deliverer::default();
    let mut pause = DELIVERY_EVERY;
    loop {
        let stop = *stopping.borrow();
        // Registered before the pass, so a commit during it is not missed.
        let committed = shared.committed.notified();
        tokio::pin!(committed);
        committed.as_mut().enable();
        // The deliverer logs each sink's outcome; here only the pace changes.
        let failed = match deliverer
            .deliver_pending(&mut store, &shared.options.alerts)
            .await
        {
            Ok(report) => report.failed().next().is_some(),
            Err(error) => {
                tracing::warn!(%error, "Alert delivery failed; retrying.");
                true
            }
        };
        pause = if failed {
            (pause * 2).min(DELIVERY_BACKOFF_MAX)
        } else {
            DELIVERY_EVERY
        };
        if stop {
            break;
        }
        tokio::select! {
            _ = stopping.wait_for(|s| *s) => {}
            // A commit brings new events; a failing sink waits its pause.
            () = &mut committed, if !failed => {}
            () = tokio::time::sleep(pause) => {}
        }
    }
}
