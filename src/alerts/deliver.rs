//! Durable, at-least-once, ordered delivery of alerts to every sink.
//!
//! Each sink follows the change-event outbox and the system events with its
//! own cursor in the database. A pass reads events after the cursor in
//! batches, evaluates the sink's rules, sends the alerts in order, and moves
//! the cursor only over what the sink acknowledged: a webhook alert is
//! acknowledged by a 2xx answer (and recorded at once), a stdout or file
//! batch once written (and, for a file, synced to disk). A sink that fails
//! stops where it is and keeps its backlog for the next pass; sinks run
//! concurrently, so one that is down or slow never holds back another.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use serde::Serialize;

use super::eval::RuleSet;
use super::event::{AlertEvent, Stream};
use super::rules::{AlertsConfig, Rule, SinkConfig, SinkKind, Start};
use super::sinks::{AlertPayload, SharedWriter, SinkError, Target, Webhook, http_client};
use crate::store::{SinkCursor, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The lease (in `run_leases`) a delivery pass holds.
pub const DELIVERY_LEASE: &str = "sextant:alert-delivery";
/// How long a delivery pass may hold it.
pub const DELIVERY_LEASE_TTL: std::time::Duration = std::time::Duration::from_secs(600);

/// What one delivery pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DeliveryReport {
    /// System events recorded by this pass (failed syncs, connection tests).
    pub system_events: usize,
    pub sinks: Vec<SinkReport>,
    /// Set when the pass was skipped because another process (a daemon, or
    /// a `sync` ending) holds the delivery lease: its holder.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped_for: Option<String>,
}

impl DeliveryReport {
    pub fn delivered(&self) -> u64 {
        self.sinks.iter().map(|s| s.delivered).sum()
    }

    pub fn failed(&self) -> impl Iterator<Item = &SinkReport> {
        self.sinks.iter().filter(|s| s.error.is_some())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SinkReport {
    pub sink: String,
    /// Alerts acknowledged in this pass.
    pub delivered: u64,
    /// The cursors after the pass.
    pub change_seq: u64,
    pub system_seq: u64,
    /// Why the sink stopped; its backlog is kept for the next pass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Before runs start (`sync`, the daemon): gives new sinks their cursors
/// ([`register_sinks`]) and warns about rules that name an integration the
/// store does not have.
pub fn prepare(store: &mut Store, alerts: &AlertsConfig) -> Result<(), StoreError> {
    register_sinks(store, alerts)?;
    let known = store.integrations()?.into_iter().map(|i| i.name).collect();
    for (rule, integration) in alerts.unknown_integrations(&known) {
        tracing::warn!(
            rule,
            integration,
            "Alert rule {rule:?} names integration {integration:?}, which does not exist, so it never matches it; fix the name under the rule's integrations: (sextant integration list shows them)."
        );
    }
    Ok(())
}

/// Moves a cursor `(seq, done)` over one acknowledged alert (`rule` on the
/// event `event_seq`): everything before its event is acknowledged, and
/// this rule of its event. Delivery and `alerts skip` both move cursors so.
pub(crate) fn acknowledge_one(seq: &mut u64, done: &mut Vec<String>, event_seq: u64, rule: &str) {
    let before = event_seq.saturating_sub(1);
    if before > *seq {
        *seq = before;
        done.clear();
    }
    done.push(rule.to_owned());
}

/// Gives each configured sink its cursor if it has none yet (`start: end`
/// starts at the newest event now). Called before a run starts (`sync`, the
/// daemon) as well as by each delivery pass, so a sink added with
/// `start: end` gets the alerts of the run it was added for.
pub fn register_sinks(
    store: &mut Store,
    alerts: &AlertsConfig,
) -> Result<Vec<SinkCursor>, StoreError> {
    alerts
        .sinks
        .iter()
        .map(|sink| store.register_sink(&sink.name, sink.start == Start::End))
        .collect()
}

/// Delivers alerts; build one and call [`Deliverer::deliver_pending`] as
/// often as wanted (the daemon after each sync and on a timer, `sextant
/// sync` at the end of its run). Holds the one webhook HTTP client.
pub struct Deliverer {
    client: OnceLock<reqwest::Client>,
    stdout: SharedWriter,
    batch: usize,
    /// The caller prints sink failures itself (`sextant sync`): the pass
    /// logs them at debug instead of warn, so each is shown once.
    caller_reports_failures: bool,
}

impl Default for Deliverer {
    fn default() -> Self {
        Self::new(Arc::new(Mutex::new(Box::new(std::io::stdout()))))
    }
}

impl std::fmt::Debug for Deliverer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deliverer")
            .field("batch", &self.batch)
            .finish_non_exhaustive()
    }
}

impl Deliverer {
    /// A deliverer whose stdout sinks write to `stdout`.
    pub fn new(stdout: SharedWriter) -> Self {
        Deliverer {
            client: OnceLock::new(),
            stdout,
            batch: 1000,
            caller_reports_failures: false,
        }
    }

    /// For callers that show the report's sink failures themselves: the
    /// pass then logs them at debug level instead of as warnings, so a
    /// terminal shows each failure once.
    pub fn caller_reports_failures(mut self) -> Self {
        self.caller_reports_failures = true;
        self
    }

    /// Events read per batch (at least 1).
    pub fn batch_size(mut self, batch: usize) -> Self {
        self.batch = batch.max(1);
        self
    }

    /// Records new system events, then brings every sink up to date as far
    /// as it acknowledges. Sink failures are in the report (and in the
    /// database, for `alerts list`), not an error: only the store failing is.
    pub async fn deliver_pending(
        &self,
        store: &mut Store,
        alerts: &AlertsConfig,
    ) -> Result<DeliveryReport, AlertError> {
        if alerts.sinks.is_empty() {
            return Ok(DeliveryReport::default());
        }
        // One delivering process at a time, so two never send the same
        // alert concurrently (a pass longer than the lease may still overlap
        // the next one: delivery is at-least-once, ids are stable).
        let holder = crate::sync::holder_id("alerts");
        match store.acquire_lease(DELIVERY_LEASE, &holder, DELIVERY_LEASE_TTL) {
            Ok(_) => {}
            Err(StoreError::LeaseHeld { holder, .. }) => {
                tracing::debug!(%holder, "Another process is delivering alerts; skipping this pass.");
                return Ok(DeliveryReport {
                    skipped_for: Some(holder),
                    ..DeliveryReport::default()
                });
            }
            Err(e) => return Err(e.into()),
        }
        let result = self.pass(store, alerts, &holder).await;
        if let Err(error) = store.release_lease(DELIVERY_LEASE, &holder) {
            tracing::warn!(%error, "Could not release the alert delivery lease; it expires by itself.");
        }
        result
    }

    async fn pass(
        &self,
        store: &mut Store,
        alerts: &AlertsConfig,
        holder: &str,
    ) -> Result<DeliveryReport, AlertError> {
        let system_events = store.record_system_events()?;
        let cursors = register_sinks(store, alerts)?;
        let sinks = {
            let shared = tokio::sync::Mutex::new(&mut *store);
            let passes = alerts
                .sinks
                .iter()
                .zip(cursors)
                .map(|(sink, cursor)| self.run_sink(&shared, alerts, sink, cursor, holder));
            futures::future::join_all(passes).await
        };
        for report in &sinks {
            store.set_sink_error(&report.sink, report.error.as_deref())?;
            match &report.error {
                Some(error) if self.caller_reports_failures => {
                    tracing::debug!(sink = %report.sink, delivered = report.delivered, %error, "Alert sink failed; its alerts stay queued.")
                }
                Some(error) => {
                    tracing::warn!(sink = %report.sink, delivered = report.delivered, %error, "Alert sink failed; its alerts stay queued.")
                }
                None if report.delivered > 0 => {
                    tracing::info!(sink = %report.sink, delivered = report.delivered, "Alerts delivered.")
                }
                None => {}
            }
        }
        Ok(DeliveryReport {
            system_events,
            sinks,
            skipped_for: None,
        })
    }

    fn open(&self, sink: &SinkConfig) -> Result<Target, SinkError> {
        Ok(match &sink.kind {
            SinkKind::Stdout(format) => Target::Stdout {
                out: Arc::clone(&self.stdout),
                format: *format,
            },
            SinkKind::File(path) => Target::File { path: path.clone() },
            SinkKind::Webhook(config) => {
                let client = match self.client.get() {
                    Some(client) => client.clone(),
                    None => {
                        let client = http_client()?;
                        let _ = self.client.set(client.clone());
                        client
                    }
                };
                Target::Webhook(Box::new(Webhook::open(client, config)?))
            }
        })
    }

    async fn run_sink(
        &self,
        store: &tokio::sync::Mutex<&mut Store>,
        alerts: &AlertsConfig,
        sink: &SinkConfig,
        cursor: SinkCursor,
        holder: &str,
    ) -> SinkReport {
        let mut report = SinkReport {
            sink: sink.name.clone(),
            delivered: 0,
            change_seq: cursor.change_seq,
            system_seq: cursor.system_seq,
            error: None,
        };
        let rules = RuleSet::new(alerts.rules_for(&sink.name));
        let mut pass = Pass {
            deliverer: self,
            store,
            sink,
            rules,
            target: None,
            first_syncs: HashMap::new(),
            report: &mut report,
            holder,
            renewed: std::time::Instant::now(),
        };
        for stream in [Stream::Change, Stream::System] {
            let result = pass
                .stream(stream, cursor.seq(stream), cursor.done(stream).to_vec())
                .await;
            if let Err(message) = result {
                pass.report.error = Some(format!("sink {:?}: {message}", sink.name));
                break;
            }
        }
        report
    }
}

/// One sink's pass.
struct Pass<'a, 's> {
    deliverer: &'a Deliverer,
    store: &'a tokio::sync::Mutex<&'s mut Store>,
    sink: &'a SinkConfig,
    rules: RuleSet<'a>,
    target: Option<Target>,
    /// Per integration, the sync whose events are its baseline.
    first_syncs: HashMap<String, Option<i64>>,
    report: &'a mut SinkReport,
    /// The delivery lease this pass holds, and when it was last renewed.
    holder: &'a str,
    renewed: std::time::Instant,
}

fn store_error(e: StoreError) -> String {
    format!("the store failed: {e}")
}

impl Pass<'_, '_> {
    fn set_seq(&mut self, stream: Stream, seq: u64) {
        match stream {
            Stream::Change => self.report.change_seq = seq,
            Stream::System => self.report.system_seq = seq,
        }
    }

    async fn ack(
        &mut self,
        stream: Stream,
        seq: u64,
        done: &[String],
        delivered: u64,
    ) -> Result<(), String> {
        let mut store = self.store.lock().await;
        // What the receiver accepted is recorded first, whatever happens to
        // the lease (the cursor only moves forward, so this is always safe).
        store
            .ack_sink(&self.sink.name, stream, seq, done, delivered)
            .map_err(store_error)?;
        self.report.delivered += delivered;
        self.set_seq(stream, seq);
        // A long pass (a slow webhook) keeps its lease; one that lost it
        // stops, so two processes never deliver side by side for long.
        if self.renewed.elapsed() > DELIVERY_LEASE_TTL / 4 {
            store
                .renew_lease(DELIVERY_LEASE, self.holder, DELIVERY_LEASE_TTL)
                .map_err(|e| format!("alert delivery stopped: {e}"))?;
            self.renewed = std::time::Instant::now();
        }
        Ok(())
    }

    /// Reads the next batch and the baselines of its integrations.
    async fn load(&mut self, stream: Stream, after: u64) -> Result<Vec<AlertEvent>, String> {
        let store = self.store.lock().await;
        load_batch(
            &store,
            stream,
            after,
            self.deliverer.batch,
            &mut self.first_syncs,
        )
        .map_err(store_error)
    }

    fn target(&mut self) -> Result<&mut Target, String> {
        if self.target.is_none() {
            self.target = Some(self.deliverer.open(self.sink).map_err(|e| e.message)?);
        }
        self.target
            .as_mut()
            .ok_or_else(|| "the sink could not be opened".to_owned())
    }

    /// Delivers one stream from `seq` (all acknowledged up to it; `done`
    /// names the rules acknowledged for `seq + 1`).
    async fn stream(
        &mut self,
        stream: Stream,
        mut seq: u64,
        mut done: Vec<String>,
    ) -> Result<(), String> {
        if self.rules.is_empty() {
            // Nothing can match: skip to the newest event.
            let last = {
                let store = self.store.lock().await;
                match stream {
                    Stream::Change => store.last_event_seq(),
                    Stream::System => store.last_system_seq(),
                }
                .map_err(store_error)?
            };
            if last > seq {
                self.ack(stream, last, &[], 0).await?;
            }
            return Ok(());
        }
        let mut matched: Vec<&Rule> = Vec::new();
        loop {
            let events = self.load(stream, seq).await?;
            let Some(last) = events.last().map(AlertEvent::seq) else {
                return Ok(());
            };
            let todo = owed(
                &events,
                &self.rules,
                seq,
                &done,
                &self.first_syncs,
                &mut matched,
            );
            let name = self.sink.name.clone();
            let payloads: Vec<AlertPayload<'_>> = todo
                .iter()
                .map(|(event, rule)| AlertPayload::new(&name, rule, event))
                .collect();
            if payloads.is_empty() {
                self.ack(stream, last, &[], 0).await?;
            } else if self.target()?.one_by_one() {
                for payload in &payloads {
                    let Some(Target::Webhook(hook)) = self.target.as_ref() else {
                        return Err("the webhook is not open".to_owned());
                    };
                    hook.post(payload).await.map_err(|e| e.message)?;
                    acknowledge_one(&mut seq, &mut done, payload.event.seq(), payload.rule);
                    self.ack(stream, seq, &done, 1).await?;
                }
                self.ack(stream, last, &[], 0).await?;
            } else {
                self.target()?
                    .write_batch(&payloads)
                    .map_err(|e| e.message)?;
                self.ack(stream, last, &[], payloads.len() as u64).await?;
            }
            seq = last;
            done.clear();
            if events.len() < self.deliverer.batch {
                return Ok(());
            }
        }
    }
}

/// Reads the events of `stream` after `after` (at most `batch`), and notes
/// in `first_syncs` the baseline sync of each integration they belong to.
pub(crate) fn load_batch(
    store: &Store,
    stream: Stream,
    after: u64,
    batch: usize,
    first_syncs: &mut HashMap<String, Option<i64>>,
) -> Result<Vec<AlertEvent>, StoreError> {
    let events: Vec<AlertEvent> = match stream {
        Stream::Change => store
            .events(after, None, batch)?
            .into_iter()
            .map(AlertEvent::Change)
            .collect(),
        Stream::System => store
            .system_events(after, batch)?
            .into_iter()
            .map(AlertEvent::System)
            .collect(),
    };
    if stream == Stream::Change {
        for event in &events {
            if let Some(integration) = event.integration()
                && !first_syncs.contains_key(integration)
            {
                let first = store.first_sync_id(integration)?;
                first_syncs.insert(integration.to_owned(), first);
            }
        }
    }
    Ok(events)
}

/// Whether `event` belongs to its integration's first sync (a baseline).
fn is_baseline(first_syncs: &HashMap<String, Option<i64>>, event: &AlertEvent) -> bool {
    match event {
        AlertEvent::Change(e) => first_syncs
            .get(&e.integration)
            .is_some_and(|first| *first == Some(e.sync_id)),
        AlertEvent::System(_) => false,
    }
}

/// The alerts a sink still owes for `events`, in delivery order: each
/// matching rule of each event, except the rules in `done` for event
/// `seq + 1` (already acknowledged) and baseline events of rules without
/// `first_sync`. Delivery and `alerts skip` both walk a sink's backlog with
/// it, so they agree on what is pending.
pub(crate) fn owed<'e, 'r>(
    events: &'e [AlertEvent],
    rules: &RuleSet<'r>,
    seq: u64,
    done: &[String],
    first_syncs: &HashMap<String, Option<i64>>,
    matched: &mut Vec<&'r Rule>,
) -> Vec<(&'e AlertEvent, &'r Rule)> {
    let mut todo = Vec::new();
    for event in events {
        matched.clear();
        rules.matching_into(event, matched);
        for rule in matched.iter().copied() {
            let acknowledged = event.seq() == seq + 1 && done.contains(&rule.name);
            if acknowledged || (!rule.first_sync && is_baseline(first_syncs, event)) {
                continue;
            }
            todo.push((event, rule));
        }
    }
    todo
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acknowledging_one_alert_moves_the_cursor_to_its_event() {
        let (mut seq, mut done) = (3, vec!["a".to_owned()]);
        // Another rule of the event after the cursor: same place, one more rule.
        acknowledge_one(&mut seq, &mut done, 4, "b");
        assert_eq!(
            (seq, done.clone()),
            (3, vec!["a".to_owned(), "b".to_owned()])
        );
        // A later event: everything before it is done, then this rule of it.
        acknowledge_one(&mut seq, &mut done, 9, "c");
        assert_eq!((seq, done), (8, vec!["c".to_owned()]));
    }
}
