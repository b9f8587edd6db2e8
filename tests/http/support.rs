//! Test support: scripted axum servers on 127.0.0.1:0 that record what they
//! saw, a fast client configuration, and a tracing capture.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use sextant::source::http::{
    HttpClient, HttpConfig, HttpError, HttpSource, RateLimit, RequestStats,
};

pub const TOKEN: &str = "s3cr3t-T0KEN-do-not-print";
pub const HELP: &str = "the token needs read access to the organisation";

/// What the server saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub uri: String,
    pub token: Option<String>,
    pub user_agent: Option<String>,
}

#[derive(Clone, Default)]
pub struct Log(pub Arc<Mutex<Vec<Seen>>>);

impl Log {
    pub fn record(&self, uri: &Uri, headers: &HeaderMap) {
        let header = |name: &str| {
            headers
                .get(name)
                .map(|v| v.to_str().expect("ascii header").to_owned())
        };
        self.0.lock().expect("log").push(Seen {
            uri: uri.to_string(),
            token: header("circle-token"),
            user_agent: header("user-agent"),
        });
    }
    pub fn requests(&self) -> Vec<Seen> {
        self.0.lock().expect("log").clone()
    }
    pub fn count(&self) -> usize {
        self.0.lock().expect("log").len()
    }
}

/// One scripted answer.
#[derive(Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

pub fn reply(status: u16, body: impl Into<String>) -> Reply {
    Reply {
        status,
        headers: vec![("content-type", "application/json".to_owned())],
        body: body.into(),
    }
}

impl Reply {
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.retain(|(n, _)| *n != name);
        self.headers.push((name, value.into()));
        self
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut response = Response::builder().status(self.status);
        for (name, value) in self.headers {
            response = response.header(name, value);
        }
        response.body(Body::from(self.body)).expect("response")
    }
}

pub async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

/// A server answering any path with `replies` in order, repeating the last.
pub async fn scripted(replies: Vec<Reply>) -> (String, Log) {
    let log = Log::default();
    let state = (log.clone(), Arc::new(replies));
    let router =
        Router::new()
            .fallback(
                |State((log, replies)): State<(Log, Arc<Vec<Reply>>)>,
                 uri: Uri,
                 headers: HeaderMap| async move {
                    log.record(&uri, &headers);
                    let n = log.count() - 1;
                    replies[n.min(replies.len() - 1)].clone()
                },
            )
            .with_state(state);
    (serve(router).await, log)
}

/// A server whose answer depends on the `page-token` query parameter.
pub async fn paged(
    answer: impl Fn(Option<&str>, usize) -> Value + Clone + Send + Sync + 'static,
) -> (String, Log) {
    let log = Log::default();
    let router = Router::new()
        .fallback(
            |State(log): State<Log>,
             uri: Uri,
             headers: HeaderMap,
             Query(q): Query<HashMap<String, String>>| async move {
                log.record(&uri, &headers);
                axum::Json(answer(q.get("page-token").map(String::as_str), log.count()))
            },
        )
        .with_state(log.clone());
    (serve(router).await, log)
}

pub fn fast() -> HttpConfig {
    HttpConfig {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
        rate_limit: RateLimit::per_second(10_000, 10_000),
        backoff_min: Duration::from_millis(1),
        backoff_max: Duration::from_millis(5),
        ..HttpConfig::default()
    }
}

pub fn client_with(base: &str, config: HttpConfig) -> HttpClient {
    HttpClient::new(
        HttpSource::new("ci-prod", format!("{base}/api/v2"), "Circle-Token", TOKEN)
            .token_help(HELP),
        config,
    )
    .expect("client")
}

pub fn client(base: &str) -> HttpClient {
    client_with(base, fast())
}

pub async fn get(
    client: &HttpClient,
    path: &str,
    stats: &RequestStats,
) -> Result<Value, HttpError> {
    tokio::time::timeout(Duration::from_secs(20), client.get_json(path, &[], stats))
        .await
        .expect("the request finished within 20s")
}

/// A tracing subscriber writing into a buffer, for the duration of a test.
#[derive(Clone, Default)]
pub struct Captured(pub Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("buf").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
