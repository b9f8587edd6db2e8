//! Ingest benchmark: first ingest, no-op re-ingest and a 1%-changed,
//! 1%-deleted re-ingest through `Store::commit_run`, against a bare rusqlite
//! bulk insert of the same rows. Each size runs in a child process (this
//! binary re-executed) so its peak RSS is its own.
//!
//! `cargo bench --bench ingest [-- 10k,100k]` or `SEXTANT_BENCH_SIZES=10k,1M`;
//! the default is 10k,100k,1M entities (about one relationship each).
//! `SEXTANT_BENCH_KEEP=1` keeps the databases for inspection.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use sextant::graph::{Collected, Entity, Relationship};
use sextant::run::{RunStatus, StepOutcome};
use sextant::store::Store;

const CHILD_ENV: &str = "SEXTANT_BENCH_CHILD";
const TYPES: [&str; 4] = ["bench_node", "bench_task", "bench_group", "bench_item"];
const INTEGRATION: &str = "bench";

/// The binary's allocator (src/main.rs), so memory figures are its own.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    if let Ok(size) = std::env::var(CHILD_ENV) {
        let n = parse_size(&size).unwrap_or_else(|| fail(&format!("bad size {size:?}")));
        child(n);
        return;
    }
    let spec = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .or_else(|| std::env::var("SEXTANT_BENCH_SIZES").ok())
        .unwrap_or_else(|| "10k,100k,1M".to_owned());
    let exe = std::env::current_exe().unwrap_or_else(|e| fail(&format!("current_exe: {e}")));
    println!(
        "{:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9}",
        "entities",
        "bare s",
        "first s",
        "no-op s",
        "1%chg s",
        "1st/bare",
        "1st/noop",
        "peak MiB",
        "graph MiB"
    );
    for size in spec.split(',').filter(|s| !s.is_empty()) {
        let output = Command::new(&exe)
            .env(CHILD_ENV, size)
            .output()
            .unwrap_or_else(|e| fail(&format!("cannot run the child for {size}: {e}")));
        if !output.status.success() {
            eprintln!("{}", String::from_utf8_lossy(&output.stderr));
            fail(&format!("size {size}: child failed: {}", output.status));
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        let line = stdout
            .lines()
            .find(|l| l.starts_with("RESULT "))
            .unwrap_or_else(|| fail(&format!("size {size}: no result in\n{stdout}")));
        let f: Vec<f64> = line["RESULT ".len()..]
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        if f.len() < 7 {
            fail(&format!("size {size}: short result {line:?}"));
        }
        let (n, bare, first, noop, changed, peak, graph) =
            (f[0], f[1], f[2], f[3], f[4], f[5], f[6]);
        println!(
            "{n:>9} {bare:>8.2} {first:>8.2} {noop:>8.3} {changed:>8.2} {:>8.2} {:>8.1} {peak:>9.0} {graph:>9.0}",
            first / bare,
            first / noop
        );
        for detail in stdout.lines().filter(|l| l.starts_with("  ")) {
            println!("{detail}");
        }
    }
}

fn fail(message: &str) -> ! {
    eprintln!("ingest bench: {message}");
    std::process::exit(2)
}

fn parse_size(text: &str) -> Option<usize> {
    let text = text.trim();
    let (digits, factor) = match text.chars().last()? {
        'k' | 'K' => (&text[..text.len() - 1], 1_000),
        'm' | 'M' => (&text[..text.len() - 1], 1_000_000),
        _ => (text, 1),
    };
    digits.parse::<usize>().ok().map(|n| n * factor)
}

/// Peak (VmHWM) or current (VmRSS) resident set in MiB.
fn rss_mib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Deterministic pseudo-random 64-bit values (splitmix64).
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn uuid(i: usize) -> String {
    let (a, b) = (mix(i as u64), mix(!(i as u64)));
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

fn entity_type(i: usize) -> &'static str {
    TYPES[i % TYPES.len()]
}

fn entity_key(i: usize) -> String {
    format!("{}:{}", entity_type(i), uuid(i))
}

/// `n` entities with CircleCI-sized properties, entity `i` HAS entity
/// `i + 1` (wrapping). `changed`: 1% of entities get a new status, 1% are
/// gone together with their relationships.
fn generate(n: usize, changed: bool) -> Collected {
    let gone = |i: usize| changed && i % 100 == 2;
    let mut collected = Collected::new();
    for i in (0..n).filter(|&i| !gone(i)) {
        let id = uuid(i);
        let status = if changed && i % 100 == 1 {
            "changed"
        } else {
            "success"
        };
        let entity = Entity::new(entity_key(i), entity_type(i), "Configuration")
            .with("name", format!("job {i}"))
            .with("displayName", format!("Job {i}"))
            .with("status", status)
            .with("number", i as u64)
            .with("createdOn", 1_700_000_000_000u64 + i as u64)
            .with("webLink", format!("https://app.circleci.com/jobs/{id}"))
            .with("id", id);
        let _ = collected.insert_entity(entity);
    }
    for i in 0..n {
        let j = (i + 1) % n;
        if gone(i) || gone(j) {
            continue;
        }
        let rel = Relationship::by_keys(
            "HAS",
            entity_type(i),
            &entity_key(i),
            entity_type(j),
            &entity_key(j),
        );
        let _ = collected.insert_relationship(rel);
    }
    collected
}

fn complete_types(collected: &Collected) -> BTreeSet<String> {
    let mut types: BTreeSet<String> = TYPES.iter().map(|t| t.to_string()).collect();
    types.extend(collected.relationships().map(|r| r.ty.to_string()));
    types
}

fn ingest(store: &mut Store, collected: &Collected, complete: &BTreeSet<String>) -> Duration {
    let steps = [StepOutcome::new(
        "bench",
        complete.iter().cloned().collect(),
    )];
    let start = Instant::now();
    let sync_id = store
        .begin_run(INTEGRATION)
        .unwrap_or_else(|e| fail(&e.to_string()));
    let counts = store
        .commit_run(
            sync_id,
            INTEGRATION,
            collected,
            complete,
            &steps,
            RunStatus::Success,
        )
        .unwrap_or_else(|e| fail(&e.to_string()));
    let elapsed = start.elapsed();
    println!(
        "  commit: created {} updated {} deleted {} in {:.3}s (peak so far {:.0} MiB)",
        counts.created,
        counts.updated,
        counts.deleted,
        elapsed.as_secs_f64(),
        rss_mib("VmHWM:")
    );
    elapsed
}

/// The physical baseline: the same rows into plain tables, one
/// transaction, one prepared statement per table, the store's pragmas.
fn bare_insert(path: &Path, collected: &Collected) -> Duration {
    let conn = rusqlite::Connection::open(path).unwrap_or_else(|e| fail(&e.to_string()));
    let setup = "PRAGMA page_size = 8192; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
        PRAGMA cache_size = -65536;
        CREATE TABLE entities (key TEXT, type TEXT, class TEXT, props TEXT, hash INTEGER);
        CREATE TABLE relationships (key TEXT, type TEXT, class TEXT, from_key TEXT, to_key TEXT, props TEXT, hash INTEGER);";
    conn.execute_batch(setup)
        .unwrap_or_else(|e| fail(&e.to_string()));
    let start = Instant::now();
    let run = || -> rusqlite::Result<()> {
        conn.execute_batch("BEGIN")?;
        let mut stmt = conn.prepare("INSERT INTO entities VALUES (?1, ?2, ?3, ?4, ?5)")?;
        for e in collected.entities() {
            stmt.execute(rusqlite::params![
                e.key,
                &*e.ty,
                &*e.class,
                &*e.props,
                e.hash as i64
            ])?;
        }
        let mut stmt =
            conn.prepare("INSERT INTO relationships VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")?;
        for r in collected.relationships() {
            stmt.execute(rusqlite::params![
                r.key,
                &*r.ty,
                &*r.class,
                r.from_key,
                r.to_key,
                &*r.props,
                r.hash as i64
            ])?;
        }
        conn.execute_batch("COMMIT")
    };
    run().unwrap_or_else(|e| fail(&e.to_string()));
    start.elapsed()
}

fn file_mib(path: &Path) -> f64 {
    std::fs::metadata(path).map_or(0.0, |m| m.len() as f64 / (1024.0 * 1024.0))
}

/// Flushes a database and its WAL so one phase's write-back does not slow
/// the next (not timed).
fn flush(path: &Path) {
    for file in [path.to_path_buf(), path.with_extension("db-wal")] {
        if let Ok(f) = std::fs::File::open(&file) {
            let _ = f.sync_all();
        }
    }
}

fn child(n: usize) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| fail(&e.to_string()));
    let keep = std::env::var_os("SEXTANT_BENCH_KEEP").is_some();
    if keep {
        println!("  keeping {}", dir.path().display());
    }

    let start = Instant::now();
    let collected = generate(n, false);
    let graph_mib = rss_mib("VmRSS:");
    println!(
        "  generated {} entities + {} relationships in {:.2}s; RSS {graph_mib:.0} MiB",
        collected.entity_count(),
        collected.relationship_count(),
        start.elapsed().as_secs_f64()
    );
    let complete = complete_types(&collected);

    let path = dir.path().join("sextant.db");
    let mut store = Store::open(&path).unwrap_or_else(|e| fail(&e.to_string()));
    // Tuning aid: try another page cache size than the store's default.
    if let Some(kib) = std::env::var("SEXTANT_BENCH_CACHE_KIB")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        store
            .set_cache_size_kib(kib)
            .unwrap_or_else(|e| fail(&e.to_string()));
    }
    let first = ingest(&mut store, &collected, &complete);
    println!("  store file after first ingest {:.0} MiB", file_mib(&path));
    // Reading the first ingest's events back, a page at a time as
    // `events list` does (not part of the ratios).
    let start = Instant::now();
    let (mut cursor, mut read) = (0, 0);
    loop {
        let page = store
            .events(cursor, None, 1000)
            .unwrap_or_else(|e| fail(&e.to_string()));
        let Some(last) = page.last() else { break };
        cursor = last.seq;
        read += page.len();
    }
    println!(
        "  read {read} events back in pages of 1000 in {:.2}s",
        start.elapsed().as_secs_f64()
    );
    // Profiling aid: stop after the first ingest.
    if std::env::var_os("SEXTANT_BENCH_FIRST_ONLY").is_some() {
        return;
    }
    flush(&path);
    let noop = ingest(&mut store, &collected, &complete);
    drop(collected);
    let changed_graph = generate(n, true);
    println!(
        "  changed graph generated; RSS {:.0} MiB (peak so far {:.0} MiB)",
        rss_mib("VmRSS:"),
        rss_mib("VmHWM:")
    );
    let changed = ingest(&mut store, &changed_graph, &complete);
    // Peak RSS of the store phases, before the baselines run.
    let peak = rss_mib("VmHWM:");
    println!(
        "  store file {:.0} MiB (+ WAL {:.0} MiB)",
        file_mib(&path),
        file_mib(&path.with_extension("db-wal"))
    );
    drop(store);
    drop(changed_graph);
    flush(&path);

    let collected = generate(n, false);
    let bare_path = dir.path().join("bare.db");
    let bare = bare_insert(&bare_path, &collected);
    println!(
        "  bare insert {:.3}s, file {:.0} MiB",
        bare.as_secs_f64(),
        file_mib(&bare_path)
    );

    println!(
        "RESULT {n} {} {} {} {} {peak} {graph_mib}",
        bare.as_secs_f64(),
        first.as_secs_f64(),
        noop.as_secs_f64(),
        changed.as_secs_f64(),
    );
    if keep {
        let _ = dir.keep();
    }
}
