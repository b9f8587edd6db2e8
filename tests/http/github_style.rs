//! What a source can declare to the shared HTTP layer, exercised the way the
//! GitHub source declares it: `Link` pagination (parsing, relative links,
//! foreign origins, loops), extra headers, rate-limit windows to wait for,
//! 403 as throttling, and conditional requests with a `ResponseCache`.
//! The CircleCI-style defaults stay as they were (see `main.rs`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use serde_json::json;
use sextant::source::http::{
    HttpClient, HttpConfig, HttpError, HttpSource, Pagination, RateLimitHeaders, RequestStats,
    ResponseCache, next_link,
};

use crate::support::*;

#[test]
fn next_link_finds_rel_next() {
    let cases: &[(&str, Option<&str>)] = &[
        (
            r#"<https://api.github.com/orgs/x/repos?page=2>; rel="next", <https://api.github.com/orgs/x/repos?page=5>; rel="last""#,
            Some("https://api.github.com/orgs/x/repos?page=2"),
        ),
        (
            r#"<https://h/a?page=1>; rel="prev", <https://h/a?page=3>; rel="next""#,
            Some("https://h/a?page=3"),
        ),
        (r#"<https://h/a?page=1>; rel="first""#, None),
        (r#"</relative?page=2>; rel=next"#, Some("/relative?page=2")),
        (
            r#"<https://h/a>; title="x, y"; rel="prefetch NEXT""#,
            Some("https://h/a"),
        ),
        (r#"<https://h/a;b>; REL="next""#, Some("https://h/a;b")),
        ("", None),
        ("garbage", None),
        (r#"<https://h/a; rel="next""#, None),
    ];
    for (header, expected) in cases {
        assert_eq!(next_link(header).as_deref(), *expected, "{header}");
    }
}

/// What a GitHub-style server saw: URIs and selected request headers.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<(String, HeaderMap)>>>);

impl Seen {
    fn all(&self) -> Vec<(String, HeaderMap)> {
        self.0.lock().expect("seen").clone()
    }
}

/// A server that answers with `answer(uri, request headers, base)`.
async fn github_like(
    answer: impl Fn(&str, &HeaderMap, &str) -> Reply + Clone + Send + Sync + 'static,
) -> (String, Seen) {
    let seen = Seen::default();
    let base = Arc::new(Mutex::new(String::new()));
    let state = (seen.clone(), base.clone());
    let router = Router::new()
        .fallback(
            move |State((seen, base)): State<(Seen, Arc<Mutex<String>>)>,
                  uri: Uri,
                  headers: HeaderMap| {
                let answer = answer.clone();
                async move {
                    seen.0
                        .lock()
                        .expect("seen")
                        .push((uri.to_string(), headers.clone()));
                    let base = base.lock().expect("base").clone();
                    answer(&uri.to_string(), &headers, &base)
                }
            },
        )
        .with_state(state);
    let url = serve(router).await;
    *base.lock().expect("base") = url.clone();
    (url, seen)
}

fn github_source(base: &str) -> HttpSource {
    HttpSource::new("gh", base, "Authorization", format!("Bearer {TOKEN}"))
        .token_help(HELP)
        .header("Accept", "application/vnd.github+json")
        .header("X-GitHub-Api-Version", "2022-11-28")
        .pagination(Pagination::LinkHeader)
        .rate_limit_headers(RateLimitHeaders::WaitForReset {
            remaining: "x-ratelimit-remaining",
            reset: "x-ratelimit-reset",
            low_water: 0,
        })
        .forbidden_may_throttle(true)
        .conditional_requests(true)
}

fn github_client(base: &str, config: HttpConfig) -> HttpClient {
    HttpClient::new(github_source(base), config).expect("client")
}

#[tokio::test]
async fn link_pages_are_followed_with_declared_headers() {
    let (base, seen) = github_like(|uri, _, base| match uri {
        "/orgs/x/members?per_page=2" => reply(200, "[1,2]").header(
            "link",
            format!(r#"<{base}/orgs/x/members?per_page=2&page=2>; rel="next", <{base}/orgs/x/members?per_page=2&page=3>; rel="last""#),
        ),
        // A relative link is resolved against the page's URL.
        "/orgs/x/members?per_page=2&page=2" => {
            reply(200, "[3,4]").header("link", r#"</orgs/x/members?per_page=2&page=3>; rel="next""#)
        }
        "/orgs/x/members?per_page=2&page=3" => {
            reply(200, "[5]").header("link", r#"</orgs/x/members?per_page=2&page=1>; rel="first""#)
        }
        other => reply(404, format!("unexpected {other}")),
    })
    .await;
    let stats = RequestStats::new();
    let items: Vec<u32> = github_client(&base, fast())
        .get_all_pages("/orgs/x/members", &[("per_page", "2")], &stats)
        .await
        .expect("three pages");
    assert_eq!(items, [1, 2, 3, 4, 5]);
    let seen = seen.all();
    assert_eq!(seen.len(), 3);
    for (_, headers) in &seen {
        assert_eq!(headers["authorization"], format!("Bearer {TOKEN}").as_str());
        assert_eq!(headers["accept"], "application/vnd.github+json");
        assert_eq!(headers["x-github-api-version"], "2022-11-28");
        assert!(
            headers.get("if-none-match").is_none(),
            "no cache, no condition"
        );
    }
}

#[tokio::test]
async fn a_link_to_another_origin_is_not_followed() {
    let (base, seen) = github_like(|_, _, _| {
        reply(200, "[1]").header("link", r#"<https://evil.example/steal?page=2>; rel="next""#)
    })
    .await;
    let err = github_client(&base, fast())
        .get_all_pages::<u32>("/orgs/x/repos", &[], &RequestStats::new())
        .await
        .expect_err("foreign link refused");
    assert!(matches!(err, HttpError::ForeignPageLink { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("https://evil.example") && message.contains("GET /orgs/x/repos"),
        "{message}"
    );
    assert_eq!(seen.all().len(), 1);
}

#[tokio::test]
async fn a_link_loop_is_stopped() {
    let (base, seen) = github_like(|uri, _, base| {
        reply(200, "[1]").header("link", format!(r#"<{base}{uri}>; rel="next""#))
    })
    .await;
    let err = github_client(&base, fast())
        .get_all_pages::<u32>(
            "/orgs/x/teams",
            &[("per_page", "100")],
            &RequestStats::new(),
        )
        .await
        .expect_err("loop stopped");
    assert!(matches!(err, HttpError::PageLoop { .. }), "{err:?}");
    assert!(
        err.to_string().contains("page=") || err.to_string().contains("per_page"),
        "{err}"
    );
    assert_eq!(
        seen.all().len(),
        1,
        "a link back to the first page is refused without fetching it again"
    );
}

#[tokio::test]
async fn link_pagination_needs_an_array_body() {
    let (base, _) = github_like(|_, _, _| reply(200, r#"{"items": [1]}"#)).await;
    let err = github_client(&base, fast())
        .get_all_pages::<u32>("/orgs/x/teams", &[], &RequestStats::new())
        .await
        .expect_err("object refused");
    let message = err.to_string();
    assert!(
        message.contains("expected an array") && message.contains("GET /orgs/x/teams"),
        "{message}"
    );
}

fn epoch_in(seconds: u64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    (now + seconds).to_string()
}

#[tokio::test]
async fn a_reset_beyond_the_clock_is_ignored_not_a_crash() {
    let (base, seen) = github_like(move |_, _, _| {
        reply(200, "{}")
            .header("x-ratelimit-remaining", "0")
            .header("x-ratelimit-reset", u64::MAX.to_string())
    })
    .await;
    let client = github_client(&base, fast());
    let stats = RequestStats::new();
    get(&client, "/first", &stats).await.expect("first");
    get(&client, "/second", &stats).await.expect("second");
    assert_eq!(stats.reset_waits(), 0);
    assert_eq!(seen.all().len(), 2);
}

#[tokio::test]
async fn a_used_up_window_waits_for_its_reset() {
    let reset = epoch_in(2);
    let (base, seen) = github_like(move |uri, _, _| {
        if uri == "/first" {
            reply(200, "{}")
                .header("x-ratelimit-remaining", "0")
                .header("x-ratelimit-reset", reset.clone())
        } else {
            reply(200, "{}").header("x-ratelimit-remaining", "4999")
        }
    })
    .await;
    let client = github_client(&base, fast());
    let stats = RequestStats::new();
    get(&client, "/first", &stats).await.expect("first");
    assert_eq!(
        stats.reset_waits(),
        0,
        "nothing to wait for before the first"
    );
    get(&client, "/second", &stats).await.expect("second");
    let s = stats.snapshot();
    assert_eq!(s.reset_waits, 1, "{s:?}");
    assert!(s.reset_wait_ms >= 500, "waited for the reset: {s:?}");
    assert!(s.waited_ms >= s.reset_wait_ms, "{s:?}");
    // A fresh window lifts the pause: no more waiting.
    get(&client, "/third", &stats).await.expect("third");
    assert_eq!(stats.reset_waits(), 1);
    assert_eq!(seen.all().len(), 3);
}

#[tokio::test]
async fn the_reset_wait_is_capped() {
    let reset = epoch_in(3600);
    let (base, _) = github_like(move |_, _, _| {
        reply(200, "{}")
            .header("x-ratelimit-remaining", "0")
            .header("x-ratelimit-reset", reset.clone())
    })
    .await;
    let config = HttpConfig {
        reset_wait_cap: Duration::from_millis(50),
        ..fast()
    };
    let client = github_client(&base, config);
    let stats = RequestStats::new();
    get(&client, "/a", &stats).await.expect("a");
    get(&client, "/b", &stats).await.expect("b");
    let s = stats.snapshot();
    assert_eq!(s.reset_waits, 1);
    assert!(s.reset_wait_ms < 1000, "capped: {s:?}");
}

#[tokio::test]
async fn a_secondary_limit_403_with_retry_after_is_retried() {
    let (base, log) = scripted(vec![
        reply(
            403,
            r#"{"message":"You have exceeded a secondary rate limit"}"#,
        )
        .header("retry-after", "1"),
        reply(200, r#"{"ok":true}"#),
    ])
    .await;
    let stats = RequestStats::new();
    let value = get(&github_client(&base, fast()), "/orgs/x", &stats)
        .await
        .expect("retried");
    assert_eq!(value, json!({"ok": true}));
    assert_eq!(log.count(), 2);
    let s = stats.snapshot();
    assert_eq!((s.retries, s.throttled), (1, 1), "{s:?}");
    assert!(s.waited_ms >= 1000, "Retry-After honoured: {s:?}");
}

#[tokio::test]
async fn a_403_with_an_empty_window_waits_for_the_reset() {
    let reset = epoch_in(1);
    let (base, log) = scripted(vec![
        reply(403, r#"{"message":"API rate limit exceeded"}"#)
            .header("x-ratelimit-remaining", "0")
            .header("x-ratelimit-reset", reset),
        reply(200, "{}"),
    ])
    .await;
    let stats = RequestStats::new();
    get(&github_client(&base, fast()), "/orgs/x", &stats)
        .await
        .expect("retried after the reset");
    assert_eq!(log.count(), 2);
    assert_eq!(stats.throttled(), 1);
    assert_eq!(stats.reset_waits(), 1, "{:?}", stats.snapshot());
}

#[tokio::test]
async fn a_plain_403_is_a_refusal_even_when_403_may_throttle() {
    let (base, log) = scripted(vec![
        reply(
            403,
            r#"{"message":"Resource protected by organization SAML enforcement"}"#,
        )
        .header("x-ratelimit-remaining", "4990"),
    ])
    .await;
    let err = get(
        &github_client(&base, fast()),
        "/orgs/x/members",
        &RequestStats::new(),
    )
    .await
    .expect_err("refused");
    assert!(
        matches!(err, HttpError::Unauthorized { status: 403, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains(HELP), "{err}");
    assert_eq!(log.count(), 1, "not retried");
}

#[tokio::test]
async fn without_the_declaration_a_403_with_retry_after_is_a_refusal() {
    let (base, log) = scripted(vec![
        reply(403, "forbidden").header("retry-after", "1"),
        reply(200, "{}"),
    ])
    .await;
    let err = get(&client(&base), "/me", &RequestStats::new())
        .await
        .expect_err("CircleCI-style: 403 is auth");
    assert!(err.is_auth(), "{err:?}");
    assert_eq!(log.count(), 1);
}

#[tokio::test]
async fn without_the_declaration_rate_limit_headers_never_delay() {
    let (base, log) = scripted(vec![
        reply(200, "{}")
            .header("x-ratelimit-remaining", "0")
            .header("x-ratelimit-reset", epoch_in(30)),
    ])
    .await;
    let client = client(&base);
    let stats = RequestStats::new();
    get(&client, "/a", &stats).await.expect("a");
    get(&client, "/b", &stats).await.expect("b");
    assert_eq!(log.count(), 2);
    assert_eq!(stats.reset_waits(), 0);
    assert!(stats.waited_ms() < 1000, "{:?}", stats.snapshot());
}

#[tokio::test]
async fn an_etag_makes_the_next_request_conditional_and_a_304_replays_the_body() {
    let (base, seen) = github_like(|uri, headers, base| {
        let etag = format!("\"{}\"", uri.len());
        if headers.get("if-none-match").and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
            return reply(304, "").header("etag", etag);
        }
        match uri {
            "/orgs/x/repos" => reply(200, "[1,2]").header("etag", etag).header(
                "link",
                format!(r#"<{base}/orgs/x/repos?page=2>; rel="next""#),
            ),
            _ => reply(200, "[3]").header("etag", etag),
        }
    })
    .await;
    let cache = ResponseCache::new();
    let config = HttpConfig {
        response_cache: Some(cache.clone()),
        ..fast()
    };
    let client = github_client(&base, config.clone());
    let cold = RequestStats::new();
    let first: Vec<u32> = client
        .get_all_pages("/orgs/x/repos", &[], &cold)
        .await
        .expect("cold");
    assert_eq!(first, [1, 2, 3]);
    assert_eq!((cold.requests(), cold.not_modified()), (2, 0));
    assert_eq!(cache.len(), 2);

    // A new client (a new run) with the cache as saved and loaded again:
    // both pages are 304s, the Link header is replayed from the cache, the
    // items are the same.
    let cache = ResponseCache::from_entries(cache.entries_to_keep());
    let config = HttpConfig {
        response_cache: Some(cache.clone()),
        ..fast()
    };
    let warm = RequestStats::new();
    let second: Vec<u32> = github_client(&base, config)
        .get_all_pages("/orgs/x/repos", &[], &warm)
        .await
        .expect("warm");
    assert_eq!(second, first);
    assert_eq!((warm.requests(), warm.not_modified()), (2, 2));
    let seen = seen.all();
    assert_eq!(seen.len(), 4);
    assert!(seen[2].1.contains_key("if-none-match"), "{:?}", seen[2]);
    assert!(seen[3].1.contains_key("if-none-match"), "{:?}", seen[3]);
    assert!(!cache.needs_saving(), "nothing changed in the warm run");
}

#[tokio::test]
async fn a_304_with_its_own_link_is_followed_and_a_404_drops_the_entry() {
    // Page 1's body never changes (same ETag), but the listing grew: the
    // 304 now links to a page 2 the cached answer did not know.
    let grown = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = grown.clone();
    let (base, _seen) = github_like(move |uri, headers, base| {
        let grown = flag.load(std::sync::atomic::Ordering::SeqCst);
        match uri {
            "/orgs/x/repos" if headers.contains_key("if-none-match") && grown => {
                reply(304, "").header("etag", "\"p1\"").header(
                    "link",
                    format!(r#"<{base}/orgs/x/repos?page=2>; rel="next""#),
                )
            }
            "/orgs/x/repos" => reply(200, "[1]")
                .header("etag", "\"p1\"")
                .header("link", format!(r#"<{base}/orgs/x/repos>; rel="first""#)),
            "/orgs/x/repos?page=2" => reply(200, "[2]"),
            _ => reply(404, r#"{"message":"Not Found"}"#),
        }
    })
    .await;
    let cache = ResponseCache::new();
    let config = HttpConfig {
        response_cache: Some(cache.clone()),
        ..fast()
    };
    let client = github_client(&base, config);
    let stats = RequestStats::new();
    let first: Vec<u32> = client
        .get_all_pages("/orgs/x/repos", &[], &stats)
        .await
        .expect("first");
    assert_eq!(first, [1]);
    grown.store(true, std::sync::atomic::Ordering::SeqCst);
    let second: Vec<u32> = client
        .get_all_pages("/orgs/x/repos", &[], &stats)
        .await
        .expect("second");
    assert_eq!(second, [1, 2], "the 304's own Link is followed");
    assert_eq!(stats.not_modified(), 1);

    // A cached URL that answers 404 loses its entry.
    cache.put(
        &format!("{base}/orgs/gone/repos"),
        sextant::source::http::CachedResponse {
            etag: "\"g\"".into(),
            link: None,
            body: std::sync::Arc::from(&b"[9]"[..]),
        },
    );
    let before = cache.len();
    let gone = client
        .get_all_pages::<u32>("/orgs/gone/repos", &[], &stats)
        .await
        .expect_err("404");
    assert!(gone.is_not_found(), "{gone}");
    assert_eq!(cache.len(), before - 1);
}

#[tokio::test]
async fn without_the_declaration_no_condition_is_sent() {
    let (base, seen) = github_like(|_, _, _| reply(200, "{}").header("etag", "\"1\"")).await;
    let cache = ResponseCache::new();
    let config = HttpConfig {
        response_cache: Some(cache.clone()),
        ..fast()
    };
    let client = client_with(&base, config);
    get(&client, "/me", &RequestStats::new()).await.expect("a");
    get(&client, "/me", &RequestStats::new()).await.expect("b");
    assert!(cache.is_empty());
    assert!(
        seen.all()
            .iter()
            .all(|(_, h)| !h.contains_key("if-none-match"))
    );
}

#[tokio::test]
async fn the_auth_header_cannot_be_declared_twice() {
    let source = HttpSource::new("gh", "http://127.0.0.1:9", "Authorization", "Bearer x")
        .header("authorization", "Bearer y");
    let err = HttpClient::new(source, fast()).expect_err("refused");
    assert!(err.to_string().contains("auth header"), "{err}");
    let source = HttpSource::new("gh", "http://127.0.0.1:9", "Authorization", "Bearer x")
        .header("X-Bad\n", "v");
    let err = HttpClient::new(source, fast()).expect_err("refused");
    assert!(err.to_string().contains("not a valid header name"), "{err}");
}

/// The reset is read against the server's `Date`, not this machine's
/// clock: a server an hour ahead does not make us wait an hour (up to the
/// cap), one an hour behind does not make us skip the wait.
#[tokio::test]
async fn the_reset_wait_follows_the_servers_clock_not_ours() {
    for skew in [3600i64, -3600] {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_secs() as i64;
        let server_now = now + skew;
        let date = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(server_now as u64));
        let reset = (server_now + 1).to_string();
        let (base, _) = github_like(move |uri, _, _| {
            if uri == "/first" {
                reply(200, "{}")
                    .header("date", date.clone())
                    .header("x-ratelimit-remaining", "0")
                    .header("x-ratelimit-reset", reset.clone())
            } else {
                reply(200, "{}").header("x-ratelimit-remaining", "4999")
            }
        })
        .await;
        let config = HttpConfig {
            reset_wait_cap: Duration::from_secs(20),
            ..fast()
        };
        let client = github_client(&base, config);
        let stats = RequestStats::new();
        get(&client, "/first", &stats).await.expect("first");
        get(&client, "/second", &stats).await.expect("second");
        let s = stats.snapshot();
        assert_eq!(s.reset_waits, 1, "server clock {skew:+}s: {s:?}");
        assert!(
            s.reset_wait_ms <= 1000,
            "server clock {skew:+}s: waited for the server's one second, not the skew: {s:?}"
        );
    }
}
