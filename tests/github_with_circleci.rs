//! The "done when" of the second source, on the real binary: a CircleCI and
//! a GitHub integration synced into ONE database keep their graphs apart (a
//! deletion in one never touches the other), `graph export` shows both, and
//! an unchanged GitHub sync in a new process is answered with 304s.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use sextant::fixtures::{FIXTURE_TOKEN, FixtureServer, FixtureSet};

use common::sextant_async;

const CI_TOKEN_ENV: &str = "SEXTANT_TEST_CIRCLECI_TOKEN";
const GH_TOKEN_ENV: &str = "SEXTANT_TEST_GITHUB_TOKEN";

fn write_config(home: &Path, circleci: &str, github: &str) {
    std::fs::create_dir_all(home).expect("home");
    let text = format!(
        "connections:
  - name: ci
    type: circleci
    requests_per_second: 1000
    secrets:
      api_token: env:{CI_TOKEN_ENV}
      host: {circleci}
  - name: gh
    type: github
    requests_per_second: 1000
    secrets:
      token: env:{GH_TOKEN_ENV}
      api_url: {github}
integrations:
  - name: acme-ci
    connection: ci
  - name: acme-gh
    connection: gh
    settings:
      organizations: [acme-corp, zurich-labs]
"
    );
    std::fs::write(home.join("config.yaml"), text).expect("config");
}

const ENV: &[(&str, &str)] = &[(CI_TOKEN_ENV, FIXTURE_TOKEN), (GH_TOKEN_ENV, FIXTURE_TOKEN)];

async fn sync(home: &Path, integration: &str) -> Value {
    let run = sextant_async(home, &["sync", integration, "--json"], ENV).await;
    assert_eq!(run.code, 0, "{}", run.all_output());
    assert!(!run.all_output().contains(FIXTURE_TOKEN), "token leaked");
    serde_json::from_str(&run.stdout).expect("sync --json")
}

/// Entity and relationship counts per integration prefix from `graph export`.
async fn export_counts(home: &Path) -> BTreeMap<String, usize> {
    let run = sextant_async(home, &["graph", "export", "--format", "json"], ENV).await;
    assert_eq!(run.code, 0, "{}", run.all_output());
    let doc: Value = serde_json::from_str(&run.stdout).expect("export json");
    let mut counts = BTreeMap::new();
    for (kind, list) in [("entities", "entities"), ("relationships", "relationships")] {
        for object in doc[list].as_array().expect("array") {
            let ty = object["_type"].as_str().expect("_type");
            let source = ty.split('_').next().expect("prefix");
            *counts.entry(format!("{source} {kind}")).or_default() += 1;
        }
    }
    counts
}

fn sum(report: &Value, field: &str) -> u64 {
    report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s[field].as_u64().unwrap_or(0))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn circleci_and_github_share_a_database_and_keep_their_graphs_apart() {
    let circleci = FixtureServer::start(FixtureSet::Day1).await.expect("ci");
    let github = FixtureServer::start(FixtureSet::GitHubDay1)
        .await
        .expect("gh");
    let home = tempfile::tempdir().expect("home");
    write_config(home.path(), &circleci.base_url(), &github.base_url());

    let ci1 = sync(home.path(), "acme-ci").await;
    let gh1 = sync(home.path(), "acme-gh").await;
    assert_eq!(ci1["status"], "success");
    assert_eq!(gh1["status"], "success");
    let day1: BTreeMap<String, usize> = [
        ("circleci entities", 43),
        ("circleci relationships", 53),
        ("github entities", 18),
        ("github relationships", 33),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(export_counts(home.path()).await, day1, "export shows both");

    // An unchanged GitHub sync in a new process: the same requests, every
    // one conditional and answered 304.
    let gh_again = sync(home.path(), "acme-gh").await;
    assert_eq!(gh1["requests"], gh_again["requests"]);
    assert_eq!(sum(&gh1, "not_modified"), 0);
    assert_eq!(
        sum(&gh_again, "not_modified"),
        gh_again["requests"].as_u64().expect("requests")
    );
    eprintln!(
        "unchanged second GitHub sync: without conditional requests {} requests (0 x 304); with them {} requests ({} x 304)",
        gh1["requests"],
        gh_again["requests"],
        sum(&gh_again, "not_modified")
    );

    // GitHub day2 deletes a user, a repo and their relationships: CircleCI's
    // graph is untouched.
    github.switch(FixtureSet::GitHubDay2);
    let gh2 = sync(home.path(), "acme-gh").await;
    assert_eq!(
        (gh2["created"].as_u64(), gh2["deleted"].as_u64()),
        (Some(6), Some(6))
    );
    let after_gh2 = export_counts(home.path()).await;
    assert_eq!(after_gh2["circleci entities"], 43);
    assert_eq!(after_gh2["circleci relationships"], 53);

    // CircleCI day2 deletes 15 entities and 17 relationships: GitHub's graph
    // is untouched, and the GitHub integration's events hold no CircleCI
    // deletion.
    circleci.switch(FixtureSet::Day2);
    let ci2 = sync(home.path(), "acme-ci").await;
    assert_eq!(ci2["deleted"].as_u64(), Some(15 + 17));
    let after_ci2 = export_counts(home.path()).await;
    assert_eq!(after_ci2["github entities"], 18);
    assert_eq!(after_ci2["github relationships"], 33);
    assert_eq!(after_ci2["circleci entities"], 46);

    let events = sextant_async(
        home.path(),
        &["events", "list", "--integration", "acme-gh"],
        ENV,
    )
    .await;
    assert_eq!(events.code, 0, "{}", events.all_output());
    for line in events.stdout.lines() {
        let event: Value = serde_json::from_str(line).expect("event json");
        assert_eq!(event["integration"], "acme-gh");
        assert!(
            event["_type"]
                .as_str()
                .is_some_and(|t| t.starts_with("github_")),
            "{line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_github_connection_with_missing_scopes_is_refused_by_the_cli() {
    let github = FixtureServer::start(FixtureSet::GitHubDay1)
        .await
        .expect("gh");
    github.inject(
        "/user",
        sextant::fixtures::Fault::Headers(vec![("x-oauth-scopes".into(), "repo".into())]),
    );
    let home = tempfile::tempdir().expect("home");
    let secrets = home.path().join("secrets.json");
    std::fs::write(
        &secrets,
        serde_json::json!({"token": FIXTURE_TOKEN, "api_url": github.base_url()}).to_string(),
    )
    .expect("secrets");
    let key = (
        "SEXTANT_MASTER_KEY",
        "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
    );
    let secrets_arg = secrets.to_str().expect("utf-8 path");
    let run = sextant_async(
        home.path(),
        &[
            "connection",
            "add",
            "gh",
            "--type",
            "github",
            "--secrets-file",
            secrets_arg,
        ],
        &[key],
    )
    .await;
    assert_ne!(run.code, 0, "{}", run.all_output());
    let output = run.all_output();
    assert!(
        output.contains("read:org, read:user") && output.contains("nothing was saved"),
        "{output}"
    );
    assert!(!output.contains(FIXTURE_TOKEN));

    github.clear_faults();
    let run = sextant_async(
        home.path(),
        &[
            "connection",
            "add",
            "gh",
            "--type",
            "github",
            "--secrets-file",
            secrets_arg,
        ],
        &[key],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.all_output());
    let run = sextant_async(home.path(), &["connection", "test", "gh"], &[key]).await;
    assert_eq!(run.code, 0, "{}", run.all_output());
    assert!(
        run.stdout.contains("test succeeded")
            && run.stdout.contains("classic token of ada-lovelace"),
        "{}",
        run.stdout
    );
}
