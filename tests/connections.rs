//! Stored connections (encrypted secrets), stored integrations and key
//! rotation, through the real binary against the fixture server.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use base64::Engine as _;
use common::{Run, contains, db_bytes, secrets_blob, secrets_file, sextant, sextant_async};
use serde_json::Value;
use sextant::fixtures::{FIXTURE_TOKEN, FixtureServer, FixtureSet};

const WRONG_TOKEN: &str = "wrong-token-0123456789abcdef";
const MASK: &str = "**********";

fn assert_no_token(runs: &[&Run]) {
    for run in runs {
        let out = run.all_output();
        assert!(!out.contains(FIXTURE_TOKEN), "token leaked: {out}");
        assert!(!out.contains(WRONG_TOKEN), "wrong token leaked: {out}");
    }
}

fn json(run: &Run) -> Value {
    assert_eq!(run.code, 0, "{}", run.all_output());
    serde_json::from_str(&run.stdout).expect("JSON on stdout")
}

fn names(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["name"].as_str().expect("name").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_verify_list_show_test_update() {
    let server = FixtureServer::start(FixtureSet::Day1)
        .await
        .expect("fixture server");
    let url = server.base_url();
    let home = tempfile::tempdir().expect("tempdir");
    let files = tempfile::tempdir().expect("tempdir");
    let h = home.path();
    let good = secrets_file(files.path(), "good.json", FIXTURE_TOKEN, &url);
    let wrong = secrets_file(files.path(), "wrong.json", WRONG_TOKEN, &url);
    let mut runs = Vec::new();

    // Verify on add: a wrong token is refused, with what to do.
    let refused = sextant_async(
        h,
        &[
            "connection",
            "add",
            "ci-test",
            "--type",
            "circleci",
            "--secrets-file",
            &wrong,
        ],
        &[],
    )
    .await;
    assert_ne!(refused.code, 0);
    assert!(
        refused.stderr.contains("failed verification")
            && refused.stderr.contains("token rejected (401)")
            && refused.stderr.contains("--no-verify"),
        "{}",
        refused.stderr
    );
    let empty = json(&sextant_async(h, &["connection", "list", "--json"], &[]).await);
    assert_eq!(empty["total"], 0, "nothing saved after a failed verify");
    runs.push(refused);

    let added = sextant_async(
        h,
        &[
            "connection",
            "add",
            "ci-test",
            "--type",
            "circleci",
            "--secrets-file",
            &good,
            "-vvv",
        ],
        &[],
    )
    .await;
    assert_eq!(added.code, 0, "{}", added.all_output());
    assert!(added.stdout.contains("key ci_test"), "{}", added.stdout);
    let untested = sextant_async(
        h,
        &[
            "connection",
            "add",
            "Staging CI",
            "--type",
            "circleci",
            "--secrets-file",
            &good,
            "--no-verify",
            "--description",
            "the staging box",
        ],
        &[],
    )
    .await;
    assert_eq!(untested.code, 0, "{}", untested.all_output());
    let dup = sextant_async(
        h,
        &[
            "connection",
            "add",
            "ci-test",
            "--type",
            "circleci",
            "--secrets-file",
            &good,
            "--no-verify",
        ],
        &[],
    )
    .await;
    assert_ne!(dup.code, 0);
    assert!(dup.stderr.contains("already exists"), "{}", dup.stderr);
    let unknown_field = secrets_file(files.path(), "bad.json", "x", &url);
    std::fs::write(
        &unknown_field,
        serde_json::json!({"api_token": WRONG_TOKEN, "hots": "x"}).to_string(),
    )
    .expect("write");
    let bad = sextant_async(
        h,
        &[
            "connection",
            "add",
            "bad",
            "--type",
            "circleci",
            "--secrets-file",
            &unknown_field,
            "--no-verify",
        ],
        &[],
    )
    .await;
    assert_ne!(bad.code, 0);
    assert!(bad.stderr.contains("no field \"hots\""), "{}", bad.stderr);
    runs.extend([added, untested, dup, bad]);

    // List: Fides shape, filters, never secrets.
    let all = json(&sextant_async(h, &["connection", "list", "--json"], &[]).await);
    assert_eq!(all["total"], 2);
    assert_eq!(all["page"], 1);
    assert!(all["size"].as_u64().is_some());
    let first = &all["items"][0];
    for field in [
        "name",
        "key",
        "description",
        "connection_type",
        "disabled",
        "created_at",
        "updated_at",
        "last_test_timestamp",
        "last_test_succeeded",
    ] {
        assert!(first.get(field).is_some(), "missing {field}: {first}");
    }
    assert!(first.get("secrets").is_none());
    assert_eq!(names(&all), ["Staging CI", "ci-test"]);
    let staging = &all["items"][0];
    assert_eq!(staging["key"], "staging_ci");
    assert_eq!(staging["last_test_succeeded"], Value::Null);
    assert!(
        all["items"][1]["last_test_timestamp"].is_string(),
        "verify records a test"
    );
    let f = |args: &'static [&'static str]| {
        let h = h.to_owned();
        async move {
            let mut full = vec!["connection", "list", "--json"];
            full.extend_from_slice(args);
            json(&sextant_async(&h, &full, &[]).await)
        }
    };
    assert_eq!(
        names(&f(&["--test-status", "succeeded"]).await),
        ["ci-test"]
    );
    assert_eq!(
        names(&f(&["--test-status", "untested"]).await),
        ["Staging CI"]
    );
    assert_eq!(
        names(&f(&["--test-status", "failed"]).await),
        Vec::<String>::new()
    );
    assert_eq!(
        names(&f(&["--search", "STAGING BOX"]).await),
        ["Staging CI"]
    );
    assert_eq!(names(&f(&["--search", "ci_test"]).await), ["ci-test"]);
    assert_eq!(f(&["--type", "circleci"]).await["total"], 2);
    assert_eq!(f(&["--disabled", "true"]).await["total"], 0);
    let paged = f(&["--size", "1", "--page", "2"]).await;
    assert_eq!(
        (paged["total"].as_u64(), names(&paged)),
        (Some(2), vec!["ci-test".to_owned()])
    );
    let table = sextant_async(h, &["connection", "list"], &[]).await;
    assert!(table.stdout.contains("Staging CI"), "{}", table.stdout);

    // Show masks sensitive fields.
    let shown = json(&sextant_async(h, &["connection", "show", "ci-test"], &[]).await);
    assert_eq!(shown["secrets"]["api_token"], MASK);
    assert_eq!(shown["secrets"]["host"], url.as_str());

    // Test records its status.
    let tested = sextant_async(h, &["connection", "test", "staging_ci"], &[]).await;
    assert_eq!(tested.code, 0, "{}", tested.all_output());
    assert_eq!(f(&["--test-status", "succeeded"]).await["total"], 2);

    // Update secrets: verified by default, so a wrong token is refused...
    let refused = sextant_async(
        h,
        &[
            "connection",
            "update",
            "Staging CI",
            "--secrets-file",
            &wrong,
        ],
        &[],
    )
    .await;
    assert_ne!(refused.code, 0);
    assert!(
        refused.stderr.contains("failed verification"),
        "{}",
        refused.stderr
    );
    assert_eq!(
        f(&["--test-status", "succeeded"]).await["total"],
        2,
        "nothing changed"
    );
    // ...and saved with --no-verify; the next test fails and says why.
    let saved = sextant_async(
        h,
        &[
            "connection",
            "update",
            "Staging CI",
            "--secrets-file",
            &wrong,
            "--no-verify",
        ],
        &[],
    )
    .await;
    assert_eq!(saved.code, 0, "{}", saved.all_output());
    let failed = sextant_async(h, &["connection", "test", "Staging CI", "-vvv"], &[]).await;
    assert_eq!(failed.code, 1, "{}", failed.all_output());
    assert!(
        failed.stdout.contains("token rejected (401)"),
        "{}",
        failed.stdout
    );
    let failing = f(&["--test-status", "failed"]).await;
    assert_eq!(names(&failing), ["Staging CI"]);
    let reason = failing["items"][0]["last_test_error"]
        .as_str()
        .expect("reason");
    assert!(
        reason.contains("401") && !reason.contains(WRONG_TOKEN),
        "{reason}"
    );
    // Good secrets again from stdin-less file, then disable/enable.
    let back = sextant_async(
        h,
        &[
            "connection",
            "update",
            "Staging CI",
            "--secrets-file",
            &good,
        ],
        &[],
    )
    .await;
    assert_eq!(back.code, 0, "{}", back.all_output());
    let off = sextant_async(h, &["connection", "update", "Staging CI", "--disable"], &[]).await;
    assert_eq!(off.code, 0, "{}", off.all_output());
    assert_eq!(names(&f(&["--disabled", "true"]).await), ["Staging CI"]);
    assert_eq!(names(&f(&["--disabled", "false"]).await), ["ci-test"]);
    runs.extend([table, tested, refused, saved, failed, back, off]);

    assert_no_token(&runs.iter().collect::<Vec<_>>());
    let bytes = db_bytes(h);
    assert!(
        !contains(&bytes, FIXTURE_TOKEN),
        "token in the database file"
    );
    assert!(!contains(&bytes, WRONG_TOKEN), "token in the database file");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_integration_syncs_and_delete_disables_it() {
    let server = FixtureServer::start(FixtureSet::Day1)
        .await
        .expect("fixture server");
    let url = server.base_url();
    let home = tempfile::tempdir().expect("tempdir");
    let files = tempfile::tempdir().expect("tempdir");
    let h = home.path();
    let good = secrets_file(files.path(), "good.json", FIXTURE_TOKEN, &url);
    let wrong = secrets_file(files.path(), "wrong.json", WRONG_TOKEN, &url);
    let mut runs = Vec::new();

    let add = sextant_async(
        h,
        &[
            "connection",
            "add",
            "ci-test",
            "--type",
            "circleci",
            "--secrets-file",
            &good,
        ],
        &[],
    )
    .await;
    assert_eq!(add.code, 0, "{}", add.all_output());
    let bad_set = sextant_async(
        h,
        &[
            "integration",
            "add",
            "acme",
            "--connection",
            "ci-test",
            "--set",
            "org_slug=x",
        ],
        &[],
    )
    .await;
    assert_ne!(bad_set.code, 0);
    assert!(bad_set.stderr.contains("org_slug"), "{}", bad_set.stderr);
    let add_i = sextant_async(
        h,
        &[
            "integration",
            "add",
            "acme",
            "--connection",
            "ci-test",
            "--account-name",
            "Acme",
            "--tag-account-name",
            "--interval",
            "4h",
            "--description",
            "Acme CI",
            "--set",
            "max_pipeline_pages=5",
        ],
        &[],
    )
    .await;
    assert_eq!(add_i.code, 0, "{}", add_i.all_output());
    let list = json(&sextant_async(h, &["integration", "list", "--json"], &[]).await);
    assert_eq!(names(&list), ["acme"]);
    assert_eq!(
        (list["total"].clone(), list["page"].clone()),
        (1.into(), 1.into())
    );
    for (filter, expected) in [
        (&["--connection", "ci_test"][..], 1),
        (&["--enabled", "false"][..], 0),
        (&["--enabled", "true", "--search", "ACME ci"][..], 1),
        (&["--search", "nothing-like-it"][..], 0),
    ] {
        let mut args = vec!["integration", "list", "--json"];
        args.extend_from_slice(filter);
        let page = json(&sextant_async(h, &args, &[]).await);
        assert_eq!(page["total"], expected, "{filter:?}: {page}");
    }
    let unknown = sextant_async(h, &["integration", "list", "--connection", "nope"], &[]).await;
    assert_eq!(unknown.code, 1);
    assert!(
        unknown.stderr.contains("no connection named \"nope\""),
        "{}",
        unknown.stderr
    );
    let shown = json(&sextant_async(h, &["integration", "show", "acme"], &[]).await);
    assert_eq!(shown["connection"], "ci-test");
    assert_eq!(shown["interval"], "4h");
    assert_eq!(shown["settings"]["max_pipeline_pages"], 5);
    assert_eq!(shown["enabled"], true);

    // Sync of a stored integration, end to end (no config file at all).
    let sync = sextant_async(h, &["sync", "acme", "--json", "-vvv"], &[]).await;
    assert_eq!(sync.code, 0, "{}", sync.all_output());
    let report: Value = serde_json::from_str(&sync.stdout).expect("report");
    assert_eq!(report["status"], "success");
    assert!(report["created"].as_u64().expect("created") > 0);
    let export = sextant_async(h, &["graph", "export", "--integration", "acme"], &[]).await;
    assert_eq!(export.code, 0, "{}", export.all_output());
    let doc: Value = serde_json::from_str(&export.stdout).expect("export");
    let entities = doc["entities"].as_array().expect("entities");
    assert!(!entities.is_empty());
    assert!(entities.iter().all(|e| e["tag.AccountName"] == "Acme"));

    // A 401 during sync: the error names the status, never the token.
    let swap = sextant_async(
        h,
        &[
            "connection",
            "update",
            "ci-test",
            "--secrets-file",
            &wrong,
            "--no-verify",
        ],
        &[],
    )
    .await;
    assert_eq!(swap.code, 0, "{}", swap.all_output());
    let unauthorized = sextant_async(h, &["sync", "acme", "-vvv"], &[]).await;
    assert_ne!(unauthorized.code, 0);
    assert!(
        unauthorized.all_output().contains("401"),
        "{}",
        unauthorized.all_output()
    );
    let restore = sextant_async(
        h,
        &["connection", "update", "ci-test", "--secrets-file", &good],
        &[],
    )
    .await;
    assert_eq!(restore.code, 0, "{}", restore.all_output());

    // A disabled connection refuses to sync.
    let off = sextant_async(h, &["connection", "update", "ci-test", "--disable"], &[]).await;
    assert_eq!(off.code, 0);
    let refused = sextant_async(h, &["sync", "acme"], &[]).await;
    assert_ne!(refused.code, 0);
    assert!(
        refused
            .stderr
            .contains("connection \"ci-test\" is disabled"),
        "{}",
        refused.stderr
    );
    let on = sextant_async(h, &["connection", "update", "ci-test", "--enable"], &[]).await;
    assert_eq!(on.code, 0);

    // Delete: refused while used; --force disables the integration with a reason.
    let used = sextant_async(h, &["connection", "delete", "ci-test"], &[]).await;
    assert_ne!(used.code, 0);
    assert!(
        used.stderr.contains("used by integration(s) acme") && used.stderr.contains("--force"),
        "{}",
        used.stderr
    );
    let forced = sextant_async(h, &["connection", "delete", "ci-test", "--force"], &[]).await;
    assert_eq!(forced.code, 0, "{}", forced.all_output());
    let after = json(&sextant_async(h, &["integration", "show", "acme"], &[]).await);
    assert_eq!(after["enabled"], false);
    assert_eq!(after["disabled_reason"], "connection deleted");
    let gone = json(&sextant_async(h, &["connection", "list", "--json"], &[]).await);
    assert_eq!(gone["total"], 0);
    let no_sync = sextant_async(h, &["sync", "acme"], &[]).await;
    assert_ne!(no_sync.code, 0);
    assert!(
        no_sync.stderr.contains("is disabled (connection deleted)"),
        "{}",
        no_sync.stderr
    );

    let deleted = sextant_async(h, &["integration", "delete", "acme"], &[]).await;
    assert_eq!(deleted.code, 0, "{}", deleted.all_output());
    let missing = sextant_async(h, &["integration", "show", "acme"], &[]).await;
    assert_ne!(missing.code, 0);
    assert!(
        missing.stderr.contains("no integration named \"acme\""),
        "{}",
        missing.stderr
    );

    runs.extend([
        add,
        bad_set,
        add_i,
        sync,
        export,
        swap,
        unauthorized,
        restore,
        refused,
        used,
        forced,
        no_sync,
    ]);
    assert_no_token(&runs.iter().collect::<Vec<_>>());
    let bytes = db_bytes(h);
    assert!(!contains(&bytes, FIXTURE_TOKEN) && !contains(&bytes, WRONG_TOKEN));
    server.shutdown().await;
}

#[test]
fn tampered_or_swapped_ciphertext_is_a_clear_error_and_nothing_is_overwritten() {
    let home = tempfile::tempdir().expect("tempdir");
    let h = home.path();
    let file = secrets_file(h, "s.json", WRONG_TOKEN, "http://127.0.0.1:9");
    for name in ["one", "two"] {
        let add = sextant(
            h,
            &[
                "connection",
                "add",
                name,
                "--type",
                "circleci",
                "--secrets-file",
                &file,
                "--no-verify",
            ],
            &[],
        );
        assert_eq!(add.code, 0, "{}", add.all_output());
    }
    let key_before = std::fs::read(h.join("master.key")).expect("key file");
    let original = secrets_blob(h, "one");
    let mut tampered = original.clone();
    let i = tampered.len() / 2;
    tampered[i] ^= 0x01;
    {
        let db = rusqlite::Connection::open(h.join("sextant.db")).expect("open");
        db.execute(
            "UPDATE connections SET secrets = ?1 WHERE key = 'one'",
            [&tampered],
        )
        .expect("tamper");
        // Row two gets row one's (valid) ciphertext: bound to its row, so refused.
        db.execute(
            "UPDATE connections SET secrets = ?1 WHERE key = 'two'",
            [&original],
        )
        .expect("swap");
    }
    for (name, blob) in [("one", &tampered), ("two", &original)] {
        for args in [
            vec!["connection", "show", name],
            vec!["connection", "test", name],
        ] {
            let run = sextant(h, &args, &[]);
            assert_ne!(run.code, 0);
            assert!(
                run.stderr.contains(&format!(
                    "cannot decrypt the secrets of connection \"{name}\": wrong master key or tampered data"
                )),
                "{}",
                run.stderr
            );
        }
        assert_eq!(&secrets_blob(h, name), blob, "nothing overwritten");
    }
    let rotate = sextant(h, &["key", "rotate"], &[]);
    assert_ne!(rotate.code, 0);
    assert!(
        rotate.stderr.contains("cannot decrypt"),
        "{}",
        rotate.stderr
    );
    assert_eq!(secrets_blob(h, "one"), tampered, "rotation changed nothing");
    assert_eq!(
        std::fs::read(h.join("master.key")).expect("key"),
        key_before
    );
    assert!(!h.join("master.key.new").exists());
}

#[test]
fn env_master_key_wrong_key_and_rotation() {
    let home = tempfile::tempdir().expect("tempdir");
    let h = home.path();
    let k1 = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let k2 = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
    let file = secrets_file(h, "s.json", WRONG_TOKEN, "http://127.0.0.1:9");
    let with = |k: &str| vec![("SEXTANT_MASTER_KEY".to_owned(), k.to_owned())];
    let run = |args: &[&str], env: &[(String, String)]| {
        let env: Vec<(&str, &str)> = env.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        sextant(h, args, &env)
    };
    let add = run(
        &[
            "connection",
            "add",
            "ci",
            "--type",
            "circleci",
            "--secrets-file",
            &file,
            "--no-verify",
        ],
        &with(&k1),
    );
    assert_eq!(add.code, 0, "{}", add.all_output());
    assert!(
        !h.join("master.key").exists(),
        "no key file when the env var supplies the key"
    );
    let wrong = run(&["connection", "show", "ci"], &with(&k2));
    assert_ne!(wrong.code, 0);
    assert!(
        wrong.stderr.contains("wrong master key or tampered data"),
        "{}",
        wrong.stderr
    );
    let invalid = run(&["connection", "show", "ci"], &with("not-a-key"));
    assert_ne!(invalid.code, 0);
    assert!(
        invalid
            .stderr
            .contains("SEXTANT_MASTER_KEY is not a valid master key"),
        "{}",
        invalid.stderr
    );
    assert_eq!(run(&["connection", "show", "ci"], &with(&k1)).code, 0);

    let needs_var = run(&["key", "rotate"], &with(&k1));
    assert_ne!(needs_var.code, 0);
    assert!(
        needs_var.stderr.contains("--new-key-env"),
        "{}",
        needs_var.stderr
    );
    let mut env = with(&k1);
    env.push(("NEW_SEXTANT_KEY".to_owned(), k2.clone()));
    let rotated = run(&["key", "rotate", "--new-key-env", "NEW_SEXTANT_KEY"], &env);
    assert_eq!(rotated.code, 0, "{}", rotated.all_output());
    assert!(
        rotated
            .stdout
            .contains("set SEXTANT_MASTER_KEY to the value of NEW_SEXTANT_KEY"),
        "{}",
        rotated.stdout
    );
    let shown = run(&["connection", "show", "ci"], &with(&k2));
    assert_eq!(shown.code, 0, "{}", shown.all_output());
    assert_ne!(run(&["connection", "show", "ci"], &with(&k1)).code, 0);
    for r in [&add, &wrong, &invalid, &rotated, &shown] {
        assert!(!r.all_output().contains(WRONG_TOKEN));
        assert!(
            !r.all_output().contains(&k1) && !r.all_output().contains(&k2),
            "key printed"
        );
    }
}

#[test]
fn key_file_is_0600_and_rotation_keeps_everything_readable() {
    let home = tempfile::tempdir().expect("tempdir");
    let h = home.path();
    let file = secrets_file(h, "s.json", WRONG_TOKEN, "http://127.0.0.1:9");
    for name in ["a", "b"] {
        let add = sextant(
            h,
            &[
                "connection",
                "add",
                name,
                "--type",
                "circleci",
                "--secrets-file",
                &file,
                "--no-verify",
            ],
            &[],
        );
        assert_eq!(add.code, 0, "{}", add.all_output());
    }
    let key_path = h.join("master.key");
    let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode(&key_path), 0o600);
    let old_key = std::fs::read(&key_path).expect("key");
    let old_blob = secrets_blob(h, "a");
    let rotated = sextant(h, &["key", "rotate"], &[]);
    assert_eq!(rotated.code, 0, "{}", rotated.all_output());
    assert!(
        rotated.stdout.contains("2 connection(s)"),
        "{}",
        rotated.stdout
    );
    assert_ne!(std::fs::read(&key_path).expect("key"), old_key);
    assert_eq!(mode(&key_path), 0o600);
    assert_ne!(secrets_blob(h, "a"), old_blob);
    for name in ["a", "b"] {
        let shown = sextant(h, &["connection", "show", name], &[]);
        assert_eq!(shown.code, 0, "{}", shown.all_output());
        let doc: Value = serde_json::from_str(&shown.stdout).expect("json");
        assert_eq!(doc["secrets"]["api_token"], MASK);
        assert_eq!(doc["secrets"]["host"], "http://127.0.0.1:9");
    }
    assert!(!contains(&db_bytes(h), WRONG_TOKEN));

    // A leftover key from an interrupted rotation is never deleted.
    let pending = h.join("master.key.new");
    std::fs::write(&pending, "leftover").expect("write");
    let refused = sextant(h, &["key", "rotate"], &[]);
    assert_ne!(refused.code, 0);
    assert!(refused.stderr.contains("interrupted"), "{}", refused.stderr);
    assert_eq!(std::fs::read_to_string(&pending).expect("kept"), "leftover");
}

#[test]
fn secrets_from_standard_input() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let home = tempfile::tempdir().expect("tempdir");
    let h = home.path();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sextant"))
        .arg("--home")
        .arg(h)
        .args([
            "connection",
            "add",
            "ci",
            "--type",
            "circleci",
            "--secrets-file",
            "-",
            "--no-verify",
        ])
        .env_remove("SEXTANT_MASTER_KEY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{{\"api_token\": \"{WRONG_TOKEN}\"}}").as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown = sextant(h, &["connection", "show", "ci"], &[]);
    let doc = json(&shown);
    assert_eq!(doc["secrets"]["api_token"], MASK);
    assert_eq!(
        doc["secrets"]["host"], "https://circleci.com",
        "default applied"
    );
    let nothing = sextant(h, &["connection", "update", "ci"], &[]);
    assert_ne!(nothing.code, 0);
    assert!(
        nothing.stderr.contains("nothing to update"),
        "{}",
        nothing.stderr
    );
    assert!(!contains(&db_bytes(h), WRONG_TOKEN));
}

/// An update of a row that was deleted (or deleted and created again) after
/// it was read writes nothing and says so, instead of passing for written.
#[test]
fn an_update_of_a_row_deleted_meanwhile_is_refused_not_lost() {
    let home = tempfile::tempdir().expect("tempdir");
    let h = home.path();
    let file = secrets_file(h, "s.json", WRONG_TOKEN, "http://127.0.0.1:9");
    let add = sextant(
        h,
        &[
            "connection",
            "add",
            "one",
            "--type",
            "circleci",
            "--secrets-file",
            &file,
            "--no-verify",
        ],
        &[],
    );
    assert_eq!(add.code, 0, "{}", add.all_output());
    let add = sextant(
        h,
        &["integration", "add", "acme", "--connection", "one"],
        &[],
    );
    assert_eq!(add.code, 0, "{}", add.all_output());

    let mut store = sextant::store::Store::open(&h.join("sextant.db")).expect("store");
    let connection = store.connection("one").expect("read").expect("stored");
    let integration = store.integration("acme").expect("read").expect("stored");
    store
        .delete_integration("acme")
        .expect("delete integration");
    store
        .delete_connection("one", "test", "2026-01-01T00:00:00.000Z")
        .expect("delete connection");
    for err in [
        store
            .update_connection(&connection)
            .expect_err("connection gone"),
        store
            .update_integration(&integration)
            .expect_err("integration gone"),
        store
            .write_definitions(&[sextant::store::Upsert::Update(connection.clone())], &[])
            .expect_err("gone in a batch too"),
    ] {
        assert!(
            matches!(err, sextant::store::StoreError::ChangedMeanwhile { .. }),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .contains("was deleted or recreated while this change was being made"),
            "{err}"
        );
    }
    assert!(store.connection("one").expect("read").is_none());
}
