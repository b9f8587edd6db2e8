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

/// An integration's `settings` as `S` (null: the defaults); `fields` names
/// what the source accepts, for the message. Each source's
/// `Settings::parse` adds its own checks on top.
pub(crate) fn parse_settings<S: serde::de::DeserializeOwned + Default>(
    value: &serde_json::Value,
    fields: &str,
) -> Result<S, String> {
    if value.is_null() {
        return Ok(S::default());
    }
    S::deserialize(value).map_err(|e| format!("{e}; {fields}"))
}

/// What every source starts from: its settings and the connection's HTTP
/// client (`client`, the source's own), failures naming the integration or
/// the connection.
pub(crate) fn settings_and_client<S>(
    integration: &IntegrationConfig,
    connection: &ResolvedConnection,
    parse: impl FnOnce(&serde_json::Value) -> Result<S, String>,
    client: impl FnOnce(&str, &Secrets, http::HttpConfig) -> Result<http::HttpClient, String>,
) -> Result<(S, http::HttpClient), SourceError> {
    let settings = parse(&integration.settings).map_err(|message| SourceError::Settings {
        integration: integration.name.clone(),
        message: format!("settings: {message}"),
    })?;
    let http = client(
        &connection.name,
        &connection.secrets,
        connection.http.clone(),
    )
    .map_err(|message| SourceError::Connection {
        connection: connection.name.clone(),
        message,
    })?;
    Ok((settings, http))
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn settings_are_checked_per_source_with_the_fields_named() {
        assert_eq!(check_settings("circleci", &serde_json::Value::Null), Ok(()));
        assert_eq!(
            check_settings("circleci", &json!({"org_slug": ["gh/acme"]})),
            Err("unknown field `org_slug`, expected one of `org_slugs`, `max_pipeline_pages`, `concurrency`; CircleCI settings are org_slugs, max_pipeline_pages and concurrency".to_owned())
        );
        assert_eq!(
            check_settings("circleci", &json!({"concurrency": "four"})),
            Err("invalid type: string \"four\", expected usize; CircleCI settings are org_slugs, max_pipeline_pages and concurrency".to_owned())
        );
        let parsed = circleci::Settings::parse(&json!({"max_pipeline_pages": 2})).expect("ok");
        assert_eq!((parsed.max_pipeline_pages, parsed.concurrency), (2, 4));
        assert_eq!(
            check_settings("github", &json!({"orgs": ["a"]})),
            Err("unknown field `orgs`, expected `organizations` or `concurrency`; GitHub settings are organizations and concurrency".to_owned())
        );
    }
}
