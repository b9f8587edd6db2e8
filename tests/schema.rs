//! Data-driven tests of graph-schema/ checking and of object validation:
//! one `check` helper per boundary (schema files → faults, entity or
//! relationship → problem), each fed a table of cases.

use std::collections::BTreeSet;
use std::panic::{AssertUnwindSafe, catch_unwind};

use serde_json::{Value, json};
use sextant::graph::{Entity, Problem, Relationship, Schema};

// ---------------------------------------------------------------------------
// Bad schema files
// ---------------------------------------------------------------------------

const CLASSES_FILE: &str = "graph-schema/classes.yaml";
const DEMO_FILE: &str = "graph-schema/demo.yaml";

/// A valid classes file: the base class and two classes.
const CLASSES: &str = "\
classes:
  Entity:
    required: [name]
    properties:
      name: string
      id: string
  Account:
    properties: {}
  User:
    properties:
      username: string
";

/// A valid types file the bad cases are variations of.
const DEMO: &str = "\
source: demo
entities:
  demo_account:
    class: Account
    required: [id]
  demo_user:
    class: User
    required: [id, username]
    properties:
      avatarUrl: string
relationships:
  - { type: demo_account_has_user, from: demo_account, class: HAS, to: demo_user }
";

/// Loads `files` and asserts the exact fault list (or success when `expected` is empty).
fn check(case: &str, files: &[(&str, &str)], expected: &[&str]) {
    let files: Vec<(String, String)> = files
        .iter()
        .map(|(name, text)| ((*name).to_owned(), (*text).to_owned()))
        .collect();
    match Schema::from_files(&files) {
        Ok(_) => assert!(
            expected.is_empty(),
            "{case}: loaded, expected faults {expected:#?}"
        ),
        Err(e) => assert_eq!(e.faults, expected, "{case}"),
    }
}

/// The classes file plus one types file.
fn with_classes(demo: &'static str) -> Vec<(&'static str, &'static str)> {
    vec![(CLASSES_FILE, CLASSES), (DEMO_FILE, demo)]
}

#[test]
fn the_base_files_are_valid() {
    check("base", &with_classes(DEMO), &[]);
}

#[test]
fn bad_schema_files_are_refused_with_file_and_path() {
    struct Case {
        name: &'static str,
        files: Vec<(&'static str, &'static str)>,
        faults: &'static [&'static str],
    }
    let cases = [
        Case {
            name: "YAML syntax error",
            files: with_classes("source: demo\nentities: {demo_account: {class: Account}\n"),
            faults: &["graph-schema/demo.yaml: unclosed bracket '{' at line 2, column 11"],
        },
        Case {
            // The broken file might have defined Entity: no spurious "no Entity" fault.
            name: "YAML syntax error in the classes file",
            files: vec![(
                CLASSES_FILE,
                "classes:\n  Entity:\n    properties: {name: string\n",
            )],
            faults: &["graph-schema/classes.yaml: unclosed bracket '{' at line 3, column 17"],
        },
        Case {
            name: "entity type given as a list",
            files: with_classes("source: demo\nentities:\n  demo_account: [Account]\n"),
            faults: &["graph-schema/demo.yaml: expected mapping start at line 3, column 17"],
        },
        Case {
            name: "unknown top-level field",
            files: with_classes("source: demo\nentites: {}\n"),
            faults: &[
                "graph-schema/demo.yaml: unknown field `entites`, expected one of source, classes, entities, relationships at line 2, column 1",
            ],
        },
        Case {
            name: "unknown field in an entity type",
            files: with_classes("source: demo\nentities:\n  demo_account:\n    clas: Account\n"),
            faults: &[
                "graph-schema/demo.yaml: unknown field `clas`, expected one of class, description, required, properties, append_only at line 4, column 5",
            ],
        },
        Case {
            name: "unknown field in a relationship",
            files: with_classes(
                "source: demo\nrelationships:\n  - { type: a, from: b, class: HAS, to: c, verb: HAS }\n",
            ),
            faults: &[
                "graph-schema/demo.yaml: unknown field `verb`, expected one of type, from, class, to at line 3, column 44",
            ],
        },
        Case {
            name: "entity class not defined",
            files: with_classes("source: demo\nentities:\n  demo_widget:\n    class: Widget\n"),
            faults: &[
                "graph-schema/demo.yaml: entities.demo_widget.class: \"Widget\" is not a class; define it in graph-schema/classes.yaml or use one of Account, Entity, User",
            ],
        },
        Case {
            name: "bad property type",
            files: with_classes(
                "source: demo\nentities:\n  demo_account:\n    class: Account\n    properties:\n      host: strin\n",
            ),
            faults: &[
                "graph-schema/demo.yaml: entities.demo_account.properties.host: \"strin\" is not a property type; use string, number, integer, boolean, array, string[], number[], integer[] or boolean[]",
            ],
        },
        Case {
            name: "bad array element type",
            files: with_classes(
                "source: demo\nentities:\n  demo_account:\n    class: Account\n    properties:\n      hosts: object[]\n",
            ),
            faults: &[
                "graph-schema/demo.yaml: entities.demo_account.properties.hosts: \"object[]\" is not a property type; use string, number, integer, boolean, array, string[], number[], integer[] or boolean[]",
            ],
        },
        Case {
            name: "property name with an underscore",
            files: with_classes(
                "source: demo\nentities:\n  demo_account:\n    class: Account\n    properties:\n      project_slug: string\n",
            ),
            faults: &[
                "graph-schema/demo.yaml: entities.demo_account.properties.project_slug: property names must match ^(_|tag\\.)?[A-Za-z0-9. -]+$ (use camelCase)",
            ],
        },
        Case {
            name: "property name with invalid characters",
            files: with_classes(
                "source: demo\nentities:\n  demo_account:\n    class: Account\n    properties:\n      \"web/link\": string\n",
            ),
            faults: &[
                "graph-schema/demo.yaml: entities.demo_account.properties.web/link: property names must match ^(_|tag\\.)?[A-Za-z0-9. -]+$ (use camelCase)",
            ],
        },
        Case {
            name: "required property not declared",
            files: with_classes(
                "source: demo\nentities:\n  demo_account:\n    class: Account\n    required: [slug]\n",
            ),
            faults: &[
                "graph-schema/demo.yaml: entities.demo_account.required: \"slug\" is not declared under properties",
            ],
        },
        Case {
            name: "class requires a property it does not declare",
            files: vec![
                (
                    CLASSES_FILE,
                    "classes:\n  Entity:\n    required: [name, displayName]\n    properties:\n      name: string\n",
                ),
                (DEMO_FILE, "source: demo\n"),
            ],
            faults: &[
                "graph-schema/classes.yaml: classes.Entity.required: \"displayName\" is not a property of the class",
            ],
        },
        Case {
            name: "relationship with an unknown verb",
            files: with_classes(
                "source: demo\nentities:\n  demo_account:\n    class: Account\n  demo_user:\n    class: User\nrelationships:\n  - { type: demo_account_likes_user, from: demo_account, class: LIKES, to: demo_user }\n",
            ),
            faults: &[
                "graph-schema/demo.yaml: relationships[0].class: \"LIKES\" is not a relationship class; use one of HAS, USES, OWNS, ALLOWS, CONTAINS, MANAGES, TRIGGERS, CREATED, OPENED, APPROVED, DEPLOYS, IS, ASSIGNED, DENIES, PROTECTS, EXPLOITS, CONNECTS",
            ],
        },
        Case {
            name: "relationship from an undefined type",
            files: with_classes(
                "source: demo\nentities:\n  demo_user:\n    class: User\nrelationships:\n  - { type: demo_team_has_user, from: demo_team, class: HAS, to: demo_user }\n",
            ),
            faults: &[
                "graph-schema/demo.yaml: relationships[0].from: \"demo_team\" is not a defined entity type",
            ],
        },
        Case {
            name: "relationship to an undefined type",
            files: with_classes(
                "source: demo\nentities:\n  demo_account:\n    class: Account\nrelationships:\n  - { type: demo_account_has_team, from: demo_account, class: HAS, to: demo_team }\n",
            ),
            faults: &[
                "graph-schema/demo.yaml: relationships[0].to: \"demo_team\" is not a defined entity type",
            ],
        },
        Case {
            name: "relationship type not <from>_<class>_<to>",
            files: with_classes(
                "source: demo\nentities:\n  demo_account:\n    class: Account\n  demo_user:\n    class: User\nrelationships:\n  - { type: demo_account_user, from: demo_account, class: HAS, to: demo_user }\n",
            ),
            faults: &[
                "graph-schema/demo.yaml: relationships[0].type: \"demo_account_user\" does not follow <from>_<class>_<to>; expected \"demo_account_has_user\"",
            ],
        },
        Case {
            name: "entity type defined in two files",
            files: vec![
                (CLASSES_FILE, CLASSES),
                (DEMO_FILE, DEMO),
                (
                    "graph-schema/demo2.yaml",
                    "source: demo\nentities:\n  demo_user:\n    class: User\n",
                ),
            ],
            faults: &[
                "graph-schema/demo2.yaml: entities.demo_user: type is defined twice (first in graph-schema/demo.yaml)",
            ],
        },
        Case {
            name: "relationship type defined in two files",
            files: vec![
                (CLASSES_FILE, CLASSES),
                (DEMO_FILE, DEMO),
                (
                    "graph-schema/demo2.yaml",
                    "source: demo\nrelationships:\n  - { type: demo_account_has_user, from: demo_account, class: HAS, to: demo_user }\n",
                ),
            ],
            faults: &[
                "graph-schema/demo2.yaml: relationships[0].type: \"demo_account_has_user\" is defined twice (first in graph-schema/demo.yaml)",
            ],
        },
        Case {
            name: "class defined in two files",
            files: vec![
                (CLASSES_FILE, CLASSES),
                (DEMO_FILE, "source: demo\nclasses:\n  User: {}\n"),
            ],
            faults: &[
                "graph-schema/demo.yaml: classes.User: class is defined twice (first in graph-schema/classes.yaml)",
            ],
        },
        Case {
            name: "entity type not prefixed with the source",
            files: with_classes("source: demo\nentities:\n  account:\n    class: Account\n"),
            faults: &[
                "graph-schema/demo.yaml: entities.account: type must start with the source name \"demo_\"",
            ],
        },
        Case {
            name: "types without a source",
            files: with_classes("entities:\n  demo_account:\n    class: Account\n"),
            faults: &[
                "graph-schema/demo.yaml: source: a file declaring entity or relationship types must name its source",
            ],
        },
        Case {
            name: "no Entity base class",
            files: vec![
                (CLASSES_FILE, "classes:\n  Account: {}\n"),
                (
                    DEMO_FILE,
                    "source: demo\nentities:\n  demo_account:\n    class: Account\n",
                ),
            ],
            faults: &["graph-schema: no file defines the base class Entity"],
        },
    ];
    for case in &cases {
        check(case.name, &case.files, case.faults);
    }
}

#[test]
fn every_fault_of_a_file_is_reported_at_once() {
    let demo = "\
source: demo
entities:
  account:
    class: Account
    properties:
      host: strin
      project_slug: string
  demo_user:
    class: Person
    required: [email]
relationships:
  - { type: demo_account_has_user, from: account, class: HOLDS, to: demo_team }
";
    check(
        "several faults",
        &with_classes(demo),
        &[
            "graph-schema/demo.yaml: entities.account: type must start with the source name \"demo_\"",
            "graph-schema/demo.yaml: entities.account.properties.host: \"strin\" is not a property type; use string, number, integer, boolean, array, string[], number[], integer[] or boolean[]",
            "graph-schema/demo.yaml: entities.account.properties.project_slug: property names must match ^(_|tag\\.)?[A-Za-z0-9. -]+$ (use camelCase)",
            "graph-schema/demo.yaml: entities.demo_user.class: \"Person\" is not a class; define it in graph-schema/classes.yaml or use one of Account, Entity, User",
            "graph-schema/demo.yaml: entities.demo_user.required: \"email\" is not declared under properties",
            "graph-schema/demo.yaml: relationships[0].class: \"HOLDS\" is not a relationship class; use one of HAS, USES, OWNS, ALLOWS, CONTAINS, MANAGES, TRIGGERS, CREATED, OPENED, APPROVED, DEPLOYS, IS, ASSIGNED, DENIES, PROTECTS, EXPLOITS, CONNECTS",
            "graph-schema/demo.yaml: relationships[0].to: \"demo_team\" is not a defined entity type",
            "graph-schema/demo.yaml: relationships[0].type: \"demo_account_has_user\" does not follow <from>_<class>_<to>; expected \"account_holds_demo_team\"",
        ],
    );
}

#[test]
fn faults_in_several_files_are_all_reported() {
    check(
        "two broken files",
        &[
            (CLASSES_FILE, CLASSES),
            ("graph-schema/a.yaml", "source: a\nentites: {}\n"),
            (
                "graph-schema/b.yaml",
                "source: b\nentities:\n  b_thing:\n    class: Thing\n",
            ),
        ],
        &[
            "graph-schema/a.yaml: unknown field `entites`, expected one of source, classes, entities, relationships at line 2, column 1",
            "graph-schema/b.yaml: entities.b_thing.class: \"Thing\" is not a class; define it in graph-schema/classes.yaml or use one of Account, Entity, User",
        ],
    );
}

#[test]
fn load_dir_names_the_broken_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("classes.yaml"), CLASSES).expect("write classes");
    std::fs::write(dir.path().join("README.md"), "not a schema file").expect("write readme");
    std::fs::write(dir.path().join("demo.yaml"), DEMO).expect("write demo");
    let schema = Schema::load_dir(dir.path()).expect("a valid directory loads");
    assert_eq!(schema.entity_types_of("demo").count(), 2);

    let broken = dir.path().join("broken.yml");
    std::fs::write(
        &broken,
        "source: broken\nentities:\n  broken_x:\n    clas: User\n",
    )
    .expect("write broken");
    let err = Schema::load_dir(dir.path()).expect_err("a broken file is refused");
    assert_eq!(
        err.faults,
        [format!(
            "{}: unknown field `clas`, expected one of class, description, required, properties, append_only at line 4, column 5",
            broken.display()
        )]
    );
    assert!(err.to_string().starts_with("graph-schema is broken:\n"));

    // A file that cannot be read as text is named, not skipped.
    std::fs::remove_file(&broken).expect("remove broken");
    let unreadable = dir.path().join("binary.yaml");
    std::fs::write(&unreadable, [0xff, 0xfe, 0x00, 0x80]).expect("write binary");
    let err = Schema::load_dir(dir.path()).expect_err("an unreadable file is refused");
    assert_eq!(err.faults.len(), 1, "{:?}", err.faults);
    assert!(
        err.faults[0].starts_with(&format!("{}: cannot read: ", unreadable.display())),
        "{:?}",
        err.faults
    );
    std::fs::remove_file(&unreadable).expect("remove binary");

    let missing = dir.path().join("nope");
    let err = Schema::load_dir(&missing).expect_err("a missing directory is refused");
    assert_eq!(err.faults.len(), 1);
    assert!(
        err.faults[0].starts_with(&format!(
            "{}: cannot read the directory: ",
            missing.display()
        )),
        "{:?}",
        err.faults
    );
}

// ---------------------------------------------------------------------------
// Bad objects against the embedded schema
// ---------------------------------------------------------------------------

fn schema() -> Schema {
    Schema::embedded().expect("embedded schema is valid")
}

/// Every CircleCI entity type: its class and its required string properties
/// beyond the base class's `name` and `displayName`.
const CIRCLECI_TYPES: &[(&str, &str, &[&str])] = &[
    ("circleci_account", "Account", &["id"]),
    ("circleci_user", "User", &["id", "username"]),
    ("circleci_user_group", "Group", &["id", "slug"]),
    ("circleci_project", "Repository", &["id", "slug"]),
    ("circleci_pipeline", "Configuration", &["id", "state"]),
    ("circleci_workflow", "Configuration", &["id", "status"]),
    ("circleci_job", "Task", &["id", "status", "type"]),
    ("circleci_context", "Configuration", &["id"]),
    (
        "circleci_context_environment_variable",
        "Configuration",
        &["contextId"],
    ),
    (
        "circleci_project_environment_variable",
        "Configuration",
        &["projectId"],
    ),
];

/// A valid entity of a CircleCI type, keyed `<type>:<id>`.
fn valid(ty: &str, id: &str) -> Entity {
    let (ty, class, required) = CIRCLECI_TYPES
        .iter()
        .find(|(t, _, _)| *t == ty)
        .unwrap_or_else(|| panic!("{ty} is not a CircleCI type"));
    let mut entity = Entity::new(format!("{ty}:{id}"), ty, class)
        .with("name", id)
        .with("displayName", id);
    for name in *required {
        entity.set(name, format!("{name}-{id}"));
    }
    entity
}

/// Validates an entity and asserts the exact problem (`None`: it passes).
fn check_entity(case: &str, schema: &Schema, entity: &Entity, expected: Option<&str>) {
    let result = schema.validate_entity(entity);
    match expected {
        None => assert_eq!(result, Ok(()), "{case}"),
        Some(reason) => assert_eq!(
            result,
            Err(Problem {
                key: entity.key.clone(),
                ty: entity.ty.clone(),
                reason: reason.to_owned(),
            }),
            "{case}"
        ),
    }
}

#[test]
fn a_valid_entity_of_every_circleci_type_passes() {
    let schema = schema();
    let declared: BTreeSet<&str> = schema
        .entity_types_of("circleci")
        .map(|d| d.ty.as_str())
        .collect();
    let listed: BTreeSet<&str> = CIRCLECI_TYPES.iter().map(|(t, _, _)| *t).collect();
    assert_eq!(listed, declared, "the table covers every declared type");
    for (ty, _, _) in CIRCLECI_TYPES {
        check_entity(ty, &schema, &valid(ty, "1234567"), None);
    }
    // Optional properties of the right type, arrays of scalars and tags pass too.
    let job = valid("circleci_job", "1234567")
        .with("jobNumber", 42)
        .with("dependencies", json!(["a", "b"]))
        .with("startedOn", 1.7e12)
        .with("tags", json!(["ci"]))
        .with("tag.env", "prod")
        .with("extra", json!([1, "two", true, null]))
        .with("stoppedOn", Value::Null);
    check_entity("job with optional properties", &schema, &job, None);
}

#[test]
fn bad_entities_are_refused_with_the_reason() {
    let schema = schema();
    let pipeline = || valid("circleci_pipeline", "1234567");
    let cases: Vec<(&str, Entity, &str)> = vec![
        (
            "unknown _type",
            Entity::new("circleci_build:1234567", "circleci_build", "Task"),
            "unknown _type \"circleci_build\"; declare it in graph-schema/",
        ),
        (
            "wrong _class",
            Entity {
                class: "User".into(),
                ..valid("circleci_account", "1234567")
            },
            "_class is \"User\" but circleci_account is \"Account\"",
        ),
        (
            "missing required type property",
            {
                let mut user = valid("circleci_user", "1234567");
                user.properties.remove("username");
                user
            },
            "required property \"username\" is missing",
        ),
        (
            "required property set to null",
            pipeline().with("state", Value::Null),
            "required property \"state\" is missing",
        ),
        (
            "missing required base property",
            {
                let mut pipeline = pipeline();
                pipeline.properties.remove("displayName");
                pipeline
            },
            "required property \"displayName\" is missing",
        ),
        (
            "wrong property type",
            pipeline().with("number", "7"),
            "property \"number\" should be integer but is a string",
        ),
        (
            "float for an integer",
            pipeline().with("number", 7.5),
            "property \"number\" should be integer but is a number",
        ),
        (
            "wrong class property type",
            valid("circleci_user", "1234567").with("active", "yes"),
            "property \"active\" should be boolean but is a string",
        ),
        (
            "wrong array element type",
            valid("circleci_job", "1234567").with("dependencies", json!(["a", 2])),
            "property \"dependencies\" should be string[] but is an array",
        ),
        (
            "nested object property",
            pipeline().with("trigger", json!({"type": "webhook"})),
            "property \"trigger\" is nested (an object); values must be flat: string, number, boolean, null or an array of those",
        ),
        (
            "array of objects",
            pipeline().with("errors", json!([{"type": "config"}])),
            "property \"errors\" is nested (an array containing an object); values must be flat: string, number, boolean, null or an array of those",
        ),
        (
            "array of arrays",
            pipeline().with("matrix", json!([[1, 2]])),
            "property \"matrix\" is nested (an array containing an array); values must be flat: string, number, boolean, null or an array of those",
        ),
        (
            "_key shorter than 10 characters",
            Entity {
                key: "pipe:1".into(),
                ..pipeline()
            },
            "_key \"pipe:1\" is shorter than 10 characters",
        ),
        (
            "_key of 9 multibyte characters",
            Entity {
                key: "ééééééééé".into(),
                ..pipeline()
            },
            "_key \"ééééééééé\" is shorter than 10 characters",
        ),
        (
            "property name with an underscore",
            pipeline().with("project_slug", "gh/acme/app"),
            "property name \"project_slug\" does not match ^(_|tag\\.)?[A-Za-z0-9. -]+$",
        ),
        (
            "property name with invalid characters",
            pipeline().with("web/link", "https://example.com"),
            "property name \"web/link\" does not match ^(_|tag\\.)?[A-Za-z0-9. -]+$",
        ),
        (
            "reserved _ prefix",
            pipeline().with("_secret", "x"),
            "property \"_secret\" uses the reserved prefix \"_\"",
        ),
        (
            "tag with an array value",
            pipeline().with("tag.env", json!(["prod", "staging"])),
            "tag \"tag.env\" must be a string, number or boolean",
        ),
        (
            "several faults in one reason",
            Entity {
                key: "short".into(),
                class: "Task".into(),
                ..pipeline().with("number", "7")
            },
            "_class is \"Task\" but circleci_pipeline is \"Configuration\"; _key \"short\" is shorter than 10 characters; property \"number\" should be integer but is a string",
        ),
    ];
    for (case, entity, reason) in &cases {
        check_entity(case, &schema, entity, Some(reason));
    }
}

/// Validates a relationship against a graph holding `entities` and asserts
/// the exact problem (`None`: it passes).
fn check_relationship(
    case: &str,
    schema: &Schema,
    rel: &Relationship,
    entities: &[&Entity],
    expected: Option<&str>,
) {
    let result = schema.validate_relationship(rel, |key| {
        entities
            .iter()
            .find(|e| e.key == key)
            .map(|e| e.ty.as_str())
    });
    match expected {
        None => assert_eq!(result, Ok(()), "{case}"),
        Some(reason) => assert_eq!(
            result,
            Err(Problem {
                key: rel.key.clone(),
                ty: rel.ty.clone(),
                reason: reason.to_owned(),
            }),
            "{case}"
        ),
    }
}

#[test]
fn a_relationship_of_every_circleci_type_passes() {
    let schema = schema();
    let mut count = 0;
    for def in schema.relationship_types_of("circleci") {
        let from = valid(&def.from, "from-1234");
        let to = valid(&def.to, "to-1234");
        let rel = Relationship::between(&def.class, &from, &to);
        assert_eq!(rel.ty, def.ty, "between() names the declared type");
        check_relationship(&def.ty, &schema, &rel, &[&from, &to], None);
        count += 1;
    }
    assert_eq!(count, 11);
}

#[test]
fn bad_relationships_are_refused_with_the_reason() {
    let schema = schema();
    let account = valid("circleci_account", "1234567");
    let user = valid("circleci_user", "1234567");
    let project = valid("circleci_project", "1234567");
    let cases: Vec<(&str, Relationship, Vec<&Entity>, &str)> = vec![
        (
            "unknown relationship type",
            Relationship::between("OWNS", &account, &user),
            vec![&account, &user],
            "unknown relationship _type \"circleci_account_owns_user\"; declare it in graph-schema/",
        ),
        (
            "from endpoint not in the graph",
            Relationship::between("HAS", &account, &user),
            vec![&user],
            "from entity \"circleci_account:1234567\" is not in the graph",
        ),
        (
            "to endpoint not in the graph",
            Relationship::between("HAS", &account, &user),
            vec![&account],
            "to entity \"circleci_user:1234567\" is not in the graph",
        ),
        (
            "endpoint of the wrong type",
            Relationship::by_keys(
                "HAS",
                "circleci_account",
                &account.key,
                "circleci_user",
                &project.key,
            ),
            vec![&account, &project],
            "to entity \"circleci_project:1234567\" is a circleci_project, expected circleci_user",
        ),
        (
            "wrong _class",
            Relationship {
                class: "USES".into(),
                ..Relationship::between("HAS", &account, &user)
            },
            vec![&account, &user],
            "_class is \"USES\" but circleci_account_has_user is \"HAS\"",
        ),
        (
            "nested relationship property",
            Relationship::between("HAS", &account, &user).with("since", json!({"year": 2024})),
            vec![&account, &user],
            "property \"since\" is nested (an object); values must be flat: string, number, boolean, null or an array of those",
        ),
        (
            "short key",
            Relationship {
                key: "a|has|b".into(),
                ..Relationship::between("HAS", &account, &user)
            },
            vec![&account, &user],
            "_key \"a|has|b\" is shorter than 10 characters",
        ),
    ];
    for (case, rel, entities, reason) in &cases {
        check_relationship(case, &schema, rel, entities, Some(reason));
    }
}

// ---------------------------------------------------------------------------
// No panic on junk
// ---------------------------------------------------------------------------

#[test]
fn validation_never_panics_on_junk() {
    let schema = schema();
    let long = "k".repeat(100_000);
    let keys: Vec<&str> = vec![
        "",
        " ",
        "_",
        "tag.",
        "tag.🦀",
        "é",
        "🦀🦀🦀🦀🦀🦀🦀🦀🦀🦀",
        "\u{0}",
        "\u{202e}rtl",
        "line\nbreak",
        "name",
        "number",
        "state",
        &long,
    ];
    let values = vec![
        json!(u64::MAX),
        json!(i64::MIN),
        json!(f64::MAX),
        json!(f64::MIN_POSITIVE),
        Value::from(f64::NAN),
        json!(""),
        json!(long),
        json!([]),
        json!({}),
        json!([[[]]]),
        json!({"": {"": null}}),
        Value::Null,
    ];
    let types = ["circleci_pipeline", "circleci_user", "", "💥", &long];
    let mut checked = 0;
    for ty in types {
        for key in &keys {
            for value in &values {
                let base = if ty == "circleci_pipeline" || ty == "circleci_user" {
                    valid(ty, "1234567")
                } else {
                    Entity::new("", ty, "")
                };
                let entity = Entity {
                    key: (*key).to_owned(),
                    ..base
                }
                .with(key, value.clone());
                let result = catch_unwind(AssertUnwindSafe(|| schema.validate_entity(&entity)));
                match result {
                    Ok(Ok(())) => {}
                    Ok(Err(problem)) => {
                        assert_eq!(problem.key, entity.key);
                        assert!(!problem.reason.is_empty());
                    }
                    Err(_) => panic!(
                        "validate_entity panicked on _type {ty:.40?}, property {key:.40?} = {value:.40}"
                    ),
                }
                let rel = Relationship::by_keys("HAS", ty, key, "circleci_user", key)
                    .with(key, value.clone());
                let result = catch_unwind(AssertUnwindSafe(|| {
                    schema.validate_relationship(&rel, |_| Some(ty))
                }));
                assert!(
                    result.is_ok(),
                    "validate_relationship panicked on _type {ty:.40?}, key {key:.40?}"
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, types.len() * keys.len() * values.len());
}
