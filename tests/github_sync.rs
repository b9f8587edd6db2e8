//! GitHub end to end through the real client, fixture server and store:
//! exact counts of every type, exact changes between the two fixture days,
//! zero events on a re-run, conditional requests across processes, rate
//! limits, each fault case leaving the stored graph as it should, and scope
//! verification.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

/// Entities and relationships per type; the same on both days
/// (fixtures/github/README.md).
const COUNTS: &[(&str, u64)] = &[
    ("github_account", 2),
    ("github_user", 6),
    ("github_team", 4),
    ("github_repo", 6),
    ("github_account_has_user", 8),
    ("github_account_has_team", 4),
    ("github_team_has_user", 8),
    ("github_team_allows_repo", 7),
    ("github_account_owns_repo", 6),
];

/// (type, created, updated, deleted) between day1 and day2.
const DAY1_TO_DAY2: &[(&str, u64, u64, u64)] = &[
    ("github_user", 1, 0, 1),
    ("github_repo", 1, 1, 1),
    ("github_team", 0, 1, 0),
    ("github_account_has_user", 1, 1, 1),
    ("github_team_has_user", 1, 0, 1),
    ("github_account_owns_repo", 1, 0, 1),
    ("github_team_allows_repo", 1, 1, 1),
];

/// Requests of one full sync of either day: /user/orgs, 2 orgs, members
/// (acme 2 pages + admins, zurich 1 + admins), teams (2), team members (4),
/// repos (acme 2 pages, zurich 1), team repos (4).
const REQUESTS_PER_SYNC: u64 = 1 + 2 + 5 + 2 + 4 + 3 + 4;

struct Harness {
    server: FixtureServer,
    store: Store,
    schema: Arc<Schema>,
    integration: IntegrationConfig,
    connection: ResolvedConnection,
    home: tempfile::TempDir,
}

fn test_http() -> HttpConfig {
    HttpConfig {
        rate_limit: RateLimit::per_second(1000, 100),
        request_timeout: Duration::from_millis(500),
        backoff_min: Duration::from_millis(1),
        backoff_max: Duration::from_millis(5),
        max_retries: 3,
        retry_after_cap: Duration::from_secs(2),
        reset_wait_cap: Duration::from_secs(5),
        ..HttpConfig::default()
    }
}

fn secrets(api_url: &str, token: &str) -> Secrets {
    let mut secrets = Secrets::default();
    secrets.plain.insert("api_url".into(), api_url.to_owned());
    secrets.sensitive.insert("token".into(), Secret::new(token));
    secrets
}

fn connection(api_url: &str, token: &str, http: HttpConfig) -> ResolvedConnection {
    ResolvedConnection {
        name: "gh-test".into(),
        ty: connection_type("github").expect("github type"),
        secrets: secrets(api_url, token),
        http,
    }
}

fn integration(settings: Value) -> IntegrationConfig {
    IntegrationConfig {
        name: "acme-gh".into(),
        connection: "gh-test".into(),
        account_name: None,
        description: None,
        interval: Interval::Disabled,
        tag_account_name: false,
        enabled: true,
        settings,
    }
}

impl Harness {
    async fn start() -> Harness {
        let server = FixtureServer::start(FixtureSet::GitHubDay1)
            .await
            .expect("fixture server");
        let home = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&home.path().join("sextant.db")).expect("store");
        let connection = connection(&server.base_url(), FIXTURE_TOKEN, test_http());
        Harness {
            server,
            store,
            schema: Arc::new(Schema::embedded().expect("schema")),
            integration: integration(Value::Null),
            connection,
            home,
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

    /// Opens the database afresh, as a new process would.
    fn reopen(&mut self) {
        self.store = Store::open(&self.home.path().join("sextant.db")).expect("store");
    }

    fn counts(&self) -> BTreeMap<String, u64> {
        self.store.counts_by_type("acme-gh").expect("counts")
    }

    fn events_after(&self, seq: u64) -> Vec<ChangeEvent> {
        self.store
            .events(seq, Some("acme-gh"), usize::MAX)
            .expect("events")
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

fn not_modified(report: &SyncReport) -> u64 {
    report.steps.iter().map(|s| s.not_modified).sum()
}

fn by_type(events: &[ChangeEvent]) -> BTreeMap<String, (u64, u64, u64)> {
    let mut found: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    for e in events {
        let entry = found.entry(e.ty.clone()).or_default();
        match e.action {
            Action::Created => entry.0 += 1,
            Action::Updated => entry.1 += 1,
            Action::Deleted => entry.2 += 1,
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_days_have_exact_counts_and_exact_changes() {
    let mut h = Harness::start().await;
    let first = h.sync().await;
    assert_eq!(first.status, RunStatus::Success, "{:#?}", first.steps);
    for s in &first.steps {
        assert!(
            s.problems.is_empty() && s.duplicates.is_empty() && s.warnings.is_empty(),
            "{s:#?}"
        );
    }
    assert_eq!(h.counts(), table(COUNTS));
    assert_eq!(first.created, 18 + 33);
    assert_eq!(first.requests, REQUESTS_PER_SYNC);

    let unchanged = h.sync().await;
    assert_eq!(
        (unchanged.created, unchanged.updated, unchanged.deleted),
        (0, 0, 0)
    );

    let before = h.store.last_event_seq().expect("seq");
    h.server.switch(FixtureSet::GitHubDay2);
    let second = h.sync().await;
    assert_eq!(second.status, RunStatus::Success, "{:#?}", second.steps);
    assert_eq!(h.counts(), table(COUNTS));
    let events = h.events_after(before);
    let expected: BTreeMap<String, (u64, u64, u64)> = DAY1_TO_DAY2
        .iter()
        .map(|(t, c, u, d)| ((*t).to_owned(), (*c, *u, *d)))
        .collect();
    assert_eq!(by_type(&events), expected);

    // The updates, field by field.
    let updates: BTreeMap<&str, (&str, Value, Value)> = events
        .iter()
        .filter(|e| e.action == Action::Updated)
        .map(|e| {
            let changes = e.changes.as_ref().expect("changes on update");
            assert_eq!(changes.len(), 1, "{e:?}");
            let (field, change) = changes.iter().next().expect("one change");
            (
                e.ty.as_str(),
                (field.as_str(), change.old.clone(), change.new.clone()),
            )
        })
        .collect();
    let expected_updates: BTreeMap<&str, (&str, Value, Value)> = [
        ("github_repo", ("archived", false.into(), true.into())),
        (
            "github_team",
            (
                "description",
                "Web and mobile UI".into(),
                "Web, mobile and design system".into(),
            ),
        ),
        (
            "github_account_has_user",
            ("role", "member".into(), "admin".into()),
        ),
        (
            "github_team_allows_repo",
            ("permission", "push".into(), "admin".into()),
        ),
    ]
    .into_iter()
    .collect();
    assert_eq!(updates, expected_updates);
    let logins = |action: Action| -> Vec<String> {
        events
            .iter()
            .filter(|e| e.action == action && e.ty == "github_user")
            .filter_map(|e| {
                let object = e.after.as_ref().or(e.before.as_ref())?;
                object.get("login")?.as_str().map(str::to_owned)
            })
            .collect()
    };
    assert_eq!(logins(Action::Created), ["grace-hopper"]);
    assert_eq!(logins(Action::Deleted), ["eve-moneypenny"]);

    // Re-running the day2 sync changes nothing.
    let again = h.sync().await;
    assert_eq!((again.created, again.updated, again.deleted), (0, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_second_sync_in_a_new_process_is_answered_with_304s() {
    let mut h = Harness::start().await;
    let cold = h.sync().await;
    assert_eq!(cold.status, RunStatus::Success);
    assert_eq!((cold.requests, not_modified(&cold)), (REQUESTS_PER_SYNC, 0));
    let answered_before = h.server.statuses().len();

    // A new Store on the same file, as `sextant sync` in a new process.
    h.reopen();
    let warm = h.sync().await;
    assert_eq!(warm.status, RunStatus::Success, "{:#?}", warm.steps);
    assert_eq!(
        (warm.requests, not_modified(&warm)),
        (REQUESTS_PER_SYNC, REQUESTS_PER_SYNC),
        "every request conditional, every answer a 304"
    );
    assert_eq!((warm.created, warm.updated, warm.deleted), (0, 0, 0));
    let statuses = h.server.statuses();
    assert!(
        statuses[answered_before..].iter().all(|s| *s == 304),
        "{statuses:?}"
    );
    assert_eq!(
        h.counts(),
        table(COUNTS),
        "replayed bodies give the same graph"
    );

    // Day2 over the warm cache: only what changed costs a full answer, and
    // the changes are exact.
    let before = h.store.last_event_seq().expect("seq");
    h.server.switch(FixtureSet::GitHubDay2);
    h.reopen();
    let day2 = h.sync().await;
    assert_eq!(day2.status, RunStatus::Success);
    let changed_routes = 8; // files that differ between day1 and day2
    assert_eq!(
        not_modified(&day2),
        REQUESTS_PER_SYNC - changed_routes,
        "{:#?}",
        day2.steps
    );
    let expected: BTreeMap<String, (u64, u64, u64)> = DAY1_TO_DAY2
        .iter()
        .map(|(t, c, u, d)| ((*t).to_owned(), (*c, *u, *d)))
        .collect();
    assert_eq!(by_type(&h.events_after(before)), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_token_never_gets_a_replayed_body() {
    // The fixture server's ETags do not vary by token, but a 401 never
    // replays: the token is checked before conditions.
    let mut h = Harness::start().await;
    assert_eq!(h.sync().await.status, RunStatus::Success);
    h.connection = connection(
        &h.server.base_url(),
        "revoked-token-abcdef123456",
        test_http(),
    );
    let report = h.sync().await;
    assert_eq!(report.status, RunStatus::Failed);
    assert_eq!(not_modified(&report), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selected_organisations_only() {
    let mut h = Harness::start().await;
    h.integration = integration(serde_json::json!({"organizations": ["zurich-labs"]}));
    let report = h.sync().await;
    assert_eq!(report.status, RunStatus::Success, "{:#?}", report.steps);
    let counts = h.counts();
    assert_eq!(counts["github_account"], 1);
    assert_eq!(counts["github_user"], 3);
    assert_eq!(counts["github_repo"], 2);
    assert!(
        !h.server.requests().iter().any(|r| r.contains("/user/orgs")),
        "no listing when organisations are named"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_selected_organisation_is_a_warning_naming_it() {
    let mut h = Harness::start().await;
    h.integration = integration(serde_json::json!({"organizations": ["acme-corp", "no-such-org"]}));
    let report = h.sync().await;
    let orgs = step(&report, "fetch-organizations");
    assert_eq!(orgs.status, StepStatus::Partial, "{orgs:#?}");
    assert!(
        orgs.warnings
            .iter()
            .any(|w| w.contains("no-such-org") && w.contains("404")),
        "{orgs:#?}"
    );
    assert_eq!(h.counts()["github_account"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_storm_and_a_secondary_limit_complete_and_wait() {
    let mut h = Harness::start().await;
    h.server.inject(
        "/orgs/acme-corp/teams",
        Fault::Status {
            status: 429,
            times: 1,
            retry_after: Some("1".into()),
        },
    );
    h.server.inject(
        "/orgs/zurich-labs/repos",
        Fault::Status {
            status: 403,
            times: 1,
            retry_after: Some("1".into()),
        },
    );
    let report = h.sync().await;
    assert_eq!(report.status, RunStatus::Success, "{:#?}", report.steps);
    for id in ["fetch-teams", "fetch-repos"] {
        let s = step(&report, id);
        assert_eq!(s.retries, 1, "{s:#?}");
        assert!(s.waited_ms >= 1000, "Retry-After honoured: {s:#?}");
    }
    assert_eq!(h.counts(), table(COUNTS));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_used_up_rate_limit_window_slows_the_client_until_it_resets() {
    let mut h = Harness::start().await;
    // Only one organisation, so the steps after it run in a known order.
    h.integration = integration(serde_json::json!({"organizations": ["acme-corp"]}));
    let reset = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
        + 2;
    h.server.inject(
        "/orgs/acme-corp",
        Fault::Headers(vec![
            ("x-ratelimit-remaining".into(), "0".into()),
            ("x-ratelimit-reset".into(), reset.to_string()),
        ]),
    );
    let report = h.sync().await;
    assert_eq!(report.status, RunStatus::Success, "{:#?}", report.steps);
    let waited: u64 = report.steps.iter().map(|s| s.reset_wait_ms).sum();
    assert!(
        waited >= 500,
        "the requests after /orgs/acme-corp waited for the reset: {:#?}",
        report.steps
    );
    assert_eq!(step(&report, "fetch-organizations").reset_wait_ms, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried() {
    let mut h = Harness::start().await;
    h.server.inject(
        "/orgs/acme-corp/members",
        Fault::Status {
            status: 502,
            times: 2,
            retry_after: None,
        },
    );
    let report = h.sync().await;
    assert_eq!(report.status, RunStatus::Success, "{:#?}", report.steps);
    assert!(step(&report, "fetch-members").retries >= 2);
    assert_eq!(h.counts(), table(COUNTS));
}

/// Runs day1, then day2 with a fault; checks the faulty step failed and
/// nothing of its types was deleted.
async fn fault_after_day1(pattern: &str, fault: Fault, failed_step: &str) -> (Harness, SyncReport) {
    let mut h = Harness::start().await;
    h.connection.http.max_retries = 1;
    assert_eq!(h.sync().await.status, RunStatus::Success);
    h.server.switch(FixtureSet::GitHubDay2);
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
    let (h, report) = fault_after_day1("/orgs/acme-corp/repos", Fault::Hang, "fetch-repos").await;
    let error = step(&report, "fetch-repos")
        .error
        .clone()
        .unwrap_or_default();
    assert!(
        error.contains("timeout") || error.contains("within"),
        "{error}"
    );
    assert_eq!(
        step(&report, "fetch-team-repos").status,
        StepStatus::Skipped
    );
    let events = h.events_after(0);
    let deleted_repos = events
        .iter()
        .filter(|e| e.action == Action::Deleted && e.ty.contains("repo"))
        .count();
    assert_eq!(
        deleted_repos, 0,
        "legacy is kept while repos are incomplete"
    );
    // The independent member steps ran against day2.
    assert!(
        events
            .iter()
            .any(|e| e.action == Action::Deleted && e.ty == "github_user")
    );
    h.server.clear_faults();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_fails_one_step_naming_the_endpoint() {
    let path = "/orgs/acme-corp/teams/security/members";
    let (h, report) = fault_after_day1(
        path,
        Fault::Body("[ {\"login\": ".into()),
        "fetch-team-members",
    )
    .await;
    let error = step(&report, "fetch-team-members")
        .error
        .clone()
        .unwrap_or_default();
    assert!(error.contains(path), "names the endpoint: {error}");
    // Team memberships are incomplete, so none is deleted for not being
    // seen — except security HAS eve: eve left the organisation (the members
    // step succeeded, so her user entity is deleted) and a relationship
    // never outlives its endpoint. grace's new membership is not collected.
    assert_eq!(h.counts()["github_team_has_user"], 7);
    let deleted: Vec<String> = h
        .events_after(0)
        .into_iter()
        .filter(|e| e.action == Action::Deleted && e.ty == "github_team_has_user")
        .map(|e| e.key)
        .collect();
    assert_eq!(deleted.len(), 1, "{deleted:?}");
    let users_deleted: Vec<String> = h
        .events_after(0)
        .into_iter()
        .filter(|e| e.action == Action::Deleted && e.ty == "github_user")
        .map(|e| e.key)
        .collect();
    assert_eq!(users_deleted.len(), 1, "eve only: {users_deleted:?}");
    assert!(
        deleted[0].contains(&users_deleted[0]),
        "{deleted:?} goes with {users_deleted:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_pagination_loop_is_stopped() {
    let (h, report) =
        fault_after_day1("/orgs/acme-corp/members", Fault::PageLoop, "fetch-members").await;
    let error = step(&report, "fetch-members")
        .error
        .clone()
        .unwrap_or_default();
    assert!(error.contains("loop"), "{error}");
    assert_eq!(
        step(&report, "fetch-team-members").status,
        StepStatus::Skipped
    );
    let counts = h.counts();
    // eve is kept (members incomplete), grace arrived with... nothing: the
    // users step failed, so day1's users stay as they were.
    assert_eq!(counts["github_user"], 6);
    assert_eq!(counts["github_repo"], 6);
    assert_eq!(
        step(&report, "fetch-repos").status,
        StepStatus::Success,
        "independent steps still ran"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_403_fails_its_step_only() {
    let (h, report) = fault_after_day1(
        "/orgs/zurich-labs/teams",
        Fault::Status {
            status: 403,
            times: 100,
            retry_after: None,
        },
        "fetch-teams",
    )
    .await;
    let error = step(&report, "fetch-teams")
        .error
        .clone()
        .unwrap_or_default();
    assert!(
        error.contains("403") && error.contains("read:org"),
        "names the status and what the token needs: {error}"
    );
    assert_eq!(step(&report, "fetch-repos").status, StepStatus::Success);
    assert_eq!(h.counts()["github_team"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_token_fails_the_run_and_deletes_nothing() {
    let mut h = Harness::start().await;
    assert_eq!(h.sync().await.status, RunStatus::Success);
    let before = h.counts();
    let token = "revoked-token-abcdef123456";
    h.connection = connection(&h.server.base_url(), token, test_http());
    h.server.switch(FixtureSet::GitHubDay2);
    let requests_before = h.server.request_count();
    let report = h.sync().await;
    assert_eq!(report.status, RunStatus::Failed);
    let orgs = step(&report, "fetch-organizations");
    let error = orgs.error.clone().unwrap_or_default();
    assert!(
        error.contains("connection \"gh-test\"") && error.contains("401"),
        "{error}"
    );
    assert!(
        error.contains("read:org"),
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
    assert_eq!(h.counts(), before, "nothing changed");
    assert_eq!(h.server.request_count() - requests_before, 1);
}

// ---- verification ----

async fn verify(server: &FixtureServer, token: &str) -> Result<Option<String>, String> {
    let ty = connection_type("github").expect("github");
    sextant::connection::service::test_secrets(ty, "gh-test", &secrets(&server.base_url(), token))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_names_missing_scopes() {
    let server = FixtureServer::start(FixtureSet::GitHubDay1)
        .await
        .expect("server");
    let note = verify(&server, FIXTURE_TOKEN)
        .await
        .expect("all scopes present")
        .expect("a note");
    assert!(
        note.contains("classic token of ada-lovelace") && note.contains("read:org"),
        "{note}"
    );

    server.inject(
        "/user",
        Fault::Headers(vec![("x-oauth-scopes".into(), "public_repo, user".into())]),
    );
    let error = verify(&server, FIXTURE_TOKEN)
        .await
        .expect_err("scopes missing");
    assert!(
        error.contains("lacks the scope(s) repo, read:org") && error.contains("public_repo, user"),
        "{error}"
    );
    assert!(
        !error.contains("read:user,"),
        "user grants read:user: {error}"
    );

    server.clear_faults();
    server.inject(
        "/user",
        Fault::Headers(vec![(
            "x-oauth-scopes".into(),
            "repo, admin:org, read:user".into(),
        )]),
    );
    assert!(
        verify(&server, FIXTURE_TOKEN).await.is_ok(),
        "admin:org grants read:org"
    );

    let token = "ghp_wrongwrongwrongwrong";
    let error = verify(&server, token).await.expect_err("rejected");
    assert!(error.contains("401") && !error.contains(token), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fine_grained_token_is_accepted_with_a_note() {
    // GitHub sends no X-OAuth-Scopes for fine-grained tokens.
    let router = axum::Router::new()
        .fallback(|| async { axum::Json(serde_json::json!({"login": "fine-bot", "id": 9})) });
    let base = format!("http://{}", common::serve(router).await);
    let ty = connection_type("github").expect("github");
    let note =
        sextant::connection::service::test_secrets(ty, "gh", &secrets(&base, "github_pat_x"))
            .await
            .expect("accepted")
            .expect("a note");
    assert!(
        note.contains("fine-grained") && note.contains("Members and Administration"),
        "{note}"
    );
}

#[test]
fn connection_type_lists_token_requirements() {
    let ty = connection_type("github").expect("github");
    for words in [
        "repo",
        "read:org",
        "read:user",
        "fine-grained",
        "Metadata",
        "Members",
    ] {
        assert!(ty.token_requirements.contains(words), "{words}");
    }
    let schema = ty.json_schema();
    assert_eq!(schema["required"], serde_json::json!(["token"]));
    assert_eq!(schema["properties"]["token"]["sensitive"], true);
    assert_eq!(
        schema["properties"]["api_url"]["default"],
        "https://api.github.com"
    );
}
