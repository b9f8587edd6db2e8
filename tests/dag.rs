//! The step executor with fake steps (no HTTP): ordering, concurrency and
//! its bound, failure propagation, validation of what steps emit, duplicate
//! keys, declaration checks, and how outcomes become complete types and a
//! run status.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use sextant::graph::{Collected, Entity, Relationship, Schema};
use sextant::run::{RunStatus, StepOutcome, StepStatus, complete_types, run_status};
use sextant::source::dag::{RunState, Step, StepError, StepScope, check_steps, execute};
use tokio::sync::Barrier;

/// What the fake steps share: a log of what happened and the means to prove
/// (or disprove) that steps overlap.
struct Cx {
    /// `(step id, entities in the run's graph when the step started)`, in start order.
    started: Mutex<Vec<(&'static str, usize)>>,
    /// Both steps of the concurrency case must reach it.
    barrier: Barrier,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

impl Cx {
    fn new() -> Self {
        Cx {
            started: Mutex::new(Vec::new()),
            barrier: Barrier::new(2),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        }
    }

    fn log(&self, s: &StepScope<'_>) {
        let seen = s.graph().entity_count();
        self.started
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((s.id, seen));
    }

    fn started(&self) -> Vec<(&'static str, usize)> {
        self.started
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

type StepResult<'a> = BoxFuture<'a, Result<(), StepError>>;

/// A valid circleci_user (required: name, displayName, id, username).
fn user(id: &str, name: &str) -> Entity {
    Entity::new(format!("circleci_user:{id}"), "circleci_user", "User")
        .with("id", id)
        .with("username", name)
        .with("name", name)
        .with("displayName", name)
}

/// A valid circleci_account.
fn account(id: &str) -> Entity {
    Entity::new(
        format!("circleci_account:{id}"),
        "circleci_account",
        "Account",
    )
    .with("id", id)
    .with("name", id)
    .with("displayName", id)
}

fn user_key(step: &str) -> String {
    format!("circleci_user:{step}")
}

// ----- step bodies ---------------------------------------------------------

/// Logs its start and emits one valid user keyed by the step id.
fn record<'a>(cx: &'a Cx, s: &'a StepScope<'a>) -> StepResult<'a> {
    Box::pin(async move {
        cx.log(s);
        s.entity(user(s.id, s.id));
        Ok(())
    })
}

/// Waits for a second step at the barrier, then records.
fn meet<'a>(cx: &'a Cx, s: &'a StepScope<'a>) -> StepResult<'a> {
    Box::pin(async move {
        cx.barrier.wait().await;
        record(cx, s).await
    })
}

/// Counts how many steps are running at once; yields so that another ready
/// step gets polled while this one is in flight.
fn overlap<'a>(cx: &'a Cx, s: &'a StepScope<'a>) -> StepResult<'a> {
    Box::pin(async move {
        let now = cx.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        cx.max_in_flight.fetch_max(now, Ordering::SeqCst);
        for _ in 0..5 {
            tokio::task::yield_now().await;
        }
        cx.in_flight.fetch_sub(1, Ordering::SeqCst);
        record(cx, s).await
    })
}

fn fail<'a>(cx: &'a Cx, s: &'a StepScope<'a>) -> StepResult<'a> {
    Box::pin(async move {
        cx.log(s);
        Err(StepError::new("GET /me answered 500"))
    })
}

fn fail_fatally<'a>(cx: &'a Cx, s: &'a StepScope<'a>) -> StepResult<'a> {
    Box::pin(async move {
        cx.log(s);
        Err(StepError {
            message: "the token was rejected (401)".into(),
            fatal: true,
        })
    })
}

/// A valid user and a user without its required `username`.
fn emit_invalid<'a>(cx: &'a Cx, s: &'a StepScope<'a>) -> StepResult<'a> {
    Box::pin(async move {
        cx.log(s);
        s.entity(user("good-user-1", "good"));
        let mut bad = user("bad-user-1", "bad");
        bad.properties.remove("username");
        s.entity(bad);
        Ok(())
    })
}

/// An account and a relationship from it to a user nobody emitted.
fn emit_dangling<'a>(cx: &'a Cx, s: &'a StepScope<'a>) -> StepResult<'a> {
    Box::pin(async move {
        cx.log(s);
        let account = account("acct-00001");
        s.relationship(Relationship::by_keys(
            "HAS",
            "circleci_account",
            &account.key,
            "circleci_user",
            "circleci_user:missing-1",
        ));
        s.entity(account);
        Ok(())
    })
}

/// A user keyed `circleci_user:shared-1` named after the step.
fn emit_shared<'a>(cx: &'a Cx, s: &'a StepScope<'a>) -> StepResult<'a> {
    Box::pin(async move {
        cx.log(s);
        s.entity(user("shared-1", s.id));
        Ok(())
    })
}

/// Goes on after something was missing.
fn warn<'a>(cx: &'a Cx, s: &'a StepScope<'a>) -> StepResult<'a> {
    Box::pin(async move {
        cx.log(s);
        s.warn("organisation gh/acme answered 404");
        s.entity(user(s.id, s.id));
        Ok(())
    })
}

// ----- helpers -------------------------------------------------------------

const USERS: &[&str] = &["circleci_user"];

fn step(
    id: &'static str,
    depends_on: &'static [&'static str],
    run: sextant::source::dag::StepFn<Cx>,
) -> Step<Cx> {
    Step {
        id,
        produces: USERS,
        depends_on,
        run,
    }
}

fn schema() -> Arc<Schema> {
    Arc::new(Schema::embedded().expect("embedded schema is valid"))
}

/// Checks the declarations, runs the steps (failing rather than hanging if
/// the run deadlocks) and returns the outcomes and the collected graph.
async fn run(steps: &[Step<Cx>], cx: &Cx, concurrency: usize) -> (Vec<StepOutcome>, Collected) {
    let schema = schema();
    check_steps(steps, &schema).expect("valid step declarations");
    let state = RunState::new(schema);
    let outcomes = tokio::time::timeout(
        Duration::from_secs(10),
        execute(steps, cx, &state, concurrency, None),
    )
    .await
    .expect("the run finished (a deadlock means steps did not run concurrently)");
    let ids: Vec<&str> = outcomes.iter().map(|o| o.id.as_str()).collect();
    let declared: Vec<&str> = steps.iter().map(|s| s.id).collect();
    assert_eq!(ids, declared, "outcomes come in declaration order");
    (outcomes, state.into_graph())
}

fn statuses(outcomes: &[StepOutcome]) -> Vec<(&str, StepStatus, Option<&str>)> {
    outcomes
        .iter()
        .map(|o| (o.id.as_str(), o.status, o.error.as_deref()))
        .collect()
}

fn position(log: &[(&str, usize)], id: &str) -> usize {
    log.iter()
        .position(|(s, _)| *s == id)
        .unwrap_or_else(|| panic!("step {id} did not run: {log:?}"))
}

// ----- execution -----------------------------------------------------------

#[tokio::test]
async fn dependencies_run_first_and_their_output_is_visible() {
    let cx = Cx::new();
    // Declared out of order: d after b and c, both after a.
    let steps = [
        step("d", &["b", "c"], record),
        step("b", &["a"], record),
        step("c", &["a"], record),
        step("a", &[], record),
    ];
    let (outcomes, graph) = run(&steps, &cx, 4).await;
    assert!(outcomes.iter().all(|o| o.status == StepStatus::Success));
    let log = cx.started();
    assert_eq!(log.len(), 4);
    assert_eq!(log[0], ("a", 0), "a starts first, on an empty graph");
    assert!(position(&log, "b") < position(&log, "d"));
    assert!(position(&log, "c") < position(&log, "d"));
    assert_eq!(log[3], ("d", 3), "d sees what a, b and c emitted");
    for (id, _) in &log {
        assert!(graph.contains_entity(&user_key(id)), "{id}'s user is kept");
    }
}

#[tokio::test]
async fn independent_steps_run_concurrently() {
    let cx = Cx::new();
    // Each waits for the other at a barrier of 2: run one after the other,
    // they would never finish.
    let steps = [step("left", &[], meet), step("right", &[], meet)];
    let (outcomes, graph) = run(&steps, &cx, 2).await;
    assert_eq!(
        statuses(&outcomes),
        [
            ("left", StepStatus::Success, None),
            ("right", StepStatus::Success, None)
        ]
    );
    assert_eq!(graph.entity_count(), 2);
}

#[tokio::test]
async fn concurrency_bound_limits_steps_in_flight() {
    for (concurrency, expected) in [(1, 1), (2, 2), (8, 3)] {
        let cx = Cx::new();
        let steps = [
            step("one", &[], overlap),
            step("two", &[], overlap),
            step("three", &[], overlap),
        ];
        let (outcomes, _) = run(&steps, &cx, concurrency).await;
        assert!(outcomes.iter().all(|o| o.status == StepStatus::Success));
        assert_eq!(
            cx.max_in_flight.load(Ordering::SeqCst),
            expected,
            "max steps in flight with concurrency {concurrency}"
        );
    }
    // A bound of 0 is taken as 1 rather than running nothing.
    let cx = Cx::new();
    let steps = [step("one", &[], overlap), step("two", &[], overlap)];
    let (outcomes, _) = run(&steps, &cx, 0).await;
    assert!(outcomes.iter().all(|o| o.status == StepStatus::Success));
    assert_eq!(cx.max_in_flight.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_failed_step_skips_its_dependents_only() {
    let cx = Cx::new();
    let steps = [
        step("account", &[], fail),
        step("users", &["account"], record),
        step("jobs", &["users"], record),
        step("contexts", &[], record),
    ];
    let (outcomes, graph) = run(&steps, &cx, 2).await;
    assert_eq!(
        statuses(&outcomes),
        [
            ("account", StepStatus::Failed, Some("GET /me answered 500")),
            (
                "users",
                StepStatus::Skipped,
                Some("skipped: step \"account\" did not succeed")
            ),
            (
                "jobs",
                StepStatus::Skipped,
                Some("skipped: step \"users\" did not succeed")
            ),
            ("contexts", StepStatus::Success, None),
        ]
    );
    let ran: BTreeSet<&str> = cx.started().iter().map(|(id, _)| *id).collect();
    assert_eq!(ran, BTreeSet::from(["account", "contexts"]));
    assert!(graph.contains_entity(&user_key("contexts")));
    assert_eq!(graph.entity_count(), 1);
}

#[tokio::test]
async fn a_fatal_error_stops_later_steps() {
    let cx = Cx::new();
    // Concurrency 1: "other" would only start after "token" ends.
    let steps = [
        step("token", &[], fail_fatally),
        step("other", &[], record),
        step("dependent", &["token"], record),
    ];
    let (outcomes, graph) = run(&steps, &cx, 1).await;
    assert_eq!(
        statuses(&outcomes),
        [
            (
                "token",
                StepStatus::Failed,
                Some("the token was rejected (401)")
            ),
            (
                "other",
                StepStatus::Skipped,
                Some("skipped: the run stopped after a fatal error")
            ),
            (
                "dependent",
                StepStatus::Skipped,
                Some("skipped: step \"token\" did not succeed")
            ),
        ]
    );
    assert_eq!(cx.started(), [("token", 0)]);
    assert_eq!(graph.entity_count(), 0);
}

#[tokio::test]
async fn an_invalid_entity_is_a_problem_and_not_stored() {
    let cx = Cx::new();
    let steps = [step("users", &[], emit_invalid)];
    let (outcomes, graph) = run(&steps, &cx, 1).await;
    let users = &outcomes[0];
    assert_eq!(users.status, StepStatus::Partial);
    assert_eq!(users.error, None);
    assert_eq!(users.entities, 1);
    assert_eq!(users.problems.len(), 1, "{:?}", users.problems);
    assert_eq!(users.problems[0].key, "circleci_user:bad-user-1");
    assert_eq!(users.problems[0].ty, "circleci_user");
    assert_eq!(
        users.problems[0].reason,
        "required property \"username\" is missing"
    );
    assert!(graph.contains_entity("circleci_user:good-user-1"));
    assert!(!graph.contains_entity("circleci_user:bad-user-1"));
}

#[tokio::test]
async fn a_relationship_to_a_missing_endpoint_is_a_problem() {
    let cx = Cx::new();
    let steps = [Step {
        id: "account",
        produces: &["circleci_account", "circleci_account_has_user"],
        depends_on: &[],
        run: emit_dangling,
    }];
    let (outcomes, graph) = run(&steps, &cx, 1).await;
    let account = &outcomes[0];
    assert_eq!(account.status, StepStatus::Partial);
    assert_eq!((account.entities, account.relationships), (1, 0));
    assert_eq!(account.problems.len(), 1, "{:?}", account.problems);
    let problem = &account.problems[0];
    assert_eq!(
        problem.key,
        "circleci_account:acct-00001|has|circleci_user:missing-1"
    );
    assert_eq!(problem.ty, "circleci_account_has_user");
    assert_eq!(
        problem.reason,
        "to entity \"circleci_user:missing-1\" is not in the graph"
    );
    assert!(graph.contains_entity("circleci_account:acct-00001"));
    assert_eq!(graph.relationship_count(), 0);
}

#[tokio::test]
async fn a_duplicate_key_keeps_the_first_and_reports_the_second() {
    let cx = Cx::new();
    let steps = [
        step("first", &[], emit_shared),
        step("second", &["first"], emit_shared),
    ];
    let (outcomes, graph) = run(&steps, &cx, 2).await;
    let (first, second) = (&outcomes[0], &outcomes[1]);
    assert!(first.duplicates.is_empty());
    assert_eq!(first.entities, 1);
    assert_eq!(second.entities, 0);
    assert_eq!(second.duplicates.len(), 1);
    let dup = &second.duplicates[0];
    assert_eq!(dup.key, "circleci_user:shared-1");
    assert_eq!(dup.kept["name"], "first");
    assert_eq!(dup.rejected["name"], "second");
    assert_eq!(dup.rejected["_key"], "circleci_user:shared-1");
    assert_eq!(
        graph
            .entity("circleci_user:shared-1")
            .map(|e| e.properties()["name"].clone()),
        Some("first".into())
    );
}

#[tokio::test]
async fn warnings_make_a_step_partial_and_skip_its_dependents() {
    let cx = Cx::new();
    let steps = [step("orgs", &[], warn), step("projects", &["orgs"], record)];
    let (outcomes, graph) = run(&steps, &cx, 1).await;
    assert_eq!(
        statuses(&outcomes),
        [
            ("orgs", StepStatus::Partial, None),
            (
                "projects",
                StepStatus::Skipped,
                Some("skipped: step \"orgs\" did not succeed")
            ),
        ]
    );
    assert_eq!(outcomes[0].warnings, ["organisation gh/acme answered 404"]);
    assert!(outcomes[0].problems.is_empty());
    assert!(
        graph.contains_entity(&user_key("orgs")),
        "what a partial step emitted is kept"
    );
}

// ----- declarations --------------------------------------------------------

#[test]
fn check_steps_rejects_bad_declarations() {
    let schema = schema();
    let cases: Vec<(&str, Vec<Step<Cx>>, &str)> = vec![
        (
            "unknown dependency",
            vec![decl("a", &[]), decl("b", &["a", "c"])],
            "step \"b\" depends on unknown step \"c\"",
        ),
        (
            "duplicate id",
            vec![decl("a", &[]), decl("b", &["a"]), decl("a", &[])],
            "step \"a\" is declared twice",
        ),
        (
            "self dependency",
            vec![decl("a", &["a"])],
            "steps form a cycle through \"a\"",
        ),
        (
            "undeclared type",
            vec![
                decl("a", &[]),
                Step {
                    id: "b",
                    produces: &["circleci_user", "circleci_build"],
                    depends_on: &[],
                    run: record,
                },
            ],
            "step \"b\" produces \"circleci_build\", which graph-schema/ does not declare",
        ),
    ];
    for (case, steps, expected) in &cases {
        let err = check_steps(steps, &schema).expect_err(case);
        assert_eq!(err.to_string(), *expected, "{case}");
    }

    // A longer cycle is reported through one of its steps.
    let steps = [
        decl("root", &[]),
        decl("a", &["root", "c"]),
        decl("b", &["a"]),
        decl("c", &["b"]),
    ];
    let err = check_steps(&steps, &schema).expect_err("cycle");
    assert!(
        ["a", "b", "c"]
            .iter()
            .any(|id| err.to_string() == format!("steps form a cycle through {id:?}")),
        "{err}"
    );

    // Valid declarations come back in a topological order.
    let steps = [
        decl("d", &["b", "c"]),
        decl("b", &["a"]),
        decl("c", &["a"]),
        decl("a", &[]),
    ];
    let order = check_steps(&steps, &schema).expect("valid");
    let ids: Vec<&str> = order.iter().map(|&i| steps[i].id).collect();
    let at = |id: &str| ids.iter().position(|s| *s == id);
    assert!(at("a") < at("b") && at("a") < at("c") && at("b") < at("d") && at("c") < at("d"));
}

/// A step that records and emits a user.
fn decl(id: &'static str, depends_on: &'static [&'static str]) -> Step<Cx> {
    step(id, depends_on, record)
}

#[test]
fn a_source_whose_steps_miss_a_schema_type_is_caught() {
    let schema = schema();
    let steps = [decl("users", &[])];
    let missing = sextant::source::dag::unproduced_types(&steps, &schema, "circleci");
    assert!(
        !missing.contains(&"circleci_user".to_owned()),
        "{missing:?}"
    );
    assert!(
        missing.contains(&"circleci_project".to_owned()),
        "{missing:?}"
    );
    assert!(
        missing.contains(&"circleci_account_has_user".to_owned()),
        "relationship types too: {missing:?}"
    );
}

// ----- outcomes → complete types and run status ---------------------------

fn outcome(id: &str, status: StepStatus, produces: &[&str]) -> StepOutcome {
    let mut outcome = StepOutcome::new(id, produces.iter().map(|t| (*t).to_owned()).collect());
    outcome.status = status;
    outcome
}

/// A step's status and the types it produces.
type Producer = (StepStatus, &'static [&'static str]);

#[test]
fn complete_types_need_every_producer_to_succeed() {
    use StepStatus::{Failed, Partial, Skipped, Success};
    let schema = schema();
    const USER: &str = "circleci_user";
    const JOB: &str = "circleci_job";
    const ACCOUNT: &str = "circleci_account";
    let cases: &[(&str, &[Producer], &[&str])] = &[
        ("no steps", &[], &[]),
        (
            "one producer succeeded",
            &[(Success, &[USER, ACCOUNT])],
            &[ACCOUNT, USER],
        ),
        (
            "both producers succeeded",
            &[(Success, &[USER]), (Success, &[USER, JOB])],
            &[JOB, USER],
        ),
        (
            "second producer partial",
            &[(Success, &[USER]), (Partial, &[USER])],
            &[],
        ),
        (
            "first producer failed",
            &[(Failed, &[USER]), (Success, &[USER, JOB])],
            &[JOB],
        ),
        (
            "producer skipped",
            &[(Success, &[ACCOUNT]), (Skipped, &[USER])],
            &[ACCOUNT],
        ),
    ];
    for (case, steps, expected) in cases {
        let outcomes: Vec<StepOutcome> = steps
            .iter()
            .enumerate()
            .map(|(i, (status, produces))| outcome(&format!("s{i}"), *status, produces))
            .collect();
        let expected: BTreeSet<String> = expected.iter().map(|t| (*t).to_owned()).collect();
        assert_eq!(complete_types(&schema, &outcomes), expected, "{case}");
    }
}

#[test]
fn append_only_types_are_never_complete() {
    let files = [(
        "demo.yaml".to_owned(),
        "classes:\n  Entity:\n    properties: {}\n  Review: {}\n\
         source: demo\n\
         entities:\n  demo_review:\n    class: Review\n    append_only: true\n  demo_repo:\n    class: Review\n"
            .to_owned(),
    )];
    let schema = Schema::from_files(&files).expect("valid schema");
    let outcomes = [outcome(
        "reviews",
        StepStatus::Success,
        &["demo_review", "demo_repo"],
    )];
    assert_eq!(
        complete_types(&schema, &outcomes),
        BTreeSet::from(["demo_repo".to_owned()])
    );
}

#[tokio::test]
async fn a_type_from_two_steps_is_complete_only_if_both_succeed() {
    let cx = Cx::new();
    let steps = [
        step("users", &[], record),
        step("more-users", &[], fail),
        Step {
            id: "accounts",
            produces: &["circleci_account"],
            depends_on: &[],
            run: record,
        },
    ];
    let (outcomes, _) = run(&steps, &cx, 2).await;
    assert_eq!(
        complete_types(&schema(), &outcomes),
        BTreeSet::from(["circleci_account".to_owned()])
    );
    assert_eq!(run_status(&outcomes), RunStatus::Partial);
}

#[test]
fn run_status_from_step_statuses() {
    use StepStatus::{Failed, Partial, Skipped, Success};
    let cases: &[(&[StepStatus], RunStatus)] = &[
        (&[Success], RunStatus::Success),
        (&[Success, Success, Success], RunStatus::Success),
        (&[Success, Partial], RunStatus::Partial),
        (&[Success, Failed, Skipped], RunStatus::Partial),
        (&[Failed], RunStatus::Failed),
        (&[Failed, Skipped, Skipped], RunStatus::Failed),
        // Partial steps collected data: the run is partial, not failed.
        (&[Partial], RunStatus::Partial),
        (&[Partial, Failed, Skipped], RunStatus::Partial),
    ];
    for (steps, expected) in cases {
        let outcomes: Vec<StepOutcome> = steps
            .iter()
            .enumerate()
            .map(|(i, status)| outcome(&format!("s{i}"), *status, USERS))
            .collect();
        assert_eq!(run_status(&outcomes), *expected, "{steps:?}");
    }
}
