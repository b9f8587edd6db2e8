//! The command line: clap definitions and dispatch, one file per command group.

mod alerts;
mod config;
mod connection;
mod connection_type;
mod daemon;
mod demo;
mod events;
mod graph;
mod integration;
mod key;
mod sync;
mod token;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::connection::provision::{ProvisionReport, provision};
use crate::graph::Schema;
use crate::store::Store;

/// Sextant keeps a live graph of your engineering estate: it polls sources
/// such as CircleCI with stored API tokens, diffs what they return into a
/// SQLite graph and emits change events.
///
/// Start with `sextant demo`: it needs no account, token or network.
#[derive(Debug, Parser)]
#[command(name = "sextant", version, max_term_width = 100)]
pub struct Cli {
    /// Data directory (database, master key). Defaults to the platform data dir.
    #[arg(long, global = true, env = "SEXTANT_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// Config file declaring connections, integrations and alert rules.
    /// Defaults to config.yaml in the data directory, if present.
    #[arg(long, global = true, env = "SEXTANT_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// More logging on stderr (-v info, -vv debug, -vvv trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole pipeline on bundled fixtures: a local CircleCI stand-in,
    /// two syncs ("today" and "a day later") and the change events between them.
    Demo(demo::DemoArgs),
    /// Sync one integration once. Exit code 0 success, 3 partial, 1 failed.
    Sync(sync::SyncArgs),
    /// Read the stored graph.
    #[command(subcommand)]
    Graph(graph::GraphCommand),
    /// Read change events (JSON lines).
    #[command(subcommand)]
    Events(events::EventsCommand),
    /// Alert rules and sinks: list them with each sink's cursor, test a rule,
    /// or skip alerts a sink's receiver refuses.
    #[command(subcommand)]
    Alerts(alerts::AlertsCommand),
    /// Connection types and the fields of their secrets.
    #[command(subcommand, name = "connection-type")]
    ConnectionType(connection_type::ConnectionTypeCommand),
    /// Stored connections: typed credentials, encrypted at rest.
    #[command(subcommand)]
    Connection(connection::ConnectionCommand),
    /// Stored integration instances on stored connections.
    #[command(subcommand)]
    Integration(integration::IntegrationCommand),
    /// The master key that encrypts connection secrets.
    #[command(subcommand)]
    Key(key::KeyCommand),
    /// Check the config file, or apply what it declares to the store now
    /// (`sync` and `daemon` apply it at start).
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// Run every stored integration on its schedule and serve the HTTP API
    /// until SIGTERM or SIGINT.
    Daemon(daemon::DaemonArgs),
    /// API tokens for the daemon (scoped, hashed at rest, shown once).
    #[command(subcommand)]
    Token(token::TokenCommand),
}

/// A duration flag: `500ms`, `30s`, `2m`, `1h`, `1d`.
pub(crate) fn duration_arg(text: &str) -> Result<std::time::Duration, String> {
    crate::config::parse_duration(text)
        .ok_or_else(|| format!("{text:?} is not a duration; try 500ms, 30s or 2m"))
}

/// Paging and output of a list command.
#[derive(Debug, clap::Args)]
pub struct PageArgs {
    /// Page to show, from 1.
    #[arg(long, default_value_t = 1)]
    pub page: usize,
    /// Items per page.
    #[arg(long, default_value_t = 50)]
    pub size: usize,
    /// Print `{items, total, page, size}` as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Where state lives for this invocation.
pub struct Context {
    pub home: PathBuf,
    pub config_path: Option<PathBuf>,
}

impl Context {
    pub fn new(cli: &Cli) -> anyhow::Result<Self> {
        let home = match &cli.home {
            Some(home) => home.clone(),
            None => default_home()?,
        };
        Ok(Context {
            home,
            config_path: cli.config.clone(),
        })
    }

    pub fn db_path(&self) -> PathBuf {
        self.home.join("sextant.db")
    }

    /// Opens (creating if needed) the store in the data directory.
    pub fn store(&self) -> anyhow::Result<Store> {
        std::fs::create_dir_all(&self.home)
            .with_context(|| format!("cannot create the data directory {}", self.home.display()))?;
        Ok(Store::open(&self.db_path())?)
    }

    /// The master key: $SEXTANT_MASTER_KEY, else the key file in the data
    /// directory (created with mode 0600 on first use).
    pub fn master_key(
        &self,
    ) -> Result<crate::connection::MasterKey, crate::connection::CryptoError> {
        crate::connection::MasterKey::load(&self.home).map(|(key, _)| key)
    }

    /// Opens the store and provisions into it the connections and
    /// integrations the config file declares (see `connection::provision`).
    pub fn provisioned_store(&self, config: &Config) -> anyhow::Result<(Store, ProvisionReport)> {
        let mut store = self.store()?;
        let report = provision(&mut store, || Ok(self.master_key()?), config)?;
        Ok((store, report))
    }

    /// The config file: --config, or config.yaml in the data dir if present.
    pub fn config(&self) -> anyhow::Result<Config> {
        match &self.config_path {
            Some(path) => Ok(Config::load(path)?),
            None => {
                let path = self.home.join("config.yaml");
                if path.exists() {
                    Ok(Config::load(&path)?)
                } else {
                    Ok(Config::default())
                }
            }
        }
    }
}

/// `$XDG_DATA_HOME/sextant`, else `~/.local/share/sextant`.
fn default_home() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return Ok(Path::new(&dir).join("sextant"));
    }
    let home = std::env::var_os("HOME")
        .filter(|d| !d.is_empty())
        .context("cannot find a data directory: set --home DIR or SEXTANT_HOME")?;
    Ok(Path::new(&home).join(".local/share/sextant"))
}

pub fn schema() -> anyhow::Result<Arc<Schema>> {
    Ok(Arc::new(Schema::embedded()?))
}

/// Runs a parsed command; returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    let cx = Context::new(&cli)?;
    match cli.command {
        Command::Demo(args) => demo::run(&cx, args, cli.home.is_some()),
        Command::Sync(args) => sync::run(&cx, args),
        Command::Graph(cmd) => graph::run(&cx, cmd),
        Command::Events(cmd) => events::run(&cx, cmd),
        Command::Alerts(cmd) => alerts::run(&cx, cmd),
        Command::ConnectionType(cmd) => connection_type::run(cmd),
        Command::Connection(cmd) => connection::run(&cx, cmd),
        Command::Integration(cmd) => integration::run(&cx, cmd),
        Command::Key(cmd) => key::run(&cx, cmd),
        Command::Config(cmd) => config::run(&cx, cmd),
        Command::Daemon(args) => daemon::run(&cx, args),
        Command::Token(cmd) => token::run(&cx, cmd),
    }
}

/// A tokio runtime for commands that do I/O.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}
