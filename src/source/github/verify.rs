//! Verifying a GitHub connection: `GET /user` with the token, then the
//! scopes a classic token was granted (`X-OAuth-Scopes`) against what the
//! source needs. Fine-grained and GitHub App tokens carry no such header;
//! their permissions cannot be read from the API, which the result says.

use std::collections::BTreeSet;

use reqwest::header::HeaderMap;

use super::api;
use crate::connection::Secrets;
use crate::source::http::{HttpConfig, RequestStats};

/// Scopes a classic token needs.
pub const REQUIRED_SCOPES: [&str; 3] = ["repo", "read:org", "read:user"];

/// The scopes that grant `required` (GitHub's scopes nest: `admin:org`
/// includes `write:org` includes `read:org`; `user` includes `read:user`).
fn granted_by(required: &str) -> &'static [&'static str] {
    match required {
        "repo" => &["repo"],
        "read:org" => &["read:org", "write:org", "admin:org"],
        "read:user" => &["read:user", "user"],
        _ => &[],
    }
}

/// The required scopes an `X-OAuth-Scopes` value (`repo, read:org`) lacks.
pub fn missing_scopes(header: &str) -> Vec<&'static str> {
    let granted: BTreeSet<&str> = header
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    REQUIRED_SCOPES
        .into_iter()
        .filter(|required| !granted_by(required).iter().any(|g| granted.contains(g)))
        .collect()
}

/// What the scopes header says about a token that `GET /user` accepted:
/// `Ok(note)` to report, or `Err` naming the missing scopes.
pub fn judge_scopes(login: &str, headers: &HeaderMap) -> Result<String, String> {
    let Some(value) = headers.get("x-oauth-scopes") else {
        return Ok(format!(
            "token of {login} accepted; it has no X-OAuth-Scopes header, so it is a fine-grained or GitHub App token \
whose permissions GitHub does not list: make sure it has read-only Metadata, Contents and Pull requests on the \
repositories and Members and Administration on the organisation"
        ));
    };
    let scopes = value.to_str().unwrap_or_default();
    let missing = missing_scopes(scopes);
    if missing.is_empty() {
        Ok(format!(
            "classic token of {login} with scopes {}",
            scopes.trim()
        ))
    } else {
        Err(format!(
            "the classic token of {login} lacks the scope(s) {} (it has: {}); edit the token at https://github.com/settings/tokens to add {}, or create a new one with repo, read:org and read:user",
            missing.join(", "),
            if scopes.trim().is_empty() {
                "none"
            } else {
                scopes.trim()
            },
            missing.join(", "),
        ))
    }
}

/// Tests a connection's secrets: the token is accepted and, for a classic
/// token, has every required scope. Errors never hold the token.
pub async fn verify(connection: &str, secrets: &Secrets) -> Result<String, String> {
    let config = HttpConfig {
        max_retries: 1,
        ..HttpConfig::default()
    };
    let client = super::client(connection, secrets, config)?;
    let (user, headers) = client
        .get_json_with_headers::<api::AuthenticatedUser>("/user", &[], &RequestStats::new())
        .await
        .map_err(|e| e.to_string())?;
    judge_scopes(&user.login, &headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_scopes_count() {
        let cases: [(&str, &[&str]); 6] = [
            ("repo, read:org, read:user", &[]),
            ("repo, admin:org, user", &[]),
            ("repo,write:org,read:user,gist", &[]),
            ("repo, read:user", &["read:org"]),
            ("public_repo, read:org", &["repo", "read:user"]),
            ("", &["repo", "read:org", "read:user"]),
        ];
        for (header, missing) in cases {
            assert_eq!(missing_scopes(header), missing, "{header:?}");
        }
    }
}
