//! The GitHub source (REST API 2022-11-28, github.com or Enterprise
//! Server): settings, the HTTP client for a connection, token verification
//! and the step list. Wire types live in `api`, mappings in `map`, step
//! bodies in `steps`.
//!
//! What differs from CircleCI is declared to the shared HTTP layer, not
//! written here: `Authorization: Bearer`, GitHub's media type and API
//! version headers, `Link` pagination, `x-ratelimit-*` windows to wait for,
//! 403 as a possible (secondary) rate limit, and conditional requests.

pub mod api;
pub mod map;
mod steps;
pub mod verify;

use std::sync::{Mutex, MutexGuard, PoisonError};

use serde::Deserialize;

use super::dag::{self, Progress, RunState, Step};
use super::http::{HttpClient, HttpConfig, HttpSource, Pagination, RateLimitHeaders};
use super::{ResolvedConnection, SourceError};
use crate::config::IntegrationConfig;
use crate::connection::Secrets;
use crate::run::StepOutcome;

pub const DEFAULT_API_URL: &str = "https://api.github.com";

/// What the token needs, in words, for error messages.
pub const TOKEN_HELP: &str = "use a classic personal access token with the repo, read:org and read:user scopes, \
or a fine-grained token with read-only Metadata, Contents and Pull requests permissions on the repositories \
and Members and Administration on the organisation (authorised for SAML SSO where the organisation enforces it), \
then run: sextant connection update NAME --secrets-file -";

/// `settings:` of a GitHub integration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Only these organisations (logins such as `acme-corp`); every
    /// organisation the token can see (`GET /user/orgs`) when empty.
    pub organizations: Vec<String>,
    /// Requests a step may have in flight at once when fanning out.
    pub concurrency: usize,
}

impl Settings {
    /// Parses `settings:`; null means all defaults.
    pub fn parse(value: &serde_json::Value) -> Result<Settings, String> {
        let settings: Settings =
            super::parse_settings(value, "GitHub settings are organizations and concurrency")?;
        for (i, org) in settings.organizations.iter().enumerate() {
            if org.trim().is_empty() || org.contains('/') {
                return Err(format!(
                    "organizations[{i}]: {org:?} is not an organisation login; write the login as in https://github.com/<login>, e.g. acme-corp"
                ));
            }
        }
        Ok(settings)
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            organizations: Vec::new(),
            concurrency: 4,
        }
    }
}

/// The shared HTTP layer's declaration for a GitHub API at `api_url`.
pub fn http_source(connection: &str, api_url: &str, token: &str) -> HttpSource {
    HttpSource::new(
        connection,
        api_url.trim_end_matches('/'),
        "Authorization",
        format!("Bearer {token}"),
    )
    .token_help(TOKEN_HELP.replace("NAME", connection))
    .header("Accept", "application/vnd.github+json")
    .header("X-GitHub-Api-Version", "2022-11-28")
    .pagination(Pagination::LinkHeader)
    .rate_limit_headers(RateLimitHeaders::WaitForReset {
        remaining: "x-ratelimit-remaining",
        reset: "x-ratelimit-reset",
        low_water: 0,
    })
    .forbidden_may_throttle(true)
    .conditional_requests(true)
}

/// The client of a connection's secrets (`token`, optional `api_url`).
pub fn client(
    connection: &str,
    secrets: &Secrets,
    config: HttpConfig,
) -> Result<HttpClient, String> {
    let api_url = secrets.plain("api_url").unwrap_or(DEFAULT_API_URL);
    let token = secrets
        .secret("token")
        .ok_or_else(|| "token is missing; add it to the connection's secrets".to_owned())?;
    HttpClient::new(http_source(connection, api_url, token.expose()), config)
        .map_err(|e| e.to_string())
}

/// Data steps hand to later steps.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    orgs: Vec<api::Organization>,
    /// Teams with the organisation they belong to (by login).
    teams: Vec<(String, api::Team)>,
}

pub struct GitHub {
    pub(crate) http: HttpClient,
    pub(crate) settings: Settings,
    pub(crate) map: map::MapContext,
    shared: Mutex<Shared>,
}

impl GitHub {
    pub fn new(
        integration: &IntegrationConfig,
        connection: &ResolvedConnection,
    ) -> Result<Self, SourceError> {
        let (settings, http) =
            super::settings_and_client(integration, connection, Settings::parse, client)?;
        let account_name_tag = integration.account_name_tag();
        Ok(GitHub {
            http,
            settings,
            map: map::MapContext { account_name_tag },
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

/// The step DAG of GitHub.
pub static STEPS: &[Step<GitHub>] = &[
    Step {
        id: "fetch-organizations",
        produces: &[map::ACCOUNT],
        depends_on: &[],
        run: steps::organizations,
    },
    Step {
        id: "fetch-members",
        produces: &[map::USER, map::ACCOUNT_HAS_USER],
        depends_on: &["fetch-organizations"],
        run: steps::members,
    },
    Step {
        id: "fetch-teams",
        produces: &[map::TEAM, map::ACCOUNT_HAS_TEAM],
        depends_on: &["fetch-organizations"],
        run: steps::teams,
    },
    Step {
        id: "fetch-team-members",
        produces: &[map::TEAM_HAS_USER],
        depends_on: &["fetch-teams", "fetch-members"],
        run: steps::team_members,
    },
    Step {
        id: "fetch-repos",
        produces: &[map::REPO, map::ACCOUNT_OWNS_REPO],
        depends_on: &["fetch-organizations"],
        run: steps::repos,
    },
    Step {
        id: "fetch-team-repos",
        produces: &[map::TEAM_ALLOWS_REPO],
        depends_on: &["fetch-teams", "fetch-repos"],
        run: steps::team_repos,
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
            dag::unproduced_types(STEPS, &schema, "github"),
            Vec::<String>::new(),
            "no step produces these"
        );
    }

    #[test]
    fn settings_name_what_is_wrong() {
        let err = Settings::parse(&serde_json::json!({"orgs": ["a"]})).expect_err("unknown field");
        assert!(
            err.contains("orgs") && err.contains("organizations"),
            "{err}"
        );
        let err = Settings::parse(&serde_json::json!({"organizations": ["gh/acme"]}))
            .expect_err("slug, not login");
        assert!(
            err.contains("organizations[0]") && err.contains("login"),
            "{err}"
        );
        let ok = Settings::parse(&serde_json::json!({"organizations": ["acme-corp"]})).expect("ok");
        assert_eq!(ok.organizations, ["acme-corp"]);
        assert_eq!(ok.concurrency, 4);
    }
}
