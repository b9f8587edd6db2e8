//! Data-driven tests of the pure diff: one `check` helper, a table of
//! (stored graph, collected graph, complete types) → expected plan.

use std::collections::BTreeSet;
use std::sync::Arc;

use sextant::diff::{
    ObjectPlan, Plan, StoredEntityMeta, StoredIndex, StoredRelationshipMeta, plan,
};
use sextant::graph::{Collected, Entity, Relationship};

/// A graph written compactly: entities as (key, _type, value of property
/// `v`), relationships as (from key, to key, value of `v`); relationship
/// types follow from the endpoint types.
#[derive(Clone, Copy)]
struct Graph {
    entities: &'static [(&'static str, &'static str, i64)],
    relationships: &'static [(&'static str, &'static str, i64)],
}

const EMPTY: Graph = Graph {
    entities: &[],
    relationships: &[],
};

fn entity(key: &str, ty: &str, v: i64) -> Entity {
    Entity::new(key, ty, "Configuration").with("v", v)
}

fn collect(graph: Graph) -> Collected {
    collect_in_order(graph, false)
}

/// Builds the collected graph, optionally adding objects in reverse order.
fn collect_in_order(graph: Graph, reversed: bool) -> Collected {
    let mut collected = Collected::new();
    let mut entities: Vec<_> = graph.entities.to_vec();
    let mut relationships: Vec<_> = graph.relationships.to_vec();
    if reversed {
        entities.reverse();
        relationships.reverse();
    }
    let type_of = |key: &str| {
        graph
            .entities
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, ty, _)| *ty)
            .unwrap_or("ext_thing")
    };
    for (key, ty, v) in entities {
        // Duplicates are reported by the collector; the diff only sees the first.
        let _ = collected.insert_entity(entity(key, ty, v));
    }
    for (from, to, v) in relationships {
        let rel = Relationship::by_keys("HAS", type_of(from), from, type_of(to), to).with("v", v);
        let _ = collected.insert_relationship(rel);
    }
    collected
}

/// The index a store holding exactly `collected` would load.
fn index(collected: &Collected) -> StoredIndex {
    let mut stored = StoredIndex::default();
    let planned = plan(&StoredIndex::default(), collected, &BTreeSet::new());
    apply(&mut stored, collected, &planned);
    stored
}

/// What the store does with a plan, on the in-memory index.
fn apply(stored: &mut StoredIndex, collected: &Collected, plan: &Plan<'_>) {
    for key in &plan.entities.deleted {
        stored.entities.remove(key);
    }
    for key in &plan.relationships.deleted {
        stored.relationships.remove(key);
    }
    for e in plan.entities.created.iter().chain(&plan.entities.updated) {
        let meta = StoredEntityMeta {
            ty: e.ty.clone(),
            hash: e.hash,
        };
        stored.entities.insert(e.key.to_string(), meta);
    }
    let endpoint_type = |key: &str| -> Arc<str> {
        match collected.entity(key) {
            Some(e) => e.ty.clone(),
            None => Arc::from(""),
        }
    };
    for r in plan
        .relationships
        .created
        .iter()
        .chain(&plan.relationships.updated)
    {
        let meta = StoredRelationshipMeta {
            ty: r.ty.clone(),
            hash: r.hash,
            from_ty: endpoint_type(&r.from_key),
            to_ty: endpoint_type(&r.to_key),
        };
        stored.relationships.insert(r.key.to_string(), meta);
    }
}

/// The plan as lines: `e+ key` created, `e~` updated, `e-` deleted, then the
/// unchanged, seen and kept counts; the same with `r` for relationships.
fn render(plan: &Plan<'_>) -> String {
    let mut out = Vec::new();
    render_part(&mut out, "e", &plan.entities, |e| &e.key);
    render_part(&mut out, "r", &plan.relationships, |r| &r.key);
    out.join("\n")
}

fn render_part<T>(
    out: &mut Vec<String>,
    tag: &str,
    part: &ObjectPlan<&T>,
    key: impl Fn(&T) -> &str,
) {
    out.extend(part.created.iter().map(|o| format!("{tag}+ {}", key(o))));
    out.extend(part.updated.iter().map(|o| format!("{tag}~ {}", key(o))));
    out.extend(part.deleted.iter().map(|k| format!("{tag}- {k}")));
    out.push(format!(
        "{tag}= {} seen {} kept {}",
        part.unchanged,
        part.seen.len(),
        part.kept
    ));
}

fn complete_set(types: &[&str]) -> BTreeSet<String> {
    types.iter().map(|t| t.to_string()).collect()
}

/// Runs one case, then checks the properties every case must have: the
/// result does not depend on collection order, and applying the plan makes
/// the next identical run a no-op.
fn check(stored: Graph, collected: Graph, complete: &[&str], expected: &str) {
    check_in_given_order(stored, collected, complete, expected);
    let complete = complete_set(complete);
    let reversed = collect_in_order(collected, true);
    let reversed_stored = index(&collect_in_order(stored, true));
    assert_eq!(
        render(&plan(&reversed_stored, &reversed, &complete)),
        expected.trim(),
        "plan with objects collected in reverse order"
    );
}

/// [`check`] without the reverse-order run (for duplicates, where the first
/// object collected wins by design).
fn check_in_given_order(stored: Graph, collected: Graph, complete: &[&str], expected: &str) {
    let complete = complete_set(complete);
    let mut stored_index = index(&collect(stored));
    let graph = collect(collected);
    let planned = plan(&stored_index, &graph, &complete);
    assert_eq!(render(&planned), expected.trim(), "plan");

    apply(&mut stored_index, &graph, &planned);
    let again = plan(&stored_index, &graph, &complete);
    assert!(
        again.is_empty(),
        "second plan is not empty:\n{}",
        render(&again)
    );
}

const ACCOUNT: &str = "circleci_account";
const USER: &str = "circleci_user";
const JOB: &str = "circleci_job";

#[test]
fn creates_into_an_empty_store() {
    check(
        EMPTY,
        Graph {
            entities: &[
                ("user:bob", USER, 1),
                ("account:1", ACCOUNT, 1),
                ("user:alice", USER, 1),
            ],
            relationships: &[("account:1", "user:alice", 0), ("account:1", "user:bob", 0)],
        },
        &[ACCOUNT, USER, "circleci_account_has_user"],
        "
e+ account:1
e+ user:alice
e+ user:bob
e= 0 seen 0 kept 0
r+ account:1|has|user:alice
r+ account:1|has|user:bob
r= 0 seen 0 kept 0",
    );
}

#[test]
fn updates_deletes_and_keeps_unchanged() {
    check(
        Graph {
            entities: &[
                ("account:1", ACCOUNT, 1),
                ("user:alice", USER, 1),
                ("user:bob", USER, 1),
            ],
            relationships: &[("account:1", "user:alice", 0), ("account:1", "user:bob", 0)],
        },
        Graph {
            entities: &[
                ("account:1", ACCOUNT, 1),
                ("user:alice", USER, 2),
                ("user:carol", USER, 1),
            ],
            relationships: &[
                ("account:1", "user:alice", 1),
                ("account:1", "user:carol", 0),
            ],
        },
        &[ACCOUNT, USER, "circleci_account_has_user"],
        "
e+ user:carol
e~ user:alice
e- user:bob
e= 1 seen 0 kept 0
r+ account:1|has|user:carol
r~ account:1|has|user:alice
r- account:1|has|user:bob
r= 0 seen 0 kept 0",
    );
}

#[test]
fn missing_objects_of_partial_types_are_kept() {
    // The job step failed: jobs and workflow→job relationships are not
    // complete, so the jobs it did not see stay; the unchanged job it did
    // see is reported as seen (its last-seen time is written per row).
    check(
        Graph {
            entities: &[
                ("workflow:1", "circleci_workflow", 1),
                ("job:1", JOB, 1),
                ("job:2", JOB, 1),
            ],
            relationships: &[("workflow:1", "job:1", 0), ("workflow:1", "job:2", 0)],
        },
        Graph {
            entities: &[("workflow:1", "circleci_workflow", 1), ("job:1", JOB, 1)],
            relationships: &[],
        },
        &["circleci_workflow"],
        "
e= 2 seen 1 kept 1
r= 0 seen 0 kept 2",
    );
}

#[test]
fn relationships_are_kept_while_an_endpoint_type_is_partial() {
    // The relationship type is complete, but its `to` entities' type is not:
    // the relationship may be missing only because the job was not fetched.
    check(
        Graph {
            entities: &[("workflow:1", "circleci_workflow", 1), ("job:1", JOB, 1)],
            relationships: &[("workflow:1", "job:1", 0)],
        },
        Graph {
            entities: &[("workflow:1", "circleci_workflow", 1)],
            relationships: &[],
        },
        &["circleci_workflow", "circleci_workflow_has_job"],
        "
e= 1 seen 0 kept 1
r= 0 seen 0 kept 1",
    );
    // Once every type involved is complete the relationship goes.
    check(
        Graph {
            entities: &[("workflow:1", "circleci_workflow", 1), ("job:1", JOB, 1)],
            relationships: &[("workflow:1", "job:1", 0)],
        },
        Graph {
            entities: &[("workflow:1", "circleci_workflow", 1)],
            relationships: &[],
        },
        &["circleci_workflow", JOB, "circleci_workflow_has_job"],
        "
e- job:1
e= 1 seen 0 kept 0
r- workflow:1|has|job:1
r= 0 seen 0 kept 0",
    );
}

#[test]
fn relationships_to_entities_of_other_sources_depend_on_their_own_type_only() {
    check(
        Graph {
            entities: &[("project:1", "circleci_project", 1)],
            relationships: &[("project:1", "github-repo:1", 0)],
        },
        Graph {
            entities: &[("project:1", "circleci_project", 1)],
            relationships: &[],
        },
        &["circleci_project", "circleci_project_has_ext_thing"],
        "
e= 1 seen 0 kept 0
r- project:1|has|github-repo:1
r= 0 seen 0 kept 0",
    );
}

#[test]
fn a_type_change_for_the_same_key_is_an_update() {
    check(
        Graph {
            entities: &[("thing:0001", "circleci_context", 1)],
            relationships: &[],
        },
        Graph {
            entities: &[("thing:0001", "circleci_project", 1)],
            relationships: &[],
        },
        &["circleci_context", "circleci_project"],
        "
e~ thing:0001
e= 0 seen 0 kept 0
r= 0 seen 0 kept 0",
    );
}

#[test]
fn nothing_changes_when_nothing_changed() {
    let graph = Graph {
        entities: &[("account:1", ACCOUNT, 1), ("user:alice", USER, 1)],
        relationships: &[("account:1", "user:alice", 0)],
    };
    check(
        graph,
        graph,
        &[ACCOUNT, USER, "circleci_account_has_user"],
        "
e= 2 seen 0 kept 0
r= 1 seen 0 kept 0",
    );
}

#[test]
fn an_empty_collection_of_complete_types_deletes_everything_of_those_types() {
    check(
        Graph {
            entities: &[("account:1", ACCOUNT, 1), ("user:alice", USER, 1)],
            relationships: &[("account:1", "user:alice", 0)],
        },
        EMPTY,
        &[USER, ACCOUNT, "circleci_account_has_user"],
        "
e- account:1
e- user:alice
e= 0 seen 0 kept 0
r- account:1|has|user:alice
r= 0 seen 0 kept 0",
    );
}

#[test]
fn a_duplicate_key_keeps_the_first_object_through_the_diff() {
    // Stored holds v=1; the run collects v=1 first and v=2 second under the
    // same key: the first wins, so nothing changed.
    check_in_given_order(
        Graph {
            entities: &[("user:alice", USER, 1)],
            relationships: &[],
        },
        Graph {
            entities: &[("user:alice", USER, 1), ("user:alice", USER, 2)],
            relationships: &[],
        },
        &[USER],
        "
e= 1 seen 0 kept 0
r= 0 seen 0 kept 0",
    );
}

#[test]
fn counts_add_up_entities_and_relationships() {
    let stored = index(&collect(Graph {
        entities: &[("user:alice", USER, 1), ("user:bob", USER, 1)],
        relationships: &[],
    }));
    let graph = collect(Graph {
        entities: &[("user:alice", USER, 2), ("account:1", ACCOUNT, 1)],
        relationships: &[("account:1", "user:alice", 0)],
    });
    let counts = plan(&stored, &graph, &complete_set(&[USER])).counts();
    assert_eq!((counts.created, counts.updated, counts.deleted), (2, 1, 1));
}

#[test]
fn large_stores_find_deletions_the_same_way() {
    // Past a thousand stored keys the diff checks membership with a hash
    // set; the result must not change.
    let users = |n: usize, skip: usize| {
        let mut collected = Collected::new();
        for i in (0..n).filter(|&i| i != skip) {
            let _ = collected.insert_entity(entity(&format!("user:{i:05}"), USER, 1));
            if i > 0 && i - 1 != skip {
                let rel = Relationship::by_keys(
                    "HAS",
                    USER,
                    &format!("user:{:05}", i - 1),
                    USER,
                    &format!("user:{i:05}"),
                );
                let _ = collected.insert_relationship(rel);
            }
        }
        collected
    };
    let stored = index(&users(3000, usize::MAX));
    let collected = users(3000, 1234);
    let complete = complete_set(&[USER, "circleci_user_has_user"]);
    let planned = plan(&stored, &collected, &complete);
    assert_eq!(planned.entities.deleted, ["user:01234"]);
    assert_eq!(
        planned.relationships.deleted,
        ["user:01233|has|user:01234", "user:01234|has|user:01235"]
    );
    assert_eq!(planned.entities.unchanged, 2999);
    assert!(planned.entities.created.is_empty() && planned.relationships.created.is_empty());
}
