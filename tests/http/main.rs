//! The shared HTTP driver against real local axum servers on 127.0.0.1:0:
//! retries, Retry-After, timeouts, auth errors and redaction, decoding, size
//! and rate limits. Pagination is in `pagination.rs`, helpers in `support.rs`.

mod github_style;
mod pagination;
mod support;

use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::routing;
use serde_json::{Value, json};
use sextant::source::http::{
    HttpClient, HttpConfig, HttpError, HttpSource, RateLimit, RequestStats, encode_path,
};
use support::*;

#[tokio::test]
async fn retry_after_seconds_is_honoured_on_a_429_storm() {
    let (base, log) = scripted(vec![
        reply(429, "slow down").header("retry-after", "1"),
        reply(429, "slow down").header("retry-after", "0"),
        reply(429, "slow down"),
        reply(200, r#"{"ok":true}"#),
    ])
    .await;
    let stats = RequestStats::new();
    let value = get(&client(&base), "/me", &stats).await.expect("ok");
    assert_eq!(value, json!({"ok": true}));
    assert_eq!(log.count(), 4);
    let s = stats.snapshot();
    assert_eq!((s.requests, s.retries, s.throttled), (4, 3, 3));
    assert!(s.waited_ms >= 1000, "Retry-After: 1 was honoured: {s:?}");
}

#[tokio::test]
async fn retry_after_http_date_is_honoured() {
    let when = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(2));
    let (base, _) = scripted(vec![
        reply(503, "maintenance").header("retry-after", when),
        reply(200, "[]"),
    ])
    .await;
    let stats = RequestStats::new();
    get(&client(&base), "/me", &stats).await.expect("ok");
    // The date has one-second resolution, so the wait is between 1s and 2s.
    assert!(stats.waited_ms() >= 500, "{:?}", stats.snapshot());
    assert_eq!((stats.retries(), stats.throttled()), (1, 0));
}

#[tokio::test]
async fn rate_limit_headers_are_never_delays() {
    let (base, log) = scripted(vec![
        reply(429, "")
            .header("x-ratelimit-reset", "99999999999")
            .header("x-ratelimit-remaining", "0")
            .header("x-ratelimit-limit", "100"),
        reply(200, "{}"),
    ])
    .await;
    let stats = RequestStats::new();
    get(&client(&base), "/me", &stats).await.expect("ok");
    assert_eq!(log.count(), 2);
    assert!(stats.waited_ms() < 1000, "{:?}", stats.snapshot());
}

#[tokio::test]
async fn retry_after_is_capped() {
    let (base, _) = scripted(vec![
        reply(429, "").header("retry-after", "3600"),
        reply(200, "{}"),
    ])
    .await;
    let config = HttpConfig {
        retry_after_cap: Duration::from_millis(20),
        ..fast()
    };
    let stats = RequestStats::new();
    get(&client_with(&base, config), "/me", &stats)
        .await
        .expect("ok");
    assert!(stats.waited_ms() < 1000, "{:?}", stats.snapshot());
}

#[tokio::test]
async fn server_errors_are_retried_then_succeed() {
    let (base, log) = scripted(vec![
        reply(500, "oops"),
        reply(502, "bad gateway"),
        reply(504, "gateway timeout"),
        reply(200, r#"{"id":1}"#),
    ])
    .await;
    let stats = RequestStats::new();
    let value = get(&client(&base), "/me", &stats).await.expect("ok");
    assert_eq!(value, json!({"id": 1}));
    assert_eq!(log.count(), 4);
    assert_eq!((stats.retries(), stats.throttled()), (3, 0));
}

#[tokio::test]
async fn server_error_forever_gives_up_naming_the_endpoint() {
    let (base, log) = scripted(vec![reply(500, "database on fire")]).await;
    let config = HttpConfig {
        max_retries: 3,
        ..fast()
    };
    let stats = RequestStats::new();
    let err = get(&client_with(&base, config), "/flaky", &stats)
        .await
        .expect_err("gives up");
    assert!(
        matches!(
            err,
            HttpError::Server {
                status: 500,
                attempts: 4,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(log.count(), 4);
    assert_eq!((err.kind(), err.is_transient()), ("server_error", true));
    let message = err.to_string();
    assert!(
        message.contains("GET /api/v2/flaky") && message.contains("database on fire"),
        "{message}"
    );
}

#[tokio::test]
async fn hung_endpoint_times_out() {
    let router = Router::new().fallback(|| async {
        std::future::pending::<()>().await;
        "never"
    });
    let base = serve(router).await;
    let config = HttpConfig {
        request_timeout: Duration::from_millis(300),
        max_retries: 1,
        ..fast()
    };
    let stats = RequestStats::new();
    let err = get(&client_with(&base, config), "/hang", &stats)
        .await
        .expect_err("times out");
    assert!(
        matches!(err, HttpError::Timeout { attempts: 2, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("GET /api/v2/hang"), "{err}");
    assert_eq!(stats.requests(), 2);
}

#[tokio::test]
async fn unreachable_host_is_a_connect_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    drop(listener);
    let config = HttpConfig {
        max_retries: 1,
        ..fast()
    };
    let err = get(&client_with(&base, config), "/me", &RequestStats::new())
        .await
        .expect_err("refused");
    assert_eq!(err.kind(), "connect", "{err:?}");
    assert!(err.to_string().contains("GET /api/v2/me"), "{err}");
}

#[tokio::test]
async fn malformed_json_is_a_decode_error_naming_the_endpoint() {
    let (base, _) = scripted(vec![reply(200, r#"{"items": [1, 2"#)]).await;
    let err = client(&base)
        .get_json::<Value>("/broken", &[("x", "1")], &RequestStats::new())
        .await
        .expect_err("decode");
    assert_eq!(err.kind(), "decode");
    assert!(err.to_string().contains("GET /api/v2/broken?x=1"), "{err}");
}

#[tokio::test]
async fn json_served_as_text_plain_decodes() {
    #[derive(serde::Deserialize)]
    struct Me {
        name: String,
    }
    let body = r#"{"name":"ada","field_added_later":{"x":1}}"#;
    let (base, _) = scripted(vec![reply(200, body).header("content-type", "text/plain")]).await;
    let me: Me = client(&base)
        .get_json("/me", &[], &RequestStats::new())
        .await
        .expect("decodes");
    assert_eq!(me.name, "ada");
}

#[tokio::test]
async fn unauthorized_is_not_retried_and_never_shows_the_token() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    for status in [401, 403] {
        let (base, log) = scripted(vec![reply(status, format!("bad token {TOKEN}"))]).await;
        let client = client(&base);
        let stats = RequestStats::new();
        let err = get(&client, "/me", &stats).await.expect_err("rejected");
        assert!(err.is_auth(), "{err:?}");
        assert_eq!(log.count(), 1, "never retried");
        assert_eq!(
            log.requests()[0].token.as_deref(),
            Some(TOKEN),
            "the token is sent"
        );
        let message = err.to_string();
        let expected =
            format!("connection \"ci-prod\": token rejected ({status}) on GET /api/v2/me; {HELP}");
        assert_eq!(message, expected);
        for shown in [message, format!("{err:?}"), format!("{client:?}")] {
            assert!(!shown.contains(TOKEN), "token leaked: {shown}");
        }
    }
    let source = HttpSource::new("c", "http://h", "Circle-Token", TOKEN);
    assert!(!format!("{source:?}").contains(TOKEN));

    let logs = String::from_utf8(logs.0.lock().expect("buf").clone()).expect("utf8");
    assert!(
        logs.contains("GET /api/v2/me"),
        "tracing was captured: {logs}"
    );
    assert!(!logs.contains(TOKEN), "token leaked into tracing: {logs}");
}

#[tokio::test]
async fn other_4xx_keep_a_short_redacted_excerpt() {
    let body = format!("invalid header value {TOKEN} {}", "x".repeat(1000));
    let (base, log) = scripted(vec![reply(400, body)]).await;
    let bearer = HttpSource::new(
        "c",
        format!("{base}/api/v2"),
        "Authorization",
        format!("Bearer {TOKEN}"),
    );
    let clients = [
        client(&base),
        HttpClient::new(bearer, fast()).expect("client"),
    ];
    for client in &clients {
        let err = get(client, "/me", &RequestStats::new())
            .await
            .expect_err("400");
        let HttpError::Status {
            status, excerpt, ..
        } = &err
        else {
            panic!("{err:?}");
        };
        assert_eq!(*status, 400);
        assert!(
            excerpt.chars().count() <= 201 && excerpt.contains("[redacted]"),
            "{excerpt}"
        );
        assert!(!err.to_string().contains(TOKEN), "{err}");
    }
    assert_eq!(log.count(), 2, "never retried");
}

#[tokio::test]
async fn a_token_across_the_excerpt_cut_is_redacted_whole() {
    // The token starts just before the 200-character cut.
    let body = format!("{} {TOKEN} trailing text", "y".repeat(190));
    let (base, _log) = scripted(vec![reply(400, body)]).await;
    let err = get(&client(&base), "/me", &RequestStats::new())
        .await
        .expect_err("400");
    let text = err.to_string();
    let prefix: String = TOKEN.chars().take(6).collect();
    assert!(
        !text.contains(&prefix),
        "part of the token survived: {text}"
    );
    assert!(text.contains("[redact"), "{text}");
}

#[tokio::test]
async fn not_found_is_its_own_error() {
    let (base, log) = scripted(vec![reply(404, r#"{"message":"Not found"}"#)]).await;
    let err = get(&client(&base), "/project/x", &RequestStats::new())
        .await
        .expect_err("404");
    assert!(err.is_not_found() && !err.is_transient(), "{err:?}");
    assert!(err.to_string().contains("GET /api/v2/project/x"));
    assert_eq!(log.count(), 1);
}

#[tokio::test]
async fn oversized_responses_are_refused() {
    let big = format!("[{}0]", "0,".repeat(5000));
    let router = Router::new()
        .route("/api/v2/sized", routing::get(move || async move { big }))
        .route(
            "/api/v2/chunked",
            routing::get(|| async {
                let chunks = (0..20).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b' '; 512])));
                Body::from_stream(futures::stream::iter(chunks))
            }),
        );
    let base = serve(router).await;
    let config = HttpConfig {
        max_response_bytes: 1024,
        ..fast()
    };
    let client = client_with(&base, config);
    for path in ["/sized", "/chunked"] {
        let err = get(&client, path, &RequestStats::new())
            .await
            .expect_err("too large");
        assert!(
            matches!(err, HttpError::TooLarge { limit: 1024, .. }),
            "{path}: {err:?}"
        );
    }
}

#[tokio::test]
async fn rate_limiter_spaces_requests() {
    let (base, log) = scripted(vec![reply(200, "{}")]).await;
    let config = HttpConfig {
        rate_limit: RateLimit::per_second(5, 1),
        ..fast()
    };
    let client = client_with(&base, config);
    let stats = RequestStats::new();
    let started = std::time::Instant::now();
    for _ in 0..6 {
        get(&client, "/me", &stats).await.expect("ok");
    }
    assert_eq!(log.count(), 6);
    // The sixth request may not start before 5 × 200ms.
    assert!(started.elapsed() >= Duration::from_millis(990));
    // Those waits are accounted, less the time the requests themselves took.
    assert!(stats.waited_ms() >= 700, "{:?}", stats.snapshot());
}

#[tokio::test]
async fn paths_are_encoded_and_headers_sent() {
    let (base, log) = scripted(vec![reply(200, "{}")]).await;
    let client = client(&base);
    let stats = RequestStats::new();
    let path = encode_path("/project/gh/zürich-labs/api 2/envvar");
    get(&client, &path, &stats).await.expect("ok");
    let seen = &log.requests()[0];
    assert_eq!(
        seen.uri,
        "/api/v2/project/gh/z%C3%BCrich-labs/api%202/envvar"
    );
    let agent = seen.user_agent.as_deref().unwrap_or_default();
    assert_eq!(agent, concat!("sextant/", env!("CARGO_PKG_VERSION")));

    for unsafe_path in ["/project/../me", "/project/zürich", "/me?admin=1"] {
        let err = get(&client, unsafe_path, &stats)
            .await
            .expect_err(unsafe_path);
        assert_eq!(err.kind(), "invalid_path", "{unsafe_path}");
    }
    assert_eq!(log.count(), 1, "nothing was sent");
}

#[tokio::test]
async fn redirects_never_leave_the_origin() {
    let (elsewhere, stolen) = scripted(vec![reply(200, "{}")]).await;
    let (base, _) = scripted(vec![
        reply(302, "").header("location", "/api/v2/moved"),
        reply(302, "").header("location", format!("{elsewhere}/steal")),
    ])
    .await;
    let err = get(&client(&base), "/me", &RequestStats::new())
        .await
        .expect_err("not followed");
    assert_eq!(err.status(), Some(302), "{err:?}");
    assert_eq!(stolen.count(), 0, "the token never went to another host");
}

#[tokio::test]
async fn bad_settings_are_config_errors_without_the_token() {
    let cases = [
        HttpSource::new("c", "not a url", "Circle-Token", TOKEN),
        HttpSource::new("c", "ftp://h", "Circle-Token", TOKEN),
        HttpSource::new("c", "http://user:pw@h", "Circle-Token", TOKEN),
        HttpSource::new("c", "ftp://user:hunter22@h", "Circle-Token", TOKEN),
        HttpSource::new("c", "http://user:hunter22@[h", "Circle-Token", TOKEN),
        HttpSource::new("c", "http://h", "Bad Header", TOKEN),
        HttpSource::new("c", "http://h", "Circle-Token", format!("{TOKEN}\n")),
    ];
    for source in cases {
        let err = HttpClient::new(source, HttpConfig::default()).expect_err("invalid");
        assert_eq!(err.kind(), "config");
        let message = err.to_string();
        assert!(
            !message.contains(TOKEN) && !message.contains("hunter22"),
            "{message}"
        );
    }
    let zero = HttpConfig {
        rate_limit: RateLimit::per_second(0, 1),
        ..HttpConfig::default()
    };
    let source = HttpSource::new("c", "http://h", "Circle-Token", TOKEN);
    assert_eq!(
        HttpClient::new(source, zero).expect_err("zero").kind(),
        "config"
    );
}

/// A base URL that could carry a token (user info, a query such as
/// `?circle-token=…`) is refused without being echoed; other unusable base
/// URLs are named with the fix.
#[test]
fn unusable_base_urls_are_refused_and_never_echo_a_token() {
    let build = |base: &str| {
        HttpClient::new(
            HttpSource::new("ci-prod", base, "Circle-Token", TOKEN),
            fast(),
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default()
    };
    let secret = "s3cr3t-token-value";
    for (base, expected) in [
        (
            format!("https://circleci.com/api/v2?circle-token={secret}"),
            "connection \"ci-prod\": invalid http settings: base URL must not have a query (?…) or a fragment (#…); give the API's address alone and put the token in the secrets",
        ),
        (
            format!("https://circleci.com/api/v2#{secret}"),
            "connection \"ci-prod\": invalid http settings: base URL must not have a query (?…) or a fragment (#…); give the API's address alone and put the token in the secrets",
        ),
        (
            format!("https://user:{secret}@circleci.com/api/v2"),
            "connection \"ci-prod\": invalid http settings: base URL must not contain credentials; put the token in the secrets",
        ),
        (
            format!("ht tps://{secret}@bad"),
            "connection \"ci-prod\": invalid http settings: base URL (not shown: it contains '@', '?' or '#') is not a URL: relative URL without a base",
        ),
        (
            "circleci.com/api/v2".to_owned(),
            "connection \"ci-prod\": invalid http settings: base URL \"circleci.com/api/v2\" is not a URL: relative URL without a base",
        ),
        (
            "ftp://circleci.com/api".to_owned(),
            "connection \"ci-prod\": invalid http settings: base URL \"ftp://circleci.com/api\" must be an http or https URL",
        ),
    ] {
        let message = build(&base);
        assert_eq!(message, expected, "for {base}");
        assert!(!message.contains(secret), "{message}");
    }
}
