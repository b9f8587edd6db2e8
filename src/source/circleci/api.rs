//! CircleCI API v2 wire types: serde structs for the JSON the source reads, nothing else.
//!
//! Decoding is tolerant on purpose, because live responses stray from the
//! OpenAPI spec (shared/reference/circleci-openapi.json): unknown fields are
//! ignored, enum-like values (`state`, `status`, `type`, …) stay `String`s so
//! a value the spec never listed is kept rather than fatal, and every field
//! except an object's own key is optional. A `null` list decodes as empty.
//! Timestamps stay RFC 3339 strings here; mapping parses them.
//!
//! The types derive `Deserialize` only: they are read from the API, never
//! written back, and the graph model does not reuse them.

use std::fmt;

use serde::{Deserialize, Deserializer};

/// Decodes `null` (as well as a missing field, with `#[serde(default)]`) as the
/// type's default: CircleCI sends `null` for some empty lists.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// Decodes any JSON value as text: for fields whose type the spec leaves open
/// (it gives a project env var's `created-at` no type, and a Clojure
/// `#joda/inst …` string as its example). Non-strings keep their JSON text.
fn lenient_string<'de, D>(deserializer: D) -> Result<Option<String>, D::Error>
where
    D: Deserializer<'de>,
{
    Ok(match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s),
        other => Some(other.to_string()),
    })
}

/// One page of a paginated list (`{items, next_page_token}`). The next page is
/// requested with the `page-token` query parameter, URL-encoded.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(bound(deserialize = "T: Deserialize<'de>"))]
pub struct Page<T> {
    #[serde(default, deserialize_with = "null_as_default")]
    pub items: Vec<T>,
    #[serde(default)]
    pub next_page_token: Option<String>,
}

impl<T> Page<T> {
    /// The token of the next page, if there is one. An empty token counts as
    /// none: following it would ask for the first page again.
    pub fn next_token(&self) -> Option<&str> {
        self.next_page_token.as_deref().filter(|t| !t.is_empty())
    }
}

/// The body of an error response (`{"message": "..."}`), for error messages.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ErrorBody {
    #[serde(default)]
    pub message: Option<String>,
}

/// A user: `GET /me` (the token's user) and `GET /user/{id}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct User {
    pub id: String,
    #[serde(default)]
    pub login: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

/// `GET /me` answers with a [`User`].
pub type Me = User;

/// An organisation the token's user collaborates in: `GET /me/collaborations`
/// (a bare JSON array, not paginated).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Collaboration {
    /// The organisation's UUID; the spec marks it nullable.
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default, rename = "vcs-type", alias = "vcs_type")]
    pub vcs_type: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub avatar_url: Option<String>,
    /// `vcs-slug/org-name`, e.g. `gh/acme`; the `org-slug` of `GET /pipeline`.
    pub slug: String,
}

/// A pipeline: `GET /pipeline?org-slug=` (paginated).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Pipeline {
    pub id: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub errors: Vec<PipelineError>,
    #[serde(default)]
    pub project_slug: Option<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
    #[serde(default)]
    pub number: Option<i64>,
    /// Spec: created, errored, setup-pending, setup, pending; others happen.
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub trigger: Option<Trigger>,
    #[serde(default)]
    pub vcs: Option<Vcs>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PipelineError {
    /// Spec: config, config-fetch, timeout, permission, other, trigger-rule, plan.
    #[serde(default)]
    pub r#type: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Trigger {
    /// Spec: scheduled_pipeline, explicit, api, webhook.
    #[serde(default)]
    pub r#type: Option<String>,
    #[serde(default)]
    pub received_at: Option<String>,
    #[serde(default)]
    pub actor: Option<Actor>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Actor {
    #[serde(default)]
    pub login: Option<String>,
    #[serde(default)]
    pub avatar_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Vcs {
    #[serde(default)]
    pub provider_name: Option<String>,
    #[serde(default)]
    pub origin_repository_url: Option<String>,
    #[serde(default)]
    pub target_repository_url: Option<String>,
    #[serde(default)]
    pub revision: Option<String>,
    /// Mutually exclusive with `tag`; may also be present and empty.
    #[serde(default)]
    pub branch: Option<String>,
    #[serde(default)]
    pub tag: Option<String>,
    #[serde(default)]
    pub commit: Option<Commit>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Commit {
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub body: Option<String>,
}

/// A project: `GET /project/{project-slug}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Project {
    pub slug: String,
    #[serde(default)]
    pub name: Option<String>,
    pub id: String,
    #[serde(default)]
    pub organization_name: Option<String>,
    #[serde(default)]
    pub organization_slug: Option<String>,
    #[serde(default)]
    pub organization_id: Option<String>,
    #[serde(default)]
    pub vcs_info: Option<VcsInfo>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct VcsInfo {
    #[serde(default)]
    pub vcs_url: Option<String>,
    /// Spec: Bitbucket, CircleCI, GitHub.
    #[serde(default)]
    pub provider: Option<String>,
    /// May be empty.
    #[serde(default)]
    pub default_branch: Option<String>,
}

/// A project environment variable: `GET /project/{project-slug}/envvar`
/// (paginated). The API masks `value` (`xxxx1a2b`); Sextant never stores it,
/// and `Debug` does not print it.
#[derive(Clone, PartialEq, Deserialize)]
pub struct ProjectEnvVar {
    pub name: String,
    #[serde(default)]
    pub value: Option<String>,
    /// The spec spells it `created-at`; both spellings are read.
    #[serde(
        default,
        rename = "created_at",
        alias = "created-at",
        deserialize_with = "lenient_string"
    )]
    pub created_at: Option<String>,
}

impl fmt::Debug for ProjectEnvVar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProjectEnvVar")
            .field("name", &self.name)
            .field("value", &"<redacted>")
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// A workflow: `GET /pipeline/{id}/workflow` (paginated).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Workflow {
    #[serde(default)]
    pub pipeline_id: Option<String>,
    #[serde(default)]
    pub canceled_by: Option<String>,
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub project_slug: Option<String>,
    #[serde(default)]
    pub errored_by: Option<String>,
    /// Spec: `setup` or null.
    #[serde(default)]
    pub tag: Option<String>,
    /// Spec: success, running, not_run, failed, error, failing, on_hold,
    /// canceled, unauthorized; others happen.
    #[serde(default)]
    pub status: Option<String>,
    /// The id of the user who started it (`GET /user/{id}`).
    #[serde(default)]
    pub started_by: Option<String>,
    #[serde(default)]
    pub pipeline_number: Option<i64>,
    #[serde(default)]
    pub created_at: Option<String>,
    /// Null while the workflow runs or waits.
    #[serde(default)]
    pub stopped_at: Option<String>,
}

/// A job of a workflow: `GET /workflow/{id}/job` (paginated).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Job {
    #[serde(default)]
    pub canceled_by: Option<String>,
    /// Ids of the jobs this one depends on.
    #[serde(default, deserialize_with = "null_as_default")]
    pub dependencies: Vec<String>,
    /// Absent for approval jobs and jobs that have not started.
    #[serde(default)]
    pub job_number: Option<i64>,
    pub id: String,
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub approved_by: Option<String>,
    #[serde(default)]
    pub project_slug: Option<String>,
    /// Spec: success, running, not_run, failed, retried, queued, not_running,
    /// infrastructure_fail, timedout, on_hold, terminated-unknown, blocked,
    /// canceled, unauthorized; others happen.
    #[serde(default)]
    pub status: Option<String>,
    /// Spec: build, approval.
    #[serde(default)]
    pub r#type: Option<String>,
    #[serde(default)]
    pub stopped_at: Option<String>,
    /// Set on approval jobs.
    #[serde(default)]
    pub approval_request_id: Option<String>,
}

/// A context: `GET /context?owner-id=` (paginated).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Context {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
}

/// A context's environment variable (its name only; the API never returns
/// values): `GET /context/{id}/environment-variable` (paginated).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ContextEnvVar {
    pub variable: String,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
    #[serde(default)]
    pub context_id: Option<String>,
}

/// A pipeline's configuration: `GET /pipeline/{id}/config`. `compiled` is the
/// YAML after orb expansion (empty when the config did not compile).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PipelineConfig {
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub compiled: Option<String>,
    /// Present only for setup workflows; the spec spells it `setup-config`.
    #[serde(default, rename = "setup-config", alias = "setup_config")]
    pub setup_config: Option<String>,
    #[serde(
        default,
        rename = "compiled-setup-config",
        alias = "compiled_setup_config"
    )]
    pub compiled_setup_config: Option<String>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    macro_rules! fixture {
        ($day:literal, $file:literal) => {
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/fixtures/circleci/",
                $day,
                "/",
                $file
            ))
        };
    }

    fn decode<T: for<'de> Deserialize<'de>>(json: &str) -> T {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn me_and_users() {
        let me: Me = decode(fixture!("day1", "me.json"));
        assert_eq!(me.login.as_deref(), Some("ada"));
        assert_eq!(me.name.as_deref(), Some("Ada Lovelace"));
        let chloe: User = decode(fixture!("day1", "user-chloe.json"));
        assert_eq!(chloe.name.as_deref(), Some("Chloé Dubois"));
        let ada: User = decode(fixture!("day1", "user-ada.json"));
        assert_eq!(ada, me);
    }

    #[test]
    fn collaborations() {
        let orgs: Vec<Collaboration> = decode(fixture!("day1", "collaborations.json"));
        assert_eq!(orgs.len(), 2);
        assert_eq!(orgs[0].slug, "gh/acme");
        assert_eq!(orgs[0].vcs_type.as_deref(), Some("github"));
        assert_eq!(orgs[1].slug, "bb/zürich-labs");
        assert_eq!(orgs[1].name.as_deref(), Some("Zürich Labs"));
        assert_eq!(orgs[1].vcs_type.as_deref(), Some("bitbucket"));
        assert!(orgs[1].id.is_some());
    }

    #[test]
    fn pipelines() {
        let page: Page<Pipeline> = decode(fixture!("day1", "pipelines-acme-1.json"));
        assert_eq!(page.items.len(), 4);
        assert!(page.next_token().is_some_and(|t| t.contains('+')));

        let latest = &page.items[0];
        assert_eq!(latest.number, Some(142));
        assert_eq!(latest.project_slug.as_deref(), Some("gh/acme/api"));
        let vcs = latest.vcs.as_ref().unwrap();
        assert_eq!(vcs.tag, None, "an explicit null tag");
        assert_eq!(vcs.branch.as_deref(), Some("main"));
        let trigger = latest.trigger.as_ref().unwrap();
        assert_eq!(trigger.r#type.as_deref(), Some("webhook"));
        assert_eq!(
            trigger.actor.as_ref().unwrap().login.as_deref(),
            Some("ada")
        );

        let errored = &page.items[1];
        assert_eq!(errored.state.as_deref(), Some("errored"));
        assert_eq!(errored.errors.len(), 1);
        assert_eq!(errored.errors[0].r#type.as_deref(), Some("config"));

        let tagged = page.items[2].vcs.as_ref().unwrap();
        assert_eq!(tagged.branch.as_deref(), Some(""));
        assert_eq!(tagged.tag.as_deref(), Some("v2.3.0"));
        assert_eq!(tagged.commit.as_ref().unwrap().body, None);

        let scheduled = &page.items[3];
        assert_eq!(scheduled.state.as_deref(), Some("quarantined"));
        assert!(scheduled.vcs.as_ref().unwrap().commit.is_none());
        let actor = scheduled.trigger.as_ref().unwrap().actor.as_ref().unwrap();
        assert_eq!(actor.avatar_url, None);

        let last: Page<Pipeline> = decode(fixture!("day1", "pipelines-acme-2.json"));
        assert_eq!(last.next_token(), None);
        assert_eq!(last.items[0], page.items[3], "the same item on two pages");
        assert_eq!(last.items[1].state.as_deref(), Some("setup-pending"));
    }

    #[test]
    fn projects() {
        let api: Project = decode(fixture!("day1", "project-api.json"));
        assert_eq!(api.slug, "gh/acme/api");
        assert_eq!(api.organization_slug.as_deref(), Some("gh/acme"));
        let data: Project = decode(fixture!("day1", "project-donnees.json"));
        assert_eq!(data.name.as_deref(), Some("données"));
        let vcs = data.vcs_info.unwrap();
        assert_eq!(vcs.provider.as_deref(), Some("Bitbucket"));
        assert_eq!(vcs.default_branch.as_deref(), Some(""));
    }

    #[test]
    fn project_env_vars() {
        let api: Page<ProjectEnvVar> = decode(fixture!("day1", "envvars-api.json"));
        let names: Vec<_> = api.items.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["NPM_TOKEN", "SENTRY_DSN"]);
        assert_eq!(api.items[0].created_at, None);
        let debug = format!("{:?}", api.items[1]);
        assert!(!debug.contains("xxxx1a2b"), "{debug}");

        let web: Page<ProjectEnvVar> = decode(fixture!("day1", "envvars-web-1.json"));
        assert_eq!(
            web.items[0].created_at.as_deref(),
            Some("2024-11-02T08:15:00.000Z"),
            "the spec's `created-at` spelling"
        );
        assert!(web.next_token().is_some());
        let empty: Page<ProjectEnvVar> = decode(fixture!("day1", "envvars-donnees.json"));
        assert!(empty.items.is_empty());
        assert_eq!(empty.next_token(), None);
    }

    #[test]
    fn workflows() {
        let page: Page<Workflow> = decode(fixture!("day1", "workflows-api-142-1.json"));
        let w = &page.items[0];
        assert_eq!(w.status.as_deref(), Some("running"));
        assert_eq!(w.stopped_at, None);
        assert_eq!(w.pipeline_number, Some(142));
        assert!(page.next_token().is_some());

        let setup: Page<Workflow> = decode(fixture!("day1", "workflows-web-56.json"));
        assert_eq!(setup.items[0].tag.as_deref(), Some("setup"));
        assert_eq!(setup.items[0].status.as_deref(), Some("awaiting_capacity"));
        let none: Page<Workflow> = decode(fixture!("day1", "workflows-api-141.json"));
        assert!(none.items.is_empty());
    }

    #[test]
    fn jobs() {
        let page: Page<Job> = decode(fixture!("day1", "jobs-donnees-12-etl.json"));
        let [extract, approve, load] = &page.items[..] else {
            panic!("three jobs expected");
        };
        assert_eq!(extract.job_number, Some(41));
        assert_eq!(approve.r#type.as_deref(), Some("approval"));
        assert_eq!(approve.job_number, None);
        assert!(approve.approval_request_id.is_some());
        assert_eq!(approve.dependencies, std::slice::from_ref(&extract.id));
        assert_eq!(load.status.as_deref(), Some("blocked"));
        assert_eq!(load.started_at, None);
    }

    #[test]
    fn contexts_and_their_vars() {
        let page: Page<Context> = decode(fixture!("day1", "contexts-acme-1.json"));
        assert_eq!(page.items[0].name.as_deref(), Some("production"));
        assert!(page.next_token().is_some());
        let vars: Page<ContextEnvVar> = decode(fixture!("day1", "context-vars-production.json"));
        let names: Vec<_> = vars.items.iter().map(|v| v.variable.as_str()).collect();
        assert_eq!(names, ["AWS_ACCESS_KEY_ID", "DEPLOY_TOKEN"]);
        assert_eq!(
            vars.items[0].context_id.as_deref(),
            Some(page.items[0].id.as_str())
        );
    }

    #[test]
    fn pipeline_configs() {
        let api: PipelineConfig = decode(fixture!("day1", "config-api-142.json"));
        assert!(api.compiled.unwrap().contains("context: production"));
        assert_eq!(api.setup_config, None);
        let setup: PipelineConfig = decode(fixture!("day1", "config-web-56.json"));
        assert!(setup.setup_config.unwrap().contains("setup: true"));
        assert!(setup.compiled_setup_config.is_some());
        let errored: PipelineConfig = decode(fixture!("day1", "config-api-141.json"));
        assert_eq!(errored.compiled.as_deref(), Some(""));
    }

    #[test]
    fn unknown_fields_unknown_values_and_missing_blocks() {
        let page: Page<Pipeline> = decode(
            r#"{"items": [
                {"id": "p1", "state": "teleported", "brand_new_field": {"x": [1, 2]},
                 "trigger": {"type": "carrier_pigeon", "actor": {"login": "z"}, "extra": 1},
                 "vcs": {"branch": "main", "commit": null}},
                {"id": "p2", "errors": null},
                {"id": "p3", "errors": [{"type": "gremlins"}], "number": 7}
            ], "next_page_token": "", "unexpected": true}"#,
        );
        assert_eq!(page.items.len(), 3);
        assert_eq!(page.next_token(), None, "an empty token ends the listing");
        let [p1, p2, p3] = &page.items[..] else {
            panic!("three pipelines expected");
        };
        assert_eq!(p1.state.as_deref(), Some("teleported"));
        let trigger = p1.trigger.as_ref().unwrap();
        assert_eq!(trigger.r#type.as_deref(), Some("carrier_pigeon"));
        assert_eq!(trigger.received_at, None);
        assert_eq!(trigger.actor.as_ref().unwrap().avatar_url, None);
        let vcs = p1.vcs.as_ref().unwrap();
        assert_eq!((vcs.revision.as_ref(), vcs.commit.as_ref()), (None, None));
        assert!(p2.errors.is_empty() && p2.trigger.is_none() && p2.vcs.is_none());
        assert_eq!(p2.number, None);
        assert_eq!(p3.errors[0].r#type.as_deref(), Some("gremlins"));
        assert_eq!(p3.errors[0].message, None);

        let jobs: Page<Job> = decode(
            r#"{"items": [{"id": "j", "dependencies": null, "status": "levitating",
                           "type": "quantum", "requires": {}}]}"#,
        );
        assert_eq!(jobs.next_page_token, None, "a missing token");
        assert!(jobs.items[0].dependencies.is_empty());
        assert_eq!(jobs.items[0].status.as_deref(), Some("levitating"));
        assert_eq!(jobs.items[0].r#type.as_deref(), Some("quantum"));

        let wf: Workflow = decode(r#"{"id": "w", "status": "pondering"}"#);
        assert_eq!(wf.status.as_deref(), Some("pondering"));
        assert_eq!(wf.started_by, None);

        let project: Project = decode(r#"{"slug": "gh/a/b", "id": "i", "vcs_info": null}"#);
        assert_eq!(project.vcs_info, None);
        let project: Project =
            decode(r#"{"slug": "gh/a/b", "id": "i", "vcs_info": {"provider": "Gitea"}}"#);
        assert_eq!(project.vcs_info.unwrap().provider.as_deref(), Some("Gitea"));

        let org: Collaboration = decode(r#"{"id": null, "vcs_type": "gitlab", "slug": "gl/x"}"#);
        assert_eq!(org.vcs_type.as_deref(), Some("gitlab"));
        assert_eq!(org.id, None);

        let var: ProjectEnvVar = decode(r#"{"name": "A", "created-at": 1700000000}"#);
        assert_eq!(var.created_at.as_deref(), Some("1700000000"));
        assert_eq!(var.value, None);

        let config: PipelineConfig = decode(r#"{"source": "version: 2.1"}"#);
        assert_eq!(config.compiled, None);
        let config: PipelineConfig = decode(r#"{"setup_config": "s", "compiled": "c"}"#);
        assert_eq!(config.setup_config.as_deref(), Some("s"));
    }

    /// Every bundled response decodes as the type its route returns.
    #[test]
    fn every_fixture_decodes() {
        fn check<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<(), String> {
            serde_json::from_slice::<T>(bytes)
                .map(drop)
                .map_err(|e| e.to_string())
        }
        for set in crate::fixtures::FixtureSet::CIRCLECI {
            for route in set.routes().unwrap() {
                let body = set.file(&route.file).unwrap();
                let path = route.get.split('?').next().unwrap();
                let decoded = match path {
                    "/api/v2/me" => check::<Me>(body),
                    "/api/v2/me/collaborations" => check::<Vec<Collaboration>>(body),
                    "/api/v2/pipeline" => check::<Page<Pipeline>>(body),
                    "/api/v2/context" => check::<Page<Context>>(body),
                    p if p.starts_with("/api/v2/user/") => check::<User>(body),
                    p if p.ends_with("/workflow") => check::<Page<Workflow>>(body),
                    p if p.ends_with("/config") => check::<PipelineConfig>(body),
                    p if p.starts_with("/api/v2/workflow/") => check::<Page<Job>>(body),
                    p if p.ends_with("/environment-variable") => check::<Page<ContextEnvVar>>(body),
                    p if p.ends_with("/envvar") => check::<Page<ProjectEnvVar>>(body),
                    p if p.starts_with("/api/v2/project/") => check::<Project>(body),
                    other => Err(format!("no wire type for {other}")),
                };
                assert_eq!(decoded, Ok(()), "{set}: {}", route.get);
            }
        }
    }

    #[test]
    fn a_missing_key_is_an_error() {
        assert!(serde_json::from_str::<Pipeline>(r#"{"number": 1}"#).is_err());
        assert!(serde_json::from_str::<ContextEnvVar>(r#"{"context_id": "c"}"#).is_err());
    }
}
