//! `sextant sync NAME [--json]`: one integration, once, with progress on a terminal.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};

use clap::Args;

use super::Context;
use crate::alerts::Deliverer;
use crate::run::{StepOutcome, StepStatus};
use crate::source::dag::{Progress, ProgressEvent};
use crate::sync::{SyncError, SyncReport, holder_id, start_run};

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Name of the integration to sync.
    pub name: String,
    /// Print the run as one JSON object instead of a summary.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cx: &Context, args: SyncArgs) -> anyhow::Result<i32> {
    // What the config file declares is stored first, so there is one list.
    let config = cx.config()?;
    let (mut store, _) = cx.provisioned_store(&config)?;
    let (integration, connection) =
        crate::connection::service::resolve_stored(&store, || Ok(cx.master_key()?), &args.name)?
            .ok_or_else(|| SyncError::UnknownIntegration(args.name.clone()))?;
    // A sink new to the store starts before this run, not after it; rules
    // naming an unknown integration are reported.
    crate::alerts::prepare(&mut store, &config.alerts)?;
    let schema = super::schema()?;
    let progress = std::io::stderr().is_terminal().then(terminal_progress);
    // Under the integration's run lease; Ctrl-C aborts cleanly (nothing
    // written, run recorded aborted, lease released) instead of leaving the
    // lease to expire.
    let started = start_run(&mut store, &integration, &connection, &holder_id("sync"))?;
    let interrupted = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
        "interrupted (Ctrl-C)".to_owned()
    };
    let runtime = super::runtime()?;
    let report =
        runtime.block_on(started.run(&mut store, schema, progress.as_ref(), interrupted))?;
    if !args.json {
        print_summary(&mut std::io::stdout(), &report)?;
    }
    // Alerts of this run (and any backlog) go out at the end of the run.
    // A sink that fails keeps its alerts for the next run; the run's exit
    // code is the sync's.
    let delivery = if config.alerts.sinks.is_empty() {
        None
    } else {
        // With --json, stdout holds one object: stdout sinks print to stderr.
        let out: Box<dyn Write + Send> = if args.json {
            Box::new(std::io::stderr())
        } else {
            Box::new(std::io::stdout())
        };
        // The failures are printed below, once; not logged as warnings too.
        let deliverer = Deliverer::new(Arc::new(Mutex::new(out))).caller_reports_failures();
        match runtime.block_on(deliverer.deliver_pending(&mut store, &config.alerts)) {
            Ok(delivery) => {
                for failed in delivery.failed() {
                    eprintln!(
                        "warning: {}; its alerts stay queued for the next delivery",
                        failed.error.as_deref().unwrap_or("failed")
                    );
                }
                if !args.json && delivery.delivered() > 0 {
                    println!("alerts: {} delivered", delivery.delivered());
                }
                Some(delivery)
            }
            // The run is committed: a delivery that could not even start
            // (a locked or damaged alert state) is a warning, not the
            // sync's failure; the alerts wait for the next delivery.
            Err(e) => {
                eprintln!(
                    "warning: alert delivery failed: {e}; the alerts stay queued for the next delivery"
                );
                None
            }
        }
    };
    if args.json {
        let mut doc = serde_json::to_value(&report)?;
        if let (Some(delivery), Some(object)) = (delivery, doc.as_object_mut()) {
            object.insert("alerts".into(), serde_json::to_value(delivery)?);
        }
        println!("{}", serde_json::to_string_pretty(&doc)?);
    }
    Ok(report.status.exit_code())
}

/// Step lines on stderr as steps start and finish.
pub fn terminal_progress() -> Progress {
    Arc::new(|event| {
        let mut err = std::io::stderr().lock();
        let _ = match event {
            ProgressEvent::StepStarted { id } => writeln!(err, "  … {id}"),
            ProgressEvent::StepFinished(outcome) => writeln!(err, "  {}", step_line(&outcome)),
        };
    })
}

fn mark(status: StepStatus) -> &'static str {
    match status {
        StepStatus::Success => "✓",
        StepStatus::Partial => "!",
        StepStatus::Failed => "✗",
        StepStatus::Skipped => "-",
    }
}

pub fn step_line(o: &StepOutcome) -> String {
    let mut line = format!(
        "{} {:<28} {:>5} entities {:>5} relationships {:>4} requests {:>6} ms",
        mark(o.status),
        o.id,
        o.entities,
        o.relationships,
        o.requests,
        o.duration_ms
    );
    if o.retries > 0 || o.waited_ms > 0 {
        line.push_str(&format!(
            "  ({} retries, waited {} ms for rate limits)",
            o.retries, o.waited_ms
        ));
    }
    if let Some(error) = &o.error {
        line.push_str(&format!("\n      {error}"));
    }
    for warning in &o.warnings {
        line.push_str(&format!("\n      warning: {warning}"));
    }
    for problem in &o.problems {
        line.push_str(&format!("\n      refused {problem}"));
    }
    for dup in &o.duplicates {
        line.push_str(&format!(
            "\n      duplicate key {:?}: kept the first",
            dup.key
        ));
    }
    line
}

pub fn print_summary(out: &mut dyn Write, report: &SyncReport) -> std::io::Result<()> {
    writeln!(
        out,
        "sync {} of {}: {} in {} ms, {} requests",
        report.sync_id,
        report.integration,
        report.status.as_str(),
        report.duration_ms,
        report.requests
    )?;
    for step in &report.steps {
        writeln!(out, "  {}", step_line(step))?;
    }
    writeln!(
        out,
        "collected {} entities and {} relationships: {} created, {} updated, {} deleted",
        report.entities, report.relationships, report.created, report.updated, report.deleted
    )
}
