//! GitHub step bodies. Each lists through the shared HTTP client (`Link`
//! pagination, conditional requests), maps with `map`, emits entities and
//! relationships, and leaves what later steps need in `Shared`. Fan-out over
//! organisations and teams is bounded by `settings.concurrency`.

use std::collections::{BTreeMap, BTreeSet};

use futures::future::BoxFuture;
use serde::de::DeserializeOwned;

use super::{GitHub, api, map};
use crate::graph::Relationship;
use crate::source::dag::{StepError, StepScope};
use crate::source::fanout::{self, fan_out, finish};
use crate::source::http::{HttpError, encode_segment};

type StepResult<'a> = BoxFuture<'a, Result<(), StepError>>;

/// Items a page at most (GitHub's maximum).
const PER_PAGE: &str = "100";

/// A rejected token (401) stops the run; a 403 (missing permission, or an
/// un-retryable limit) fails only the step.
fn fatal(e: &HttpError) -> bool {
    e.status() == Some(401)
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

/// Every item of a `Link`-paginated listing.
async fn list<T: DeserializeOwned>(
    cx: &GitHub,
    s: &StepScope<'_>,
    path: &str,
    query: &[(&str, &str)],
) -> Result<Vec<T>, HttpError> {
    let mut query = query.to_vec();
    query.push(("per_page", PER_PAGE));
    cx.http.get_all_pages(path, &query, &s.stats).await
}

fn org_path(login: &str, rest: &str) -> String {
    format!("/orgs/{}{rest}", encode_segment(login))
}

fn orgs(cx: &GitHub) -> Vec<api::Organization> {
    cx.shared().orgs.clone()
}

pub(super) fn organizations<'a>(cx: &'a GitHub, s: &'a StepScope<'a>) -> StepResult<'a> {
    Box::pin(async move {
        let logins: Vec<String> = if cx.settings.organizations.is_empty() {
            let listed: Vec<api::OrgSummary> =
                list(cx, s, "/user/orgs", &[]).await.map_err(|e| fail(&e))?;
            if listed.is_empty() {
                s.warn(
                    "the token sees no organisations; a classic token needs read:org, a fine-grained token must be created for the organisation",
                );
            }
            listed.into_iter().map(|o| o.login).collect()
        } else {
            let mut seen = BTreeSet::new();
            cx.settings
                .organizations
                .iter()
                .filter(|o| seen.insert(o.to_lowercase()))
                .cloned()
                .collect()
        };
        let results = fan_out(logins, cx.settings.concurrency, |login| async move {
            let org = cx
                .http
                .get_json::<api::Organization>(&org_path(&login, ""), &[], &s.stats)
                .await;
            (format!("organisation {login}"), org)
        })
        .await;
        let (ok, error) = settle(s, results);
        let mut orgs: Vec<api::Organization> = Vec::new();
        for (_, org) in ok {
            // Two spellings of one login in the settings are one organisation.
            if orgs.iter().any(|o| o.id == org.id) {
                continue;
            }
            s.entity(map::account(&org, &cx.map));
            orgs.push(org);
        }
        cx.shared().orgs = orgs;
        finish(error)
    })
}

pub(super) fn members<'a>(cx: &'a GitHub, s: &'a StepScope<'a>) -> StepResult<'a> {
    Box::pin(async move {
        let results = fan_out(orgs(cx), cx.settings.concurrency, |org| async move {
            let path = org_path(&org.login, "/members");
            let label = format!("members of organisation {}", org.login);
            let fetched = async {
                let all = list::<api::SimpleUser>(cx, s, &path, &[]).await?;
                let admins = list::<api::SimpleUser>(cx, s, &path, &[("role", "admin")]).await?;
                Ok::<_, HttpError>((all, admins))
            }
            .await;
            (label, fetched.map(|(all, admins)| (org, all, admins)))
        })
        .await;
        let (ok, error) = settle(s, results);
        // A user in several organisations is one entity.
        let mut users = BTreeMap::new();
        for (_, (org, members, admins)) in ok {
            let account = map::account_key(&org);
            let admins: BTreeSet<String> = admins.iter().map(map::user_key).collect();
            for member in members {
                let key = map::user_key(&member);
                s.relationship(map::account_has_user(&account, &key, admins.contains(&key)));
                users.entry(key).or_insert(member);
            }
        }
        for user in users.values() {
            s.entity(map::user(user, &cx.map));
        }
        finish(error)
    })
}

pub(super) fn teams<'a>(cx: &'a GitHub, s: &'a StepScope<'a>) -> StepResult<'a> {
    Box::pin(async move {
        let results = fan_out(orgs(cx), cx.settings.concurrency, |org| async move {
            let teams = list::<api::Team>(cx, s, &org_path(&org.login, "/teams"), &[]).await;
            (
                format!("teams of organisation {}", org.login),
                teams.map(|t| (org, t)),
            )
        })
        .await;
        let (ok, error) = settle(s, results);
        let mut all = Vec::new();
        for (_, (org, teams)) in ok {
            let account = map::account_key(&org);
            for team in teams {
                let entity = map::team(&team, &org, &cx.map);
                s.relationship(Relationship::by_keys(
                    "HAS",
                    map::ACCOUNT,
                    &account,
                    map::TEAM,
                    &entity.key,
                ));
                s.entity(entity);
                all.push((org.login.clone(), team));
            }
        }
        cx.shared().teams = all;
        finish(error)
    })
}

fn teams_of(cx: &GitHub) -> Vec<(String, api::Team)> {
    cx.shared().teams.clone()
}

fn team_path(org: &str, team: &api::Team, rest: &str) -> String {
    org_path(org, &format!("/teams/{}{rest}", encode_segment(&team.slug)))
}

pub(super) fn team_members<'a>(cx: &'a GitHub, s: &'a StepScope<'a>) -> StepResult<'a> {
    Box::pin(async move {
        let results = fan_out(
            teams_of(cx),
            cx.settings.concurrency,
            |(org, team)| async move {
                let path = team_path(&org, &team, "/members");
                let members = list::<api::SimpleUser>(cx, s, &path, &[]).await;
                (
                    format!("members of team {org}/{}", team.slug),
                    members.map(|m| (team, m)),
                )
            },
        )
        .await;
        let (ok, error) = settle(s, results);
        for (_, (team, members)) in ok {
            let team_key = map::team_key(&team);
            for member in members {
                s.relationship(Relationship::by_keys(
                    "HAS",
                    map::TEAM,
                    &team_key,
                    map::USER,
                    &map::user_key(&member),
                ));
            }
        }
        finish(error)
    })
}

pub(super) fn repos<'a>(cx: &'a GitHub, s: &'a StepScope<'a>) -> StepResult<'a> {
    Box::pin(async move {
        let results = fan_out(orgs(cx), cx.settings.concurrency, |org| async move {
            let path = org_path(&org.login, "/repos");
            let repos = list::<api::Repository>(cx, s, &path, &[("type", "all")]).await;
            (
                format!("repositories of organisation {}", org.login),
                repos.map(|r| (org, r)),
            )
        })
        .await;
        let (ok, error) = settle(s, results);
        for (_, (org, repos)) in ok {
            let account = map::account_key(&org);
            for repo in repos {
                let entity = map::repo(&repo, &cx.map);
                s.relationship(Relationship::by_keys(
                    "OWNS",
                    map::ACCOUNT,
                    &account,
                    map::REPO,
                    &entity.key,
                ));
                s.entity(entity);
            }
        }
        finish(error)
    })
}

pub(super) fn team_repos<'a>(cx: &'a GitHub, s: &'a StepScope<'a>) -> StepResult<'a> {
    Box::pin(async move {
        let results = fan_out(
            teams_of(cx),
            cx.settings.concurrency,
            |(org, team)| async move {
                let path = team_path(&org, &team, "/repos");
                let repos = list::<api::Repository>(cx, s, &path, &[]).await;
                (
                    format!("repositories of team {org}/{}", team.slug),
                    repos.map(|r| (team, r)),
                )
            },
        )
        .await;
        let (ok, error) = settle(s, results);
        for (_, (team, repos)) in ok {
            let team_key = map::team_key(&team);
            for repo in repos {
                s.relationship(map::team_allows_repo(&team_key, &repo));
            }
        }
        finish(error)
    })
}
