//! The CircleCI source (API v2): settings, the HTTP client for a connection,
//! and the step list. Wire types live in `api`, mappings in `map`, step bodies
//! in `steps`.

pub mod api;
pub mod map;
mod steps;

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde::Deserialize;

use super::dag::{self, Progress, RunState, Step};
use super::http::{HttpClient, HttpConfig, HttpSource, RequestStats};
use super::{ResolvedConnection, SourceError};
use crate::config::IntegrationConfig;
use crate::connection::Secrets;
use crate::run::StepOutcome;

pub const DEFAULT_HOST: &str = "https://circleci.com";

/// What the token needs, in words, for error messages.
pub const TOKEN_HELP: &str = "use a CircleCI personal API token (User Settings → Personal API Tokens) \
of a user who can see the organisations to sync, then run: sextant connection update NAME --secrets-file -";

/// `settings:` of a CircleCI integration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Only these organisations (slugs such as `gh/acme`); all the token sees when empty.
    pub org_slugs: Vec<String>,
    /// Pages of recent pipelines read per organisation (20 pipelines a page).
    pub max_pipeline_pages: usize,
    /// Requests a step may have in flight at once when fanning out.
    pub concurrency: usize,
}

impl Settings {
    /// Parses `settings:`; null means all defaults.
    pub fn parse(value: &serde_json::Value) -> Result<Settings, String> {
        super::parse_settings(
            value,
            "CircleCI settings are org_slugs, max_pipeline_pages and concurrency",
        )
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            org_slugs: Vec::new(),
            max_pipeline_pages: 5,
            concurrency: 4,
        }
    }
}

/// Data steps hand to later steps (wire objects the graph does not keep).
#[derive(Debug, Default)]
pub(crate) struct Shared {
    me: Option<api::Me>,
    orgs: Vec<api::Collaboration>,
    /// Pipelines by id, each with the slug of the organisation it was listed under.
    pipelines: BTreeMap<String, (String, api::Pipeline)>,
    /// Projects by slug, with their organisation's slug.
    projects: BTreeMap<String, (String, api::Project)>,
    workflows: BTreeMap<String, api::Workflow>,
    /// Contexts by id, with their organisation's slug.
    contexts: BTreeMap<String, (String, api::Context)>,
    /// Variable names by context id.
    context_vars: BTreeMap<String, Vec<String>>,
}

pub struct CircleCi {
    pub(crate) http: HttpClient,
    pub(crate) settings: Settings,
    pub(crate) map: map::MapContext,
    shared: Mutex<Shared>,
}

/// The client of a connection's secrets (`api_token`, optional `host`).
pub fn client(
    connection: &str,
    secrets: &Secrets,
    config: HttpConfig,
) -> Result<HttpClient, String> {
    let host = secrets
        .plain("host")
        .unwrap_or(DEFAULT_HOST)
        .trim_end_matches('/');
    let token = secrets
        .secret("api_token")
        .ok_or_else(|| "api_token is missing; add it to the connection's secrets".to_owned())?;
    HttpClient::new(
        HttpSource::new(connection, host, "Circle-Token", token.expose())
            .token_help(TOKEN_HELP.replace("NAME", connection)),
        config,
    )
    .map_err(|e| e.to_string())
}

/// Tests a connection's secrets: `GET /api/v2/me` (CircleCI tells nothing
/// of a token's permissions), one retry at most.
pub async fn verify(connection: &str, secrets: &Secrets) -> Result<(), String> {
    let config = HttpConfig {
        max_retries: 1,
        ..HttpConfig::default()
    };
    client(connection, secrets, config)?
        .get_json::<serde_json::Value>("/api/v2/me", &[], &RequestStats::new())
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

impl CircleCi {
    pub fn new(
        integration: &IntegrationConfig,
        connection: &ResolvedConnection,
    ) -> Result<Self, SourceError> {
        let (settings, http) =
            super::settings_and_client(integration, connection, Settings::parse, client)?;
        let host = connection
            .secrets
            .plain("host")
            .unwrap_or(DEFAULT_HOST)
            .trim_end_matches('/');
        let tag = integration.account_name_tag();
        Ok(CircleCi {
            http,
            settings,
            map: map::MapContext::new(host, tag),
            shared: Mutex::new(Shared::default()),
        })
    }

    pub(crate) fn shared(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub async fn collect(&self, state: &RunState, progress: Option<&Progress>) -> Vec<StepOutcome> {
        let concurrency = self.settings.concurrency.max(1);
        dag::execute(STEPS, self, state, concurrency, progress).await
    }
}

/// The step DAG of CircleCI.
pub static STEPS: &[Step<CircleCi>] = &[
    Step {
        id: "fetch-account",
        produces: &[map::ACCOUNT, map::USER, "circleci_account_has_user"],
        depends_on: &[],
        run: steps::account,
    },
    Step {
        id: "fetch-organizations",
        produces: &[
            map::USER_GROUP,
            "circleci_account_has_user_group",
            "circleci_user_group_has_user",
        ],
        depends_on: &["fetch-account"],
        run: steps::organizations,
    },
    Step {
        id: "fetch-pipelines",
        produces: &[map::PIPELINE],
        depends_on: &["fetch-organizations"],
        run: steps::pipelines,
    },
    Step {
        id: "fetch-projects",
        produces: &[
            map::PROJECT,
            "circleci_user_group_has_project",
            "circleci_project_has_pipeline",
        ],
        depends_on: &["fetch-pipelines"],
        run: steps::projects,
    },
    Step {
        id: "fetch-project-env-vars",
        produces: &[
            map::PROJECT_ENV_VAR,
            "circleci_project_has_project_environment_variable",
        ],
        depends_on: &["fetch-projects"],
        run: steps::project_env_vars,
    },
    Step {
        id: "fetch-workflows",
        produces: &[map::WORKFLOW, "circleci_pipeline_has_workflow"],
        depends_on: &["fetch-pipelines"],
        run: steps::workflows,
    },
    Step {
        id: "fetch-jobs",
        produces: &[map::JOB, "circleci_workflow_has_job"],
        depends_on: &["fetch-workflows"],
        run: steps::jobs,
    },
    Step {
        id: "fetch-users",
        produces: &[
            map::USER,
            "circleci_account_has_user",
            "circleci_user_group_has_user",
        ],
        depends_on: &["fetch-workflows", "fetch-organizations"],
        run: steps::users,
    },
    Step {
        id: "fetch-contexts",
        produces: &[map::CONTEXT, "circleci_user_group_has_context"],
        depends_on: &["fetch-organizations"],
        run: steps::contexts,
    },
    Step {
        id: "fetch-context-env-vars",
        produces: &[
            map::CONTEXT_ENV_VAR,
            "circleci_context_has_context_environment_variable",
        ],
        depends_on: &["fetch-contexts"],
        run: steps::context_env_vars,
    },
    Step {
        id: "build-project-context-usage",
        produces: &["circleci_project_uses_context_environment_variable"],
        depends_on: &["fetch-projects", "fetch-context-env-vars"],
        run: steps::project_context_usage,
    },
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Schema;

    #[test]
    fn steps_form_a_dag_and_cover_the_schema() {
        let schema = Schema::embedded().expect("schema");
        dag::check_steps(STEPS, &schema).expect("valid step declarations");
        assert_eq!(
            dag::unproduced_types(STEPS, &schema, "circleci"),
            Vec::<String>::new(),
            "no step produces these"
        );
    }
}
