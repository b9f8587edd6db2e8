//! The SQLite store: the only module with SQL. Holds the graph of every
//! integration, the sync runs and the change-event outbox in one database.
//!
//! `migrations` creates and upgrades the schema · `graph` loads the diff
//! index and exports · `write` writes a plan's rows and events · `events`
//! builds and reads change events · `runs` records sync runs and ties a
//! commit together · `sinks` keeps alert sinks' cursors and system events ·
//! `skips` the alerts operators skipped.
//!
//! Invariant: a run's graph changes and its change events are written in one
//! `BEGIN IMMEDIATE` transaction, so a crash leaves the previous state and the
//! event sequence stays gap-free (each commit continues from `MAX(seq)`).

mod connections;
mod events;
mod graph;
mod http_cache;
mod leases;
mod migrations;
mod runs;
mod sinks;
mod skips;
mod tokens;
mod write;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;
use time::OffsetDateTime;
use time::macros::format_description;

pub use connections::{ConnectionRow, IntegrationRow, Upsert};
pub use http_cache::HttpCacheRow;
pub use leases::{ABANDONED, LeaseRecord};
pub use runs::RunRecord;
pub use sinks::SinkCursor;
pub use skips::{SkipRecord, SkipSummary};
pub use tokens::TokenRecord;
pub(crate) use tokens::time_after;

/// The schema version this build creates and upgrades to.
pub const SCHEMA_VERSION: usize = migrations::MIGRATIONS.len();

/// How long a writer waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors of the store. Messages name the database or run and the fix.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "cannot open database {path}: {source}; check that the directory exists and is writable"
    )]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "database {path} is from a newer sextant (schema {found}, this build knows {known}); upgrade sextant"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: usize,
    },
    #[error(
        "database {path}: migration to schema {version} failed: {source}; restore the database from a backup or report a bug"
    )]
    Migration {
        path: PathBuf,
        version: usize,
        source: rusqlite::Error,
    },
    #[error("database {path} is locked by another writer (waited {}s); let the other sync finish and retry", BUSY_TIMEOUT.as_secs())]
    Busy { path: PathBuf },
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(transparent)]
    OutOfOrder(#[from] crate::diff::OutOfOrder),
    #[error(
        "{what} was deleted or recreated while this change was being made; nothing was written, look at it again and retry"
    )]
    ChangedMeanwhile { what: String },
    #[error("sync run {0} does not exist; start it with begin_run")]
    UnknownRun(i64),
    #[error("sync run {sync_id} is {status}, not running; start a new run")]
    RunNotRunning { sync_id: i64, status: String },
    #[error(
        "sync run {sync_id} belongs to integration {actual:?}, not {given:?}; commit it for its own integration"
    )]
    WrongIntegration {
        sync_id: i64,
        actual: String,
        given: String,
    },
    #[error(
        "database holds an unreadable {what}: {reason}; the file was changed outside sextant, restore it from a backup"
    )]
    Corrupt { what: String, reason: String },
    #[error("cannot encode the {what}: {source}; this is a bug, please report it")]
    Encode {
        what: String,
        source: serde_json::Error,
    },
    #[error("writing the graph export failed: {0}")]
    Export(#[source] std::io::Error),
    #[error(
        "integration {integration:?} is already syncing (holder {holder}, since {since}); wait for that run to finish (if its process died, its lease expires at {expires})"
    )]
    LeaseHeld {
        integration: String,
        holder: String,
        since: String,
        expires: String,
    },
    #[error(
        "integration {integration:?}: this run ({holder}) lost its lease (it expired and another process took it); nothing more was written, the other run carries on"
    )]
    LeaseLost { integration: String, holder: String },
    #[error("a token named {0:?} already exists; pick another name or revoke it first")]
    TokenExists(String),
    #[error("commit interrupted by the injected test fault")]
    #[doc(hidden)]
    InjectedFault,
}

/// What the test fault hook does when it fires. Only tests use it.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Fail the commit with [`StoreError::InjectedFault`] (rolled back).
    Error,
    /// Abort the process mid-transaction, as a crash or `kill -9` would.
    Abort,
}

/// The store. One connection; callers serialise access (the daemon holds it
/// behind a mutex), SQLite serialises processes.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// Test hook: fire `Fault` after this many row writes in a commit.
    fault: Option<(u64, Fault)>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) the database at `path` and brings its
    /// schema up to date.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open(path).map_err(|source| StoreError::Open {
            path: path.to_owned(),
            source,
        })?;
        Self::setup(conn, path.to_owned())
    }

    /// A private in-memory database (tests, dry runs).
    pub fn open_in_memory() -> Result<Store, StoreError> {
        let path = PathBuf::from(":memory:");
        let conn = Connection::open_in_memory().map_err(|source| StoreError::Open {
            path: path.clone(),
            source,
        })?;
        Self::setup(conn, path)
    }

    fn setup(mut conn: Connection, path: PathBuf) -> Result<Store, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.clone(),
            source,
        };
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        // A fresh file gets larger pages (fewer, fuller B-tree pages for
        // JSON rows); ignored once the database has content.
        conn.pragma_update(None, "page_size", 8192)
            .map_err(open_err)?;
        // `journal_mode` answers with the mode; in memory it stays "memory".
        let _mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(open_err)?;
        conn.execute_batch(
            "PRAGMA foreign_keys = ON;
             PRAGMA synchronous = NORMAL;
             PRAGMA cache_size = -65536;
             PRAGMA temp_store = MEMORY;
             PRAGMA journal_size_limit = 67108864;",
        )
        .map_err(open_err)?;
        migrations::migrate(&mut conn, &path)?;
        Ok(Store {
            conn,
            path,
            fault: None,
        })
    }

    /// The database file (`:memory:` for an in-memory store).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` in one read transaction, so that its queries see one
    /// snapshot: a commit from another connection lands before or after
    /// them, never between (the daemon exports while syncs commit).
    pub fn read_snapshot<R>(
        &self,
        f: impl FnOnce(&Store) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let tx = self.conn.unchecked_transaction()?;
        let out = f(self)?;
        tx.commit()?;
        Ok(out)
    }

    /// The schema version of the open database (`PRAGMA user_version`).
    pub fn schema_version(&self) -> Result<usize, StoreError> {
        let version: i64 = self
            .conn
            .pragma_query_value(None, "user_version", |row| row.get(0))?;
        Ok(usize::try_from(version).unwrap_or(0))
    }

    /// Test hook: after `writes` row writes inside the next commit, fail
    /// (`Fault::Error`, rolled back) or abort the process (`Fault::Abort`).
    #[doc(hidden)]
    pub fn inject_fault_after_writes(&mut self, writes: u64, fault: Fault) {
        self.fault = Some((writes, fault));
    }

    /// Test and bench hook: the page cache size in KiB (default 64 MiB). A
    /// small cache makes a large commit spill uncommitted pages to the WAL.
    #[doc(hidden)]
    pub fn set_cache_size_kib(&mut self, kib: u32) -> Result<(), StoreError> {
        self.conn
            .pragma_update(None, "cache_size", -i64::from(kib))?;
        Ok(())
    }
}

/// Maps "database is locked" to a message that says what to do.
fn busy(path: &Path, err: rusqlite::Error) -> StoreError {
    match err.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy) | Some(rusqlite::ErrorCode::DatabaseLocked) => {
            StoreError::Busy {
                path: path.to_owned(),
            }
        }
        _ => StoreError::Sqlite(err),
    }
}

/// [`busy`] for an error that may already be a store error.
fn busy_store(path: &Path, err: StoreError) -> StoreError {
    match err {
        StoreError::Sqlite(e) => busy(path, e),
        other => other,
    }
}

/// Counts row writes of one commit and fires the injected fault.
pub(crate) struct WriteCounter {
    written: u64,
    fault: Option<(u64, Fault)>,
}

impl WriteCounter {
    fn new(fault: Option<(u64, Fault)>) -> Self {
        WriteCounter { written: 0, fault }
    }

    #[inline]
    fn tick(&mut self) -> Result<(), StoreError> {
        self.written += 1;
        match self.fault {
            Some((after, fault)) if self.written >= after => match fault {
                Fault::Error => Err(StoreError::InjectedFault),
                Fault::Abort => std::process::abort(),
            },
            _ => Ok(()),
        }
    }
}

/// Now as a fixed-width RFC 3339 UTC string with milliseconds, so stored
/// times compare correctly as text.
pub(crate) fn now() -> String {
    format_time(OffsetDateTime::now_utc())
}

/// The time now as [`now`] gives it and as Unix milliseconds (the graph
/// rows' first-seen and last-seen, migration 9).
pub(crate) fn now_and_ms() -> (String, i64) {
    let at = OffsetDateTime::now_utc();
    let ms = i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX);
    (format_time(at), ms)
}

fn format_time(t: OffsetDateTime) -> String {
    let format =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    // Formatting with a fixed description only fails for years outside
    // 0..=9999; fall back to Unix seconds rather than fail a sync over it.
    t.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_fixed_width_rfc3339_utc() {
        let t = OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_789)
            .expect("valid timestamp");
        assert_eq!(format_time(t), "2023-11-14T22:13:20.123Z");
        let whole = OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("valid");
        assert_eq!(format_time(whole), "2023-11-14T22:13:20.000Z");
    }
}
