//! The graph export document shared by `sextant graph export` and the
//! daemon's `GET /api/v1/graph`: JupiterOne-shaped JSON
//! (`{"entities": [...], "relationships": [...]}`) or Graphviz dot, streamed
//! from the store into any writer.

use std::io::Write;

use serde_json::Value;

use crate::store::{Store, StoreError};

/// Streams the document so a large graph is never held as one string.
pub fn json(
    store: &Store,
    integration: Option<&str>,
    out: &mut dyn Write,
) -> Result<(), StoreError> {
    use std::cell::RefCell;
    // 0: in entities, first pending; 1: in entities; 2: in relationships, first pending; 3: in relationships.
    let state = RefCell::new(0u8);
    let out = RefCell::new(out);
    out.borrow_mut()
        .write_all(b"{\"entities\": [")
        .map_err(StoreError::Export)?;
    let open_relationships = |state: &mut u8, out: &mut dyn Write| -> std::io::Result<()> {
        if *state < 2 {
            out.write_all(b"\n], \"relationships\": [")?;
            *state = 2;
        }
        Ok(())
    };
    store.read_snapshot(|store| {
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
        )
    })?;
    let mut s = state.borrow_mut();
    let mut o = out.borrow_mut();
    open_relationships(&mut s, &mut **o).map_err(StoreError::Export)?;
    o.write_all(b"\n]}\n").map_err(StoreError::Export)?;
    Ok(())
}

fn dot_escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

pub fn dot(
    store: &Store,
    integration: Option<&str>,
    out: &mut dyn Write,
) -> Result<(), StoreError> {
    use std::cell::RefCell;
    let out = RefCell::new(out);
    out.borrow_mut()
        .write_all(b"digraph sextant {\n  node [shape=box];\n")
        .map_err(StoreError::Export)?;
    let field = |v: &Value, name: &str| {
        v.get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    store.read_snapshot(|store| {
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
        )
    })?;
    out.borrow_mut()
        .write_all(b"}\n")
        .map_err(StoreError::Export)?;
    Ok(())
}
