//! The Fides-shaped connection API: types and secret schema, bulk PATCH,
//! filtered pages, PUT secret with and without verify, test, show, delete.

use serde_json::{Value, json};
use sextant::fixtures::{FIXTURE_TOKEN, FixtureServer, FixtureSet};

use crate::support::{Daemon, JsonBody, client, send, token};

const WRONG_TOKEN: &str = "wrong-token-0123456789abcdef";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fides_shaped_connection_endpoints_round_trip() {
    let server = FixtureServer::start(FixtureSet::Day1)
        .await
        .expect("server");
    let home = tempfile::tempdir().expect("tempdir");
    let h = home.path();
    let host = server.base_url();
    let all = token(
        h,
        "bot-conn",
        &[
            "connections:read-update",
            "connections:create",
            "connections:delete",
        ],
    )
    .await;
    let daemon = Daemon::start(h, "5s");
    let http = client();
    let api = |p: &str| daemon.api(&format!("/api/v1{p}"));
    let mut bodies = Vec::new();

    // Connection types and the secret schema.
    let (status, types) = send(
        http.get(api("/connection_type?search=circle"))
            .bearer_auth(&all),
    )
    .await;
    assert_eq!(status, 200, "{types}");
    assert_eq!(types["total"], 1);
    assert_eq!(types["items"][0]["identifier"], "circleci");
    let (status, schema) = send(
        http.get(api("/connection_type/circleci/secret"))
            .bearer_auth(&all),
    )
    .await;
    assert_eq!(status, 200, "{schema}");
    assert!(schema["properties"]["api_token"].is_object(), "{schema}");
    let (status, body) = send(
        http.get(api("/connection_type/nope/secret"))
            .bearer_auth(&all),
    )
    .await;
    assert_eq!(status, 404);
    assert!(
        body["detail"]
            .as_str()
            .expect("detail")
            .contains("circleci")
    );

    // PATCH creates two (one verified, one whose verification fails).
    let (status, created) = send(
        http.patch(api("/connection?verify=true"))
            .bearer_auth(&all)
            .json_body(&json!([
                {"name": "ci-prod", "connection_type": "circleci", "description": "prod",
                 "secrets": {"api_token": FIXTURE_TOKEN, "host": host}},
                {"name": "ci-bad", "connection_type": "circleci",
                 "secrets": {"api_token": WRONG_TOKEN, "host": host}}
            ])),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["succeeded"][0]["key"], "ci_prod");
    assert_eq!(created["succeeded"][0]["last_test_succeeded"], true);
    assert_eq!(created["failed"][0]["data"]["name"], "ci-bad");
    assert!(
        created["failed"][0]["message"]
            .as_str()
            .expect("message")
            .contains("failed verification")
    );
    bodies.push(created);
    // A connection created disabled is stored disabled in that one write.
    let (status, created) = send(http.patch(api("/connection")).bearer_auth(&all).json_body(
        &json!([
            {"name": "ci-off", "connection_type": "circleci", "disabled": true,
             "secrets": {"api_token": FIXTURE_TOKEN, "host": host}}
        ]),
    ))
    .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["succeeded"][0]["disabled"], true, "{created}");
    let (status, shown) = send(http.get(api("/connection/ci_off")).bearer_auth(&all)).await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["disabled"], true, "{shown}");
    assert_eq!(shown["disabled_reason"], "disabled by a user", "{shown}");
    let (status, _) = send(http.delete(api("/connection/ci_off")).bearer_auth(&all)).await;
    assert_eq!(status, 204);
    // PATCH updates by key.
    let (status, updated) =
        send(http.patch(api("/connection")).bearer_auth(&all).json_body(
            &json!([{"key": "ci_prod", "description": "production", "disabled": true}]),
        ))
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["succeeded"][0]["description"], "production");
    assert_eq!(updated["succeeded"][0]["disabled"], true);
    // HTTP settings alone are an update too; a bad timeout refuses the list.
    let (status, updated) = send(
        http.patch(api("/connection"))
            .bearer_auth(&all)
            .json_body(&json!([{"key": "ci_prod", "requests_per_second": 7, "timeout": "45s"}])),
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["succeeded"][0]["requests_per_second"], 7);
    assert_eq!(updated["succeeded"][0]["timeout"], "45s");
    let (status, body) = send(
        http.patch(api("/connection"))
            .bearer_auth(&all)
            .json_body(&json!([{"key": "ci_prod", "timeout": "soon"}])),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("is not a duration"), "{body}");
    // A secret sent where an object belongs is not quoted back.
    let misplaced = "misplaced-secret-0123456789";
    let (status, body) =
        send(http.patch(api("/connection")).bearer_auth(&all).json_body(
            &json!([{"name": "x", "connection_type": "circleci", "secrets": misplaced}]),
        ))
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("invalid type: string"), "{body}");
    assert!(!body.to_string().contains(misplaced), "{body}");

    // GET with filters and pages.
    let (status, page) = send(
        http.get(api(
            "/connection?disabled=true&connection_type=circleci&page=1&size=10",
        ))
        .bearer_auth(&all),
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        (
            page["total"].as_u64(),
            page["page"].as_u64(),
            page["size"].as_u64()
        ),
        (Some(1), Some(1), Some(10))
    );
    assert_eq!(page["items"][0]["name"], "ci-prod");
    let (_, none) = send(
        http.get(api("/connection?search=nothing-matches"))
            .bearer_auth(&all),
    )
    .await;
    assert_eq!(none["total"], 0);
    assert_eq!(none["items"], json!([]));
    let (status, body) = send(
        http.get(api("/connection?test_status=maybe"))
            .bearer_auth(&all),
    )
    .await;
    assert_eq!(status, 422);
    assert!(
        body["detail"]
            .as_str()
            .expect("detail")
            .contains("succeeded, failed or untested")
    );
    bodies.push(page);

    // PUT secret: a wrong token with verify is refused and nothing is saved.
    let (status, refused) = send(
        http.put(api("/connection/ci_prod/secret?verify=true"))
            .bearer_auth(&all)
            .json_body(&json!({"api_token": WRONG_TOKEN, "host": host})),
    )
    .await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["test_status"], "failed");
    assert!(
        refused["failure_reason"]
            .as_str()
            .expect("reason")
            .contains("401")
    );
    assert!(refused["msg"].as_str().expect("msg").contains("not saved"));
    bodies.push(refused);
    // Test still passes with the saved secrets.
    let (status, tested) = send(http.get(api("/connection/ci_prod/test")).bearer_auth(&all)).await;
    assert_eq!(status, 200, "{tested}");
    assert_eq!(tested["test_status"], "succeeded");
    assert_eq!(tested["failure_reason"], Value::Null);
    // Without verify the secrets are saved untested; then the test fails.
    let (status, saved) = send(
        http.put(api("/connection/ci_prod/secret?verify=false"))
            .bearer_auth(&all)
            .json_body(&json!({"api_token": WRONG_TOKEN, "host": host})),
    )
    .await;
    assert_eq!(status, 200, "{saved}");
    assert_eq!(saved["test_status"], "untested");
    let (_, tested) = send(http.get(api("/connection/ci_prod/test")).bearer_auth(&all)).await;
    assert_eq!(tested["test_status"], "failed");
    assert!(
        tested["failure_reason"]
            .as_str()
            .expect("reason")
            .contains("401")
    );
    bodies.push(tested);
    // Unknown secret field: 422 naming it, value not echoed.
    let (status, body) = send(
        http.put(api("/connection/ci_prod/secret?verify=false"))
            .bearer_auth(&all)
            .json_body(&json!({"api_token": "x", "token": "s3cr3t-value"})),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    let detail = body["detail"].as_str().expect("detail");
    assert!(
        detail.contains("no field \"token\"") && !detail.contains("s3cr3t-value"),
        "{detail}"
    );
    // Good secrets again, verified.
    let (status, saved) = send(
        http.put(api("/connection/ci_prod/secret"))
            .bearer_auth(&all)
            .json_body(&json!({"api_token": FIXTURE_TOKEN, "host": host})),
    )
    .await;
    assert_eq!(
        (status, saved["test_status"].as_str()),
        (200, Some("succeeded")),
        "{saved}"
    );
    // Shown masked.
    let (status, shown) = send(http.get(api("/connection/ci-prod")).bearer_auth(&all)).await;
    assert_eq!(status, 200);
    assert_eq!(shown["secrets"]["api_token"], "**********");
    bodies.push(shown);

    // DELETE; then it is gone.
    let (status, _) = send(http.delete(api("/connection/ci_prod")).bearer_auth(&all)).await;
    assert_eq!(status, 204);
    let (status, body) = send(http.delete(api("/connection/ci_prod")).bearer_auth(&all)).await;
    assert_eq!(status, 404, "{body}");
    let (_, page) = send(http.get(api("/connection")).bearer_auth(&all)).await;
    assert_eq!(page["total"], 0);

    let log = daemon.log();
    assert_eq!(daemon.terminate().await, 0);
    for body in bodies {
        let text = body.to_string();
        assert!(
            !text.contains(FIXTURE_TOKEN) && !text.contains(WRONG_TOKEN),
            "{text}"
        );
    }
    assert!(!log.contains(FIXTURE_TOKEN) && !log.contains(WRONG_TOKEN) && !log.contains(&all));
}

/// Connection writes run on blocking threads: while another process holds
/// the database's write lock, PATCHes wait for it without taking the
/// daemon's async workers, so other requests are still answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_writes_waiting_on_a_locked_database_do_not_stall_the_api() {
    let server = FixtureServer::start(FixtureSet::Day1)
        .await
        .expect("server");
    let home = tempfile::tempdir().expect("tempdir");
    let h = home.path();
    crate::support::setup(h, &server.base_url(), "DISABLED").await;
    let admin = token(h, "bot-conn", &["connections:read-update"]).await;
    let daemon = Daemon::start(h, "5s");
    let http = client();

    let lock = rusqlite::Connection::open(h.join("sextant.db")).expect("db");
    lock.execute_batch("BEGIN IMMEDIATE")
        .expect("hold the write lock");
    // More waiting writes than the daemon has async workers (two).
    let patches: Vec<_> = (0..4)
        .map(|n| {
            let request = http
                .patch(daemon.api("/api/v1/connection"))
                .bearer_auth(&admin)
                .json_body(&json!([{"name": "ci-test", "description": format!("edit {n}")}]));
            tokio::spawn(send(request))
        })
        .collect();
    // Let them reach the lock (a settle delay, not a timing assertion).
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let (status, _) = send(http.get(daemon.api("/healthz"))).await;
    assert_eq!(status, 200);
    assert!(
        patches.iter().all(|p| !p.is_finished()),
        "the writes were answered before the lock was released: they timed out, blocking the API meanwhile"
    );
    lock.execute_batch("COMMIT").expect("release the lock");
    for patch in patches {
        let (status, body) = patch.await.expect("join");
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["failed"], json!([]), "{body}");
    }
    assert_eq!(daemon.terminate().await, 0);
}
