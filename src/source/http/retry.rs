//! The request loop: rate limit (our limiter, and the API's own window when
//! the source declares its headers), send (conditionally, with the cached
//! `ETag`), classify, retry with backoff or `Retry-After`, and read the body
//! within the size limit.

use std::time::{Duration, Instant, SystemTime};

use backon::{BackoffBuilder, ExponentialBuilder};
use governor::clock::Clock;
use reqwest::StatusCode;
use reqwest::header::{ETAG, HeaderMap, HeaderValue, IF_NONE_MATCH, LINK, RETRY_AFTER};
use tracing::Instrument;
use url::Url;

use super::{
    CachedResponse, HttpClient, HttpError, RateLimitHeaders, RequestStats, endpoint, jitter_seed,
};

/// Bytes of an error body kept for the message.
const EXCERPT_CHARS: usize = 200;
/// Bytes of an error body read at most (the rest is dropped unread).
const ERROR_BODY_BYTES: usize = 4096;

/// A successful (2xx, or 304 replayed from the cache) response, body read in
/// full, with its headers (for a replay: the cached `Link` added to the
/// 304's own headers).
#[derive(Debug)]
pub(crate) struct Fetched {
    pub(crate) endpoint: String,
    pub(crate) body: std::sync::Arc<[u8]>,
    pub(crate) headers: HeaderMap,
}

/// Why an attempt failed in a way worth retrying.
enum Transient {
    /// 429, or a 403 the source declared may mean throttling.
    Throttled {
        status: u16,
    },
    Server {
        status: u16,
        excerpt: String,
    },
    Timeout,
    Connect {
        message: String,
    },
}

enum Failure {
    Transient {
        why: Transient,
        retry_after: Option<Duration>,
    },
    Fatal(HttpError),
}

impl HttpClient {
    /// Sends `GET url` until it succeeds, fails for good, or retries run out.
    pub(crate) async fn fetch(
        &self,
        url: &Url,
        stats: &RequestStats,
    ) -> Result<Fetched, HttpError> {
        let endpoint = endpoint(url);
        let span = tracing::debug_span!(
            "http_get",
            connection = %self.inner.connection,
            endpoint = %endpoint,
        );
        self.fetch_with_retries(url, endpoint, stats)
            .instrument(span)
            .await
    }

    async fn fetch_with_retries(
        &self,
        url: &Url,
        endpoint: String,
        stats: &RequestStats,
    ) -> Result<Fetched, HttpError> {
        let config = &self.inner.config;
        let mut backoff = backoff_builder(config).build();
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            self.wait_for_limiter(stats).await;
            stats.add_request();
            let started = Instant::now();
            let (why, retry_after) = match self.attempt(url, &endpoint, stats).await {
                Ok(fetched) => {
                    tracing::debug!(
                        attempt,
                        status = 200u16,
                        elapsed_ms = elapsed_ms(started),
                        bytes = fetched.body.len(),
                        "request succeeded"
                    );
                    return Ok(fetched);
                }
                Err(Failure::Fatal(e)) => {
                    tracing::debug!(
                        attempt,
                        status = e.status(),
                        kind = e.kind(),
                        "request failed"
                    );
                    return Err(e);
                }
                Err(Failure::Transient { why, retry_after }) => (why, retry_after),
            };
            if matches!(why, Transient::Throttled { .. }) {
                stats.add_throttled();
            }
            let Some(delay) = backoff.next() else {
                let e = why.into_error(endpoint, attempt, config.request_timeout);
                tracing::warn!(
                    attempt,
                    kind = e.kind(),
                    "request failed; giving up after retries"
                );
                return Err(e);
            };
            let delay = delay.min(config.backoff_max);
            let status = why.status();
            stats.add_retry();
            match retry_after {
                Some(wait) => {
                    let wait = wait.min(config.retry_after_cap);
                    tracing::info!(
                        attempt,
                        status,
                        wait_ms = wait.as_millis() as u64,
                        "server asked to retry later; waiting as told by Retry-After"
                    );
                    tokio::time::sleep(wait).await;
                    stats.add_waited(wait);
                }
                None => {
                    tracing::info!(
                        attempt,
                        status,
                        reason = why.reason(),
                        wait_ms = delay.as_millis() as u64,
                        "request failed; retrying after backoff"
                    );
                    tokio::time::sleep(delay).await;
                    stats.add_backoff(delay);
                }
            }
        }
    }

    async fn wait_for_limiter(&self, stats: &RequestStats) {
        self.wait_for_reset(stats).await;
        let limiter = &self.inner.limiter;
        let started = Instant::now();
        while let Err(not_until) = limiter.check() {
            tokio::time::sleep(not_until.wait_time_from(limiter.clock().now())).await;
        }
        let waited = started.elapsed();
        if waited >= Duration::from_millis(1) {
            tracing::trace!(
                waited_ms = waited.as_millis() as u64,
                "rate limiter delayed the request"
            );
        }
        stats.add_waited(waited);
    }

    /// Waits while a response said the API's rate-limit window is used up.
    async fn wait_for_reset(&self, stats: &RequestStats) {
        let until = *self
            .inner
            .paused_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(until) = until else { return };
        let Ok(left) = until.duration_since(SystemTime::now()) else {
            return;
        };
        let cap = self.inner.config.reset_wait_cap;
        let wait = left.min(cap);
        tracing::info!(
            wait_ms = wait.as_millis() as u64,
            capped = left > cap,
            "the API's rate-limit window is used up; waiting for it to reset"
        );
        tokio::time::sleep(wait).await;
        stats.add_reset_wait(wait);
    }

    /// Reads the declared rate-limit headers of a response: a window at or
    /// below its low-water mark pauses requests until it resets; a fresh
    /// window lifts the pause.
    fn observe_rate_limit(&self, headers: &HeaderMap) {
        let RateLimitHeaders::WaitForReset {
            remaining,
            reset,
            low_water,
        } = &self.inner.rate_limit_headers
        else {
            return;
        };
        let Some(left) = header_u64(headers, remaining) else {
            return;
        };
        let mut paused = self
            .inner
            .paused_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if left > *low_water {
            *paused = None;
            return;
        }
        // A reset beyond what the clock can hold is nonsense: ignore it
        // rather than overflow (the wait is capped anyway).
        if let Some(at) = header_u64(headers, reset)
            .and_then(|at| SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(at)))
            .and_then(|at| local_reset(at, headers))
        {
            tracing::debug!(
                remaining = left,
                "the API's rate-limit window is nearly used up"
            );
            *paused = Some(paused.map_or(at, |p| p.max(at)));
        }
    }

    /// Whether the response says its rate-limit window is used up.
    fn window_exhausted(&self, headers: &HeaderMap) -> bool {
        match &self.inner.rate_limit_headers {
            RateLimitHeaders::WaitForReset { remaining, .. } => {
                header_u64(headers, remaining) == Some(0)
            }
            RateLimitHeaders::Counts => false,
        }
    }

    /// One attempt: send, classify the status, read the body.
    async fn attempt(
        &self,
        url: &Url,
        endpoint: &str,
        stats: &RequestStats,
    ) -> Result<Fetched, Failure> {
        let inner = &self.inner;
        let cached = inner.cache.as_ref().and_then(|c| c.get(url.as_str()));
        let mut request = inner
            .http
            .get(url.clone())
            .header(inner.auth_name.clone(), inner.auth_value.clone());
        if let Some(etag) = cached
            .as_ref()
            .and_then(|c| HeaderValue::from_str(&c.etag).ok())
        {
            request = request.header(IF_NONE_MATCH, etag);
        }
        let sent = request.send().await;
        let mut response = sent.map_err(transport_failure)?;
        let status = response.status();
        self.observe_rate_limit(response.headers());
        if status == StatusCode::NOT_MODIFIED
            && let Some(cached) = cached
        {
            stats.add_not_modified();
            // The 304's own `Link` (if it sends one) is the current one.
            let mut headers = response.headers().clone();
            if !headers.contains_key(LINK)
                && let Some(link) = cached
                    .link
                    .as_deref()
                    .and_then(|l| HeaderValue::from_str(l).ok())
            {
                headers.insert(LINK, link);
            }
            return Ok(Fetched {
                endpoint: endpoint.to_owned(),
                body: cached.body,
                headers,
            });
        }
        if status == StatusCode::NOT_FOUND
            && let Some(cache) = &inner.cache
        {
            // Gone: its cached answer must not be kept (or replayed).
            cache.remove(url.as_str());
        }
        if status.is_success() {
            let body = read_body(&mut response, inner.config.max_response_bytes)
                .await
                .map_err(|e| match e {
                    BodyError::TooLarge => Failure::Fatal(HttpError::TooLarge {
                        endpoint: endpoint.to_owned(),
                        limit: inner.config.max_response_bytes,
                    }),
                    BodyError::Transport(e) => transport_failure(e),
                })?;
            let headers = response.headers().clone();
            let body: std::sync::Arc<[u8]> = body.into();
            if let Some(cache) = &inner.cache {
                match headers.get(ETAG).and_then(|v| v.to_str().ok()) {
                    Some(etag) => cache.put(
                        url.as_str(),
                        CachedResponse {
                            etag: etag.to_owned(),
                            link: headers
                                .get(LINK)
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_owned),
                            body: body.clone(),
                        },
                    ),
                    None => cache.remove(url.as_str()),
                }
            }
            return Ok(Fetched {
                endpoint: endpoint.to_owned(),
                body,
                headers,
            });
        }

        let endpoint = endpoint.to_owned();
        match status {
            // A secondary limit (403 + Retry-After) or a used-up window
            // (403 + remaining 0) is throttling, when the source says its
            // API answers throttling with 403; any other 403 is a refusal.
            StatusCode::FORBIDDEN
                if inner.forbidden_may_throttle
                    && (response.headers().contains_key(RETRY_AFTER)
                        || self.window_exhausted(response.headers())) =>
            {
                Err(Failure::Transient {
                    why: Transient::Throttled { status: 403 },
                    retry_after: retry_after(response.headers(), SystemTime::now()),
                })
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                Err(Failure::Fatal(HttpError::Unauthorized {
                    connection: inner.connection.clone(),
                    status: status.as_u16(),
                    endpoint,
                    help: inner.token_help.clone(),
                }))
            }
            StatusCode::NOT_FOUND => Err(Failure::Fatal(HttpError::NotFound { endpoint })),
            StatusCode::TOO_MANY_REQUESTS => Err(Failure::Transient {
                why: Transient::Throttled { status: 429 },
                retry_after: retry_after(response.headers(), SystemTime::now()),
            }),
            StatusCode::INTERNAL_SERVER_ERROR
            | StatusCode::BAD_GATEWAY
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::GATEWAY_TIMEOUT => {
                let retry_after = (status == StatusCode::SERVICE_UNAVAILABLE)
                    .then(|| retry_after(response.headers(), SystemTime::now()))
                    .flatten();
                let excerpt = self.excerpt(&mut response).await;
                Err(Failure::Transient {
                    why: Transient::Server {
                        status: status.as_u16(),
                        excerpt,
                    },
                    retry_after,
                })
            }
            _ => {
                let excerpt = self.excerpt(&mut response).await;
                Err(Failure::Fatal(HttpError::Status {
                    endpoint,
                    status: status.as_u16(),
                    excerpt,
                }))
            }
        }
    }

    /// The first characters of an error body, for the message. Best effort:
    /// a body that cannot be read gives what was read so far.
    async fn excerpt(&self, response: &mut reqwest::Response) -> String {
        let mut bytes = Vec::new();
        while bytes.len() < ERROR_BODY_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
                Ok(None) | Err(_) => break,
            }
        }
        let mut text = String::from_utf8_lossy(&bytes).trim().to_owned();
        // Some APIs echo request headers in error bodies: redact the header
        // value and, for `Bearer <token>`-style values, the bare token —
        // in the whole text, before it is cut, so no part of one survives.
        if let Ok(secret) = self.inner.auth_value.to_str() {
            let bare = secret.rsplit(' ').next().unwrap_or(secret);
            for needle in [secret, bare] {
                if needle.len() >= 8 {
                    text = text.replace(needle, "[redacted]");
                }
            }
        }
        let mut excerpt: String = text.chars().take(EXCERPT_CHARS).collect();
        if text.chars().count() > EXCERPT_CHARS {
            excerpt.push('…');
        }
        excerpt
    }
}

impl Transient {
    fn status(&self) -> Option<u16> {
        match self {
            Transient::Throttled { status } => Some(*status),
            Transient::Server { status, .. } => Some(*status),
            Transient::Timeout | Transient::Connect { .. } => None,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            Transient::Throttled { .. } => "throttled",
            Transient::Server { .. } => "server error",
            Transient::Timeout => "timeout",
            Transient::Connect { .. } => "connection failed",
        }
    }

    fn into_error(self, endpoint: String, attempts: u32, timeout: Duration) -> HttpError {
        match self {
            Transient::Throttled { status } => HttpError::Throttled {
                endpoint,
                status,
                attempts,
            },
            Transient::Server { status, excerpt } => HttpError::Server {
                endpoint,
                status,
                attempts,
                excerpt,
            },
            Transient::Timeout => HttpError::Timeout {
                endpoint,
                timeout,
                attempts,
            },
            Transient::Connect { message } => HttpError::Connect {
                endpoint,
                attempts,
                message,
            },
        }
    }
}

fn backoff_builder(config: &super::HttpConfig) -> ExponentialBuilder {
    let builder = ExponentialBuilder::new()
        .with_min_delay(config.backoff_min)
        .with_max_delay(config.backoff_max)
        .with_max_times(config.max_retries);
    if config.jitter {
        builder.with_jitter().with_jitter_seed(jitter_seed())
    } else {
        builder
    }
}

/// The reset time `at` (the server's clock) on this machine's clock: the
/// server's `Date` says how far away the reset is, so a skewed local clock
/// neither skips the wait nor waits an hour too long. Without a usable
/// `Date`, `at` as it is.
fn local_reset(at: SystemTime, headers: &HeaderMap) -> Option<SystemTime> {
    let server_now = headers
        .get(reqwest::header::DATE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok());
    match server_now {
        Some(server_now) => {
            let ahead = at.duration_since(server_now).unwrap_or(Duration::ZERO);
            SystemTime::now().checked_add(ahead)
        }
        None => Some(at),
    }
}

/// A transport error without its URL (the caller names the endpoint; a URL
/// may carry what should not be shown) and with its cause chain, which is
/// where "connection refused" lives.
pub fn transport_message(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// Timeouts and transport errors are retried, with [`transport_message`].
fn transport_failure(e: reqwest::Error) -> Failure {
    let why = if e.is_timeout() {
        Transient::Timeout
    } else {
        Transient::Connect {
            message: transport_message(e),
        }
    };
    Failure::Transient {
        why,
        retry_after: None,
    }
}

enum BodyError {
    TooLarge,
    Transport(reqwest::Error),
}

/// Reads the body chunk by chunk and stops as soon as it passes `limit`,
/// so an oversized response never sits in memory whole.
async fn read_body(response: &mut reqwest::Response, limit: usize) -> Result<Vec<u8>, BodyError> {
    if response
        .content_length()
        .is_some_and(|len| len > limit as u64)
    {
        return Err(BodyError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Transport)? {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `Retry-After` as delta-seconds or an HTTP date, relative to `now`. A date
/// in the past means "now". Unparseable values are ignored (backoff applies).
/// `X-RateLimit-*` headers are counts and resets, never read as delays.
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A header holding a non-negative integer; anything else is `None`.
fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

fn elapsed_ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn check(value: Option<&str>, expected: Option<Duration>) {
        let now = httpdate::parse_http_date("Tue, 01 Jul 2025 12:00:00 GMT").expect("date");
        let mut headers = HeaderMap::new();
        headers.insert("x-ratelimit-reset", HeaderValue::from_static("99999999999"));
        if let Some(v) = value {
            headers.insert(RETRY_AFTER, HeaderValue::from_str(v).expect("header"));
        }
        assert_eq!(
            retry_after(&headers, now),
            expected,
            "Retry-After: {value:?}"
        );
    }

    #[test]
    fn retry_after_forms() {
        let s = Duration::from_secs;
        check(None, None);
        check(Some("0"), Some(s(0)));
        check(Some(" 7 "), Some(s(7)));
        check(Some("Tue, 01 Jul 2025 12:00:30 GMT"), Some(s(30)));
        check(Some("Tue, 01 Jul 2025 11:00:00 GMT"), Some(s(0)));
        check(Some("-1"), None);
        check(Some("1.5"), None);
        check(Some("soon"), None);
    }

    #[test]
    fn backoff_is_capped_and_bounded() {
        let config = super::super::HttpConfig {
            backoff_min: Duration::from_millis(10),
            backoff_max: Duration::from_millis(40),
            max_retries: 4,
            jitter: false,
            ..Default::default()
        };
        // backon multiplies in f32: compare to the nearest millisecond.
        let delays: Vec<u128> = backoff_builder(&config)
            .build()
            .map(|d| d.as_micros().div_ceil(1000))
            .collect();
        assert_eq!(delays, vec![10, 20, 40, 40]);
    }
}
