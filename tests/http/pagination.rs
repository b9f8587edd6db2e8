//! Pagination through the shared driver: encoded page tokens, page at a
//! time, loops, runaway listings and malformed pages.

use serde_json::json;
use sextant::source::http::{HttpConfig, HttpError, RequestStats};

use crate::support::*;

#[tokio::test]
async fn pagination_follows_url_encoded_tokens() {
    let (base, log) = paged(|token, _| match token {
        None => json!({"items": [1, 2], "next_page_token": "a+b/c=="}),
        Some("a+b/c==") => json!({"items": [3], "next_page_token": "x y/+%&="}),
        Some("x y/+%&=") => json!({"items": [4, 5], "next_page_token": null}),
        Some(other) => json!({"unexpected token": other}),
    })
    .await;
    let stats = RequestStats::new();
    let items: Vec<u32> = client(&base)
        .get_all_pages("/pipeline", &[("org-slug", "gh/zürich-labs")], &stats)
        .await
        .expect("three pages");
    assert_eq!(items, vec![1, 2, 3, 4, 5]);
    assert_eq!(stats.requests(), 3);
    let uris: Vec<String> = log.requests().into_iter().map(|s| s.uri).collect();
    let slug = "org-slug=gh%2Fz%C3%BCrich-labs";
    assert_eq!(
        uris,
        vec![
            format!("/api/v2/pipeline?{slug}"),
            format!("/api/v2/pipeline?{slug}&page-token=a%2Bb%2Fc%3D%3D"),
            format!("/api/v2/pipeline?{slug}&page-token=x+y%2F%2B%25%26%3D"),
        ]
    );
}

#[tokio::test]
async fn pages_one_at_a_time() {
    let (base, _) = paged(|token, _| match token {
        None => json!({"items": ["a"], "next_page_token": "2"}),
        _ => json!({"items": [], "next_page_token": null}),
    })
    .await;
    let client = client(&base);
    let stats = RequestStats::new();
    let mut pages = client
        .pages::<String>("/things", &[], &stats)
        .expect("pages");
    assert_eq!(
        pages.next_page().await.expect("p1"),
        Some(vec!["a".to_owned()])
    );
    assert_eq!(pages.next_page().await.expect("p2"), Some(vec![]));
    assert_eq!(pages.next_page().await.expect("end"), None);
    assert_eq!(pages.pages_fetched(), 2);
}

#[tokio::test]
async fn repeated_page_token_is_a_loop() {
    let (base, log) = paged(|_, _| json!({"items": [1], "next_page_token": "same"})).await;
    let err = client(&base)
        .get_all_pages::<u32>("/loop", &[], &RequestStats::new())
        .await
        .expect_err("loop");
    assert!(
        matches!(&err, HttpError::PageLoop { token_excerpt, .. } if token_excerpt == "same"),
        "{err:?}"
    );
    assert!(err.to_string().contains("GET /api/v2/loop"), "{err}");
    assert_eq!(log.count(), 2);
}

#[tokio::test]
async fn runaway_pagination_stops_at_max_pages() {
    let (base, log) = paged(|_, n| json!({"items": [n], "next_page_token": format!("t{n}")})).await;
    let config = HttpConfig {
        max_pages: 4,
        ..fast()
    };
    let err = client_with(&base, config)
        .get_all_pages::<usize>("/endless", &[], &RequestStats::new())
        .await
        .expect_err("too many");
    assert!(
        matches!(err, HttpError::TooManyPages { max_pages: 4, .. }),
        "{err:?}"
    );
    assert_eq!(log.count(), 4);
}

#[tokio::test]
async fn page_without_items_is_a_decode_error() {
    let (base, _) = scripted(vec![reply(200, r#"{"next_page_token":null}"#)]).await;
    let err = client(&base)
        .get_all_pages::<u32>("/things", &[], &RequestStats::new())
        .await
        .expect_err("decode");
    assert_eq!(err.kind(), "decode");
    assert!(err.to_string().contains("missing `items`"), "{err}");
}
