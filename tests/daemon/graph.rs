//! `GET /api/v1/graph` streamed: the same bytes as `graph export` (JSON and
//! dot, with and without `--integration`), a large graph in many chunks,
//! store errors before and after the first byte, and a client that leaves
//! mid-download.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;
use sextant::fixtures::{FixtureServer, FixtureSet};
use sextant::graph::{Collected, Entity, Relationship};
use sextant::run::{RunStatus, StepOutcome};
use sextant::store::Store;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{Daemon, client, send, setup, sextant_async, token};

/// The integration the large graph is stored under.
const BULK: &str = "bulk";

/// Stores `n` entities with a `filler`-byte description each, entity `i`
/// HAS entity `i + 1`, under integration [`BULK`] through the store API.
fn store_large_graph(home: &Path, n: usize, filler: usize) {
    let mut collected = Collected::new();
    let key = |i: usize| format!("bulk_node:{i:08}");
    let filler = "x".repeat(filler);
    for i in 0..n {
        let entity = Entity::new(key(i), "bulk_node", "Configuration")
            .with("name", format!("node {i}"))
            .with("displayName", format!("Node \"{i}\""))
            .with("description", filler.clone())
            .with("number", i as u64);
        collected.insert_entity(entity).expect("entity");
    }
    for i in 0..n {
        let rel =
            Relationship::by_keys("HAS", "bulk_node", &key(i), "bulk_node", &key((i + 1) % n));
        collected.insert_relationship(rel).expect("relationship");
    }
    let mut complete: BTreeSet<String> = BTreeSet::from(["bulk_node".to_owned()]);
    complete.extend(collected.relationships().map(|r| r.ty.to_string()));
    let steps = [StepOutcome::new("bulk", complete.iter().cloned().collect())];
    let mut store = Store::open(&home.join("sextant.db")).expect("store");
    let sync_id = store.begin_run(BULK).expect("begin");
    store
        .commit_run(
            sync_id,
            BULK,
            &collected,
            &complete,
            &steps,
            RunStatus::Success,
        )
        .expect("commit");
}

/// `graph export ARGS` through the real binary; its stdout.
async fn cli_export(home: &Path, args: &[&str]) -> String {
    let mut all = vec!["graph", "export"];
    all.extend_from_slice(args);
    let run = sextant_async(home, &all, &[]).await;
    assert_eq!(run.code, 0, "{}", run.all_output());
    run.stdout
}

/// Status, content type and body of a graph request.
async fn get_graph(daemon: &Daemon, token: &str, query: &str) -> (u16, String, String) {
    let response = client()
        .get(daemon.api(&format!("/api/v1/graph{query}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap_or_else(|e| panic!("graph request {query}: {e}; log:\n{}", daemon.log()));
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = response
        .text()
        .await
        .unwrap_or_else(|e| panic!("graph body {query}: {e}; log:\n{}", daemon.log()));
    (status, content_type, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_streamed_graph_is_the_cli_export_in_json_and_dot_with_and_without_a_filter() {
    let server = FixtureServer::start(FixtureSet::Day1)
        .await
        .expect("server");
    let home = tempfile::tempdir().expect("tempdir");
    let h = home.path();
    setup(h, &server.base_url(), "DISABLED").await;
    let add = sextant_async(
        h,
        &[
            "integration",
            "add",
            "beta",
            "--connection",
            "ci-test",
            "--account-name",
            "Beta",
            "--interval",
            "DISABLED",
        ],
        &[],
    )
    .await;
    assert_eq!(add.code, 0, "{}", add.all_output());
    for name in ["acme", "beta"] {
        let run = sextant_async(h, &["sync", name], &[]).await;
        assert_eq!(run.code, 0, "{}", run.all_output());
    }
    let bot = token(h, "bot-graph", &["graph:read"]).await;
    let daemon = Daemon::start(h, "5s");

    let cases: [(&str, &[&str], &str); 5] = [
        ("", &[], "application/json"),
        ("?format=json", &["--format", "json"], "application/json"),
        (
            "?integration=acme",
            &["--integration", "acme"],
            "application/json",
        ),
        ("?format=dot", &["--format", "dot"], "text/vnd.graphviz"),
        (
            "?integration=beta&format=dot",
            &["--integration", "beta", "--format", "dot"],
            "text/vnd.graphviz",
        ),
    ];
    for (query, args, content_type) in cases {
        let (status, ty, body) = get_graph(&daemon, &bot, query).await;
        assert_eq!(
            (status, ty.as_str()),
            (200, content_type),
            "{query}: {body}"
        );
        assert_eq!(body, cli_export(h, args).await, "{query}");
    }
    // The filter matters: both integrations hold the same estate.
    let (_, _, all) = get_graph(&daemon, &bot, "").await;
    let (_, _, acme) = get_graph(&daemon, &bot, "?integration=acme").await;
    let count = |doc: &str| {
        let doc: Value = serde_json::from_str(doc).expect("json");
        doc["entities"].as_array().expect("entities").len()
    };
    assert!(count(&acme) > 0);
    assert_eq!(count(&all), 2 * count(&acme));
    let (_, _, none) = get_graph(&daemon, &bot, "?integration=nope").await;
    assert_eq!(none, "{\"entities\": [\n], \"relationships\": [\n]}\n");

    // Bad requests are still answered before any byte of a document.
    let (status, body) = send(
        client()
            .get(daemon.api("/api/v1/graph?format=svg"))
            .bearer_auth(&bot),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    let detail = body["detail"].as_str().expect("detail");
    assert!(
        detail.contains("\"svg\"") && detail.contains("use json or dot"),
        "{detail}"
    );
    let (status, _) = send(client().get(daemon.api("/api/v1/graph"))).await;
    assert_eq!(status, 401);
    assert_eq!(daemon.terminate().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_graph_arrives_whole_in_many_chunks() {
    let home = tempfile::tempdir().expect("tempdir");
    let h = home.path();
    // About 4 MiB: dozens of chunks.
    let n = 4000;
    store_large_graph(h, n, 600);
    let bot = token(h, "bot-graph", &["graph:read"]).await;
    let daemon = Daemon::start(h, "5s");

    let (status, _, json) = get_graph(&daemon, &bot, "?integration=bulk").await;
    assert_eq!(status, 200);
    assert!(json.len() > 40 * 64 * 1024, "{} bytes", json.len());
    assert_eq!(json, cli_export(h, &["--integration", BULK]).await);
    let doc: Value = serde_json::from_str(&json).expect("the document parses");
    assert_eq!(doc["entities"].as_array().expect("entities").len(), n);
    assert_eq!(doc["relationships"].as_array().expect("rels").len(), n);
    assert_eq!(doc["entities"][n - 1]["_key"], "bulk_node:00003999");

    let (status, _, dot) = get_graph(&daemon, &bot, "?format=dot").await;
    assert_eq!(status, 200);
    assert_eq!(dot, cli_export(h, &["--format", "dot"]).await);
    assert!(dot.ends_with("}\n"));
    // Logged after the end mark was handed over, so perhaps after the body.
    log_eventually(&daemon, "Streamed the document.").await;
    assert_eq!(daemon.terminate().await, 0);
}

/// The daemon's log once it holds `needle`; panics with the log after two
/// minutes (a hang guard, not a timing assertion).
async fn log_eventually(daemon: &Daemon, needle: &str) -> String {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let log = daemon.log();
        if log.contains(needle) {
            return log;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting for {needle:?} in the log:\n{log}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Replaces the stored properties of one graph row with text that is not
/// JSON, as a file edited outside sextant would have.
fn corrupt(home: &Path, table: &str, key: &str) {
    let db = rusqlite::Connection::open(home.join("sextant.db")).expect("db");
    let changed = db
        .execute(
            &format!("UPDATE {table} SET props = 'not json' WHERE key = ?1"),
            [key],
        )
        .expect("update");
    assert_eq!(changed, 1, "{table} {key}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_error_is_an_error_answer_before_the_first_byte_and_cuts_the_body_short_after() {
    let home = tempfile::tempdir().expect("tempdir");
    let h = home.path();
    store_large_graph(h, 2000, 600);
    let bot = token(h, "bot-graph", &["graph:read"]).await;
    let daemon = Daemon::start(h, "5s");
    let http = client();

    // The last relationship is unreadable: megabytes were sent by then.
    let last_rel = {
        let db = rusqlite::Connection::open(h.join("sextant.db")).expect("db");
        db.query_row(
            "SELECT key FROM relationships ORDER BY integration DESC, key DESC LIMIT 1",
            [],
            |r| r.get::<_, String>(0),
        )
        .expect("a relationship")
    };
    corrupt(h, "relationships", &last_rel);
    let response = http
        .get(daemon.api("/api/v1/graph"))
        .bearer_auth(&bot)
        .send()
        .await
        .expect("headers arrive");
    assert_eq!(response.status().as_u16(), 200);
    let error = response
        .bytes()
        .await
        .expect_err("a body cut short is an error, not a shorter document");
    assert!(error.is_body() || error.is_decode(), "{error:?}");
    let log = log_eventually(&daemon, "failed mid-stream").await;
    assert!(
        log.contains("unreadable graph object's properties"),
        "{log}"
    );

    // The first entity is unreadable: nothing was sent, so a plain 500.
    corrupt(h, "entities", "bulk_node:00000000");
    let (status, body) = send(http.get(daemon.api("/api/v1/graph")).bearer_auth(&bot)).await;
    assert_eq!(status, 500, "{body}");
    let detail = body["detail"].as_str().expect("detail");
    assert!(
        detail.contains("unreadable graph object's properties")
            && detail.contains("restore it from a backup"),
        "{detail}"
    );
    assert_eq!(daemon.terminate().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_mid_download_stops_the_export_and_frees_its_connection() {
    let home = tempfile::tempdir().expect("tempdir");
    let h = home.path();
    // About 17 MiB: far more than the socket buffers (at most 4 MiB on
    // Linux by default) and the chunks in flight can hold, so the export is
    // still writing when the client leaves.
    store_large_graph(h, 4000, 4000);
    let bot = token(h, "bot-graph", &["graph:read"]).await;
    let daemon = Daemon::start(h, "5s");

    // A raw client with a small receive window reads the head and a few
    // bytes, then closes with the rest unread.
    let addr: std::net::SocketAddr = daemon
        .url
        .trim_start_matches("http://")
        .parse()
        .expect("daemon address");
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("small buffer");
    let mut stream = socket.connect(addr).await.expect("connect");
    let request = format!(
        "GET /api/v1/graph HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {bot}\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .expect("request sent");
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !String::from_utf8_lossy(&head).contains("{\"entities\": [") {
        let n = stream.read(&mut buf).await.expect("read");
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&head));
        head.extend_from_slice(&buf[..n]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    drop(stream);

    log_eventually(
        &daemon,
        "The client went away; stopped writing the document.",
    )
    .await;
    assert!(!daemon.log().contains("Streamed the document."));
    // No read snapshot is left open: a checkpoint can reset the WAL (a
    // reader still inside the export's transaction would keep it busy).
    let db = rusqlite::Connection::open(h.join("sextant.db")).expect("db");
    let (busy, _, _): (i64, i64, i64) = db
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .expect("checkpoint");
    assert_eq!(busy, 0, "a reader still holds the database");
    // The next download needs a store connection and gets the whole graph.
    let (status, _, json) = get_graph(&daemon, &bot, "").await;
    assert_eq!(status, 200);
    assert_eq!(json, cli_export(h, &[]).await);
    assert_eq!(daemon.terminate().await, 0);
}
