//! Sextant: polls sources (CircleCI first) with stored API tokens, maps what
//! they return into a typed graph, diffs it into SQLite and emits change
//! events.
//!
//! `graph` is the model and schema (no I/O) · `diff` the pure change
//! computation · `store` the only SQL · `source` the sources and the one HTTP
//! driver · `sync` ties a run together (under a run lease) · `alerts` turns
//! events into delivered alerts · `export` the graph document · `daemon` the
//! scheduler and HTTP API · `cli` is the command line.

pub mod alerts;
pub mod cli;
pub mod config;
pub mod connection;
pub mod daemon;
pub mod diff;
pub mod events;
pub mod export;
pub mod fixtures;
pub mod graph;
pub mod run;
pub mod source;
pub mod store;
pub mod sync;
