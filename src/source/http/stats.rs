//! `RequestStats`: per-step request accounting, shared by reference with
//! every call so that a step can report how many requests it made.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Counters for one step (or any unit the caller chooses). Pass the same
/// `&RequestStats` to every call of that step; the counters are atomics, so
/// concurrent calls may share one.
#[derive(Debug, Default)]
pub struct RequestStats {
    requests: AtomicU64,
    retries: AtomicU64,
    throttled: AtomicU64,
    waited_us: AtomicU64,
    backoff_us: AtomicU64,
}

/// A plain copy of [`RequestStats`] at one moment, for reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RequestCounts {
    /// Requests sent, including retries.
    pub requests: u64,
    /// Requests that were sent again after a failure.
    pub retries: u64,
    /// 429 responses received.
    pub throttled: u64,
    /// Time spent waiting for the rate limiter and for `Retry-After`.
    pub waited_ms: u64,
    /// Time spent in exponential backoff between retries.
    pub backoff_ms: u64,
}

impl RequestStats {
    pub fn new() -> Self {
        Self::default()
    }

    /// Requests sent, including retries.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Requests that were sent again after a failure.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// 429 responses received.
    pub fn throttled(&self) -> u64 {
        self.throttled.load(Ordering::Relaxed)
    }

    /// Milliseconds spent waiting for the rate limiter and for `Retry-After`.
    pub fn waited_ms(&self) -> u64 {
        self.waited_us.load(Ordering::Relaxed) / 1000
    }

    /// Milliseconds spent in exponential backoff between retries.
    pub fn backoff_ms(&self) -> u64 {
        self.backoff_us.load(Ordering::Relaxed) / 1000
    }

    pub fn snapshot(&self) -> RequestCounts {
        RequestCounts {
            requests: self.requests(),
            retries: self.retries(),
            throttled: self.throttled(),
            waited_ms: self.waited_ms(),
            backoff_ms: self.backoff_ms(),
        }
    }

    pub(crate) fn add_request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add_throttled(&self) {
        self.throttled.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add_waited(&self, d: Duration) {
        self.waited_us.fetch_add(micros(d), Ordering::Relaxed);
    }

    pub(crate) fn add_backoff(&self, d: Duration) {
        self.backoff_us.fetch_add(micros(d), Ordering::Relaxed);
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
