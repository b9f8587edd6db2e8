//! Export output validated against JupiterOne's data-model class schemas
//! (shared/reference/jupiterone-data-model, beside the checkout).

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::{Value, json};

use super::*;

/// JupiterOne's class schema for `class`, with `GraphObject` and `Entity`
/// inlined as definitions (their files refer to each other as `#Entity`).
fn jupiterone_validator(class: &str) -> jsonschema::Validator {
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/reference/jupiterone-data-model");
    assert!(
        dir.is_dir(),
        "{} is missing: the JupiterOne data-model schemas must sit in shared/ beside the checkout",
        dir.display()
    );
    let mut definitions = serde_json::Map::new();
    for name in ["GraphObject", "Entity", class] {
        let file = dir.join(format!("{name}.json"));
        let text =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let text = text.replace("\"$ref\": \"#", "\"$ref\": \"#/definitions/");
        let mut schema: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        if let Some(object) = schema.as_object_mut() {
            object.remove("$id");
            object.remove("$schema");
        }
        definitions.insert(name.to_owned(), schema);
    }
    let document = json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "definitions": definitions,
        "$ref": format!("#/definitions/{class}"),
    });
    jsonschema::validator_for(&document).unwrap_or_else(|e| panic!("schema for {class}: {e}"))
}

#[test]
fn exported_entities_validate_against_jupiterone_class_schemas() {
    let mut store = Store::open_in_memory().expect("open");
    sync(&mut store, &collect(&circleci(2, 0)), &all_types()).expect("sync");
    let (entities, relationships) = export(&store);
    let mut classes = BTreeSet::new();
    for entity in &entities {
        let class = entity["_class"].as_str().expect("_class is a string");
        classes.insert(class.to_owned());
        let validator = jupiterone_validator(class);
        let errors: Vec<String> = validator
            .iter_errors(entity)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{entity} is not a valid {class}:\n{}",
            errors.join("\n")
        );
    }
    let expected: BTreeSet<String> = [
        "Account",
        "Configuration",
        "Group",
        "Repository",
        "Task",
        "User",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(classes, expected);

    // The check has teeth: an entity without displayName is refused.
    let mut broken = entities[0].clone();
    broken.as_object_mut().map(|o| o.remove("displayName"));
    let class = broken["_class"].as_str().unwrap_or_default().to_owned();
    assert!(!jupiterone_validator(&class).is_valid(&broken));

    // Relationships are graph objects (key, type and class).
    let graph_object = jupiterone_validator("GraphObject");
    for rel in &relationships {
        assert!(
            graph_object.is_valid(rel),
            "{rel} is not a valid graph object"
        );
    }
}
