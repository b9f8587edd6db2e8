//! `sextant integration add|list|show|update|delete`: stored integration
//! instances on stored connections.

use std::collections::BTreeMap;

use clap::{Args, Subcommand};
use serde_json::Value;

use super::Context;
use crate::connection::service::{self, IntegrationFilter, IntegrationInput};

#[derive(Debug, Subcommand)]
pub enum IntegrationCommand {
    /// Add an integration on a stored connection.
    Add(AddArgs),
    /// List integrations.
    List(ListArgs),
    /// Show an integration (JSON).
    Show { name: String },
    /// Change an integration.
    Update(UpdateArgs),
    /// Delete an integration's definition (its graph stays).
    Delete { name: String },
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only integrations on this connection (name or key).
    #[arg(long)]
    pub connection: Option<String>,
    #[arg(long, value_name = "true|false")]
    pub enabled: Option<bool>,
    /// Case-insensitive text in the name, account name or description.
    #[arg(long)]
    pub search: Option<String>,
    #[command(flatten)]
    pub paging: super::PageArgs,
}

#[derive(Debug, Args)]
pub struct AddArgs {
    pub name: String,
    /// Name or key of the stored connection.
    #[arg(long)]
    pub connection: String,
    #[arg(long)]
    pub account_name: Option<String>,
    #[arg(long)]
    pub description: Option<String>,
    /// DISABLED, 30m, 1h, 4h, 12h, 1d or "cron:<expr>" (default 1h).
    #[arg(long)]
    pub interval: Option<String>,
    /// Tag every entity with the account name.
    #[arg(long)]
    pub tag_account_name: bool,
    /// A source setting, KEY=VALUE; VALUE is JSON if it parses, else a string.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    pub name: String,
    #[arg(long)]
    pub connection: Option<String>,
    #[arg(long)]
    pub account_name: Option<String>,
    #[arg(long)]
    pub description: Option<String>,
    #[arg(long)]
    pub interval: Option<String>,
    #[arg(long, conflicts_with = "no_tag_account_name")]
    pub tag_account_name: bool,
    #[arg(long)]
    pub no_tag_account_name: bool,
    #[arg(long, conflicts_with = "disable")]
    pub enable: bool,
    #[arg(long)]
    pub disable: bool,
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

/// `KEY=VALUE` pairs; a value is JSON if it parses, else a string.
pub fn parse_settings(pairs: &[String]) -> anyhow::Result<BTreeMap<String, Value>> {
    let mut out = BTreeMap::new();
    for pair in pairs {
        let Some((key, value)) = pair.split_once('=') else {
            anyhow::bail!("--set {pair:?}: write KEY=VALUE, e.g. --set 'org_slugs=[\"gh/acme\"]'");
        };
        let key = key.trim();
        if key.is_empty() {
            anyhow::bail!("--set {pair:?}: the key is empty");
        }
        let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()));
        out.insert(key.to_owned(), value);
    }
    Ok(out)
}

fn flag(on: bool, off: bool) -> Option<bool> {
    match (on, off) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    }
}

pub fn run(cx: &Context, cmd: IntegrationCommand) -> anyhow::Result<i32> {
    let mut store = cx.store()?;
    match cmd {
        IntegrationCommand::Add(args) => {
            let view = service::add_integration(
                &mut store,
                &args.name,
                IntegrationInput {
                    connection: Some(args.connection),
                    account_name: args.account_name,
                    description: args.description,
                    interval: args.interval,
                    tag_account_name: Some(args.tag_account_name),
                    enabled: None,
                    settings: parse_settings(&args.set)?,
                },
            )?;
            println!(
                "integration {} added (connection {}, interval {})",
                view.name,
                view.connection.as_deref().unwrap_or("-"),
                view.interval
            );
        }
        IntegrationCommand::List(args) => {
            let page = service::find_integrations(
                &store,
                &IntegrationFilter {
                    connection: args.connection,
                    enabled: args.enabled,
                    search: args.search,
                    page: args.paging.page,
                    size: args.paging.size,
                },
            )?;
            let items = &page.items;
            if args.paging.json {
                println!("{}", serde_json::to_string_pretty(&page)?);
            } else {
                println!(
                    "{:<20} {:<20} {:<10} {:<8} REASON",
                    "NAME", "CONNECTION", "INTERVAL", "ENABLED"
                );
                for i in items {
                    println!(
                        "{:<20} {:<20} {:<10} {:<8} {}",
                        i.name,
                        i.connection.as_deref().unwrap_or("-"),
                        i.interval,
                        i.enabled,
                        i.disabled_reason.as_deref().unwrap_or("")
                    );
                }
                println!("{} of {} integration(s)", items.len(), page.total);
            }
        }
        IntegrationCommand::Show { name } => {
            let view = service::show_integration(&store, &name)?;
            println!("{}", serde_json::to_string_pretty(&view)?);
        }
        IntegrationCommand::Update(args) => {
            let view = service::update_integration(
                &mut store,
                &args.name,
                IntegrationInput {
                    connection: args.connection,
                    account_name: args.account_name,
                    description: args.description,
                    interval: args.interval,
                    tag_account_name: flag(args.tag_account_name, args.no_tag_account_name),
                    enabled: flag(args.enable, args.disable),
                    settings: parse_settings(&args.set)?,
                },
            )?;
            super::connection::note_config_managed("integration", &view.name, &view.managed_by);
            println!(
                "integration {} updated ({})",
                view.name,
                if view.enabled { "enabled" } else { "disabled" }
            );
        }
        IntegrationCommand::Delete { name } => {
            service::delete_integration(&mut store, &name)?;
            println!("integration {name} deleted");
        }
    }
    Ok(0)
}
