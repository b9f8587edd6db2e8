//! Load test of the daemon's read endpoints while syncs run: an in-process
//! daemon on 127.0.0.1:0 against the bundled fixture server, one task
//! syncing the integration back to back through the API, and `CLIENTS`
//! concurrent clients reading connections, integrations, runs, events and
//! the graph for `SECONDS`. Prints requests/s and latency percentiles.
//!
//! `cargo bench --bench api` (env BENCH_CLIENTS, BENCH_SECONDS override).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sextant::connection::MasterKey;
use sextant::connection::service::{self, HttpOverrides, IntegrationInput, NewConnection};
use sextant::daemon::auth::{NewToken, create_token};
use sextant::daemon::{self, DaemonOptions};
use sextant::fixtures::{FIXTURE_TOKEN, FixtureServer, FixtureSet};
use sextant::graph::Schema;
use sextant::store::Store;

const ENDPOINTS: &[&str] = &[
    "/api/v1/connection",
    "/api/v1/integrations",
    "/api/v1/runs?limit=20",
    "/api/v1/events?since=0&limit=100",
    "/api/v1/graph?integration=acme",
];

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let clients = env_or("BENCH_CLIENTS", 8) as usize;
    let seconds = env_or("BENCH_SECONDS", 10);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(bench(clients, Duration::from_secs(seconds)))
}

async fn bench(clients: usize, length: Duration) -> Result<(), Box<dyn std::error::Error>> {
    let server = FixtureServer::start(FixtureSet::Day1).await?;
    let home = tempfile::tempdir()?;
    let db = home.path().join("sextant.db");
    let (master, _) = MasterKey::load(home.path())?;
    let token = {
        let mut store = Store::open(&db)?;
        service::add_connection(
            &mut store,
            &master,
            NewConnection {
                name: "ci".into(),
                key: None,
                ty: "circleci".into(),
                description: None,
                secrets_json:
                    serde_json::json!({"api_token": FIXTURE_TOKEN, "host": server.base_url()})
                        .to_string(),
                // The fixture server is local: let syncs run back to back.
                http: HttpOverrides {
                    requests_per_second: Some(1000),
                    timeout: None,
                },
                disabled: false,
            },
            false,
        )
        .await?;
        service::add_integration(
            &mut store,
            "acme",
            IntegrationInput {
                connection: Some("ci".into()),
                interval: Some("DISABLED".into()),
                ..IntegrationInput::default()
            },
        )?;
        let scopes = [
            "connections:read",
            "integrations:read",
            "events:read",
            "graph:read",
            "sync:run",
        ];
        create_token(
            &mut store,
            NewToken {
                name: "bot-bench".into(),
                username: "bench".into(),
                token_type: "service".into(),
                scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
                expires: None,
            },
        )?
        .token
    };

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    let options = DaemonOptions {
        home: home.path().to_owned(),
        db_path: db.clone(),
        listen: "127.0.0.1:0".parse()?,
        grace: Duration::from_secs(30),
        jitter: Duration::ZERO,
        reload_every: Duration::from_secs(30),
        alerts: Default::default(),
    };
    let schema = Arc::new(Schema::embedded()?);
    let daemon = tokio::spawn(daemon::run(
        options,
        schema,
        async move {
            let _ = stop_rx.await;
        },
        move |addr| {
            let _ = addr_tx.send(addr);
        },
    ));
    let base = format!("http://{}", addr_rx.await?);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients * 2)
        .build()?;

    // Syncs back to back for the whole run.
    let done = Arc::new(AtomicBool::new(false));
    let syncer = {
        let (http, base, token, done) = (http.clone(), base.clone(), token.clone(), done.clone());
        tokio::spawn(async move {
            let mut syncs = 0u64;
            while !done.load(Ordering::Relaxed) {
                let started = http
                    .post(format!("{base}/api/v1/integrations/acme/sync"))
                    .bearer_auth(&token)
                    .send()
                    .await;
                match started {
                    Ok(r) if r.status().as_u16() == 202 => syncs += 1,
                    _ => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
            syncs
        })
    };

    let deadline = Instant::now() + length;
    let mut readers = Vec::new();
    for client in 0..clients {
        let (http, base, token) = (http.clone(), base.clone(), token.clone());
        readers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            let mut i = client;
            while Instant::now() < deadline {
                let path = ENDPOINTS[i % ENDPOINTS.len()];
                i += 1;
                let t = Instant::now();
                let ok = match http
                    .get(format!("{base}{path}"))
                    .bearer_auth(&token)
                    .send()
                    .await
                {
                    Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                if ok {
                    latencies.push(t.elapsed());
                } else {
                    errors += 1;
                }
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for r in readers {
        let (l, e) = r.await?;
        latencies.extend(l);
        errors += e;
    }
    tokio::time::sleep_until(deadline.into()).await;
    done.store(true, Ordering::Relaxed);
    let syncs = syncer.await?;
    let _ = stop_tx.send(());
    daemon.await??;

    latencies.sort();
    let total = latencies.len();
    let secs = length.as_secs_f64();
    let runs = Store::open(&db)?.runs(Some("acme"), 100_000)?;
    println!(
        "api read load: {clients} clients for {secs:.0}s while syncing: {total} requests ({:.0} req/s), {errors} errors",
        total as f64 / secs
    );
    println!(
        "latency p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.90).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
    let parse = |t: &str| {
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
    };
    let durations: Vec<f64> = runs
        .iter()
        .filter_map(|r| {
            Some((parse(r.ended_at.as_deref()?)? - parse(&r.started_at)?).as_seconds_f64())
        })
        .collect();
    println!(
        "syncs started {syncs}, recorded {} ({} success), mean sync {:.2} s",
        runs.len(),
        runs.iter()
            .filter(|r| r.status.as_str() == "success")
            .count(),
        durations.iter().sum::<f64>() / durations.len().max(1) as f64
    );
    Ok(())
}
