//! Commits: migrations, export, events, no-op re-runs, updates and deletes,
//! partial datasets, run records.

use serde_json::{Value, json};
use sextant::events::{Action, ObjectKind};
use sextant::run::{ChangeCounts, RunStatus, StepOutcome};
use sextant::store::{SCHEMA_VERSION, Store, StoreError};

use super::*;

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
fn an_event_reads_the_same_after_its_object_changes_or_goes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sextant.db");
    let mut store = Store::open(&path).expect("open");
    sync(&mut store, &collect(&circleci(3, 0)), &all_types()).expect("first sync");
    let first = store.events(0, None, 1000).expect("events");
    assert!(
        first.iter().all(|e| e.after.is_some()),
        "every create has its after"
    );
    // The creates are batch rows whose `after` is the graph row: no event
    // row is written until an object changes or goes.
    let written = |_: &Store| -> i64 {
        let db = rusqlite::Connection::open(&path).expect("db");
        db.query_row(
            "SELECT COUNT(*) FROM events WHERE action = 'created'",
            [],
            |r| r.get(0),
        )
        .expect("count")
    };
    assert_eq!(written(&store), 0);

    // The workflow changes, job 2 and its relationship go, then everything
    // goes: the first run's events read exactly as they did.
    sync(&mut store, &collect(&circleci(2, 1)), &all_types()).expect("second sync");
    assert_eq!(store.events(0, None, first.len()).expect("events"), first);
    assert_eq!(written(&store), 3, "three written out");
    sync(&mut store, &Collected::new(), &all_types()).expect("third sync");
    assert_eq!(store.events(0, None, first.len()).expect("events"), first);
    assert_eq!(written(&store), first.len() as i64);
    let seq = first.len() as u64;
    let later = store.events(seq, None, 1000).expect("events");
    assert!(later.iter().all(|e| e.action != Action::Created));
    assert_gap_free(&store);
}

#[test]
fn a_kept_relationship_never_outlives_its_endpoint() {
    let mut store = Store::open_in_memory().expect("open");
    sync(&mut store, &collect(&circleci(3, 0)), &all_types()).expect("first sync");
    // The jobs are complete (and gone), but the step producing workflow→job
    // relationships failed: its relationships would be kept, yet they point
    // at deleted jobs, so they go with them.
    let mut complete = all_types();
    complete.remove("circleci_workflow_has_job");
    let counts = sync(&mut store, &collect(&circleci(0, 0)), &complete).expect("sync");
    assert_eq!(
        counts,
        ChangeCounts {
            created: 0,
            updated: 0,
            deleted: 6
        }
    );
    let (entities, relationships) = export(&store);
    let keys: BTreeSet<&str> = entities
        .iter()
        .map(|e| e["_key"].as_str().expect("key"))
        .collect();
    for rel in &relationships {
        for end in ["_fromEntityKey", "_toEntityKey"] {
            let key = rel[end].as_str().expect("endpoint");
            assert!(keys.contains(key), "{} dangles: {key}", rel["_key"]);
        }
    }
    // The relationship deletions are events, before the entity deletions.
    let events = store.events(0, None, 1000).expect("events");
    let deleted: Vec<(ObjectKind, String)> = events
        .iter()
        .filter(|e| e.action == Action::Deleted)
        .map(|e| (e.object, e.ty.clone()))
        .collect();
    assert_eq!(deleted.len(), 6);
    assert!(
        deleted[..3]
            .iter()
            .all(|(_, ty)| ty == "circleci_workflow_has_job"),
        "{deleted:?}"
    );
    assert!(
        deleted[3..].iter().all(|(_, ty)| ty == "circleci_job"),
        "{deleted:?}"
    );
    assert_gap_free(&store);
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
    // A closed run keeps its record: a late finish (say, by a process whose
    // lease was reclaimed) is refused.
    assert!(matches!(
        store.finish_run(sync_id, RunStatus::Failed, &[], Some("late")),
        Err(StoreError::RunNotRunning { .. })
    ));
    assert_eq!(
        store
            .run(sync_id)
            .expect("run")
            .expect("exists")
            .error
            .as_deref(),
        Some("shutting down")
    );
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

#[test]
fn integrations_are_kept_apart() {
    let mut store = Store::open_in_memory().expect("open");
    let complete = all_types();
    sync(&mut store, &collect(&circleci(1, 0)), &complete).expect("first integration");
    let first = store.last_event_seq().expect("seq");
    let other = store.begin_run("ci-staging").expect("begin");
    let graph = collect(&circleci(2, 0));
    store
        .commit_run(
            other,
            "ci-staging",
            &graph,
            &complete,
            &[],
            RunStatus::Success,
        )
        .expect("second integration");

    let staging = store.events(0, Some("ci-staging"), 1000).expect("events");
    assert_eq!(
        staging.len(),
        graph.entity_count() + graph.relationship_count()
    );
    assert!(
        staging
            .iter()
            .all(|e| e.integration == "ci-staging" && e.seq > first)
    );
    assert_eq!(
        store
            .events(0, Some("ci-prod"), 1000)
            .expect("events")
            .len() as u64,
        first
    );
    assert_eq!(
        store
            .events(first - 2, Some("ci-prod"), 1000)
            .expect("events")
            .len(),
        2
    );

    // A full export lists ci-prod's entities before ci-staging's.
    let mut keys = Vec::new();
    store
        .export(
            None,
            &mut |e| {
                keys.push(e["_key"].as_str().unwrap_or_default().to_owned());
                Ok(())
            },
            &mut |_| Ok(()),
        )
        .expect("export");
    assert_eq!(
        keys.len(),
        collect(&circleci(1, 0)).entity_count() + graph.entity_count()
    );
    assert_eq!(
        keys.first().map(String::as_str),
        Some("circleci-account:u-1")
    );

    // Emptying one integration leaves the other alone.
    sync(&mut store, &Collected::new(), &complete).expect("empty ci-prod");
    assert!(export(&store).0.is_empty());
    assert_eq!(
        store
            .counts_by_type("ci-staging")
            .expect("counts")
            .get("circleci_job"),
        Some(&2)
    );
}
