//! `sextant daemon [--listen ADDR]`: the scheduler and the HTTP API until
//! SIGTERM or SIGINT. Prints `listening on http://ADDR` as its first line.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;

use super::Context;
use crate::daemon::{self, DaemonOptions};

#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Address the HTTP API listens on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    pub listen: SocketAddr,
    /// How long running syncs may take to finish after SIGTERM or SIGINT
    /// before they are aborted (rolled back, recorded as aborted).
    #[arg(long, default_value = "30s", value_parser = super::duration_arg, value_name = "DURATION")]
    pub grace: Duration,
    /// At most this much random delay before each scheduled run, so that
    /// integrations on the same schedule do not all start at once.
    #[arg(long, default_value = "30s", value_parser = super::duration_arg, value_name = "DURATION")]
    pub jitter: Duration,
    /// How often the stored integrations are re-read for schedule changes
    /// made outside the API (changes through the API apply at once).
    #[arg(long, default_value = "30s", value_parser = super::duration_arg, value_name = "DURATION")]
    pub reload_every: Duration,
}

pub fn run(cx: &Context, args: DaemonArgs) -> anyhow::Result<i32> {
    // The config's connections and integrations go into the store first, so
    // the scheduler and the API see one list. (This also creates the data
    // directory and migrates the database.)
    let config = cx.config()?;
    let (mut store, _) = cx.provisioned_store(&config)?;
    // A sink new to the store starts before the daemon's first run; rules
    // naming an unknown integration are reported.
    crate::alerts::prepare(&mut store, &config.alerts)?;
    drop(store);
    let options = DaemonOptions {
        home: cx.home.clone(),
        db_path: cx.db_path(),
        listen: args.listen,
        grace: args.grace,
        jitter: args.jitter,
        reload_every: args.reload_every.max(Duration::from_secs(1)),
        alerts: config.alerts,
    };
    let schema = super::schema()?;
    super::runtime()?.block_on(daemon::run(options, schema, signal(), |addr| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on http://{addr}");
        let _ = out.flush();
    }))?;
    Ok(0)
}

/// Completes on SIGTERM or SIGINT.
async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
