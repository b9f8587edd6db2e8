//! Moving a sink past alerts its receiver will never accept (`sextant
//! alerts skip`): the alerts are acknowledged without being delivered, and
//! each is recorded (`store::skips`) so that what a sink never delivered
//! stays on record for `alerts list`.
//!
//! Invariant: a skip walks the sink's backlog with the same code as delivery
//! (`deliver::owed`), moves the cursor exactly as acknowledging those alerts
//! would, and holds the delivery lease while it plans and applies; so every
//! alert is delivered or skipped, once, in order.

use std::collections::HashMap;

use super::deliver::{DELIVERY_LEASE, load_batch, owed};
use super::eval::RuleSet;
use super::event::{AlertEvent, Stream};
use super::rules::{AlertsConfig, Rule};
use super::sinks::{delivery_id, summary};
use crate::store::{SinkCursor, SkipRecord, Store, StoreError};

/// How long `alerts skip` may hold the delivery lease (it waits for a
/// confirmation while holding it).
pub const SKIP_LEASE_TTL: std::time::Duration = std::time::Duration::from_secs(300);

/// Events read per batch while looking for pending alerts.
const BATCH: usize = 1000;

/// Which alerts to skip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipTarget {
    /// The next alert a delivery pass would send: the first pending alert
    /// of a change event, else of a system event.
    Head,
    /// The first pending alert of a system event.
    SystemHead,
    /// Every pending alert of a change event up to this seq (inclusive).
    Through(u64),
}

#[derive(Debug, thiserror::Error)]
pub enum SkipError {
    #[error(
        "no sink named {name:?} in the config; {}",
        configured_sinks(configured)
    )]
    UnknownSink {
        name: String,
        configured: Vec<String>,
    },
    #[error(
        "sink {sink:?} has not delivered anything yet, so no alert of it is pending; its first delivery (sextant sync, or the daemon) starts its cursor"
    )]
    NotUsed { sink: String },
    #[error("sink {sink:?} has no pending alert {what}; nothing to skip")]
    NothingPending { sink: String, what: String },
    #[error(
        "--through {seq} is beyond the last change event ({last}); give the seq of a change event the sink has not passed (it acknowledged up to {acknowledged}; see: sextant events list --since {acknowledged})"
    )]
    BeyondLast {
        seq: u64,
        last: u64,
        acknowledged: u64,
    },
    #[error(
        "alert delivery is running in another process ({holder}, since {since}, holding the lease until {expires}); nothing was skipped; run this again when its pass ends (a daemon delivers in short passes with pauses between them)"
    )]
    DeliveryRunning {
        holder: String,
        since: String,
        expires: String,
    },
    #[error(
        "sink {sink:?} moved on while this skip waited (the delivery lease expired or another skip ran); nothing was skipped; run it again to see what is pending now"
    )]
    CursorMoved { sink: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn configured_sinks(names: &[String]) -> String {
    if names.is_empty() {
        "it declares none (add them under sinks:, see config.example.yaml)".to_owned()
    } else {
        format!("its sinks are {}", names.join(", "))
    }
}

/// One alert a skip passes over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedSkip {
    /// The delivery id (`sink/stream/seq/rule`).
    pub id: String,
    pub rule: String,
    pub stream: Stream,
    pub seq: u64,
    /// What the event says, as alerts summarise it.
    pub summary: String,
}

/// What a skip would do: the alerts it passes over and the cursor move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkipPlan {
    pub sink: String,
    pub stream: Stream,
    pub alerts: Vec<PlannedSkip>,
    /// The cursor (seq and rules acknowledged for the next event) before
    /// and after.
    pub from: (u64, Vec<String>),
    pub to: (u64, Vec<String>),
}

/// The delivery lease, held while a skip is planned, confirmed and applied;
/// released when dropped.
pub struct SkipSession<'s> {
    store: &'s mut Store,
    holder: String,
}

impl std::fmt::Debug for SkipSession<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SkipSession")
            .field("holder", &self.holder)
            .finish_non_exhaustive()
    }
}

impl<'s> SkipSession<'s> {
    /// Takes the delivery lease; refused while another process delivers.
    pub fn start(store: &'s mut Store) -> Result<SkipSession<'s>, SkipError> {
        let holder = crate::sync::holder_id("alerts-skip");
        match store.acquire_lease(DELIVERY_LEASE, &holder, SKIP_LEASE_TTL) {
            Ok(_) => Ok(SkipSession { store, holder }),
            Err(StoreError::LeaseHeld {
                holder,
                since,
                expires,
                ..
            }) => Err(SkipError::DeliveryRunning {
                holder,
                since,
                expires,
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Finds the alerts `target` names in `sink`'s backlog.
    pub fn plan(
        &self,
        alerts: &AlertsConfig,
        sink: &str,
        target: SkipTarget,
    ) -> Result<SkipPlan, SkipError> {
        plan(self.store, alerts, sink, target)
    }

    /// Skips what `plan` names: moves the cursor and records each alert, in
    /// one transaction, if the cursor is still where the plan started.
    pub fn apply(self, plan: &SkipPlan) -> Result<Vec<SkipRecord>, SkipError> {
        let sink = plan.sink.clone();
        self.store
            .renew_lease(DELIVERY_LEASE, &self.holder, SKIP_LEASE_TTL)
            .map_err(|e| match e {
                StoreError::LeaseLost { .. } => SkipError::CursorMoved { sink: sink.clone() },
                e => e.into(),
            })?;
        let at = crate::store::now();
        let by = format!("{} (pid {})", user_name(), std::process::id());
        let records: Vec<SkipRecord> = plan
            .alerts
            .iter()
            .map(|a| SkipRecord {
                id: a.id.clone(),
                stream: a.stream,
                seq: a.seq,
                rule: a.rule.clone(),
                skipped_at: at.clone(),
                skipped_by: by.clone(),
            })
            .collect();
        let moved = self.store.skip_alerts(
            &plan.sink,
            plan.stream,
            (plan.from.0, &plan.from.1),
            (plan.to.0, &plan.to.1),
            &records,
        )?;
        if !moved {
            return Err(SkipError::CursorMoved { sink });
        }
        tracing::info!(
            sink = %plan.sink,
            stream = plan.stream.as_str(),
            alerts = records.len(),
            first = records.first().map_or("", |r| r.id.as_str()),
            last = records.last().map_or("", |r| r.id.as_str()),
            by = %by,
            "Skipped alerts without delivering them."
        );
        Ok(records)
    }
}

impl Drop for SkipSession<'_> {
    fn drop(&mut self) {
        if let Err(error) = self.store.release_lease(DELIVERY_LEASE, &self.holder) {
            tracing::warn!(%error, "Could not release the alert delivery lease; it expires by itself.");
        }
    }
}

/// The login name for the record (`$USER`, `$LOGNAME`), not a secret.
fn user_name() -> String {
    ["USER", "LOGNAME", "USERNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "unknown user".to_owned())
}

fn planned(sink: &str, event: &AlertEvent, rule: &Rule) -> PlannedSkip {
    PlannedSkip {
        id: delivery_id(sink, event.stream(), event.seq(), &rule.name),
        rule: rule.name.clone(),
        stream: event.stream(),
        seq: event.seq(),
        summary: summary(event),
    }
}

/// Walks `stream` from the cursor (`seq`, `done`) as delivery does and
/// collects pending alerts: the first one only (`through` None), or every
/// one of an event up to `through`.
fn pending(
    store: &Store,
    sink: &str,
    rules: &RuleSet<'_>,
    stream: Stream,
    (seq, done): (u64, &[String]),
    through: Option<u64>,
) -> Result<Vec<PlannedSkip>, StoreError> {
    let mut first_syncs = HashMap::new();
    let mut matched = Vec::new();
    let mut out = Vec::new();
    let (mut after, mut done) = (seq, done.to_vec());
    loop {
        let events = load_batch(store, stream, after, BATCH, &mut first_syncs)?;
        let Some(last) = events.last().map(AlertEvent::seq) else {
            return Ok(out);
        };
        for (event, rule) in owed(&events, rules, after, &done, &first_syncs, &mut matched) {
            match through {
                None => return Ok(vec![planned(sink, event, rule)]),
                Some(n) if event.seq() <= n => out.push(planned(sink, event, rule)),
                Some(_) => return Ok(out),
            }
        }
        if events.len() < BATCH || through.is_some_and(|n| last >= n) {
            return Ok(out);
        }
        after = last;
        done.clear();
    }
}

fn plan(
    store: &Store,
    alerts: &AlertsConfig,
    sink: &str,
    target: SkipTarget,
) -> Result<SkipPlan, SkipError> {
    if !alerts.sinks.iter().any(|s| s.name == sink) {
        return Err(SkipError::UnknownSink {
            name: sink.to_owned(),
            configured: alerts.sinks.iter().map(|s| s.name.clone()).collect(),
        });
    }
    let cursor: SinkCursor = store.sink_cursor(sink)?.ok_or_else(|| SkipError::NotUsed {
        sink: sink.to_owned(),
    })?;
    let rules = RuleSet::new(alerts.rules_for(sink));
    let nothing = |what: String| SkipError::NothingPending {
        sink: sink.to_owned(),
        what,
    };
    let at = |stream: Stream| (cursor.seq(stream), cursor.done(stream));
    if let SkipTarget::Through(n) = target {
        let last = store.last_event_seq()?;
        if n > last {
            return Err(SkipError::BeyondLast {
                seq: n,
                last,
                acknowledged: cursor.change_seq,
            });
        }
        let alerts = if n <= cursor.change_seq {
            Vec::new()
        } else {
            pending(
                store,
                sink,
                &rules,
                Stream::Change,
                at(Stream::Change),
                Some(n),
            )?
        };
        if alerts.is_empty() {
            return Err(nothing(format!(
                "for change events up to {n} (it acknowledged up to {})",
                cursor.change_seq
            )));
        }
        return Ok(SkipPlan {
            sink: sink.to_owned(),
            stream: Stream::Change,
            alerts,
            from: (cursor.change_seq, cursor.change_done.clone()),
            to: (n, Vec::new()),
        });
    }
    let streams: &[Stream] = match target {
        SkipTarget::SystemHead => &[Stream::System],
        _ => &[Stream::Change, Stream::System],
    };
    for &stream in streams {
        let found = pending(store, sink, &rules, stream, at(stream), None)?;
        let Some(head) = found.into_iter().next() else {
            continue;
        };
        let (seq, done) = at(stream);
        // As a delivery acknowledging just this alert moves the cursor.
        let to = {
            let (mut to_seq, mut to_done) = (seq, done.to_vec());
            super::deliver::acknowledge_one(&mut to_seq, &mut to_done, head.seq, &head.rule);
            (to_seq, to_done)
        };
        return Ok(SkipPlan {
            sink: sink.to_owned(),
            stream,
            from: (seq, done.to_vec()),
            to,
            alerts: vec![head],
        });
    }
    Err(nothing(match target {
        SkipTarget::SystemHead => format!(
            "for system events (it acknowledged up to system event {})",
            cursor.system_seq
        ),
        _ => format!(
            "(it acknowledged up to change event {} and system event {}, and nothing after them matches its rules)",
            cursor.change_seq, cursor.system_seq
        ),
    }))
}
