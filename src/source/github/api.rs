//! GitHub REST API (2022-11-28) wire types: only the fields Sextant maps.
//! Decoding is tolerant: unknown fields are ignored, enums stay strings,
//! and everything but identities is optional, because GitHub Enterprise
//! Server versions and token kinds leave different fields out.

use serde::Deserialize;

/// `GET /user`: the token's user.
#[derive(Debug, Clone, Deserialize)]
pub struct AuthenticatedUser {
    pub login: String,
    pub id: u64,
}

/// An organisation as listed by `GET /user/orgs`.
#[derive(Debug, Clone, Deserialize)]
pub struct OrgSummary {
    pub login: String,
    pub id: u64,
}

/// `GET /orgs/{org}`.
#[derive(Debug, Clone, Deserialize)]
pub struct Organization {
    pub login: String,
    pub id: u64,
    #[serde(default)]
    pub node_id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub html_url: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    /// Only shown to organisation owners.
    #[serde(default)]
    pub two_factor_requirement_enabled: Option<bool>,
    #[serde(default)]
    pub is_verified: Option<bool>,
}

/// A user as listed by `GET /orgs/{org}/members` and team member listings.
#[derive(Debug, Clone, Deserialize)]
pub struct SimpleUser {
    pub login: String,
    pub id: u64,
    #[serde(default)]
    pub node_id: Option<String>,
    #[serde(default)]
    pub html_url: Option<String>,
    #[serde(default)]
    pub avatar_url: Option<String>,
    /// `User`, `Bot`, `Organization`, … kept as written.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub site_admin: Option<bool>,
}

/// The parent of a nested team.
#[derive(Debug, Clone, Deserialize)]
pub struct TeamParent {
    pub slug: String,
}

/// A team as listed by `GET /orgs/{org}/teams`.
#[derive(Debug, Clone, Deserialize)]
pub struct Team {
    pub id: u64,
    pub slug: String,
    #[serde(default)]
    pub node_id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// `closed` or `secret`.
    #[serde(default)]
    pub privacy: Option<String>,
    #[serde(default)]
    pub html_url: Option<String>,
    #[serde(default)]
    pub parent: Option<TeamParent>,
}

/// The owner block of a repository.
#[derive(Debug, Clone, Deserialize)]
pub struct Owner {
    pub login: String,
}

/// What the listing's viewer (or a team) may do with a repository.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Permissions {
    pub admin: bool,
    pub maintain: bool,
    pub push: bool,
    pub triage: bool,
    pub pull: bool,
}

/// A repository as listed by `GET /orgs/{org}/repos` and
/// `GET /orgs/{org}/teams/{slug}/repos` (the latter with the team's
/// `permissions` and `role_name`).
#[derive(Debug, Clone, Deserialize)]
pub struct Repository {
    pub id: u64,
    pub name: String,
    #[serde(default)]
    pub node_id: Option<String>,
    #[serde(default)]
    pub full_name: Option<String>,
    #[serde(default)]
    pub owner: Option<Owner>,
    #[serde(default)]
    pub private: Option<bool>,
    /// `public`, `private` or `internal`.
    #[serde(default)]
    pub visibility: Option<String>,
    #[serde(default)]
    pub html_url: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub fork: Option<bool>,
    #[serde(default)]
    pub archived: Option<bool>,
    #[serde(default)]
    pub disabled: Option<bool>,
    #[serde(default)]
    pub default_branch: Option<String>,
    #[serde(default)]
    pub language: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub pushed_at: Option<String>,
    #[serde(default)]
    pub permissions: Option<Permissions>,
    /// The team's role on the repository (`admin`, `maintain`, `write`,
    /// `triage`, `read` or a custom role's name).
    #[serde(default)]
    pub role_name: Option<String>,
}
