//! CircleCI wire types → graph entities. Pure functions; keys are
//! deterministic and scoped (environment variables by project or context).

use std::collections::BTreeSet;

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::api;
use crate::graph::Entity;

pub const ACCOUNT: &str = "circleci_account";
pub const USER: &str = "circleci_user";
pub const USER_GROUP: &str = "circleci_user_group";
pub const PROJECT: &str = "circleci_project";
pub const PIPELINE: &str = "circleci_pipeline";
pub const WORKFLOW: &str = "circleci_workflow";
pub const JOB: &str = "circleci_job";
pub const CONTEXT: &str = "circleci_context";
pub const CONTEXT_ENV_VAR: &str = "circleci_context_environment_variable";
pub const PROJECT_ENV_VAR: &str = "circleci_project_environment_variable";

/// What every mapping needs besides the wire object.
#[derive(Debug, Clone)]
pub struct MapContext {
    /// Set when the integration asks to tag entities with its account name.
    pub account_name_tag: Option<String>,
    /// The web UI's base URL, for `webLink`s.
    pub app_url: String,
    /// The API host, recorded on the account.
    pub host: String,
}

impl MapContext {
    /// circleci.com's UI lives on app.circleci.com; a server install serves
    /// its UI from its own host.
    pub fn new(host: &str, account_name_tag: Option<String>) -> Self {
        let host = host.trim_end_matches('/').to_owned();
        let app_url = if host == "https://circleci.com" {
            "https://app.circleci.com".to_owned()
        } else {
            host.clone()
        };
        MapContext {
            account_name_tag,
            app_url,
            host,
        }
    }

    fn entity(&self, key: String, ty: &str, class: &str, name: &str) -> Entity {
        let mut e = Entity::new(key, ty, class);
        e.set("name", name).set("displayName", name);
        if let Some(account) = &self.account_name_tag {
            e.set("tag.AccountName", account.as_str());
        }
        e
    }
}

pub fn account_key(id: &str) -> String {
    format!("{ACCOUNT}:{id}")
}
pub fn user_key(id: &str) -> String {
    format!("{USER}:{id}")
}
pub fn user_group_key(id: &str) -> String {
    format!("{USER_GROUP}:{id}")
}
pub fn project_key(id: &str) -> String {
    format!("{PROJECT}:{id}")
}
pub fn pipeline_key(id: &str) -> String {
    format!("{PIPELINE}:{id}")
}
pub fn workflow_key(id: &str) -> String {
    format!("{WORKFLOW}:{id}")
}
pub fn job_key(id: &str) -> String {
    format!("{JOB}:{id}")
}
pub fn context_key(id: &str) -> String {
    format!("{CONTEXT}:{id}")
}
/// Scoped by context: the same variable name in two contexts never collides.
pub fn context_env_var_key(context_id: &str, variable: &str) -> String {
    format!("{CONTEXT_ENV_VAR}:{context_id}:{variable}")
}
/// Scoped by project: the same variable name in two projects never collides.
pub fn project_env_var_key(project_id: &str, name: &str) -> String {
    format!("{PROJECT_ENV_VAR}:{project_id}:{name}")
}

/// RFC 3339 → milliseconds since the epoch; unparseable or absent → null.
pub fn millis(text: Option<&str>) -> Value {
    text.filter(|t| !t.is_empty())
        .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
        .map(|t| {
            let ms = t.unix_timestamp_nanos() / 1_000_000;
            Value::from(i64::try_from(ms).unwrap_or(i64::MAX))
        })
        .unwrap_or(Value::Null)
}

/// A non-empty string or null.
fn text(value: Option<&str>) -> Value {
    match value {
        Some(v) if !v.is_empty() => Value::from(v),
        _ => Value::Null,
    }
}

fn first_non_empty<'a>(candidates: &[Option<&'a str>], fallback: &'a str) -> &'a str {
    candidates
        .iter()
        .flatten()
        .find(|s| !s.trim().is_empty())
        .copied()
        .unwrap_or(fallback)
}

pub fn account(me: &api::Me, cx: &MapContext) -> Entity {
    let name = cx
        .account_name_tag
        .as_deref()
        .unwrap_or_else(|| first_non_empty(&[me.name.as_deref(), me.login.as_deref()], &me.id));
    let mut e = cx.entity(account_key(&me.id), ACCOUNT, "Account", name);
    e.set("id", me.id.as_str())
        .set("username", text(me.login.as_deref()))
        .set("host", cx.host.as_str())
        .set("webLink", cx.app_url.as_str())
        .set("accessURL", cx.app_url.as_str());
    e
}

pub fn user(user: &api::Me, cx: &MapContext) -> Entity {
    let login = first_non_empty(&[user.login.as_deref()], &user.id);
    let name = first_non_empty(&[user.name.as_deref(), user.login.as_deref()], &user.id);
    let mut e = cx.entity(user_key(&user.id), USER, "User", name);
    e.set("id", user.id.as_str())
        .set("username", login)
        .set("active", true);
    e
}

/// An organisation's id; the slug stands in when the API leaves the id out.
pub fn org_id(org: &api::Collaboration) -> &str {
    org.id
        .as_deref()
        .filter(|id| !id.is_empty())
        .unwrap_or(&org.slug)
}

pub fn user_group(org: &api::Collaboration, cx: &MapContext) -> Entity {
    let id = org_id(org);
    let name = first_non_empty(&[org.name.as_deref(), Some(org.slug.as_str())], id);
    let mut e = cx.entity(user_group_key(id), USER_GROUP, "Group", name);
    e.set("id", id)
        .set("slug", org.slug.as_str())
        .set("vcsType", text(org.vcs_type.as_deref()))
        .set("avatarUrl", text(org.avatar_url.as_deref()));
    e
}

pub fn project(p: &api::Project, cx: &MapContext) -> Entity {
    let name = first_non_empty(&[p.name.as_deref()], &p.slug);
    let mut e = cx.entity(project_key(&p.id), PROJECT, "Repository", name);
    let vcs = p.vcs_info.as_ref();
    e.set("id", p.id.as_str())
        .set("slug", p.slug.as_str())
        .set("organizationName", text(p.organization_name.as_deref()))
        .set("organizationSlug", text(p.organization_slug.as_deref()))
        .set("organizationId", text(p.organization_id.as_deref()))
        .set("vcsUrl", text(vcs.and_then(|v| v.vcs_url.as_deref())))
        .set("vcsProvider", text(vcs.and_then(|v| v.provider.as_deref())))
        .set(
            "defaultBranch",
            text(vcs.and_then(|v| v.default_branch.as_deref())),
        )
        .set("webLink", format!("{}/pipelines/{}", cx.app_url, p.slug));
    e
}

pub fn pipeline(p: &api::Pipeline, cx: &MapContext) -> Entity {
    let slug = p.project_slug.as_deref().unwrap_or_default();
    let name = match p.number {
        Some(n) => format!("{slug} #{n}"),
        None => format!("{slug} {}", p.id),
    };
    let mut e = cx.entity(pipeline_key(&p.id), PIPELINE, "Configuration", &name);
    let vcs = p.vcs.as_ref();
    let trigger = p.trigger.as_ref();
    e.set("id", p.id.as_str())
        .set("number", p.number.map(Value::from).unwrap_or(Value::Null))
        .set("state", p.state.as_deref().unwrap_or("unknown"))
        .set("projectSlug", text(p.project_slug.as_deref()))
        .set(
            "triggerType",
            text(trigger.and_then(|t| t.r#type.as_deref())),
        )
        .set(
            "triggeredBy",
            text(
                trigger
                    .and_then(|t| t.actor.as_ref())
                    .and_then(|a| a.login.as_deref()),
            ),
        )
        .set("branch", text(vcs.and_then(|v| v.branch.as_deref())))
        .set("tag", text(vcs.and_then(|v| v.tag.as_deref())))
        .set("revision", text(vcs.and_then(|v| v.revision.as_deref())))
        .set("errorCount", p.errors.len())
        .set("createdOn", millis(p.created_at.as_deref()))
        .set("updatedOn", millis(p.updated_at.as_deref()));
    if let Some(n) = p.number {
        e.set("webLink", format!("{}/pipelines/{slug}/{n}", cx.app_url));
    }
    e
}

pub fn workflow(w: &api::Workflow, cx: &MapContext) -> Entity {
    let name = first_non_empty(&[w.name.as_deref()], &w.id);
    let mut e = cx.entity(workflow_key(&w.id), WORKFLOW, "Configuration", name);
    let slug = w.project_slug.as_deref().unwrap_or_default();
    e.set("id", w.id.as_str())
        .set("status", w.status.as_deref().unwrap_or("unknown"))
        .set("pipelineId", text(w.pipeline_id.as_deref()))
        .set(
            "pipelineNumber",
            w.pipeline_number.map(Value::from).unwrap_or(Value::Null),
        )
        .set("projectSlug", text(w.project_slug.as_deref()))
        .set("startedBy", text(w.started_by.as_deref()))
        .set("tag", text(w.tag.as_deref()))
        .set("createdOn", millis(w.created_at.as_deref()))
        .set("stoppedOn", millis(w.stopped_at.as_deref()));
    if let Some(number) = w.pipeline_number {
        e.set(
            "webLink",
            format!(
                "{}/pipelines/{slug}/{number}/workflows/{}",
                cx.app_url, w.id
            ),
        );
    }
    e
}

pub fn job(j: &api::Job, w: &api::Workflow, cx: &MapContext) -> Entity {
    let name = first_non_empty(&[j.name.as_deref()], &j.id);
    let mut e = cx.entity(job_key(&j.id), JOB, "Task", name);
    let slug = j
        .project_slug
        .as_deref()
        .or(w.project_slug.as_deref())
        .unwrap_or_default();
    e.set("id", j.id.as_str())
        .set("status", j.status.as_deref().unwrap_or("unknown"))
        .set("type", j.r#type.as_deref().unwrap_or("unknown"))
        .set(
            "jobNumber",
            j.job_number.map(Value::from).unwrap_or(Value::Null),
        )
        .set("projectSlug", text(Some(slug)))
        .set("workflowId", w.id.as_str())
        .set("dependencies", j.dependencies.clone())
        .set("startedOn", millis(j.started_at.as_deref()))
        .set("stoppedOn", millis(j.stopped_at.as_deref()))
        .set("approvalRequestId", text(j.approval_request_id.as_deref()));
    if let (Some(number), Some(pipeline)) = (j.job_number, w.pipeline_number) {
        e.set(
            "webLink",
            format!(
                "{}/pipelines/{slug}/{pipeline}/workflows/{}/jobs/{number}",
                cx.app_url, w.id
            ),
        );
    }
    e
}

pub fn context(c: &api::Context, cx: &MapContext) -> Entity {
    let name = first_non_empty(&[c.name.as_deref()], &c.id);
    let mut e = cx.entity(context_key(&c.id), CONTEXT, "Configuration", name);
    e.set("id", c.id.as_str())
        .set("createdOn", millis(c.created_at.as_deref()));
    e
}

/// The variable's name only: CircleCI never returns context values, and we
/// would not keep them if it did.
pub fn context_env_var(v: &api::ContextEnvVar, c: &api::Context, cx: &MapContext) -> Entity {
    let mut e = cx.entity(
        context_env_var_key(&c.id, &v.variable),
        CONTEXT_ENV_VAR,
        "Configuration",
        &v.variable,
    );
    e.set("contextId", c.id.as_str())
        .set("contextName", text(c.name.as_deref()))
        .set("createdOn", millis(v.created_at.as_deref()))
        .set("updatedOn", millis(v.updated_at.as_deref()));
    e
}

/// The variable's name only; the API's masked value is dropped.
pub fn project_env_var(v: &api::ProjectEnvVar, p: &api::Project, cx: &MapContext) -> Entity {
    let mut e = cx.entity(
        project_env_var_key(&p.id, &v.name),
        PROJECT_ENV_VAR,
        "Configuration",
        &v.name,
    );
    e.set("projectId", p.id.as_str())
        .set("projectSlug", p.slug.as_str())
        .set("createdOn", millis(v.created_at.as_deref()));
    e
}

/// Context names that the jobs of a compiled config's workflows use:
/// `context: name` or `context: [a, b]` under `workflows.<w>.jobs[].<job>`.
pub fn contexts_used(compiled: &str) -> Result<BTreeSet<String>, String> {
    let doc: Value = serde_saphyr::from_str(compiled)
        .map_err(|e| format!("compiled config is not YAML: {e}"))?;
    let mut names = BTreeSet::new();
    let Some(workflows) = doc.get("workflows").and_then(Value::as_object) else {
        return Ok(names);
    };
    for workflow in workflows.values() {
        let Some(jobs) = workflow.get("jobs").and_then(Value::as_array) else {
            continue;
        };
        for job in jobs {
            // A job is either a bare name or a one-key map of name → parameters.
            let Some(params) = job.as_object().and_then(|m| m.values().next()) else {
                continue;
            };
            match params.get("context") {
                Some(Value::String(name)) => {
                    names.insert(name.clone());
                }
                Some(Value::Array(list)) => {
                    names.extend(list.iter().filter_map(Value::as_str).map(str::to_owned));
                }
                _ => {}
            }
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(compiled: &str, expected: &[&str]) {
        let found = contexts_used(compiled).expect("valid yaml");
        let expected: BTreeSet<String> = expected.iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(found, expected, "{compiled}");
    }

    #[test]
    fn contexts_in_workflow_jobs() {
        check("version: 2.1\njobs: {}\n", &[]);
        check(
            "workflows:\n  deploy:\n    jobs:\n      - build\n      - ship:\n          context: production\n      - check:\n          context: [staging, shared]\n",
            &["production", "shared", "staging"],
        );
    }

    #[test]
    fn millis_tolerates_junk() {
        assert_eq!(
            millis(Some("2024-01-02T03:04:05.678Z")),
            Value::from(1_704_164_645_678_i64)
        );
        assert_eq!(millis(Some("yesterday")), Value::Null);
        assert_eq!(millis(None), Value::Null);
    }

    #[test]
    fn env_var_keys_are_scoped() {
        assert_ne!(
            project_env_var_key("p1", "TOKEN"),
            project_env_var_key("p2", "TOKEN")
        );
        assert_ne!(
            context_env_var_key("c1", "TOKEN"),
            context_env_var_key("c2", "TOKEN")
        );
    }
}
