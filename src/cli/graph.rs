//! `sextant graph export`: the stored graph as JupiterOne-shaped JSON or Graphviz dot.

use std::io::Write;

use super::Context;
use clap::{Subcommand, ValueEnum};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Json,
    Dot,
}

#[derive(Debug, Subcommand)]
pub enum GraphCommand {
    /// Print the stored graph: {"entities": [...], "relationships": [...]}.
    Export {
        /// Only this integration's graph.
        #[arg(long)]
        integration: Option<String>,
        #[arg(long, value_enum, default_value = "json")]
        format: Format,
    },
}

pub fn run(cx: &Context, cmd: GraphCommand) -> anyhow::Result<i32> {
    let GraphCommand::Export {
        integration,
        format,
    } = cmd;
    let store = cx.store()?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match format {
        Format::Json => crate::export::json(&store, integration.as_deref(), &mut out)?,
        Format::Dot => crate::export::dot(&store, integration.as_deref(), &mut out)?,
    }
    out.flush()?;
    Ok(0)
}
