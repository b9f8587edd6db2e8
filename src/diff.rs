//! Pure diff: (stored index, collected graph, complete types) → change plan.
//! No I/O; the store loads the index, calls [`plan`] and writes what it says.
//!
//! Invariant: a stored object is deleted only when its `_type` is complete in
//! this run (and, for a relationship, both endpoint types are complete too),
//! so a failed or partial step never deletes what it did not see — except
//! that a relationship never outlives an endpoint entity this run deletes
//! ([`Plan::cascade`]).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use std::sync::Arc;

use serde_json::Value;

use crate::events::FieldChange;
use crate::graph::{Collected, CollectedEntity, CollectedRelationship, Properties};
use crate::run::ChangeCounts;

/// What the store keeps in memory about a stored entity: enough to diff,
/// never its properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntityMeta {
    pub ty: Arc<str>,
    pub hash: u64,
}

/// What the store keeps in memory about a stored relationship. The endpoint
/// types are stored per row so the diff can protect relationships whose
/// endpoints were only partly collected. An empty endpoint type means the
/// endpoint was not in the integration's graph when the row was written (an
/// entity of another source); it places no constraint on deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRelationshipMeta {
    pub ty: Arc<str>,
    pub hash: u64,
    pub from_ty: Arc<str>,
    pub to_ty: Arc<str>,
}

/// The stored graph of one integration, keyed by `_key`.
#[derive(Debug, Clone, Default)]
pub struct StoredIndex {
    pub entities: HashMap<String, StoredEntityMeta>,
    pub relationships: HashMap<String, StoredRelationshipMeta>,
}

/// The change plan for one kind of object. Every list is sorted by key.
#[derive(Debug, Clone)]
pub struct ObjectPlan<T> {
    pub created: Vec<T>,
    /// Where the runs of `created` begin: the indexes of the creates with a
    /// stored object between them and the previous create in key order (and
    /// 0). The creates of one run are adjacent rows once written, which lets
    /// the store record their events as one batch.
    pub created_runs: Vec<usize>,
    pub updated: Vec<T>,
    pub deleted: Vec<String>,
    /// Collected with the same content hash as stored.
    pub unchanged: u64,
    /// The unchanged objects whose `_type` is not complete: collected, so
    /// seen in this run, but not covered by their type's last-seen time.
    pub seen: Vec<T>,
    /// Stored, not collected, and kept because a type was not complete.
    pub kept: u64,
}

impl<T> Default for ObjectPlan<T> {
    fn default() -> Self {
        ObjectPlan {
            created: Vec::new(),
            created_runs: Vec::new(),
            updated: Vec::new(),
            deleted: Vec::new(),
            unchanged: 0,
            seen: Vec::new(),
            kept: 0,
        }
    }
}

impl<T> ObjectPlan<T> {
    fn is_empty(&self) -> bool {
        self.created.is_empty() && self.updated.is_empty() && self.deleted.is_empty()
    }

    /// Records a create; `after_stored`: a stored object came between it
    /// and the previous create.
    fn create(&mut self, object: T, after_stored: bool) {
        if after_stored || self.created.is_empty() {
            self.created_runs.push(self.created.len());
        }
        self.created.push(object);
    }

    /// `created` cut into its runs (see `created_runs`), none longer than
    /// `max`.
    pub fn created_batches(&self, max: usize) -> Vec<&[T]> {
        let max = max.max(1);
        let mut ends = self.created_runs.iter().skip(1).copied();
        let mut out = Vec::new();
        let mut start = 0;
        while start < self.created.len() {
            let end = ends.next().unwrap_or(self.created.len());
            out.extend(self.created[start..end].chunks(max));
            start = end;
        }
        out
    }
}

/// The whole plan of a run: what to create, update and delete.
#[derive(Debug, Clone, Default)]
pub struct Plan<'a> {
    pub entities: ObjectPlan<&'a CollectedEntity>,
    pub relationships: ObjectPlan<&'a CollectedRelationship>,
}

impl Plan<'_> {
    /// True when the run changes nothing (and so emits no event).
    pub fn is_empty(&self) -> bool {
        self.entities.is_empty() && self.relationships.is_empty()
    }

    /// True when stored relationships were kept (their type or an endpoint
    /// type was incomplete) while this plan deletes entities: a kept
    /// relationship may point at one of them, see [`Plan::cascade`].
    pub fn may_dangle(&self) -> bool {
        !self.entities.deleted.is_empty() && self.relationships.kept > 0
    }

    /// Deletes the stored relationships in `touching` (those with an endpoint
    /// among `entities.deleted`, as the store found them) that were kept:
    /// a relationship never outlives its endpoint, whatever the state of its
    /// own type. Relationships collected in this run are left alone (they were
    /// validated against this run's entities, so they cannot touch a deleted
    /// one).
    pub fn cascade(&mut self, touching: impl IntoIterator<Item = String>, collected: &Collected) {
        let already: HashSet<String> = self.relationships.deleted.iter().cloned().collect();
        let mut added = BTreeSet::new();
        for key in touching {
            if !already.contains(&key) && collected.relationship(&key).is_none() {
                added.insert(key);
            }
        }
        if added.is_empty() {
            return;
        }
        self.relationships.kept = self.relationships.kept.saturating_sub(added.len() as u64);
        self.relationships.deleted.extend(added);
        self.relationships.deleted.sort_unstable();
    }

    pub fn counts(&self) -> ChangeCounts {
        let (e, r) = (&self.entities, &self.relationships);
        ChangeCounts {
            created: (e.created.len() + r.created.len()) as u64,
            updated: (e.updated.len() + r.updated.len()) as u64,
            deleted: (e.deleted.len() + r.deleted.len()) as u64,
        }
    }
}

/// Stored keys did not come in strictly increasing order (a merge-join of
/// the stored and collected graphs needs both sorted).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the stored graph is not in key order ({key:?} came after {previous:?}); run PRAGMA integrity_check on the database"
)]
pub struct OutOfOrder {
    pub previous: String,
    pub key: String,
}

/// Diffs the collected graph against an in-memory stored index (tests and
/// small callers); see [`plan_sorted`].
pub fn plan<'a>(
    stored: &StoredIndex,
    collected: &'a Collected,
    complete: &BTreeSet<String>,
) -> Plan<'a> {
    let mut entities: Vec<_> = stored.entities.iter().collect();
    entities.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut relationships: Vec<_> = stored.relationships.iter().collect();
    relationships.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let sorted = plan_sorted(
        entities
            .into_iter()
            .map(|(k, m)| Ok::<_, OutOfOrder>((k.clone(), m.clone()))),
        relationships
            .into_iter()
            .map(|(k, m)| Ok((k.clone(), m.clone()))),
        collected,
        complete,
    );
    // Sorted above, with unique keys (map keys): never out of order.
    sorted.unwrap_or_default()
}

/// Diffs the collected graph against the stored one, given as two streams
/// of `(key, meta)` in strictly increasing key order (the store reads them
/// in primary-key order, so nothing of the stored graph is held in memory).
/// One merge-join pass per kind: O(stored + collected).
///
/// Unchanged means an equal content hash (which covers type, class,
/// endpoints and properties); the result does not depend on the order
/// objects were collected in.
pub fn plan_sorted<'a, X: From<OutOfOrder>>(
    stored_entities: impl IntoIterator<Item = Result<(String, StoredEntityMeta), X>>,
    stored_relationships: impl IntoIterator<Item = Result<(String, StoredRelationshipMeta), X>>,
    collected: &'a Collected,
    complete: &BTreeSet<String>,
) -> Result<Plan<'a>, X> {
    let mut out = Plan::default();
    let e = &mut out.entities;
    let mut after_stored = false;
    merge(
        collected.entities().map(|c| (&*c.key, c)),
        stored_entities,
        |side| match side {
            Side::Collected(entity) => {
                e.create(entity, after_stored);
                after_stored = false;
            }
            Side::Both(entity, meta) => {
                after_stored = true;
                if meta.hash != entity.hash || *meta.ty != *entity.ty {
                    e.updated.push(entity);
                } else {
                    e.unchanged += 1;
                    if !complete.contains(&*entity.ty) {
                        e.seen.push(entity);
                    }
                }
            }
            Side::Stored(key, meta) => {
                after_stored = true;
                if complete.contains(&*meta.ty) {
                    e.deleted.push(key.to_owned());
                } else {
                    e.kept += 1;
                }
            }
        },
    )?;

    let r = &mut out.relationships;
    let endpoint_complete = |ty: &str| ty.is_empty() || complete.contains(ty);
    let mut after_stored = false;
    merge(
        collected.relationships().map(|c| (&*c.key, c)),
        stored_relationships,
        |side| match side {
            Side::Collected(rel) => {
                r.create(rel, after_stored);
                after_stored = false;
            }
            Side::Both(rel, meta) => {
                after_stored = true;
                if meta.hash != rel.hash || *meta.ty != *rel.ty {
                    r.updated.push(rel);
                } else {
                    r.unchanged += 1;
                    if !complete.contains(&*rel.ty) {
                        r.seen.push(rel);
                    }
                }
            }
            Side::Stored(key, meta) => {
                after_stored = true;
                if complete.contains(&*meta.ty)
                    && endpoint_complete(&meta.from_ty)
                    && endpoint_complete(&meta.to_ty)
                {
                    r.deleted.push(key.to_owned());
                } else {
                    r.kept += 1;
                }
            }
        },
    )?;
    Ok(out)
}

/// Where a key was found by [`merge`].
enum Side<'a, 'k, T: 'a, M> {
    Both(&'a T, M),
    Collected(&'a T),
    Stored(&'k str, M),
}

/// Walks two key-ordered sequences together, calling `visit` once per key.
fn merge<'a, T: 'a, M, X: From<OutOfOrder>>(
    collected: impl Iterator<Item = (&'a str, &'a T)>,
    stored: impl IntoIterator<Item = Result<(String, M), X>>,
    mut visit: impl FnMut(Side<'a, '_, T, M>),
) -> Result<(), X> {
    let mut collected = collected.peekable();
    let mut previous: Option<String> = None;
    for item in stored {
        let (key, meta) = item?;
        if let Some(previous) = previous.take_if(|p| p.as_str() >= key.as_str()) {
            return Err(OutOfOrder { previous, key }.into());
        }
        while let Some((_, c)) = collected.next_if(|(k, _)| *k < key.as_str()) {
            visit(Side::Collected(c));
        }
        match collected.next_if(|(k, _)| *k == key.as_str()) {
            Some((_, c)) => visit(Side::Both(c, meta)),
            None => visit(Side::Stored(&key, meta)),
        }
        previous = Some(key);
    }
    collected.for_each(|(_, c)| visit(Side::Collected(c)));
    Ok(())
}

/// The fields that differ between two property bags (or two flat graph
/// objects, which also reports `_type`, `_class` and endpoint changes). An
/// absent field reads as null, so absent → null is no change.
pub fn field_changes(old: &Properties, new: &Properties) -> BTreeMap<String, FieldChange> {
    let null = Value::Null;
    let mut changes = BTreeMap::new();
    let names: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    for name in names {
        let before = old.get(name).unwrap_or(&null);
        let after = new.get(name).unwrap_or(&null);
        if before != after {
            changes.insert(
                name.clone(),
                FieldChange {
                    old: before.clone(),
                    new: after.clone(),
                },
            );
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn props(value: Value) -> Properties {
        match value {
            Value::Object(map) => map,
            _ => Properties::new(),
        }
    }

    #[test]
    fn stored_keys_out_of_order_are_an_error_not_a_wrong_plan() {
        let meta = || StoredEntityMeta {
            ty: Arc::from("t"),
            hash: 0,
        };
        let stored = vec![
            Ok::<_, OutOfOrder>(("key-b".to_owned(), meta())),
            Ok(("key-a".to_owned(), meta())),
        ];
        let collected = Collected::new();
        let err = plan_sorted(stored, Vec::new(), &collected, &BTreeSet::new())
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some(
                "the stored graph is not in key order (\"key-a\" came after \"key-b\"); run PRAGMA integrity_check on the database"
            )
        );
    }

    #[test]
    fn field_changes_treats_absent_as_null_and_reports_meta_fields() {
        let old = props(json!({"_class": "User", "a": 1, "b": null, "c": "x"}));
        let new = props(json!({"_class": "Person", "a": 2, "c": "x", "d": true}));
        let changes = field_changes(&old, &new);
        let rendered: Vec<String> = changes
            .iter()
            .map(|(k, c)| format!("{k}: {} -> {}", c.old, c.new))
            .collect();
        assert_eq!(
            rendered,
            [
                r#"_class: "User" -> "Person""#,
                "a: 1 -> 2",
                "d: null -> true"
            ]
        );
    }

    #[test]
    fn creates_are_cut_into_runs_between_stored_keys_and_at_the_batch_size() {
        use crate::graph::Entity;
        let mut collected = Collected::new();
        for n in [1, 2, 3, 5, 6, 7, 8, 9] {
            let key = format!("key-{n:04}");
            collected
                .insert_entity(Entity::new(key, "t", "C"))
                .expect("insert");
        }
        let stored = [4, 10].map(|n| {
            let meta = StoredEntityMeta {
                ty: Arc::from("t"),
                hash: 0,
            };
            Ok::<_, OutOfOrder>((format!("key-{n:04}"), meta))
        });
        let plan = plan_sorted(stored, Vec::new(), &collected, &BTreeSet::new()).expect("plan");
        assert_eq!(plan.entities.created_runs, [0, 3]);
        let keys = |max: usize| -> Vec<Vec<String>> {
            plan.entities
                .created_batches(max)
                .iter()
                .map(|b| b.iter().map(|e| e.key[4..].to_owned()).collect())
                .collect()
        };
        assert_eq!(
            keys(10),
            [
                vec!["0001", "0002", "0003"],
                vec!["0005", "0006", "0007", "0008", "0009"]
            ]
        );
        assert_eq!(
            keys(2),
            [
                vec!["0001", "0002"],
                vec!["0003"],
                vec!["0005", "0006"],
                vec!["0007", "0008"],
                vec!["0009"]
            ]
        );
    }
}
