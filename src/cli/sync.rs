//! `sextant sync NAME [--json]`: one integration, once, with progress on a terminal.

use std::io::{IsTerminal, Write};
use std::sync::Arc;

use clap::Args;

use super::Context;
use crate::run::{StepOutcome, StepStatus};
use crate::source::dag::{Progress, ProgressEvent};
use crate::sync::{SyncReport, holder_id, resolve, start_run};

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Name of the integration to sync.
    pub name: String,
    /// Print the run as one JSON object instead of a summary.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cx: &Context, args: SyncArgs) -> anyhow::Result<i32> {
    let mut store = cx.store()?;
    // A stored integration first, else one from the config file.
    let stored =
        crate::connection::service::resolve_stored(&store, || Ok(cx.master_key()?), &args.name)?;
    let (integration, connection) = match stored {
        Some(found) => found,
        None => resolve(&cx.config()?, &args.name)?,
    };
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
    let report = super::runtime()?.block_on(started.run(
        &mut store,
        schema,
        progress.as_ref(),
        interrupted,
    ))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_summary(&mut std::io::stdout(), &report)?;
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
