//! Run leases: one run per integration across processes, expired leases
//! reclaimed with their abandoned runs closed.

use std::time::Duration;

use sextant::fixtures::{FixtureServer, FixtureSet};
use sextant::store::{ABANDONED, Store, StoreError};

use crate::support::{lease_count, runs, setup, sextant_async};

#[test]
fn a_lease_is_exclusive_until_released_or_expired() {
    let mut store = Store::open_in_memory().expect("store");
    let hour = Duration::from_secs(3600);
    assert_eq!(
        store.acquire_lease("acme", "a", hour).expect("a takes it"),
        None
    );
    let refused = store.acquire_lease("acme", "b", hour);
    match refused {
        Err(e @ StoreError::LeaseHeld { .. }) => {
            let message = e.to_string();
            assert!(
                message.contains("\"acme\" is already syncing (holder a, since "),
                "{message}"
            );
        }
        other => panic!("expected LeaseHeld, got {other:?}"),
    }
    // The holder itself cannot take it twice either: one run at a time.
    assert!(store.acquire_lease("acme", "a", hour).is_err());
    // Another integration is independent.
    store
        .acquire_lease("other", "b", hour)
        .expect("other integration");
    store.renew_lease("acme", "a", hour).expect("a renews");
    assert!(matches!(
        store.renew_lease("acme", "b", hour),
        Err(StoreError::LeaseLost { .. })
    ));
    // Releasing someone else's lease does nothing.
    store.release_lease("acme", "b").expect("no-op");
    assert!(store.acquire_lease("acme", "b", hour).is_err());
    store.release_lease("acme", "a").expect("release");
    store
        .acquire_lease("acme", "b", hour)
        .expect("b after release");
}

#[test]
fn an_expired_lease_is_reclaimed_and_its_running_row_closed() {
    let mut store = Store::open_in_memory().expect("store");
    store
        .acquire_lease("acme", "crashed", Duration::ZERO)
        .expect("take");
    let orphan = store.begin_run("acme").expect("run");
    let reclaimed = store
        .acquire_lease("acme", "fresh", Duration::from_secs(60))
        .expect("reclaim")
        .expect("the old lease is returned");
    assert_eq!(reclaimed.holder, "crashed");
    let run = store.run(orphan).expect("read").expect("run");
    assert_eq!(run.status.as_str(), "aborted");
    assert_eq!(run.error.as_deref(), Some(ABANDONED));
    assert!(run.ended_at.is_some());
    // The one who lost it cannot renew.
    assert!(matches!(
        store.renew_lease("acme", "crashed", Duration::from_secs(60)),
        Err(StoreError::LeaseLost { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_is_refused_while_another_process_holds_the_lease() {
    let server = FixtureServer::start(FixtureSet::Day1)
        .await
        .expect("server");
    let home = tempfile::tempdir().expect("tempdir");
    let h = home.path();
    setup(h, &server.base_url(), "DISABLED").await;

    let mut other = Store::open(&h.join("sextant.db")).expect("store");
    other
        .acquire_lease("acme", "daemon:pid1:feedbeef", Duration::from_secs(3600))
        .expect("held elsewhere");
    let refused = sextant_async(h, &["sync", "acme"], &[]).await;
    assert_eq!(refused.code, 1, "{}", refused.all_output());
    assert!(
        refused
            .stderr
            .contains("\"acme\" is already syncing (holder daemon:pid1:feedbeef, since ")
            && refused.stderr.contains("wait for that run to finish")
            && refused.stderr.contains("its lease expires at "),
        "{}",
        refused.stderr
    );
    assert!(runs(h).is_empty(), "a refused sync records no run");

    // A crashed holder: its lease expired, its run row still says running.
    other
        .release_lease("acme", "daemon:pid1:feedbeef")
        .expect("release");
    other
        .acquire_lease("acme", "daemon:pid2:deadbeef", Duration::ZERO)
        .expect("expired at once");
    let orphan = other.begin_run("acme").expect("orphan run");
    let sync = sextant_async(h, &["sync", "acme", "--json"], &[]).await;
    assert_eq!(sync.code, 0, "{}", sync.all_output());
    let all = runs(h);
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(all[0].0, orphan);
    assert_eq!(all[0].2, "aborted");
    assert_eq!(all[0].3.as_deref(), Some(ABANDONED));
    assert_eq!(all[1].2, "success");
    assert_eq!(lease_count(h), 0, "the sync released its lease");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_aborts_a_cli_sync_and_releases_its_lease() {
    let server = FixtureServer::start(FixtureSet::Day1)
        .await
        .expect("server");
    let home = tempfile::tempdir().expect("tempdir");
    let h = home.path();
    setup(h, &server.base_url(), "DISABLED").await;
    let child = sync_hung_on_workflows(h, &server).await;
    let pid = child.id().to_string();
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("join")
        .expect("output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("aborted: interrupted (Ctrl-C)"), "{stderr}");
    let all = runs(h);
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0].2, "aborted");
    assert_eq!(lease_count(h), 0, "the lease was released");
    server.clear_faults();
}

/// A run whose lease another process took over while it collected (its
/// lease expired, say, while a request hung) writes nothing: the check right
/// before the commit finds the lease gone, the run is recorded aborted, and
/// the new holder's lease is left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_lease_was_taken_over_commits_nothing() {
    let server = FixtureServer::start(FixtureSet::Day1)
        .await
        .expect("server");
    let home = tempfile::tempdir().expect("tempdir");
    let h = home.path();
    setup(h, &server.base_url(), "DISABLED").await;
    let child = sync_hung_on_workflows(h, &server).await;
    // Another process reclaims the lease (as if it had expired).
    let db = rusqlite::Connection::open(h.join("sextant.db")).expect("db");
    let taken = db
        .execute(
            "UPDATE run_leases SET holder = 'daemon:pid9:takeover', expires_ms = expires_ms + 3600000
             WHERE integration = 'acme'",
            [],
        )
        .expect("take the lease over");
    assert_eq!(taken, 1, "the sync held a lease");
    server.clear_faults();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("join")
        .expect("output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("lost its lease (it expired and another process took it)"),
        "{stderr}"
    );
    let all = runs(h);
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0].2, "aborted", "{all:?}");
    assert!(
        all[0]
            .3
            .as_deref()
            .is_some_and(|e| e.contains("lost its lease")),
        "{all:?}"
    );
    let count = |table: &str| -> i64 {
        db.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
            .expect("count")
    };
    assert_eq!(count("entities"), 0, "nothing of the graph was written");
    assert_eq!(count("relationships"), 0);
    assert_eq!(count("event_batches") + count("events"), 0, "no event");
    let holder: String = db
        .query_row(
            "SELECT holder FROM run_leases WHERE integration = 'acme'",
            [],
            |r| r.get(0),
        )
        .expect("the new holder's lease");
    assert_eq!(holder, "daemon:pid9:takeover");
}

/// Starts `sextant sync acme` whose workflow requests hang, and waits until
/// one does.
async fn sync_hung_on_workflows(
    h: &std::path::Path,
    server: &FixtureServer,
) -> std::process::Child {
    server.inject("/api/v2/workflow/*", sextant::fixtures::Fault::Hang);
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_sextant"))
        .arg("--home")
        .arg(h)
        .args(["sync", "acme"])
        .env_remove("SEXTANT_MASTER_KEY")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    crate::support::eventually("a hung request", || async {
        server
            .requests()
            .iter()
            .any(|r| r.contains("/api/v2/workflow/"))
            .then_some(())
    })
    .await;
    child
}
