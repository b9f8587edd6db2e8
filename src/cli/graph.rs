//! `sextant graph export`: the stored graph as JupiterOne-shaped JSON or Graphviz dot.

use std::io::Write;

use clap::{Subcommand, ValueEnum};
use serde_json::Value;

use super::Context;

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
        Format::Json => export_json(&store, integration.as_deref(), &mut out)?,
        Format::Dot => export_dot(&store, integration.as_deref(), &mut out)?,
    }
    out.flush()?;
    Ok(0)
}

/// Streams the document so a large graph is never held as one string.
pub fn export_json(
    store: &crate::store::Store,
    integration: Option<&str>,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    use std::cell::RefCell;
    // 0: in entities, first pending; 1: in entities; 2: in relationships, first pending; 3: in relationships.
    let state = RefCell::new(0u8);
    let out = RefCell::new(out);
    out.borrow_mut().write_all(b"{\"entities\": [")?;
    let open_relationships = |state: &mut u8, out: &mut dyn Write| -> std::io::Result<()> {
        if *state < 2 {
            out.write_all(b"\n], \"relationships\": [")?;
            *state = 2;
        }
        Ok(())
    };
    store.export(
        integration,
        &mut |entity: Value| {
            let mut s = state.borrow_mut();
            let mut o = out.borrow_mut();
            o.write_all(if *s == 0 { b"\n" } else { b",\n" })?;
            *s = 1;
            serde_json::to_writer(&mut **o, &entity)?;
            Ok(())
        },
        &mut |rel: Value| {
            let mut s = state.borrow_mut();
            let mut o = out.borrow_mut();
            open_relationships(&mut s, &mut **o)?;
            o.write_all(if *s == 2 { b"\n" } else { b",\n" })?;
            *s = 3;
            serde_json::to_writer(&mut **o, &rel)?;
            Ok(())
        },
    )?;
    let mut s = state.borrow_mut();
    let mut o = out.borrow_mut();
    open_relationships(&mut s, &mut **o)?;
    o.write_all(b"\n]}\n")?;
    Ok(())
}

fn dot_escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

pub fn export_dot(
    store: &crate::store::Store,
    integration: Option<&str>,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    use std::cell::RefCell;
    let out = RefCell::new(out);
    out.borrow_mut()
        .write_all(b"digraph sextant {\n  node [shape=box];\n")?;
    let field = |v: &Value, name: &str| {
        v.get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    store.export(
        integration,
        &mut |e: Value| {
            let label = format!(
                "{}\\n{}",
                dot_escape(&field(&e, "displayName")),
                field(&e, "_type")
            );
            writeln!(
                out.borrow_mut(),
                "  \"{}\" [label=\"{label}\"];",
                dot_escape(&field(&e, "_key"))
            )
        },
        &mut |r: Value| {
            writeln!(
                out.borrow_mut(),
                "  \"{}\" -> \"{}\" [label=\"{}\"];",
                dot_escape(&field(&r, "_fromEntityKey")),
                dot_escape(&field(&r, "_toEntityKey")),
                dot_escape(&field(&r, "_class"))
            )
        },
    )?;
    out.borrow_mut().write_all(b"}\n")?;
    Ok(())
}
