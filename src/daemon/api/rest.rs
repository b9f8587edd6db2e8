//! Integrations (CRUD and manual sync), runs, the graph export, change
//! events (long poll) and tokens.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{ApiError, AppState, Body, Params, auth, ok};
use crate::config::parse_duration;
use crate::connection::service::{self, IntegrationFilter, IntegrationInput};
use crate::daemon::auth::{NewToken, create_token as create};

/// The body of `POST /integrations` and `PATCH /integrations/{name}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntegrationBody {
    name: Option<String>,
    connection: Option<String>,
    account_name: Option<String>,
    description: Option<String>,
    interval: Option<String>,
    tag_account_name: Option<bool>,
    enabled: Option<bool>,
    settings: Option<Map<String, Value>>,
}

impl IntegrationBody {
    fn input(self) -> IntegrationInput {
        IntegrationInput {
            connection: self.connection,
            account_name: self.account_name,
            description: self.description,
            interval: self.interval,
            tag_account_name: self.tag_account_name,
            enabled: self.enabled,
            settings: self
                .settings
                .unwrap_or_default()
                .into_iter()
                .collect::<BTreeMap<_, _>>(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntegrationsQuery {
    connection: Option<String>,
    enabled: Option<bool>,
    search: Option<String>,
    page: Option<usize>,
    size: Option<usize>,
}

/// `GET /api/v1/integrations?connection=&enabled=&search=&page=&size=` →
/// `{items, total, page, size}`, like the connection list.
pub async fn list_integrations(
    State(state): State<AppState>,
    headers: HeaderMap,
    Params(q): Params<IntegrationsQuery>,
) -> Result<Response, ApiError> {
    auth(&state, &headers, &["integrations:read"]).await?;
    let (page, size) = super::connections::page_and_size(q.page, q.size)?;
    let filter = IntegrationFilter {
        connection: q.connection,
        enabled: q.enabled,
        search: q.search,
        page,
        size,
    };
    let page = state
        .shared
        .pool
        .with(move |store| Ok::<_, ApiError>(service::find_integrations(store, &filter)?))
        .await?;
    Ok(ok(StatusCode::OK, page))
}

pub async fn add_integration(
    State(state): State<AppState>,
    headers: HeaderMap,
    Body(body): Body<IntegrationBody>,
) -> Result<Response, ApiError> {
    auth(&state, &headers, &["integrations:create"]).await?;
    let Some(name) = body.name.clone() else {
        return Err(ApiError::unprocessable("name: is required"));
    };
    let view = state
        .shared
        .pool
        .with(move |store| Ok::<_, ApiError>(service::add_integration(store, &name, body.input())?))
        .await?;
    state.shared.changed.notify_one();
    Ok(ok(StatusCode::CREATED, view))
}

pub async fn show_integration(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    auth(&state, &headers, &["integrations:read"]).await?;
    let view = state
        .shared
        .pool
        .with(move |store| Ok::<_, ApiError>(service::show_integration(store, &name)?))
        .await?;
    Ok(ok(StatusCode::OK, view))
}

pub async fn update_integration(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Body(body): Body<IntegrationBody>,
) -> Result<Response, ApiError> {
    auth(&state, &headers, &["integrations:read-update"]).await?;
    if body.name.as_ref().is_some_and(|n| *n != name) {
        return Err(ApiError::unprocessable(
            "name: an integration cannot be renamed; create a new one",
        ));
    }
    let view = state
        .shared
        .pool
        .with(move |store| {
            Ok::<_, ApiError>(service::update_integration(store, &name, body.input())?)
        })
        .await?;
    state.shared.changed.notify_one();
    Ok(ok(StatusCode::OK, view))
}

pub async fn delete_integration(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    auth(&state, &headers, &["integrations:delete"]).await?;
    state
        .shared
        .pool
        .with(move |store| Ok::<_, ApiError>(service::delete_integration(store, &name)?))
        .await?;
    state.shared.changed.notify_one();
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn sync(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    auth(&state, &headers, &["sync:run"]).await?;
    let sync_id = state.shared.trigger(&name, "api").await?;
    Ok(ok(
        StatusCode::ACCEPTED,
        json!({ "sync_id": sync_id, "integration": name, "status": "running" }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunsQuery {
    integration: Option<String>,
    limit: Option<usize>,
}

pub async fn runs(
    State(state): State<AppState>,
    headers: HeaderMap,
    Params(q): Params<RunsQuery>,
) -> Result<Response, ApiError> {
    auth(&state, &headers, &["integrations:read"]).await?;
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    let items = state
        .shared
        .pool
        .with(move |store| Ok::<_, ApiError>(store.runs(q.integration.as_deref(), limit)?))
        .await?;
    Ok(ok(StatusCode::OK, json!({ "items": items })))
}

pub async fn run(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    auth(&state, &headers, &["integrations:read"]).await?;
    let found = state
        .shared
        .pool
        .with(move |store| Ok::<_, ApiError>(store.run(id)?))
        .await?;
    match found {
        Some(run) => Ok(ok(StatusCode::OK, run)),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no sync run {id}; list them with GET /api/v1/runs"),
        )),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphQuery {
    integration: Option<String>,
    format: Option<String>,
}

pub async fn graph(
    State(state): State<AppState>,
    headers: HeaderMap,
    Params(q): Params<GraphQuery>,
) -> Result<Response, ApiError> {
    auth(&state, &headers, &["graph:read"]).await?;
    let dot = match q.format.as_deref() {
        None | Some("json") => false,
        Some("dot") => true,
        Some(other) => {
            return Err(ApiError::unprocessable(format!(
                "format: {other:?} is not a format; use json or dot"
            )));
        }
    };
    // Streamed from one store connection and one read snapshot (see
    // `export`), so the document is consistent however long it takes.
    let integration = q.integration;
    let body = super::stream::from_store(&state.shared.pool, "graph export", move |store, out| {
        let integration = integration.as_deref();
        if dot {
            crate::export::dot(store, integration, out)
        } else {
            crate::export::json(store, integration, out)
        }
    })
    .await?;
    let content_type = if dot {
        "text/vnd.graphviz"
    } else {
        "application/json"
    };
    Ok((
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    since: Option<u64>,
    integration: Option<String>,
    limit: Option<usize>,
    /// Seconds to wait for an event when there is none yet (long poll).
    wait: Option<u64>,
}

/// Longest long poll.
const MAX_WAIT: u64 = 60;
/// How often a long poll looks for events committed by other processes.
const POLL: Duration = Duration::from_millis(250);

pub async fn events(
    State(state): State<AppState>,
    headers: HeaderMap,
    Params(q): Params<EventsQuery>,
) -> Result<Response, ApiError> {
    auth(&state, &headers, &["events:read"]).await?;
    let wait = q.wait.unwrap_or(0);
    if wait > MAX_WAIT {
        return Err(ApiError::unprocessable(format!(
            "wait: at most {MAX_WAIT} seconds"
        )));
    }
    let since = q.since.unwrap_or(0);
    let limit = q.limit.unwrap_or(1000).clamp(1, 10_000);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    loop {
        let notified = state.shared.committed.notified();
        let integration = q.integration.clone();
        let items = state
            .shared
            .pool
            .with(move |store| {
                Ok::<_, ApiError>(store.events(since, integration.as_deref(), limit)?)
            })
            .await?;
        let now = tokio::time::Instant::now();
        if !items.is_empty() || now >= deadline || state.shared.is_stopping() {
            let next = items.last().map_or(since, |e| e.seq);
            return Ok(ok(
                StatusCode::OK,
                json!({ "items": items, "next_since": next }),
            ));
        }
        tokio::select! {
            () = notified => {}
            () = tokio::time::sleep(POLL.min(deadline - now)) => {}
        }
    }
}

/// The body of `POST /tokens`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenBody {
    username: String,
    name: String,
    token_type: String,
    scopes: Vec<String>,
    /// A duration such as `30d`; no expiry when absent.
    expires: Option<String>,
}

pub async fn create_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    Body(body): Body<TokenBody>,
) -> Result<Response, ApiError> {
    let creator = auth(&state, &headers, &["admin:token"]).await?;
    let expires = match body.expires.as_deref() {
        Some(text) => Some(
            parse_duration(text)
                // Zero is a duration; `create` says what it may be.
                .ok_or_else(|| {
                    ApiError::unprocessable(format!(
                        "expires: {text:?} is not a duration; write e.g. 30d, 12h"
                    ))
                })?,
        ),
        None => None,
    };
    let new = NewToken {
        name: body.name,
        username: body.username,
        token_type: body.token_type,
        scopes: body.scopes,
        expires,
    };
    let created = state
        .shared
        .pool
        .with(move |store| {
            create(store, new).map_err(|e| match e {
                crate::daemon::auth::TokenError::Store(s) => ApiError::from(s),
                crate::daemon::auth::TokenError::Invalid(why) => ApiError::unprocessable(why),
                random @ crate::daemon::auth::TokenError::Random(_) => {
                    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, random.to_string())
                }
            })
        })
        .await?;
    tracing::info!(token = %created.record.name, by = %creator.name, "Token created.");
    Ok(ok(StatusCode::CREATED, created))
}

pub async fn list_tokens(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    auth(&state, &headers, &["admin:token"]).await?;
    let items = state
        .shared
        .pool
        .with(|store| Ok::<_, ApiError>(store.tokens()?))
        .await?;
    Ok(ok(StatusCode::OK, json!({ "items": items })))
}

pub async fn revoke_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    auth(&state, &headers, &["admin:token"]).await?;
    let found = state
        .shared
        .pool
        .with(move |store| Ok::<_, ApiError>(store.revoke_token(&name)?))
        .await?;
    if found {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no token of that name",
        ))
    }
}
