//! config.example.yaml documents every key; this test keeps it parseable.

use sextant::config::{Config, Interval};

#[test]
fn example_config_parses_and_means_what_it_says() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.yaml");
    let config = Config::load(std::path::Path::new(path)).expect("config.example.yaml is valid");
    let connection = config.connection("ci-prod").expect("connection ci-prod");
    assert_eq!(connection.key, "ci_prod");
    assert_eq!(connection.requests_per_second, Some(5));
    assert!(connection.sensitive.contains_key("api_token"));
    let integration = config.integration("acme-circleci").expect("integration");
    assert_eq!(
        integration.interval,
        Interval::Every(std::time::Duration::from_secs(3600))
    );
    assert!(integration.tag_account_name);
    assert_eq!(integration.settings["org_slugs"][0], "gh/acme");

    // The shipped alert rules and sinks.
    let rules: Vec<&str> = config
        .alerts
        .rules
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(
        rules,
        [
            "new-user",
            "context-variable-added-or-removed",
            "production-context-variable-added",
            "project-variable-created",
            "project-uses-context-variable",
            "job-failed",
            "sync-or-connection-failing",
        ]
    );
    let sinks: Vec<&str> = config
        .alerts
        .sinks
        .iter()
        .map(|s| s.kind.type_name())
        .collect();
    assert_eq!(sinks, ["stdout", "file", "webhook", "webhook"]);
}
