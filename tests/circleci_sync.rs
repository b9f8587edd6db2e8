//! CircleCI end to end through the real client, fixture server and store:
//! exact counts of every type, exact changes between the two fixture days,
//! and each fault case leaving the stored graph as it should.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sextant::config::{IntegrationConfig, Interval};
use sextant::connection::{Secret, Secrets, connection_type};
use sextant::events::{Action, ChangeEvent};
use sextant::fixtures::{FIXTURE_TOKEN, Fault, FixtureServer, FixtureSet};
use sextant::graph::Schema;
use sextant::run::{RunStatus, StepStatus};
use sextant::source::ResolvedConnection;
use sextant::source::http::{HttpConfig, RateLimit};
use sextant::store::Store;
use sextant::sync::{SyncReport, run_sync};

const DAY1: &[(&str, u64)] = &[
    ("circleci_account", 1),
    ("circleci_user", 3),
    ("circleci_user_group", 2),
    ("circleci_project", 3),
    ("circleci_pipeline", 6),
    ("circleci_workflow", 6),
    ("circleci_job", 11),
    ("circleci_context", 3),
    ("circleci_context_environment_variable", 5),
    ("circleci_project_environment_variable", 3),
    ("circleci_account_has_user", 3),
    ("circleci_account_has_user_group", 2),
    ("circleci_context_has_context_environment_variable", 5),
    ("circleci_pipeline_has_workflow", 6),
    ("circleci_project_has_pipeline", 6),
    ("circleci_project_has_project_environment_variable", 3),
    ("circleci_user_group_has_project", 3),
    ("circleci_user_group_has_user", 5),
    ("circleci_user_group_has_context", 3),
    ("circleci_workflow_has_job", 11),
    ("circleci_project_uses_context_environment_variable", 6),
];

const DAY2: &[(&str, u64)] = &[
    ("circleci_account", 1),
    ("circleci_user", 4),
    ("circleci_user_group", 2),
    ("circleci_project", 3),
    ("circleci_pipeline", 5),
    ("circleci_workflow", 6),
    ("circleci_job", 13),
    ("circleci_context", 3),
    ("circleci_context_environment_variable", 6),
    ("circleci_project_environment_variable", 3),
    ("circleci_account_has_user", 4),
    ("circleci_account_has_user_group", 2),
    ("circleci_context_has_context_environment_variable", 6),
    ("circleci_pipeline_has_workflow", 6),
    ("circleci_project_has_pipeline", 5),
    ("circleci_project_has_project_environment_variable", 3),
    ("circleci_user_group_has_project", 3),
    ("circleci_user_group_has_user", 6),
    ("circleci_user_group_has_context", 3),
    ("circleci_workflow_has_job", 13),
    ("circleci_project_uses_context_environment_variable", 8),
];

/// (type, created, updated, deleted) between day1 and day2, from fixtures/circleci/README.md.
const DAY1_TO_DAY2: &[(&str, u64, u64, u64)] = &[
    ("circleci_user", 1, 0, 0),
    ("circleci_project", 1, 0, 1),
    ("circleci_pipeline", 2, 0, 3),
    ("circleci_workflow", 3, 1, 3),
    ("circleci_job", 6, 1, 4),
    ("circleci_context", 1, 0, 1),
    ("circleci_context_environment_variable", 2, 0, 1),
    ("circleci_project_environment_variable", 2, 0, 2),
    ("circleci_account_has_user", 1, 0, 0),
    ("circleci_context_has_context_environment_variable", 2, 0, 1),
    ("circleci_pipeline_has_workflow", 3, 0, 3),
    ("circleci_project_has_pipeline", 2, 0, 3),
    ("circleci_project_has_project_environment_variable", 2, 0, 2),
    ("circleci_user_group_has_project", 1, 0, 1),
    ("circleci_user_group_has_user", 1, 0, 0),
    ("circleci_user_group_has_context", 1, 0, 1),
    ("circleci_workflow_has_job", 6, 0, 4),
    (
        "circleci_project_uses_context_environment_variable",
        4,
        0,
        2,
    ),
];

struct Harness {
    server: FixtureServer,
    store: Store,
    schema: Arc<Schema>,
    integration: IntegrationConfig,
    connection: ResolvedConnection,
    _home: tempfile::TempDir,
}

/// Fast retries and short timeouts so fault tests finish quickly.
fn test_http() -> HttpConfig {
    HttpConfig {
        rate_limit: RateLimit::per_second(1000, 100),
        request_timeout: Duration::from_millis(500),
        backoff_min: Duration::from_millis(1),
        backoff_max: Duration::from_millis(5),
        max_retries: 3,
        retry_after_cap: Duration::from_secs(2),
        ..HttpConfig::default()
    }
}

fn connection(base_url: &str, token: &str, http: HttpConfig) -> ResolvedConnection {
    let mut secrets = Secrets::default();
    secrets.plain.insert("host".into(), base_url.to_owned());
    secrets
        .sensitive
        .insert("api_token".into(), Secret::new(token));
    ResolvedConnection {
        name: "ci-test".into(),
        ty: connection_type("circleci").expect("circleci type"),
        secrets,
        http,
    }
}

impl Harness {
    async fn start() -> Harness {
        let server = FixtureServer::start(FixtureSet::Day1)
            .await
            .expect("fixture server");
        let home = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&home.path().join("sextant.db")).expect("store");
        let connection = connection(&server.base_url(), FIXTURE_TOKEN, test_http());
        Harness {
            server,
            store,
            schema: Arc::new(Schema::embedded().expect("schema")),
            integration: IntegrationConfig {
                name: "acme".into(),
                connection: "ci-test".into(),
                account_name: Some("Acme".into()),
                description: None,
                interval: Interval::Disabled,
                tag_account_name: false,
                enabled: true,
                settings: Value::Null,
            },
            connection,
            _home: home,
        }
    }

    async fn sync(&mut self) -> SyncReport {
        run_sync(
            &mut self.store,
            self.schema.clone(),
            &self.integration,
            &self.connection,
            None,
        )
        .await
        .expect("sync runs")
    }

    fn counts(&self) -> BTreeMap<String, u64> {
        self.store.counts_by_type("acme").expect("counts")
    }

    fn events_after(&self, seq: u64) -> Vec<ChangeEvent> {
        self.store
            .events(seq, Some("acme"), usize::MAX)
            .expect("events")
    }

    fn export(&self) -> String {
        let mut out = String::new();
        let mut push = |v: Value| {
            out.push_str(&v.to_string());
            out.push('\n');
            Ok(())
        };
        let mut rels = String::new();
        let mut push_rel = |v: Value| {
            rels.push_str(&v.to_string());
            rels.push('\n');
            Ok(())
        };
        self.store
            .export(Some("acme"), &mut push, &mut push_rel)
            .expect("export");
        out + &rels
    }
}

fn table(rows: &[(&str, u64)]) -> BTreeMap<String, u64> {
    rows.iter().map(|(t, n)| ((*t).to_owned(), *n)).collect()
}

fn step<'a>(report: &'a SyncReport, id: &str) -> &'a sextant::run::StepOutcome {
    report
        .steps
        .iter()
        .find(|s| s.id == id)
        .expect("step exists")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_days_have_exact_counts_and_exact_changes() {
    let mut h = Harness::start().await;
    let first = h.sync().await;
    assert_eq!(first.status, RunStatus::Success, "{:#?}", first.steps);
    assert_eq!(h.counts(), table(DAY1));
    assert_eq!(first.created, 43 + 53);
    for s in &first.steps {
        assert!(s.problems.is_empty() && s.duplicates.is_empty(), "{s:#?}");
    }

    // Each project is fetched once, however many pipelines it has.
    let project_gets = h
        .server
        .requests()
        .iter()
        .filter(|r| r.starts_with("GET /api/v2/project/gh/acme/api") && !r.contains("envvar"))
        .count();
    assert_eq!(project_gets, 1);

    let unchanged = h.sync().await;
    assert_eq!(
        (unchanged.created, unchanged.updated, unchanged.deleted),
        (0, 0, 0)
    );

    let before = h.store.last_event_seq().expect("seq");
    h.server.switch(FixtureSet::Day2);
    let second = h.sync().await;
    assert_eq!(second.status, RunStatus::Success);
    assert_eq!(h.counts(), table(DAY2));

    let events = h.events_after(before);
    let mut found: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    for e in &events {
        let entry = found.entry(e.ty.clone()).or_default();
        match e.action {
            Action::Created => entry.0 += 1,
            Action::Updated => entry.1 += 1,
            Action::Deleted => entry.2 += 1,
        }
    }
    let expected: BTreeMap<String, (u64, u64, u64)> = DAY1_TO_DAY2
        .iter()
        .map(|(t, c, u, d)| ((*t).to_owned(), (*c, *u, *d)))
        .collect();
    assert_eq!(found, expected);

    // The two updates, field by field.
    let updates: Vec<&ChangeEvent> = events
        .iter()
        .filter(|e| e.action == Action::Updated)
        .collect();
    assert_eq!(updates.len(), 2);
    for u in &updates {
        let changes = u.changes.as_ref().expect("changes on update");
        assert_eq!(
            changes.keys().collect::<Vec<_>>(),
            ["status", "stoppedOn"],
            "{u:?}"
        );
        assert_eq!(changes["status"].old, "running");
        assert_eq!(changes["status"].new, "failed");
        assert_eq!(changes["stoppedOn"].old, Value::Null);
        assert!(u.before.is_some() && u.after.is_some());
    }
    let created_vars: Vec<&str> = events
        .iter()
        .filter(|e| e.action == Action::Created && e.ty == "circleci_project_environment_variable")
        .filter_map(|e| e.after.as_ref()?.get("name")?.as_str())
        .collect();
    assert_eq!(created_vars.len(), 2);
    assert!(
        created_vars.contains(&"STRIPE_KEY") && created_vars.contains(&"APP_STORE_CONNECT_KEY")
    );
    for e in events.iter().filter(|e| e.action == Action::Deleted) {
        assert!(e.before.is_some() && e.after.is_none() && e.changes.is_none());
    }
    // Seq is gap-free across both syncs.
    let all = h.events_after(0);
    assert_eq!(
        all.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=all.len() as u64).collect::<Vec<_>>()
    );

    // Re-running the day2 sync changes nothing.
    let again = h.sync().await;
    assert_eq!((again.created, again.updated, again.deleted), (0, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_variable_values_are_never_stored() {
    let mut h = Harness::start().await;
    h.sync().await;
    let masked: Vec<String> = FixtureSet::Day1
        .file_names()
        .into_iter()
        .filter(|f| f.contains("envvar"))
        .flat_map(|f| {
            let doc: Value =
                serde_json::from_slice(FixtureSet::Day1.file(&f).expect("file")).expect("json");
            doc["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|i| i["value"].as_str().map(str::to_owned))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        !masked.is_empty(),
        "fixtures have masked values to look for"
    );
    let export = h.export();
    let db = std::fs::read(h._home.path().join("sextant.db")).expect("db");
    for value in masked {
        assert!(!export.contains(&value), "value {value} exported");
        assert!(
            !db.windows(value.len()).any(|w| w == value.as_bytes()),
            "value {value} stored"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_storm_with_retry_after_completes_and_waits() {
    let mut h = Harness::start().await;
    h.server.inject(
        "/api/v2/me/collaborations",
        Fault::Status {
            status: 429,
            times: 2,
            retry_after: Some("1".into()),
        },
    );
    let report = h.sync().await;
    assert_eq!(report.status, RunStatus::Success, "{:#?}", report.steps);
    let orgs = step(&report, "fetch-organizations");
    assert_eq!(orgs.retries, 2);
    assert!(
        orgs.waited_ms >= 2000,
        "Retry-After honoured: waited {} ms",
        orgs.waited_ms
    );
    assert_eq!(h.counts(), table(DAY1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried() {
    let mut h = Harness::start().await;
    h.server.inject(
        "/api/v2/pipeline",
        Fault::Status {
            status: 500,
            times: 2,
            retry_after: None,
        },
    );
    let report = h.sync().await;
    assert_eq!(report.status, RunStatus::Success, "{:#?}", report.steps);
    assert!(step(&report, "fetch-pipelines").retries >= 2);
    assert_eq!(h.counts(), table(DAY1));
}

/// Runs day1, then day2 with a fault; checks the faulty step failed, the
/// others completed, and nothing of the failed step's types was deleted.
async fn fault_after_day1(pattern: &str, fault: Fault, failed_step: &str) -> (Harness, SyncReport) {
    let mut h = Harness::start().await;
    h.connection.http.max_retries = 1;
    assert_eq!(h.sync().await.status, RunStatus::Success);
    h.server.switch(FixtureSet::Day2);
    h.server.inject(pattern, fault);
    let report = h.sync().await;
    assert_eq!(report.status, RunStatus::Partial, "{:#?}", report.steps);
    assert_eq!(report.status.exit_code(), 3);
    let failed = step(&report, failed_step);
    assert_eq!(failed.status, StepStatus::Failed, "{failed:#?}");
    (h, report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_endpoint_times_out_and_keeps_its_types() {
    let (h, report) = fault_after_day1("/api/v2/workflow/*", Fault::Hang, "fetch-jobs").await;
    let error = step(&report, "fetch-jobs")
        .error
        .clone()
        .unwrap_or_default();
    assert!(
        error.contains("timed out") || error.contains("timeout"),
        "{error}"
    );
    let counts = h.counts();
    // Jobs: the day1 jobs all kept (none deleted), none of day2's collected.
    assert_eq!(counts["circleci_job"], 11);
    // Other steps completed against day2.
    assert_eq!(counts["circleci_pipeline"], 5);
    assert_eq!(counts["circleci_context_environment_variable"], 6);
    for s in report.steps.iter().filter(|s| s.id != "fetch-jobs") {
        assert_eq!(s.status, StepStatus::Success, "{s:#?}");
    }
    h.server.clear_faults();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_fails_one_step_naming_the_endpoint() {
    let path = "/api/v2/context/88c23307-cbd8-40f9-bfda-ac39b0ecbba6/environment-variable";
    let (h, report) = fault_after_day1(
        path,
        Fault::Body("{\"items\": [ oops".into()),
        "fetch-context-env-vars",
    )
    .await;
    let error = step(&report, "fetch-context-env-vars")
        .error
        .clone()
        .unwrap_or_default();
    assert!(error.contains(path), "names the endpoint: {error}");
    let counts = h.counts();
    // staging's STAGING_DB_URL would have been deleted by a complete run; it is kept.
    assert_eq!(counts["circleci_context_environment_variable"], 5 + 1);
    // project USES context var depends on the failed step: skipped, its relationships kept.
    assert_eq!(
        step(&report, "build-project-context-usage").status,
        StepStatus::Skipped
    );
    assert_eq!(counts["circleci_job"], 13);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pagination_loop_is_stopped() {
    let (h, report) =
        fault_after_day1("/api/v2/pipeline", Fault::PageLoop, "fetch-pipelines").await;
    let error = step(&report, "fetch-pipelines")
        .error
        .clone()
        .unwrap_or_default();
    assert!(
        error.contains("loop") || error.contains("repeated"),
        "{error}"
    );
    for dependent in [
        "fetch-projects",
        "fetch-workflows",
        "fetch-jobs",
        "fetch-users",
    ] {
        assert_eq!(
            step(&report, dependent).status,
            StepStatus::Skipped,
            "{dependent}"
        );
    }
    let counts = h.counts();
    assert_eq!(counts["circleci_pipeline"], 6, "day1 pipelines kept");
    assert_eq!(counts["circleci_project"], 3);
    assert_eq!(
        counts["circleci_context"], 3,
        "independent steps still ran against day2"
    );
    assert_eq!(counts["circleci_context_environment_variable"], 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_404_on_one_organisation_is_a_warning() {
    let mut h = Harness::start().await;
    assert_eq!(h.sync().await.status, RunStatus::Success);
    h.server.inject(
        "/api/v2/pipeline?org-slug=bb/zürich-labs",
        Fault::Status {
            status: 404,
            times: 100,
            retry_after: None,
        },
    );
    let report = h.sync().await;
    let pipelines = step(&report, "fetch-pipelines");
    assert_eq!(pipelines.status, StepStatus::Partial, "{pipelines:#?}");
    assert!(
        pipelines
            .warnings
            .iter()
            .any(|w| w.contains("bb/zürich-labs") && w.contains("404")),
        "{pipelines:#?}"
    );
    assert_eq!(report.status, RunStatus::Partial);
    assert_eq!(
        (report.created, report.updated, report.deleted),
        (0, 0, 0),
        "nothing deleted"
    );
    assert_eq!(h.counts(), table(DAY1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_token_fails_the_run_and_deletes_nothing() {
    let mut h = Harness::start().await;
    assert_eq!(h.sync().await.status, RunStatus::Success);
    let before = h.export();
    let token = "revoked-token-abcdef123456";
    h.connection = connection(&h.server.base_url(), token, test_http());
    h.server.switch(FixtureSet::Day2);
    let requests_before = h.server.request_count();
    let report = h.sync().await;
    assert_eq!(report.status, RunStatus::Failed);
    assert_eq!(report.status.exit_code(), 1);
    let account = step(&report, "fetch-account");
    let error = account.error.clone().unwrap_or_default();
    assert!(
        error.contains("connection \"ci-test\"") && error.contains("401"),
        "{error}"
    );
    assert!(
        error.contains("personal API token"),
        "says what the token needs: {error}"
    );
    assert!(!format!("{report:?}").contains(token));
    assert!(
        report
            .steps
            .iter()
            .skip(1)
            .all(|s| s.status == StepStatus::Skipped)
    );
    assert_eq!(h.export(), before, "nothing changed");
    // Only /me was asked, once: a rejected token is not retried and stops the run.
    assert_eq!(h.server.request_count() - requests_before, 1);
}
