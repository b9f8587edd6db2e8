//! Scheduling, graceful shutdown and two daemons on one database.

use serde_json::json;
use sextant::fixtures::{Fault, FixtureServer, FixtureSet};

use crate::support::{
    Daemon, JsonBody, client, eventually, lease_count, runs, send, setup, sextant_async, token,
};

/// Finished runs of `acme` (status other than running).
fn finished(home: &std::path::Path) -> usize {
    runs(home)
        .iter()
        .filter(|r| r.1 == "acme" && r.2 != "running")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integrations_run_on_their_schedule_and_changes_apply_without_restart() {
    let server = FixtureServer::start(FixtureSet::Day1)
        .await
        .expect("server");
    let home = tempfile::tempdir().expect("tempdir");
    let h = home.path();
    // A six-field cron (seconds first): every second.
    setup(h, &server.base_url(), "cron:* * * * * *").await;
    let admin = token(
        h,
        "bot-admin",
        &["integrations:read-update", "integrations:read"],
    )
    .await;
    let daemon = Daemon::start(h, "5s");

    eventually("two scheduled runs", || async {
        (finished(h) >= 2).then_some(())
    })
    .await;
    let all = runs(h);
    assert!(
        all.iter()
            .filter(|r| r.1 == "acme")
            .all(|r| r.2 == "success" || r.2 == "running"),
        "{all:?}"
    );
    // Disabling it through the API unschedules it at once: the run count
    // stops growing (a run already under way may finish).
    let http = client();
    let (status, body) = send(
        http.patch(daemon.api("/api/v1/integrations/acme"))
            .bearer_auth(&admin)
            .json_body(&json!({"interval": "DISABLED"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["interval"], "DISABLED");
    eventually("the unscheduling", || async {
        daemon.log().contains("Unscheduled.").then_some(())
    })
    .await;
    eventually("no run in progress", || async {
        runs(h).iter().all(|r| r.2 != "running").then_some(())
    })
    .await;
    let acme_count = || runs(h).iter().filter(|r| r.1 == "acme").count();
    let settled = acme_count();
    // Another integration appears through the CLI: picked up by the reload.
    let add = sextant_async(
        h,
        &[
            "integration",
            "add",
            "beta",
            "--connection",
            "ci-test",
            "--interval",
            "cron:* * * * * *",
        ],
        &[],
    )
    .await;
    assert_eq!(add.code, 0, "{}", add.all_output());
    eventually("a scheduled run of the new integration", || async {
        runs(h)
            .iter()
            .any(|r| r.1 == "beta" && r.2 == "success")
            .then_some(())
    })
    .await;
    assert_eq!(
        acme_count(),
        settled,
        "acme ran again after it was disabled"
    );
    assert_eq!(daemon.terminate().await, 0);
}

/// A disabled connection takes its integrations off the schedule (each
/// firing would only be refused), and enabling it puts them back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_connection_takes_its_integrations_off_the_schedule() {
    let server = FixtureServer::start(FixtureSet::Day1)
        .await
        .expect("server");
    let home = tempfile::tempdir().expect("tempdir");
    let h = home.path();
    setup(h, &server.base_url(), "cron:* * * * * *").await;
    let admin = token(h, "bot-admin", &["connections:read-update"]).await;
    let daemon = Daemon::start(h, "5s");
    eventually("a scheduled run", || async {
        (finished(h) >= 1).then_some(())
    })
    .await;

    let http = client();
    let set_disabled = |disabled: bool| {
        http.patch(daemon.api("/api/v1/connection"))
            .bearer_auth(&admin)
            .json_body(&json!([{"name": "ci-test", "disabled": disabled}]))
    };
    let (status, body) = send(set_disabled(true)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["failed"], json!([]), "{body}");
    eventually("the unscheduling", || async {
        daemon.log().contains("Unscheduled.").then_some(())
    })
    .await;
    eventually("no run in progress", || async {
        runs(h).iter().all(|r| r.2 != "running").then_some(())
    })
    .await;
    let settled = finished(h);

    let (status, body) = send(set_disabled(false)).await;
    assert_eq!(status, 200, "{body}");
    eventually("a run after enabling", || async {
        (finished(h) > settled).then_some(())
    })
    .await;
    let log = daemon.log();
    assert!(
        !log.contains("could not start"),
        "a firing on the disabled connection was attempted:\n{log}"
    );
    assert!(
        runs(h).iter().all(|r| r.2 == "success" || r.2 == "running"),
        "{:?}",
        runs(h)
    );
    assert_eq!(daemon.terminate().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interval_integration_that_never_ran_gets_one_catch_up_run() {
    let server = FixtureServer::start(FixtureSet::Day1)
        .await
        .expect("server");
    let home = tempfile::tempdir().expect("tempdir");
    let h = home.path();
    setup(h, &server.base_url(), "1h").await;
    let daemon = Daemon::start(h, "5s");
    eventually("the catch-up run", || async {
        (finished(h) >= 1).then_some(())
    })
    .await;
    assert_eq!(daemon.terminate().await, 0);
    // It ran within its interval: a restart does not run it again.
    let daemon = Daemon::start(h, "5s");
    eventually("the schedule", || async {
        daemon.log().contains("Scheduled.").then_some(())
    })
    .await;
    assert_eq!(daemon.terminate().await, 0);
    assert_eq!(runs(h).len(), 1, "{:?}", runs(h));
}

/// The export as the CLI prints it.
async fn export(h: &std::path::Path) -> String {
    let run = sextant_async(h, &["graph", "export"], &[]).await;
    assert_eq!(run.code, 0, "{}", run.all_output());
    run.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_run_aborts_it_cleanly_after_the_grace_period() {
    let server = FixtureServer::start(FixtureSet::Day1)
        .await
        .expect("server");
    let home = tempfile::tempdir().expect("tempdir");
    let h = home.path();
    setup(h, &server.base_url(), "DISABLED").await;
    let first = sextant_async(h, &["sync", "acme"], &[]).await;
    assert_eq!(first.code, 0, "{}", first.all_output());
    let before = export(h).await;
    let events_before = sextant_async(h, &["events", "list"], &[]).await.stdout;

    // Day 2 would change the graph; its workflows hang instead.
    server.switch(FixtureSet::Day2);
    server.inject("/api/v2/workflow/*", Fault::Hang);
    let bot = token(h, "bot-runner", &["sync:run"]).await;
    let daemon = Daemon::start(h, "1s");
    let (status, body) = send(
        client()
            .post(daemon.api("/api/v1/integrations/acme/sync"))
            .bearer_auth(&bot),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let sync_id = body["sync_id"].as_i64().expect("sync id");
    eventually("a hung request", || async {
        server
            .requests()
            .iter()
            .any(|r| r.contains("/api/v2/workflow/"))
            .then_some(())
    })
    .await;
    assert_eq!(lease_count(h), 1, "the run holds its lease");

    assert_eq!(daemon.terminate().await, 0, "a clean exit after SIGTERM");
    let all = runs(h);
    let run = all.iter().find(|r| r.0 == sync_id).expect("the run");
    assert_eq!(run.2, "aborted", "{all:?}");
    assert!(
        run.3.as_deref().is_some_and(|e| e.contains("grace period")),
        "{run:?}"
    );
    assert_eq!(lease_count(h), 0, "the lease was released");
    assert_eq!(export(h).await, before, "the graph is as before the run");
    let events_after = sextant_async(h, &["events", "list"], &[]).await.stdout;
    assert_eq!(events_after, events_before, "no event of the aborted run");
    server.clear_faults();
    // The integration syncs normally afterwards.
    let again = sextant_async(h, &["sync", "acme"], &[]).await;
    assert_eq!(again.code, 0, "{}", again.all_output());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_run_finish_within_the_grace_period() {
    let server = FixtureServer::start(FixtureSet::Day1)
        .await
        .expect("server");
    let home = tempfile::tempdir().expect("tempdir");
    let h = home.path();
    setup(h, &server.base_url(), "DISABLED").await;
    server.inject("/api/v2/workflow/*", Fault::Hang);
    let bot = token(h, "bot-runner", &["sync:run"]).await;
    let daemon = Daemon::start(h, "10m");
    let (status, body) = send(
        client()
            .post(daemon.api("/api/v1/integrations/acme/sync"))
            .bearer_auth(&bot),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    eventually("a hung request", || async {
        server
            .requests()
            .iter()
            .any(|r| r.contains("/api/v2/workflow/"))
            .then_some(())
    })
    .await;
    let log = daemon.log.clone();
    let stopping = tokio::spawn(daemon.terminate());
    eventually("the daemon to start shutting down", || async {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("Shutting down")
            .then_some(())
    })
    .await;
    // Released within the grace period: the run finishes and commits.
    server.clear_faults();
    assert_eq!(stopping.await.expect("join"), 0);
    let all = runs(h);
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0].2, "success", "{all:?}");
    assert_eq!(lease_count(h), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_on_one_database_never_run_one_integration_twice() {
    let server = FixtureServer::start(FixtureSet::Day1)
        .await
        .expect("server");
    let home = tempfile::tempdir().expect("tempdir");
    let h = home.path();
    setup(h, &server.base_url(), "cron:* * * * * *").await;
    let bot = token(h, "bot-runner", &["sync:run", "integrations:read"]).await;
    // Every run hangs until released, so a second run could only start by
    // ignoring the lease.
    server.inject("/api/v2/workflow/*", Fault::Hang);
    let a = Daemon::start(h, "1s");
    let b = Daemon::start(h, "1s");
    eventually("one run in progress", || async {
        (runs(h).iter().filter(|r| r.2 == "running").count() == 1).then_some(())
    })
    .await;
    // Both daemons fire every second; the one without the lease skips.
    eventually("a skipped scheduled run", || async {
        let logs = format!("{}{}", a.log(), b.log());
        logs.contains("Scheduled run skipped").then_some(())
    })
    .await;
    for daemon in [&a, &b] {
        let (status, body) = send(
            client()
                .post(daemon.api("/api/v1/integrations/acme/sync"))
                .bearer_auth(&bot),
        )
        .await;
        assert_eq!(status, 409, "{body}");
        let detail = body["detail"].as_str().expect("detail");
        assert!(
            detail.contains("\"acme\" is already syncing (holder daemon:pid"),
            "{detail}"
        );
    }
    let all = runs(h);
    assert_eq!(all.len(), 1, "exactly one run was started: {all:?}");

    // Released: runs go on, one at a time, across both daemons.
    server.clear_faults();
    eventually("three finished runs", || async {
        (finished(h) >= 3).then_some(())
    })
    .await;
    let (code_a, code_b) = (a.terminate().await, b.terminate().await);
    assert_eq!((code_a, code_b), (0, 0));
    let all = runs(h);
    assert!(
        all.iter().all(|r| r.2 == "success" || r.2 == "aborted"),
        "{all:?}"
    );
    // Runs never overlapped: each started after the previous one ended.
    let db = rusqlite::Connection::open(h.join("sextant.db")).expect("db");
    let mut stmt = db
        .prepare("SELECT started_at, ended_at FROM sync_runs WHERE status = 'success' ORDER BY id")
        .expect("prepare");
    let spans: Vec<(String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    for pair in spans.windows(2) {
        assert!(pair[1].0 >= pair[0].1, "overlapping runs: {spans:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_provisions_its_config_and_delivers_alerts_as_runs_commit() {
    let server = FixtureServer::start(FixtureSet::Day1)
        .await
        .expect("server");
    let home = tempfile::tempdir().expect("tempdir");
    let h = home.path();
    let token_file = h.join("circleci.token");
    std::fs::write(&token_file, sextant::fixtures::FIXTURE_TOKEN).expect("token");
    let alerts = h.join("alerts.jsonl");
    std::fs::write(
        h.join("config.yaml"),
        format!(
            "connections:
  - name: ci-cfg
    type: circleci
    requests_per_second: 1000
    secrets:
      api_token: file:{}
      host: {}
integrations:
  - name: acme-cfg
    connection: ci-cfg
    interval: 1h
sinks:
  - name: audit
    type: file
    path: {}
    start: beginning
rules:
  - name: new-user
    first_sync: true
    match:
      object: entity
      action: created
      _type: circleci_user
    sinks: [audit]
",
            token_file.display(),
            server.base_url(),
            alerts.display()
        ),
    )
    .expect("config");

    // Nothing was added with the CLI: the integration exists because the
    // daemon provisioned it, and runs because it never ran (catch-up).
    let daemon = Daemon::start(h, "5s");
    let lines = eventually("alerts in the file sink", || async {
        let text = std::fs::read_to_string(&alerts).unwrap_or_default();
        (text.lines().count() >= 1).then_some(text)
    })
    .await;
    assert_eq!(daemon.terminate().await, 0);
    for line in lines.lines() {
        let alert: serde_json::Value = serde_json::from_str(line).expect("JSON line");
        assert_eq!(alert["rule"], "new-user", "{alert}");
    }
    let list = sextant_async(h, &["connection", "list", "--json"], &[]).await;
    let page: serde_json::Value = serde_json::from_str(&list.stdout).expect("json");
    assert_eq!(page["items"][0]["managed_by"], "config", "{page}");
    assert!(
        runs(h)
            .iter()
            .any(|r| r.1 == "acme-cfg" && r.2 == "success"),
        "{:?}",
        runs(h)
    );
}
