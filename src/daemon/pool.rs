//! A small pool of store connections for the API. Each request uses its
//! own SQLite connection (WAL lets readers run beside a sync's commit), and
//! blocking SQL runs on tokio's blocking threads, never on the workers that
//! serve HTTP.

use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::store::{Store, StoreError};

/// How many idle connections are kept for reuse.
const KEEP_IDLE: usize = 8;

#[derive(Debug)]
pub struct StorePool {
    path: PathBuf,
    idle: Mutex<Vec<Store>>,
}

/// A checked-out store, returned to the pool when dropped.
pub struct Pooled {
    store: Option<Store>,
    pool: Arc<StorePool>,
}

impl StorePool {
    pub fn new(path: PathBuf) -> Arc<Self> {
        Arc::new(StorePool {
            path,
            idle: Mutex::new(Vec::new()),
        })
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// An idle connection, or a new one.
    pub fn checkout(self: &Arc<Self>) -> Result<Pooled, StoreError> {
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let store = match idle {
            Some(store) => store,
            None => Store::open(&self.path)?,
        };
        Ok(Pooled {
            store: Some(store),
            pool: Arc::clone(self),
        })
    }

    /// Runs `f` on a pooled store on a blocking thread.
    pub async fn with<R, E>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Store) -> Result<R, E> + Send + 'static,
    ) -> Result<R, E>
    where
        R: Send + 'static,
        E: From<StoreError> + From<tokio::task::JoinError> + Send + 'static,
    {
        let pool = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let mut store = pool.checkout()?;
            f(&mut store)
        })
        .await?
    }

    /// Runs `f`'s future — a service call that mixes SQLite and a file read
    /// (the master key) with awaits (a connection's verification request) —
    /// on a blocking thread with a pooled store, so none of its blocking
    /// work stalls an async worker.
    pub async fn with_async<R, E, F, Fut>(self: &Arc<Self>, f: F) -> Result<R, E>
    where
        F: FnOnce(Pooled) -> Fut + Send + 'static,
        Fut: Future<Output = Result<R, E>>,
        R: Send + 'static,
        E: From<StoreError> + From<tokio::task::JoinError> + Send + 'static,
    {
        let pool = Arc::clone(self);
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let store = pool.checkout()?;
            runtime.block_on(f(store))
        })
        .await?
    }
}

impl Deref for Pooled {
    type Target = Store;
    fn deref(&self) -> &Store {
        // Only `drop` takes the store out.
        self.store.as_ref().unwrap_or_else(|| unreachable!())
    }
}

impl DerefMut for Pooled {
    fn deref_mut(&mut self) -> &mut Store {
        self.store.as_mut().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let (Some(store), Ok(mut idle)) = (self.store.take(), self.pool.idle.lock())
            && idle.len() < KEEP_IDLE
        {
            idle.push(store);
        }
    }
}
