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

/// Diffs the collected graph against the stored one. Unchanged means an
/// equal content hash (which covers type, class, endpoints and properties);
/// the result does not depend on the order objects were collected in.
pub fn plan<'a>(
    stored: &StoredIndex,
    collected: &'a Collected,
    complete: &BTreeSet<String>,
) -> Plan<'a> {
    let mut out = Plan::default();

    let mut matched = 0usize;
    for entity in collected.entities() {
        match stored.entities.get(&entity.key) {
            None => out.entities.created.push(entity),
            Some(meta) => {
                matched += 1;
                if meta.hash != entity.hash || *meta.ty != *entity.ty {
                    out.entities.updated.push(entity);
                } else {
                    out.entities.unchanged += 1;
                    if !complete.contains(&*entity.ty) {
                        out.entities.seen.push(entity);
                    }
                }
            }
        }
    }
    // Every stored key was collected: nothing can be deleted, skip the scan.
    if matched < stored.entities.len() {
        let collected_keys = KeySet::new(stored.entities.len(), || {
            collected.entities().map(|e| e.key.as_str())
        });
        let is_collected =
            |key: &str| collected_keys.contains(key, || collected.contains_entity(key));
        for (key, meta) in &stored.entities {
            if is_collected(key) {
                continue;
            }
            if complete.contains(&*meta.ty) {
                out.entities.deleted.push(key.clone());
            } else {
                out.entities.kept += 1;
            }
        }
        out.entities.deleted.sort_unstable();
    }

    let mut matched = 0usize;
    for rel in collected.relationships() {
        match stored.relationships.get(&rel.key) {
            None => out.relationships.created.push(rel),
            Some(meta) => {
                matched += 1;
                if meta.hash != rel.hash || *meta.ty != *rel.ty {
                    out.relationships.updated.push(rel);
                } else {
                    out.relationships.unchanged += 1;
                    if !complete.contains(&*rel.ty) {
                        out.relationships.seen.push(rel);
                    }
                }
            }
        }
    }
    if matched < stored.relationships.len() {
        let endpoint_complete = |ty: &str| ty.is_empty() || complete.contains(ty);
        let collected_keys = KeySet::new(stored.relationships.len(), || {
            collected.relationships().map(|r| r.key.as_str())
        });
        let is_collected =
            |key: &str| collected_keys.contains(key, || collected.relationship(key).is_some());
        for (key, meta) in &stored.relationships {
            if is_collected(key) {
                continue;
            }
            if complete.contains(&*meta.ty)
                && endpoint_complete(&meta.from_ty)
                && endpoint_complete(&meta.to_ty)
            {
                out.relationships.deleted.push(key.clone());
            } else {
                out.relationships.kept += 1;
            }
        }
        out.relationships.deleted.sort_unstable();
    }
    out
}

/// The collected keys as a hash set when many stored keys are checked
/// against them: a B-tree walk per stored key was most of the time of a
/// million-row re-ingest with deletions.
struct KeySet<'a>(Option<HashSet<&'a str>>);

impl<'a> KeySet<'a> {
    const BULK: usize = 1024;

    fn new<I: Iterator<Item = &'a str>>(checks: usize, keys: impl FnOnce() -> I) -> Self {
        KeySet((checks > Self::BULK).then(|| keys().collect()))
    }

    fn contains(&self, key: &str, otherwise: impl FnOnce() -> bool) -> bool {
        match &self.0 {
            Some(set) => set.contains(key),
            None => otherwise(),
        }
    }
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
}
