//! Atomicity: a commit interrupted by an error or killed mid-transaction
//! leaves the previous run's graph, and the next commit continues the event
//! sequence without a gap.

use std::path::Path;

use sextant::store::{Fault, Store, StoreError};

use super::*;

const BIG_JOBS: usize = 3000;

#[test]
fn an_interrupted_commit_rolls_back_and_the_next_continues_the_sequence() {
    let mut store = Store::open_in_memory().expect("open");
    sync(&mut store, &collect(&circleci(2, 0)), &all_types()).expect("first sync");
    let before = export(&store);
    let seq = store.last_event_seq().expect("seq");

    // Fail half-way through writing the big graph's rows and events.
    let big = collect(&circleci(BIG_JOBS, 1));
    store.inject_fault_after_writes(BIG_JOBS as u64, Fault::Error);
    let err = sync(&mut store, &big, &all_types()).expect_err("injected fault");
    assert!(matches!(err, StoreError::InjectedFault), "{err:?}");
    assert_eq!(export(&store), before, "graph is at the previous run");
    assert_eq!(
        store.last_event_seq().expect("seq"),
        seq,
        "no event of the failed commit"
    );

    let counts = sync(&mut store, &big, &all_types()).expect("retry");
    assert_eq!(counts.created as usize, 2 * (BIG_JOBS - 2));
    assert_eq!(store.events(seq, None, 1).expect("events")[0].seq, seq + 1);
    assert_gap_free(&store);
}

const KILL_CHILD_ENV: &str = "SEXTANT_TEST_KILL_CHILD_DB";

#[test]
fn a_killed_commit_leaves_the_previous_state_and_loses_no_event() {
    if let Ok(path) = std::env::var(KILL_CHILD_ENV) {
        kill_child(Path::new(&path));
    }
    let (_dir, path) = temp_db();
    let mut store = Store::open(&path).expect("open");
    sync(&mut store, &collect(&circleci(2, 0)), &all_types()).expect("first sync");
    let before = export(&store);
    let seq = store.last_event_seq().expect("seq");
    drop(store);

    let exe = std::env::current_exe().expect("test binary");
    let output = std::process::Command::new(exe)
        .args([
            "--exact",
            "crash::a_killed_commit_leaves_the_previous_state_and_loses_no_event",
            "--nocapture",
        ])
        .env(KILL_CHILD_ENV, &path)
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("child: committing"),
        "the child did not reach the commit:\n{stdout}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            output.status.signal(),
            Some(6),
            "the child should die of SIGABRT: {:?}",
            output.status
        );
    }
    assert!(!output.status.success());

    let mut store = Store::open(&path).expect("reopen after the crash");
    assert_eq!(export(&store), before, "graph is at the previous run");
    assert_eq!(store.last_event_seq().expect("seq"), seq);
    let big = collect(&circleci(BIG_JOBS, 1));
    sync(&mut store, &big, &all_types()).expect("next sync");
    assert_eq!(store.events(seq, None, 1).expect("events")[0].seq, seq + 1);
    assert_gap_free(&store);
}

/// The child: commits the big graph with a tiny page cache (so uncommitted
/// pages spill into the WAL file) and aborts the process half-way.
fn kill_child(path: &Path) -> ! {
    let mut store = Store::open(path).expect("child opens");
    store.set_cache_size_kib(256).expect("small cache");
    let big = collect(&circleci(BIG_JOBS, 1));
    store.inject_fault_after_writes(BIG_JOBS as u64, Fault::Abort);
    println!("child: committing");
    let result = sync(&mut store, &big, &all_types());
    panic!("the child's commit should have aborted the process, got {result:?}");
}
