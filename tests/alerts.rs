//! Alerts end to end: the fixture syncs (day1, then day2) raise exactly the
//! expected alerts at a local webhook receiver, each signed; a receiver that
//! refuses gets them later, in order, once each, across restarts; system
//! events (a failed sync, a connection test that starts failing) alert too.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sextant::alerts::{AlertsConfig, Deliverer, DeliveryReport};
use sextant::config::{Config, IntegrationConfig, Interval};
use sextant::connection::{Secret, Secrets, connection_type};
use sextant::fixtures::{FIXTURE_TOKEN, FixtureServer, FixtureSet};
use sextant::graph::Schema;
use sextant::run::RunStatus;
use sextant::source::ResolvedConnection;
use sextant::source::http::{HttpConfig, RateLimit};
use sextant::store::{ConnectionRow, Store};
use sextant::sync::run_sync;
use sha2::Sha256;

const SECRET: &str = "whsec-test-9f8e7d6c5b4a";
const SECRET_ENV: &str = "SEXTANT_TEST_WEBHOOK_SECRET";
/// Part of the webhook URL that must never be printed (Slack-style URLs
/// carry a token in the path).
const URL_TOKEN: &str = "t0ps3cr3tpath";

/// The shipped CircleCI rules, all sent to `{sinks}`.
fn rules(sinks: &str) -> String {
    format!(
        r#"rules:
  - name: new-user
    severity: medium
    match: {{ object: entity, action: created, _type: circleci_user }}
    sinks: {sinks}
  - name: context-variable-added-or-removed
    severity: high
    match: {{ _type: circleci_context_environment_variable, action: [created, deleted] }}
    sinks: {sinks}
  - name: production-context-variable-added
    severity: critical
    match:
      _type: circleci_context_environment_variable
      action: created
      after.contextName: {{ regex: "(?i)prod" }}
    sinks: {sinks}
  - name: project-variable-created
    match: {{ _type: circleci_project_environment_variable, action: created }}
    sinks: {sinks}
  - name: project-uses-context-variable
    match: {{ object: relationship, _type: circleci_project_uses_context_environment_variable, action: created }}
    sinks: {sinks}
  - name: job-failed
    severity: high
    match:
      _type: circleci_job
      action: updated
      changes.status: {{ to: [failed, infrastructure_fail, timedout] }}
    sinks: {sinks}
"#
    )
}

/// (rule, summary) of every alert the day1 → day2 changes raise, in order.
const EXPECTED: &[(&str, &str)] = &[
    (
        "context-variable-added-or-removed",
        "created circleci_context_environment_variable \"GITHUB_TOKEN\" in acme",
    ),
    (
        "production-context-variable-added",
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
        "job-failed",
        "updated circleci_job \"test\" in acme (status: \"running\" → \"failed\", stoppedOn: null → 1741684359904)",
    ),
    (
        "project-uses-context-variable",
        "created circleci_project_uses_context_environment_variable circleci_project:2883238b… USES …:AWS_ACCESS_KEY_ID in acme",
    ),
    (
        "project-uses-context-variable",
        "created circleci_project_uses_context_environment_variable circleci_project:2883238b… USES …:DEPLOY_TOKEN in acme",
    ),
    (
        "project-uses-context-variable",
        "created circleci_project_uses_context_environment_variable circleci_project:2883238b… USES …:GITHUB_TOKEN in acme",
    ),
    (
        "project-uses-context-variable",
        "created circleci_project_uses_context_environment_variable circleci_project:b9327f38… USES …:GITHUB_TOKEN in acme",
    ),
    (
        "context-variable-added-or-removed",
        "deleted circleci_context_environment_variable \"STAGING_DB_URL\" in acme",
    ),
];

// ---------------------------------------------------------------- receiver

#[derive(Debug, Clone)]
struct Received {
    id: String,
    timestamp: String,
    signature: String,
    body: Vec<u8>,
    accepted: bool,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }
}

#[derive(Default)]
struct ReceiverState {
    attempts: Mutex<Vec<Received>>,
    /// Refuse this many requests (503), whatever they are.
    refuse_next: AtomicUsize,
    /// Refuse requests whose delivery id contains the key, this many times.
    refuse_ids: Mutex<HashMap<String, usize>>,
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

    fn attempts(&self) -> Vec<Received> {
        self.state.attempts.lock().expect("lock").clone()
    }

    fn accepted(&self) -> Vec<Received> {
        self.attempts().into_iter().filter(|r| r.accepted).collect()
    }
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let id = header("x-sextant-delivery");
    let mut refuse = state
        .refuse_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    {
        let mut ids = state.refuse_ids.lock().expect("lock");
        for (part, left) in ids.iter_mut() {
            if *left > 0 && id.contains(part.as_str()) {
                *left -= 1;
                refuse = true;
            }
        }
    }
    state.attempts.lock().expect("lock").push(Received {
        id,
        timestamp: header("x-sextant-timestamp"),
        signature: header("x-sextant-signature"),
        body: body.to_vec(),
        accepted: !refuse,
    });
    if refuse {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    }
}

fn hex_decode(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex signature"))
        .collect()
}

/// Checks the signature the way a receiver would.
fn assert_signed(r: &Received) {
    let hex = r
        .signature
        .strip_prefix("sha256=")
        .unwrap_or_else(|| panic!("signature header of {}: {:?}", r.id, r.signature));
    let ts: i64 = r.timestamp.parse().expect("timestamp is Unix seconds");
    assert!(ts > 1_600_000_000, "{ts}");
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes()).expect("key");
    mac.update(r.timestamp.as_bytes());
    mac.update(b".");
    mac.update(&r.body);
    mac.verify_slice(&hex_decode(hex))
        .unwrap_or_else(|_| panic!("bad signature on {}", r.id));
    // A signature over another timestamp does not verify.
    let mut other = <Hmac<Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes()).expect("key");
    other.update(format!("{}.", ts + 1).as_bytes());
    other.update(&r.body);
    assert!(other.verify_slice(&hex_decode(hex)).is_err());
}

fn rule_and_summary(r: &Received) -> (String, String) {
    let body = r.json();
    (
        body["rule"].as_str().expect("rule").to_owned(),
        body["summary"].as_str().expect("summary").to_owned(),
    )
}

fn expected() -> Vec<(String, String)> {
    EXPECTED
        .iter()
        .map(|(r, s)| ((*r).to_owned(), (*s).to_owned()))
        .collect()
}

// ------------------------------------------------------------- in-process

fn connection(base_url: &str, token: &str) -> ResolvedConnection {
    let mut secrets = Secrets::default();
    secrets.plain.insert("host".into(), base_url.to_owned());
    secrets
        .sensitive
        .insert("api_token".into(), Secret::new(token));
    ResolvedConnection {
        name: "ci-test".into(),
        ty: connection_type("circleci").expect("circleci type"),
        secrets,
        http: HttpConfig {
            rate_limit: RateLimit::per_second(1000, 100),
            request_timeout: Duration::from_millis(2000),
            backoff_min: Duration::from_millis(1),
            backoff_max: Duration::from_millis(5),
            max_retries: 1,
            ..HttpConfig::default()
        },
    }
}

fn integration() -> IntegrationConfig {
    IntegrationConfig {
        name: "acme".into(),
        connection: "ci-test".into(),
        account_name: Some("Acme".into()),
        description: None,
        interval: Interval::Disabled,
        tag_account_name: false,
        enabled: true,
        settings: Value::Null,
    }
}

async fn sync(store: &mut Store, server: &FixtureServer, token: &str) -> RunStatus {
    let schema = Arc::new(Schema::embedded().expect("schema"));
    run_sync(
        store,
        schema,
        &integration(),
        &connection(&server.base_url(), token),
        None,
    )
    .await
    .expect("sync runs")
    .status
}

/// A store holding the day1 and day2 syncs.
async fn two_days(db: &Path) -> Store {
    let server = FixtureServer::start(FixtureSet::Day1)
        .await
        .expect("fixture server");
    let mut store = Store::open(db).expect("store");
    assert_eq!(
        sync(&mut store, &server, FIXTURE_TOKEN).await,
        RunStatus::Success
    );
    server.switch(FixtureSet::Day2);
    assert_eq!(
        sync(&mut store, &server, FIXTURE_TOKEN).await,
        RunStatus::Success
    );
    server.shutdown().await;
    store
}

fn alerts(yaml: &str) -> AlertsConfig {
    match Config::parse("test.yaml", yaml) {
        Ok(config) => config.alerts,
        Err(e) => panic!("test config is valid: {e}\n{yaml}"),
    }
}

fn webhook_sink(url: &str, retries: u32) -> String {
    format!(
        "  - name: hook\n    type: webhook\n    url: {url}\n    secret: env:{SECRET_ENV}\n    start: beginning\n    retries: {retries}\n    backoff_min: 1ms\n    backoff_max: 5ms\n    timeout: 5s\n"
    )
}

/// A deliverer whose stdout sinks write into a buffer.
/// [`webhook_sink`] whose secret is read from a file written in `dir`.
fn webhook_sink_with_secret_file(dir: &Path, url: &str, retries: u32) -> String {
    let secret_file = dir.join("webhook.secret");
    std::fs::write(&secret_file, SECRET).expect("secret file");
    webhook_sink(url, retries).replace(
        &format!("env:{SECRET_ENV}"),
        &format!("file:{}", secret_file.display()),
    )
}

fn deliverer() -> Deliverer {
    Deliverer::new(Arc::new(Mutex::new(Box::new(Vec::<u8>::new()))))
}

async fn deliver(db: &Path, config: &AlertsConfig) -> DeliveryReport {
    // A fresh store and deliverer each time: a restart between passes.
    let mut store = Store::open(db).expect("store reopens");
    deliverer()
        .deliver_pending(&mut store, config)
        .await
        .expect("delivery pass")
}

fn sink<'a>(report: &'a DeliveryReport, name: &str) -> &'a sextant::alerts::SinkReport {
    report
        .sinks
        .iter()
        .find(|s| s.sink == name)
        .unwrap_or_else(|| panic!("sink {name} in {report:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_alerts_arrive_later_in_order_exactly_once_across_restarts() {
    let home = tempfile::tempdir().expect("tempdir");
    let db = home.path().join("sextant.db");
    drop(two_days(&db).await);
    let receiver = Receiver::start().await;
    receiver.state.refuse_next.store(3, Ordering::SeqCst);
    let audit = home.path().join("audit.jsonl");
    let yaml = format!(
        "sinks:\n{}  - name: audit\n    type: file\n    path: {}\n    start: beginning\n{}",
        webhook_sink_with_secret_file(home.path(), &receiver.url, 1),
        audit.display(),
        rules("[hook, audit]")
    );
    let config = alerts(&yaml);

    // Pass 1: the webhook refuses both attempts of the first alert; the
    // file sink is not held back.
    let first = deliver(&db, &config).await;
    let hook = sink(&first, "hook");
    assert_eq!(hook.delivered, 0);
    let error = hook.error.clone().expect("the webhook failed");
    assert!(
        error.contains("503") && error.contains("2 attempts"),
        "{error}"
    );
    assert!(
        !error.contains(URL_TOKEN) && !error.contains(SECRET),
        "{error}"
    );
    assert_eq!(sink(&first, "audit").delivered, EXPECTED.len() as u64);
    assert_eq!(receiver.attempts().len(), 2);
    assert!(receiver.accepted().is_empty());
    {
        let store = Store::open(&db).expect("store");
        let cursor = store
            .sink_cursor("hook")
            .expect("read")
            .expect("registered");
        assert!(cursor.last_error.is_some() && cursor.failing_since.is_some());
        assert_eq!(cursor.delivered, 0);
    }

    // Pass 2 after a restart: one more refusal, then everything, in order.
    let second = deliver(&db, &config).await;
    assert_eq!(sink(&second, "hook").error, None);
    assert_eq!(sink(&second, "hook").delivered, EXPECTED.len() as u64);
    assert_eq!(sink(&second, "audit").delivered, 0, "nothing re-sent");

    // Pass 3 after another restart: nothing to send.
    let third = deliver(&db, &config).await;
    assert_eq!(third.delivered(), 0);
    assert_eq!(receiver.attempts().len(), 2 + 2 + EXPECTED.len() - 1);

    let accepted = receiver.accepted();
    let got: Vec<(String, String)> = accepted.iter().map(rule_and_summary).collect();
    assert_eq!(got, expected(), "in order, each once");
    let mut ids: Vec<&str> = accepted.iter().map(|r| r.id.as_str()).collect();
    ids.dedup();
    assert_eq!(
        ids.len(),
        EXPECTED.len(),
        "no duplicate after acknowledgement"
    );
    let first_id = &accepted[0].id;
    assert!(first_id.starts_with("hook/change/"), "{first_id}");
    for attempt in receiver.attempts() {
        assert_signed(&attempt);
        let body = attempt.json();
        assert_eq!(body["id"], attempt.id.as_str(), "the id is in the body too");
        if !attempt.accepted {
            assert_eq!(&attempt.id, first_id, "retries carry the same id");
        }
    }
    // Seqs never go back.
    let seqs: Vec<u64> = accepted
        .iter()
        .map(|r| r.json()["event"]["seq"].as_u64().expect("seq"))
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] <= w[1]), "{seqs:?}");

    let lines: Vec<Value> = std::fs::read_to_string(&audit)
        .expect("audit file")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let got: Vec<(String, String)> = lines
        .iter()
        .map(|l| {
            (
                l["rule"].as_str().expect("rule").to_owned(),
                l["summary"].as_str().expect("summary").to_owned(),
            )
        })
        .collect();
    assert_eq!(got, expected());
    let store = Store::open(&db).expect("store");
    let cursor = store
        .sink_cursor("hook")
        .expect("read")
        .expect("registered");
    assert_eq!(cursor.change_seq, store.last_event_seq().expect("seq"));
    assert_eq!(
        (cursor.last_error, cursor.delivered),
        (None, EXPECTED.len() as u64)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_matching_two_rules_resumes_after_the_acknowledged_rule() {
    let home = tempfile::tempdir().expect("tempdir");
    let db = home.path().join("sextant.db");
    drop(two_days(&db).await);
    let receiver = Receiver::start().await;
    receiver
        .state
        .refuse_ids
        .lock()
        .expect("lock")
        .insert("/production-context-variable-added".into(), 1);
    let yaml = format!(
        "sinks:\n{}{}",
        webhook_sink_with_secret_file(home.path(), &receiver.url, 0),
        rules("[hook]")
    );
    let config = alerts(&yaml);

    let first = deliver(&db, &config).await;
    assert_eq!(sink(&first, "hook").delivered, 1);
    assert!(sink(&first, "hook").error.is_some());
    {
        let store = Store::open(&db).expect("store");
        let cursor = store
            .sink_cursor("hook")
            .expect("read")
            .expect("registered");
        let seq = receiver.accepted()[0].json()["event"]["seq"]
            .as_u64()
            .expect("seq");
        assert_eq!(cursor.change_seq, seq - 1, "the event is not done yet");
        assert_eq!(cursor.change_done, ["context-variable-added-or-removed"]);
    }
    let second = deliver(&db, &config).await;
    assert_eq!(sink(&second, "hook").delivered, EXPECTED.len() as u64 - 1);
    let got: Vec<(String, String)> = receiver.accepted().iter().map(rule_and_summary).collect();
    assert_eq!(got, expected(), "the acknowledged rule was not sent again");
    assert_eq!(receiver.attempts().len(), EXPECTED.len() + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_sync_and_a_failing_connection_test_raise_system_alerts() {
    let home = tempfile::tempdir().expect("tempdir");
    let db = home.path().join("sextant.db");
    let out = home.path().join("system.jsonl");
    let config = alerts(&format!(
        "sinks:\n  - name: ops\n    type: file\n    path: {}\n    start: beginning\n\
         rules:\n  - name: system\n    match:\n      object: system\n      action: [sync_failed, connection_test_failed, connection_test_recovered]\n    sinks: [ops]\n",
        out.display()
    ));
    let server = FixtureServer::start(FixtureSet::Day1)
        .await
        .expect("fixture server");
    let mut store = Store::open(&db).expect("store");
    assert_eq!(
        sync(&mut store, &server, FIXTURE_TOKEN).await,
        RunStatus::Success
    );
    let token = "revoked-token-0123456789";
    assert_eq!(sync(&mut store, &server, token).await, RunStatus::Failed);
    server.shutdown().await;

    let row = |at: &str, ok: bool| ConnectionRow {
        key: "ci_prod".into(),
        name: "ci-prod".into(),
        ty: "circleci".into(),
        description: None,
        disabled: false,
        disabled_reason: None,
        created_at: "2026-01-01T00:00:00.000Z".into(),
        updated_at: at.into(),
        secrets: vec![1, 2, 3],
        last_test_at: Some(at.into()),
        last_test_succeeded: Some(ok),
        last_test_error: (!ok).then(|| "token rejected (401)".to_owned()),
        requests_per_second: None,
        timeout_ms: None,
        managed_by: "cli".into(),
    };
    store
        .insert_connection(&row("2026-01-01T00:00:01.000Z", true))
        .expect("insert");
    let d = deliverer();
    let report = d.deliver_pending(&mut store, &config).await.expect("pass");
    assert_eq!(
        (report.system_events, report.delivered()),
        (1, 1),
        "{report:?}"
    );

    store
        .update_connection(&row("2026-01-01T00:00:02.000Z", false))
        .expect("update");
    let report = d.deliver_pending(&mut store, &config).await.expect("pass");
    assert_eq!(report.delivered(), 1, "started failing");
    store
        .update_connection(&row("2026-01-01T00:00:03.000Z", false))
        .expect("update");
    let report = d.deliver_pending(&mut store, &config).await.expect("pass");
    assert_eq!(report.delivered(), 0, "still failing is not news");
    store
        .update_connection(&row("2026-01-01T00:00:04.000Z", true))
        .expect("update");
    let report = d.deliver_pending(&mut store, &config).await.expect("pass");
    assert_eq!(report.delivered(), 1, "recovered");
    let report = d.deliver_pending(&mut store, &config).await.expect("pass");
    assert_eq!(
        (report.system_events, report.delivered()),
        (0, 0),
        "idempotent"
    );

    let text = std::fs::read_to_string(&out).expect("alerts file");
    assert!(!text.contains(token), "the token never reaches an alert");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let actions: Vec<&str> = lines
        .iter()
        .map(|l| l["event"]["action"].as_str().expect("action"))
        .collect();
    assert_eq!(
        actions,
        [
            "sync_failed",
            "connection_test_failed",
            "connection_test_recovered"
        ]
    );
    let failed = &lines[0]["event"];
    assert_eq!(failed["object"], "system");
    assert_eq!(failed["_type"], "sextant_sync_run");
    assert_eq!(failed["integration"], "acme");
    let error = failed["after"]["error"].as_str().expect("error");
    assert!(error.contains("401"), "{error}");
    assert!(
        lines[0]["summary"]
            .as_str()
            .expect("summary")
            .contains("401")
    );
    let test_failed = &lines[1]["event"];
    assert_eq!(test_failed["_key"], "sextant_connection:ci_prod");
    assert_eq!(test_failed["changes"]["lastTestSucceeded"]["old"], true);
    assert_eq!(test_failed["changes"]["lastTestSucceeded"]["new"], false);
    assert_eq!(test_failed["after"]["error"], "token rejected (401)");
}

// ------------------------------------------------------------ real binary

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_delivers_exactly_the_expected_signed_alerts_to_a_webhook() {
    let home = tempfile::tempdir().expect("tempdir");
    let server = FixtureServer::start(FixtureSet::Day1)
        .await
        .expect("fixture server");
    let receiver = Receiver::start().await;
    let config = common::write_config(home.path(), &server.base_url(), "");
    let mut text = std::fs::read_to_string(&config).expect("config");
    text.push_str(&format!(
        "sinks:\n{}",
        // From the beginning: the day-1 events are read, and the
        // baseline rule (not the sink's start) keeps them from alerting.
        webhook_sink(&receiver.url, 2)
    ));
    text.push_str(&rules("[hook]"));
    std::fs::write(&config, text).expect("config");
    let env = [
        (common::SECRET_TOKEN_ENV, FIXTURE_TOKEN),
        (SECRET_ENV, SECRET),
    ];

    let day1 = common::sextant_async(home.path(), &["sync", "acme"], &env).await;
    assert_eq!(day1.code, 0, "{}", day1.all_output());
    assert!(
        receiver.attempts().is_empty(),
        "the first sync is a baseline"
    );

    server.switch(FixtureSet::Day2);
    let day2 = common::sextant_async(home.path(), &["sync", "acme"], &env).await;
    assert_eq!(day2.code, 0, "{}", day2.all_output());
    assert!(
        day2.stdout
            .contains(&format!("alerts: {} delivered", EXPECTED.len())),
        "{}",
        day2.stdout
    );
    let attempts = receiver.attempts();
    assert!(attempts.iter().all(|r| r.accepted));
    let got: Vec<(String, String)> = attempts.iter().map(rule_and_summary).collect();
    assert_eq!(got, expected());
    let mut ids = BTreeMap::new();
    for r in &attempts {
        assert_signed(r);
        *ids.entry(r.id.clone()).or_insert(0) += 1;
    }
    assert!(ids.values().all(|n| *n == 1), "{ids:?}");

    // A re-run changes nothing and sends nothing.
    let again = common::sextant_async(home.path(), &["sync", "acme", "--json"], &env).await;
    assert_eq!(again.code, 0, "{}", again.all_output());
    let doc: Value = serde_json::from_str(&again.stdout).expect("one JSON object");
    assert_eq!(doc["alerts"]["sinks"][0]["delivered"], 0);
    assert_eq!(receiver.attempts().len(), EXPECTED.len());

    let list = common::sextant_async(home.path(), &["alerts", "list"], &env).await;
    assert_eq!(list.code, 0, "{}", list.all_output());
    assert!(list.stdout.contains("job-failed"), "{}", list.stdout);
    assert!(
        list.stdout
            .contains(&format!("{} delivered", EXPECTED.len())),
        "{}",
        list.stdout
    );
    assert!(list.stdout.contains("(lag 0)"), "{}", list.stdout);
    for run in [&day1, &day2, &again, &list] {
        let all = run.all_output();
        assert!(!all.contains(SECRET), "the webhook secret leaked: {all}");
        assert!(
            !all.contains(URL_TOKEN),
            "the webhook URL path leaked: {all}"
        );
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_whose_webhook_is_down_succeeds_and_keeps_the_alerts() {
    let home = tempfile::tempdir().expect("tempdir");
    let server = FixtureServer::start(FixtureSet::Day1)
        .await
        .expect("fixture server");
    let receiver = Receiver::start().await;
    let config = common::write_config(home.path(), &server.base_url(), "");
    let mut text = std::fs::read_to_string(&config).expect("config");
    text.push_str(&format!("sinks:\n{}", webhook_sink(&receiver.url, 0)));
    text.push_str(&rules("[hook]"));
    std::fs::write(&config, text).expect("config");
    let env = [
        (common::SECRET_TOKEN_ENV, FIXTURE_TOKEN),
        (SECRET_ENV, SECRET),
    ];
    assert_eq!(
        common::sextant_async(home.path(), &["sync", "acme"], &env)
            .await
            .code,
        0
    );
    server.switch(FixtureSet::Day2);
    receiver.state.refuse_next.store(1000, Ordering::SeqCst);
    let day2 = common::sextant_async(home.path(), &["sync", "acme"], &env).await;
    assert_eq!(
        day2.code,
        0,
        "the sync itself succeeded: {}",
        day2.all_output()
    );
    assert!(
        day2.stderr.contains("sink \"hook\"") && day2.stderr.contains("stay queued"),
        "{}",
        day2.stderr
    );
    let list = common::sextant_async(home.path(), &["alerts", "list", "--json"], &env).await;
    let doc: Value = serde_json::from_str(&list.stdout).expect("JSON");
    let hook = &doc["sinks"][0];
    assert!(hook["lag"].as_u64().expect("lag") > 0, "{hook}");
    assert!(hook["last_error"].as_str().expect("error").contains("503"));
    for run in [&day2, &list] {
        assert!(!run.all_output().contains(SECRET) && !run.all_output().contains(URL_TOKEN));
    }
    // The receiver recovers: the next run delivers the backlog.
    receiver.state.refuse_next.store(0, Ordering::SeqCst);
    let later = common::sextant_async(home.path(), &["sync", "acme"], &env).await;
    assert_eq!(later.code, 0, "{}", later.all_output());
    let got: Vec<(String, String)> = receiver.accepted().iter().map(rule_and_summary).collect();
    assert_eq!(got, expected());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_one_process_delivers_at_a_time() {
    let home = tempfile::tempdir().expect("tempdir");
    let db = home.path().join("sextant.db");
    drop(two_days(&db).await);
    let receiver = Receiver::start().await;
    let yaml = format!(
        "sinks:\n{}{}",
        webhook_sink_with_secret_file(home.path(), &receiver.url, 0),
        rules("[hook]")
    );
    let config = alerts(&yaml);
    {
        let mut other = Store::open(&db).expect("store");
        other
            .acquire_lease(
                sextant::alerts::DELIVERY_LEASE,
                "daemon:pid1:other",
                std::time::Duration::from_secs(60),
            )
            .expect("the other process takes the lease");
    }
    let skipped = deliver(&db, &config).await;
    assert_eq!(skipped.skipped_for.as_deref(), Some("daemon:pid1:other"));
    assert!(skipped.sinks.is_empty(), "{skipped:?}");
    assert!(receiver.attempts().is_empty(), "nothing was sent");
    {
        let mut other = Store::open(&db).expect("store");
        other
            .release_lease(sextant::alerts::DELIVERY_LEASE, "daemon:pid1:other")
            .expect("release");
    }
    let ran = deliver(&db, &config).await;
    assert_eq!(ran.skipped_for, None);
    assert_eq!(sink(&ran, "hook").error, None, "{ran:?}");
    assert_eq!(sink(&ran, "hook").delivered, EXPECTED.len() as u64);
    let got: Vec<(String, String)> = receiver.accepted().iter().map(rule_and_summary).collect();
    assert_eq!(got, expected());
    // The pass released its lease: the next one runs too.
    assert_eq!(deliver(&db, &config).await.skipped_for, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_run_that_found_nothing_is_the_baseline() {
    let home = tempfile::tempdir().expect("tempdir");
    let db = home.path().join("sextant.db");
    let mut store = Store::open(&db).expect("store");
    // The first run succeeds with an empty estate: no events at all.
    let sync_id = store.begin_run("acme").expect("begin");
    store
        .commit_run(
            sync_id,
            "acme",
            &sextant::graph::Collected::new(),
            &Default::default(),
            &[],
            RunStatus::Success,
        )
        .expect("empty commit");
    // Then the estate appears: every object is news, not a baseline.
    let server = FixtureServer::start(FixtureSet::Day1)
        .await
        .expect("fixture server");
    assert_eq!(
        sync(&mut store, &server, FIXTURE_TOKEN).await,
        RunStatus::Success
    );
    server.shutdown().await;
    drop(store);
    let out = home.path().join("alerts.jsonl");
    let config = alerts(&format!(
        "sinks:\n  - name: audit\n    type: file\n    path: {}\n    start: beginning\n{}",
        out.display(),
        rules("[audit]")
    ));
    let report = deliver(&db, &config).await;
    assert!(sink(&report, "audit").delivered > 0, "{report:?}");
    let text = std::fs::read_to_string(&out).expect("alerts file");
    assert!(text.contains("\"new-user\""), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_event_per_batch_delivers_the_same_alerts() {
    let home = tempfile::tempdir().expect("tempdir");
    let db = home.path().join("sextant.db");
    drop(two_days(&db).await);
    let receiver = Receiver::start().await;
    let config = alerts(&format!(
        "sinks:\n{}{}",
        webhook_sink_with_secret_file(home.path(), &receiver.url, 0),
        rules("[hook]")
    ));
    let mut store = Store::open(&db).expect("store");
    let report = deliverer()
        .batch_size(1)
        .deliver_pending(&mut store, &config)
        .await
        .expect("pass");
    assert_eq!(sink(&report, "hook").error, None, "{report:?}");
    let got: Vec<(String, String)> = receiver.accepted().iter().map(rule_and_summary).collect();
    assert_eq!(got, expected(), "batch boundaries lose and repeat nothing");
    // Everything is acknowledged: a second pass sends nothing.
    let again = deliverer()
        .batch_size(1)
        .deliver_pending(&mut store, &config)
        .await
        .expect("pass");
    assert_eq!(again.delivered(), 0);
    assert_eq!(receiver.attempts().len(), EXPECTED.len());
}

#[test]
fn a_run_still_going_during_a_pass_is_reported_when_it_fails() {
    let mut store = Store::open_in_memory().expect("store");
    let slow = store.begin_run("slow").expect("begin");
    let quick = store.begin_run("quick").expect("begin");
    store
        .finish_run(quick, RunStatus::Failed, &[], Some("boom"))
        .expect("finish");
    assert_eq!(store.record_system_events().expect("pass"), 1);
    // The pass went past `quick` but not past `slow`, which was running.
    store
        .finish_run(slow, RunStatus::Failed, &[], Some("late boom"))
        .expect("finish");
    assert_eq!(store.record_system_events().expect("pass"), 1);
    assert_eq!(store.record_system_events().expect("pass"), 0, "each once");
    let later = store.begin_run("later").expect("begin");
    store
        .finish_run(later, RunStatus::Failed, &[], None)
        .expect("finish");
    assert_eq!(store.record_system_events().expect("pass"), 1);
}

/// A receiver nobody listens on: the sink's error says why the request
/// failed (the OS's "connection refused", from the cause chain) and never
/// the URL's secret path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_webhook_names_the_cause() {
    let home = tempfile::tempdir().expect("tempdir");
    let db = home.path().join("sextant.db");
    drop(two_days(&db).await);
    // A port that was just free: nothing listens there now.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let url = format!("http://{addr}/hooks/{URL_TOKEN}");
    let sink_yaml = webhook_sink_with_secret_file(home.path(), &url, 0);
    let yaml = format!("sinks:\n{sink_yaml}{}", rules("[hook]"));
    let report = deliver(&db, &alerts(&yaml)).await;
    let error = sink(&report, "hook")
        .error
        .clone()
        .expect("the webhook failed");
    assert!(
        error.contains("request failed: error sending request")
            && error.to_lowercase().contains("connection refused"),
        "{error}"
    );
    assert!(!error.contains(URL_TOKEN), "{error}");
}

/// `format: slack` sends each alert as `{"text": "*[SEVERITY] rule*: summary"}`,
/// signed like any webhook, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slack_webhook_gets_one_text_message_per_alert() {
    let home = tempfile::tempdir().expect("tempdir");
    let db = home.path().join("sextant.db");
    drop(two_days(&db).await);
    let receiver = Receiver::start().await;
    let sink_yaml =
        webhook_sink_with_secret_file(home.path(), &receiver.url, 0) + "    format: slack\n";
    let yaml = format!("sinks:\n{sink_yaml}{}", rules("[hook]"));
    let report = deliver(&db, &alerts(&yaml)).await;
    assert_eq!(sink(&report, "hook").error, None);
    let accepted = receiver.accepted();
    assert_eq!(accepted.len(), EXPECTED.len());
    for (received, (rule, summary)) in accepted.iter().zip(EXPECTED) {
        assert_signed(received);
        let body = received.json();
        let fields: Vec<&String> = body.as_object().expect("an object").keys().collect();
        assert_eq!(fields, ["text"], "{body}");
        let text = body["text"].as_str().expect("text");
        let severity = match *rule {
            "context-variable-added-or-removed" | "job-failed" => "HIGH",
            "production-context-variable-added" => "CRITICAL",
            // new-user says medium; the others leave the default, medium.
            _ => "MEDIUM",
        };
        assert_eq!(text, format!("*[{severity}] {rule}*: {summary}"));
    }
}

/// A receiver that redirects is not followed (a signed POST is not re-sent
/// elsewhere): the sink says to set the final address, and keeps the alerts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirecting_webhook_is_not_followed_and_says_how_to_fix_it() {
    let home = tempfile::tempdir().expect("tempdir");
    let db = home.path().join("sextant.db");
    drop(two_days(&db).await);
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&hits);
    let app = Router::new().route(
        "/hooks/{token}",
        post(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async {
                (
                    StatusCode::TEMPORARY_REDIRECT,
                    [("location", "http://127.0.0.1:9/elsewhere")],
                )
            }
        }),
    );
    let addr = common::serve(app).await;
    let url = format!("http://{addr}/hooks/{URL_TOKEN}");
    let sink_yaml = webhook_sink_with_secret_file(home.path(), &url, 2);
    let yaml = format!("sinks:\n{sink_yaml}{}", rules("[hook]"));
    let report = deliver(&db, &alerts(&yaml)).await;
    let hook = sink(&report, "hook");
    assert_eq!(hook.delivered, 0);
    let error = hook.error.clone().expect("refused");
    assert!(
        error
            .contains("answered 307 Temporary Redirect (a redirect); set url to the final address"),
        "{error}"
    );
    assert!(!error.contains(URL_TOKEN), "{error}");
    assert_eq!(hits.load(Ordering::SeqCst), 1, "not retried, not followed");
    let store = Store::open(&db).expect("store");
    let cursor = store
        .sink_cursor("hook")
        .expect("read")
        .expect("registered");
    assert_eq!(cursor.delivered, 0, "the alerts stay queued");
}

/// A file sink that cannot be written names its path and the fix, keeps
/// its alerts, and delivers them all once the path works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_file_sink_names_its_path_and_keeps_the_alerts() {
    let home = tempfile::tempdir().expect("tempdir");
    let db = home.path().join("sextant.db");
    drop(two_days(&db).await);
    let missing = home.path().join("no-such-dir").join("audit.jsonl");
    let sink_yaml = |path: &std::path::Path| {
        format!(
            "sinks:\n  - name: audit\n    type: file\n    path: {}\n    start: beginning\n{}",
            path.display(),
            rules("[audit]")
        )
    };
    let report = deliver(&db, &alerts(&sink_yaml(&missing))).await;
    let audit = sink(&report, "audit");
    assert_eq!(audit.delivered, 0);
    let error = audit.error.clone().expect("cannot write");
    assert!(
        error.contains(&format!("cannot append to {}", missing.display()))
            && error.contains("check that its directory exists and is writable"),
        "{error}"
    );

    std::fs::create_dir(home.path().join("no-such-dir")).expect("mkdir");
    let report = deliver(&db, &alerts(&sink_yaml(&missing))).await;
    assert_eq!(sink(&report, "audit").error, None);
    assert_eq!(sink(&report, "audit").delivered, EXPECTED.len() as u64);
    let lines = std::fs::read_to_string(&missing).expect("written");
    assert_eq!(lines.lines().count(), EXPECTED.len());
}

/// A sink added with `start: end` just before a sync gets that sync's
/// alerts: its cursor starts before the run, not after the run's events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_added_with_start_end_gets_the_alerts_of_the_next_sync() {
    let home = tempfile::tempdir().expect("tempdir");
    let server = FixtureServer::start(FixtureSet::Day1)
        .await
        .expect("fixture server");
    let config = common::write_config(home.path(), &server.base_url(), "");
    let base = std::fs::read_to_string(&config).expect("config");
    let env = [(common::SECRET_TOKEN_ENV, FIXTURE_TOKEN)];
    let day1 = common::sextant_async(home.path(), &["sync", "acme"], &env).await;
    assert_eq!(day1.code, 0, "{}", day1.all_output());

    let audit = home.path().join("audit.jsonl");
    std::fs::write(
        &config,
        format!(
            "{base}sinks:\n  - name: audit\n    type: file\n    path: {}\n    start: end\n{}",
            audit.display(),
            rules("[audit]")
        ),
    )
    .expect("config with the new sink");
    server.switch(FixtureSet::Day2);
    let day2 = common::sextant_async(home.path(), &["sync", "acme"], &env).await;
    assert_eq!(day2.code, 0, "{}", day2.all_output());
    let lines = std::fs::read_to_string(&audit).unwrap_or_default();
    let got: Vec<(String, String)> = lines
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("a JSON line");
            (
                v["rule"].as_str().unwrap_or_default().to_owned(),
                v["summary"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(got, expected(), "{}", day2.all_output());
    server.shutdown().await;
}

/// A rule that names an integration the store does not have is reported
/// when a sync starts (it would silently never match); known names are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_naming_an_unknown_integration_is_reported() {
    let home = tempfile::tempdir().expect("tempdir");
    let server = FixtureServer::start(FixtureSet::Day1)
        .await
        .expect("fixture server");
    let config = common::write_config(home.path(), &server.base_url(), "");
    let base = std::fs::read_to_string(&config).expect("config");
    std::fs::write(
        &config,
        format!(
            "{base}sinks:\n  - name: out\n    type: stdout\nrules:\n  - name: typo-rule\n    integrations: [acme, acmee]\n    match: {{ object: entity }}\n    sinks: [out]\n"
        ),
    )
    .expect("config");
    let env = [(common::SECRET_TOKEN_ENV, FIXTURE_TOKEN)];
    let run = common::sextant_async(home.path(), &["sync", "acme"], &env).await;
    assert_eq!(run.code, 0, "{}", run.all_output());
    assert!(
        run.stderr.contains(
            "Alert rule \"typo-rule\" names integration \"acmee\", which does not exist, so it never matches it"
        ),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("integration \"acme\", which"),
        "{}",
        run.stderr
    );
    server.shutdown().await;
}

/// A delivery that cannot even start (here the alert state cannot be
/// written) is a warning after a committed sync: the sync's exit code and
/// its `--json` report stand, the alerts wait for the next delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_delivery_does_not_fail_the_committed_sync() {
    let home = tempfile::tempdir().expect("tempdir");
    let server = FixtureServer::start(FixtureSet::Day1)
        .await
        .expect("fixture server");
    let config = common::write_config(home.path(), &server.base_url(), "");
    let audit = home.path().join("audit.jsonl");
    let base = std::fs::read_to_string(&config).expect("config");
    std::fs::write(
        &config,
        format!(
            "{base}sinks:\n  - name: audit\n    type: file\n    path: {}\n{}",
            audit.display(),
            rules("[audit]")
        ),
    )
    .expect("config");
    let env = [(common::SECRET_TOKEN_ENV, FIXTURE_TOKEN)];
    let day1 = common::sextant_async(home.path(), &["sync", "acme"], &env).await;
    assert_eq!(day1.code, 0, "{}", day1.all_output());
    rusqlite::Connection::open(home.path().join("sextant.db"))
        .and_then(|db| {
            db.execute_batch(
                "CREATE TRIGGER no_alert_state BEFORE UPDATE ON alert_state
                 BEGIN SELECT RAISE(ABORT, 'alert state is read-only here'); END;",
            )
        })
        .expect("trigger");
    server.switch(FixtureSet::Day2);
    let day2 = common::sextant_async(home.path(), &["sync", "acme", "--json"], &env).await;
    assert_eq!(day2.code, 0, "{}", day2.all_output());
    let doc: Value = serde_json::from_str(&day2.stdout).expect("the run report");
    assert_eq!(doc["status"], "success", "{doc}");
    assert!(doc["created"].as_u64().unwrap_or(0) > 0, "{doc}");
    assert!(
        day2.stderr.contains("warning: alert delivery failed:")
            && day2.stderr.contains("alert state is read-only here"),
        "{}",
        day2.stderr
    );
    server.shutdown().await;
}

/// A webhook URL kept in a file (a Slack-style URL is itself a credential)
/// that does not hold a URL, and an empty secret: each is named by its
/// reference, never by what the file holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_referenced_webhook_url_or_secret_that_is_unusable_is_never_echoed() {
    let home = tempfile::tempdir().expect("tempdir");
    let db = home.path().join("sextant.db");
    drop(two_days(&db).await);
    let url_file = home.path().join("webhook.url");
    std::fs::write(&url_file, format!("not-a-url/{URL_TOKEN}")).expect("url file");
    let empty_secret = home.path().join("empty.secret");
    std::fs::write(&empty_secret, "").expect("secret file");
    let receiver = Receiver::start().await;
    for (url, secret, expected) in [
        (
            format!("file:{}", url_file.display()),
            format!("file:{}", empty_secret.display()),
            "does not hold an http(s) URL; put https://host/path in it",
        ),
        (
            receiver.url.clone(),
            format!("file:{}", empty_secret.display()),
            "is empty; put the HMAC key in it",
        ),
    ] {
        let sink = webhook_sink(&url, 0).replace(&format!("env:{SECRET_ENV}"), &secret);
        let config = alerts(&format!("sinks:\n{sink}{}", rules("[hook]")));
        let report = deliver(&db, &config).await;
        let error = sink_error(&report);
        assert!(error.contains(expected), "{error}");
        for shown in [error.clone(), format!("{config:?}")] {
            assert!(!shown.contains(URL_TOKEN), "{shown}");
        }
    }
    assert!(receiver.attempts().is_empty());
}

fn sink_error(report: &DeliveryReport) -> String {
    sink(report, "hook").error.clone().unwrap_or_default()
}
