//! Shared test helpers: run the real `sextant` binary, write configs that
//! point at a fixture server.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A token that must never show up anywhere but the fixture server's check.
pub const SECRET_TOKEN_ENV: &str = "SEXTANT_TEST_CIRCLECI_TOKEN";

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn all_output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// Runs the binary with a data dir and extra env; blocking.
pub fn sextant(home: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sextant"));
    cmd.arg("--home").arg(home).args(args);
    cmd.env_remove("SEXTANT_HOME")
        .env_remove("SEXTANT_CONFIG")
        .env_remove("RUST_LOG")
        .env_remove("SEXTANT_MASTER_KEY");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("the sextant binary runs");
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// Async wrapper so tests can run the binary while a fixture server runs on the test's runtime.
pub async fn sextant_async(home: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let home = home.to_path_buf();
    let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        sextant(&home, &args, &env)
    })
    .await
    .expect("blocking task")
}

/// Writes config.yaml into `home` with one CircleCI connection and integration.
pub fn write_config(home: &Path, host: &str, settings: &str) -> PathBuf {
    std::fs::create_dir_all(home).expect("home");
    let path = home.join("config.yaml");
    let text = format!(
        "connections:\n  - name: ci-test\n    type: circleci\n    requests_per_second: 1000\n    secrets:\n      api_token: env:{SECRET_TOKEN_ENV}\n      host: {host}\n\
         integrations:\n  - name: acme\n    connection: ci-test\n    account_name: Acme\n    tag_account_name: true\n{settings}"
    );
    std::fs::write(&path, text).expect("write config");
    path
}

/// The database file and its WAL, as bytes (for "never stored in clear" checks).
pub fn db_bytes(home: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(home.join("sextant.db")).expect("db");
    if let Ok(wal) = std::fs::read(home.join("sextant.db-wal")) {
        bytes.extend(wal);
    }
    bytes
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Writes a CircleCI secrets file `dir/name` (creating `dir`) and returns
/// its path, for `connection add --secrets-file`.
pub fn secrets_file(dir: &Path, name: &str, token: &str, host: &str) -> String {
    std::fs::create_dir_all(dir).expect("secrets dir");
    let path = dir.join(name);
    std::fs::write(
        &path,
        serde_json::json!({"api_token": token, "host": host}).to_string(),
    )
    .expect("write secrets");
    path.display().to_string()
}

/// The stored (encrypted) secrets of connection `key`.
pub fn secrets_blob(home: &Path, key: &str) -> Vec<u8> {
    let db = rusqlite::Connection::open(home.join("sextant.db")).expect("open db");
    db.query_row(
        "SELECT secrets FROM connections WHERE key = ?1",
        [key],
        |row| row.get(0),
    )
    .expect("row")
}

/// Serves `app` on 127.0.0.1:0 in the background; returns its address.
pub async fn serve(app: axum::Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a local port");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}
