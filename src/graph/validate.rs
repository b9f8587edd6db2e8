//! Validation of what sources emit against graph-schema/ and JupiterOne's
//! graph-object rules. A bad object becomes a [`Problem`]; nothing panics.

use std::fmt;
use std::sync::OnceLock;

use regex::Regex;
use serde::Serialize;
use serde_json::Value;

use super::schema::{PropertyType, Scalar, Schema};
use super::{Entity, Relationship};

/// A recorded reason an object was not stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Problem {
    /// `_key` of the object at fault (empty when it has none).
    pub key: String,
    #[serde(rename = "_type")]
    pub ty: String,
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?}: {}", self.ty, self.key, self.reason)
    }
}

const MIN_KEY_LEN: usize = 10;

fn name_pattern() -> &'static Regex {
    static PATTERN: OnceLock<Regex> = OnceLock::new();
    PATTERN.get_or_init(|| {
        #[allow(clippy::unwrap_used)] // a constant pattern
        Regex::new(r"^(_|tag\.)?[A-Za-z0-9. -]+$").unwrap()
    })
}

/// JupiterOne's rule for property names.
pub fn valid_property_name(name: &str) -> bool {
    name_pattern().is_match(name)
}

impl Schema {
    /// Checks an entity; every fault is reported in one problem's reason.
    pub fn validate_entity(&self, entity: &Entity) -> Result<(), Problem> {
        let problem = |reason: String| Problem {
            key: entity.key.clone(),
            ty: entity.ty.clone(),
            reason,
        };
        let Some(def) = self.entities.get(&entity.ty) else {
            return Err(problem(format!(
                "unknown _type {:?}; declare it in graph-schema/",
                entity.ty
            )));
        };
        let mut faults = Vec::new();
        if entity.class != def.class {
            faults.push(format!(
                "_class is {:?} but {} is {:?}",
                entity.class, entity.ty, def.class
            ));
        }
        check_key(&entity.key, &mut faults);
        check_flat(&entity.properties, &mut faults);
        for name in self.required_properties(def) {
            match entity.properties.get(name) {
                None | Some(Value::Null) => {
                    faults.push(format!("required property {name:?} is missing"))
                }
                Some(_) => {}
            }
        }
        for (name, value) in &entity.properties {
            if let Some(ty) = self.property_type(def, name) {
                if !value.is_null() && !matches_type(value, ty) {
                    faults.push(format!(
                        "property {name:?} should be {ty} but is {}",
                        describe(value)
                    ));
                }
            } else if name.starts_with("tag.")
                && !matches!(
                    value,
                    Value::String(_) | Value::Number(_) | Value::Bool(_) | Value::Null
                )
            {
                faults.push(format!("tag {name:?} must be a string, number or boolean"));
            }
        }
        if faults.is_empty() {
            Ok(())
        } else {
            Err(problem(faults.join("; ")))
        }
    }

    /// Checks a relationship; `endpoint_type` tells the `_type` of an entity
    /// key if that entity is in the graph.
    pub fn validate_relationship<'a>(
        &self,
        rel: &Relationship,
        endpoint_type: impl Fn(&str) -> Option<&'a str>,
    ) -> Result<(), Problem> {
        let problem = |reason: String| Problem {
            key: rel.key.clone(),
            ty: rel.ty.clone(),
            reason,
        };
        let Some(def) = self.relationships.get(&rel.ty) else {
            return Err(problem(format!(
                "unknown relationship _type {:?}; declare it in graph-schema/",
                rel.ty
            )));
        };
        let mut faults = Vec::new();
        if rel.class != def.class {
            faults.push(format!(
                "_class is {:?} but {} is {:?}",
                rel.class, rel.ty, def.class
            ));
        }
        check_key(&rel.key, &mut faults);
        check_flat(&rel.properties, &mut faults);
        for (end, key, expected) in [
            ("from", &rel.from_key, &def.from),
            ("to", &rel.to_key, &def.to),
        ] {
            match endpoint_type(key) {
                None => faults.push(format!("{end} entity {key:?} is not in the graph")),
                Some(actual) if actual != expected => faults.push(format!(
                    "{end} entity {key:?} is a {actual}, expected {expected}"
                )),
                Some(_) => {}
            }
        }
        if faults.is_empty() {
            Ok(())
        } else {
            Err(problem(faults.join("; ")))
        }
    }
}

fn check_key(key: &str, faults: &mut Vec<String>) {
    if key.chars().count() < MIN_KEY_LEN {
        faults.push(format!(
            "_key {key:?} is shorter than {MIN_KEY_LEN} characters"
        ));
    }
}

fn check_flat(properties: &super::Properties, faults: &mut Vec<String>) {
    for (name, value) in properties {
        if name.starts_with('_') {
            faults.push(format!("property {name:?} uses the reserved prefix \"_\""));
        } else if !valid_property_name(name) {
            faults.push(format!(
                "property name {name:?} does not match ^(_|tag\\.)?[A-Za-z0-9. -]+$"
            ));
        }
        let nested = match value {
            Value::Object(_) => Some("an object"),
            Value::Array(items) => items.iter().find_map(|v| match v {
                Value::Object(_) => Some("an array containing an object"),
                Value::Array(_) => Some("an array containing an array"),
                _ => None,
            }),
            _ => None,
        };
        if let Some(nested) = nested {
            faults.push(format!(
                "property {name:?} is nested ({nested}); values must be flat: string, number, boolean, null or an array of those"
            ));
        }
    }
}

fn matches_scalar(value: &Value, scalar: Scalar) -> bool {
    match scalar {
        Scalar::String => value.is_string(),
        Scalar::Number => value.is_number(),
        Scalar::Integer => value.is_i64() || value.is_u64(),
        Scalar::Boolean => value.is_boolean(),
    }
}

fn matches_type(value: &Value, ty: PropertyType) -> bool {
    match ty {
        PropertyType::String => value.is_string(),
        PropertyType::Number => value.is_number(),
        PropertyType::Integer => value.is_i64() || value.is_u64(),
        PropertyType::Boolean => value.is_boolean(),
        PropertyType::Array(None) => value.is_array(),
        PropertyType::Array(Some(scalar)) => value
            .as_array()
            .is_some_and(|items| items.iter().all(|v| matches_scalar(v, scalar))),
    }
}

/// "a string", "an object", …: what kind of JSON value this is, for messages.
pub fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
