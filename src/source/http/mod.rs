//! The shared HTTP layer every source polls through: auth header, rate limit,
//! retry with backoff and `Retry-After`, timeouts, size limit, JSON decoding,
//! pagination and per-step accounting. It touches the network and nothing else.
//!
//! A source supplies an [`HttpSource`] (base URL, auth header, connection
//! name, what the token needs, pagination style, and what differs between
//! APIs as declarations: extra headers, how its rate-limit headers are read,
//! whether a 403 can mean throttling, whether to make conditional requests)
//! and an [`HttpConfig`]; everything else lives here, so no source writes its
//! own HTTP loop and this layer has no branch on which source it serves.
//!
//! ```no_run
//! # async fn demo() -> Result<(), sextant::source::http::HttpError> {
//! use sextant::source::http::*;
//! let client = HttpClient::new(
//!     HttpSource::new("ci-prod", "https://circleci.com/api/v2", "Circle-Token", "secret")
//!         .token_help("create a personal API token and run: sextant connection update ci-prod --secrets-file -"),
//!     HttpConfig::default(),
//! )?;
//! let stats = RequestStats::new();
//! let me: serde_json::Value = client.get_json("/me", &[], &stats).await?;
//! let path = encode_path("/project/gh/zürich-labs/api/pipeline");
//! let pipelines: Vec<serde_json::Value> = client.get_all_pages(&path, &[], &stats).await?;
//! println!("{me} {} pipelines in {} requests", pipelines.len(), stats.requests());
//! # Ok(()) }
//! ```
//!
//! Invariants: the auth value is a sensitive `HeaderValue` held only inside
//! [`HttpClient`]; it never reaches `Debug`, an error, or a tracing field.
//! Redirects are followed only to the base URL's origin, so the header is
//! never sent to another host. Rate-limit count headers are never read as
//! delays unless the source declares [`RateLimitHeaders::WaitForReset`];
//! `Retry-After` always is.

mod cache;
mod error;
mod paginate;
mod path;
mod retry;
mod stats;

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use serde::de::DeserializeOwned;
use url::Url;

pub use cache::{CachedResponse, ResponseCache};
pub use error::HttpError;
pub use paginate::{Pages, Pagination, next_link};
pub use path::{encode_path, encode_segment};
pub(crate) use retry::{retry_after, transport_message};
pub use stats::{RequestCounts, RequestStats};

/// What a source supplies to talk to its API. Holds the secret, so its
/// `Debug` is written by hand and redacts it.
#[derive(Clone)]
pub struct HttpSource {
    /// The connection's name, used in error messages (`ci-prod`).
    pub connection: String,
    /// Base URL every path is appended to (`https://circleci.com/api/v2`).
    pub base_url: String,
    /// Name of the auth header (`Circle-Token`, `Authorization`).
    pub auth_header: String,
    /// The header's full value (`<token>`, `Bearer <token>`). Secret:
    /// private, so only the client reads it (into a sensitive header
    /// value); `Debug` redacts it.
    auth_value: String,
    /// What the token needs, appended to 401/403 errors.
    pub token_help: String,
    /// How list endpoints are paginated by default.
    pub pagination: Pagination,
    /// Headers sent with every request besides the auth header
    /// (`Accept: application/vnd.github+json`). Not secret.
    pub headers: Vec<(String, String)>,
    /// How the API's rate-limit headers are read.
    pub rate_limit_headers: RateLimitHeaders,
    /// Whether a 403 carrying `Retry-After`, or the declared remaining
    /// header at 0, is throttling (retried) rather than a refusal. A 403
    /// without either is always an auth or permission error.
    pub forbidden_may_throttle: bool,
    /// Whether to send `If-None-Match` with the `ETag` of the last response
    /// for a URL and replay its body on `304 Not Modified` (needs
    /// [`HttpConfig::response_cache`]).
    pub conditional_requests: bool,
}

/// How a source's rate-limit response headers are read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RateLimitHeaders {
    /// Never: they are counts, not delays (CircleCI's `X-RateLimit-*`).
    /// Only `Retry-After` delays a request.
    #[default]
    Counts,
    /// `remaining` requests are left in a window that ends at `reset`
    /// (Unix seconds). When a response says `remaining <= low_water`, the
    /// next request waits until the reset (capped by
    /// [`HttpConfig::reset_wait_cap`]) instead of being refused (GitHub's
    /// `x-ratelimit-remaining` / `x-ratelimit-reset`).
    WaitForReset {
        remaining: &'static str,
        reset: &'static str,
        low_water: u64,
    },
}

impl HttpSource {
    /// A source with a generic token hint and [`Pagination::body_token`].
    pub fn new(
        connection: impl Into<String>,
        base_url: impl Into<String>,
        auth_header: impl Into<String>,
        auth_value: impl Into<String>,
    ) -> Self {
        Self {
            connection: connection.into(),
            base_url: base_url.into(),
            auth_header: auth_header.into(),
            auth_value: auth_value.into(),
            token_help: "check that the token is valid and has the required access".to_owned(),
            pagination: Pagination::body_token(),
            headers: Vec::new(),
            rate_limit_headers: RateLimitHeaders::Counts,
            forbidden_may_throttle: false,
            conditional_requests: false,
        }
    }

    /// Adds a header sent with every request (replacing a default one of the
    /// same name, such as `Accept`).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn rate_limit_headers(mut self, policy: RateLimitHeaders) -> Self {
        self.rate_limit_headers = policy;
        self
    }

    pub fn forbidden_may_throttle(mut self, yes: bool) -> Self {
        self.forbidden_may_throttle = yes;
        self
    }

    pub fn conditional_requests(mut self, yes: bool) -> Self {
        self.conditional_requests = yes;
        self
    }

    pub fn token_help(mut self, help: impl Into<String>) -> Self {
        self.token_help = help.into();
        self
    }

    pub fn pagination(mut self, pagination: Pagination) -> Self {
        self.pagination = pagination;
        self
    }
}

impl fmt::Debug for HttpSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpSource")
            .field("connection", &self.connection)
            .field("base_url", &self.base_url)
            .field("auth_header", &self.auth_header)
            .field("auth_value", &"[redacted]")
            .field("token_help", &self.token_help)
            .field("pagination", &self.pagination)
            .field("headers", &self.headers)
            .field("rate_limit_headers", &self.rate_limit_headers)
            .field("forbidden_may_throttle", &self.forbidden_may_throttle)
            .field("conditional_requests", &self.conditional_requests)
            .finish()
    }
}

/// Requests allowed per connection: `requests` per `per`, with bursts of up
/// to `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub requests: u32,
    pub per: Duration,
    pub burst: u32,
}

impl RateLimit {
    /// `n` requests per second, bursts of up to `burst`.
    pub const fn per_second(n: u32, burst: u32) -> Self {
        Self {
            requests: n,
            per: Duration::from_secs(1),
            burst,
        }
    }

    fn quota(&self) -> Option<Quota> {
        let burst = std::num::NonZeroU32::new(self.burst)?;
        if self.requests == 0 {
            return None;
        }
        Quota::with_period(self.per / self.requests).map(|q| q.allow_burst(burst))
    }
}

impl Default for RateLimit {
    /// 10 requests per second, bursts of 10: well under CircleCI's and
    /// GitHub's published limits.
    fn default() -> Self {
        Self::per_second(10, 10)
    }
}

/// Tunables of the HTTP driver. Every source gets the defaults unless its
/// integration overrides them; tests shrink the delays.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Time allowed to establish a connection (TCP + TLS).
    pub connect_timeout: Duration,
    /// Time allowed for one whole attempt, body included.
    pub request_timeout: Duration,
    pub user_agent: String,
    /// Per client, i.e. per connection: share one `HttpClient` between the
    /// steps of a connection so that they share the limit.
    pub rate_limit: RateLimit,
    /// Retries after the first attempt (so `max_retries + 1` attempts).
    pub max_retries: usize,
    /// First backoff delay; doubles per retry up to `backoff_max`.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Adds a random `[0, delay)` to each backoff delay (capped at
    /// `backoff_max`) so that many clients do not retry in step.
    pub jitter: bool,
    /// The longest `Retry-After` honoured; longer values wait this long.
    pub retry_after_cap: Duration,
    /// Bodies larger than this fail with [`HttpError::TooLarge`].
    pub max_response_bytes: usize,
    /// Listings longer than this fail with [`HttpError::TooManyPages`].
    pub max_pages: usize,
    /// The longest wait for a rate-limit window to reset
    /// ([`RateLimitHeaders::WaitForReset`]); longer resets wait this long.
    pub reset_wait_cap: Duration,
    /// Where conditional requests keep ETags and bodies; `None` disables
    /// them whatever the source declares. `sync` loads it per integration.
    pub response_cache: Option<ResponseCache>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            user_agent: concat!("sextant/", env!("CARGO_PKG_VERSION")).to_owned(),
            rate_limit: RateLimit::default(),
            max_retries: 5,
            backoff_min: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
            jitter: true,
            retry_after_cap: Duration::from_secs(120),
            max_response_bytes: 32 * 1024 * 1024,
            max_pages: 1000,
            reset_wait_cap: Duration::from_secs(600),
            response_cache: None,
        }
    }
}

/// The one HTTP client of a connection. Cheap to clone (an `Arc` inside);
/// clones share the rate limiter and the connection pool.
#[derive(Clone)]
pub struct HttpClient {
    inner: Arc<Inner>,
}

struct Inner {
    connection: String,
    base_url: Url,
    auth_name: HeaderName,
    /// Marked sensitive; never formatted.
    auth_value: HeaderValue,
    token_help: String,
    pagination: Pagination,
    rate_limit_headers: RateLimitHeaders,
    forbidden_may_throttle: bool,
    /// The cache conditional requests use, when the source declared them.
    cache: Option<ResponseCache>,
    config: HttpConfig,
    http: reqwest::Client,
    limiter: DefaultDirectRateLimiter,
    /// Set when a response said the rate-limit window is (nearly) used up:
    /// no request is sent before this time.
    paused_until: Mutex<Option<SystemTime>>,
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        f.debug_struct("HttpClient")
            .field("connection", &inner.connection)
            .field("base_url", &inner.base_url.as_str())
            .field("auth_header", &inner.auth_name.as_str())
            .field("auth_value", &"[redacted]")
            .field("pagination", &inner.pagination)
            .field("rate_limit_headers", &inner.rate_limit_headers)
            .field("conditional_requests", &inner.cache.is_some())
            .field("config", &inner.config)
            .finish_non_exhaustive()
    }
}

impl HttpClient {
    /// Builds the client. Fails on an unusable base URL, auth header or rate
    /// limit; the message never contains the auth value.
    pub fn new(source: HttpSource, config: HttpConfig) -> Result<Self, HttpError> {
        let HttpSource {
            connection,
            base_url,
            auth_header,
            auth_value,
            token_help,
            pagination,
            headers: extra_headers,
            rate_limit_headers,
            forbidden_may_throttle,
            conditional_requests,
        } = source;
        let bad = |message: String| HttpError::Config {
            connection: connection.clone(),
            message,
        };

        // The URL is echoed in errors only when it cannot hold credentials:
        // not in user info (`@`), not in a query (`?circle-token=…`).
        let shown = if base_url.contains(['@', '?', '#']) {
            "(not shown: it contains '@', '?' or '#')".to_owned()
        } else {
            format!("{base_url:?}")
        };
        let base_url = Url::parse(&base_url)
            .map_err(|e| bad(format!("base URL {shown} is not a URL: {e}")))?;
        if !base_url.username().is_empty() || base_url.password().is_some() {
            return Err(bad(
                "base URL must not contain credentials; put the token in the secrets".to_owned(),
            ));
        }
        // A base URL has no use for a query or a fragment (paths are joined
        // onto it, which drops them), and a query is where a token pasted
        // with the URL would sit.
        if base_url.query().is_some() || base_url.fragment().is_some() {
            return Err(bad(
                "base URL must not have a query (?…) or a fragment (#…); give the API's address alone and put the token in the secrets".to_owned(),
            ));
        }
        if !matches!(base_url.scheme(), "http" | "https") || base_url.cannot_be_a_base() {
            return Err(bad(format!(
                "base URL {shown} must be an http or https URL"
            )));
        }
        let auth_name = HeaderName::from_bytes(auth_header.as_bytes())
            .map_err(|_| bad(format!("{auth_header:?} is not a valid header name")))?;
        let mut auth_value = HeaderValue::from_str(&auth_value).map_err(|_| {
            bad("the token contains characters not allowed in a header (a stray newline?)".into())
        })?;
        auth_value.set_sensitive(true);
        let quota = config.rate_limit.quota().ok_or_else(|| {
            bad(format!(
                "rate limit {:?} must allow at least one request",
                config.rate_limit
            ))
        })?;
        if config.backoff_min > config.backoff_max {
            return Err(bad("backoff_min must not exceed backoff_max".to_owned()));
        }

        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        for (name, value) in &extra_headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| bad(format!("{name:?} is not a valid header name")))?;
            if name == auth_name {
                return Err(bad(format!(
                    "header {name} is the auth header; it cannot be set twice"
                )));
            }
            let value = HeaderValue::from_str(value).map_err(|_| {
                bad(format!(
                    "the value of header {name} is not a valid header value"
                ))
            })?;
            headers.insert(name, value);
        }
        let http = reqwest::Client::builder()
            .user_agent(config.user_agent.clone())
            .default_headers(headers)
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .redirect(same_origin_redirects())
            .build()
            .map_err(|e| bad(format!("cannot build the HTTP client: {e}")))?;

        let cache = if conditional_requests {
            config.response_cache.clone()
        } else {
            None
        };
        Ok(Self {
            inner: Arc::new(Inner {
                connection,
                base_url,
                auth_name,
                auth_value,
                token_help,
                pagination,
                rate_limit_headers,
                forbidden_may_throttle,
                cache,
                config,
                http,
                limiter: RateLimiter::direct(quota),
                paused_until: Mutex::new(None),
            }),
        })
    }

    /// `GET base_url + path ? query` and decode the body as JSON, whatever
    /// its Content-Type. `path` must already be encoded (see
    /// [`encode_path`]); `query` values are encoded here.
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
        stats: &RequestStats,
    ) -> Result<T, HttpError> {
        let url = self.url(path, query)?;
        let fetched = self.fetch(&url, stats).await?;
        serde_json::from_slice(&fetched.body).map_err(|e| HttpError::Decode {
            endpoint: fetched.endpoint,
            message: e.to_string(),
        })
    }

    /// Like [`HttpClient::get_json`], also returning the response headers
    /// (for a `304`, the cached `Link` and the `304`'s own headers).
    pub async fn get_json_with_headers<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
        stats: &RequestStats,
    ) -> Result<(T, HeaderMap), HttpError> {
        let url = self.url(path, query)?;
        let fetched = self.fetch(&url, stats).await?;
        let value = serde_json::from_slice(&fetched.body).map_err(|e| HttpError::Decode {
            endpoint: fetched.endpoint,
            message: e.to_string(),
        })?;
        Ok((value, fetched.headers))
    }

    /// Every item of a paginated listing, in order, using the source's
    /// pagination style. For long listings prefer [`HttpClient::pages`].
    pub async fn get_all_pages<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
        stats: &RequestStats,
    ) -> Result<Vec<T>, HttpError> {
        let mut pages = self.pages(path, query, stats)?;
        let mut all = Vec::new();
        while let Some(items) = pages.next_page().await? {
            all.extend(items);
        }
        Ok(all)
    }

    /// A listing fetched one page at a time with the source's pagination
    /// style: `while let Some(items) = pages.next_page().await? { … }`.
    pub fn pages<'a, T: DeserializeOwned>(
        &'a self,
        path: &str,
        query: &[(&str, &str)],
        stats: &'a RequestStats,
    ) -> Result<Pages<'a, T>, HttpError> {
        self.pages_with(self.inner.pagination.clone(), path, query, stats)
    }

    /// Like [`HttpClient::pages`] with a pagination style for this endpoint
    /// only.
    pub fn pages_with<'a, T: DeserializeOwned>(
        &'a self,
        pagination: Pagination,
        path: &str,
        query: &[(&str, &str)],
        stats: &'a RequestStats,
    ) -> Result<Pages<'a, T>, HttpError> {
        let url = self.url(path, query)?;
        Ok(Pages::new(self, pagination, url, stats))
    }

    /// Whether `url` is on the base URL's origin (scheme, host and port):
    /// the only place a page link may lead, so the token never leaves it.
    pub(crate) fn same_origin(&self, url: &Url) -> bool {
        url.origin() == self.inner.base_url.origin()
    }

    /// `base_url` + `path` (already encoded) + `query` (encoded here as
    /// `application/x-www-form-urlencoded`, so `+/=` survive).
    fn url(&self, path: &str, query: &[(&str, &str)]) -> Result<Url, HttpError> {
        let base = &self.inner.base_url;
        let joined = format!(
            "{}/{}",
            base.path().trim_end_matches('/'),
            path.trim_start_matches('/')
        );
        let mut url = base.clone();
        url.set_path(&joined);
        url.set_fragment(None);
        // `set_path` resolves `.`/`..` and encodes what the caller did not
        // (a stray `?` would become `%3F`): a path that changes here would
        // reach another resource than the caller named.
        if url.path() != joined {
            return Err(HttpError::InvalidPath {
                path: path.to_owned(),
            });
        }
        url.set_query(None);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }
}

/// Follows redirects within the origin of the first URL only: the auth
/// header is a custom one (`Circle-Token`) that reqwest would not strip on a
/// cross-host redirect. A stopped redirect surfaces as `HttpError::Status`.
fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let same_origin = attempt
            .previous()
            .first()
            .is_some_and(|first| first.origin() == attempt.url().origin());
        if same_origin && attempt.previous().len() < 5 {
            attempt.follow()
        } else {
            attempt.stop()
        }
    })
}

/// `GET /path?query`: how errors and traces name a request. Never the host
/// (it may be a private install) and never a header.
fn endpoint(url: &Url) -> String {
    match url.query() {
        Some(q) => format!("GET {}?{q}", url.path()),
        None => format!("GET {}", url.path()),
    }
}

/// A random seed for backoff jitter: `backon` without its `std` feature
/// would otherwise use one fixed seed in every process.
fn jitter_seed() -> u64 {
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}
