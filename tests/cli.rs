//! The real binary, end to end: demo, sync against the fixture server,
//! graph export, events, exit codes, and secrets never printed.

mod common;

use common::{SECRET_TOKEN_ENV, sextant, sextant_async, write_config};
use serde_json::Value;
use sextant::fixtures::{FIXTURE_TOKEN, FixtureServer, FixtureSet};

#[test]
fn demo_runs_two_syncs_and_prints_events() {
    let home = tempfile::tempdir().expect("tempdir");
    let run = sextant(home.path(), &["demo"], &[]);
    assert_eq!(run.code, 0, "{}", run.all_output());
    assert!(
        run.stdout.contains("1. Sync of today's estate"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("2. Sync of the same estate a day later")
    );
    assert!(run.stdout.contains("3. Change events of the second sync"));
    assert!(run.stdout.contains("+ created"), "{}", run.stdout);
    assert!(run.stdout.contains("- deleted"), "{}", run.stdout);
    assert!(run.stdout.contains("~ updated"), "{}", run.stdout);
    // --home keeps the data: the events are there afterwards.
    let events = sextant(home.path(), &["events", "list"], &[]);
    assert_eq!(events.code, 0, "{}", events.all_output());
    let lines: Vec<Value> = events
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert!(!lines.is_empty());
    let seqs: Vec<u64> = lines
        .iter()
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "seq is gap-free from 1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_export_and_events_through_the_binary() {
    let server = FixtureServer::start(FixtureSet::Day1)
        .await
        .expect("fixture server");
    let home = tempfile::tempdir().expect("tempdir");
    write_config(home.path(), &server.base_url(), "");
    let env = [(SECRET_TOKEN_ENV, FIXTURE_TOKEN)];

    let run = sextant_async(home.path(), &["sync", "acme", "--json"], &env).await;
    assert_eq!(run.code, 0, "{}", run.all_output());
    let report: Value =
        serde_json::from_str(&run.stdout).expect("sync --json prints one JSON object");
    assert_eq!(report["status"], "success");
    assert!(report["created"].as_u64().expect("created") > 0);
    assert_eq!(report["updated"], 0);
    assert_eq!(report["deleted"], 0);
    assert_eq!(report["steps"].as_array().expect("steps").len(), 11);

    let again = sextant_async(home.path(), &["sync", "acme", "--json"], &env).await;
    assert_eq!(again.code, 0, "{}", again.all_output());
    let report: Value = serde_json::from_str(&again.stdout).expect("json");
    assert_eq!(
        (
            report["created"].as_u64(),
            report["updated"].as_u64(),
            report["deleted"].as_u64()
        ),
        (Some(0), Some(0), Some(0)),
        "unchanged data emits nothing"
    );

    let export = sextant_async(
        home.path(),
        &["graph", "export", "--integration", "acme"],
        &[],
    )
    .await;
    assert_eq!(export.code, 0, "{}", export.all_output());
    let doc: Value = serde_json::from_str(&export.stdout).expect("export is one JSON document");
    let entities = doc["entities"].as_array().expect("entities");
    let relationships = doc["relationships"].as_array().expect("relationships");
    assert!(!entities.is_empty() && !relationships.is_empty());
    assert!(
        entities.iter().all(|e| e["tag.AccountName"] == "Acme"),
        "tag_account_name tags every entity"
    );

    let dot = sextant_async(home.path(), &["graph", "export", "--format", "dot"], &[]).await;
    assert_eq!(dot.code, 0);
    assert!(dot.stdout.starts_with("digraph sextant {"));
    assert_eq!(dot.stdout.matches(" -> ").count(), relationships.len());

    let events = sextant_async(
        home.path(),
        &["events", "list", "--integration", "acme", "--since", "3"],
        &[],
    )
    .await;
    assert_eq!(events.code, 0);
    let first: Value =
        serde_json::from_str(events.stdout.lines().next().expect("an event")).expect("json");
    assert_eq!(first["seq"], 4);
    for field in [
        "seq",
        "time",
        "integration",
        "sync_id",
        "action",
        "object",
        "_type",
        "_class",
        "_key",
        "after",
    ] {
        assert!(first.get(field).is_some(), "event has {field}: {first}");
    }

    // The token appears in no output and not in the database file.
    for output in [
        &run.stdout,
        &run.stderr,
        &again.stdout,
        &export.stdout,
        &events.stdout,
    ] {
        assert!(!output.contains(FIXTURE_TOKEN), "token leaked into output");
    }
    let db = std::fs::read(home.path().join("sextant.db")).expect("db");
    assert!(
        !db.windows(FIXTURE_TOKEN.len())
            .any(|w| w == FIXTURE_TOKEN.as_bytes()),
        "token in the database"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_token_fails_with_an_actionable_message_and_deletes_nothing() {
    let server = FixtureServer::start(FixtureSet::Day1)
        .await
        .expect("fixture server");
    let home = tempfile::tempdir().expect("tempdir");
    write_config(home.path(), &server.base_url(), "");
    let ok = sextant_async(
        home.path(),
        &["sync", "acme"],
        &[(SECRET_TOKEN_ENV, FIXTURE_TOKEN)],
    )
    .await;
    assert_eq!(ok.code, 0, "{}", ok.all_output());
    let before = sextant_async(home.path(), &["graph", "export"], &[])
        .await
        .stdout;

    let wrong = "wrong-token-0123456789";
    let run = sextant_async(
        home.path(),
        &["sync", "acme", "-vvv"],
        &[(SECRET_TOKEN_ENV, wrong)],
    )
    .await;
    assert_eq!(run.code, 1, "{}", run.all_output());
    let text = run.all_output();
    assert!(text.contains("ci-test"), "names the connection: {text}");
    assert!(text.contains("401"), "{text}");
    assert!(
        text.contains("personal API token"),
        "says what the token needs: {text}"
    );
    assert!(
        text.contains("sextant connection update ci-test --secrets-file"),
        "names the command that fixes it: {text}"
    );
    assert!(
        !text.contains(wrong),
        "the token never appears, even at trace level"
    );
    let after = sextant_async(home.path(), &["graph", "export"], &[])
        .await
        .stdout;
    assert_eq!(before, after, "a failed run deletes nothing");
    server.shutdown().await;
}

#[test]
fn bad_config_is_refused_with_every_problem() {
    let home = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        home.path().join("config.yaml"),
        "connections:\n  - name: c\n    type: circleci\n    secrets: {api_token: plain-literal-token}\nintegrations:\n  - name: x\n    connection: c\n    interval: 2x\n",
    )
    .expect("write");
    let run = sextant(home.path(), &["sync", "x"], &[]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("connections[0].secrets.api_token: is sensitive and must be a reference"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("integrations[0].interval: \"2x\" is not an interval"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("plain-literal-token"));
}

#[test]
fn unknown_integration_and_usage_errors() {
    let home = tempfile::tempdir().expect("tempdir");
    let run = sextant(home.path(), &["sync", "nope"], &[]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("no integration named \"nope\""),
        "{}",
        run.stderr
    );
    let usage = sextant(home.path(), &["graph", "export", "--format", "xml"], &[]);
    assert_eq!(usage.code, 2, "clap usage errors exit 2");
    let help = sextant(home.path(), &["--help"], &[]);
    assert!(help.stdout.contains("sextant demo"), "{}", help.stdout);
}

#[test]
fn connection_types_are_listed_with_their_schema() {
    let home = tempfile::tempdir().expect("tempdir");
    let list = sextant(home.path(), &["connection-type", "list"], &[]);
    assert!(list.stdout.contains("circleci"));
    let show = sextant(home.path(), &["connection-type", "show", "circleci"], &[]);
    let doc: Value = serde_json::from_str(&show.stdout).expect("json");
    assert_eq!(
        doc["secret_schema"]["properties"]["api_token"]["sensitive"],
        true
    );
    assert_eq!(
        doc["secret_schema"]["properties"]["host"]["default"],
        "https://circleci.com"
    );
    assert_eq!(
        doc["secret_schema"]["required"],
        serde_json::json!(["api_token"])
    );
    let missing = sextant(home.path(), &["connection-type", "show", "gitlab"], &[]);
    assert_eq!(missing.code, 1);
    assert!(missing.stderr.contains("known types: circleci"));
}

#[test]
fn an_unreadable_config_file_is_named_in_the_error() {
    let home = tempfile::tempdir().expect("tempdir");
    let missing = home.path().join("nope.yaml");
    let missing = missing.to_str().expect("utf-8 path");
    let run = sextant(home.path(), &["--config", missing, "sync", "x"], &[]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains(&format!("cannot read config {missing}")),
        "{}",
        run.stderr
    );
    std::fs::write(home.path().join("config.yaml"), "integrations: [unclosed\n").expect("write");
    let broken = sextant(home.path(), &["sync", "x"], &[]);
    assert_eq!(broken.code, 1);
    assert!(
        broken.stderr.contains("is not valid YAML for sextant"),
        "{}",
        broken.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_follow_prints_new_events_as_runs_commit() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    use std::time::Duration;

    let server = FixtureServer::start(FixtureSet::Day1)
        .await
        .expect("fixture server");
    let home = tempfile::tempdir().expect("tempdir");
    write_config(home.path(), &server.base_url(), "");
    let env = [(SECRET_TOKEN_ENV, FIXTURE_TOKEN)];
    let day1 = sextant_async(home.path(), &["sync", "acme", "--json"], &env).await;
    assert_eq!(day1.code, 0, "{}", day1.all_output());
    let first: u64 = serde_json::from_str::<Value>(&day1.stdout).expect("json")["created"]
        .as_u64()
        .expect("created");

    let mut child = Command::new(env!("CARGO_BIN_EXE_sextant"))
        .arg("--home")
        .arg(home.path())
        .args(["events", "list", "--follow", "--poll", "50ms"])
        .env_remove("SEXTANT_HOME")
        .env_remove("SEXTANT_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("events list --follow starts");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seqs = Vec::new();
    let read = |n: u64, seqs: &mut Vec<u64>| {
        while (seqs.len() as u64) < n {
            let line = rx
                .recv_timeout(Duration::from_secs(30))
                .expect("a followed event within 30s");
            let event: Value = serde_json::from_str(&line).expect("one JSON event per line");
            seqs.push(event["seq"].as_u64().expect("seq"));
        }
    };
    read(first, &mut seqs);

    // A day later: the follower prints the new run's events without restart.
    server.switch(FixtureSet::Day2);
    let day2 = sextant_async(home.path(), &["sync", "acme", "--json"], &env).await;
    assert_eq!(day2.code, 0, "{}", day2.all_output());
    let report: Value = serde_json::from_str(&day2.stdout).expect("json");
    let changes = ["created", "updated", "deleted"]
        .iter()
        .map(|k| report[*k].as_u64().expect("count"))
        .sum::<u64>();
    assert!(changes > 0);
    read(first + changes, &mut seqs);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        seqs,
        (1..=first + changes).collect::<Vec<_>>(),
        "every event once, in order"
    );
    assert!(
        rx.recv_timeout(Duration::from_millis(200)).is_err(),
        "nothing beyond the two runs"
    );
    server.shutdown().await;
}

#[test]
fn an_unusable_data_directory_is_named_with_the_fix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").expect("file");
    let home = file.join("home");
    let run = sextant(&home, &["events", "list"], &[]);
    assert_eq!(run.code, 1, "{}", run.all_output());
    assert!(
        run.stderr.contains("cannot create the data directory") && run.stderr.contains("not-a-dir"),
        "{}",
        run.stderr
    );
}
