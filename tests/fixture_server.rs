//! The bundled fixture sets and the fixture server: manifests are consistent, and
//! the server answers, authenticates, matches and misbehaves as documented.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use sextant::fixtures::manifest::RouteKey;
use sextant::fixtures::{FIXTURE_TOKEN, Fault, FixtureServer, FixtureSet};

// ---- the bundled sets, checked without a server ----

fn json_file(set: FixtureSet, name: &str) -> serde_json::Value {
    let bytes = set
        .file(name)
        .unwrap_or_else(|| panic!("{set}: {name} is not bundled"));
    serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("{set}: {name} is not JSON: {e}"))
}

#[test]
fn every_route_names_a_bundled_json_file() {
    for set in FixtureSet::CIRCLECI {
        let routes = set.routes().unwrap();
        assert!(!routes.is_empty(), "{set}: no routes");
        let mut keys = BTreeSet::new();
        for route in &routes {
            assert!(route.get.starts_with("/api/v2/"), "{set}: {}", route.get);
            json_file(set, &route.file);
            let key = RouteKey::decoded(&route.get);
            assert!(
                keys.insert(format!("{key:?}")),
                "{set}: {} twice",
                route.get
            );
        }
    }
}

#[test]
fn every_bundled_file_is_referenced() {
    for set in FixtureSet::ALL {
        let referenced: BTreeSet<String> =
            set.routes().unwrap().into_iter().map(|r| r.file).collect();
        let unreferenced: Vec<String> = set
            .file_names()
            .into_iter()
            .filter(|f| f != "routes.json" && !referenced.contains(f))
            .collect();
        assert!(
            unreferenced.is_empty(),
            "{set}: unreferenced files {unreferenced:?}"
        );
    }
}

#[test]
fn paginated_chains_terminate_and_reach_every_page() {
    for set in FixtureSet::CIRCLECI {
        let routes = set.routes().unwrap();
        let by_key: HashMap<RouteKey, &str> = routes
            .iter()
            .map(|r| (RouteKey::decoded(&r.get), r.file.as_str()))
            .collect();
        let mut reached = BTreeSet::new();
        for route in &routes {
            let start = RouteKey::decoded(&route.get);
            if start.query.iter().any(|(k, _)| k == "page-token") {
                continue; // a later page; reached from its first page below
            }
            let mut file = route.file.as_str();
            let mut seen = BTreeSet::new();
            loop {
                assert!(seen.insert(file), "{set}: {} loops at {file}", route.get);
                let body = json_file(set, file);
                let Some(token) = body.get("next_page_token").and_then(|t| t.as_str()) else {
                    break;
                };
                assert!(
                    !token.is_empty(),
                    "{set}: {file} has an empty next_page_token"
                );
                let mut key = start.first_page();
                key.query.push(("page-token".to_owned(), token.to_owned()));
                key.query.sort();
                file = by_key.get(&key).unwrap_or_else(|| {
                    panic!("{set}: {file} points at a page not in the manifest: {key:?}")
                });
                reached.insert(key);
            }
        }
        for route in &routes {
            let key = RouteKey::decoded(&route.get);
            if key.query.iter().any(|(k, _)| k == "page-token") {
                assert!(
                    reached.contains(&key),
                    "{set}: no page leads to {}",
                    route.get
                );
            }
        }
    }
}

// ---- the server ----

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

struct Answer {
    status: u16,
    content_type: String,
    retry_after: Option<String>,
    body: String,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

/// GETs `target` (a path and query, sent as written) with `token`.
async fn get_as(server: &FixtureServer, target: &str, token: Option<&str>) -> Answer {
    let mut request = client().get(format!("{}{target}", server.base_url()));
    if let Some(token) = token {
        request = request.header("Circle-Token", token);
    }
    let response = request.send().await.unwrap();
    let header = |name| {
        response
            .headers()
            .get(name)
            .map(|v: &reqwest::header::HeaderValue| v.to_str().unwrap().to_owned())
    };
    Answer {
        status: response.status().as_u16(),
        content_type: header(reqwest::header::CONTENT_TYPE).unwrap_or_default(),
        retry_after: header(reqwest::header::RETRY_AFTER),
        body: response.text().await.unwrap(),
    }
}

async fn get(server: &FixtureServer, target: &str) -> Answer {
    get_as(server, target, Some(FIXTURE_TOKEN)).await
}

fn file_text(set: FixtureSet, name: &str) -> String {
    String::from_utf8(set.file(name).unwrap().to_vec()).unwrap()
}

/// The path and query of a decoded manifest route, encoded the way a correct
/// client does (non-ASCII and `/` in values percent-encoded, `+` as `%2B`).
fn encoded(get: &str) -> String {
    let key = RouteKey::decoded(get);
    let mut url = url::Url::parse("http://127.0.0.1/").unwrap();
    url.set_path(&key.path);
    if !key.query.is_empty() {
        let mut pairs = url.query_pairs_mut();
        for (k, v) in &key.query {
            pairs.append_pair(k, v);
        }
    }
    url[url::Position::BeforePath..].to_owned()
}

#[tokio::test]
async fn serves_every_route_of_every_set() {
    let server = FixtureServer::start(FixtureSet::Day1).await.unwrap();
    assert!(
        server.base_url().starts_with("http://127.0.0.1:"),
        "{}",
        server.base_url()
    );
    for set in FixtureSet::CIRCLECI {
        server.switch(set);
        for route in set.routes().unwrap() {
            let url = format!("{}{}", server.base_url(), encoded(&route.get));
            let response = client()
                .get(&url)
                .header("Circle-Token", FIXTURE_TOKEN)
                .send()
                .await
                .unwrap();
            assert_eq!(
                response.status().as_u16(),
                route.status.unwrap_or(200),
                "{set}: {url}"
            );
            let content_type = response.headers()[reqwest::header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .to_owned();
            let expected = route.content_type.as_deref().unwrap_or("application/json");
            assert_eq!(content_type, expected, "{set}: {url}");
            assert_eq!(
                response.bytes().await.unwrap(),
                set.file(&route.file).unwrap(),
                "{set}: {url}"
            );
        }
    }
    server.shutdown().await;
}

#[tokio::test]
async fn authenticates_like_circleci() {
    let server = FixtureServer::start(FixtureSet::Day1).await.unwrap();
    let me = get(&server, "/api/v2/me").await;
    assert_eq!(
        (me.status, me.content_type.as_str()),
        (200, "application/json")
    );
    assert_eq!(me.body, file_text(FixtureSet::Day1, "me.json"));

    for token in [None, Some("wrong"), Some("")] {
        let denied = get_as(&server, "/api/v2/me", token).await;
        assert_eq!(denied.status, 401, "token {token:?}");
        assert_eq!(
            denied.json(),
            serde_json::json!({"message": "Invalid token provided."})
        );
    }
    let unknown = get(&server, "/api/v2/nope").await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json(), serde_json::json!({"message": "Not found."}));
    assert_eq!(
        get(&server, "/api/v2/me/").await.status,
        404,
        "no trailing-slash leniency"
    );

    let post = client()
        .post(format!("{}/api/v2/me", server.base_url()))
        .header("Circle-Token", FIXTURE_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(post.status().as_u16(), 405);

    assert_eq!(server.request_count(), 7);
    assert_eq!(server.requests()[..2], ["GET /api/v2/me", "GET /api/v2/me"]);
    assert_eq!(server.requests()[6], "POST /api/v2/me");
    server.shutdown().await;
}

#[tokio::test]
async fn matches_decoded_paths_and_query_sets() {
    let server = FixtureServer::start(FixtureSet::Day1).await.unwrap();
    let donnees = file_text(FixtureSet::Day1, "project-donnees.json");
    for target in [
        "/api/v2/project/bb/z%C3%BCrich-labs/donn%C3%A9es",
        "/api/v2/project/bb%2Fz%C3%BCrich-labs%2Fdonn%C3%A9es",
    ] {
        let answer = get(&server, target).await;
        assert_eq!((answer.status, &answer.body), (200, &donnees), "{target}");
    }
    let zurich = get(&server, "/api/v2/pipeline?org-slug=bb%2Fz%C3%BCrich-labs").await;
    assert_eq!(
        zurich.body,
        file_text(FixtureSet::Day1, "pipelines-zurich-labs.json")
    );

    // The second page of gh/acme: its token holds `+`, `/` and `=`.
    let first = get(&server, "/api/v2/pipeline?org-slug=gh/acme")
        .await
        .json();
    let token = first["next_page_token"].as_str().unwrap().to_owned();
    assert!(token.contains('+') && token.contains('/'), "{token}");
    let escaped: String = url::form_urlencoded::byte_serialize(token.as_bytes()).collect();
    let page2 = file_text(FixtureSet::Day1, "pipelines-acme-2.json");
    for target in [
        format!("/api/v2/pipeline?org-slug=gh%2Facme&page-token={escaped}"),
        format!("/api/v2/pipeline?page-token={escaped}&org-slug=gh/acme"),
    ] {
        assert_eq!(get(&server, &target).await.body, page2, "{target}");
    }
    // A client that forgets to encode the token sends `+` as a space.
    let raw = get(
        &server,
        &format!("/api/v2/pipeline?org-slug=gh/acme&page-token={token}"),
    )
    .await;
    assert_eq!(raw.status, 404);
    // Extra parameters are a different request.
    let extra = get(&server, "/api/v2/pipeline?org-slug=gh/acme&mine=false").await;
    assert_eq!(extra.status, 404);

    let drifted = get(&server, "/api/v2/project/gh/acme/web").await;
    assert_eq!(
        (drifted.status, drifted.content_type.as_str()),
        (200, "text/plain; charset=utf-8")
    );
    drifted.json();
    server.shutdown().await;
}

#[tokio::test]
async fn switch_serves_the_next_day() {
    let server = FixtureServer::start(FixtureSet::Day1).await.unwrap();
    let dmitri = json_file(FixtureSet::Day2, "user-dmitri.json");
    let dmitri_path = format!("/api/v2/user/{}", dmitri["id"].as_str().unwrap());
    assert_eq!(get(&server, &dmitri_path).await.status, 404);
    let envvars = "/api/v2/project/gh/acme/api/envvar";
    assert_eq!(
        get(&server, envvars).await.body,
        file_text(FixtureSet::Day1, "envvars-api.json")
    );

    server.switch(FixtureSet::Day2);
    assert_eq!(get(&server, &dmitri_path).await.json(), dmitri);
    assert_eq!(
        get(&server, envvars).await.body,
        file_text(FixtureSet::Day2, "envvars-api.json")
    );
    assert_eq!(
        get(&server, "/api/v2/project/gh/acme/web").await.status,
        404
    );

    server.switch(FixtureSet::Day1);
    assert_eq!(get(&server, &dmitri_path).await.status, 404);
    server.shutdown().await;
}

#[tokio::test]
async fn status_faults_answer_n_times_then_recover() {
    let server = FixtureServer::start(FixtureSet::Day1).await.unwrap();
    let fault = |status, times, retry_after: Option<&str>| Fault::Status {
        status,
        times,
        retry_after: retry_after.map(str::to_owned),
    };
    server.inject("/api/v2/me", fault(429, 2, Some("3")));
    for _ in 0..2 {
        let limited = get(&server, "/api/v2/me").await;
        assert_eq!(
            (limited.status, limited.retry_after.as_deref()),
            (429, Some("3"))
        );
        assert!(limited.json()["message"].is_string());
    }
    let ok = get(&server, "/api/v2/me").await;
    assert_eq!((ok.status, ok.retry_after), (200, None));

    // A trailing `*` matches by prefix; a plain path does not.
    server.inject("/api/v2/pipeline/*", fault(500, 1, None));
    assert_eq!(
        get(&server, "/api/v2/pipeline?org-slug=gh/acme")
            .await
            .status,
        200
    );
    let routes = FixtureSet::Day1.routes().unwrap();
    let workflow = routes
        .iter()
        .find(|r| r.get.ends_with("/workflow"))
        .unwrap();
    assert_eq!(get(&server, &workflow.get).await.status, 500);
    assert_eq!(get(&server, &workflow.get).await.status, 200);

    // A query in the pattern targets one page.
    let page2 = routes
        .iter()
        .find(|r| r.file == "pipelines-acme-2.json")
        .unwrap();
    server.inject(&page2.get, fault(502, 1, None));
    assert_eq!(
        get(&server, "/api/v2/pipeline?org-slug=gh/acme")
            .await
            .status,
        200
    );
    assert_eq!(get(&server, &encoded(&page2.get)).await.status, 502);
    assert_eq!(get(&server, &encoded(&page2.get)).await.status, 200);

    // Faults apply to unknown routes too, and never to unauthenticated requests.
    server.inject("/api/v2/nope", fault(503, 5, None));
    assert_eq!(get(&server, "/api/v2/nope").await.status, 503);
    assert_eq!(get_as(&server, "/api/v2/nope", None).await.status, 401);
    server.clear_faults();
    assert_eq!(get(&server, "/api/v2/nope").await.status, 404);
    server.shutdown().await;
}

#[tokio::test]
async fn body_and_page_loop_faults() {
    let server = FixtureServer::start(FixtureSet::Day1).await.unwrap();
    server.inject("/api/v2/me", Fault::Body("{\"id\": ".to_owned()));
    let broken = get(&server, "/api/v2/me").await;
    assert_eq!((broken.status, broken.body.as_str()), (200, "{\"id\": "));
    assert_eq!(broken.content_type, "application/json");

    let contexts = FixtureSet::Day1.routes().unwrap();
    let first = contexts
        .iter()
        .find(|r| r.file == "contexts-acme-1.json")
        .unwrap();
    let expected_items = json_file(FixtureSet::Day1, "contexts-acme-1.json")["items"].clone();
    server.inject("/api/v2/context", Fault::PageLoop);
    let page = get(&server, &first.get).await.json();
    assert_eq!(page["next_page_token"], "loop");
    assert_eq!(page["items"], expected_items);
    let again = get(&server, &format!("{}&page-token=loop", first.get))
        .await
        .json();
    assert_eq!(again, page);

    server.clear_faults();
    assert_eq!(
        get(&server, "/api/v2/me").await.body,
        file_text(FixtureSet::Day1, "me.json")
    );
    let normal = get(&server, &first.get).await.json();
    assert_ne!(normal["next_page_token"], "loop");
    server.shutdown().await;
}

async fn wait_for_requests(server: &FixtureServer, n: usize) {
    let waited = tokio::time::timeout(Duration::from_secs(5), async {
        while server.request_count() < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    waited.await.unwrap();
}

#[tokio::test]
async fn hang_holds_requests_until_cleared_or_shut_down() {
    let server = FixtureServer::start(FixtureSet::Day1).await.unwrap();
    server.inject("/api/v2/me", Fault::Hang);
    let impatient = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let timed_out = impatient
        .get(format!("{}/api/v2/me", server.base_url()))
        .header("Circle-Token", FIXTURE_TOKEN)
        .send()
        .await
        .unwrap_err();
    assert!(timed_out.is_timeout(), "{timed_out}");

    // clear_faults releases a hung request (503) or, if it lost the race to
    // the fault lookup, it is answered normally.
    let url = format!("{}/api/v2/me", server.base_url());
    let hung = tokio::spawn(async move {
        client()
            .get(url)
            .header("Circle-Token", FIXTURE_TOKEN)
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    wait_for_requests(&server, 2).await;
    server.clear_faults();
    let status = hung.await.unwrap().unwrap();
    assert!(status == 503 || status == 200, "{status}");
    assert_eq!(get(&server, "/api/v2/me").await.status, 200);

    // Shutdown does not wait forever on a hung request.
    server.inject("/api/v2/me", Fault::Hang);
    let url = format!("{}/api/v2/me", server.base_url());
    let hung = tokio::spawn(async move {
        client()
            .get(url)
            .header("Circle-Token", FIXTURE_TOKEN)
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    wait_for_requests(&server, 4).await;
    tokio::time::timeout(Duration::from_secs(10), server.shutdown())
        .await
        .expect("shutdown finished");
    let finished = tokio::time::timeout(Duration::from_secs(10), hung).await;
    assert!(finished.is_ok(), "the hung request ended with the server");
}

#[tokio::test]
async fn servers_are_independent_and_drop_cleanly() {
    let a = FixtureServer::start(FixtureSet::Day1).await.unwrap();
    let b = FixtureServer::start(FixtureSet::Day2).await.unwrap();
    assert_ne!(a.base_url(), b.base_url());
    a.inject(
        "/api/v2/me",
        Fault::Status {
            status: 500,
            times: 1,
            retry_after: None,
        },
    );
    assert_eq!(get(&b, "/api/v2/me").await.status, 200);
    assert_eq!(get(&a, "/api/v2/me").await.status, 500);
    assert_eq!((a.request_count(), b.request_count()), (1, 1));
    let url = a.base_url();
    drop(a);
    // The dropped server stops accepting: connecting soon fails.
    let gone = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if client()
                .get(format!("{url}/api/v2/me"))
                .send()
                .await
                .is_err()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    gone.await.unwrap();
    b.shutdown().await;
}
