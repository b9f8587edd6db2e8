//! The SQLite store end to end: migrations, commit → export → events, no-op
//! re-runs, partial datasets, an interrupted and a killed commit (the graph
//! stays at the previous run and the event sequence has no gap), and export
//! output validated against JupiterOne's class schemas.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use sextant::events::{Action, ChangeEvent, ObjectKind};
use sextant::graph::{Collected, Entity, Relationship, Schema};
use sextant::run::{ChangeCounts, RunStatus, StepOutcome};
use sextant::store::{Fault, SCHEMA_VERSION, Store, StoreError};

const INTEGRATION: &str = "ci-prod";
const CREATED_ON: i64 = 1_700_000_000_000;

fn schema() -> Schema {
    Schema::embedded().expect("embedded graph-schema loads")
}

/// A CircleCI-like graph: account, user, organisation, project, pipeline,
/// workflow with `jobs` jobs, a context, and one variable of each kind.
/// `revision` changes the workflow's status, so revisions differ by one update.
struct Fixture {
    entities: Vec<Entity>,
    relationships: Vec<Relationship>,
}

fn circleci(jobs: usize, revision: u32) -> Fixture {
    let named = |key: &str, ty: &str, class: &str, id: &str, name: &str| {
        Entity::new(key, ty, class)
            .with("id", id)
            .with("name", name)
            .with("displayName", name)
    };
    let account = named(
        "circleci-account:u-1",
        "circleci_account",
        "Account",
        "u-1",
        "octo",
    )
    .with("username", "octo")
    .with("host", "https://circleci.com");
    let user = named("circleci-user:u-1", "circleci_user", "User", "u-1", "octo")
        .with("username", "octo")
        .with("active", true);
    let group = named(
        "circleci-user-group:org-1",
        "circleci_user_group",
        "Group",
        "org-1",
        "octo-org",
    )
    .with("slug", "gh/octo-org")
    .with("vcsType", "github");
    let project = named(
        "circleci-project:gh/octo-org/app",
        "circleci_project",
        "Repository",
        "proj-1",
        "app",
    )
    .with("slug", "gh/octo-org/app")
    .with("organizationName", "octo-org")
    .with("vcsUrl", "https://github.com/octo-org/app")
    .with("public", false);
    let pipeline = named(
        "circleci-pipeline:pipe-1",
        "circleci_pipeline",
        "Configuration",
        "pipe-1",
        "app #1",
    )
    .with("number", 1)
    .with("state", "created")
    .with("projectSlug", "gh/octo-org/app")
    .with("createdOn", CREATED_ON);
    let workflow = named(
        "circleci-workflow:wf-1",
        "circleci_workflow",
        "Configuration",
        "wf-1",
        "build",
    )
    .with("status", if revision == 0 { "running" } else { "success" })
    .with("pipelineId", "pipe-1")
    .with("createdOn", CREATED_ON);
    let context = named(
        "circleci-context:ctx-1",
        "circleci_context",
        "Configuration",
        "ctx-1",
        "deploy",
    );
    let context_var = named(
        "circleci-context-env-var:ctx-1:AWS_KEY",
        "circleci_context_environment_variable",
        "Configuration",
        "ctx-1:AWS_KEY",
        "AWS_KEY",
    )
    .with("contextId", "ctx-1")
    .with("contextName", "deploy")
    .with("createdOn", CREATED_ON);
    let project_var = named(
        "circleci-project-env-var:gh/octo-org/app:TOKEN",
        "circleci_project_environment_variable",
        "Configuration",
        "gh/octo-org/app:TOKEN",
        "TOKEN",
    )
    .with("projectId", "proj-1")
    .with("projectSlug", "gh/octo-org/app");

    let mut relationships = vec![
        Relationship::between("HAS", &account, &user),
        Relationship::between("HAS", &account, &group),
        Relationship::between("HAS", &group, &user),
        Relationship::between("HAS", &group, &project),
        Relationship::between("HAS", &group, &context),
        Relationship::between("HAS", &project, &pipeline),
        Relationship::between("HAS", &pipeline, &workflow),
        Relationship::between("HAS", &context, &context_var),
        Relationship::between("USES", &project, &context_var),
        Relationship::between("HAS", &project, &project_var),
    ];
    let mut entities = vec![
        account,
        user,
        group,
        project,
        pipeline,
        context,
        context_var,
        project_var,
    ];
    for n in 0..jobs {
        let job = named(
            &format!("circleci-job:wf-1:{n:06}"),
            "circleci_job",
            "Task",
            &format!("job-{n}"),
            &format!("test-{n}"),
        )
        .with("status", "success")
        .with("type", "build")
        .with("jobNumber", n as u64)
        .with("workflowId", "wf-1")
        .with("dependencies", json!(["checkout"]))
        .with("startedOn", CREATED_ON + n as i64);
        relationships.push(Relationship::between("HAS", &workflow, &job));
        entities.push(job);
    }
    entities.push(workflow);
    Fixture {
        entities,
        relationships,
    }
}

/// Validates every object against graph-schema/ and collects it.
fn collect(fixture: &Fixture) -> Collected {
    let schema = schema();
    let mut collected = Collected::new();
    for entity in &fixture.entities {
        schema
            .validate_entity(entity)
            .expect("fixture entity is valid");
        collected
            .insert_entity(entity.clone())
            .expect("no duplicate entity");
    }
    for rel in &fixture.relationships {
        let ty = |key: &str| {
            fixture
                .entities
                .iter()
                .find(|e| e.key == key)
                .map(|e| e.ty.as_str())
        };
        schema
            .validate_relationship(rel, ty)
            .expect("fixture relationship is valid");
        collected
            .insert_relationship(rel.clone())
            .expect("no duplicate relationship");
    }
    collected
}

fn all_types() -> BTreeSet<String> {
    let schema = schema();
    let entities = schema.entity_types_of("circleci").map(|d| d.ty.clone());
    let relationships = schema
        .relationship_types_of("circleci")
        .map(|d| d.ty.clone());
    entities.chain(relationships).collect()
}

fn sync(
    store: &mut Store,
    collected: &Collected,
    complete: &BTreeSet<String>,
) -> Result<ChangeCounts, StoreError> {
    let sync_id = store.begin_run(INTEGRATION)?;
    let steps = [StepOutcome::new(
        "fetch-everything",
        complete.iter().cloned().collect(),
    )];
    store.commit_run(
        sync_id,
        INTEGRATION,
        collected,
        complete,
        &steps,
        RunStatus::Success,
    )
}

fn export(store: &Store) -> (Vec<Value>, Vec<Value>) {
    let (mut entities, mut relationships) = (Vec::new(), Vec::new());
    store
        .export(
            Some(INTEGRATION),
            &mut |e| {
                entities.push(e);
                Ok(())
            },
            &mut |r| {
                relationships.push(r);
                Ok(())
            },
        )
        .expect("export");
    (entities, relationships)
}

fn all_events(store: &Store) -> Vec<ChangeEvent> {
    store.events(0, None, usize::MAX).expect("events")
}

/// Event sequence numbers are exactly 1..=n.
fn assert_gap_free(store: &Store) {
    let seqs: Vec<u64> = all_events(store).iter().map(|e| e.seq).collect();
    let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(seqs, expected, "event sequence has a gap");
    assert_eq!(store.last_event_seq().expect("last seq"), seqs.len() as u64);
}

fn temp_db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("sextant.db");
    (dir, path)
}

#[test]
fn migrations_create_a_fresh_database_and_reopen_keeps_it() {
    let (_dir, path) = temp_db();
    let mut store = Store::open(&path).expect("open fresh");
    assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
    sync(&mut store, &collect(&circleci(2, 0)), &all_types()).expect("sync");
    let before = export(&store);
    drop(store);

    let store = Store::open(&path).expect("reopen");
    assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
    assert_eq!(export(&store), before);
    assert_gap_free(&store);
}

#[test]
fn a_database_from_a_newer_sextant_is_refused() {
    let (_dir, path) = temp_db();
    drop(Store::open(&path).expect("create"));
    let newer = SCHEMA_VERSION as i64 + 4;
    rusqlite::Connection::open(&path)
        .and_then(|c| c.pragma_update(None, "user_version", newer))
        .expect("bump user_version");
    let err = Store::open(&path).expect_err("newer schema is refused");
    assert!(matches!(err, StoreError::TooNew { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "database {} is from a newer sextant (schema {newer}, this build knows {SCHEMA_VERSION}); upgrade sextant",
            path.display()
        )
    );
}

#[test]
fn commit_then_export_then_events() {
    let mut store = Store::open_in_memory().expect("open");
    let collected = collect(&circleci(3, 0));
    let counts = sync(&mut store, &collected, &all_types()).expect("sync");
    let objects = (collected.entity_count() + collected.relationship_count()) as u64;
    assert_eq!(
        counts,
        ChangeCounts {
            created: objects,
            updated: 0,
            deleted: 0
        }
    );

    let (entities, relationships) = export(&store);
    assert_eq!(entities.len(), collected.entity_count());
    assert_eq!(relationships.len(), collected.relationship_count());
    let keys: Vec<&str> = entities
        .iter()
        .map(|e| e["_key"].as_str().unwrap_or(""))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "export is in key order");
    let user = entities
        .iter()
        .find(|e| e["_key"] == "circleci-user:u-1")
        .expect("user exported");
    assert_eq!(
        user,
        &json!({"_key": "circleci-user:u-1", "_type": "circleci_user", "_class": "User", "id": "u-1",
                "name": "octo", "displayName": "octo", "username": "octo", "active": true})
    );
    let rel = &relationships[0];
    assert!(
        rel["_fromEntityKey"].is_string() && rel["_toEntityKey"].is_string(),
        "{rel}"
    );

    // One created event per object; `after` is the exported object.
    let events = all_events(&store);
    assert_eq!(events.len() as u64, objects);
    assert_gap_free(&store);
    let exported: Vec<&Value> = entities.iter().chain(&relationships).collect();
    for event in &events {
        assert_eq!(event.action, Action::Created);
        assert_eq!(
            (
                event.integration.as_str(),
                event.changes.is_none(),
                event.before.is_none()
            ),
            (INTEGRATION, true, true)
        );
        let after = event.after.as_ref().expect("created events carry after");
        assert_eq!(after["_key"], event.key.as_str());
        assert_eq!(after["_type"], event.ty.as_str());
        assert!(
            exported.contains(&after),
            "after is not the exported object: {after}"
        );
    }
    // Entities come before the relationships that point at them.
    let first_rel = events
        .iter()
        .position(|e| e.object == ObjectKind::Relationship);
    assert_eq!(first_rel, Some(collected.entity_count()));

    let run = store.runs(Some(INTEGRATION), 10).expect("runs");
    assert_eq!(run.len(), 1);
    assert_eq!(
        (run[0].status, run[0].changes, run[0].error.clone()),
        (RunStatus::Success, counts, None)
    );
    assert_eq!(run[0].steps[0]["id"], "fetch-everything");
    assert!(run[0].ended_at.is_some());
    assert_eq!(store.run(run[0].id).expect("run"), Some(run[0].clone()));
    assert_eq!(
        store
            .entity_type(INTEGRATION, "circleci-job:wf-1:000001")
            .expect("type"),
        Some("circleci_job".into())
    );
    assert_eq!(
        store
            .entity_type("other", "circleci-job:wf-1:000001")
            .expect("type"),
        None
    );
    let counts = store.counts_by_type(INTEGRATION).expect("counts");
    assert_eq!(counts.get("circleci_job"), Some(&3));
    assert_eq!(counts.get("circleci_workflow_has_job"), Some(&3));
}

#[test]
fn an_identical_commit_emits_no_event_and_rewrites_no_row() {
    let (_dir, path) = temp_db();
    let mut store = Store::open(&path).expect("open");
    let collected = collect(&circleci(3, 0));
    sync(&mut store, &collected, &all_types()).expect("first sync");
    let seq = store.last_event_seq().expect("seq");
    let counts = sync(&mut store, &collect(&circleci(3, 0)), &all_types()).expect("second sync");
    assert_eq!(counts, ChangeCounts::default());
    assert_eq!(store.last_event_seq().expect("seq"), seq);
    assert_eq!(store.events(seq, None, 100).expect("events"), vec![]);
    let second = store.runs(None, 1).expect("runs")[0].id;

    // The rows still carry the first run; the types' last-seen moved on.
    let conn = rusqlite::Connection::open(&path).expect("peek");
    let changed: Vec<i64> = conn
        .prepare("SELECT DISTINCT changed_sync FROM entities")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .expect("changed_sync");
    assert_eq!(changed, vec![second - 1]);
    let seen: Vec<i64> = conn
        .prepare("SELECT DISTINCT sync_id FROM type_seen")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .expect("type_seen");
    assert_eq!(seen, vec![second]);
}

#[test]
fn updates_and_deletes_carry_before_after_and_changes() {
    let mut store = Store::open_in_memory().expect("open");
    sync(&mut store, &collect(&circleci(3, 0)), &all_types()).expect("first sync");
    let seq = store.last_event_seq().expect("seq");
    // Revision 1: workflow status changes; job 2 and its relationship go.
    let counts = sync(&mut store, &collect(&circleci(2, 1)), &all_types()).expect("second sync");
    assert_eq!(
        counts,
        ChangeCounts {
            created: 0,
            updated: 1,
            deleted: 2
        }
    );

    let events = store.events(seq, Some(INTEGRATION), 100).expect("events");
    let summary: Vec<(u64, Action, ObjectKind, &str)> = events
        .iter()
        .map(|e| (e.seq, e.action, e.object, e.key.as_str()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                seq + 1,
                Action::Updated,
                ObjectKind::Entity,
                "circleci-workflow:wf-1"
            ),
            (
                seq + 2,
                Action::Deleted,
                ObjectKind::Relationship,
                "circleci-workflow:wf-1|has|circleci-job:wf-1:000002"
            ),
            (
                seq + 3,
                Action::Deleted,
                ObjectKind::Entity,
                "circleci-job:wf-1:000002"
            ),
        ]
    );
    let update = &events[0];
    let changes = serde_json::to_value(update.changes.as_ref().expect("changes")).expect("json");
    assert_eq!(
        changes,
        json!({"status": {"old": "running", "new": "success"}})
    );
    assert_eq!(
        update.before.as_ref().map(|b| b["status"].clone()),
        Some(json!("running"))
    );
    assert_eq!(
        update.after.as_ref().map(|a| a["status"].clone()),
        Some(json!("success"))
    );
    let deleted = &events[1];
    assert_eq!(
        (deleted.after.is_none(), deleted.changes.is_none()),
        (true, true)
    );
    let before = deleted
        .before
        .as_ref()
        .expect("deleted events carry before");
    assert_eq!(before["_toEntityKey"], "circleci-job:wf-1:000002");
    assert_eq!(
        events[2].before.as_ref().map(|b| b["jobNumber"].clone()),
        Some(json!(2))
    );
    assert_eq!(
        store
            .entity_type(INTEGRATION, "circleci-job:wf-1:000002")
            .expect("type"),
        None
    );
    assert_gap_free(&store);
}

#[test]
fn partial_types_are_kept() {
    let mut store = Store::open_in_memory().expect("open");
    sync(&mut store, &collect(&circleci(3, 0)), &all_types()).expect("first sync");
    let before = export(&store);
    // The jobs step failed: nothing of jobs was collected, so neither jobs
    // nor workflow→job relationships are complete. Everything else was seen.
    let mut complete = all_types();
    complete.remove("circleci_job");
    complete.remove("circleci_workflow_has_job");
    let counts = sync(&mut store, &collect(&circleci(0, 0)), &complete).expect("partial sync");
    assert_eq!(counts, ChangeCounts::default());
    assert_eq!(export(&store), before);

    // Only the relationship type is complete: the relationships still stay,
    // because their `to` entities' type is not complete.
    complete.insert("circleci_workflow_has_job".into());
    let counts = sync(&mut store, &collect(&circleci(0, 0)), &complete).expect("partial sync");
    assert_eq!(counts, ChangeCounts::default());
    assert_eq!(export(&store), before);

    // With every type complete the jobs and their relationships go.
    let counts = sync(&mut store, &collect(&circleci(0, 0)), &all_types()).expect("full sync");
    assert_eq!(
        counts,
        ChangeCounts {
            created: 0,
            updated: 0,
            deleted: 6
        }
    );
}

#[test]
fn runs_are_recorded_and_only_a_running_run_commits() {
    let mut store = Store::open_in_memory().expect("open");
    let collected = collect(&circleci(1, 0));
    let sync_id = store.begin_run(INTEGRATION).expect("begin");
    let running = store.run(sync_id).expect("run").expect("exists");
    assert_eq!(
        (running.status, running.ended_at),
        (RunStatus::Running, None)
    );

    let other = store
        .commit_run(
            sync_id,
            "other",
            &collected,
            &all_types(),
            &[],
            RunStatus::Success,
        )
        .expect_err("another integration's run");
    assert!(
        matches!(other, StoreError::WrongIntegration { .. }),
        "{other}"
    );

    let steps = [StepOutcome::new(
        "fetch-users",
        vec!["circleci_user".into()],
    )];
    store
        .finish_run(sync_id, RunStatus::Aborted, &steps, Some("shutting down"))
        .expect("finish");
    let aborted = store.run(sync_id).expect("run").expect("exists");
    assert_eq!(
        (aborted.status, aborted.error.as_deref()),
        (RunStatus::Aborted, Some("shutting down"))
    );
    let again = store
        .commit_run(
            sync_id,
            INTEGRATION,
            &collected,
            &all_types(),
            &[],
            RunStatus::Success,
        )
        .expect_err("finished run");
    assert_eq!(
        again.to_string(),
        format!("sync run {sync_id} is aborted, not running; start a new run")
    );
    assert!(matches!(
        store.finish_run(9999, RunStatus::Failed, &[], None),
        Err(StoreError::UnknownRun(9999))
    ));
    assert_eq!(store.last_event_seq().expect("seq"), 0);

    let second = store.begin_run("other").expect("begin");
    assert_eq!(
        store
            .runs(None, 10)
            .expect("runs")
            .iter()
            .map(|r| r.id)
            .collect::<Vec<_>>(),
        vec![second, sync_id]
    );
    assert_eq!(store.runs(Some(INTEGRATION), 10).expect("runs").len(), 1);
    assert_eq!(store.runs(None, 1).expect("runs").len(), 1);
}

const BIG_JOBS: usize = 3000;

#[test]
fn an_interrupted_commit_rolls_back_and_the_next_continues_the_sequence() {
    let mut store = Store::open_in_memory().expect("open");
    sync(&mut store, &collect(&circleci(2, 0)), &all_types()).expect("first sync");
    let before = export(&store);
    let seq = store.last_event_seq().expect("seq");

    // Fail half-way through writing the big graph's rows and events.
    let big = collect(&circleci(BIG_JOBS, 1));
    store.inject_fault_after_writes(BIG_JOBS as u64, Fault::Error);
    let err = sync(&mut store, &big, &all_types()).expect_err("injected fault");
    assert!(matches!(err, StoreError::InjectedFault), "{err:?}");
    assert_eq!(export(&store), before, "graph is at the previous run");
    assert_eq!(
        store.last_event_seq().expect("seq"),
        seq,
        "no event of the failed commit"
    );

    let counts = sync(&mut store, &big, &all_types()).expect("retry");
    assert_eq!(counts.created as usize, 2 * (BIG_JOBS - 2));
    assert_eq!(store.events(seq, None, 1).expect("events")[0].seq, seq + 1);
    assert_gap_free(&store);
}

const KILL_CHILD_ENV: &str = "SEXTANT_TEST_KILL_CHILD_DB";

#[test]
fn a_killed_commit_leaves_the_previous_state_and_loses_no_event() {
    if let Ok(path) = std::env::var(KILL_CHILD_ENV) {
        kill_child(Path::new(&path));
    }
    let (_dir, path) = temp_db();
    let mut store = Store::open(&path).expect("open");
    sync(&mut store, &collect(&circleci(2, 0)), &all_types()).expect("first sync");
    let before = export(&store);
    let seq = store.last_event_seq().expect("seq");
    drop(store);

    let exe = std::env::current_exe().expect("test binary");
    let output = std::process::Command::new(exe)
        .args([
            "--exact",
            "a_killed_commit_leaves_the_previous_state_and_loses_no_event",
            "--nocapture",
        ])
        .env(KILL_CHILD_ENV, &path)
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("child: committing"),
        "the child did not reach the commit:\n{stdout}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            output.status.signal(),
            Some(6),
            "the child should die of SIGABRT: {:?}",
            output.status
        );
    }
    assert!(!output.status.success());

    let mut store = Store::open(&path).expect("reopen after the crash");
    assert_eq!(export(&store), before, "graph is at the previous run");
    assert_eq!(store.last_event_seq().expect("seq"), seq);
    let big = collect(&circleci(BIG_JOBS, 1));
    sync(&mut store, &big, &all_types()).expect("next sync");
    assert_eq!(store.events(seq, None, 1).expect("events")[0].seq, seq + 1);
    assert_gap_free(&store);
}

/// The child: commits the big graph with a tiny page cache (so uncommitted
/// pages spill into the WAL file) and aborts the process half-way.
fn kill_child(path: &Path) -> ! {
    let mut store = Store::open(path).expect("child opens");
    store.set_cache_size_kib(256).expect("small cache");
    let big = collect(&circleci(BIG_JOBS, 1));
    store.inject_fault_after_writes(BIG_JOBS as u64, Fault::Abort);
    println!("child: committing");
    let result = sync(&mut store, &big, &all_types());
    panic!("the child's commit should have aborted the process, got {result:?}");
}

/// JupiterOne's class schema for `class`, with `GraphObject` and `Entity`
/// inlined as definitions (their files refer to each other as `#Entity`).
fn jupiterone_validator(class: &str) -> jsonschema::Validator {
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/reference/jupiterone-data-model");
    assert!(
        dir.is_dir(),
        "{} is missing: the JupiterOne data-model schemas must sit in shared/ beside the checkout",
        dir.display()
    );
    let mut definitions = serde_json::Map::new();
    for name in ["GraphObject", "Entity", class] {
        let file = dir.join(format!("{name}.json"));
        let text =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let text = text.replace("\"$ref\": \"#", "\"$ref\": \"#/definitions/");
        let mut schema: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        if let Some(object) = schema.as_object_mut() {
            object.remove("$id");
            object.remove("$schema");
        }
        definitions.insert(name.to_owned(), schema);
    }
    let document = json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "definitions": definitions,
        "$ref": format!("#/definitions/{class}"),
    });
    jsonschema::validator_for(&document).unwrap_or_else(|e| panic!("schema for {class}: {e}"))
}

#[test]
fn exported_entities_validate_against_jupiterone_class_schemas() {
    let mut store = Store::open_in_memory().expect("open");
    sync(&mut store, &collect(&circleci(2, 0)), &all_types()).expect("sync");
    let (entities, relationships) = export(&store);
    let mut classes = BTreeSet::new();
    for entity in &entities {
        let class = entity["_class"].as_str().expect("_class is a string");
        classes.insert(class.to_owned());
        let validator = jupiterone_validator(class);
        let errors: Vec<String> = validator
            .iter_errors(entity)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{entity} is not a valid {class}:\n{}",
            errors.join("\n")
        );
    }
    let expected: BTreeSet<String> = [
        "Account",
        "Configuration",
        "Group",
        "Repository",
        "Task",
        "User",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(classes, expected);

    // The check has teeth: an entity without displayName is refused.
    let mut broken = entities[0].clone();
    broken.as_object_mut().map(|o| o.remove("displayName"));
    let class = broken["_class"].as_str().unwrap_or_default().to_owned();
    assert!(!jupiterone_validator(&class).is_valid(&broken));

    // Relationships are graph objects (key, type and class).
    let graph_object = jupiterone_validator("GraphObject");
    for rel in &relationships {
        assert!(
            graph_object.is_valid(rel),
            "{rel} is not a valid graph object"
        );
    }
}
