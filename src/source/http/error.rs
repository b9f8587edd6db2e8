//! `HttpError`: every way a request through the shared HTTP driver can fail.
//!
//! Messages are lowercase, name the endpoint (method, path and query; never
//! the host's credentials or the auth header) and say what to do about it.

use std::time::Duration;

/// One error type for the whole HTTP layer. `endpoint` is always
/// `"<METHOD> <path>[?<query>]"`, e.g. `GET /api/v2/me`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The client could not be built from the source's settings.
    #[error("connection \"{connection}\": invalid http settings: {message}")]
    Config { connection: String, message: String },

    /// The path is not percent-encoded or has dot segments, so it would not
    /// reach the resource it names.
    #[error(
        "refusing to request {path:?}: it is not percent-encoded or has `.`/`..` segments; build paths with encode_path or encode_segment"
    )]
    InvalidPath { path: String },

    /// 401 or 403. Never retried.
    #[error("connection \"{connection}\": token rejected ({status}) on {endpoint}; {help}")]
    Unauthorized {
        connection: String,
        status: u16,
        endpoint: String,
        help: String,
    },

    /// 404. The source decides whether this is a warning or an error.
    #[error(
        "not found (404) on {endpoint}; the resource may have been deleted or the token cannot see it"
    )]
    NotFound { endpoint: String },

    /// Any other status that is not retried (other 4xx, unfollowed redirects,
    /// unusual 5xx). `excerpt` is the start of the body, never headers.
    #[error("unexpected status {status} on {endpoint}: {excerpt}")]
    Status {
        endpoint: String,
        status: u16,
        excerpt: String,
    },

    /// Still throttled (429, or a 403 the source declared may mean
    /// throttling) after every retry.
    #[error(
        "still throttled ({status}) on {endpoint} after {attempts} attempts; lower this connection's rate limit or sync less often"
    )]
    Throttled {
        endpoint: String,
        status: u16,
        attempts: u32,
    },

    /// Still 500/502/503/504 after every retry.
    #[error(
        "server error ({status}) on {endpoint} after {attempts} attempts: {excerpt}; the service may be down, try again later"
    )]
    Server {
        endpoint: String,
        status: u16,
        attempts: u32,
        excerpt: String,
    },

    /// No complete response within the request timeout, on every attempt.
    #[error(
        "no response from {endpoint} within {timeout:?} after {attempts} attempts; the service may be overloaded, try again later or raise the request timeout"
    )]
    Timeout {
        endpoint: String,
        timeout: Duration,
        attempts: u32,
    },

    /// Connection refused, DNS failure, TLS failure, reset mid-body, … on
    /// every attempt.
    #[error(
        "could not reach {endpoint} after {attempts} attempts: {message}; check the connection's host URL and the network"
    )]
    Connect {
        endpoint: String,
        attempts: u32,
        message: String,
    },

    /// The body is larger than `HttpConfig::max_response_bytes`.
    #[error(
        "response from {endpoint} is larger than the {limit} byte limit; request smaller pages or raise max_response_bytes"
    )]
    TooLarge { endpoint: String, limit: usize },

    /// The body is not the JSON we expected.
    #[error("could not decode the response from {endpoint}: {message}")]
    Decode { endpoint: String, message: String },

    /// A `Link` header pointed the next page at another origin than the
    /// base URL's; following it would send the token there.
    #[error(
        "the next-page link of {endpoint} leads to {origin}, not to the connection's API; the listing was stopped so the token is not sent elsewhere"
    )]
    ForeignPageLink { endpoint: String, origin: String },

    /// The server handed back a page cursor it had already given.
    #[error(
        "pagination loop on {endpoint}: page token {token_excerpt:?} was returned twice; the listing was stopped to avoid fetching forever"
    )]
    PageLoop {
        endpoint: String,
        token_excerpt: String,
    },

    /// More pages than `HttpConfig::max_pages`.
    #[error("more than {max_pages} pages on {endpoint}; narrow the query or raise max_pages")]
    TooManyPages { endpoint: String, max_pages: usize },
}

impl HttpError {
    /// A stable, snake_case name for counting errors by kind.
    pub fn kind(&self) -> &'static str {
        match self {
            HttpError::Config { .. } => "config",
            HttpError::InvalidPath { .. } => "invalid_path",
            HttpError::Unauthorized { .. } => "unauthorized",
            HttpError::NotFound { .. } => "not_found",
            HttpError::Status { .. } => "status",
            HttpError::Throttled { .. } => "throttled",
            HttpError::Server { .. } => "server_error",
            HttpError::Timeout { .. } => "timeout",
            HttpError::Connect { .. } => "connect",
            HttpError::TooLarge { .. } => "too_large",
            HttpError::Decode { .. } => "decode",
            HttpError::PageLoop { .. } => "page_loop",
            HttpError::ForeignPageLink { .. } => "foreign_page_link",
            HttpError::TooManyPages { .. } => "too_many_pages",
        }
    }

    /// 401 or 403: the token is wrong, expired or lacks a scope.
    pub fn is_auth(&self) -> bool {
        matches!(self, HttpError::Unauthorized { .. })
    }

    /// 404.
    pub fn is_not_found(&self) -> bool {
        matches!(self, HttpError::NotFound { .. })
    }

    /// Failures that were retried and may well succeed on the next run
    /// (throttling, server errors, timeouts, unreachable host).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            HttpError::Throttled { .. }
                | HttpError::Server { .. }
                | HttpError::Timeout { .. }
                | HttpError::Connect { .. }
        )
    }

    /// The HTTP status the server answered with, when the error is one.
    pub fn status(&self) -> Option<u16> {
        match self {
            HttpError::Unauthorized { status, .. }
            | HttpError::Status { status, .. }
            | HttpError::Server { status, .. }
            | HttpError::Throttled { status, .. } => Some(*status),
            HttpError::NotFound { .. } => Some(404),
            _ => None,
        }
    }
}
