//! Create events recorded in batches (migration 8): a batch row stands for
//! the creates of adjacent rows, each event's `after` is its row until the
//! row changes. Reading them back must give one event per object, in seq
//! order, whatever the page size, the start, the integration filter — and
//! a database written before batches existed must read the same.

use std::collections::BTreeSet;

use sextant::events::{Action, ChangeEvent};
use sextant::store::{Store, StoreError};

use super::*;

/// The CircleCI fixture with only the jobs numbered in `numbers` (of `0..max`).
fn with_jobs(numbers: &BTreeSet<usize>, max: usize) -> Fixture {
    let mut fixture = circleci(max, 0);
    let keep = |key: &str| match key.strip_prefix("circleci-job:wf-1:") {
        Some(n) => n.parse().is_ok_and(|n: usize| numbers.contains(&n)),
        None => true,
    };
    fixture.entities.retain(|e| keep(&e.key));
    fixture
        .relationships
        .retain(|r| keep(&r.from_key) && keep(&r.to_key));
    fixture
}

fn sql_count(path: &std::path::Path, sql: &str) -> i64 {
    rusqlite::Connection::open(path)
        .and_then(|db| db.query_row(sql, [], |r| r.get(0)))
        .expect(sql)
}

/// Reads every event after `since`, `page` at a time.
fn read_paged(
    store: &Store,
    since: u64,
    integration: Option<&str>,
    page: usize,
) -> Vec<ChangeEvent> {
    let (mut out, mut cursor) = (Vec::new(), since);
    loop {
        let got = store.events(cursor, integration, page).expect("events");
        assert!(got.len() <= page, "a page of {page} held {}", got.len());
        let Some(last) = got.last() else {
            return out;
        };
        cursor = last.seq;
        out.extend(got);
    }
}

#[test]
fn batched_creates_read_back_whatever_the_page_and_the_start() {
    let (_dir, path) = temp_db();
    let mut store = Store::open(&path).expect("open");
    const MAX: usize = 2600;
    let evens: BTreeSet<usize> = (0..MAX).step_by(2).collect();
    let graph = collect(&with_jobs(&evens, MAX));
    sync(&mut store, &graph, &all_types()).expect("first");
    // An empty store: every create of a kind is one run, cut at 1024.
    let entities = graph.entity_count() as i64;
    let relationships = graph.relationship_count() as i64;
    assert_eq!(
        sql_count(
            &path,
            "SELECT COUNT(*) FROM event_batches WHERE sync_id = 1"
        ),
        (entities + 1023) / 1024 + (relationships + 1023) / 1024
    );
    // The odd jobs land between stored even ones: a batch each.
    let all: BTreeSet<usize> = (0..MAX).collect();
    let second = sync(&mut store, &collect(&with_jobs(&all, MAX)), &all_types()).expect("second");
    assert_eq!(second.created as usize, 2 * (MAX / 2));
    assert_eq!(
        sql_count(
            &path,
            "SELECT COUNT(*) FROM event_batches WHERE sync_id = 2"
        ),
        second.created as i64
    );
    assert_eq!(sql_count(&path, "SELECT COUNT(*) FROM events"), 0);

    let events = all_events(&store);
    assert_gap_free(&store);
    // One create per stored object, whose `after` is the object.
    let (stored_entities, stored_relationships) = export(&store);
    let mut afters: Vec<Value> = events
        .iter()
        .inspect(|e| assert_eq!(e.action, Action::Created))
        .filter_map(|e| e.after.clone())
        .collect();
    let mut stored: Vec<Value> = stored_entities
        .into_iter()
        .chain(stored_relationships)
        .collect();
    let by_key = |v: &Value| v["_key"].as_str().unwrap_or_default().to_owned();
    afters.sort_by_key(by_key);
    stored.sort_by_key(by_key);
    assert_eq!(afters, stored);

    let n = events.len() as u64;
    let starts = [0, 1, 1023, 1024, 1500, n - 1, n];
    for page in [7, 1023, 1024, 1025, 100_000] {
        for since in starts {
            let paged = read_paged(&store, since, None, page);
            assert_eq!(
                paged.as_slice(),
                &events[since as usize..],
                "page {page} from {since}"
            );
        }
    }
    // One at a time across a batch boundary and through single-row batches.
    let since = 1000;
    let paged = read_paged(&store, since, None, 1);
    assert_eq!(paged.as_slice(), &events[since as usize..]);
}

#[test]
fn integrations_read_apart_when_their_batches_interleave() {
    let mut store = Store::open_in_memory().expect("open");
    let complete = all_types();
    let evens: BTreeSet<usize> = (0..1200).step_by(2).collect();
    let all: BTreeSet<usize> = (0..1200).collect();
    sync(&mut store, &collect(&with_jobs(&evens, 1200)), &complete).expect("prod 1");
    let staging = store.begin_run("ci-staging").expect("begin");
    let graph = collect(&circleci(1500, 0));
    store
        .commit_run(
            staging,
            "ci-staging",
            &graph,
            &complete,
            &[],
            RunStatus::Success,
        )
        .expect("staging");
    sync(&mut store, &collect(&with_jobs(&all, 1200)), &complete).expect("prod 2");

    let everything = all_events(&store);
    assert_gap_free(&store);
    for page in [3, 1000, 100_000] {
        let prod = read_paged(&store, 0, Some(INTEGRATION), page);
        let staging = read_paged(&store, 0, Some("ci-staging"), page);
        assert!(prod.iter().all(|e| e.integration == INTEGRATION));
        assert!(staging.iter().all(|e| e.integration == "ci-staging"));
        assert_eq!(
            staging.len(),
            graph.entity_count() + graph.relationship_count()
        );
        let mut merged: Vec<ChangeEvent> = prod.into_iter().chain(staging).collect();
        merged.sort_by_key(|e| e.seq);
        assert_eq!(merged, everything, "page {page}");
    }
}

#[test]
fn a_graph_row_lost_behind_the_stores_back_is_reported_not_skipped() {
    let (_dir, path) = temp_db();
    let mut store = Store::open(&path).expect("open");
    sync(&mut store, &collect(&circleci(3, 0)), &all_types()).expect("sync");
    let job = all_events(&store)
        .into_iter()
        .find(|e| e.key == "circleci-job:wf-1:000001")
        .expect("job event");
    rusqlite::Connection::open(&path)
        .and_then(|db| {
            db.execute(
                "DELETE FROM entities WHERE key = 'circleci-job:wf-1:000001'",
                [],
            )
        })
        .expect("delete behind the store's back");
    let err = store
        .events(0, None, usize::MAX)
        .expect_err("a lost event is an error");
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("1 of them have neither an event row nor a graph row that names them"),
        "{message}"
    );
    // The message names a range that holds the lost event.
    assert!(message.contains("change events 1 to "), "{message}");
    assert!(job.seq > 1);
}

/// A database of schema 7 kept each create as an event row waiting for its
/// `after` (`after_pending`). Made here from a fresh one the way version 7
/// wrote it; it must read the same once migrated, and stay the same as its
/// objects change.
#[test]
fn a_schema_7_database_with_pending_events_reads_the_same_after_the_upgrade() {
    let (_dir, path) = temp_db();
    let mut store = Store::open(&path).expect("open");
    sync(&mut store, &collect(&circleci(3, 0)), &all_types()).expect("first sync");
    let before = all_events(&store);
    drop(store);
    let db = rusqlite::Connection::open(&path).expect("db");
    for (table, object) in [("entities", "entity"), ("relationships", "relationship")] {
        db.execute(
            &format!(
                "INSERT INTO events (seq, integration, sync_id, action, object, type, body, after_pending)
                 SELECT r.pending_seq, r.integration, b.sync_id, 'created', '{object}', r.type,
                        json_object('seq', r.pending_seq, 'time', b.time, 'integration', r.integration,
                                    'sync_id', b.sync_id, 'action', 'created', 'object', '{object}',
                                    '_type', r.type, '_class', r.class, '_key', r.key),
                        1
                 FROM {table} r JOIN event_batches b ON r.pending_seq BETWEEN b.first_seq AND b.last_seq"
            ),
            [],
        )
        .expect("write the version 7 event rows");
    }
    db.execute_batch("DROP TABLE event_batches; PRAGMA user_version = 7;")
        .expect("back to version 7");
    drop(db);
    let pending = || sql_count(&path, "SELECT COUNT(*) FROM events WHERE after_pending = 1");
    assert_eq!(pending(), before.len() as i64);

    let mut store = Store::open(&path).expect("migrate to the current schema");
    assert_eq!(all_events(&store), before);
    // The workflow changes, job 2 and its relationship go: their pending
    // events are completed, the others still wait; all read the same.
    sync(&mut store, &collect(&circleci(2, 1)), &all_types()).expect("second sync");
    assert_eq!(store.events(0, None, before.len()).expect("events"), before);
    assert_eq!(pending(), before.len() as i64 - 3);
    assert_gap_free(&store);
}

/// A reader reads every event while a writer, in another process's place
/// (its own connection), writes batched creates out as their rows go: each
/// read is one snapshot, so it never misses or doubles an event.
#[test]
fn a_reader_sees_every_event_once_while_a_writer_completes_batches() {
    let (_dir, path) = temp_db();
    let mut writer = Store::open(&path).expect("writer");
    sync(
        &mut writer,
        &collect(&with_jobs(&BTreeSet::from([0]), 1)),
        &all_types(),
    )
    .expect("first");
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let reader = Store::open(&path).expect("reader");
            let mut reads = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) || reads == 0 {
                let events = reader
                    .events(0, None, usize::MAX)
                    .expect("a consistent read");
                let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
                let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
                assert_eq!(seqs, expected, "read {reads} has a gap or a double");
                reads += 1;
            }
            reads
        });
        // Each sync deletes the previous job (writing its create event out)
        // and creates the next one (a batch).
        for n in 1..150 {
            let jobs = BTreeSet::from([n]);
            sync(
                &mut writer,
                &collect(&with_jobs(&jobs, n + 1)),
                &all_types(),
            )
            .expect("sync");
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(reader.join().expect("reader thread") > 0);
    });
    assert_gap_free(&writer);
}
