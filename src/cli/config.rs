//! `sextant config check|apply`: validate the config file; provision what it
//! declares into the store.

use clap::Subcommand;

use super::Context;
use crate::connection::provision::Change;

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Parse and validate the config file; print what it declares. Reads no
    /// secret and writes nothing.
    Check,
    /// Create or update in the store every connection and integration the
    /// config file declares (reads their secret references now).
    Apply {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cx: &Context, cmd: ConfigCommand) -> anyhow::Result<i32> {
    match cmd {
        ConfigCommand::Check => {
            let config = cx.config()?;
            for c in &config.connections {
                println!("connection {} (type {}, key {})", c.name, c.ty.name, c.key);
            }
            for i in &config.integrations {
                println!(
                    "integration {} (connection {}, interval {})",
                    i.name, i.connection, i.interval
                );
            }
            println!(
                "config OK: {} connection(s), {} integration(s)",
                config.connections.len(),
                config.integrations.len()
            );
            Ok(0)
        }
        ConfigCommand::Apply { json } => {
            let (_, report) = cx.provisioned_store(&cx.config()?)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
                return Ok(0);
            }
            for (what, list) in [
                ("connection", &report.connections),
                ("integration", &report.integrations),
            ] {
                for (name, change) in list {
                    let word = match change {
                        Change::Created => "created",
                        Change::Updated => "updated",
                        Change::TakenOver => "taken over from the CLI",
                        Change::Unchanged => "unchanged",
                    };
                    println!("{what} {name}: {word}");
                }
            }
            for (what, list) in [
                ("connection", &report.orphaned_connections),
                ("integration", &report.orphaned_integrations),
            ] {
                for name in list {
                    println!(
                        "{what} {name}: no longer in the config; kept (sextant {what} delete {name} removes it)"
                    );
                }
            }
            println!("{} change(s) applied", report.changed());
            Ok(0)
        }
    }
}
