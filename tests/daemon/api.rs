//! The HTTP API: tokens and scopes, integrations, a manual sync with its
//! run, graph and events, and bad requests.

use serde_json::{Value, json};
use sextant::fixtures::{FIXTURE_TOKEN, Fault, FixtureServer, FixtureSet};

use crate::support::{Daemon, JsonBody, client, eventually, send, setup, sextant_async, token};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_scopes_401_403_and_admin_created_service_tokens() {
    let server = FixtureServer::start(FixtureSet::Day1)
        .await
        .expect("server");
    let home = tempfile::tempdir().expect("tempdir");
    let h = home.path();
    setup(h, &server.base_url(), "DISABLED").await;
    let admin = token(h, "admin", &["admin:token"]).await;
    let reader = token(h, "bot-reader", &["connections:read"]).await;
    let daemon = Daemon::start(h, "5s");
    let http = client();
    let url = daemon.api("/api/v1/connection");

    let (status, health) = send(http.get(daemon.api("/healthz"))).await;
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));

    let (status, body) = send(http.get(&url)).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .expect("detail")
            .contains("Bearer sxt_")
    );
    let (status, body) = send(http.get(&url).bearer_auth("sxt_not-a-real-token")).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .expect("detail")
            .contains("unknown or revoked token")
    );
    let (status, _) = send(http.get(&url).header("Authorization", "Basic abc")).await;
    assert_eq!(status, 401);

    let (status, body) = send(http.get(&url).bearer_auth(&reader)).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = send(
        http.delete(daemon.api("/api/v1/connection/ci_test"))
            .bearer_auth(&reader),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let detail = body["detail"].as_str().expect("detail");
    assert!(
        detail.contains("\"bot-reader\" lacks the scope \"connections:delete\""),
        "{detail}"
    );

    // An admin token creates a service token, returned once.
    let create = |body: Value| {
        http.post(daemon.api("/api/v1/tokens"))
            .bearer_auth(&admin)
            .json_body(&body)
    };
    let (status, body) = send(create(json!({
        "username": "ci", "name": "bot-sync", "token_type": "service",
        "scopes": ["sync:run", "integrations:read"], "expires": "30d"
    })))
    .await;
    assert_eq!(status, 201, "{body}");
    let minted = body["token"].as_str().expect("token").to_owned();
    assert!(minted.starts_with("sxt_"));
    assert_eq!(body["token_type"], "service");
    assert!(body["expires_at"].is_string());
    let (status, body) = send(create(json!({
        "username": "ci", "name": "sync", "token_type": "service", "scopes": ["sync:run"]
    })))
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .expect("detail")
            .contains("must start with \"bot-\"")
    );
    let (status, body) = send(create(json!({
        "username": "ci", "name": "bot-x", "token_type": "service", "scopes": ["graph:write"]
    })))
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .expect("detail")
            .contains("\"graph:write\" is not a scope")
    );
    let (status, body) = send(
        http.post(daemon.api("/api/v1/tokens"))
            .bearer_auth(&reader)
            .json_body(&json!({"username": "x", "name": "bot-y", "token_type": "service", "scopes": ["sync:run"]})),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .expect("detail")
            .contains("admin:token")
    );

    // The minted token works for its scopes only.
    let (status, body) = send(http.get(daemon.api("/api/v1/runs")).bearer_auth(&minted)).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = send(http.get(&url).bearer_auth(&minted)).await;
    assert_eq!(status, 403);

    // Listed without the token; last use recorded; revoked → 401.
    let list = sextant_async(h, &["token", "list", "--json"], &[]).await;
    assert_eq!(list.code, 0, "{}", list.all_output());
    let listed: Value = serde_json::from_str(&list.stdout).expect("json");
    let sync_bot = listed
        .as_array()
        .expect("array")
        .iter()
        .find(|t| t["name"] == "bot-sync")
        .expect("bot-sync listed");
    assert!(sync_bot["last_used_at"].is_string(), "{sync_bot}");
    let revoke = sextant_async(h, &["token", "revoke", "bot-sync"], &[]).await;
    assert_eq!(revoke.code, 0, "{}", revoke.all_output());
    let (status, _) = send(http.get(daemon.api("/api/v1/runs")).bearer_auth(&minted)).await;
    assert_eq!(status, 401);

    // An expired token is refused (expiry written directly in the past).
    let expired = token(h, "bot-old", &["connections:read"]).await;
    let db = rusqlite::Connection::open(h.join("sextant.db")).expect("db");
    db.execute(
        "UPDATE api_tokens SET expires_at = '2000-01-01T00:00:00.000Z' WHERE name = 'bot-old'",
        [],
    )
    .expect("expire");
    let (status, body) = send(http.get(&url).bearer_auth(&expired)).await;
    assert_eq!(status, 401, "{body}");
    assert!(body["detail"].as_str().expect("detail").contains("expired"));

    let log = daemon.log();
    assert_eq!(daemon.terminate().await, 0);
    for secret in [&admin, &reader, &minted, &expired] {
        assert!(!log.contains(secret.as_str()), "a token reached the log");
        assert!(!list.all_output().contains(secret.as_str()));
    }
    assert!(!log.contains(FIXTURE_TOKEN));
    // Only hashes are stored.
    let db_bytes = std::fs::read(h.join("sextant.db")).expect("db");
    let wal = std::fs::read(h.join("sextant.db-wal")).unwrap_or_default();
    for secret in [&admin, &reader, &minted] {
        let needle = secret.as_bytes();
        for bytes in [&db_bytes, &wal] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "token stored in clear"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_sync_runs_graph_and_events_and_409_while_running() {
    let server = FixtureServer::start(FixtureSet::Day1)
        .await
        .expect("server");
    let home = tempfile::tempdir().expect("tempdir");
    let h = home.path();
    setup(h, &server.base_url(), "DISABLED").await;
    let bot = token(
        h,
        "bot-all",
        &["sync:run", "integrations:read", "graph:read", "events:read"],
    )
    .await;
    let daemon = Daemon::start(h, "5s");
    let http = client();
    let api = |p: &str| daemon.api(&format!("/api/v1{p}"));

    // A long poll started before the run returns its events.
    let poll = tokio::spawn({
        let http = http.clone();
        let url = api("/events?since=0&wait=60");
        let bot = bot.clone();
        async move { send(http.get(url).bearer_auth(bot)).await }
    });
    let (status, body) = send(http.post(api("/integrations/acme/sync")).bearer_auth(&bot)).await;
    assert_eq!(status, 202, "{body}");
    let sync_id = body["sync_id"].as_i64().expect("sync id");
    let run = eventually("the run to finish", || async {
        let (_, run) = send(http.get(api(&format!("/runs/{sync_id}"))).bearer_auth(&bot)).await;
        (run["status"] != "running").then_some(run)
    })
    .await;
    assert_eq!(run["status"], "success", "{run}");
    assert!(
        run["steps"].as_array().is_some_and(|s| !s.is_empty()),
        "{run}"
    );
    let (status, polled) = poll.await.expect("join");
    assert_eq!(status, 200, "{polled}");
    assert!(
        polled["items"].as_array().is_some_and(|e| !e.is_empty()),
        "{polled}"
    );

    let (status, events) = send(
        http.get(api("/events?since=0&integration=acme"))
            .bearer_auth(&bot),
    )
    .await;
    assert_eq!(status, 200);
    let items = events["items"].as_array().expect("items");
    assert_eq!(items[0]["seq"], 1);
    assert_eq!(events["next_since"], items.last().expect("last")["seq"]);
    let (_, later) = send(
        http.get(api(&format!("/events?since={}", events["next_since"])))
            .bearer_auth(&bot),
    )
    .await;
    assert_eq!(later["items"], json!([]));

    // The graph is the same document as `graph export`.
    let response = http
        .get(api("/graph?integration=acme&format=json"))
        .bearer_auth(&bot)
        .send()
        .await
        .expect("graph");
    assert_eq!(response.status().as_u16(), 200);
    let graph = response.text().await.expect("body");
    let cli = sextant_async(h, &["graph", "export", "--integration", "acme"], &[]).await;
    assert_eq!(graph, cli.stdout);
    let (status, body) = send(http.get(api("/graph?format=svg")).bearer_auth(&bot)).await;
    assert_eq!(status, 422);
    assert!(
        body["detail"]
            .as_str()
            .expect("detail")
            .contains("json or dot")
    );

    // 409 while a run is going; 404 for an unknown integration.
    server.inject("/api/v2/workflow/*", Fault::Hang);
    let (status, body) = send(http.post(api("/integrations/acme/sync")).bearer_auth(&bot)).await;
    assert_eq!(status, 202, "{body}");
    let (status, body) = send(http.post(api("/integrations/acme/sync")).bearer_auth(&bot)).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .expect("detail")
            .contains("already syncing")
    );
    let (status, body) = send(http.post(api("/integrations/nope/sync")).bearer_auth(&bot)).await;
    assert_eq!(status, 404, "{body}");
    let metrics = http
        .get(daemon.api("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("sextant_sync_runs_total{integration=\"acme\",status=\"success\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sextant_sync_running{integration=\"acme\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "sextant_source_http_requests_total{integration=\"acme\",source=\"circleci\"}"
        ),
        "{metrics}"
    );
    server.clear_faults();
    eventually("the second run to finish", || async {
        let (_, runs) = send(http.get(api("/runs?integration=acme")).bearer_auth(&bot)).await;
        runs["items"]
            .as_array()
            .is_some_and(|r| r.len() == 2 && r.iter().all(|r| r["status"] == "success"))
            .then_some(())
    })
    .await;
    assert_eq!(daemon.terminate().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_whole_with_a_message() {
    let server = FixtureServer::start(FixtureSet::Day1)
        .await
        .expect("server");
    let home = tempfile::tempdir().expect("tempdir");
    let h = home.path();
    setup(h, &server.base_url(), "DISABLED").await;
    let all = token(
        h,
        "bot-all",
        &[
            "connections:create",
            "connections:read-update",
            "integrations:create",
            "integrations:read-update",
        ],
    )
    .await;
    let limited = token(h, "bot-update", &["connections:read-update"]).await;
    let creator = token(h, "bot-create", &["connections:create"]).await;
    let daemon = Daemon::start(h, "5s");
    let http = client();
    let api = |p: &str| daemon.api(&format!("/api/v1{p}"));
    let raw = |method: reqwest::Method, path: &str, body: String| {
        http.request(method, api(path))
            .bearer_auth(&all)
            .header("Content-Type", "application/json")
            .body(body)
    };

    let (status, body) = send(raw(
        reqwest::Method::PATCH,
        "/connection",
        "[{\"name\": ".into(),
    ))
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .expect("detail")
            .contains("invalid request body")
    );
    let (status, body) = send(raw(
        reqwest::Method::PATCH,
        "/connection",
        json!([{"name": "x", "connection_type": "circleci", "colour": "red"}]).to_string(),
    ))
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .expect("detail")
            .contains("unknown field `colour`")
    );
    let (status, body) = send(raw(
        reqwest::Method::POST,
        "/integrations",
        json!({"name": "x", "connection": "ci-test", "enabled": "yes"}).to_string(),
    ))
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .expect("detail")
            .contains("invalid type")
    );
    let (status, body) = send(raw(
        reqwest::Method::POST,
        "/integrations",
        json!({"name": "x", "connection": "ci-test", "interval": "2x"}).to_string(),
    ))
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .expect("detail")
            .contains("\"2x\" is not an interval")
    );
    let big = format!("[{}]", "{\"name\": \"x\"},".repeat(100_000));
    let (status, body) = send(raw(reqwest::Method::PATCH, "/connection", big)).await;
    assert_eq!(status, 413, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .expect("detail")
            .contains("larger than")
    );
    let (status, body) = send(http.get(api("/connection?page=abc")).bearer_auth(&all)).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .expect("detail")
            .contains("invalid query")
    );

    // A list with one invalid item writes nothing.
    let (status, body) = send(raw(
        reqwest::Method::PATCH,
        "/connection",
        json!([
            {"name": "fine", "connection_type": "circleci", "secrets": {"api_token": "t"}},
            {"name": "incomplete", "connection_type": "circleci"}
        ])
        .to_string(),
    ))
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .expect("detail")
            .contains("[1]: a new connection needs its secrets")
    );
    // A token that may update but not create is refused before any write.
    let (status, body) = send(
        http.patch(api("/connection"))
            .bearer_auth(&limited)
            .json_body(&json!([
                {"key": "ci_test", "description": "changed"},
                {"name": "new-one", "connection_type": "circleci", "secrets": {"api_token": "t"}}
            ])),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .expect("detail")
            .contains("connections:create")
    );
    let list = sextant_async(h, &["connection", "list", "--json"], &[]).await;
    let page: Value = serde_json::from_str(&list.stdout).expect("json");
    assert_eq!(page["total"], 1, "{page}");
    assert_eq!(page["items"][0]["description"], Value::Null, "{page}");
    let integrations = sextant_async(h, &["integration", "list", "--json"], &[]).await;
    let listed: Value = serde_json::from_str(&integrations.stdout).expect("json");
    assert_eq!(listed["total"], 1, "{listed}");

    // Creating needs only connections:create.
    let (status, body) = send(
        http.patch(api("/connection"))
            .bearer_auth(&creator)
            .json_body(&json!([
                {"name": "new-one", "connection_type": "circleci", "secrets": {"api_token": "t"}}
            ])),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["succeeded"][0]["key"], "new_one", "{body}");
    assert_eq!(daemon.terminate().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integrations_crud_round_trips() {
    let server = FixtureServer::start(FixtureSet::Day1)
        .await
        .expect("server");
    let home = tempfile::tempdir().expect("tempdir");
    let h = home.path();
    setup(h, &server.base_url(), "DISABLED").await;
    let all = token(
        h,
        "bot-int",
        &[
            "integrations:create",
            "integrations:read-update",
            "integrations:delete",
        ],
    )
    .await;
    let reader = token(h, "bot-read", &["integrations:read"]).await;
    let daemon = Daemon::start(h, "5s");
    let http = client();
    let api = |p: &str| daemon.api(&format!("/api/v1{p}"));

    let (status, created) = send(http.post(api("/integrations")).bearer_auth(&all).json_body(
        &json!({
            "name": "beta", "connection": "ci-test", "account_name": "Beta",
            "interval": "4h", "tag_account_name": true,
            "settings": {"max_pipeline_pages": 2}
        }),
    ))
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["connection"], "ci-test");
    assert_eq!(created["settings"]["max_pipeline_pages"], 2);
    let (status, body) = send(
        http.post(api("/integrations"))
            .bearer_auth(&all)
            .json_body(&json!({"name": "beta", "connection": "ci-test"})),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = send(
        http.post(api("/integrations"))
            .bearer_auth(&reader)
            .json_body(&json!({"name": "gamma", "connection": "ci-test"})),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .expect("detail")
            .contains("integrations:create")
    );

    let (status, list) = send(http.get(api("/integrations")).bearer_auth(&reader)).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["total"], 2);
    let (status, shown) = send(http.get(api("/integrations/beta")).bearer_auth(&reader)).await;
    assert_eq!(status, 200);
    assert_eq!(shown, created);
    let (status, updated) = send(
        http.patch(api("/integrations/beta"))
            .bearer_auth(&all)
            .json_body(&json!({"enabled": false, "description": "paused"})),
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(
        (
            updated["enabled"].as_bool(),
            updated["description"].as_str()
        ),
        (Some(false), Some("paused"))
    );
    for (query, total) in [
        ("?enabled=false", 1),
        ("?enabled=true&search=ACME", 1),
        ("?search=paused", 1),
        ("?connection=ci_test&size=1&page=2", 2),
        ("?search=nothing-like-it", 0),
    ] {
        let (status, page) = send(
            http.get(api(&format!("/integrations{query}")))
                .bearer_auth(&reader),
        )
        .await;
        assert_eq!(
            (status, page["total"].clone()),
            (200, total.into()),
            "{query}: {page}"
        );
    }
    let (status, page) = send(
        http.get(api("/integrations?connection=ci_test&size=1&page=2"))
            .bearer_auth(&reader),
    )
    .await;
    assert_eq!(
        (status, page["items"].as_array().map(Vec::len)),
        (200, Some(1)),
        "{page}"
    );
    let (status, body) = send(
        http.get(api("/integrations?colour=red"))
            .bearer_auth(&reader),
    )
    .await;
    assert!(status == 400 || status == 422, "{status} {body}");
    let (status, body) = send(
        http.patch(api("/integrations/beta"))
            .bearer_auth(&all)
            .json_body(&json!({"name": "renamed"})),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    let (status, _) = send(http.delete(api("/integrations/beta")).bearer_auth(&all)).await;
    assert_eq!(status, 204);
    let (status, body) = send(http.get(api("/integrations/beta")).bearer_auth(&reader)).await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .expect("detail")
            .contains("\"beta\"")
    );
    assert_eq!(daemon.terminate().await, 0);
}

/// A token that may neither create nor update connections is refused
/// before any lookup: its 403 is the same whether the connection exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_patch_without_its_scopes_reveals_nothing() {
    let server = sextant::fixtures::FixtureServer::start(sextant::fixtures::FixtureSet::Day1)
        .await
        .expect("server");
    let home = tempfile::tempdir().expect("tempdir");
    let h = home.path();
    crate::support::setup(h, &server.base_url(), "DISABLED").await;
    let reader = token(h, "bot-events", &["events:read"]).await;
    let daemon = Daemon::start(h, "5s");
    let http = client();
    let mut details = Vec::new();
    for name in ["ci-test", "no-such-connection"] {
        let (status, body) = send(
            http.patch(daemon.api("/api/v1/connection"))
                .bearer_auth(&reader)
                .json_body(&json!([{"name": name, "description": "x"}])),
        )
        .await;
        assert_eq!(status, 403, "{body}");
        details.push(body["detail"].clone());
    }
    assert_eq!(details[0], details[1]);
    assert!(
        details[0]
            .as_str()
            .is_some_and(|d| d.contains("connections:read-update")),
        "{details:?}"
    );
    assert_eq!(daemon.terminate().await, 0);
}
