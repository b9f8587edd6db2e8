//! `sextant alerts list|test` and the demo's alerts, through the real binary.

mod common;

use std::path::Path;

use serde_json::Value;

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.yaml");
const SECRET: &str = "whsec-cli-test-5a4b3c2d1e";

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write file");
    path.display().to_string()
}

const CONFIG: &str = "\
sinks:
  - name: console
    type: stdout
  - name: hook
    type: webhook
    url: https://hooks.example.com/services/T0/B0/pathtoken0123
    secret: env:SEXTANT_CLI_WEBHOOK_SECRET
rules:
  - name: job-failed
    severity: high
    description: A job's status changed to failed
    match:
      _type: circleci_job
      action: updated
      changes.status: { to: failed }
    sinks: [console, hook]
  - name: sync-failed
    integrations: [acme]
    match: { object: system, action: sync_failed }
    sinks: [hook]
";

const EVENTS: &str = r#"{"seq":7,"time":"2025-03-11T09:12:40.000Z","integration":"acme","sync_id":2,"action":"updated","object":"entity","_type":"circleci_job","_class":"Task","_key":"circleci_job:1","changes":{"status":{"old":"running","new":"failed"}},"before":{"name":"test","status":"running"},"after":{"name":"test","status":"failed"}}
{"seq":8,"time":"2025-03-11T09:12:40.000Z","integration":"acme","sync_id":2,"action":"updated","object":"entity","_type":"circleci_job","_class":"Task","_key":"circleci_job:2","changes":{"status":{"old":"failed","new":"success"}},"before":{"name":"build","status":"failed"},"after":{"name":"build","status":"success"}}

{"seq":3,"time":"2025-03-11T09:13:00.000Z","integration":"acme","sync_id":4,"object":"system","action":"sync_failed","_type":"sextant_sync_run","_class":"SyncRun","_key":"sextant_sync_run:4","after":{"status":"failed","error":"fetch-account: 401"}}
"#;

#[test]
fn alerts_test_evaluates_saved_events_and_sends_nothing() {
    let home = tempfile::tempdir().expect("tempdir");
    let config = write(home.path(), "alerts.yaml", CONFIG);
    let events = write(home.path(), "events.jsonl", EVENTS);
    let env = [("SEXTANT_CLI_WEBHOOK_SECRET", SECRET)];

    let run = common::sextant(
        home.path(),
        &[
            "--config",
            &config,
            "alerts",
            "test",
            "job-failed",
            "--events",
            &events,
        ],
        &env,
    );
    assert_eq!(run.code, 0, "{}", run.all_output());
    assert_eq!(
        run.stdout,
        "[high] job-failed: updated circleci_job \"test\" in acme (status: \"running\" → \"failed\")\n\
         1 of 3 events match rule \"job-failed\"; nothing was sent.\n"
    );

    let run = common::sextant(
        home.path(),
        &[
            "--config",
            &config,
            "alerts",
            "test",
            "sync-failed",
            "--events",
            &events,
            "--json",
        ],
        &env,
    );
    assert_eq!(run.code, 0, "{}", run.all_output());
    let alerts: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(alerts.len(), 1, "{}", run.stdout);
    assert_eq!(alerts[0]["id"], "test/system/3/sync-failed");
    assert_eq!(alerts[0]["event"]["action"], "sync_failed");
    assert!(
        alerts[0]["summary"]
            .as_str()
            .expect("summary")
            .ends_with(": fetch-account: 401")
    );
    assert!(
        run.stderr
            .contains("1 of 3 events match rule \"sync-failed\"")
    );

    // Nothing was sent: no sink has been used.
    let list = common::sextant(home.path(), &["--config", &config, "alerts", "list"], &env);
    assert_eq!(list.code, 0, "{}", list.all_output());
    assert_eq!(
        list.stdout.matches("not used yet").count(),
        2,
        "{}",
        list.stdout
    );
    assert!(list.stdout.contains("job-failed") && list.stdout.contains("high"));
    assert!(
        list.stdout.contains("webhook  https://hooks.example.com/…"),
        "{}",
        list.stdout
    );
    for run in [&run, &list] {
        let all = run.all_output();
        assert!(
            !all.contains(SECRET) && !all.contains("pathtoken0123"),
            "{all}"
        );
    }
}

#[test]
fn alerts_test_names_bad_input() {
    let home = tempfile::tempdir().expect("tempdir");
    let config = write(home.path(), "alerts.yaml", CONFIG);
    let events = write(
        home.path(),
        "events.jsonl",
        &format!("{}\nnot json\n", EVENTS.lines().next().unwrap_or("")),
    );
    let run = common::sextant(
        home.path(),
        &[
            "--config",
            &config,
            "alerts",
            "test",
            "job-failed",
            "--events",
            &events,
        ],
        &[],
    );
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("events.jsonl:2: not a change or system event"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("as sextant events list prints them"),
        "{}",
        run.stderr
    );

    let run = common::sextant(
        home.path(),
        &[
            "--config", &config, "alerts", "test", "nope", "--events", &events,
        ],
        &[],
    );
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains(
            "no rule named \"nope\" in the config; its rules are job-failed, sync-failed"
        ),
        "{}",
        run.stderr
    );

    let missing = home.path().join("missing.jsonl");
    let run = common::sextant(
        home.path(),
        &[
            "--config",
            &config,
            "alerts",
            "test",
            "job-failed",
            "--events",
            &missing.display().to_string(),
        ],
        &[],
    );
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("cannot read events file"),
        "{}",
        run.stderr
    );

    let bad = write(
        home.path(),
        "bad.yaml",
        "sinks: []\nrules:\n  - { name: r, match: { after.name: { regex: \"(\" } }, sinks: [x] }\n",
    );
    let run = common::sextant(home.path(), &["--config", &bad, "alerts", "list"], &[]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains(
            "rules[0] \"r\": match.after.name.regex: \"(\" is not a valid regular expression"
        ) && run
            .stderr
            .contains("rules[0] \"r\": sinks[0]: no sink named \"x\""),
        "{}",
        run.stderr
    );
}

#[test]
fn demo_events_saved_with_events_list_feed_alerts_test() {
    let home = tempfile::tempdir().expect("tempdir");
    let data = home.path().join("data");
    let demo = common::sextant(&data, &["demo"], &[]);
    assert_eq!(demo.code, 0, "{}", demo.all_output());
    assert!(demo.stdout.contains("4. Alerts raised"), "{}", demo.stdout);
    assert!(demo.stdout.contains("  12 alerts."), "{}", demo.stdout);
    assert!(
        demo.stdout
            .contains("[high] job-failed: updated circleci_job \"test\" in demo-circleci"),
        "{}",
        demo.stdout
    );
    assert!(
        demo.stdout
            .contains("[medium] new-user: created circleci_user \"Dmitri Volkov\""),
        "{}",
        demo.stdout
    );

    let events = common::sextant(&data, &["events", "list"], &[]);
    assert_eq!(events.code, 0);
    let file = write(home.path(), "events.jsonl", &events.stdout);
    let run = common::sextant(
        &data,
        &[
            "--config",
            EXAMPLE,
            "alerts",
            "test",
            "project-variable-created",
            "--events",
            &file,
        ],
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.all_output());
    // Three variables in the first sync (a baseline at delivery, but test
    // shows every match) and two in the second.
    let total = events.stdout.lines().count();
    assert!(
        run.stdout.ends_with(&format!(
            "5 of {total} events match rule \"project-variable-created\"; nothing was sent.\n"
        )),
        "{}",
        run.stdout
    );
}
