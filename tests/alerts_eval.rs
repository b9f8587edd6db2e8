//! Rule evaluation, table-driven: one `check(match, event, expected)` per
//! operator and pattern, plus the indexed rule set's order.

use serde_json::{Value, json};
use sextant::alerts::{AlertEvent, AlertsConfig, RuleSet};
use sextant::config::Config;

fn config(rules: &str) -> AlertsConfig {
    let yaml = format!("sinks:\n  - {{ name: s, type: stdout }}\nrules:\n{rules}");
    match Config::parse("eval.yaml", &yaml) {
        Ok(c) => c.alerts,
        Err(e) => panic!("valid rules: {e}\n{yaml}"),
    }
}

fn event(v: Value) -> AlertEvent {
    AlertEvent::from_json(&v.to_string()).expect("event parses")
}

fn user_created() -> Value {
    json!({"seq": 1, "time": "t", "integration": "acme", "sync_id": 2, "action": "created",
           "object": "entity", "_type": "circleci_user", "_class": "User", "_key": "circleci_user:1",
           "after": {"name": "Dmitri", "login": "dmitri-volkov", "jobNumber": 17, "admin": false,
                     "tag.AccountName": "Acme", "dependencies": ["build", "lint"], "gone": null}})
}

fn job_updated() -> Value {
    json!({"seq": 2, "time": "t", "integration": "acme", "sync_id": 2, "action": "updated",
           "object": "entity", "_type": "circleci_job", "_class": "Task", "_key": "circleci_job:9",
           "changes": {"status": {"old": "running", "new": "failed"}, "stoppedOn": {"old": null, "new": 17}},
           "before": {"name": "test", "status": "running"},
           "after": {"name": "test", "status": "failed", "stoppedOn": 17}})
}

fn var_deleted() -> Value {
    json!({"seq": 3, "time": "t", "integration": "other", "sync_id": 5, "action": "deleted",
           "object": "entity", "_type": "circleci_context_environment_variable", "_class": "Configuration",
           "_key": "circleci_context_environment_variable:c1:DEPLOY_TOKEN",
           "before": {"name": "DEPLOY_TOKEN", "contextName": "production"}})
}

fn uses_created() -> Value {
    json!({"seq": 4, "time": "t", "integration": "acme", "sync_id": 2, "action": "created",
           "object": "relationship", "_type": "circleci_project_uses_context_environment_variable",
           "_class": "USES", "_key": "p|uses|v",
           "after": {"_fromEntityKey": "circleci_project:p", "_toEntityKey": "v"}})
}

fn sync_failed() -> Value {
    json!({"seq": 1, "time": "t", "integration": "acme", "sync_id": 7, "object": "system",
           "action": "sync_failed", "_type": "sextant_sync_run", "_class": "SyncRun",
           "_key": "sextant_sync_run:7", "after": {"status": "failed", "error": "fetch-account: 401"}})
}

/// `rule` is the body of one rule (its fields, indented by four spaces).
fn check(rule: &str, ev: Value, expected: bool) {
    let config = config(&format!("  - name: r\n    sinks: [s]\n{rule}"));
    let rule_ = config.rule("r").expect("rule r");
    let ev = event(ev);
    assert_eq!(rule_.matches(&ev), expected, "rule:\n{rule}\nevent: {ev:?}");
    // The indexed set agrees with the rule.
    let set = RuleSet::new(&config.rules);
    assert_eq!(set.matching(&ev).len(), usize::from(expected));
}

#[test]
fn object_action_type_class_key() {
    check(
        "    match: { _type: circleci_user }\n",
        user_created(),
        true,
    );
    check(
        "    match: { _type: circleci_job }\n",
        user_created(),
        false,
    );
    check(
        "    match: { _type: [circleci_job, circleci_user] }\n",
        user_created(),
        true,
    );
    check(
        "    match: { _type: \"circleci_*\" }\n",
        user_created(),
        true,
    );
    check("    match: { _type: \"*_user\" }\n", user_created(), true);
    check(
        "    match: { _type: \"*_environment_*\" }\n",
        var_deleted(),
        true,
    );
    check(
        "    match: { _type: \"*_environment_*\" }\n",
        user_created(),
        false,
    );
    check("    match: { _type: \"c*u*r\" }\n", user_created(), true);
    check("    match: { _class: User }\n", user_created(), true);
    check(
        "    match: { _class: [Task, Group] }\n",
        user_created(),
        false,
    );
    check(
        "    match: { _key: \"*:DEPLOY_TOKEN\" }\n",
        var_deleted(),
        true,
    );
    check(
        "    match: { object: entity, action: created }\n",
        user_created(),
        true,
    );
    check(
        "    match: { object: relationship }\n",
        user_created(),
        false,
    );
    check(
        "    match: { object: relationship, _class: USES }\n",
        uses_created(),
        true,
    );
    check(
        "    match: { action: [created, deleted] }\n",
        var_deleted(),
        true,
    );
    check("    match: { action: updated }\n", var_deleted(), false);
    check(
        "    match: { object: system, action: sync_failed }\n",
        sync_failed(),
        true,
    );
    check(
        "    match: { object: system, action: connection_test_failed }\n",
        sync_failed(),
        false,
    );
    check("    match: { object: entity }\n", sync_failed(), false);
}

#[test]
fn predicates_on_after_and_before() {
    check("    match: { after.name: Dmitri }\n", user_created(), true);
    check(
        "    match: { after.name: { equals: dmitri } }\n",
        user_created(),
        false,
    );
    check("    match: { after.jobNumber: 17 }\n", user_created(), true);
    check(
        "    match: { after.jobNumber: \"17\" }\n",
        user_created(),
        true,
    );
    check(
        "    match: { after.jobNumber: 17.0 }\n",
        user_created(),
        true,
    );
    check("    match: { after.admin: false }\n", user_created(), true);
    check(
        "    match: { after.admin: \"false\" }\n",
        user_created(),
        true,
    );
    check(
        "    match: { after.tag.AccountName: Acme }\n",
        user_created(),
        true,
    );
    check(
        "    match: { after.name: { in: [Ada, Dmitri] } }\n",
        user_created(),
        true,
    );
    check(
        "    match: { after.name: { in: [Ada, Bob] } }\n",
        user_created(),
        false,
    );
    check(
        "    match: { after.login: { regex: \"^d.*-volkov$\" } }\n",
        user_created(),
        true,
    );
    check(
        "    match: { after.login: { regex: \"^volkov\" } }\n",
        user_created(),
        false,
    );
    check(
        "    match: { after.jobNumber: { regex: \"^1[0-9]$\" } }\n",
        user_created(),
        true,
    );
    check(
        "    match: { after.dependencies: { regex: \"^lint$\" } }\n",
        user_created(),
        true,
    );
    check(
        "    match: { after.name: { regex: \"(?i)^DMITRI$\" } }\n",
        user_created(),
        true,
    );
    check(
        "    match: { after.login: { exists: true } }\n",
        user_created(),
        true,
    );
    check(
        "    match: { after.email: { exists: true } }\n",
        user_created(),
        false,
    );
    check(
        "    match: { after.email: { exists: false } }\n",
        user_created(),
        true,
    );
    check(
        "    match: { after.gone: { exists: false } }\n",
        user_created(),
        true,
    );
    check(
        "    match: { after.name: { exists: true } }\n",
        var_deleted(),
        false,
    );
    check(
        "    match: { before.contextName: production }\n",
        var_deleted(),
        true,
    );
    check(
        "    match: { before.contextName: { regex: prod, equals: staging } }\n",
        var_deleted(),
        false,
    );
    check(
        "    match: { before.name: { exists: true } }\n",
        user_created(),
        false,
    );
    check(
        "    match: { after.status: failed, before.status: running }\n",
        job_updated(),
        true,
    );
    check(
        "    match: { after.error: { regex: \"401\" } }\n",
        sync_failed(),
        true,
    );
}

#[test]
fn predicates_on_changes() {
    check(
        "    match: { changes.status: { to: failed } }\n",
        job_updated(),
        true,
    );
    check(
        "    match: { changes.status: { from: running, to: failed } }\n",
        job_updated(),
        true,
    );
    check(
        "    match: { changes.status: { from: success, to: failed } }\n",
        job_updated(),
        false,
    );
    check(
        "    match: { changes.status: { to: [timedout, failed] } }\n",
        job_updated(),
        true,
    );
    check(
        "    match: { changes.status: { to: success } }\n",
        job_updated(),
        false,
    );
    check(
        "    match: { changes.stoppedOn: { to: \"17\" } }\n",
        job_updated(),
        true,
    );
    check(
        "    match: { changes.status: { exists: true } }\n",
        job_updated(),
        true,
    );
    check(
        "    match: { changes.name: { exists: true } }\n",
        job_updated(),
        false,
    );
    check(
        "    match: { changes.name: { exists: false } }\n",
        job_updated(),
        true,
    );
    check(
        "    match: { changes.status: { to: failed } }\n",
        user_created(),
        false,
    );
}

#[test]
fn integration_filter() {
    let m = "    match: { _type: \"*\" }\n";
    check(
        &format!("    integrations: [acme]\n{m}"),
        user_created(),
        true,
    );
    check(
        &format!("    integrations: [acme]\n{m}"),
        var_deleted(),
        false,
    );
    check(
        &format!("    integrations: [x, other]\n{m}"),
        var_deleted(),
        true,
    );
    check(&format!("    integrations: acme\n{m}"), sync_failed(), true);
}

#[test]
fn a_rule_set_returns_matches_in_rule_order() {
    let config = config(
        "  - { name: a, match: { action: created }, sinks: [s] }\n\
         \x20 - { name: b, match: { _type: [circleci_user, circleci_user] }, sinks: [s] }\n\
         \x20 - { name: c, match: { _class: User }, sinks: [s] }\n\
         \x20 - { name: d, match: { _type: circleci_job }, sinks: [s] }\n\
         \x20 - { name: e, match: { _type: \"circleci_u*\" }, sinks: [s] }\n\
         \x20 - { name: f, match: { _type: circleci_user, after.name: Nobody }, sinks: [s] }\n",
    );
    let set = RuleSet::new(&config.rules);
    assert_eq!(set.len(), 6);
    let names = |v: Value| -> Vec<String> {
        set.matching(&event(v))
            .iter()
            .map(|r| r.name.clone())
            .collect()
    };
    assert_eq!(names(user_created()), ["a", "b", "c", "e"]);
    assert_eq!(names(job_updated()), ["d"]);
    assert_eq!(names(uses_created()), ["a"]);
}
