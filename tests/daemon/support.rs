//! Helpers for the daemon tests: a running `sextant daemon` child process,
//! stored connection and integration setup through the CLI, tokens, and an
//! HTTP client.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use sextant::fixtures::FIXTURE_TOKEN;

#[path = "../common/mod.rs"]
mod common;
pub use common::sextant_async;

/// A `sextant daemon` child process on 127.0.0.1:0.
pub struct Daemon {
    child: Child,
    pub url: String,
    pub log: PathBuf,
}

impl Daemon {
    /// Starts the daemon on `home` with no jitter, a `grace` shutdown
    /// period and a one-second reload, and waits for its address line.
    pub fn start(home: &Path, grace: &str) -> Daemon {
        let log = home.join(format!("daemon-{}.log", uuid::Uuid::new_v4().simple()));
        let mut child = Command::new(env!("CARGO_BIN_EXE_sextant"))
            .arg("--home")
            .arg(home)
            .args([
                "daemon",
                "--listen",
                "127.0.0.1:0",
                "--jitter",
                "0s",
                "--reload-every",
                "1s",
                "--grace",
                grace,
                "-vv",
            ])
            .env_remove("SEXTANT_HOME")
            .env_remove("SEXTANT_CONFIG")
            .env_remove("RUST_LOG")
            .env_remove("SEXTANT_MASTER_KEY")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(&log).expect("log file")))
            .spawn()
            .expect("the daemon starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the daemon prints its address");
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}; log: {}", read(&log)))
            .to_owned();
        Daemon { child, url, log }
    }

    pub fn api(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    pub fn log(&self) -> String {
        read(&self.log)
    }

    /// Sends SIGTERM and waits for the process to exit; its exit code.
    pub async fn terminate(mut self) -> i32 {
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM {pid}");
        let mut child = std::mem::replace(
            &mut self.child,
            Command::new("true").spawn().expect("placeholder"),
        );
        let waited = tokio::task::spawn_blocking(move || child.wait())
            .await
            .expect("join")
            .expect("wait");
        waited.code().unwrap_or(-1)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Stores connection `ci-test` (pointing at `host`) and integration `acme`
/// with `interval`, through the CLI.
pub async fn setup(home: &Path, host: &str, interval: &str) {
    let secrets = common::secrets_file(home, "secrets.json", FIXTURE_TOKEN, host);
    let add = sextant_async(
        home,
        &[
            "connection",
            "add",
            "ci-test",
            "--type",
            "circleci",
            "--secrets-file",
            &secrets,
        ],
        &[],
    )
    .await;
    assert_eq!(add.code, 0, "{}", add.all_output());
    std::fs::remove_file(home.join("secrets.json")).expect("remove secrets");
    let add = sextant_async(
        home,
        &[
            "integration",
            "add",
            "acme",
            "--connection",
            "ci-test",
            "--account-name",
            "Acme",
            "--interval",
            interval,
        ],
        &[],
    )
    .await;
    assert_eq!(add.code, 0, "{}", add.all_output());
}

/// Creates a token through the CLI and returns it.
pub async fn token(home: &Path, name: &str, scopes: &[&str]) -> String {
    let mut args = vec!["token", "create", name];
    for s in scopes {
        args.push("--scope");
        args.push(s);
    }
    let run = sextant_async(home, &args, &[]).await;
    assert_eq!(run.code, 0, "{}", run.all_output());
    let token = run.stdout.trim().to_owned();
    assert!(token.starts_with("sxt_"), "{token}");
    token
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client")
}

/// Status and JSON body (Null when the body is empty or not JSON).
pub async fn send(req: reqwest::RequestBuilder) -> (u16, Value) {
    let response = req.send().await.expect("request");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Polls `check` until it gives a value; panics with `what` after two
/// minutes (a hang guard, not a timing assertion).
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The runs of the database, oldest first: (id, integration, status, error).
pub fn runs(home: &Path) -> Vec<(i64, String, String, Option<String>)> {
    let db = rusqlite::Connection::open(home.join("sextant.db")).expect("db");
    let mut stmt = db
        .prepare("SELECT id, integration, status, error FROM sync_runs ORDER BY id")
        .expect("prepare");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

/// Rows of the lease table.
pub fn lease_count(home: &Path) -> i64 {
    let db = rusqlite::Connection::open(home.join("sextant.db")).expect("db");
    db.query_row("SELECT COUNT(*) FROM run_leases", [], |r| r.get(0))
        .expect("count")
}

/// A JSON body (reqwest is built without its `json` feature).
pub trait JsonBody {
    fn json_body(self, value: &Value) -> Self;
}

impl JsonBody for reqwest::RequestBuilder {
    fn json_body(self, value: &Value) -> Self {
        self.header("Content-Type", "application/json")
            .body(value.to_string())
    }
}
