//! Provisioning from the config file and per-connection HTTP settings,
//! through the real binary against the fixture server.

mod common;

use std::path::Path;

use common::{
    Run, SECRET_TOKEN_ENV, contains, db_bytes, secrets_blob, secrets_file, sextant_async,
    write_config,
};
use serde_json::Value;
use sextant::fixtures::{FIXTURE_TOKEN, Fault, FixtureServer, FixtureSet};

const OTHER_TOKEN: &str = "rotated-token-5f1e2d3c4b5a69788796";
const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn json(run: &Run) -> Value {
    assert_eq!(run.code, 0, "{}", run.all_output());
    serde_json::from_str(&run.stdout).expect("JSON on stdout")
}

async fn run(home: &Path, args: &[&str], token: Option<&str>) -> Run {
    let mut env = vec![("SEXTANT_MASTER_KEY", KEY)];
    if let Some(token) = token {
        env.push((SECRET_TOKEN_ENV, token));
    }
    let run = sextant_async(home, args, &env).await;
    let out = run.all_output();
    assert!(!out.contains(FIXTURE_TOKEN), "token leaked: {out}");
    assert!(!out.contains(OTHER_TOKEN), "token leaked: {out}");
    run
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_is_provisioned_once_and_rewritten_only_when_it_changes() {
    let server = FixtureServer::start(FixtureSet::Day1)
        .await
        .expect("server");
    let home = tempfile::tempdir().expect("tempdir");
    let home = home.path();
    write_config(home, &server.base_url(), "");

    let applied = run(home, &["config", "apply"], Some(FIXTURE_TOKEN)).await;
    assert_eq!(applied.code, 0, "{}", applied.all_output());
    assert!(
        applied.stdout.contains("connection ci-test: created"),
        "{}",
        applied.stdout
    );
    assert!(
        applied.stdout.contains("integration acme: created"),
        "{}",
        applied.stdout
    );
    assert!(
        applied.stdout.contains("2 change(s) applied"),
        "{}",
        applied.stdout
    );

    let list = json(&run(home, &["connection", "list", "--json"], None).await);
    let item = &list["items"][0];
    assert_eq!(item["name"], "ci-test");
    assert_eq!(item["managed_by"], "config");
    assert_eq!(item["requests_per_second"], 1000);
    assert_eq!(item["last_test_succeeded"], Value::Null);
    let shown = json(&run(home, &["integration", "show", "acme"], None).await);
    assert_eq!(shown["managed_by"], "config");
    assert_eq!(shown["account_name"], "Acme");
    assert_eq!(shown["connection"], "ci-test");

    // Unchanged config, unchanged rows (updated_at included).
    let blob = secrets_blob(home, "ci_test");
    let again = run(home, &["config", "apply"], Some(FIXTURE_TOKEN)).await;
    assert!(
        again.stdout.contains("connection ci-test: unchanged"),
        "{}",
        again.stdout
    );
    assert!(
        again.stdout.contains("0 change(s) applied"),
        "{}",
        again.stdout
    );
    assert_eq!(
        secrets_blob(home, "ci_test"),
        blob,
        "an unchanged secret is not rewritten"
    );
    let list_again = json(&run(home, &["connection", "list", "--json"], None).await);
    assert_eq!(list_again["items"][0]["updated_at"], item["updated_at"]);

    // `sync` provisions at start and runs on the stored definition.
    let synced = run(home, &["sync", "acme", "--json"], Some(FIXTURE_TOKEN)).await;
    assert_eq!(synced.code, 0, "{}", synced.all_output());

    // A new secret behind the same reference is stored (and used) at the
    // next start: the fixture server refuses it, so the sync fails on auth.
    let rotated = run(home, &["config", "apply"], Some(OTHER_TOKEN)).await;
    assert!(
        rotated.stdout.contains("connection ci-test: updated"),
        "{}",
        rotated.stdout
    );
    assert_ne!(secrets_blob(home, "ci_test"), blob);
    let refused = run(home, &["sync", "acme", "--json"], Some(OTHER_TOKEN)).await;
    assert_eq!(refused.code, 1, "{}", refused.all_output());
    let bytes = db_bytes(home);
    assert!(!contains(&bytes, FIXTURE_TOKEN) && !contains(&bytes, OTHER_TOKEN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_reference_changes_nothing() {
    let server = FixtureServer::start(FixtureSet::Day1)
        .await
        .expect("server");
    let home = tempfile::tempdir().expect("tempdir");
    let home = home.path();
    write_config(home, &server.base_url(), "");
    assert_eq!(
        run(home, &["config", "apply"], Some(FIXTURE_TOKEN))
            .await
            .code,
        0
    );
    let blob = secrets_blob(home, "ci_test");

    // Declare a second connection too: neither it nor anything else lands.
    let path = home.join("config.yaml");
    let mut text = std::fs::read_to_string(&path).expect("config");
    text = text.replace(
        "connections:\n",
        "connections:\n  - name: ci-two\n    type: circleci\n    secrets:\n      api_token: env:SEXTANT_TEST_UNSET_TOKEN\n",
    );
    std::fs::write(&path, text).expect("config");
    let failed = run(home, &["sync", "acme"], None).await;
    assert_eq!(failed.code, 1, "{}", failed.all_output());
    assert!(
        failed.stderr.contains(SECRET_TOKEN_ENV)
            || failed.stderr.contains("SEXTANT_TEST_UNSET_TOKEN"),
        "names the variable: {}",
        failed.stderr
    );
    assert!(
        failed.stderr.contains("nothing was provisioned"),
        "{}",
        failed.stderr
    );
    let list = json(&run(home, &["connection", "list", "--json"], None).await);
    assert_eq!(list["total"], 1, "ci-two was not created: {list}");
    assert_eq!(secrets_blob(home, "ci_test"), blob);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cli_definition_of_the_same_name_is_taken_over_and_conflicts_are_refused() {
    let server = FixtureServer::start(FixtureSet::Day1)
        .await
        .expect("server");
    let home = tempfile::tempdir().expect("tempdir");
    let home = home.path();
    let secrets = secrets_file(home, "secrets.json", OTHER_TOKEN, &server.base_url());

    // Same name, other key: refused, nothing written.
    let added = run(
        home,
        &[
            "connection",
            "add",
            "ci-test",
            "--type",
            "circleci",
            "--secrets-file",
            &secrets,
            "--no-verify",
            "--key",
            "ci_other",
        ],
        None,
    )
    .await;
    assert_eq!(added.code, 0, "{}", added.all_output());
    write_config(home, &server.base_url(), "");
    let refused = run(home, &["config", "apply"], Some(FIXTURE_TOKEN)).await;
    assert_eq!(refused.code, 1);
    assert!(
        refused.stderr.contains("key \"ci_other\""),
        "{}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains("key: ci_other"),
        "names the fix: {}",
        refused.stderr
    );
    let listed = json(&run(home, &["integration", "list", "--json"], None).await);
    assert_eq!(listed["total"], 0, "acme was not created: {listed}");

    // Same name and key: the config takes it over, with a warning.
    assert_eq!(
        run(home, &["connection", "delete", "ci-test"], None)
            .await
            .code,
        0
    );
    let readded = run(
        home,
        &[
            "connection",
            "add",
            "ci-test",
            "--type",
            "circleci",
            "--secrets-file",
            &secrets,
            "--no-verify",
        ],
        None,
    )
    .await;
    assert_eq!(readded.code, 0, "{}", readded.all_output());
    let taken = run(home, &["config", "apply"], Some(FIXTURE_TOKEN)).await;
    assert_eq!(taken.code, 0, "{}", taken.all_output());
    assert!(
        taken
            .stdout
            .contains("connection ci-test: taken over from the CLI"),
        "{}",
        taken.stdout
    );
    assert!(
        taken.stderr.contains("also declared in the config file"),
        "{}",
        taken.stderr
    );
    // The config's token is the one stored now: a sync succeeds.
    let synced = run(home, &["sync", "acme"], Some(FIXTURE_TOKEN)).await;
    assert_eq!(synced.code, 0, "{}", synced.all_output());
    // A CLI change to a config-managed connection says it will not last.
    let updated = run(
        home,
        &[
            "connection",
            "update",
            "ci-test",
            "--description",
            "hand-edited",
        ],
        None,
    )
    .await;
    assert_eq!(updated.code, 0, "{}", updated.all_output());
    assert!(
        updated.stderr.contains("is declared in the config file"),
        "{}",
        updated.stderr
    );

    // Left out of the config: kept, and said so.
    std::fs::write(home.join("config.yaml"), "connections: []\n").expect("config");
    let orphaned = run(home, &["config", "apply"], None).await;
    assert_eq!(orphaned.code, 0, "{}", orphaned.all_output());
    assert!(
        orphaned
            .stdout
            .contains("connection ci-test: no longer in the config; kept"),
        "{}",
        orphaned.stdout
    );
    assert!(
        orphaned
            .stdout
            .contains("integration acme: no longer in the config; kept"),
        "{}",
        orphaned.stdout
    );
    assert_eq!(
        json(&run(home, &["connection", "list", "--json"], None).await)["total"],
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_type_that_differs_from_the_stored_one_is_refused() {
    let home = tempfile::tempdir().expect("tempdir");
    let home = home.path();
    write_config(home, "http://127.0.0.1:9", "");
    assert_eq!(
        run(home, &["config", "apply"], Some(FIXTURE_TOKEN))
            .await
            .code,
        0
    );
    let db = rusqlite::Connection::open(home.join("sextant.db")).expect("db");
    db.execute(
        "UPDATE connections SET type = 'github' WHERE key = 'ci_test'",
        [],
    )
    .expect("update");
    drop(db);
    let refused = run(home, &["config", "apply"], Some(FIXTURE_TOKEN)).await;
    assert_eq!(refused.code, 1);
    assert!(
        refused
            .stderr
            .contains("of type circleci, but it is stored with type github"),
        "{}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains("sextant connection delete ci-test"),
        "{}",
        refused.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_check_reads_no_secret_and_writes_nothing() {
    let home = tempfile::tempdir().expect("tempdir");
    let home = home.path();
    write_config(home, "http://127.0.0.1:9", "");
    let checked = run(home, &["config", "check"], None).await;
    assert_eq!(checked.code, 0, "{}", checked.all_output());
    assert!(
        checked
            .stdout
            .contains("connection ci-test (type circleci, key ci_test)"),
        "{}",
        checked.stdout
    );
    assert!(
        checked
            .stdout
            .contains("config OK: 1 connection(s), 1 integration(s)"),
        "{}",
        checked.stdout
    );
    assert!(
        !home.join("sextant.db").exists(),
        "check opened no database"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_connection_rate_and_timeout_are_stored_and_applied() {
    let server = FixtureServer::start(FixtureSet::Day1)
        .await
        .expect("server");
    let home = tempfile::tempdir().expect("tempdir");
    let home = home.path();
    let secrets = secrets_file(home, "secrets.json", FIXTURE_TOKEN, &server.base_url());
    let added = run(
        home,
        &[
            "connection",
            "add",
            "ci",
            "--type",
            "circleci",
            "--secrets-file",
            &secrets,
            "--requests-per-second",
            "500",
            "--timeout",
            "1s",
        ],
        None,
    )
    .await;
    assert_eq!(added.code, 0, "{}", added.all_output());
    let shown = json(&run(home, &["connection", "show", "ci"], None).await);
    assert_eq!(shown["requests_per_second"], 500);
    assert_eq!(shown["timeout"], "1s");
    assert_eq!(shown["managed_by"], "cli");
    let bad = run(
        home,
        &["connection", "update", "ci", "--timeout", "soon"],
        None,
    )
    .await;
    assert_eq!(bad.code, 2, "{}", bad.all_output());
    assert!(
        bad.stderr
            .contains("\"soon\" is not a duration; try 500ms, 30s or 2m"),
        "{}",
        bad.stderr
    );

    // The stored timeout reaches the HTTP client: a hung endpoint fails
    // its step with the connection's 1s, not the 30s default.
    assert_eq!(
        run(
            home,
            &["integration", "add", "acme", "--connection", "ci"],
            None
        )
        .await
        .code,
        0
    );
    server.inject("/api/v2/me", Fault::Hang);
    let synced = run(home, &["sync", "acme", "--json"], None).await;
    server.clear_faults();
    assert!(
        synced.stdout.contains("within 1s"),
        "{}",
        synced.all_output()
    );

    let reset = run(
        home,
        &[
            "connection",
            "update",
            "ci",
            "--timeout",
            "0s",
            "--requests-per-second",
            "0",
        ],
        None,
    )
    .await;
    assert_eq!(reset.code, 0, "{}", reset.all_output());
    let shown = json(&run(home, &["connection", "show", "ci"], None).await);
    assert_eq!(shown["requests_per_second"], Value::Null);
    assert_eq!(shown["timeout"], Value::Null);
}
