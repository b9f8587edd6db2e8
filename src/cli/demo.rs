//! `sextant demo`: the bundled CircleCI stand-in on loopback, a sync of
//! "today", a sync of "a day later", the change events between them and the
//! alerts that config.example.yaml's rules raise on them.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

use clap::Args;
use serde_json::Value;

use super::Context;
use crate::alerts::rules::{Start, StdoutFormat};
use crate::alerts::{AlertsConfig, Deliverer, SinkConfig, SinkKind};
use crate::config::{Config, IntegrationConfig, Interval};
use crate::connection::{Secret, Secrets, connection_type};
use crate::events::{Action, ChangeEvent, ObjectKind};
use crate::fixtures::{FIXTURE_TOKEN, FixtureServer, FixtureSet};
use crate::source::ResolvedConnection;
use crate::source::http::{HttpConfig, RateLimit};
use crate::store::Store;
use crate::sync::run_sync;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Print the second sync's change events as JSON lines instead of a readable list.
    #[arg(long)]
    pub json: bool,
}

pub const DEMO_INTEGRATION: &str = "demo-circleci";

pub fn run(cx: &Context, args: DemoArgs, home_given: bool) -> anyhow::Result<i32> {
    // Without --home the demo leaves nothing behind.
    let temp = if home_given {
        None
    } else {
        Some(tempfile::tempdir()?)
    };
    let home = temp
        .as_ref()
        .map_or_else(|| cx.home.clone(), |t| t.path().to_path_buf());
    std::fs::create_dir_all(&home)?;
    let mut store = Store::open(&home.join("sextant.db"))?;
    let schema = super::schema()?;
    let out = &mut std::io::stdout();
    let code = super::runtime()?.block_on(async {
        let server = FixtureServer::start(FixtureSet::Day1).await?;
        writeln!(
            out,
            "Sextant demo: a CircleCI stand-in serving bundled fixtures at {} (no account, token or network).",
            server.base_url()
        )?;
        let connection = demo_connection(&server.base_url())?;
        let integration = demo_integration();
        let progress = None;

        writeln!(out, "\n1. Sync of today's estate")?;
        let first = run_sync(&mut store, Arc::clone(&schema), &integration, &connection, progress).await?;
        super::sync::print_summary(out, &first)?;

        server.switch(FixtureSet::Day2);
        let before = store.last_event_seq()?;
        writeln!(out, "\n2. Sync of the same estate a day later")?;
        let second = run_sync(&mut store, Arc::clone(&schema), &integration, &connection, progress).await?;
        super::sync::print_summary(out, &second)?;
        server.shutdown().await;

        let events = store.events(before, Some(DEMO_INTEGRATION), usize::MAX)?;
        writeln!(out, "\n3. Change events of the second sync ({})", events.len())?;
        if args.json {
            for event in &events {
                writeln!(out, "{}", serde_json::to_string(event)?)?;
            }
        } else {
            print_events(out, &events)?;
        }
        let alerts = demo_alerts(args.json)?;
        writeln!(
            out,
            "\n4. Alerts raised (the {} rules of config.example.yaml, sent to a stdout sink)",
            alerts.rules.len()
        )?;
        out.flush()?;
        let delivery = Deliverer::default().deliver_pending(&mut store, &alerts).await?;
        writeln!(
            out,
            "  {} alerts. The first sync raised none: it is the integration's baseline, where everything is new.",
            delivery.delivered()
        )?;
        match &temp {
            Some(_) => writeln!(
                out,
                "\nThe demo used a throwaway data directory. Keep it with: sextant demo --home DIR\nthen explore: sextant --home DIR graph export · sextant --home DIR events list"
            )?,
            None => writeln!(
                out,
                "\nData kept in {}. Explore: sextant --home {} graph export · events list",
                home.display(),
                home.display()
            )?,
        }
        anyhow::Ok(first.status.exit_code().max(second.status.exit_code()))
    })?;
    Ok(code)
}

/// The rules shipped in config.example.yaml, all sent to one stdout sink.
fn demo_alerts(json: bool) -> anyhow::Result<AlertsConfig> {
    let example = Config::parse(
        "config.example.yaml (built in)",
        include_str!("../../config.example.yaml"),
    )?;
    let mut alerts = example.alerts;
    for rule in &mut alerts.rules {
        rule.sinks = vec!["console".to_owned()];
        // The example filters on its own integration's name.
        rule.integrations.clear();
    }
    let format = if json {
        StdoutFormat::Json
    } else {
        StdoutFormat::Text
    };
    alerts.sinks = vec![SinkConfig {
        name: "console".to_owned(),
        kind: SinkKind::Stdout(format),
        start: Start::Beginning,
    }];
    Ok(alerts)
}

fn demo_connection(base_url: &str) -> anyhow::Result<ResolvedConnection> {
    let ty = connection_type("circleci")
        .ok_or_else(|| anyhow::anyhow!("the circleci connection type is missing"))?;
    let mut secrets = Secrets::default();
    secrets.plain.insert("host".into(), base_url.to_owned());
    secrets
        .sensitive
        .insert("api_token".into(), Secret::new(FIXTURE_TOKEN));
    Ok(ResolvedConnection {
        name: "demo".into(),
        ty,
        secrets,
        // The stand-in is local: no need to be gentle.
        http: HttpConfig {
            rate_limit: RateLimit::per_second(1000, 100),
            ..HttpConfig::default()
        },
    })
}

fn demo_integration() -> IntegrationConfig {
    IntegrationConfig {
        name: DEMO_INTEGRATION.into(),
        connection: "demo".into(),
        account_name: Some("Demo Org".into()),
        description: Some("The bundled CircleCI fixtures".into()),
        interval: Interval::Disabled,
        tag_account_name: true,
        enabled: true,
        settings: Value::Null,
    }
}

fn label(event: &ChangeEvent) -> String {
    let object = event.after.as_ref().or(event.before.as_ref());
    let name = object
        .and_then(|o| o.get("displayName").or_else(|| o.get("name")))
        .and_then(Value::as_str);
    match name {
        Some(name) => format!("{name:?}"),
        None => event.key.clone(),
    }
}

fn mark(action: Action) -> char {
    match action {
        Action::Created => '+',
        Action::Updated => '~',
        Action::Deleted => '-',
    }
}

/// Entity events one per line; relationship events counted per type, since
/// their keys say little to a reader.
fn print_events(out: &mut dyn Write, events: &[ChangeEvent]) -> std::io::Result<()> {
    let mut by_action: BTreeMap<&str, usize> = BTreeMap::new();
    let mut relationships: BTreeMap<(&str, &str), (char, usize)> = BTreeMap::new();
    for event in events {
        *by_action.entry(event.action.as_str()).or_default() += 1;
        if event.object == ObjectKind::Relationship {
            let entry = relationships
                .entry((event.ty.as_str(), event.action.as_str()))
                .or_insert((mark(event.action), 0));
            entry.1 += 1;
            continue;
        }
        write!(
            out,
            "  {} {:<8} {:<40} {}",
            mark(event.action),
            event.action.as_str(),
            event.ty,
            label(event)
        )?;
        if let Some(changes) = &event.changes {
            let fields: Vec<String> = changes
                .iter()
                .map(|(field, c)| format!("{field}: {} → {}", c.old, c.new))
                .collect();
            write!(out, "  ({})", fields.join(", "))?;
        }
        writeln!(out)?;
    }
    if !relationships.is_empty() {
        writeln!(out, "  relationships:")?;
    }
    for ((ty, action), (mark, n)) in &relationships {
        writeln!(out, "  {mark} {action:<8} {ty:<52} x{n}")?;
    }
    let totals: Vec<String> = by_action.iter().map(|(a, n)| format!("{n} {a}")).collect();
    writeln!(
        out,
        "  total: {}",
        if totals.is_empty() {
            "none".to_owned()
        } else {
            totals.join(", ")
        }
    )
}
