//! The graph collected by one run: validated objects in a compact form
//! (canonical JSON properties plus a 64-bit content hash), keyed for
//! deterministic, input-order-independent iteration.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::Value;

use super::{Entity, Properties, Relationship, entity_object, relationship_object};

/// An entity that passed validation, in the form the diff and the store use.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectedEntity {
    /// Shared with the endpoints of the relationships that point at it.
    pub key: Arc<str>,
    pub ty: Arc<str>,
    pub class: Arc<str>,
    /// Canonical (sorted-key) JSON object of the properties.
    pub props: Box<str>,
    pub hash: u64,
}

/// A relationship that passed validation.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectedRelationship {
    pub key: Box<str>,
    pub ty: Arc<str>,
    pub class: Arc<str>,
    /// The endpoint entity's own key when it was collected (one allocation).
    pub from_key: Arc<str>,
    pub to_key: Arc<str>,
    /// The endpoint entities' `_type`s as the relationship was added, so
    /// writing it never looks its endpoints up again.
    pub endpoint_types: Arc<EndpointTypes>,
    pub props: Box<str>,
    pub hash: u64,
}

/// The `_type`s of a relationship's endpoints when it was collected (None:
/// not in the graph then; validation makes sure they are). Shared: a run has
/// a handful of pairs, and a million relationships hold a pointer each.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct EndpointTypes {
    pub from: Option<Arc<str>>,
    pub to: Option<Arc<str>>,
}

/// Two objects with the same key in one run: the first is kept, both are reported.
#[derive(Debug, Clone, PartialEq)]
pub struct Duplicate {
    pub key: String,
    pub kept: Value,
    pub rejected: Value,
}

impl CollectedEntity {
    pub fn properties(&self) -> Properties {
        parse_props(&self.props)
    }

    pub fn to_object(&self) -> Value {
        entity_object(&self.key, &self.ty, &self.class, &self.properties())
    }
}

impl CollectedRelationship {
    pub fn properties(&self) -> Properties {
        parse_props(&self.props)
    }

    pub fn to_object(&self) -> Value {
        relationship_object(
            &self.key,
            &self.ty,
            &self.class,
            &self.from_key,
            &self.to_key,
            &self.properties(),
        )
    }
}

/// Properties were serialised by us from a `Map`, so they always parse back.
fn parse_props(json: &str) -> Properties {
    serde_json::from_str(json).unwrap_or_default()
}

/// The content hash of an object: type, class, endpoints and canonical properties.
pub fn content_hash(parts: &[&str]) -> u64 {
    let mut hasher = twox_hash::XxHash3_64::with_seed(0);
    for part in parts {
        std::hash::Hasher::write(&mut hasher, part.as_bytes());
        std::hash::Hasher::write(&mut hasher, &[0]);
    }
    std::hash::Hasher::finish(&hasher)
}

/// An object stored in a set under its own key: a million-object run keeps
/// each key once, not once in the map and again in the value.
#[derive(Debug)]
struct ByKey<T>(T);

trait Keyed {
    fn key(&self) -> &str;
}

impl Keyed for CollectedEntity {
    fn key(&self) -> &str {
        &self.key
    }
}

impl Keyed for CollectedRelationship {
    fn key(&self) -> &str {
        &self.key
    }
}

impl<T: Keyed> std::borrow::Borrow<str> for ByKey<T> {
    fn borrow(&self) -> &str {
        self.0.key()
    }
}

impl<T: Keyed> PartialEq for ByKey<T> {
    fn eq(&self, other: &Self) -> bool {
        self.0.key() == other.0.key()
    }
}

impl<T: Keyed> Eq for ByKey<T> {}

impl<T: Keyed> PartialOrd for ByKey<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl<T: Keyed> Ord for ByKey<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.key().cmp(other.0.key())
    }
}

/// The graph collected in one run. Iteration is in key order whatever the
/// order objects were added in.
#[derive(Debug, Default)]
pub struct Collected {
    entities: BTreeSet<ByKey<CollectedEntity>>,
    relationships: BTreeSet<ByKey<CollectedRelationship>>,
    names: BTreeMap<String, Arc<str>>,
    endpoint_types: BTreeSet<Arc<EndpointTypes>>,
}

impl Collected {
    pub fn new() -> Self {
        Self::default()
    }

    fn intern(&mut self, name: &str) -> Arc<str> {
        if let Some(interned) = self.names.get(name) {
            return interned.clone();
        }
        let interned: Arc<str> = Arc::from(name);
        self.names.insert(name.to_owned(), interned.clone());
        interned
    }

    /// The collected entity's key and type if there is one, else a new
    /// allocation of the key.
    fn endpoint(&self, key: &str) -> (Arc<str>, Option<Arc<str>>) {
        match self.entities.get(key) {
            Some(entity) => (entity.0.key.clone(), Some(entity.0.ty.clone())),
            None => (Arc::from(key), None),
        }
    }

    fn intern_endpoint_types(&mut self, types: EndpointTypes) -> Arc<EndpointTypes> {
        if let Some(interned) = self.endpoint_types.get(&types) {
            return interned.clone();
        }
        let interned = Arc::new(types);
        self.endpoint_types.insert(interned.clone());
        interned
    }

    /// Adds an already-validated entity. A key seen before keeps the first
    /// version and returns the duplicate report.
    pub fn insert_entity(&mut self, mut entity: Entity) -> Result<(), Duplicate> {
        // Absent and null mean the same in a flat graph; keep one spelling.
        entity.properties.retain(|_, v| !v.is_null());
        let ty = self.intern(&entity.ty);
        let class = self.intern(&entity.class);
        if let Some(existing) = self.entities.get(entity.key.as_str()) {
            return Err(Duplicate {
                key: entity.key.clone(),
                kept: existing.0.to_object(),
                rejected: entity_object(&entity.key, &ty, &class, &entity.properties),
            });
        }
        let props = canonical(&entity.properties);
        let hash = content_hash(&[&entity.ty, &entity.class, &props]);
        self.entities.insert(ByKey(CollectedEntity {
            key: Arc::from(entity.key),
            ty,
            class,
            props,
            hash,
        }));
        Ok(())
    }

    /// Adds an already-validated relationship; duplicates as for entities.
    pub fn insert_relationship(&mut self, mut rel: Relationship) -> Result<(), Duplicate> {
        rel.properties.retain(|_, v| !v.is_null());
        let ty = self.intern(&rel.ty);
        let class = self.intern(&rel.class);
        if let Some(existing) = self.relationships.get(rel.key.as_str()) {
            return Err(Duplicate {
                key: rel.key.clone(),
                kept: existing.0.to_object(),
                rejected: relationship_object(
                    &rel.key,
                    &ty,
                    &class,
                    &rel.from_key,
                    &rel.to_key,
                    &rel.properties,
                ),
            });
        }
        let props = canonical(&rel.properties);
        let hash = content_hash(&[&rel.ty, &rel.class, &rel.from_key, &rel.to_key, &props]);
        let (from_key, from) = self.endpoint(&rel.from_key);
        let (to_key, to) = self.endpoint(&rel.to_key);
        let endpoint_types = self.intern_endpoint_types(EndpointTypes { from, to });
        self.relationships.insert(ByKey(CollectedRelationship {
            key: rel.key.into_boxed_str(),
            ty,
            class,
            from_key,
            to_key,
            endpoint_types,
            props,
            hash,
        }));
        Ok(())
    }

    pub fn entity(&self, key: &str) -> Option<&CollectedEntity> {
        self.entities.get(key).map(|e| &e.0)
    }

    pub fn contains_entity(&self, key: &str) -> bool {
        self.entities.contains(key)
    }

    pub fn relationship(&self, key: &str) -> Option<&CollectedRelationship> {
        self.relationships.get(key).map(|r| &r.0)
    }

    pub fn entities(&self) -> impl Iterator<Item = &CollectedEntity> {
        self.entities.iter().map(|e| &e.0)
    }

    pub fn relationships(&self) -> impl Iterator<Item = &CollectedRelationship> {
        self.relationships.iter().map(|r| &r.0)
    }

    pub fn entity_count(&self) -> usize {
        self.entities.len()
    }

    pub fn relationship_count(&self) -> usize {
        self.relationships.len()
    }
}

/// Canonical JSON of a property map (keys sorted because `Map` is a `BTreeMap`).
pub fn canonical(properties: &Properties) -> Box<str> {
    // Serialising a map of JSON values cannot fail.
    serde_json::to_string(properties)
        .unwrap_or_else(|_| "{}".to_owned())
        .into_boxed_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keeps_first_and_reports_both() {
        let mut graph = Collected::new();
        let first = Entity::new("circleci_user:1", "circleci_user", "User").with("name", "a");
        let second = Entity::new("circleci_user:1", "circleci_user", "User").with("name", "b");
        graph.insert_entity(first).expect("first insert");
        let dup = graph
            .insert_entity(second)
            .expect_err("second is a duplicate");
        assert_eq!(dup.kept["name"], "a");
        assert_eq!(dup.rejected["name"], "b");
        assert_eq!(graph.entity_count(), 1);
        assert_eq!(
            graph
                .entity("circleci_user:1")
                .map(|e| e.properties()["name"].clone()),
            Some("a".into())
        );
    }

    #[test]
    fn hash_ignores_property_insertion_order() {
        let mut a = Collected::new();
        let mut b = Collected::new();
        a.insert_entity(
            Entity::new("k1234567890", "t_x", "C")
                .with("x", 1)
                .with("y", 2),
        )
        .expect("a");
        b.insert_entity(
            Entity::new("k1234567890", "t_x", "C")
                .with("y", 2)
                .with("x", 1),
        )
        .expect("b");
        assert_eq!(
            a.entity("k1234567890").map(|e| e.hash),
            b.entity("k1234567890").map(|e| e.hash)
        );
    }
}
