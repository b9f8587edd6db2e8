//! Conditional requests: the `ETag` of each response a source asked to keep,
//! with the body (and `Link` header) it stands for, so that the next request
//! to the same URL carries `If-None-Match` and a `304 Not Modified` replays
//! the kept body. It touches memory only: the caller (`sync`) loads it from
//! the store before a run and saves [`ResponseCache::entries_to_keep`] after.
//!
//! Keys are full request URLs (path and query, never a header), so a cache
//! holds no credential; bodies are what the API returned, as the graph does.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// One remembered response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedResponse {
    /// The `ETag` header exactly as the server sent it (`"abc"`, `W/"abc"`).
    pub etag: String,
    /// The `Link` header of the response, replayed for pagination.
    pub link: Option<String>,
    /// Shared: a hit or a new entry hands the body over without copying it.
    pub body: Arc<[u8]>,
}

/// The ETag cache of one integration. Cheap to clone (an `Arc` inside);
/// clones share the entries, so the copy handed to the HTTP client and the
/// copy `sync` saves are the same cache.
#[derive(Clone, Default)]
pub struct ResponseCache {
    inner: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    entries: HashMap<String, CachedResponse>,
    /// URLs requested in this run (hit or stored).
    used: HashSet<String>,
    /// An entry was added or replaced in this run.
    changed: bool,
}

impl ResponseCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// A cache holding `entries` (as loaded from the store), none used yet.
    pub fn from_entries(entries: impl IntoIterator<Item = (String, CachedResponse)>) -> Self {
        let cache = Self::new();
        cache.lock().entries = entries.into_iter().collect();
        cache
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The entry for `url`, marking it used.
    pub fn get(&self, url: &str) -> Option<CachedResponse> {
        let mut state = self.lock();
        let entry = state.entries.get(url).cloned();
        if entry.is_some() {
            state.used.insert(url.to_owned());
        }
        entry
    }

    /// Remembers (or replaces) the response for `url`.
    pub fn put(&self, url: &str, entry: CachedResponse) {
        let mut state = self.lock();
        state.used.insert(url.to_owned());
        let replaced = state.entries.insert(url.to_owned(), entry.clone());
        if replaced.as_ref() != Some(&entry) {
            state.changed = true;
        }
    }

    /// Forgets `url` (its resource is gone or no longer cacheable).
    pub fn remove(&self, url: &str) {
        let mut state = self.lock();
        if state.entries.remove(url).is_some() {
            state.changed = true;
        }
    }

    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether saving would change what is stored: an entry was added or
    /// replaced, or a loaded entry went unused and would be dropped.
    pub fn needs_saving(&self) -> bool {
        let state = self.lock();
        state.changed || state.entries.len() != state.used.len()
    }

    /// The entries used in this run, sorted by URL: what to save. Entries no
    /// request asked for are dropped, so a cache does not outgrow its listings.
    pub fn entries_to_keep(&self) -> Vec<(String, CachedResponse)> {
        let state = self.lock();
        let mut kept: Vec<(String, CachedResponse)> = state
            .entries
            .iter()
            .filter(|(url, _)| state.used.contains(*url))
            .map(|(url, entry)| (url.clone(), entry.clone()))
            .collect();
        kept.sort_by(|a, b| a.0.cmp(&b.0));
        kept
    }
}

impl fmt::Debug for ResponseCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseCache")
            .field("entries", &self.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(etag: &str) -> CachedResponse {
        CachedResponse {
            etag: etag.to_owned(),
            link: None,
            body: Arc::from(&b"[]"[..]),
        }
    }

    #[test]
    fn only_used_entries_are_kept_and_changes_are_noticed() {
        let cache = ResponseCache::from_entries([
            ("http://h/a".to_owned(), entry("\"1\"")),
            ("http://h/b".to_owned(), entry("\"2\"")),
        ]);
        assert!(cache.needs_saving(), "nothing used yet: b and a would go");
        assert_eq!(cache.get("http://h/a"), Some(entry("\"1\"")));
        cache.put("http://h/b", entry("\"2\""));
        assert!(!cache.needs_saving(), "same entries, all used");
        cache.put("http://h/c", entry("\"3\""));
        assert!(cache.needs_saving());
        let urls: Vec<String> = cache.entries_to_keep().into_iter().map(|e| e.0).collect();
        assert_eq!(urls, ["http://h/a", "http://h/b", "http://h/c"]);
    }
}
