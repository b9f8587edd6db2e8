//! CircleCI step bodies. Each fetches through the shared HTTP client, maps
//! with `map`, emits entities and relationships, and leaves what later steps
//! need in `Shared`. Fan-out over organisations, pipelines and workflows is
//! bounded by `settings.concurrency`.

use std::collections::{BTreeMap, BTreeSet};

use futures::future::BoxFuture;

use super::{CircleCi, api, map};
use crate::graph::Relationship;
use crate::source::dag::{StepError, StepScope};
use crate::source::fanout::{self, fan_out, finish};
use crate::source::http::{HttpError, encode_path, encode_segment};

type StepResult<'a> = BoxFuture<'a, Result<(), StepError>>;

/// A rejected or insufficient token (401/403) stops the run.
fn fatal(e: &HttpError) -> bool {
    e.is_auth()
}

fn fail(e: &HttpError) -> StepError {
    fanout::step_error(e, fatal)
}

fn settle<T>(
    s: &StepScope<'_>,
    results: Vec<(String, Result<T, HttpError>)>,
) -> (Vec<(String, T)>, Option<StepError>) {
    fanout::settle(s, results, fatal)
}

fn me_id(cx: &CircleCi) -> Result<String, StepError> {
    cx.shared()
        .me
        .as_ref()
        .map(|m| m.id.clone())
        .ok_or_else(|| StepError::new("the account step left no user"))
}

pub(super) fn account<'a>(cx: &'a CircleCi, s: &'a StepScope<'a>) -> StepResult<'a> {
    Box::pin(async move {
        let me: api::Me = cx
            .http
            .get_json("/api/v2/me", &[], &s.stats)
            .await
            .map_err(|e| fail(&e))?;
        let account = map::account(&me, &cx.map);
        let user = map::user(&me, &cx.map);
        s.relationship(Relationship::between("HAS", &account, &user));
        s.entity(account);
        s.entity(user);
        cx.shared().me = Some(me);
        Ok(())
    })
}

pub(super) fn organizations<'a>(cx: &'a CircleCi, s: &'a StepScope<'a>) -> StepResult<'a> {
    Box::pin(async move {
        let me = me_id(cx)?;
        let all: Vec<api::Collaboration> = cx
            .http
            .get_json("/api/v2/me/collaborations", &[], &s.stats)
            .await
            .map_err(|e| fail(&e))?;
        let wanted: BTreeSet<String> = cx
            .settings
            .org_slugs
            .iter()
            .map(|s| s.to_lowercase())
            .collect();
        let orgs: Vec<api::Collaboration> = all
            .into_iter()
            .filter(|o| wanted.is_empty() || wanted.contains(&o.slug.to_lowercase()))
            .collect();
        for slug in &cx.settings.org_slugs {
            if !orgs.iter().any(|o| o.slug.eq_ignore_ascii_case(slug)) {
                s.warn(format!(
                    "organisation {slug:?} is not among the token's collaborations; check the slug in org_slugs or the token's access"
                ));
            }
        }
        for org in &orgs {
            let group = map::user_group(org, &cx.map);
            s.relationship(Relationship::by_keys(
                "HAS",
                map::ACCOUNT,
                &map::account_key(&me),
                map::USER_GROUP,
                &group.key,
            ));
            s.relationship(Relationship::by_keys(
                "HAS",
                map::USER_GROUP,
                &group.key,
                map::USER,
                &map::user_key(&me),
            ));
            s.entity(group);
        }
        cx.shared().orgs = orgs;
        Ok(())
    })
}

pub(super) fn pipelines<'a>(cx: &'a CircleCi, s: &'a StepScope<'a>) -> StepResult<'a> {
    Box::pin(async move {
        let slugs: Vec<String> = cx.shared().orgs.iter().map(|o| o.slug.clone()).collect();
        let max_pages = cx.settings.max_pipeline_pages.max(1);
        let results = fan_out(slugs, cx.settings.concurrency, |slug| async move {
            let pipelines = recent_pipelines(cx, s, &slug, max_pages).await;
            (format!("organisation {slug}"), pipelines.map(|p| (slug, p)))
        })
        .await;
        let (ok, error) = settle(s, results);
        let mut pipelines = BTreeMap::new();
        for (_, (org_slug, page)) in ok {
            // A pipeline created while paging shifts items: the same one can
            // arrive on two pages. Keep one.
            for pipeline in page {
                pipelines
                    .entry(pipeline.id.clone())
                    .or_insert((org_slug.clone(), pipeline));
            }
        }
        for (_, pipeline) in pipelines.values() {
            s.entity(map::pipeline(pipeline, &cx.map));
        }
        cx.shared().pipelines = pipelines;
        finish(error)
    })
}

/// The first `max_pages` pages of an organisation's pipelines, newest first.
/// History is unbounded, so stopping early is expected, not an error.
async fn recent_pipelines(
    cx: &CircleCi,
    s: &StepScope<'_>,
    org_slug: &str,
    max_pages: usize,
) -> Result<Vec<api::Pipeline>, HttpError> {
    let mut pages =
        cx.http
            .pages::<api::Pipeline>("/api/v2/pipeline", &[("org-slug", org_slug)], &s.stats)?;
    let mut all = Vec::new();
    while pages.pages_fetched() < max_pages {
        match pages.next_page().await? {
            Some(items) => all.extend(items),
            None => break,
        }
    }
    Ok(all)
}

pub(super) fn projects<'a>(cx: &'a CircleCi, s: &'a StepScope<'a>) -> StepResult<'a> {
    Box::pin(async move {
        let (slugs, orgs) = {
            let shared = cx.shared();
            let slugs: BTreeMap<String, String> = shared
                .pipelines
                .values()
                .filter_map(|(org, p)| p.project_slug.clone().map(|slug| (slug, org.clone())))
                .collect();
            let orgs: BTreeMap<String, String> = shared
                .orgs
                .iter()
                .map(|o| (o.slug.to_lowercase(), map::org_id(o).to_owned()))
                .collect();
            (slugs, orgs)
        };
        // Each project is fetched once, however many pipelines it has.
        let results = fan_out(
            slugs.into_iter().collect(),
            cx.settings.concurrency,
            |(slug, org)| async move {
                let path = format!("/api/v2/project/{}", encode_path(&slug));
                let project = cx.http.get_json::<api::Project>(&path, &[], &s.stats).await;
                (format!("project {slug}"), project.map(|p| (org, p)))
            },
        )
        .await;
        let (ok, error) = settle(s, results);
        let mut projects = BTreeMap::new();
        {
            let shared = cx.shared();
            for (_, (org_slug, project)) in ok {
                let entity = map::project(&project, &cx.map);
                if let Some(org_id) = orgs.get(&org_slug.to_lowercase()) {
                    s.relationship(Relationship::by_keys(
                        "HAS",
                        map::USER_GROUP,
                        &map::user_group_key(org_id),
                        map::PROJECT,
                        &entity.key,
                    ));
                }
                for (_, pipeline) in shared.pipelines.values() {
                    if pipeline.project_slug.as_deref() == Some(project.slug.as_str()) {
                        s.relationship(Relationship::by_keys(
                            "HAS",
                            map::PROJECT,
                            &entity.key,
                            map::PIPELINE,
                            &map::pipeline_key(&pipeline.id),
                        ));
                    }
                }
                s.entity(entity);
                projects.insert(project.slug.clone(), (org_slug, project));
            }
        }
        cx.shared().projects = projects;
        finish(error)
    })
}

pub(super) fn project_env_vars<'a>(cx: &'a CircleCi, s: &'a StepScope<'a>) -> StepResult<'a> {
    Box::pin(async move {
        let projects: Vec<api::Project> = cx
            .shared()
            .projects
            .values()
            .map(|(_, p)| p.clone())
            .collect();
        let results = fan_out(projects, cx.settings.concurrency, |project| async move {
            let path = format!("/api/v2/project/{}/envvar", encode_path(&project.slug));
            let vars = cx
                .http
                .get_all_pages::<api::ProjectEnvVar>(&path, &[], &s.stats)
                .await;
            (
                format!("environment variables of project {}", project.slug),
                vars.map(|v| (project, v)),
            )
        })
        .await;
        let (ok, error) = settle(s, results);
        for (_, (project, vars)) in ok {
            let project_key = map::project_key(&project.id);
            for var in &vars {
                let entity = map::project_env_var(var, &project, &cx.map);
                s.relationship(Relationship::by_keys(
                    "HAS",
                    map::PROJECT,
                    &project_key,
                    map::PROJECT_ENV_VAR,
                    &entity.key,
                ));
                s.entity(entity);
            }
        }
        finish(error)
    })
}

pub(super) fn workflows<'a>(cx: &'a CircleCi, s: &'a StepScope<'a>) -> StepResult<'a> {
    Box::pin(async move {
        let ids: Vec<String> = cx.shared().pipelines.keys().cloned().collect();
        let results = fan_out(ids, cx.settings.concurrency, |id| async move {
            let path = format!("/api/v2/pipeline/{}/workflow", encode_segment(&id));
            let workflows = cx
                .http
                .get_all_pages::<api::Workflow>(&path, &[], &s.stats)
                .await;
            (
                format!("workflows of pipeline {id}"),
                workflows.map(|w| (id, w)),
            )
        })
        .await;
        let (ok, error) = settle(s, results);
        let mut all = BTreeMap::new();
        for (_, (pipeline_id, workflows)) in ok {
            for workflow in workflows {
                let entity = map::workflow(&workflow, &cx.map);
                s.relationship(Relationship::by_keys(
                    "HAS",
                    map::PIPELINE,
                    &map::pipeline_key(&pipeline_id),
                    map::WORKFLOW,
                    &entity.key,
                ));
                s.entity(entity);
                all.insert(workflow.id.clone(), workflow);
            }
        }
        cx.shared().workflows = all;
        finish(error)
    })
}

pub(super) fn jobs<'a>(cx: &'a CircleCi, s: &'a StepScope<'a>) -> StepResult<'a> {
    Box::pin(async move {
        let workflows: Vec<api::Workflow> = cx.shared().workflows.values().cloned().collect();
        let results = fan_out(workflows, cx.settings.concurrency, |workflow| async move {
            let path = format!("/api/v2/workflow/{}/job", encode_segment(&workflow.id));
            let jobs = cx
                .http
                .get_all_pages::<api::Job>(&path, &[], &s.stats)
                .await;
            (
                format!("jobs of workflow {}", workflow.id),
                jobs.map(|j| (workflow, j)),
            )
        })
        .await;
        let (ok, error) = settle(s, results);
        for (_, (workflow, jobs)) in ok {
            let workflow_key = map::workflow_key(&workflow.id);
            for job in &jobs {
                let entity = map::job(job, &workflow, &cx.map);
                s.relationship(Relationship::by_keys(
                    "HAS",
                    map::WORKFLOW,
                    &workflow_key,
                    map::JOB,
                    &entity.key,
                ));
                s.entity(entity);
            }
        }
        finish(error)
    })
}

pub(super) fn users<'a>(cx: &'a CircleCi, s: &'a StepScope<'a>) -> StepResult<'a> {
    Box::pin(async move {
        let me = me_id(cx)?;
        // Who started workflows, and in which organisations.
        let starters: BTreeMap<String, BTreeSet<String>> = {
            let shared = cx.shared();
            let org_ids: BTreeMap<String, String> = shared
                .orgs
                .iter()
                .map(|o| (o.slug.to_lowercase(), map::org_id(o).to_owned()))
                .collect();
            let mut starters: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            for workflow in shared.workflows.values() {
                let Some(user) = workflow.started_by.as_deref().filter(|u| !u.is_empty()) else {
                    continue;
                };
                let org = workflow
                    .pipeline_id
                    .as_ref()
                    .and_then(|p| shared.pipelines.get(p))
                    .and_then(|(org, _)| org_ids.get(&org.to_lowercase()));
                let entry = starters.entry(user.to_owned()).or_default();
                if let Some(org) = org {
                    entry.insert(org.clone());
                }
            }
            starters
        };
        let others: Vec<(String, BTreeSet<String>)> = starters
            .iter()
            .filter(|(id, _)| **id != me)
            .map(|(id, orgs)| (id.clone(), orgs.clone()))
            .collect();
        let results = fan_out(others, cx.settings.concurrency, |(id, orgs)| async move {
            let path = format!("/api/v2/user/{}", encode_segment(&id));
            let user = cx.http.get_json::<api::Me>(&path, &[], &s.stats).await;
            (format!("user {id}"), user.map(|u| (u, orgs)))
        })
        .await;
        let (ok, error) = settle(s, results);
        let account_key = map::account_key(&me);
        for (_, (user, orgs)) in ok {
            let entity = map::user(&user, &cx.map);
            s.relationship(Relationship::by_keys(
                "HAS",
                map::ACCOUNT,
                &account_key,
                map::USER,
                &entity.key,
            ));
            for org in orgs {
                s.relationship(Relationship::by_keys(
                    "HAS",
                    map::USER_GROUP,
                    &map::user_group_key(&org),
                    map::USER,
                    &entity.key,
                ));
            }
            s.entity(entity);
        }
        // The token's user needs no fetch: fetch-account emitted it and
        // fetch-organizations linked it to every organisation.
        finish(error)
    })
}

pub(super) fn contexts<'a>(cx: &'a CircleCi, s: &'a StepScope<'a>) -> StepResult<'a> {
    Box::pin(async move {
        let orgs: Vec<api::Collaboration> = cx.shared().orgs.clone();
        let results = fan_out(orgs, cx.settings.concurrency, |org| async move {
            let contexts = cx
                .http
                .get_all_pages::<api::Context>(
                    "/api/v2/context",
                    &[("owner-id", map::org_id(&org))],
                    &s.stats,
                )
                .await;
            (
                format!("contexts of organisation {}", org.slug),
                contexts.map(|c| (org, c)),
            )
        })
        .await;
        let (ok, error) = settle(s, results);
        let mut all = BTreeMap::new();
        for (_, (org, contexts)) in ok {
            let group_key = map::user_group_key(map::org_id(&org));
            for context in contexts {
                let entity = map::context(&context, &cx.map);
                s.relationship(Relationship::by_keys(
                    "HAS",
                    map::USER_GROUP,
                    &group_key,
                    map::CONTEXT,
                    &entity.key,
                ));
                s.entity(entity);
                all.insert(context.id.clone(), (org.slug.clone(), context));
            }
        }
        cx.shared().contexts = all;
        finish(error)
    })
}

pub(super) fn context_env_vars<'a>(cx: &'a CircleCi, s: &'a StepScope<'a>) -> StepResult<'a> {
    Box::pin(async move {
        let contexts: Vec<api::Context> = cx
            .shared()
            .contexts
            .values()
            .map(|(_, c)| c.clone())
            .collect();
        let results = fan_out(contexts, cx.settings.concurrency, |context| async move {
            let path = format!(
                "/api/v2/context/{}/environment-variable",
                encode_segment(&context.id)
            );
            let vars = cx
                .http
                .get_all_pages::<api::ContextEnvVar>(&path, &[], &s.stats)
                .await;
            (
                format!("variables of context {}", context.id),
                vars.map(|v| (context, v)),
            )
        })
        .await;
        let (ok, error) = settle(s, results);
        let mut names = BTreeMap::new();
        for (_, (context, vars)) in ok {
            let context_key = map::context_key(&context.id);
            let mut list = Vec::new();
            for var in &vars {
                let entity = map::context_env_var(var, &context, &cx.map);
                s.relationship(Relationship::by_keys(
                    "HAS",
                    map::CONTEXT,
                    &context_key,
                    map::CONTEXT_ENV_VAR,
                    &entity.key,
                ));
                s.entity(entity);
                list.push(var.variable.clone());
            }
            names.insert(context.id.clone(), list);
        }
        cx.shared().context_vars = names;
        finish(error)
    })
}

/// project USES a context's variables when the jobs of its latest pipeline's
/// compiled config name that context.
pub(super) fn project_context_usage<'a>(cx: &'a CircleCi, s: &'a StepScope<'a>) -> StepResult<'a> {
    Box::pin(async move {
        let latest: Vec<(api::Project, String, String)> = {
            let shared = cx.shared();
            shared
                .projects
                .values()
                .filter_map(|(org, project)| {
                    shared
                        .pipelines
                        .values()
                        .filter(|(_, p)| p.project_slug.as_deref() == Some(project.slug.as_str()))
                        .max_by_key(|(_, p)| p.number)
                        .map(|(_, p)| (project.clone(), org.clone(), p.id.clone()))
                })
                .collect()
        };
        let results = fan_out(
            latest,
            cx.settings.concurrency,
            |(project, org, pipeline_id)| async move {
                let path = format!("/api/v2/pipeline/{}/config", encode_segment(&pipeline_id));
                let config = cx
                    .http
                    .get_json::<api::PipelineConfig>(&path, &[], &s.stats)
                    .await;
                (
                    format!("config of pipeline {pipeline_id}"),
                    config.map(|c| (project, org, c)),
                )
            },
        )
        .await;
        let (ok, error) = settle(s, results);
        let shared = cx.shared();
        for (label, (project, org, config)) in ok {
            let compiled = config.compiled.as_deref().unwrap_or_default();
            let used = match map::contexts_used(compiled) {
                Ok(used) => used,
                Err(e) => {
                    s.warn(format!("{label} of project {}: {e}", project.slug));
                    continue;
                }
            };
            let project_key = map::project_key(&project.id);
            for name in used {
                let context = shared.contexts.values().find(|(o, c)| {
                    o.eq_ignore_ascii_case(&org) && c.name.as_deref() == Some(name.as_str())
                });
                let Some((_, context)) = context else {
                    tracing::info!(project = %project.slug, context = %name, "The config names a context the organisation does not have.");
                    continue;
                };
                for var in shared.context_vars.get(&context.id).into_iter().flatten() {
                    s.relationship(Relationship::by_keys(
                        "USES",
                        map::PROJECT,
                        &project_key,
                        map::CONTEXT_ENV_VAR,
                        &map::context_env_var_key(&context.id, var),
                    ));
                }
            }
        }
        finish(error)
    })
}
