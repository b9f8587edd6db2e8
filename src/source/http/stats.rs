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
    not_modified: AtomicU64,
    reset_waits: AtomicU64,
    reset_wait_us: AtomicU64,
}

/// A plain copy of [`RequestStats`] at one moment, for reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RequestCounts {
    /// Requests sent, including retries.
    pub requests: u64,
    /// Requests that were sent again after a failure.
    pub retries: u64,
    /// Throttling responses received (429, or a 403 declared as throttling).
    pub throttled: u64,
    /// Time spent waiting for the rate limiter and for `Retry-After`.
    pub waited_ms: u64,
    /// Time spent in exponential backoff between retries.
    pub backoff_ms: u64,
    /// `304 Not Modified` answers to conditional requests (bodies replayed
    /// from the cache; GitHub does not count them against the rate limit).
    pub not_modified: u64,
    /// Times a request waited for a rate-limit window to reset.
    pub reset_waits: u64,
    /// Time spent waiting for rate-limit windows to reset (also in `waited_ms`).
    pub reset_wait_ms: u64,
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

    /// Throttling responses received (429, or a 403 declared as throttling).
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

    /// `304 Not Modified` answers to conditional requests.
    pub fn not_modified(&self) -> u64 {
        self.not_modified.load(Ordering::Relaxed)
    }

    /// Times a request waited for a rate-limit window to reset.
    pub fn reset_waits(&self) -> u64 {
        self.reset_waits.load(Ordering::Relaxed)
    }

    /// Milliseconds spent waiting for rate-limit windows to reset.
    pub fn reset_wait_ms(&self) -> u64 {
        self.reset_wait_us.load(Ordering::Relaxed) / 1000
    }

    pub fn snapshot(&self) -> RequestCounts {
        RequestCounts {
            requests: self.requests(),
            retries: self.retries(),
            throttled: self.throttled(),
            waited_ms: self.waited_ms(),
            backoff_ms: self.backoff_ms(),
            not_modified: self.not_modified(),
            reset_waits: self.reset_waits(),
            reset_wait_ms: self.reset_wait_ms(),
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

    pub(crate) fn add_not_modified(&self) {
        self.not_modified.fetch_add(1, Ordering::Relaxed);
    }

    /// A wait for a rate-limit reset; counted in `waited_ms` too.
    pub(crate) fn add_reset_wait(&self, d: Duration) {
        self.reset_waits.fetch_add(1, Ordering::Relaxed);
        self.reset_wait_us.fetch_add(micros(d), Ordering::Relaxed);
        self.add_waited(d);
    }

    pub(crate) fn add_backoff(&self, d: Duration) {
        self.backoff_us.fetch_add(micros(d), Ordering::Relaxed);
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
