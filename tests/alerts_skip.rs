//! `sextant alerts skip` through the real binary: a webhook receiver on
//! 127.0.0.1:0 that refuses one alert for good holds its sink back; the
//! operator skips exactly that alert (or a range, or a system alert), the
//! next delivery sends the rest in order and never the skipped one, and
//! `alerts list` shows what was skipped. Every refusal names the fix; a sync
//! prints a sink failure once.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::Value;
use sextant::fixtures::{FIXTURE_TOKEN, FixtureServer, FixtureSet};
use sextant::store::Store;

const SECRET: &str = "whsec-skip-test-0a1b2c3d4e";
const SECRET_ENV: &str = "SEXTANT_TEST_SKIP_WEBHOOK_SECRET";
const URL_TOKEN: &str = "sk1pp3dpathtoken";

const RULES: &str = r#"rules:
  - name: new-user
    match: { object: entity, action: created, _type: circleci_user }
    sinks: [hook]
  - name: context-variable-added-or-removed
    match: { _type: circleci_context_environment_variable, action: [created, deleted] }
    sinks: [hook]
  - name: project-variable-created
    match: { _type: circleci_project_environment_variable, action: created }
    sinks: [hook]
  - name: sync-failed
    match: { object: system, action: sync_failed }
    sinks: [hook]
"#;

/// The alerts of the day1 → day2 changes under `RULES`, in order (the
/// subset of tests/alerts.rs' list these rules raise): (rule, summary).
const EXPECTED: &[(&str, &str)] = &[
    (
        "context-variable-added-or-removed",
        "created circleci_context_environment_variable \"GITHUB_TOKEN\" in acme",
    ),
    (
        "context-variable-added-or-removed",
        "created circleci_context_environment_variable \"RELEASE_SIGNING_KEY\" in acme",
    ),
    (
        "project-variable-created",
        "created circleci_project_environment_variable \"APP_STORE_CONNECT_KEY\" in acme",
    ),
    (
        "project-variable-created",
        "created circleci_project_environment_variable \"STRIPE_KEY\" in acme",
    ),
    (
        "new-user",
        "created circleci_user \"Dmitri Volkov\" in acme",
    ),
    (
        "context-variable-added-or-removed",
        "deleted circleci_context_environment_variable \"STAGING_DB_URL\" in acme",
    ),
];

// ---------------------------------------------------------------- receiver

#[derive(Debug, Clone)]
struct Attempt {
    id: String,
    rule: String,
    summary: String,
    seq: u64,
    status: u16,
}

#[derive(Default)]
struct ReceiverState {
    attempts: Mutex<Vec<Attempt>>,
    /// Answer this status to alerts whose id or summary contains the text.
    refuse: Mutex<Vec<(String, u16)>>,
}

/// A webhook receiver on 127.0.0.1:0 that records every attempt.
struct Receiver {
    url: String,
    state: Arc<ReceiverState>,
}

impl Receiver {
    async fn start() -> Receiver {
        let state = Arc::new(ReceiverState::default());
        let app = Router::new()
            .route("/hooks/{token}", post(receive))
            .with_state(Arc::clone(&state));
        let addr = common::serve(app).await;
        Receiver {
            url: format!("http://{addr}/hooks/{URL_TOKEN}"),
            state,
        }
    }

    fn refuse(&self, needle: &str, status: u16) {
        self.state
            .refuse
            .lock()
            .expect("lock")
            .push((needle.to_owned(), status));
    }

    fn accept_all(&self) {
        self.state.refuse.lock().expect("lock").clear();
    }

    fn attempts(&self) -> Vec<Attempt> {
        self.state.attempts.lock().expect("lock").clone()
    }

    /// (rule, summary) of the accepted alerts, in order.
    fn accepted(&self) -> Vec<(String, String)> {
        self.attempts()
            .into_iter()
            .filter(|a| a.status == 200)
            .map(|a| (a.rule, a.summary))
            .collect()
    }

    fn attempts_of(&self, needle: &str) -> usize {
        self.attempts()
            .iter()
            .filter(|a| a.summary.contains(needle) || a.id.contains(needle))
            .count()
    }
}

async fn receive(State(state): State<Arc<ReceiverState>>, body: Bytes) -> StatusCode {
    let body: Value = serde_json::from_slice(&body).expect("the body is JSON");
    let text = |k: &str| body[k].as_str().expect("string field").to_owned();
    let attempt = Attempt {
        id: text("id"),
        rule: text("rule"),
        summary: text("summary"),
        seq: body["event"]["seq"].as_u64().expect("event seq"),
        status: 200,
    };
    let status = state
        .refuse
        .lock()
        .expect("lock")
        .iter()
        .find(|(needle, _)| attempt.id.contains(needle) || attempt.summary.contains(needle))
        .map_or(200, |(_, status)| *status);
    state
        .attempts
        .lock()
        .expect("lock")
        .push(Attempt { status, ..attempt });
    StatusCode::from_u16(status).expect("status")
}

// ------------------------------------------------------------------ setup

struct Setup {
    home: tempfile::TempDir,
    server: FixtureServer,
    receiver: Receiver,
}

impl Setup {
    /// A data dir whose config has the fixture integration, the webhook
    /// sink `hook` (no retries, from the beginning) and `RULES`.
    async fn new() -> Setup {
        let home = tempfile::tempdir().expect("tempdir");
        let server = FixtureServer::start(FixtureSet::Day1)
            .await
            .expect("fixture server");
        let receiver = Receiver::start().await;
        let config = common::write_config(home.path(), &server.base_url(), "");
        let mut text = std::fs::read_to_string(&config).expect("config");
        text.push_str(&format!(
            "sinks:\n  - name: hook\n    type: webhook\n    url: {}\n    secret: env:{SECRET_ENV}\n    start: beginning\n    retries: 0\n    timeout: 5s\n{RULES}",
            receiver.url
        ));
        std::fs::write(&config, text).expect("config");
        Setup {
            home,
            server,
            receiver,
        }
    }

    async fn run(&self, args: &[&str]) -> common::Run {
        self.run_with_token(args, FIXTURE_TOKEN).await
    }

    async fn run_with_token(&self, args: &[&str], token: &str) -> common::Run {
        let env = [(common::SECRET_TOKEN_ENV, token), (SECRET_ENV, SECRET)];
        let run = common::sextant_async(self.home.path(), args, &env).await;
        let all = run.all_output();
        assert!(!all.contains(SECRET), "the webhook secret leaked: {all}");
        assert!(!all.contains(URL_TOKEN), "the URL path leaked: {all}");
        run
    }

    /// Syncs day 1 (the baseline), then day 2; returns the day-2 run.
    async fn two_days(&self) -> common::Run {
        let day1 = self.run(&["sync", "acme"]).await;
        assert_eq!(day1.code, 0, "{}", day1.all_output());
        self.server.switch(FixtureSet::Day2);
        let day2 = self.run(&["sync", "acme"]).await;
        assert_eq!(day2.code, 0, "{}", day2.all_output());
        day2
    }

    async fn hook(&self) -> Value {
        let list = self.run(&["alerts", "list", "--json"]).await;
        assert_eq!(list.code, 0, "{}", list.all_output());
        let doc: Value = serde_json::from_str(&list.stdout).expect("alerts list --json");
        doc["sinks"][0].clone()
    }
}

fn expected_without(skipped: &[&str]) -> Vec<(String, String)> {
    EXPECTED
        .iter()
        .filter(|(_, s)| !skipped.iter().any(|k| s.contains(k)))
        .map(|(r, s)| ((*r).to_owned(), (*s).to_owned()))
        .collect()
}

fn occurrences(text: &str, needle: &str) -> usize {
    text.matches(needle).count()
}

// ------------------------------------------------------------------ tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_alert_is_skipped_and_the_alerts_behind_it_follow_in_order() {
    let s = Setup::new().await;
    s.receiver.refuse("APP_STORE_CONNECT_KEY", 400);
    let day2 = s.two_days().await;
    // Stuck at the refused alert; the two before it went out.
    assert_eq!(
        s.receiver.accepted(),
        expected_without(&[
            "APP_STORE_CONNECT_KEY",
            "STRIPE_KEY",
            "Dmitri",
            "STAGING_DB_URL"
        ])
    );
    let refused = s
        .receiver
        .attempts()
        .into_iter()
        .find(|a| a.status == 400)
        .expect("the refused attempt");
    assert_eq!(refused.rule, "project-variable-created");
    // The failure is printed once (not also as a log warning), names the
    // alert, and says how to move past it.
    assert_eq!(
        occurrences(&day2.stderr, "answered 400 Bad Request"),
        1,
        "{}",
        day2.stderr
    );
    assert!(
        day2.stderr
            .contains(&format!("answered 400 Bad Request to alert {}", refused.id))
            && day2.stderr.contains("sextant alerts skip hook")
            && !day2.stderr.contains("--system"),
        "{}",
        day2.stderr
    );

    // It stays stuck: every pass tries the same alert and nothing after it.
    let again = s.run(&["sync", "acme"]).await;
    assert_eq!(again.code, 0, "{}", again.all_output());
    assert_eq!(s.receiver.attempts_of("APP_STORE_CONNECT_KEY"), 2);
    assert_eq!(s.receiver.attempts_of("STRIPE_KEY"), 0);
    let hook = s.hook().await;
    assert_eq!(hook["skipped"], 0, "{hook}");
    assert!(
        hook["last_error"]
            .as_str()
            .expect("last error")
            .contains("sextant alerts skip hook"),
        "{hook}"
    );

    // Without --yes and off a terminal, it shows what it would skip and
    // changes nothing.
    let asked = s.run(&["alerts", "skip", "hook"]).await;
    assert_eq!(asked.code, 1, "{}", asked.all_output());
    assert!(asked.stdout.contains(&refused.id), "{}", asked.stdout);
    assert!(
        asked.stderr.contains("add --yes")
            && asked.stderr.contains("sextant alerts skip hook --yes"),
        "{}",
        asked.stderr
    );
    assert_eq!(s.hook().await["skipped"], 0);

    let skipped = s.run(&["alerts", "skip", "hook", "--yes"]).await;
    assert_eq!(skipped.code, 0, "{}", skipped.all_output());
    assert!(
        skipped.stdout.contains("skipped 1 alert of sink \"hook\""),
        "{}",
        skipped.stdout
    );
    assert!(
        skipped.stdout.contains(&format!(
            "{}  rule project-variable-created · change event {} · created circleci_project_environment_variable \"APP_STORE_CONNECT_KEY\"",
            refused.id, refused.seq
        )),
        "{}",
        skipped.stdout
    );

    // The next delivery sends everything after it, in order, and never the
    // skipped alert again, though the receiver would refuse it still.
    let after = s.run(&["sync", "acme"]).await;
    assert_eq!(after.code, 0, "{}", after.all_output());
    assert!(
        after.stdout.contains("alerts: 3 delivered"),
        "{}",
        after.stdout
    );
    assert!(!after.stderr.contains("warning"), "{}", after.stderr);
    assert_eq!(
        s.receiver.accepted(),
        expected_without(&["APP_STORE_CONNECT_KEY"])
    );
    assert_eq!(s.receiver.attempts_of("APP_STORE_CONNECT_KEY"), 2);

    let hook = s.hook().await;
    assert_eq!(hook["skipped"], 1, "{hook}");
    assert_eq!(hook["last_skipped"]["id"], refused.id.as_str(), "{hook}");
    assert_eq!(hook["last_skipped"]["seq"], refused.seq, "{hook}");
    assert_eq!(hook["last_skipped"]["rule"], "project-variable-created");
    assert!(hook["last_skipped"]["skipped_at"].is_string(), "{hook}");
    assert_eq!(hook["last_error"], Value::Null, "{hook}");
    assert_eq!(hook["lag"], 0, "{hook}");
    let list = s.run(&["alerts", "list"]).await;
    assert!(
        list.stdout.contains(&format!(
            "skipped 1 alert (sextant alerts skip), last {}",
            refused.id
        )),
        "{}",
        list.stdout
    );

    // Nothing is pending any more: a second skip is refused.
    let none = s.run(&["alerts", "skip", "hook", "--yes"]).await;
    assert_eq!(none.code, 1, "{}", none.all_output());
    assert!(
        none.stderr
            .contains("sink \"hook\" has no pending alert (it acknowledged up to change event"),
        "{}",
        none.stderr
    );
    s.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_through_passes_a_range_and_system_alerts_skip_on_their_own() {
    let s = Setup::new().await;
    s.receiver
        .refuse("circleci_project_environment_variable", 422);
    s.two_days().await;
    // Both project variables would be refused: skip through the second.
    let stripe: u64 = {
        let events = s.run(&["events", "list"]).await;
        events
            .stdout
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).expect("event line"))
            .find(|e| {
                e["_type"] == "circleci_project_environment_variable"
                    && e["_key"]
                        .as_str()
                        .is_some_and(|k| k.ends_with(":STRIPE_KEY"))
            })
            .and_then(|e| e["seq"].as_u64())
            .expect("the STRIPE_KEY event")
    };
    let through = stripe.to_string();
    let skipped = s
        .run(&["alerts", "skip", "hook", "--through", &through, "--yes"])
        .await;
    assert_eq!(skipped.code, 0, "{}", skipped.all_output());
    assert!(
        skipped.stdout.contains("skipped 2 alerts")
            && skipped.stdout.contains("APP_STORE_CONNECT_KEY")
            && skipped.stdout.contains("STRIPE_KEY")
            && skipped.stdout.contains(&format!("change cursor: {stripe}")),
        "{}",
        skipped.stdout
    );
    let after = s.run(&["sync", "acme"]).await;
    assert_eq!(after.code, 0, "{}", after.all_output());
    assert_eq!(
        s.receiver.accepted(),
        expected_without(&["APP_STORE_CONNECT_KEY", "STRIPE_KEY"])
    );
    assert_eq!(s.receiver.attempts_of("STRIPE_KEY"), 0);
    let hook = s.hook().await;
    assert_eq!(hook["skipped"], 2, "{hook}");
    assert_eq!(hook["last_skipped"]["seq"], stripe, "{hook}");

    // A failed sync raises a system alert; the receiver refuses it, and the
    // message points at --system.
    s.receiver.refuse("/system/", 400);
    let failed = s
        .run_with_token(&["sync", "acme"], "revoked-token-0123456789")
        .await;
    assert_eq!(failed.code, 1, "{}", failed.all_output());
    assert!(
        failed.stderr.contains("sextant alerts skip hook --system")
            && occurrences(&failed.stderr, "answered 400 Bad Request") == 1,
        "{}",
        failed.stderr
    );
    let system = s
        .run(&["alerts", "skip", "hook", "--system", "--yes"])
        .await;
    assert_eq!(system.code, 0, "{}", system.all_output());
    assert!(
        system
            .stdout
            .contains("hook/system/1/sync-failed  rule sync-failed · system event 1"),
        "{}",
        system.stdout
    );
    // The next failure's alert goes out once the receiver takes it; the
    // skipped one never does.
    s.receiver.accept_all();
    let failed = s
        .run_with_token(&["sync", "acme"], "revoked-token-0123456789")
        .await;
    assert_eq!(failed.code, 1, "{}", failed.all_output());
    let system: Vec<(String, u16)> = s
        .receiver
        .attempts()
        .into_iter()
        .filter(|a| a.id.contains("/system/"))
        .map(|a| (a.id, a.status))
        .collect();
    assert_eq!(
        system,
        [
            ("hook/system/1/sync-failed".to_owned(), 400),
            ("hook/system/2/sync-failed".to_owned(), 200)
        ]
    );
    let hook = s.hook().await;
    assert_eq!(hook["skipped"], 3, "{hook}");
    assert_eq!(hook["last_skipped"]["stream"], "system", "{hook}");
    s.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_refusals_name_the_problem_and_the_fix() {
    let s = Setup::new().await;
    let refused = |run: &common::Run, text: &str| {
        assert_eq!(run.code, 1, "{}", run.all_output());
        assert!(
            run.stderr.contains(text),
            "wanted {text:?} in: {}",
            run.stderr
        );
    };
    refused(
        &s.run(&["alerts", "skip", "ops", "--yes"]).await,
        "no sink named \"ops\" in the config; its sinks are hook",
    );
    refused(
        &s.run(&["alerts", "skip", "hook", "--yes"]).await,
        "sink \"hook\" has not delivered anything yet",
    );
    // The first sync is a baseline: the sink's cursor exists, nothing is pending.
    let day1 = s.run(&["sync", "acme"]).await;
    assert_eq!(day1.code, 0, "{}", day1.all_output());
    refused(
        &s.run(&["alerts", "skip", "hook", "--yes"]).await,
        "sink \"hook\" has no pending alert (it acknowledged up to change event",
    );
    refused(
        &s.run(&["alerts", "skip", "hook", "--system", "--yes"])
            .await,
        "sink \"hook\" has no pending alert for system events",
    );
    refused(
        &s.run(&["alerts", "skip", "hook", "--through", "1", "--yes"])
            .await,
        "sink \"hook\" has no pending alert for change events up to 1",
    );
    let last = {
        let db = Store::open(&s.home.path().join("sextant.db")).expect("store");
        db.last_event_seq().expect("last seq")
    };
    let beyond = (last + 1).to_string();
    refused(
        &s.run(&["alerts", "skip", "hook", "--through", &beyond, "--yes"])
            .await,
        &format!(
            "--through {beyond} is beyond the last change event ({last}); give the seq of a change event the sink has not passed"
        ),
    );
    let both = s
        .run(&["alerts", "skip", "hook", "--through", "1", "--system"])
        .await;
    assert_eq!(both.code, 2, "{}", both.all_output());
    assert!(
        both.stderr.contains("cannot be used with"),
        "{}",
        both.stderr
    );

    // Another process is delivering: the skip says who and changes nothing.
    s.receiver.refuse("APP_STORE_CONNECT_KEY", 400);
    s.server.switch(FixtureSet::Day2);
    let day2 = s.run(&["sync", "acme"]).await;
    assert_eq!(day2.code, 0, "{}", day2.all_output());
    let mut db = Store::open(&s.home.path().join("sextant.db")).expect("store");
    db.acquire_lease(
        sextant::alerts::DELIVERY_LEASE,
        "daemon:pid4242:1f2e3d4c",
        std::time::Duration::from_secs(60),
    )
    .expect("the other process takes the lease");
    refused(
        &s.run(&["alerts", "skip", "hook", "--yes"]).await,
        "alert delivery is running in another process (daemon:pid4242:1f2e3d4c, since ",
    );
    assert_eq!(s.hook().await["skipped"], 0);
    db.release_lease(sextant::alerts::DELIVERY_LEASE, "daemon:pid4242:1f2e3d4c")
        .expect("release");
    let skipped = s.run(&["alerts", "skip", "hook", "--yes"]).await;
    assert_eq!(skipped.code, 0, "{}", skipped.all_output());
    // The skip released the lease: delivery runs again.
    let after = s.run(&["sync", "acme"]).await;
    assert!(
        after.stdout.contains("alerts: 3 delivered"),
        "{}",
        after.all_output()
    );
    s.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_refusals_do_not_suggest_skipping() {
    for (status, config) in [(401, true), (410, true), (409, false)] {
        let s = Setup::new().await;
        s.receiver.refuse("APP_STORE_CONNECT_KEY", status);
        let day2 = s.two_days().await;
        let hint = day2.stderr.contains("sextant alerts skip hook");
        let url = day2.stderr.contains("check the receiver's URL and secret");
        assert_eq!((hint, url), (!config, config), "{status}: {}", day2.stderr);
        assert_eq!(
            occurrences(&day2.stderr, &format!("answered {status}")),
            1,
            "{}",
            day2.stderr
        );
        s.server.shutdown().await;
    }
}

#[test]
fn the_skip_command_is_documented() {
    let home = tempfile::tempdir().expect("tempdir");
    let help = common::sextant(home.path(), &["alerts", "skip", "--help"], &[]);
    assert_eq!(help.code, 0, "{}", help.all_output());
    for flag in ["--through", "--system", "--yes"] {
        assert!(help.stdout.contains(flag), "{}", help.stdout);
    }
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README");
    assert!(
        readme.contains("sextant alerts skip SINK"),
        "README documents it"
    );
}
