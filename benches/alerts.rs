//! Alert rule evaluation benchmark: 100 rules (exact and wildcard types,
//! classes, system events; predicates with equals, in, regex, exists and
//! changed-to) over 100k synthetic change events. Reports events per second
//! for evaluation alone and for JSON parsing plus evaluation (what a
//! delivery pass adds to reading the outbox).
//!
//! `cargo bench --bench alerts [-- EVENTS]` (default 100000).

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sextant::alerts::{AlertEvent, RuleSet};
use sextant::config::Config;

const TYPES: usize = 20;
const RUNS: usize = 5;

fn type_name(i: usize) -> String {
    format!("bench_kind{i}_thing")
}

fn rules_yaml() -> String {
    let mut out = String::from("sinks:\n  - { name: s, type: stdout }\nrules:\n");
    for i in 0..100 {
        let ty = type_name(i % TYPES);
        let body = match i % 10 {
            0 | 1 => format!("{{ _type: {ty}, action: created }}"),
            2 => format!("{{ _type: {ty}, action: created, after.name: {{ regex: \"^prod-[0-9]+7$\" }} }}"),
            3 => format!("{{ _type: {ty}, action: updated, changes.status: {{ to: [failed, error] }} }}"),
            4 => format!("{{ _type: {ty}, after.owner: {{ in: [alice, bob, carol] }} }}"),
            5 => format!("{{ _type: {ty}, action: deleted, before.env: production }}"),
            6 => format!("{{ _type: \"bench_kind{}*\", after.secret: {{ exists: true }} }}", i % TYPES),
            7 => "{ _type: \"*_thing\", action: updated, changes.owner: { exists: true }, after.env: production }".to_owned(),
            8 => format!("{{ _class: Class{}, action: [created, deleted], after.size: {} }}", i % 5, i),
            _ => "{ object: system, action: [sync_failed, connection_test_failed] }".to_owned(),
        };
        out.push_str(&format!(
            "  - {{ name: r{i}, match: {body}, sinks: [s] }}\n"
        ));
    }
    out
}

fn events(n: usize) -> Vec<Value> {
    let statuses = ["success", "running", "failed", "error", "queued"];
    let owners = ["alice", "bob", "carol", "dave", "erin", "frank"];
    (0..n)
        .map(|i| {
            let ty = type_name(i % TYPES);
            let object = json!({
                "_key": format!("{ty}:{i}"), "_type": ty, "_class": format!("Class{}", i % 5),
                "name": format!("prod-{i}"), "displayName": format!("prod-{i}"),
                "owner": owners[i % owners.len()], "env": if i % 3 == 0 { "production" } else { "staging" },
                "status": statuses[i % statuses.len()], "size": i % 120, "createdOn": 1_700_000_000_000u64 + i as u64,
                "secret": if i % 7 == 0 { Value::Bool(true) } else { Value::Null },
            });
            let base = json!({"seq": i + 1, "time": "2026-01-01T00:00:00.000Z", "integration": "bench",
                "sync_id": 2, "object": "entity", "_type": ty, "_class": format!("Class{}", i % 5),
                "_key": format!("{ty}:{i}")});
            let mut event = base.as_object().cloned().unwrap_or_default();
            match i % 3 {
                0 => {
                    event.insert("action".into(), json!("created"));
                    event.insert("after".into(), object);
                }
                1 => {
                    let mut before = object.clone();
                    before["status"] = json!("running");
                    before["owner"] = json!("zed");
                    event.insert("action".into(), json!("updated"));
                    event.insert("changes".into(), json!({
                        "status": {"old": "running", "new": object["status"]},
                        "owner": {"old": "zed", "new": object["owner"]}}));
                    event.insert("before".into(), before);
                    event.insert("after".into(), object);
                }
                _ => {
                    event.insert("action".into(), json!("deleted"));
                    event.insert("before".into(), object);
                }
            }
            Value::Object(event)
        })
        .collect()
}

fn rate(n: usize, d: Duration) -> String {
    let per_s = n as f64 / d.as_secs_f64();
    if per_s >= 1e6 {
        format!("{:.2}M events/s", per_s / 1e6)
    } else {
        format!("{:.0}k events/s", per_s / 1e3)
    }
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let config = match Config::parse("bench.yaml", &rules_yaml()) {
        Ok(c) => c.alerts,
        Err(e) => {
            eprintln!("bench rules are invalid: {e}");
            std::process::exit(1);
        }
    };
    let set = RuleSet::new(&config.rules);
    let values = events(n);
    let lines: Vec<String> = values.iter().map(Value::to_string).collect();
    let parsed: Vec<AlertEvent> = lines
        .iter()
        .filter_map(|l| AlertEvent::from_json(l).ok())
        .collect();
    assert_eq!(parsed.len(), n, "every synthetic event parses");
    println!("{} rules over {n} events, best of {RUNS} runs:", set.len());

    let mut best = Duration::MAX;
    let mut matches = 0usize;
    let mut out = Vec::new();
    for _ in 0..RUNS {
        let start = Instant::now();
        matches = 0;
        for event in &parsed {
            out.clear();
            set.matching_into(event, &mut out);
            matches += out.len();
        }
        best = best.min(start.elapsed());
    }
    println!(
        "  evaluate            {:>8.1} ms  {:>16}  ({matches} alerts)",
        best.as_secs_f64() * 1e3,
        rate(n, best)
    );

    let mut best = Duration::MAX;
    for _ in 0..RUNS {
        let start = Instant::now();
        let mut m = 0usize;
        for line in &lines {
            let Ok(event) = AlertEvent::from_json(line) else {
                continue;
            };
            out.clear();
            set.matching_into(&event, &mut out);
            m += out.len();
        }
        assert_eq!(m, matches);
        best = best.min(start.elapsed());
    }
    println!(
        "  parse JSON + evaluate {:>6.1} ms  {:>16}",
        best.as_secs_f64() * 1e3,
        rate(n, best)
    );
}
