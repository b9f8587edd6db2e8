//! Sources and the one shared HTTP driver. A source yields entities,
//! relationships and step outcomes; it never touches the store.

pub mod circleci;
pub mod dag;
pub(crate) mod fanout;
pub mod github;
pub mod http;

use crate::config::IntegrationConfig;
use crate::connection::{ConnectionType, Secrets};
use crate::run::StepOutcome;
use dag::{Progress, RunState};

/// A connection as a run uses it: its type and resolved secrets.
#[derive(Debug, Clone)]
pub struct ResolvedConnection {
    pub name: String,
    pub ty: &'static ConnectionType,
    pub secrets: Secrets,
    /// Timeouts, rate limit and retry policy for this connection's client.
    pub http: http::HttpConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("integration {integration:?}: {message}")]
    Settings {
        integration: String,
        message: String,
    },
    #[error("connection {connection:?}: {message}")]
    Connection { connection: String, message: String },
}

/// Checks an integration's `settings` for a connection type, so config
/// problems surface at load rather than at the first run.
pub fn check_settings(connection_type: &str, settings: &serde_json::Value) -> Result<(), String> {
    match connection_type {
        "circleci" => circleci::Settings::parse(settings).map(|_| ()),
        "github" => github::Settings::parse(settings).map(|_| ()),
        _ => Ok(()),
    }
}

/// Every source Sextant knows. A closed enum: adding a source is adding a variant.
/// One value lives per run, so the size difference between variants is moot.
#[allow(clippy::large_enum_variant)]
pub enum SourceKind {
    CircleCi(circleci::CircleCi),
    GitHub(github::GitHub),
}

impl SourceKind {
    /// Builds the source an integration's connection type calls for.
    pub fn new(
        integration: &IntegrationConfig,
        connection: &ResolvedConnection,
    ) -> Result<Self, SourceError> {
        match connection.ty.name {
            "circleci" => {
                circleci::CircleCi::new(integration, connection).map(SourceKind::CircleCi)
            }
            "github" => github::GitHub::new(integration, connection).map(SourceKind::GitHub),
            other => Err(SourceError::Connection {
                connection: connection.name.clone(),
                message: format!("connection type {other:?} has no source yet"),
            }),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            SourceKind::CircleCi(_) => "circleci",
            SourceKind::GitHub(_) => "github",
        }
    }

    /// Runs every step of the source once into `state`.
    pub async fn collect(&self, state: &RunState, progress: Option<&Progress>) -> Vec<StepOutcome> {
        match self {
            SourceKind::CircleCi(source) => source.collect(state, progress).await,
            SourceKind::GitHub(source) => source.collect(state, progress).await,
        }
    }
}
