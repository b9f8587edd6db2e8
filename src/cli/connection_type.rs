//! `sextant connection-type list|show TYPE`.

use clap::Subcommand;

use crate::connection::{connection_type, connection_types};

#[derive(Debug, Subcommand)]
pub enum ConnectionTypeCommand {
    /// List connection types.
    List,
    /// Show a type's fields (JSON Schema, sensitive fields marked) and what its token needs.
    Show { name: String },
}

pub fn run(cmd: ConnectionTypeCommand) -> anyhow::Result<i32> {
    match cmd {
        ConnectionTypeCommand::List => {
            for ty in connection_types() {
                println!("{:<12} {}", ty.name, ty.human_name);
            }
            Ok(0)
        }
        ConnectionTypeCommand::Show { name } => {
            let Some(ty) = connection_type(&name) else {
                let known: Vec<&str> = connection_types().iter().map(|t| t.name).collect();
                anyhow::bail!(
                    "no connection type {name:?}; known types: {}",
                    known.join(", ")
                );
            };
            let doc = serde_json::json!({
                "type": ty.name,
                "name": ty.human_name,
                "token_requirements": ty.token_requirements,
                "secret_schema": ty.json_schema(),
            });
            println!("{}", serde_json::to_string_pretty(&doc)?);
            Ok(0)
        }
    }
}
