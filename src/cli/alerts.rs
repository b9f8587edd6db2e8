//! `sextant alerts list|test|skip`: tools for rule authors and operators.
//! `list` shows the rules, the sinks and how far each sink got; `test`
//! evaluates one rule against saved events (JSON lines) and sends nothing;
//! `skip` moves a sink past alerts its receiver refuses (`alerts::skip`).

use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use serde_json::{Value, json};

use super::Context;
use crate::alerts::rules::Start;
use crate::alerts::sinks::AlertPayload;
use crate::alerts::skip::{SkipPlan, SkipSession, SkipTarget};
use crate::alerts::{AlertEvent, AlertsConfig};

#[derive(Debug, Subcommand)]
pub enum AlertsCommand {
    /// The configured rules and sinks, each sink's cursor, lag and last error.
    List {
        /// One JSON object instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Evaluate one rule against saved events and print the alerts it would
    /// raise. Sends nothing. Save events with: sextant events list > events.jsonl
    ///
    /// The rule's integration filter and match apply; whether an event
    /// belongs to an integration's first sync (skipped unless the rule says
    /// first_sync: true) is known only at delivery, so it is not applied.
    Test {
        /// The rule's name.
        rule: String,
        /// JSON-lines file of change or system events; - reads standard input.
        #[arg(long, value_name = "FILE")]
        events: PathBuf,
        /// Print each alert as its JSON body instead of a line of text.
        #[arg(long)]
        json: bool,
    },
    /// Acknowledge a sink's next alert without delivering it, when its
    /// receiver refuses that alert for good (a 400, 422, …) and holds back
    /// every alert after it. Each skipped alert is recorded and shown by
    /// `alerts list`.
    ///
    /// Without flags: the alert the next delivery would send (change events
    /// first). --system: the next alert of a system event (a failed sync, a
    /// connection test). --through SEQ: every pending alert of change events
    /// up to SEQ. Refused while another process delivers alerts.
    Skip {
        /// The sink's name, as in the config.
        sink: String,
        /// Skip every pending alert of change events up to this seq.
        #[arg(long, value_name = "SEQ", conflicts_with = "system")]
        through: Option<u64>,
        /// Skip the next alert of a system event instead.
        #[arg(long)]
        system: bool,
        /// Do not ask for confirmation (needed when not on a terminal).
        #[arg(long)]
        yes: bool,
    },
}

pub fn run(cx: &Context, cmd: AlertsCommand) -> anyhow::Result<i32> {
    let config = cx.config()?;
    match cmd {
        AlertsCommand::List { json } => list(cx, &config.alerts, json),
        AlertsCommand::Test { rule, events, json } => test(&config.alerts, &rule, &events, json),
        AlertsCommand::Skip {
            sink,
            through,
            system,
            yes,
        } => {
            let target = match (through, system) {
                (Some(seq), _) => SkipTarget::Through(seq),
                (None, true) => SkipTarget::SystemHead,
                (None, false) => SkipTarget::Head,
            };
            skip(cx, &config.alerts, &sink, target, yes)
        }
    }
}

fn skip(
    cx: &Context,
    alerts: &AlertsConfig,
    sink: &str,
    target: SkipTarget,
    yes: bool,
) -> anyhow::Result<i32> {
    let mut store = cx.store()?;
    let session = SkipSession::start(&mut store)?;
    let plan = session.plan(alerts, sink, target)?;
    let out = &mut std::io::stdout().lock();
    if !yes {
        writeln!(
            out,
            "{} of sink {sink:?} would be skipped: acknowledged, never delivered:",
            count(plan.alerts.len())
        )?;
        print_plan(out, &plan)?;
        out.flush()?;
        if !std::io::stdin().is_terminal() {
            let mut command = format!("sextant alerts skip {sink}");
            match target {
                SkipTarget::Head => {}
                SkipTarget::SystemHead => command.push_str(" --system"),
                SkipTarget::Through(seq) => command.push_str(&format!(" --through {seq}")),
            }
            anyhow::bail!(
                "nothing skipped: standard input is not a terminal to confirm on; add --yes: {command} --yes"
            );
        }
        eprint!("Skip {}? [y/N] ", count(plan.alerts.len()));
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
            writeln!(out, "Nothing skipped.")?;
            return Ok(1);
        }
    }
    let records = session.apply(&plan)?;
    writeln!(
        out,
        "skipped {} of sink {sink:?} (never delivered; recorded, see sextant alerts list):",
        count(records.len())
    )?;
    print_plan(out, &plan)?;
    if let SkipTarget::Through(_) = target {
        writeln!(
            out,
            "{} cursor: {} (was {}); the next delivery continues after it",
            plan.stream.as_str(),
            plan.to.0,
            plan.from.0
        )?;
    } else {
        writeln!(out, "the next delivery continues after it")?;
    }
    Ok(0)
}

fn count(n: usize) -> String {
    if n == 1 {
        "1 alert".to_owned()
    } else {
        format!("{n} alerts")
    }
}

/// One line per alert (the first 50, then a count): id, rule, event.
fn print_plan(out: &mut dyn Write, plan: &SkipPlan) -> std::io::Result<()> {
    const SHOWN: usize = 50;
    for alert in plan.alerts.iter().take(SHOWN) {
        writeln!(
            out,
            "  {}  rule {} · {} event {} · {}",
            alert.id,
            alert.rule,
            alert.stream.as_str(),
            alert.seq,
            alert.summary
        )?;
    }
    if plan.alerts.len() > SHOWN {
        writeln!(out, "  … and {} more", plan.alerts.len() - SHOWN)?;
    }
    Ok(())
}

fn list(cx: &Context, alerts: &AlertsConfig, as_json: bool) -> anyhow::Result<i32> {
    let store = cx.store()?;
    let last_change = store.last_event_seq()?;
    let last_system = store.last_system_seq()?;
    let mut sinks = Vec::new();
    for sink in &alerts.sinks {
        let cursor = store.sink_cursor(&sink.name)?;
        let skips = store.sink_skips(&sink.name)?;
        let start = match sink.start {
            Start::End => "end",
            Start::Beginning => "beginning",
        };
        sinks.push(json!({
            "name": sink.name,
            "type": sink.kind.type_name(),
            "target": sink.kind.target(),
            "start": start,
            "used": cursor.is_some(),
            "change_seq": cursor.as_ref().map(|c| c.change_seq),
            "system_seq": cursor.as_ref().map(|c| c.system_seq),
            "lag": cursor.as_ref().map(|c| last_change.saturating_sub(c.change_seq) + last_system.saturating_sub(c.system_seq)),
            "delivered": cursor.as_ref().map_or(0, |c| c.delivered),
            "last_delivered_at": cursor.as_ref().and_then(|c| c.last_delivered_at.clone()),
            "last_error": cursor.as_ref().and_then(|c| c.last_error.clone()),
            "failing_since": cursor.as_ref().and_then(|c| c.failing_since.clone()),
            "skipped": skips.count,
            "last_skipped": skips.last,
        }));
    }
    let rules: Vec<Value> = alerts
        .rules
        .iter()
        .map(|r| {
            json!({
                "name": r.name,
                "severity": r.severity,
                "description": r.description,
                "integrations": r.integrations,
                "first_sync": r.first_sync,
                "match": r.match_source,
                "sinks": r.sinks,
            })
        })
        .collect();
    let out = &mut std::io::stdout().lock();
    if as_json {
        let doc = json!({
            "rules": rules,
            "sinks": sinks,
            "last_change_seq": last_change,
            "last_system_seq": last_system,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
        return Ok(0);
    }
    writeln!(out, "Rules ({}):", alerts.rules.len())?;
    for rule in &alerts.rules {
        writeln!(
            out,
            "  {:<36} {:<8} → {}",
            rule.name,
            rule.severity.as_str(),
            rule.sinks.join(", ")
        )?;
        if let Some(description) = &rule.description {
            writeln!(out, "      {description}")?;
        }
        let mut detail = format!("match {}", rule.match_source);
        if !rule.integrations.is_empty() {
            detail.push_str(&format!(" · integrations {}", rule.integrations.join(", ")));
        }
        if rule.first_sync {
            detail.push_str(" · also on first syncs");
        }
        writeln!(out, "      {detail}")?;
    }
    writeln!(
        out,
        "\nSinks ({}), against change event {last_change} and system event {last_system}:",
        alerts.sinks.len()
    )?;
    for sink in &alerts.sinks {
        writeln!(
            out,
            "  {:<24} {:<8} {}",
            sink.name,
            sink.kind.type_name(),
            sink.kind.target()
        )?;
        match store.sink_cursor(&sink.name)? {
            None => writeln!(
                out,
                "      not used yet; starts at the {} on its first delivery",
                if sink.start == Start::End {
                    "newest events"
                } else {
                    "first event"
                }
            )?,
            Some(c) => {
                writeln!(
                    out,
                    "      cursor: change {} (lag {}), system {} (lag {}) · {} delivered{}",
                    c.change_seq,
                    last_change.saturating_sub(c.change_seq),
                    c.system_seq,
                    last_system.saturating_sub(c.system_seq),
                    c.delivered,
                    c.last_delivered_at
                        .as_deref()
                        .map(|t| format!(", last at {t}"))
                        .unwrap_or_default()
                )?;
                let skips = store.sink_skips(&sink.name)?;
                if let Some(last) = &skips.last {
                    writeln!(
                        out,
                        "      skipped {} (sextant alerts skip), last {} at {} by {}",
                        count(usize::try_from(skips.count).unwrap_or(usize::MAX)),
                        last.id,
                        last.skipped_at,
                        last.skipped_by
                    )?;
                }
                if let Some(error) = &c.last_error {
                    writeln!(
                        out,
                        "      failing since {}: {error}",
                        c.failing_since.as_deref().unwrap_or("?")
                    )?;
                }
            }
        }
    }
    Ok(0)
}

fn test(alerts: &AlertsConfig, name: &str, path: &PathBuf, as_json: bool) -> anyhow::Result<i32> {
    let Some(rule) = alerts.rule(name) else {
        let known: Vec<&str> = alerts.rules.iter().map(|r| r.name.as_str()).collect();
        anyhow::bail!(
            "no rule named {name:?} in the config; {}",
            if known.is_empty() {
                "it declares none (add them under rules:, see config.example.yaml)".to_owned()
            } else {
                format!("its rules are {}", known.join(", "))
            }
        );
    };
    let shown = path.display().to_string();
    let reader: Box<dyn BufRead> = if shown == "-" {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        let file = std::fs::File::open(path)
            .with_context(|| format!("cannot read events file {shown}"))?;
        Box::new(BufReader::new(file))
    };
    let out = &mut std::io::stdout().lock();
    let (mut total, mut matched) = (0usize, 0usize);
    for (i, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("cannot read events file {shown}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let event = AlertEvent::from_json(&line).map_err(|e| {
            anyhow::anyhow!(
                "{shown}:{}: not a change or system event: {e}; write one JSON event per line, as sextant events list prints them",
                i + 1
            )
        })?;
        total += 1;
        if !rule.matches(&event) {
            continue;
        }
        matched += 1;
        let alert = AlertPayload::new("test", rule, &event);
        if as_json {
            writeln!(out, "{}", alert.json()?)?;
        } else {
            writeln!(out, "{}", alert.text_line())?;
        }
    }
    let summary = format!("{matched} of {total} events match rule {name:?}; nothing was sent.");
    if as_json {
        eprintln!("{summary}");
    } else {
        writeln!(out, "{summary}")?;
    }
    Ok(0)
}
