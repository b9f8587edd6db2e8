//! `sextant token create|list|revoke`: API tokens for the daemon. The token
//! is printed once, at creation; only its hash is stored.

use clap::Subcommand;

use super::Context;
use crate::daemon::auth::{NewToken, SCOPES, create_token};

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it (once). Names starting with bot- are
    /// service tokens.
    Create {
        name: String,
        /// A scope (repeat for several): resource:action, e.g. connections:read.
        #[arg(long = "scope", required = true, value_name = "SCOPE")]
        scopes: Vec<String>,
        /// Expire after this long (e.g. 30d, 12h); never when absent.
        #[arg(long, value_name = "DURATION", value_parser = super::duration_arg)]
        expires: Option<std::time::Duration>,
        /// The owner recorded with the token; defaults to $USER.
        #[arg(long)]
        username: Option<String>,
    },
    /// List tokens (never the tokens themselves).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Delete a token; requests using it get 401 from then on.
    Revoke { name: String },
}

pub fn run(cx: &Context, cmd: TokenCommand) -> anyhow::Result<i32> {
    let mut store = cx.store()?;
    match cmd {
        TokenCommand::Create {
            name,
            scopes,
            expires,
            username,
        } => {
            let username = username
                .or_else(|| std::env::var("USER").ok())
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| "admin".to_owned());
            let token_type = if name.starts_with("bot-") {
                "service"
            } else {
                "user"
            };
            let scopes = scopes
                .iter()
                .flat_map(|s| s.split(','))
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect();
            let created = create_token(
                &mut store,
                NewToken {
                    name,
                    username,
                    token_type: token_type.to_owned(),
                    scopes,
                    expires,
                },
            )?;
            eprintln!(
                "created {} token {:?} with scopes {}{}; it is shown only now:",
                created.record.token_type,
                created.record.name,
                created.record.scopes.join(" "),
                created
                    .record
                    .expires_at
                    .as_deref()
                    .map(|e| format!(", expiring {e}"))
                    .unwrap_or_default()
            );
            println!("{}", created.token);
            Ok(0)
        }
        TokenCommand::List { json } => {
            let tokens = store.tokens()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&tokens)?);
            } else if tokens.is_empty() {
                println!(
                    "no tokens; create one with: sextant token create NAME --scope SCOPE (scopes: {})",
                    SCOPES.join(", ")
                );
            } else {
                for t in tokens {
                    println!(
                        "{:<24} {:<8} {:<12} expires {:<24} last used {:<24} {}",
                        t.name,
                        t.token_type,
                        t.username,
                        t.expires_at.as_deref().unwrap_or("never"),
                        t.last_used_at.as_deref().unwrap_or("never"),
                        t.scopes.join(" ")
                    );
                }
            }
            Ok(0)
        }
        TokenCommand::Revoke { name } => {
            if store.revoke_token(&name)? {
                println!("revoked token {name:?}");
                Ok(0)
            } else {
                anyhow::bail!("no token named {name:?}; list them with: sextant token list")
            }
        }
    }
}
