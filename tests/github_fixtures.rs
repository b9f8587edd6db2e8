//! The GitHub fixture sets and the fixture server's GitHub profile: every
//! route is served with a Bearer token and an ETag, a matching If-None-Match
//! gets a 304, Link chains reach every page with the server's own address,
//! and the CircleCI header is not accepted.

use std::collections::BTreeSet;
use std::time::Duration;

use sextant::fixtures::manifest::RouteKey;
use sextant::fixtures::{FIXTURE_TOKEN, FixtureServer, FixtureSet};
use sextant::source::http::next_link;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

fn encoded(get: &str) -> String {
    let key = RouteKey::decoded(get);
    let mut url = url::Url::parse("http://127.0.0.1/").expect("url");
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
async fn every_route_is_served_with_an_etag_and_answers_304_when_unchanged() {
    let server = FixtureServer::start(FixtureSet::GitHubDay1)
        .await
        .expect("server");
    for set in FixtureSet::GITHUB {
        server.switch(set);
        let routes = set.routes().expect("routes");
        let mut reached = BTreeSet::new();
        for route in &routes {
            let url = format!("{}{}", server.base_url(), encoded(&route.get));
            for auth in [
                format!("Bearer {FIXTURE_TOKEN}"),
                format!("token {FIXTURE_TOKEN}"),
            ] {
                let response = client()
                    .get(&url)
                    .header("Authorization", auth)
                    .send()
                    .await
                    .expect("send");
                assert_eq!(response.status().as_u16(), 200, "{set}: {url}");
                let etag = response.headers()["etag"]
                    .to_str()
                    .expect("ascii")
                    .to_owned();
                if let Some(link) = response.headers().get("link") {
                    let link = link.to_str().expect("ascii");
                    assert!(!link.contains("{base}"), "{link}");
                    if let Some(next) = next_link(link) {
                        let next = next
                            .strip_prefix(&server.base_url())
                            .unwrap_or_else(|| panic!("{set}: {next} is not on the server"));
                        let parsed = url::Url::parse(&format!("http://x{next}")).expect("url");
                        reached.insert(RouteKey::from_request(parsed.path(), parsed.query()));
                    }
                }
                let body = response.bytes().await.expect("body");
                assert_eq!(&body[..], set.file(&route.file).expect("file"), "{url}");
                let again = client()
                    .get(&url)
                    .header("Authorization", format!("Bearer {FIXTURE_TOKEN}"))
                    .header("If-None-Match", format!("W/{etag}, \"other\""))
                    .send()
                    .await
                    .expect("send");
                assert_eq!(again.status().as_u16(), 304, "{url}");
                assert_eq!(again.headers()["etag"].to_str().expect("ascii"), etag);
                assert!(again.bytes().await.expect("body").is_empty());
            }
        }
        // Every later page is reached from a first page.
        for route in &routes {
            let key = RouteKey::decoded(&route.get);
            if key.query.iter().any(|(k, _)| k == "page") {
                assert!(
                    reached.contains(&Some(key)),
                    "{set}: no page leads to {}",
                    route.get
                );
            }
        }
    }
}

#[tokio::test]
async fn github_sets_want_authorization_not_circle_token() {
    let server = FixtureServer::start(FixtureSet::GitHubDay1)
        .await
        .expect("server");
    let url = format!("{}/user", server.base_url());
    for (name, value) in [
        ("Circle-Token", FIXTURE_TOKEN.to_owned()),
        ("Authorization", FIXTURE_TOKEN.to_owned()),
        ("Authorization", "Bearer wrong".to_owned()),
    ] {
        let response = client()
            .get(&url)
            .header(name, value)
            .send()
            .await
            .expect("send");
        assert_eq!(response.status().as_u16(), 401, "{name}");
    }
    let response = client()
        .get(&url)
        .header("Authorization", format!("Bearer {FIXTURE_TOKEN}"))
        .send()
        .await
        .expect("send");
    assert_eq!(
        response.headers()["x-oauth-scopes"],
        "gist, read:org, read:user, repo"
    );
    // CircleCI sets carry no ETag: their profile does not declare one.
    server.switch(FixtureSet::Day1);
    let response = client()
        .get(format!("{}/api/v2/me", server.base_url()))
        .header("Circle-Token", FIXTURE_TOKEN)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status().as_u16(), 200);
    assert!(response.headers().get("etag").is_none());
}
