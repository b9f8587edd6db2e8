//! Every error path of the connection, integration and connection-type
//! commands, on the real binary: exit code and a message that names the
//! thing and the fix. (Success paths are in connections.rs/provision.rs.)

mod common;

use common::sextant;

const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const TOKEN: &str = "cli-paths-token-0123456789abcdef";

#[test]
fn connection_and_integration_errors_name_the_thing_and_the_fix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("home");
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        path.display().to_string()
    };
    // Port 9 on loopback: nothing listens, so tests fail fast and offline.
    let good = common::secrets_file(dir.path(), "good.json", TOKEN, "http://127.0.0.1:9");
    let malformed = file("malformed.json", r#"{"api_token": 5"#);
    let missing = file("missing.json", r#"{"host": "http://127.0.0.1:9"}"#);
    let env = [("SEXTANT_MASTER_KEY", KEY)];
    let ok = |args: &[&str]| {
        let run = sextant(&home, args, &env);
        assert_eq!(run.code, 0, "{args:?}: {}", run.all_output());
        run
    };
    ok(&[
        "connection",
        "add",
        "ci",
        "--type",
        "circleci",
        "--secrets-file",
        &good,
        "--no-verify",
    ]);
    ok(&["integration", "add", "acme", "--connection", "ci"]);

    let cases: &[(&[&str], i32, &str)] = &[
        (
            &[
                "connection",
                "add",
                "x",
                "--type",
                "nope",
                "--secrets-file",
                &good,
            ],
            1,
            "\"nope\" is not a connection type; use one of circleci",
        ),
        (
            &[
                "connection",
                "add",
                "x",
                "--type",
                "circleci",
                "--secrets-file",
                &malformed,
            ],
            1,
            "the secrets are not a JSON object",
        ),
        (
            &[
                "connection",
                "add",
                "x",
                "--type",
                "circleci",
                "--secrets-file",
                &missing,
            ],
            1,
            "invalid secrets: api_token: is required",
        ),
        (
            &[
                "connection",
                "add",
                "x",
                "--type",
                "circleci",
                "--secrets-file",
                "/nonexistent/s.json",
            ],
            1,
            "cannot read the secrets file /nonexistent/s.json",
        ),
        (
            &[
                "connection",
                "add",
                "ci",
                "--type",
                "circleci",
                "--secrets-file",
                &good,
                "--no-verify",
            ],
            1,
            "connection \"ci\" already exists; pick another name or update it instead",
        ),
        (
            &[
                "connection",
                "add",
                "y",
                "--type",
                "circleci",
                "--secrets-file",
                &good,
            ],
            1,
            "failed verification",
        ),
        (
            &["connection", "show", "nope"],
            1,
            "no connection named \"nope\"; list them with: sextant connection list",
        ),
        (
            &["connection", "test", "ci"],
            1,
            "test failed: could not reach GET /api/v2/me",
        ),
        (
            &["connection", "update", "ci"],
            1,
            "nothing to update; pass --secrets-file",
        ),
        (
            &["connection", "update", "nope", "--description", "d"],
            1,
            "no connection named \"nope\"",
        ),
        (
            &["connection", "list", "--test-status", "maybe"],
            2,
            "\"maybe\" is not a test status; use succeeded, failed or untested",
        ),
        (
            &["connection", "delete", "ci"],
            1,
            "connection \"ci\" is used by integration(s) acme; delete or move them first, or run again with --force",
        ),
        (
            &["connection-type", "show", "nope"],
            1,
            "no connection type \"nope\"; known types: circleci",
        ),
        (
            &["integration", "add", "acme", "--connection", "ci"],
            1,
            "integration \"acme\" already exists",
        ),
        (
            &["integration", "add", "b", "--connection", "nope"],
            1,
            "no connection named \"nope\"",
        ),
        (
            &[
                "integration",
                "add",
                "b",
                "--connection",
                "ci",
                "--interval",
                "2x",
            ],
            1,
            "\"2x\" is not an interval; try DISABLED, 30m, 1h",
        ),
        (
            &[
                "integration",
                "add",
                "b",
                "--connection",
                "ci",
                "--interval",
                "cron:* *",
            ],
            1,
            "is not a cron expression; write cron: followed by 5 to 7 fields",
        ),
        (
            &[
                "integration",
                "add",
                "b",
                "--connection",
                "ci",
                "--interval",
                "cron:99 * * * *",
            ],
            1,
            "\"cron:99 * * * *\" is not a valid cron expression; fields are minute hour",
        ),
        (
            &[
                "integration",
                "add",
                "b",
                "--connection",
                "ci",
                "--set",
                "novalue",
            ],
            1,
            "--set \"novalue\": write KEY=VALUE",
        ),
        (
            &[
                "integration",
                "add",
                "b",
                "--connection",
                "ci",
                "--set",
                "unknown_setting=1",
            ],
            1,
            "settings: unknown field `unknown_setting`",
        ),
        (
            &["integration", "update", "nope", "--description", "d"],
            1,
            "no integration named \"nope\"; list them with: sextant integration list",
        ),
        (
            &["integration", "show", "nope"],
            1,
            "no integration named \"nope\"",
        ),
        (
            &["integration", "delete", "nope"],
            1,
            "no integration named \"nope\"",
        ),
        (
            &["integration", "list", "--enabled", "maybe"],
            2,
            "invalid value 'maybe'",
        ),
    ];
    for (args, code, message) in cases {
        let run = sextant(&home, args, &env);
        assert_eq!(run.code, *code, "{args:?}: {}", run.all_output());
        // A failed connection test is a result, printed on stdout.
        let out = run.all_output();
        assert!(
            out.contains(message),
            "{args:?}: expected {message:?} in:\n{out}"
        );
        assert!(
            !run.all_output().contains(TOKEN),
            "{args:?} printed the token"
        );
    }

    // After a forced delete, the integration cannot be enabled without a
    // new connection, and then it can.
    ok(&["connection", "delete", "ci", "--force"]);
    let refused = sextant(&home, &["integration", "update", "acme", "--enable"], &env);
    assert_eq!(refused.code, 1);
    assert!(
        refused.stderr.contains(
            "integration \"acme\" has no connection (it was deleted); pass --connection CONN"
        ),
        "{}",
        refused.stderr
    );
    ok(&[
        "connection",
        "add",
        "ci2",
        "--type",
        "circleci",
        "--secrets-file",
        &good,
        "--no-verify",
    ]);
    ok(&[
        "integration",
        "update",
        "acme",
        "--connection",
        "ci2",
        "--enable",
    ]);
    let shown = ok(&["integration", "show", "acme"]);
    let shown: serde_json::Value = serde_json::from_str(&shown.stdout).expect("json");
    assert_eq!(
        (shown["enabled"].as_bool(), shown["connection"].as_str()),
        (Some(true), Some("ci2"))
    );
}

#[test]
fn token_create_names_a_bad_or_zero_expiry() {
    let home = tempfile::tempdir().expect("tempdir");
    let h = home.path();
    let soon = sextant(
        h,
        &[
            "token",
            "create",
            "bot",
            "--scope",
            "events:read",
            "--expires",
            "soon",
        ],
        &[],
    );
    assert_eq!(soon.code, 2, "{}", soon.all_output());
    assert!(
        soon.stderr
            .contains("\"soon\" is not a duration; try 500ms, 30s or 2m"),
        "{}",
        soon.stderr
    );
    let zero = sextant(
        h,
        &[
            "token",
            "create",
            "bot",
            "--scope",
            "events:read",
            "--expires",
            "0s",
        ],
        &[],
    );
    assert_ne!(zero.code, 0, "{}", zero.all_output());
    assert!(
        zero.stderr.contains("expires must be between 1s and 3650d"),
        "{}",
        zero.stderr
    );
    assert!(!zero.stdout.contains("sxt_"), "no token was printed");
}
