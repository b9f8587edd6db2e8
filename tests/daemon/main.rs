//! The daemon end to end: the real `sextant daemon` binary on 127.0.0.1:0
//! against the bundled fixture server — run leases, scheduling, the HTTP
//! API with scoped tokens, graceful shutdown.

mod api;
mod connections;
mod graph;
mod leases;
mod lifecycle;
mod support;
