//! The graph collected by one run: validated objects in a compact form
//! (canonical JSON properties plus a 64-bit content hash), keyed for
//! deterministic, input-order-independent iteration.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::sync::Arc;

use serde_json::Value;

use super::{Entity, Properties, Relationship, entity_object, relationship_object};

/// An entity that passed validation, in the form the diff and the store use.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectedEntity {
    pub key: String,
    pub ty: Arc<str>,
    pub class: Arc<str>,
    /// Canonical (sorted-key) JSON object of the properties.
    pub props: Box<str>,
    pub hash: u64,
}

/// A relationship that passed validation.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectedRelationship {
    pub key: String,
    pub ty: Arc<str>,
    pub class: Arc<str>,
    pub from_key: String,
    pub to_key: String,
    pub props: Box<str>,
    pub hash: u64,
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

/// The graph collected in one run. Iteration is in key order whatever the
/// order objects were added in.
#[derive(Debug, Default)]
pub struct Collected {
    entities: BTreeMap<String, CollectedEntity>,
    relationships: BTreeMap<String, CollectedRelationship>,
    names: BTreeMap<String, Arc<str>>,
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

    /// Adds an already-validated entity. A key seen before keeps the first
    /// version and returns the duplicate report.
    pub fn insert_entity(&mut self, mut entity: Entity) -> Result<(), Duplicate> {
        // Absent and null mean the same in a flat graph; keep one spelling.
        entity.properties.retain(|_, v| !v.is_null());
        let props = canonical(&entity.properties);
        let hash = content_hash(&[&entity.ty, &entity.class, &props]);
        let ty = self.intern(&entity.ty);
        let class = self.intern(&entity.class);
        match self.entities.entry(entity.key) {
            Entry::Occupied(existing) => Err(Duplicate {
                key: existing.key().clone(),
                kept: existing.get().to_object(),
                rejected: entity_object(existing.key(), &ty, &class, &entity.properties),
            }),
            Entry::Vacant(slot) => {
                let key = slot.key().clone();
                slot.insert(CollectedEntity {
                    key,
                    ty,
                    class,
                    props,
                    hash,
                });
                Ok(())
            }
        }
    }

    /// Adds an already-validated relationship; duplicates as for entities.
    pub fn insert_relationship(&mut self, mut rel: Relationship) -> Result<(), Duplicate> {
        rel.properties.retain(|_, v| !v.is_null());
        let props = canonical(&rel.properties);
        let hash = content_hash(&[&rel.ty, &rel.class, &rel.from_key, &rel.to_key, &props]);
        let ty = self.intern(&rel.ty);
        let class = self.intern(&rel.class);
        match self.relationships.entry(rel.key) {
            Entry::Occupied(existing) => Err(Duplicate {
                key: existing.key().clone(),
                kept: existing.get().to_object(),
                rejected: relationship_object(
                    existing.key(),
                    &ty,
                    &class,
                    &rel.from_key,
                    &rel.to_key,
                    &rel.properties,
                ),
            }),
            Entry::Vacant(slot) => {
                let key = slot.key().clone();
                slot.insert(CollectedRelationship {
                    key,
                    ty,
                    class,
                    from_key: rel.from_key,
                    to_key: rel.to_key,
                    props,
                    hash,
                });
                Ok(())
            }
        }
    }

    pub fn entity(&self, key: &str) -> Option<&CollectedEntity> {
        self.entities.get(key)
    }

    pub fn contains_entity(&self, key: &str) -> bool {
        self.entities.contains_key(key)
    }

    pub fn relationship(&self, key: &str) -> Option<&CollectedRelationship> {
        self.relationships.get(key)
    }

    pub fn entities(&self) -> impl Iterator<Item = &CollectedEntity> {
        self.entities.values()
    }

    pub fn relationships(&self) -> impl Iterator<Item = &CollectedRelationship> {
        self.relationships.values()
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
