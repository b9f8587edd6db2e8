//! Schema migrations: a list that only grows, applied in order and tracked in
//! `PRAGMA user_version`. Never edit a released entry; append a new one.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use super::StoreError;

/// Entry `i` brings the schema from version `i` to `i + 1`.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: graph, runs, events, per-type last-seen times.
    "
    CREATE TABLE entities (
        integration  TEXT    NOT NULL,
        key          TEXT    NOT NULL,
        type         TEXT    NOT NULL,
        class        TEXT    NOT NULL,
        props        TEXT    NOT NULL,  -- canonical JSON object
        hash         INTEGER NOT NULL,  -- content hash (type, class, props)
        first_seen   TEXT    NOT NULL,
        -- Written when the row is written; for rows of a type that was
        -- complete in a later run, type_seen.time is the later last-seen.
        last_seen    TEXT    NOT NULL,
        created_sync INTEGER NOT NULL,
        changed_sync INTEGER NOT NULL,
        PRIMARY KEY (integration, key)
    ) WITHOUT ROWID;
    CREATE INDEX entities_by_type ON entities (integration, type);

    CREATE TABLE relationships (
        integration  TEXT    NOT NULL,
        key          TEXT    NOT NULL,
        type         TEXT    NOT NULL,
        class        TEXT    NOT NULL,
        from_key     TEXT    NOT NULL,
        to_key       TEXT    NOT NULL,
        -- Endpoint types when written ('' when the endpoint is not in this
        -- integration's graph); the diff keeps a relationship while an
        -- endpoint type is incomplete.
        from_type    TEXT    NOT NULL,
        to_type      TEXT    NOT NULL,
        props        TEXT    NOT NULL,
        hash         INTEGER NOT NULL,
        first_seen   TEXT    NOT NULL,
        last_seen    TEXT    NOT NULL,
        created_sync INTEGER NOT NULL,
        changed_sync INTEGER NOT NULL,
        PRIMARY KEY (integration, key)
    ) WITHOUT ROWID;
    -- No secondary indexes on relationships yet: no query needs one, and
    -- (integration, type/from_key/to_key) indexes, each carrying the long
    -- relationship key, were a third of a million-row first ingest. Add
    -- them in a new migration with the first traversal query.

    CREATE TABLE sync_runs (
        id          INTEGER PRIMARY KEY,
        integration TEXT    NOT NULL,
        started_at  TEXT    NOT NULL,
        ended_at    TEXT,
        status      TEXT    NOT NULL,
        steps       TEXT    NOT NULL DEFAULT '[]',
        created     INTEGER NOT NULL DEFAULT 0,
        updated     INTEGER NOT NULL DEFAULT 0,
        deleted     INTEGER NOT NULL DEFAULT 0,
        error       TEXT
    );
    CREATE INDEX sync_runs_by_integration ON sync_runs (integration, id);

    -- The outbox. seq is gap-free: each commit continues from MAX(seq)
    -- inside its transaction. body is the whole event as JSON (time, key,
    -- class, before/after…); the other columns are for filtering.
    CREATE TABLE events (
        seq         INTEGER PRIMARY KEY,
        integration TEXT    NOT NULL,
        sync_id     INTEGER NOT NULL REFERENCES sync_runs (id),
        action      TEXT    NOT NULL,
        object      TEXT    NOT NULL,
        type        TEXT    NOT NULL,
        body        TEXT    NOT NULL
    );
    CREATE INDEX events_by_integration ON events (integration, seq);

    -- The last run in which each type was complete: the last-seen time of
    -- every unchanged row of that type, without rewriting the rows.
    CREATE TABLE type_seen (
        integration TEXT    NOT NULL,
        type        TEXT    NOT NULL,
        sync_id     INTEGER NOT NULL,
        time        TEXT    NOT NULL,
        PRIMARY KEY (integration, type)
    ) WITHOUT ROWID;
    ",
    // 2: stored connections (encrypted secrets) and integration instances.
    "
    CREATE TABLE connections (
        key                 TEXT    PRIMARY KEY,
        name                TEXT    NOT NULL UNIQUE,
        type                TEXT    NOT NULL,
        description         TEXT,
        disabled            INTEGER NOT NULL DEFAULT 0,
        disabled_reason     TEXT,
        created_at          TEXT    NOT NULL,
        updated_at          TEXT    NOT NULL,
        -- version || nonce || AES-256-GCM ciphertext of the secrets JSON,
        -- with the connection key as associated data.
        secrets             BLOB    NOT NULL,
        last_test_at        TEXT,
        last_test_succeeded INTEGER,
        last_test_error     TEXT
    );

    CREATE TABLE integrations (
        name             TEXT    PRIMARY KEY,
        -- NULL once the connection was deleted with --force.
        connection_key   TEXT    REFERENCES connections (key),
        account_name     TEXT,
        description      TEXT,
        interval         TEXT    NOT NULL,
        tag_account_name INTEGER NOT NULL DEFAULT 0,
        enabled          INTEGER NOT NULL DEFAULT 1,
        disabled_reason  TEXT,
        settings         TEXT    NOT NULL DEFAULT 'null',
        created_at       TEXT    NOT NULL,
        updated_at       TEXT    NOT NULL
    );
    CREATE INDEX integrations_by_connection ON integrations (connection_key);
    ",
    // 3: per-connection HTTP settings; who manages a connection or an
    // integration ('cli' or 'config': declared in the config file and
    // provisioned from it at start).
    "
    ALTER TABLE connections ADD COLUMN requests_per_second INTEGER;
    ALTER TABLE connections ADD COLUMN timeout_ms INTEGER;
    ALTER TABLE connections ADD COLUMN managed_by TEXT NOT NULL DEFAULT 'cli';
    ALTER TABLE integrations ADD COLUMN managed_by TEXT NOT NULL DEFAULT 'cli';
    ",
    // 4: HTTP ETag cache per integration (conditional requests across runs).
    "
    CREATE TABLE http_cache (
        integration TEXT NOT NULL,
        url         TEXT NOT NULL,
        etag        TEXT NOT NULL,
        link        TEXT,
        body        BLOB NOT NULL,
        PRIMARY KEY (integration, url)
    ) WITHOUT ROWID;
    ",
    // 5: Alert delivery: per-sink cursors, system events (failed syncs,
    // connection tests that start failing) and what delivery last saw.
    "
    CREATE TABLE alert_sinks (
        name              TEXT    PRIMARY KEY,
        -- Every alert of change events up to change_seq is acknowledged;
        -- change_done names the rules already acknowledged for the next one.
        change_seq        INTEGER NOT NULL,
        change_done       TEXT    NOT NULL DEFAULT '[]',
        system_seq        INTEGER NOT NULL,
        system_done       TEXT    NOT NULL DEFAULT '[]',
        delivered         INTEGER NOT NULL DEFAULT 0,
        last_delivered_at TEXT,
        last_error        TEXT,
        failing_since     TEXT,
        created_at        TEXT    NOT NULL,
        updated_at        TEXT    NOT NULL
    );

    -- Derived from sync_runs and connections; subject makes each one
    -- recorded once (sextant_sync_run:<id>, sextant_connection:<key>@<time>).
    CREATE TABLE alert_system_events (
        seq     INTEGER PRIMARY KEY,
        subject TEXT    NOT NULL UNIQUE,
        body    TEXT    NOT NULL
    );

    -- The last connection test result delivery saw, to detect a change.
    CREATE TABLE alert_connection_tests (
        key       TEXT    PRIMARY KEY,
        succeeded INTEGER NOT NULL,
        at        TEXT    NOT NULL
    );
    INSERT INTO alert_connection_tests (key, succeeded, at)
        SELECT key, last_test_succeeded, last_test_at FROM connections
        WHERE last_test_at IS NOT NULL AND last_test_succeeded IS NOT NULL;

    -- Runs up to this id were finished before alerting existed: no alerts.
    CREATE TABLE alert_state (
        name  TEXT    PRIMARY KEY,
        value INTEGER NOT NULL
    );
    INSERT INTO alert_state (name, value)
        SELECT 'sync_runs_from', COALESCE(MAX(id), 0) FROM sync_runs;
    ",
    // 6: run leases (one run per integration across processes) and
    // API tokens (stored as SHA-256 hashes only).
    "
    CREATE TABLE run_leases (
        integration TEXT    PRIMARY KEY,
        holder      TEXT    NOT NULL,   -- process that runs it: kind:pid:random
        acquired_at TEXT    NOT NULL,
        renewed_at  TEXT    NOT NULL,
        expires_ms  INTEGER NOT NULL    -- Unix milliseconds; past it, the lease may be reclaimed
    );

    CREATE TABLE api_tokens (
        name         TEXT    PRIMARY KEY,
        username     TEXT    NOT NULL,
        token_type   TEXT    NOT NULL,          -- user | service
        hash         BLOB    NOT NULL UNIQUE,   -- SHA-256 of the whole token; the token is never stored
        scopes       TEXT    NOT NULL,          -- space-separated resource:action
        created_at   TEXT    NOT NULL,
        expires_at   TEXT,
        last_used_at TEXT
    );
    ",
    // 7: an event's `after` may live in its graph row ("pending"): a create
    // (or update) event whose object has not changed since is stored without
    // `after`, and the row names the event (pending_seq). Before the writer
    // changes or deletes a row, it writes that `after` into the event, so the
    // event's content never changes. Halves what a first ingest writes.
    "
    ALTER TABLE entities ADD COLUMN pending_seq INTEGER;
    ALTER TABLE relationships ADD COLUMN pending_seq INTEGER;
    ALTER TABLE events ADD COLUMN after_pending INTEGER NOT NULL DEFAULT 0;
    ",
    // 8: create events in batches. The creates of one commit and one kind
    // whose rows are adjacent in key order (no older row between them) are
    // one row here instead of an event row each: event first_seq + i is
    // the row between first_key and last_key whose pending_seq it is (rows
    // are created in key order, seqs given in that order). Before such a
    // row is updated or deleted, its create event is written out whole into
    // `events`, as for the pending events of migration 7. A million-object
    // first ingest writes a thousand rows here instead of a million events.
    "
    CREATE TABLE event_batches (
        first_seq   INTEGER PRIMARY KEY,
        last_seq    INTEGER NOT NULL,
        integration TEXT    NOT NULL,
        sync_id     INTEGER NOT NULL REFERENCES sync_runs (id),
        object      TEXT    NOT NULL,   -- entity | relationship
        time        TEXT    NOT NULL,
        first_key   TEXT    NOT NULL,
        last_key    TEXT    NOT NULL
    );
    CREATE INDEX event_batches_by_integration ON event_batches (integration, first_seq);
    ",
    // 9: first_seen / last_seen of graph rows as Unix milliseconds instead
    // of 24-character text: a tenth of what a first ingest writes. The
    // tables are rebuilt (a column's type cannot change in place); a text
    // time that does not parse keeps its leading number as seconds.
    "
    CREATE TABLE entities_9 (
        integration  TEXT    NOT NULL,
        key          TEXT    NOT NULL,
        type         TEXT    NOT NULL,
        class        TEXT    NOT NULL,
        props        TEXT    NOT NULL,
        hash         INTEGER NOT NULL,
        first_seen   INTEGER NOT NULL,  -- Unix ms
        last_seen    INTEGER NOT NULL,  -- Unix ms; see migration 1
        created_sync INTEGER NOT NULL,
        changed_sync INTEGER NOT NULL,
        pending_seq  INTEGER,
        PRIMARY KEY (integration, key)
    ) WITHOUT ROWID;
    INSERT INTO entities_9
        SELECT integration, key, type, class, props, hash,
               COALESCE(CAST(round(unixepoch(first_seen, 'subsec') * 1000) AS INTEGER), CAST(first_seen AS INTEGER) * 1000),
               COALESCE(CAST(round(unixepoch(last_seen, 'subsec') * 1000) AS INTEGER), CAST(last_seen AS INTEGER) * 1000),
               created_sync, changed_sync, pending_seq
        FROM entities;
    DROP TABLE entities;
    ALTER TABLE entities_9 RENAME TO entities;
    CREATE INDEX entities_by_type ON entities (integration, type);

    CREATE TABLE relationships_9 (
        integration  TEXT    NOT NULL,
        key          TEXT    NOT NULL,
        type         TEXT    NOT NULL,
        class        TEXT    NOT NULL,
        from_key     TEXT    NOT NULL,
        to_key       TEXT    NOT NULL,
        from_type    TEXT    NOT NULL,
        to_type      TEXT    NOT NULL,
        props        TEXT    NOT NULL,
        hash         INTEGER NOT NULL,
        first_seen   INTEGER NOT NULL,
        last_seen    INTEGER NOT NULL,
        created_sync INTEGER NOT NULL,
        changed_sync INTEGER NOT NULL,
        pending_seq  INTEGER,
        PRIMARY KEY (integration, key)
    ) WITHOUT ROWID;
    INSERT INTO relationships_9
        SELECT integration, key, type, class, from_key, to_key, from_type, to_type, props, hash,
               COALESCE(CAST(round(unixepoch(first_seen, 'subsec') * 1000) AS INTEGER), CAST(first_seen AS INTEGER) * 1000),
               COALESCE(CAST(round(unixepoch(last_seen, 'subsec') * 1000) AS INTEGER), CAST(last_seen AS INTEGER) * 1000),
               created_sync, changed_sync, pending_seq
        FROM relationships;
    DROP TABLE relationships;
    ALTER TABLE relationships_9 RENAME TO relationships;
    ",
    // 10: alerts an operator skipped (`sextant alerts skip`): acknowledged
    // without delivery because the receiver refuses them. One row per alert,
    // so what a sink never delivered stays on record (`alerts list`).
    // IF NOT EXISTS: tests rewind user_version to replay older steps.
    "
    CREATE TABLE IF NOT EXISTS alert_skips (
        id         INTEGER PRIMARY KEY,
        sink       TEXT    NOT NULL,
        alert_id   TEXT    NOT NULL,
        stream     TEXT    NOT NULL,
        seq        INTEGER NOT NULL,
        rule       TEXT    NOT NULL,
        skipped_at TEXT    NOT NULL,
        skipped_by TEXT    NOT NULL
    );
    CREATE INDEX IF NOT EXISTS alert_skips_by_sink ON alert_skips (sink, id);
    ",
];

/// Brings the database to the latest schema, refusing one that is newer.
/// All pending steps run in one write transaction: two processes opening a
/// fresh database at once cannot both apply them, and a crash applies none.
pub(crate) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let known = MIGRATIONS.len();
    let current = user_version(conn, path, known)?;
    if current == known {
        return Ok(());
    }
    let failed = |version: usize| {
        move |source| StoreError::Migration {
            path: path.to_owned(),
            version,
            source,
        }
    };
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(failed(current + 1))?;
    // Read again under the write lock: another process may have migrated.
    let current = user_version(&tx, path, known)?;
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        tx.execute_batch(sql).map_err(failed(index + 1))?;
    }
    tx.pragma_update(None, "user_version", known as i64)
        .map_err(failed(known))?;
    tx.commit().map_err(failed(known))
}

fn user_version(conn: &Connection, path: &Path, known: usize) -> Result<usize, StoreError> {
    let found: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(|source| StoreError::Open {
            path: path.to_owned(),
            source,
        })?;
    if found > known as i64 {
        return Err(StoreError::TooNew {
            path: path.to_owned(),
            found,
            known,
        });
    }
    usize::try_from(found).map_err(|_| StoreError::Corrupt {
        what: format!("schema version of {}", path.display()),
        reason: format!("user_version is {found}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Migration 9 turns text first/last-seen times into Unix milliseconds
    /// and keeps everything else of the rows.
    #[test]
    fn text_times_become_unix_milliseconds() {
        let mut conn = Connection::open_in_memory().expect("open");
        for sql in &MIGRATIONS[..8] {
            conn.execute_batch(sql).expect("migrations 1 to 8");
        }
        conn.pragma_update(None, "user_version", 8)
            .expect("version");
        conn.execute_batch(
            "INSERT INTO entities VALUES ('ci', 'k-entity-1', 't', 'C', '{\"a\":1}', 7,
                 '2024-01-02T03:04:05.678Z', '2024-01-03T00:00:00.001Z', 1, 2, 5);
             INSERT INTO entities VALUES ('ci', 'k-entity-2', 't', 'C', '{}', 8, '1700000000', '1700000001', 1, 1, NULL);
             INSERT INTO relationships VALUES ('ci', 'k-rel-1', 'r', 'HAS', 'k-entity-1', 'k-entity-2', 't', 't', '{}', 9,
                 '2024-01-02T03:04:05.678Z', '2024-01-02T03:04:05.678Z', 1, 1, 6);",
        )
        .expect("rows of version 8");
        migrate(&mut conn, Path::new(":memory:")).expect("migrate");
        let entities: Vec<(String, String, i64, i64, i64, Option<i64>)> = conn
            .prepare("SELECT key, props, first_seen, last_seen, changed_sync, pending_seq FROM entities ORDER BY key")
            .and_then(|mut s| {
                s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))?
                    .collect()
            })
            .expect("entities");
        assert_eq!(
            entities,
            [
                (
                    "k-entity-1".into(),
                    "{\"a\":1}".into(),
                    1_704_164_645_678,
                    1_704_240_000_001,
                    2,
                    Some(5)
                ),
                (
                    "k-entity-2".into(),
                    "{}".into(),
                    1_700_000_000_000,
                    1_700_000_001_000,
                    1,
                    None
                ),
            ]
        );
        let rel: (i64, i64, String, Option<i64>) = conn
            .query_row(
                "SELECT first_seen, last_seen, to_key, pending_seq FROM relationships",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .expect("relationship");
        assert_eq!(
            rel,
            (
                1_704_164_645_678,
                1_704_164_645_678,
                "k-entity-2".into(),
                Some(6)
            )
        );
        let index: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_schema WHERE type = 'index' AND name = 'entities_by_type'",
                [],
                |r| r.get(0),
            )
            .expect("index");
        assert_eq!(index, 1);
    }
}
