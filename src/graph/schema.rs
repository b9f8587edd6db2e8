//! graph-schema/: our entity classes, each source's entity and relationship
//! types. Data files (YAML) embedded at build time and checked at start; a
//! broken file is refused with the file and the path to the fault.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use include_dir::{Dir, include_dir};
use serde::Deserialize;

static EMBEDDED: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/graph-schema");

/// Type of a declared property.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropertyType {
    String,
    Number,
    Integer,
    Boolean,
    /// An array of flat values of the given element type (`None`: any scalar).
    Array(Option<Scalar>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scalar {
    String,
    Number,
    Integer,
    Boolean,
}

impl PropertyType {
    fn parse(text: &str) -> Option<Self> {
        let scalar = |s: &str| match s {
            "string" => Some(Scalar::String),
            "number" => Some(Scalar::Number),
            "integer" => Some(Scalar::Integer),
            "boolean" => Some(Scalar::Boolean),
            _ => None,
        };
        match text {
            "array" => Some(PropertyType::Array(None)),
            _ => match text.strip_suffix("[]") {
                Some(element) => scalar(element).map(|s| PropertyType::Array(Some(s))),
                None => scalar(text).map(|s| match s {
                    Scalar::String => PropertyType::String,
                    Scalar::Number => PropertyType::Number,
                    Scalar::Integer => PropertyType::Integer,
                    Scalar::Boolean => PropertyType::Boolean,
                }),
            },
        }
    }
}

impl fmt::Display for PropertyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scalar = |s: &Scalar| match s {
            Scalar::String => "string",
            Scalar::Number => "number",
            Scalar::Integer => "integer",
            Scalar::Boolean => "boolean",
        };
        match self {
            PropertyType::String => f.write_str("string"),
            PropertyType::Number => f.write_str("number"),
            PropertyType::Integer => f.write_str("integer"),
            PropertyType::Boolean => f.write_str("boolean"),
            PropertyType::Array(None) => f.write_str("array"),
            PropertyType::Array(Some(s)) => write!(f, "{}[]", scalar(s)),
        }
    }
}

/// An entity class (Account, User, …): properties and which are required.
/// Every class also has the properties of the base class `Entity`.
#[derive(Debug, Clone, Default)]
pub struct ClassDef {
    pub required: BTreeSet<String>,
    pub properties: BTreeMap<String, PropertyType>,
}

/// A source's entity type: its class and its own properties.
#[derive(Debug, Clone)]
pub struct EntityTypeDef {
    pub ty: String,
    pub class: String,
    pub source: String,
    pub required: BTreeSet<String>,
    pub properties: BTreeMap<String, PropertyType>,
    /// Append-only types (history such as pull requests) are never deleted from.
    pub append_only: bool,
}

/// A relationship type: `from` `class` `to`.
#[derive(Debug, Clone)]
pub struct RelationshipTypeDef {
    pub ty: String,
    pub class: String,
    pub from: String,
    pub to: String,
    pub source: String,
}

/// The whole schema: classes plus every source's types.
#[derive(Debug, Clone, Default)]
pub struct Schema {
    pub classes: BTreeMap<String, ClassDef>,
    pub entities: BTreeMap<String, EntityTypeDef>,
    pub relationships: BTreeMap<String, RelationshipTypeDef>,
}

/// Every fault found in the schema files, each with its file and path.
#[derive(Debug, thiserror::Error)]
#[error("graph-schema is broken:\n{}", .faults.join("\n"))]
pub struct SchemaError {
    pub faults: Vec<String>,
}

const VERBS: &[&str] = &[
    "HAS", "USES", "OWNS", "ALLOWS", "CONTAINS", "MANAGES", "TRIGGERS", "CREATED", "OPENED",
    "APPROVED", "DEPLOYS", "IS", "ASSIGNED", "DENIES", "PROTECTS", "EXPLOITS", "CONNECTS",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    classes: BTreeMap<String, RawClass>,
    #[serde(default)]
    entities: BTreeMap<String, RawEntityType>,
    #[serde(default)]
    relationships: Vec<RawRelationshipType>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClass {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    required: Vec<String>,
    #[serde(default)]
    properties: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntityType {
    class: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    required: Vec<String>,
    #[serde(default)]
    properties: BTreeMap<String, String>,
    #[serde(default)]
    append_only: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRelationshipType {
    #[serde(rename = "type")]
    ty: String,
    from: String,
    class: String,
    to: String,
}

impl Schema {
    /// The schema compiled into the binary from graph-schema/.
    pub fn embedded() -> Result<Schema, SchemaError> {
        let mut files: Vec<(String, String)> = EMBEDDED
            .files()
            .filter(|f| is_schema_file(f.path()))
            .map(|f| {
                (
                    format!("graph-schema/{}", f.path().display()),
                    f.contents_utf8().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        files.sort();
        Self::from_files(&files)
    }

    /// Loads every `*.yaml` file of a directory (used to check schema edits).
    pub fn load_dir(dir: &Path) -> Result<Schema, SchemaError> {
        let entries = std::fs::read_dir(dir).map_err(|e| SchemaError {
            faults: vec![format!("{}: cannot read the directory: {e}", dir.display())],
        })?;
        let mut files = Vec::new();
        let mut faults = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if !is_schema_file(&path) {
                continue;
            }
            match std::fs::read_to_string(&path) {
                Ok(text) => files.push((path.display().to_string(), text)),
                Err(e) => faults.push(format!("{}: cannot read: {e}", path.display())),
            }
        }
        if !faults.is_empty() {
            return Err(SchemaError { faults });
        }
        files.sort();
        Self::from_files(&files)
    }

    /// Parses and checks named file contents, reporting every fault at once.
    pub fn from_files(files: &[(String, String)]) -> Result<Schema, SchemaError> {
        let mut faults = Vec::new();
        let mut parsed = Vec::new();
        for (name, text) in files {
            match serde_saphyr::from_str::<RawFile>(text) {
                Ok(raw) => parsed.push((name.as_str(), raw)),
                Err(e) => faults.push(format!(
                    "{name}: {}",
                    one_line(&e.without_snippet().to_string())
                )),
            }
        }
        let all_parsed = faults.is_empty();
        let mut schema = Schema::default();
        // Where each name was first defined, to name both files of a clash.
        let mut defined_in: BTreeMap<String, &str> = BTreeMap::new();
        // Classes first: entity types refer to them from any file.
        for (file, raw) in &parsed {
            for (class, def) in &raw.classes {
                let path = format!("{file}: classes.{class}");
                let _ = &def.description;
                if let Some(first) = defined_in.get(&format!("class {class}")) {
                    faults.push(format!("{path}: class is defined twice (first in {first})"));
                    continue;
                }
                defined_in.insert(format!("class {class}"), file);
                let properties = parse_properties(&path, &def.properties, &mut faults);
                schema.classes.insert(
                    class.clone(),
                    ClassDef {
                        required: def.required.iter().cloned().collect(),
                        properties,
                    },
                );
            }
        }
        // A file that did not parse may be the one defining Entity.
        if all_parsed && !schema.classes.contains_key("Entity") {
            faults.push("graph-schema: no file defines the base class Entity".to_owned());
        }
        for (class, def) in &schema.classes {
            let file = defined_in
                .get(&format!("class {class}"))
                .copied()
                .unwrap_or("graph-schema");
            for name in &def.required {
                if !def.properties.contains_key(name) && !base_property(&schema, name) {
                    faults.push(format!(
                        "{file}: classes.{class}.required: {name:?} is not a property of the class"
                    ));
                }
            }
        }
        for (file, raw) in &parsed {
            let source = raw.source.clone().unwrap_or_default();
            if source.is_empty() && (!raw.entities.is_empty() || !raw.relationships.is_empty()) {
                faults.push(format!(
                    "{file}: source: a file declaring entity or relationship types must name its source"
                ));
            }
            for (ty, def) in &raw.entities {
                let path = format!("{file}: entities.{ty}");
                let _ = &def.description;
                if !source.is_empty() && !ty.starts_with(&format!("{source}_")) {
                    faults.push(format!(
                        "{path}: type must start with the source name \"{source}_\""
                    ));
                }
                if let Some(first) = defined_in.get(&format!("entity {ty}")) {
                    faults.push(format!("{path}: type is defined twice (first in {first})"));
                    continue;
                }
                defined_in.insert(format!("entity {ty}"), file);
                if !schema.classes.contains_key(&def.class) {
                    faults.push(format!(
                        "{path}.class: {:?} is not a class; define it in graph-schema/classes.yaml or use one of {}",
                        def.class,
                        schema.classes.keys().cloned().collect::<Vec<_>>().join(", ")
                    ));
                }
                let properties = parse_properties(&path, &def.properties, &mut faults);
                for name in &def.required {
                    if !properties.contains_key(name) && !class_property(&schema, &def.class, name)
                    {
                        faults.push(format!(
                            "{path}.required: {name:?} is not declared under properties"
                        ));
                    }
                }
                schema.entities.insert(
                    ty.clone(),
                    EntityTypeDef {
                        ty: ty.clone(),
                        class: def.class.clone(),
                        source: source.clone(),
                        required: def.required.iter().cloned().collect(),
                        properties,
                        append_only: def.append_only,
                    },
                );
            }
        }
        for (file, raw) in &parsed {
            let source = raw.source.clone().unwrap_or_default();
            for (i, def) in raw.relationships.iter().enumerate() {
                let path = format!("{file}: relationships[{i}]");
                if !VERBS.contains(&def.class.as_str()) {
                    faults.push(format!(
                        "{path}.class: {:?} is not a relationship class; use one of {}",
                        def.class,
                        VERBS.join(", ")
                    ));
                }
                for (field, ty) in [("from", &def.from), ("to", &def.to)] {
                    if !schema.entities.contains_key(ty) {
                        faults.push(format!(
                            "{path}.{field}: {ty:?} is not a defined entity type"
                        ));
                    }
                }
                let expected = super::relationship_type(&def.from, &def.class, &def.to);
                if def.ty != expected {
                    faults.push(format!(
                        "{path}.type: {:?} does not follow <from>_<class>_<to>; expected {expected:?}",
                        def.ty
                    ));
                }
                if let Some(first) = defined_in.get(&format!("relationship {}", def.ty)) {
                    faults.push(format!(
                        "{path}.type: {:?} is defined twice (first in {first})",
                        def.ty
                    ));
                    continue;
                }
                defined_in.insert(format!("relationship {}", def.ty), file);
                schema.relationships.insert(
                    def.ty.clone(),
                    RelationshipTypeDef {
                        ty: def.ty.clone(),
                        class: def.class.clone(),
                        from: def.from.clone(),
                        to: def.to.clone(),
                        source: source.clone(),
                    },
                );
            }
        }
        if faults.is_empty() {
            Ok(schema)
        } else {
            Err(SchemaError { faults })
        }
    }

    /// The entity types a source declares.
    pub fn entity_types_of<'a>(
        &'a self,
        source: &'a str,
    ) -> impl Iterator<Item = &'a EntityTypeDef> {
        self.entities.values().filter(move |d| d.source == source)
    }

    /// The relationship types a source declares.
    pub fn relationship_types_of<'a>(
        &'a self,
        source: &'a str,
    ) -> impl Iterator<Item = &'a RelationshipTypeDef> {
        self.relationships
            .values()
            .filter(move |d| d.source == source)
    }

    /// The declared type of a property on an entity type (type, then class, then base).
    pub fn property_type(&self, def: &EntityTypeDef, name: &str) -> Option<PropertyType> {
        def.properties
            .get(name)
            .or_else(|| {
                self.classes
                    .get(&def.class)
                    .and_then(|c| c.properties.get(name))
            })
            .or_else(|| {
                self.classes
                    .get("Entity")
                    .and_then(|c| c.properties.get(name))
            })
            .copied()
    }

    /// Every property an entity type requires (type, class and base class).
    pub fn required_properties<'a>(
        &'a self,
        def: &'a EntityTypeDef,
    ) -> impl Iterator<Item = &'a String> {
        let class = self.classes.get(&def.class).map(|c| c.required.iter());
        let base = self.classes.get("Entity").map(|c| c.required.iter());
        def.required
            .iter()
            .chain(class.into_iter().flatten())
            .chain(base.into_iter().flatten())
    }
}

fn is_schema_file(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}

fn base_property(schema: &Schema, name: &str) -> bool {
    schema
        .classes
        .get("Entity")
        .is_some_and(|c| c.properties.contains_key(name))
}

fn class_property(schema: &Schema, class: &str, name: &str) -> bool {
    schema
        .classes
        .get(class)
        .is_some_and(|c| c.properties.contains_key(name))
        || base_property(schema, name)
}

fn parse_properties(
    path: &str,
    raw: &BTreeMap<String, String>,
    faults: &mut Vec<String>,
) -> BTreeMap<String, PropertyType> {
    let mut out = BTreeMap::new();
    for (name, text) in raw {
        if !super::validate::valid_property_name(name) {
            faults.push(format!(
                "{path}.properties.{name}: property names must match ^(_|tag\\.)?[A-Za-z0-9. -]+$ (use camelCase)"
            ));
        }
        match PropertyType::parse(text) {
            Some(ty) => {
                out.insert(name.clone(), ty);
            }
            None => faults.push(format!(
                "{path}.properties.{name}: {text:?} is not a property type; use string, number, integer, boolean, array, string[], number[], integer[] or boolean[]"
            )),
        }
    }
    out
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_schema_loads() {
        let schema = Schema::embedded().expect("embedded schema is valid");
        assert_eq!(schema.entity_types_of("circleci").count(), 10);
        assert_eq!(schema.relationship_types_of("circleci").count(), 11);
    }
}
