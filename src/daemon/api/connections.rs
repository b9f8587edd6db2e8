//! The connection API, shaped after Fides': list with filters and pages,
//! bulk create-or-update with `PATCH`, secrets with `PUT …/secret?verify=`,
//! test, delete, and connection types with their secret schemas. Every
//! route calls `connection::service`, as the CLI does.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{ApiError, AppState, Body, Params, auth, ok, value};
use crate::connection::service::{
    self, ConnectionSummary, ConnectionUpdate, HttpOverrides, ListFilter, NewConnection,
    ServiceError, TestStatus,
};
use crate::connection::{connection_type, connection_types};

/// Largest page size.
const MAX_SIZE: usize = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    connection_type: Option<String>,
    disabled: Option<bool>,
    test_status: Option<String>,
    search: Option<String>,
    page: Option<usize>,
    size: Option<usize>,
}

pub(super) fn page_and_size(
    page: Option<usize>,
    size: Option<usize>,
) -> Result<(usize, usize), ApiError> {
    let page = page.unwrap_or(1);
    let size = size.unwrap_or(50);
    if page == 0 {
        return Err(ApiError::unprocessable("page: pages start at 1"));
    }
    if size == 0 || size > MAX_SIZE {
        return Err(ApiError::unprocessable(format!(
            "size: must be between 1 and {MAX_SIZE}"
        )));
    }
    Ok((page, size))
}

pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    Params(q): Params<ListQuery>,
) -> Result<Response, ApiError> {
    auth(&state, &headers, &["connections:read"]).await?;
    let test_status = match q.test_status.as_deref() {
        Some(s) => Some(
            s.parse::<TestStatus>()
                .map_err(|e| ApiError::unprocessable(format!("test_status: {e}")))?,
        ),
        None => None,
    };
    let (page, size) = page_and_size(q.page, q.size)?;
    let filter = ListFilter {
        ty: q.connection_type,
        disabled: q.disabled,
        test_status,
        search: q.search,
        page,
        size,
    };
    let page = state
        .shared
        .pool
        .with(move |store| Ok::<_, ApiError>(service::list_connections(store, &filter)?))
        .await?;
    Ok(ok(StatusCode::OK, page))
}

pub async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    auth(&state, &headers, &["connections:read"]).await?;
    let shared = state.shared.clone();
    let detail = state
        .shared
        .pool
        .with(move |store| {
            let master = shared.master_key()?;
            Ok::<_, ApiError>(service::show_connection(store, &master, &key)?)
        })
        .await?;
    Ok(ok(StatusCode::OK, detail))
}

/// One item of `PATCH /connection`: created when neither its key nor its
/// name exists (then `name`, `connection_type` and `secrets` are needed),
/// updated otherwise.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionPatch {
    key: Option<String>,
    name: Option<String>,
    connection_type: Option<String>,
    description: Option<String>,
    disabled: Option<bool>,
    secrets: Option<Map<String, Value>>,
    /// Request rate cap (0: the source's default).
    requests_per_second: Option<u32>,
    /// Per-request timeout such as `30s` (`0s`: the source's default).
    timeout: Option<String>,
}

/// Without the secrets: an item may be logged.
impl std::fmt::Debug for ConnectionPatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionPatch")
            .field("key", &self.key)
            .field("name", &self.name)
            .field("connection_type", &self.connection_type)
            .field("secrets", &self.secrets.as_ref().map(|_| service::MASK))
            .finish_non_exhaustive()
    }
}

impl ConnectionPatch {
    fn http(&self) -> HttpOverrides {
        HttpOverrides {
            requests_per_second: self.requests_per_second,
            timeout: self
                .timeout
                .as_deref()
                .and_then(crate::config::parse_duration),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyQuery {
    verify: Option<bool>,
}

#[derive(Debug, Serialize)]
struct Failed {
    message: String,
    data: Value,
}

#[derive(Debug, Serialize, Default)]
struct BulkResult {
    succeeded: Vec<ConnectionSummary>,
    failed: Vec<Failed>,
}

pub async fn patch(
    State(state): State<AppState>,
    headers: HeaderMap,
    Params(q): Params<VerifyQuery>,
    Body(items): Body<Vec<ConnectionPatch>>,
) -> Result<Response, ApiError> {
    // Authenticate, then check every item and every scope it needs before
    // anything is written.
    let token = auth(&state, &headers, &[]).await?;
    // A token that may neither create nor update connections learns nothing
    // about which exist (the lookups below would tell).
    if !["connections:create", "connections:read-update"]
        .iter()
        .any(|scope| crate::daemon::auth::has_scope(&token.scopes, scope))
    {
        crate::daemon::auth::require(&token, "connections:read-update")?;
    }
    if items.is_empty() {
        return Err(ApiError::unprocessable(
            "the body is an empty list; send [{\"name\", \"connection_type\", \"secrets\"}, …]",
        ));
    }
    let lookups: Vec<Option<String>> = items
        .iter()
        .map(|i| i.key.clone().or_else(|| i.name.clone()))
        .collect();
    let existing: Vec<bool> = state
        .shared
        .pool
        .with(move |store| {
            let mut out = Vec::new();
            for id in lookups {
                out.push(match id {
                    Some(id) => store.connection(&id)?.is_some(),
                    None => false,
                });
            }
            Ok::<_, ApiError>(out)
        })
        .await?;
    let mut problems = Vec::new();
    let mut needs_create = false;
    let mut needs_update = false;
    for (index, (item, exists)) in items.iter().zip(&existing).enumerate() {
        if let Some(text) = item.timeout.as_deref()
            && crate::config::parse_duration(text).is_none()
        {
            problems.push(format!(
                "[{index}].timeout: {text:?} is not a duration; try 30s or 2m"
            ));
        }
        if item.key.is_none() && item.name.is_none() {
            problems.push(format!("[{index}]: give a key or a name"));
        } else if *exists {
            needs_update = true;
        } else {
            needs_create = true;
            if item.name.is_none() {
                problems.push(format!("[{index}]: a new connection needs a name"));
            }
            if item.connection_type.is_none() {
                problems.push(format!(
                    "[{index}]: a new connection needs a connection_type"
                ));
            }
            if item.secrets.is_none() {
                problems.push(format!(
                    "[{index}]: a new connection needs its secrets (an object with every field of its type; GET /api/v1/connection_type/TYPE/secret)"
                ));
            }
        }
    }
    let mut scopes = Vec::new();
    if needs_create {
        scopes.push("connections:create");
    }
    if needs_update {
        scopes.push("connections:read-update");
    }
    for scope in scopes {
        crate::daemon::auth::require(&token, scope)?;
    }
    if !problems.is_empty() {
        return Err(ApiError::unprocessable(problems.join("; ")));
    }

    let verify = q.verify.unwrap_or(false);
    let shared = Arc::clone(&state.shared);
    let result = state
        .shared
        .pool
        .with_async(move |mut store| async move {
            let master = shared.master_key()?;
            let mut result = BulkResult::default();
            for (item, exists) in items.into_iter().zip(existing) {
                let data = json!({
                    "key": item.key, "name": item.name, "connection_type": item.connection_type,
                });
                let http = item.http();
                let secrets_json = item.secrets.map(|s| Value::Object(s).to_string());
                let outcome = if exists {
                    let id = item.key.or(item.name).unwrap_or_default();
                    update_one(
                        &mut store,
                        &master,
                        &id,
                        item.connection_type,
                        ConnectionUpdate {
                            secrets_json,
                            disabled: item.disabled,
                            description: item.description,
                            http,
                        },
                        verify,
                    )
                    .await
                } else {
                    service::add_connection(
                        &mut store,
                        &master,
                        NewConnection {
                            name: item.name.unwrap_or_default(),
                            key: item.key,
                            ty: item.connection_type.unwrap_or_default(),
                            description: item.description,
                            secrets_json: secrets_json.unwrap_or_default(),
                            http,
                            disabled: item.disabled == Some(true),
                        },
                        verify,
                    )
                    .await
                };
                match outcome {
                    Ok(summary) => result.succeeded.push(summary),
                    Err(e) => result.failed.push(Failed {
                        message: e.to_string(),
                        data,
                    }),
                }
            }
            Ok::<_, ApiError>(result)
        })
        .await?;
    if !result.succeeded.is_empty() {
        // A connection enabled or disabled changes what is scheduled.
        state.shared.changed.notify_one();
    }
    Ok(ok(StatusCode::OK, result))
}

async fn update_one(
    store: &mut crate::store::Store,
    master: &crate::connection::MasterKey,
    id: &str,
    ty: Option<String>,
    update: ConnectionUpdate,
    verify: bool,
) -> Result<ConnectionSummary, ServiceError> {
    let current = store
        .connection(id)?
        .ok_or_else(|| ServiceError::UnknownConnection(id.to_owned()))?;
    if let Some(ty) = ty
        && ty != current.ty
    {
        return Err(ServiceError::Invalid(format!(
            "connection {:?} is of type {}; its type cannot change (delete it and create a new one)",
            current.name, current.ty
        )));
    }
    if update.is_empty() {
        return Ok(ConnectionSummary::from(&current));
    }
    service::update_connection(store, master, id, update, verify).await
}

/// `{msg, test_status, failure_reason}`, as Fides answers secrets and tests.
fn test_answer(
    status: StatusCode,
    msg: String,
    test_status: &str,
    reason: Option<String>,
) -> Response {
    (
        status,
        axum::Json(json!({ "msg": msg, "test_status": test_status, "failure_reason": reason })),
    )
        .into_response()
}

pub async fn put_secret(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(key): Path<String>,
    Params(q): Params<VerifyQuery>,
    Body(secrets): Body<Map<String, Value>>,
) -> Result<Response, ApiError> {
    auth(&state, &headers, &["connections:read-update"]).await?;
    let verify = q.verify.unwrap_or(true);
    let update = ConnectionUpdate {
        secrets_json: Some(Value::Object(secrets).to_string()),
        ..ConnectionUpdate::default()
    };
    let shared = Arc::clone(&state.shared);
    let updated = state
        .shared
        .pool
        .with_async(move |mut store| async move {
            let master = shared.master_key()?;
            Ok::<_, ApiError>(
                service::update_connection(&mut store, &master, &key, update, verify).await,
            )
        })
        .await?;
    match updated {
        Ok(summary) => Ok(test_answer(
            StatusCode::OK,
            format!("Secrets updated for connection {:?}.", summary.name),
            if verify { "succeeded" } else { "untested" },
            None,
        )),
        Err(ServiceError::VerifyFailed {
            connection,
            message,
        }) => Ok(test_answer(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "Secrets for connection {connection:?} were not saved: they failed verification."
            ),
            "failed",
            Some(message),
        )),
        Err(e) => Err(e.into()),
    }
}

pub async fn test(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    auth(&state, &headers, &["connections:read"]).await?;
    let shared = Arc::clone(&state.shared);
    let outcome = state
        .shared
        .pool
        .with_async(move |mut store| async move {
            let master = shared.master_key()?;
            Ok::<_, ApiError>(service::test_connection(&mut store, &master, &key).await?)
        })
        .await?;
    let (msg, status) = if outcome.succeeded {
        (
            format!("Test completed for connection {:?}.", outcome.connection),
            "succeeded",
        )
    } else {
        (
            format!("Test failed for connection {:?}.", outcome.connection),
            "failed",
        )
    };
    Ok(test_answer(StatusCode::OK, msg, status, outcome.error))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteQuery {
    force: Option<bool>,
}

pub async fn delete(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(key): Path<String>,
    Params(q): Params<DeleteQuery>,
) -> Result<Response, ApiError> {
    auth(&state, &headers, &["connections:delete"]).await?;
    let force = q.force.unwrap_or(false);
    let disabled = state
        .shared
        .pool
        .with(move |store| Ok::<_, ApiError>(service::delete_connection(store, &key, force)?))
        .await?;
    if !disabled.is_empty() {
        tracing::info!(integrations = ?disabled, "Integrations disabled by a forced connection delete.");
        state.shared.changed.notify_one();
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TypesQuery {
    search: Option<String>,
    page: Option<usize>,
    size: Option<usize>,
}

pub async fn types(
    State(state): State<AppState>,
    headers: HeaderMap,
    Params(q): Params<TypesQuery>,
) -> Result<Response, ApiError> {
    auth(&state, &headers, &["connections:read"]).await?;
    let (page, size) = page_and_size(q.page, q.size)?;
    let search = q.search.as_deref().map(str::to_lowercase);
    let matching: Vec<Value> = connection_types()
        .iter()
        .filter(|t| {
            search.as_deref().is_none_or(|s| {
                t.name.to_lowercase().contains(s) || t.human_name.to_lowercase().contains(s)
            })
        })
        .map(|t| {
            json!({
                "identifier": t.name,
                "type": "saas",
                "human_readable": t.human_name,
                "token_requirements": t.token_requirements,
            })
        })
        .collect();
    Ok(ok(StatusCode::OK, service::paginate(matching, page, size)))
}

pub async fn type_secret(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(ty): Path<String>,
) -> Result<Response, ApiError> {
    auth(&state, &headers, &["connections:read"]).await?;
    let Some(t) = connection_type(&ty) else {
        let known: Vec<&str> = connection_types().iter().map(|t| t.name).collect();
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "no connection type {ty:?}; known types: {}",
                known.join(", ")
            ),
        ));
    };
    Ok(value(t.json_schema()))
}
