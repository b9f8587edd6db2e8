//! The SQLite store end to end: migrations, commit → export → events, no-op
//! re-runs, partial datasets (`commit`), an interrupted and a killed commit
//! — the graph stays at the previous run and the event sequence has no gap
//! (`crash`) — and export output validated against JupiterOne's class
//! schemas (`jupiterone`); create events recorded in batches read back
//! whole (`batches`). This file holds the shared fixture.

mod batches;
mod commit;
mod crash;
mod jupiterone;

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::{Value, json};
use sextant::events::ChangeEvent;
use sextant::graph::{Collected, Entity, Relationship, Schema};
use sextant::run::{ChangeCounts, RunStatus, StepOutcome};
use sextant::store::{Store, StoreError};

pub const INTEGRATION: &str = "ci-prod";
const CREATED_ON: i64 = 1_700_000_000_000;

pub fn schema() -> Schema {
    Schema::embedded().expect("embedded graph-schema loads")
}

/// A CircleCI-like graph: account, user, organisation, project, pipeline,
/// workflow with `jobs` jobs, a context, and one variable of each kind.
/// `revision` changes the workflow's status, so revisions differ by one update.
pub struct Fixture {
    entities: Vec<Entity>,
    relationships: Vec<Relationship>,
}

pub fn circleci(jobs: usize, revision: u32) -> Fixture {
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
pub fn collect(fixture: &Fixture) -> Collected {
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

pub fn all_types() -> BTreeSet<String> {
    let schema = schema();
    let entities = schema.entity_types_of("circleci").map(|d| d.ty.clone());
    let relationships = schema
        .relationship_types_of("circleci")
        .map(|d| d.ty.clone());
    entities.chain(relationships).collect()
}

pub fn sync(
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

pub fn export(store: &Store) -> (Vec<Value>, Vec<Value>) {
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

pub fn all_events(store: &Store) -> Vec<ChangeEvent> {
    store.events(0, None, usize::MAX).expect("events")
}

/// Event sequence numbers are exactly 1..=n.
pub fn assert_gap_free(store: &Store) {
    let seqs: Vec<u64> = all_events(store).iter().map(|e| e.seq).collect();
    let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(seqs, expected, "event sequence has a gap");
    assert_eq!(store.last_event_seq().expect("last seq"), seqs.len() as u64);
}

pub fn temp_db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("sextant.db");
    (dir, path)
}
