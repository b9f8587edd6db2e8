//! `sextant connection add|list|show|test|update|delete`: stored connections
//! with encrypted secrets.

use std::io::Read;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use super::Context;
use crate::connection::service::{
    self, ConnectionUpdate, HttpOverrides, ListFilter, NewConnection, TestStatus,
};

#[derive(Debug, Subcommand)]
pub enum ConnectionCommand {
    /// Add a connection. Its secrets are tested first unless --no-verify.
    Add(AddArgs),
    /// List connections (never their secrets).
    List(ListArgs),
    /// Show a connection; sensitive fields are masked.
    Show { name: String },
    /// Test a connection against its service and record the result.
    Test { name: String },
    /// Replace a connection's secrets and/or enable or disable it.
    Update(UpdateArgs),
    /// Delete a connection. Refused while integrations use it, unless --force.
    Delete {
        name: String,
        /// Delete anyway, disabling the integrations that use it.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Args)]
pub struct AddArgs {
    pub name: String,
    /// Connection type (see: sextant connection-type list).
    #[arg(long = "type", value_name = "TYPE")]
    pub ty: String,
    /// JSON object with every field of the type; `-` reads standard input.
    #[arg(long, value_name = "FILE|-")]
    pub secrets_file: PathBuf,
    /// Save without testing the secrets.
    #[arg(long)]
    pub no_verify: bool,
    #[arg(long)]
    pub description: Option<String>,
    /// Key (snake_case); defaults to the snake_case of the name.
    #[arg(long)]
    pub key: Option<String>,
    #[command(flatten)]
    pub http: HttpArgs,
}

/// HTTP settings of a connection, for every integration on it.
#[derive(Debug, Args)]
pub struct HttpArgs {
    /// Cap the request rate of this connection (requests per second; 0 goes
    /// back to the source's default).
    #[arg(long, value_name = "N")]
    pub requests_per_second: Option<u32>,
    /// Per-request timeout, e.g. 30s or 2m (0s goes back to the default).
    #[arg(long, value_name = "DURATION", value_parser = super::duration_arg)]
    pub timeout: Option<std::time::Duration>,
}

impl HttpArgs {
    fn overrides(&self) -> HttpOverrides {
        HttpOverrides {
            requests_per_second: self.requests_per_second,
            timeout: self.timeout,
        }
    }
}

/// Says so when a CLI change touches what the config file declares.
pub(super) fn note_config_managed(what: &str, name: &str, managed_by: &str) {
    if managed_by == service::MANAGED_BY_CONFIG {
        eprintln!(
            "note: {what} {name} is declared in the config file; the config's definition is applied again at the next start (edit the config to make this change last)"
        );
    }
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(long = "type", value_name = "TYPE")]
    pub ty: Option<String>,
    #[arg(long, value_name = "true|false")]
    pub disabled: Option<bool>,
    #[arg(long, value_name = "succeeded|failed|untested")]
    pub test_status: Option<TestStatus>,
    /// Case-insensitive search in name, key and description.
    #[arg(long)]
    pub search: Option<String>,
    #[command(flatten)]
    pub paging: super::PageArgs,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    pub name: String,
    /// New secrets (replace the old ones whole); `-` reads standard input.
    #[arg(long, value_name = "FILE|-")]
    pub secrets_file: Option<PathBuf>,
    #[arg(long, conflicts_with = "enable")]
    pub disable: bool,
    #[arg(long)]
    pub enable: bool,
    #[arg(long)]
    pub description: Option<String>,
    /// Save new secrets without testing them.
    #[arg(long)]
    pub no_verify: bool,
    #[command(flatten)]
    pub http: HttpArgs,
}

/// Reads a secrets document from a file or, for `-`, standard input.
pub fn read_secrets(path: &std::path::Path) -> anyhow::Result<String> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the secrets from standard input")?;
        Ok(text)
    } else {
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the secrets file {}", path.display()))
    }
}

pub fn run(cx: &Context, cmd: ConnectionCommand) -> anyhow::Result<i32> {
    match cmd {
        ConnectionCommand::Add(args) => {
            let secrets_json = read_secrets(&args.secrets_file)?;
            let master = cx.master_key()?;
            let mut store = cx.store()?;
            let added = super::runtime()?.block_on(service::add_connection(
                &mut store,
                &master,
                NewConnection {
                    name: args.name,
                    key: args.key,
                    ty: args.ty,
                    description: args.description,
                    secrets_json,
                    http: args.http.overrides(),
                    disabled: false,
                },
                !args.no_verify,
            ))?;
            let verified = if args.no_verify {
                "not verified"
            } else {
                "verified"
            };
            println!(
                "connection {} added (key {}, type {}, {verified})",
                added.name, added.key, added.connection_type
            );
            Ok(0)
        }
        ConnectionCommand::List(args) => {
            let store = cx.store()?;
            let page = service::list_connections(
                &store,
                &ListFilter {
                    ty: args.ty,
                    disabled: args.disabled,
                    test_status: args.test_status,
                    search: args.search,
                    page: args.paging.page,
                    size: args.paging.size,
                },
            )?;
            if args.paging.json {
                println!("{}", serde_json::to_string_pretty(&page)?);
            } else {
                println!(
                    "{:<20} {:<20} {:<10} {:<9} {:<10} DESCRIPTION",
                    "NAME", "KEY", "TYPE", "DISABLED", "TEST"
                );
                for c in &page.items {
                    let test = match c.last_test_succeeded {
                        Some(true) => "succeeded",
                        Some(false) => "failed",
                        None => "untested",
                    };
                    println!(
                        "{:<20} {:<20} {:<10} {:<9} {:<10} {}",
                        c.name,
                        c.key,
                        c.connection_type,
                        c.disabled,
                        test,
                        c.description.as_deref().unwrap_or("")
                    );
                }
                println!("{} of {} connection(s)", page.items.len(), page.total);
            }
            Ok(0)
        }
        ConnectionCommand::Show { name } => {
            let master = cx.master_key()?;
            let store = cx.store()?;
            let detail = service::show_connection(&store, &master, &name)?;
            println!("{}", serde_json::to_string_pretty(&detail)?);
            Ok(0)
        }
        ConnectionCommand::Test { name } => {
            let master = cx.master_key()?;
            let mut store = cx.store()?;
            let outcome =
                super::runtime()?.block_on(service::test_connection(&mut store, &master, &name))?;
            match &outcome.error {
                None => {
                    println!("connection {}: test succeeded", outcome.connection);
                    if let Some(note) = &outcome.note {
                        println!("note: {note}");
                    }
                    Ok(0)
                }
                Some(error) => {
                    println!("connection {}: test failed: {error}", outcome.connection);
                    Ok(1)
                }
            }
        }
        ConnectionCommand::Update(args) => {
            let secrets_json = args.secrets_file.as_deref().map(read_secrets).transpose()?;
            let master = cx.master_key()?;
            let mut store = cx.store()?;
            let disabled = match (args.disable, args.enable) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => None,
            };
            let updated = super::runtime()?.block_on(service::update_connection(
                &mut store,
                &master,
                &args.name,
                ConnectionUpdate {
                    secrets_json,
                    disabled,
                    description: args.description,
                    http: args.http.overrides(),
                },
                !args.no_verify,
            ))?;
            note_config_managed("connection", &updated.name, &updated.managed_by);
            println!(
                "connection {} updated ({})",
                updated.name,
                if updated.disabled {
                    "disabled"
                } else {
                    "enabled"
                }
            );
            Ok(0)
        }
        ConnectionCommand::Delete { name, force } => {
            let mut store = cx.store()?;
            let disabled = service::delete_connection(&mut store, &name, force)?;
            println!("connection {name} deleted");
            for integration in disabled {
                println!("integration {integration} disabled (connection deleted)");
            }
            Ok(0)
        }
    }
}
