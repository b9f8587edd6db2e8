//! Prometheus metrics of the daemon, kept in memory since it started and
//! rendered by hand in the text exposition format (series prefixed
//! `sextant_`): per integration runs by status, failures, duration,
//! entities, relationships and events; per source HTTP requests, retries and
//! 429s.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use crate::sync::{SyncError, SyncReport};

#[derive(Debug, Default, Clone)]
struct Integration {
    source: &'static str,
    runs: BTreeMap<&'static str, u64>,
    failures: u64,
    duration_sum: f64,
    duration_count: u64,
    entities: u64,
    relationships: u64,
    events: u64,
    requests: u64,
    retries: u64,
    throttled: u64,
    running: bool,
}

#[derive(Debug, Default)]
pub struct Metrics {
    integrations: Mutex<BTreeMap<String, Integration>>,
}

impl Metrics {
    fn update(&self, name: &str, f: impl FnOnce(&mut Integration)) {
        if let Ok(mut all) = self.integrations.lock() {
            f(all.entry(name.to_owned()).or_default());
        }
    }

    pub fn started(&self, name: &str, source: &'static str) {
        self.update(name, |m| {
            m.source = source;
            m.running = true;
        });
    }

    /// Records a finished run (or one that failed to finish).
    pub fn finished(&self, name: &str, result: &Result<SyncReport, SyncError>, took: Duration) {
        self.update(name, |m| {
            m.running = false;
            m.duration_sum += took.as_secs_f64();
            m.duration_count += 1;
            let status = match result {
                Ok(report) => {
                    m.entities = report.entities;
                    m.relationships = report.relationships;
                    m.events += report.created + report.updated + report.deleted;
                    for step in &report.steps {
                        m.requests += step.requests;
                        m.retries += step.retries;
                        m.throttled += step.throttled;
                    }
                    report.status.as_str()
                }
                Err(SyncError::Aborted { .. }) => "aborted",
                Err(_) => "failed",
            };
            if status == "failed" || status == "aborted" {
                m.failures += 1;
            }
            *m.runs.entry(status).or_default() += 1;
        });
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let all = match self.integrations.lock() {
            Ok(all) => all.clone(),
            Err(_) => BTreeMap::new(),
        };
        let mut out = String::new();
        // Rows are (series suffix, labels, value): a summary's `_sum` and
        // `_count` are series of one family.
        type Rows = Vec<(&'static str, String, String)>;
        let mut family = |name: &str, kind: &str, help: &str, rows: Rows| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (suffix, labels, value) in rows {
                let _ = writeln!(out, "{name}{suffix}{{{labels}}} {value}");
            }
        };
        let lbl = |name: &str| format!("integration=\"{}\"", escape(name));
        let src = |name: &str, m: &Integration| {
            format!(
                "integration=\"{}\",source=\"{}\"",
                escape(name),
                escape(m.source)
            )
        };
        let per = |f: &dyn Fn(&str, &Integration) -> (String, String)| -> Rows {
            all.iter()
                .map(|(n, m)| {
                    let (labels, value) = f(n, m);
                    ("", labels, value)
                })
                .collect()
        };
        family(
            "sextant_sync_runs_total",
            "counter",
            "Sync runs finished, by status.",
            all.iter()
                .flat_map(|(n, m)| {
                    m.runs.iter().map(move |(status, count)| {
                        (
                            "",
                            format!("{},status=\"{status}\"", lbl(n)),
                            count.to_string(),
                        )
                    })
                })
                .collect(),
        );
        family(
            "sextant_sync_failures_total",
            "counter",
            "Sync runs that failed or were aborted.",
            per(&|n, m| (lbl(n), m.failures.to_string())),
        );
        // One summary family (no quantiles): its `_sum` and `_count` series.
        family(
            "sextant_sync_duration_seconds",
            "summary",
            "Wall time of sync runs.",
            all.iter()
                .flat_map(|(n, m)| {
                    [
                        ("_sum", lbl(n), format!("{:.3}", m.duration_sum)),
                        ("_count", lbl(n), m.duration_count.to_string()),
                    ]
                })
                .collect(),
        );
        family(
            "sextant_sync_running",
            "gauge",
            "1 while a run of the integration is going in this daemon.",
            per(&|n, m| (lbl(n), u8::from(m.running).to_string())),
        );
        family(
            "sextant_sync_entities",
            "gauge",
            "Entities collected by the last successful or partial run.",
            per(&|n, m| (lbl(n), m.entities.to_string())),
        );
        family(
            "sextant_sync_relationships",
            "gauge",
            "Relationships collected by the last successful or partial run.",
            per(&|n, m| (lbl(n), m.relationships.to_string())),
        );
        family(
            "sextant_sync_events_total",
            "counter",
            "Change events emitted (created, updated, deleted).",
            per(&|n, m| (lbl(n), m.events.to_string())),
        );
        family(
            "sextant_source_http_requests_total",
            "counter",
            "HTTP requests sent to the source, retries included.",
            per(&|n, m| (src(n, m), m.requests.to_string())),
        );
        family(
            "sextant_source_http_retries_total",
            "counter",
            "HTTP requests sent again after a failure.",
            per(&|n, m| (src(n, m), m.retries.to_string())),
        );
        family(
            "sextant_source_http_throttled_total",
            "counter",
            "HTTP 429 responses received from the source.",
            per(&|n, m| (src(n, m), m.throttled.to_string())),
        );
        out
    }
}

/// Escapes a label value (backslash, quote, newline).
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn an_aborted_run_counts_as_a_failure() {
        let m = Metrics::default();
        m.started("acme", "circleci");
        let aborted = Err(SyncError::Aborted {
            integration: "acme".into(),
            sync_id: 1,
            reason: "shutdown".into(),
        });
        m.finished("acme", &aborted, Duration::from_millis(1500));
        let text = m.render();
        assert!(
            text.contains("sextant_sync_runs_total{integration=\"acme\",status=\"aborted\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("sextant_sync_failures_total{integration=\"acme\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "# TYPE sextant_sync_duration_seconds summary\n\
                 sextant_sync_duration_seconds_sum{integration=\"acme\"} 1.500\n\
                 sextant_sync_duration_seconds_count{integration=\"acme\"} 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("sextant_sync_running{integration=\"acme\"} 0"),
            "{text}"
        );
    }
}
