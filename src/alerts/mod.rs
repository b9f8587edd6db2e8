//! Alert rules over change and system events, and their durable delivery.
//!
//! `rules` validates the config's `rules:` and `sinks:` · `event` is what a
//! rule looks at (change events and system events) · `eval` is the pure,
//! indexed evaluation · `sinks` sends (stdout, JSON-lines file, signed
//! webhook) · `deliver` moves each sink's cursor over what it acknowledged ·
//! `skip` moves it past alerts a receiver refuses, on an operator's word.
//! The SQL lives in `store::sinks`.

pub mod deliver;
pub mod eval;
pub mod event;
pub mod rules;
pub mod sinks;
pub mod skip;

pub use deliver::{
    AlertError, DELIVERY_LEASE, DELIVERY_LEASE_TTL, Deliverer, DeliveryReport, SinkReport, prepare,
    register_sinks,
};
pub use eval::RuleSet;
pub use event::{AlertEvent, Stream, SystemEvent};
pub use rules::{AlertsConfig, Rule, Severity, SinkConfig, SinkKind};
