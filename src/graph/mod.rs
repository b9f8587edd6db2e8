//! The graph model: entities and relationships as sources emit them, plus the
//! collected graph of one run. Pure data; no I/O.

mod collect;
pub mod schema;
mod validate;

pub use collect::{Collected, CollectedEntity, CollectedRelationship, Duplicate, EndpointTypes};
pub use schema::{Schema, SchemaError};
pub use validate::{Problem, describe};

use serde_json::{Map, Value};

/// Flat property bag of a graph object. `serde_json::Map` is a `BTreeMap`,
/// so serialising it gives canonical, sorted JSON (what the content hash needs).
pub type Properties = Map<String, Value>;

/// An entity as a source emits it, before validation.
#[derive(Debug, Clone, PartialEq)]
pub struct Entity {
    pub key: String,
    pub ty: String,
    pub class: String,
    pub properties: Properties,
}

impl Entity {
    pub fn new(key: impl Into<String>, ty: &str, class: &str) -> Self {
        Entity {
            key: key.into(),
            ty: ty.to_owned(),
            class: class.to_owned(),
            properties: Properties::new(),
        }
    }

    /// Sets a property; `None` values become JSON null.
    pub fn set(&mut self, name: &str, value: impl Into<Value>) -> &mut Self {
        self.properties.insert(name.to_owned(), value.into());
        self
    }

    /// Builder form of [`Entity::set`].
    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.set(name, value);
        self
    }
}

/// A relationship as a source emits it, before validation.
#[derive(Debug, Clone, PartialEq)]
pub struct Relationship {
    pub key: String,
    pub ty: String,
    pub class: String,
    pub from_key: String,
    pub to_key: String,
    pub properties: Properties,
}

impl Relationship {
    /// A relationship between two entities with JupiterOne's deterministic key
    /// (`from|verb|to`) and type (`<from type>_<verb>_<to type less its provider prefix>`).
    pub fn between(class: &str, from: &Entity, to: &Entity) -> Self {
        Self::by_keys(class, &from.ty, &from.key, &to.ty, &to.key)
    }

    /// Same as [`Relationship::between`] when only the endpoint keys and types are known.
    pub fn by_keys(class: &str, from_ty: &str, from_key: &str, to_ty: &str, to_key: &str) -> Self {
        let verb = class.to_ascii_lowercase();
        Relationship {
            key: format!("{from_key}|{verb}|{to_key}"),
            ty: relationship_type(from_ty, class, to_ty),
            class: class.to_owned(),
            from_key: from_key.to_owned(),
            to_key: to_key.to_owned(),
            properties: Properties::new(),
        }
    }

    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.properties.insert(name.to_owned(), value.into());
        self
    }
}

/// `circleci_account` + `HAS` + `circleci_user` → `circleci_account_has_user`.
pub fn relationship_type(from_ty: &str, class: &str, to_ty: &str) -> String {
    let verb = class.to_ascii_lowercase();
    let to = match (from_ty.split_once('_'), to_ty.split_once('_')) {
        (Some((from_prefix, _)), Some((to_prefix, rest))) if from_prefix == to_prefix => rest,
        _ => to_ty,
    };
    format!("{from_ty}_{verb}_{to}")
}

/// The flat JupiterOne graph-object form of an entity: `{_key, _type, _class, ...properties}`.
pub fn entity_object(key: &str, ty: &str, class: &str, properties: &Properties) -> Value {
    let mut object = Map::with_capacity(properties.len() + 3);
    object.insert("_key".into(), key.into());
    object.insert("_type".into(), ty.into());
    object.insert("_class".into(), class.into());
    for (name, value) in properties {
        object.insert(name.clone(), value.clone());
    }
    Value::Object(object)
}

/// The flat form of a relationship: entity fields plus `_fromEntityKey` and `_toEntityKey`.
pub fn relationship_object(
    key: &str,
    ty: &str,
    class: &str,
    from_key: &str,
    to_key: &str,
    properties: &Properties,
) -> Value {
    let mut object = entity_object(key, ty, class, properties);
    if let Value::Object(map) = &mut object {
        map.insert("_fromEntityKey".into(), from_key.into());
        map.insert("_toEntityKey".into(), to_key.into());
    }
    object
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relationship_type_strips_shared_provider_prefix() {
        assert_eq!(
            relationship_type("circleci_account", "HAS", "circleci_user"),
            "circleci_account_has_user"
        );
        assert_eq!(
            relationship_type("github_team", "ALLOWS", "circleci_project"),
            "github_team_allows_circleci_project"
        );
    }
}
