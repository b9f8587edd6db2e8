//! GitHub wire types → graph entities and relationships. Pure functions.
//!
//! Keys are deterministic and scoped: every object is keyed by its GitHub
//! `node_id`, which is global across organisations and hosts' objects (a
//! user in two organisations is one entity), falling back to the REST id
//! qualified by kind when a (very old) server leaves `node_id` out.

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::api;
use crate::graph::{Entity, Relationship};

pub const ACCOUNT: &str = "github_account";
pub const USER: &str = "github_user";
pub const TEAM: &str = "github_team";
pub const REPO: &str = "github_repo";

pub const ACCOUNT_HAS_USER: &str = "github_account_has_user";
pub const ACCOUNT_HAS_TEAM: &str = "github_account_has_team";
pub const TEAM_HAS_USER: &str = "github_team_has_user";
pub const TEAM_ALLOWS_REPO: &str = "github_team_allows_repo";
pub const ACCOUNT_OWNS_REPO: &str = "github_account_owns_repo";

/// What every mapping needs besides the wire object.
#[derive(Debug, Clone, Default)]
pub struct MapContext {
    /// Set when the integration asks to tag entities with its account name.
    pub account_name_tag: Option<String>,
}

impl MapContext {
    fn entity(&self, key: String, ty: &str, class: &str, name: &str) -> Entity {
        let mut e = Entity::new(key, ty, class);
        e.set("name", name).set("displayName", name);
        if let Some(account) = &self.account_name_tag {
            e.set("tag.AccountName", account.as_str());
        }
        e
    }
}

/// `<type>:<node_id>`, or `<type>:id:<id>` without a node id.
fn key(ty: &str, node_id: Option<&str>, id: u64) -> String {
    match node_id.filter(|n| !n.trim().is_empty()) {
        Some(node) => format!("{ty}:{node}"),
        None => format!("{ty}:id:{id}"),
    }
}

pub fn account_key(org: &api::Organization) -> String {
    key(ACCOUNT, org.node_id.as_deref(), org.id)
}
pub fn user_key(user: &api::SimpleUser) -> String {
    key(USER, user.node_id.as_deref(), user.id)
}
pub fn team_key(team: &api::Team) -> String {
    key(TEAM, team.node_id.as_deref(), team.id)
}
pub fn repo_key(repo: &api::Repository) -> String {
    key(REPO, repo.node_id.as_deref(), repo.id)
}

/// RFC 3339 → milliseconds since the epoch; unparseable or absent → null.
pub fn millis(text: Option<&str>) -> Value {
    text.and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
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

fn non_empty<'a>(value: Option<&'a str>, fallback: &'a str) -> &'a str {
    value.filter(|v| !v.trim().is_empty()).unwrap_or(fallback)
}

pub fn account(org: &api::Organization, cx: &MapContext) -> Entity {
    let name = non_empty(org.name.as_deref(), &org.login);
    let mut e = cx.entity(account_key(org), ACCOUNT, "Account", name);
    e.set("id", org.id.to_string())
        .set("login", org.login.as_str())
        .set("nodeId", text(org.node_id.as_deref()))
        .set("description", text(org.description.as_deref()))
        .set("email", text(org.email.as_deref()))
        .set("webLink", text(org.html_url.as_deref()))
        .set("accessURL", text(org.html_url.as_deref()))
        .set("createdOn", millis(org.created_at.as_deref()))
        .set("verified", org.is_verified.map_or(Value::Null, Value::from))
        .set(
            "mfaEnabled",
            org.two_factor_requirement_enabled
                .map_or(Value::Null, Value::from),
        );
    e
}

pub fn user(user: &api::SimpleUser, cx: &MapContext) -> Entity {
    let mut e = cx.entity(user_key(user), USER, "User", &user.login);
    e.set("id", user.id.to_string())
        .set("login", user.login.as_str())
        .set("username", user.login.as_str())
        .set("nodeId", text(user.node_id.as_deref()))
        .set("userType", text(user.kind.as_deref()))
        .set("siteAdmin", user.site_admin.unwrap_or(false))
        .set("avatarUrl", text(user.avatar_url.as_deref()))
        .set("webLink", text(user.html_url.as_deref()))
        .set("active", true);
    e
}

pub fn team(team: &api::Team, org: &api::Organization, cx: &MapContext) -> Entity {
    let name = non_empty(team.name.as_deref(), &team.slug);
    let mut e = cx.entity(team_key(team), TEAM, "UserGroup", name);
    e.set("id", team.id.to_string())
        .set("slug", team.slug.as_str())
        .set("orgLogin", org.login.as_str())
        .set("nodeId", text(team.node_id.as_deref()))
        .set("description", text(team.description.as_deref()))
        .set("privacy", text(team.privacy.as_deref()))
        .set(
            "parentSlug",
            text(team.parent.as_ref().map(|p| p.slug.as_str())),
        )
        .set("webLink", text(team.html_url.as_deref()));
    e
}

pub fn repo(repo: &api::Repository, cx: &MapContext) -> Entity {
    let full_name = repo
        .full_name
        .clone()
        .or_else(|| {
            repo.owner
                .as_ref()
                .map(|o| format!("{}/{}", o.login, repo.name))
        })
        .unwrap_or_else(|| repo.name.clone());
    let mut e = cx.entity(repo_key(repo), REPO, "CodeRepo", &full_name);
    let private = repo.private.unwrap_or(true);
    e.set("id", repo.id.to_string())
        .set("fullName", full_name.as_str())
        .set("repoName", repo.name.as_str())
        .set("owner", text(repo.owner.as_ref().map(|o| o.login.as_str())))
        .set("nodeId", text(repo.node_id.as_deref()))
        .set("public", !private)
        .set("visibility", text(repo.visibility.as_deref()))
        .set("description", text(repo.description.as_deref()))
        .set("fork", repo.fork.unwrap_or(false))
        .set("archived", repo.archived.unwrap_or(false))
        .set("disabled", repo.disabled.unwrap_or(false))
        .set("defaultBranch", text(repo.default_branch.as_deref()))
        .set("language", text(repo.language.as_deref()))
        .set("createdOn", millis(repo.created_at.as_deref()))
        .set("pushedOn", millis(repo.pushed_at.as_deref()))
        .set("webLink", text(repo.html_url.as_deref()));
    e
}

/// The team's permission on a repository, as GitHub's REST permission
/// names (`admin`, `maintain`, `push`, `triage`, `pull`): the `role_name`
/// when given (`write` and `read` are `push` and `pull`; a custom role keeps
/// its name), else the highest flag of `permissions`, else `unknown`.
pub fn permission(repo: &api::Repository) -> String {
    if let Some(role) = repo.role_name.as_deref().filter(|r| !r.is_empty()) {
        return match role {
            "write" => "push".to_owned(),
            "read" => "pull".to_owned(),
            other => other.to_owned(),
        };
    }
    let Some(p) = &repo.permissions else {
        return "unknown".to_owned();
    };
    let highest = [
        (p.admin, "admin"),
        (p.maintain, "maintain"),
        (p.push, "push"),
        (p.triage, "triage"),
        (p.pull, "pull"),
    ]
    .into_iter()
    .find(|(granted, _)| *granted)
    .map_or("none", |(_, name)| name);
    highest.to_owned()
}

/// account HAS user, with the member's role in the organisation.
pub fn account_has_user(account_key: &str, user_key: &str, admin: bool) -> Relationship {
    Relationship::by_keys("HAS", ACCOUNT, account_key, USER, user_key)
        .with("role", if admin { "admin" } else { "member" })
}

/// team ALLOWS repo, with the team's permission.
pub fn team_allows_repo(team_key: &str, repo: &api::Repository) -> Relationship {
    Relationship::by_keys("ALLOWS", TEAM, team_key, REPO, &repo_key(repo))
        .with("permission", permission(repo))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_with(role: Option<&str>, permissions: Option<api::Permissions>) -> api::Repository {
        let mut value = serde_json::json!({"id": 7, "name": "api"});
        if let Some(role) = role {
            value["role_name"] = role.into();
        }
        let mut repo: api::Repository = serde_json::from_value(value).expect("repo");
        repo.permissions = permissions;
        repo
    }

    #[test]
    fn permission_names() {
        let flags = |admin, maintain, push, triage, pull| api::Permissions {
            admin,
            maintain,
            push,
            triage,
            pull,
        };
        let cases = [
            (Some("write"), None, "push"),
            (Some("read"), None, "pull"),
            (Some("maintain"), None, "maintain"),
            (Some("security-reviewer"), None, "security-reviewer"),
            (None, Some(flags(false, false, true, true, true)), "push"),
            (None, Some(flags(true, true, true, true, true)), "admin"),
            (None, Some(flags(false, false, false, false, false)), "none"),
            (None, None, "unknown"),
        ];
        for (role, flags, expected) in cases {
            assert_eq!(permission(&repo_with(role, flags)), expected, "{role:?}");
        }
    }

    #[test]
    fn keys_use_node_ids_and_fall_back_to_scoped_ids() {
        let with_node: api::SimpleUser =
            serde_json::from_value(serde_json::json!({"login": "a", "id": 1, "node_id": "U_1"}))
                .expect("user");
        let without: api::SimpleUser =
            serde_json::from_value(serde_json::json!({"login": "a", "id": 1, "node_id": ""}))
                .expect("user");
        assert_eq!(user_key(&with_node), "github_user:U_1");
        assert_eq!(user_key(&without), "github_user:id:1");
    }
}
