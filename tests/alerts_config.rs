//! Bad alert rules and sinks are refused at load, every problem at once,
//! each naming the rule or sink and the field at fault and saying what to
//! write instead.

use sextant::config::{Config, ConfigError};

const SINKS: &str = "sinks:\n  - name: hook\n    type: stdout\n";

/// The problems of a config made of `SINKS` and one rule `body` (indented
/// as a rule's fields).
fn rule_problems(body: &str) -> Vec<String> {
    problems(&format!("{SINKS}rules:\n  - name: r1\n{body}"))
}

fn problems(yaml: &str) -> Vec<String> {
    match Config::parse("alerts.yaml", yaml) {
        Err(ConfigError::Invalid { problems, .. }) => problems,
        Err(other) => vec![other.to_string()],
        Ok(_) => Vec::new(),
    }
}

/// One problem, exactly `expected`.
fn check(body: &str, expected: &str) {
    let found = rule_problems(body);
    assert_eq!(found, [expected], "for rule body:\n{body}");
}

const MATCH_OK: &str = "    match: { _type: circleci_user }\n    sinks: [hook]\n";

#[test]
fn a_valid_rule_loads() {
    assert_eq!(rule_problems(MATCH_OK), Vec::<String>::new());
}

#[test]
fn unknown_rule_field() {
    check(
        &format!("    severty: high\n{MATCH_OK}"),
        "rules[0] \"r1\": severty: unknown field; fields are name, description, severity, integrations, first_sync, match, sinks",
    );
}

#[test]
fn unknown_match_field() {
    check(
        "    match: { typ: circleci_user }\n    sinks: [hook]\n",
        "rules[0] \"r1\": match.typ: unknown field; fields are object, action, _type, _class, _key, after.FIELD, before.FIELD, changes.FIELD",
    );
}

#[test]
fn unknown_operator() {
    check(
        "    match:\n      after.name: { matches: ada }\n    sinks: [hook]\n",
        "rules[0] \"r1\": match.after.name: unknown operator \"matches\"; use equals, in, regex, exists",
    );
}

#[test]
fn from_outside_changes() {
    check(
        "    match:\n      after.status: { from: running }\n    sinks: [hook]\n",
        "rules[0] \"r1\": match.after.status: unknown operator \"from\"; use equals, in, regex, exists; from and to apply to changes.status",
    );
}

#[test]
fn equals_on_changes() {
    check(
        "    match:\n      changes.status: { equals: failed }\n    sinks: [hook]\n",
        "rules[0] \"r1\": match.changes.status: unknown operator \"equals\"; use from, to, exists; on changes use from/to, or test after.status or before.status",
    );
}

#[test]
fn invalid_regex() {
    let found =
        rule_problems("    match:\n      after.name: { regex: \"ada(\" }\n    sinks: [hook]\n");
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with(
            "rules[0] \"r1\": match.after.name.regex: \"ada(\" is not a valid regular expression: regex parse error"
        ),
        "{found:?}"
    );
    assert!(found[0].contains("unclosed group"), "{found:?}");
}

#[test]
fn unknown_sink() {
    check(
        "    match: { _type: circleci_user }\n    sinks: [hook, pager]\n",
        "rules[0] \"r1\": sinks[1]: no sink named \"pager\"; declare it under sinks (declared: hook)",
    );
}

#[test]
fn unknown_action_and_object() {
    check(
        "    match: { action: create }\n    sinks: [hook]\n",
        "rules[0] \"r1\": match.action: \"create\" is not known; use created, updated, deleted, sync_failed, sync_partial, connection_test_failed, connection_test_recovered",
    );
    check(
        "    match: { object: [entity, edge] }\n    sinks: [hook]\n",
        "rules[0] \"r1\": match.object: \"edge\" is not known; use entity, relationship, system",
    );
}

#[test]
fn bad_severity_and_first_sync() {
    check(
        &format!("    severity: urgent\n{MATCH_OK}"),
        "rules[0] \"r1\": severity: \"urgent\" is not a severity; use info, low, medium, high or critical",
    );
    check(
        &format!("    first_sync: sometimes\n{MATCH_OK}"),
        "rules[0] \"r1\": first_sync: must be true or false, not a string",
    );
}

#[test]
fn operator_arguments_of_the_wrong_kind() {
    check(
        "    match:\n      after.name: { in: ada }\n    sinks: [hook]\n",
        "rules[0] \"r1\": match.after.name.in: must be a non-empty list of values, not a string",
    );
    check(
        "    match:\n      after.name: { exists: maybe }\n    sinks: [hook]\n",
        "rules[0] \"r1\": match.after.name.exists: must be true or false, not a string",
    );
    check(
        "    match:\n      after.: x\n    sinks: [hook]\n",
        "rules[0] \"r1\": match.after.: name a field after the dot, e.g. after.name",
    );
}

#[test]
fn missing_match_and_sinks() {
    let found = problems(&format!("{SINKS}rules:\n  - name: r1\n"));
    assert_eq!(
        found,
        [
            "rules[0] \"r1\": match: is required; give at least one of object, action, _type, _class, _key, after.FIELD, before.FIELD, changes.FIELD",
            "rules[0] \"r1\": sinks: is required; name one or more sinks declared under sinks",
        ]
    );
}

#[test]
fn names_are_required_checked_and_unique() {
    let found = problems(&format!(
        "{SINKS}rules:\n  - {{ match: {{ _type: x }}, sinks: [hook] }}\n  - {{ name: \"bad name\", match: {{ _type: x }}, sinks: [hook] }}\n  - {{ name: r, match: {{ _type: x }}, sinks: [hook] }}\n  - {{ name: r, match: {{ _type: x }}, sinks: [hook] }}\n"
    ));
    assert_eq!(
        found,
        [
            "rules[0]: name: is required",
            "rules[1] \"bad name\": name: \"bad name\" is not a valid name; use 1 to 64 letters, digits, '-', '_' or '.' (names are part of delivery ids)",
            "rules[3] \"r\": name: \"r\" is used by another rule",
        ]
    );
}

#[test]
fn bad_sinks() {
    let secret = "hunter2-literal-secret";
    let found = problems(&format!(
        "sinks:\n\
         \x20 - {{ name: a, type: email }}\n\
         \x20 - {{ name: b, type: webhook, url: \"https://hooks.example.com/T0/sekrit\", secret: {secret} }}\n\
         \x20 - {{ name: c, type: webhook, url: \"ftp://x/sekrit-path\", secret: \"env:S\", timeout: soon, retries: 99 }}\n\
         \x20 - {{ name: d, type: file }}\n\
         \x20 - {{ name: e, type: stdout, path: /tmp/x, colour: red }}\n\
         \x20 - {{ name: e, type: webhook, secret: \"env:S\", format: teams, start: middle }}\n"
    ));
    assert_eq!(
        found,
        [
            "sinks[0] \"a\": type: \"email\" is not a sink type; use stdout, file or webhook",
            "sinks[1] \"b\": secret: must be a reference, not a literal; write env:VARIABLE or file:/path/to/file",
            "sinks[2] \"c\": url: is not an http(s) URL; write https://host/path, or env:VAR / file:PATH when the URL is itself a secret",
            "sinks[2] \"c\": timeout: \"soon\" is not a duration; try 500ms, 10s or 1m",
            "sinks[2] \"c\": retries: must be a whole number from 0 to 20",
            "sinks[3] \"d\": path: is required: the JSON-lines file to append alerts to",
            "sinks[4] \"e\": colour: unknown field; fields are name, type, start, format, path, url, secret, timeout, retries, backoff_min, backoff_max",
            "sinks[4] \"e\": path: stdout sinks take no path; they take format",
            "sinks[5] \"e\": start: \"middle\" is not a start; use end (the default) or beginning",
            "sinks[5] \"e\": url: is required: the address to POST alerts to (or env:VAR / file:PATH)",
            "sinks[5] \"e\": format: \"teams\" is not a webhook format; use json or slack",
            "sinks[5] \"e\": name: \"e\" is used by another sink",
        ]
    );
    let all = found.join("\n");
    assert!(!all.contains(secret) && !all.contains("sekrit"), "{all}");
}

#[test]
fn every_problem_of_the_file_is_reported_at_once() {
    let found = problems(
        "connections:\n  - name: ci\n    type: circleci\n    secrets: {api_token: env:T}\n\
         integrations:\n  - name: a\n    connection: ci\n    interval: 2x\n\
         sinks:\n  - { name: hook, type: stdout }\n\
         rules:\n  - { name: one, match: { _type: x }, sinks: [nope] }\n  - { name: two, match: { after.name: { regex: \"[\" } }, sinks: [hook] }\n",
    );
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(found[0].starts_with("integrations[0].interval"));
    assert!(found[1].starts_with("rules[0] \"one\": sinks[0]: no sink named \"nope\""));
    assert!(found[2].starts_with("rules[1] \"two\": match.after.name.regex"));
}

#[test]
fn a_rule_that_is_not_a_mapping() {
    let found = problems(&format!("{SINKS}rules:\n  - just-a-name\n"));
    assert_eq!(
        found,
        [
            "rules[0]: : a rule is a mapping with name, description, severity, integrations, first_sync, match, sinks, not a string"
        ]
    );
}
