//! The HTTP API (axum): `/healthz` and `/metrics` without a token, the rest
//! under `/api/v1` with `Authorization: Bearer sxt_…` and a scope per route.
//! Errors are `{"detail": message}` with 400 (malformed JSON or query), 401,
//! 403 (naming the missing scope), 404, 409, 413 (body over the limit), 422
//! (unknown fields, wrong types, invalid values) or 503 (shutting down).
//! Requests are checked whole before anything is written. Responses never
//! hold a secret value or a token other than the one `POST /tokens` creates.

mod connections;
mod rest;
mod stream;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::auth::{AuthError, Denied, authenticate, require};
use super::{Shared, TriggerError};
use crate::connection::service::ServiceError;
use crate::store::{StoreError, TokenRecord};
use crate::sync::SyncError;

/// Largest request body accepted (413 beyond).
pub const BODY_LIMIT: usize = 1024 * 1024;
/// A token's last use is written at most this often.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

pub struct ApiState {
    pub shared: Arc<Shared>,
    touched: Mutex<HashMap<String, Instant>>,
}

pub type AppState = Arc<ApiState>;

pub fn router(shared: Arc<Shared>) -> Router {
    let state = Arc::new(ApiState {
        shared,
        touched: Mutex::new(HashMap::new()),
    });
    let api = Router::new()
        .route(
            "/connection",
            get(connections::list).patch(connections::patch),
        )
        .route(
            "/connection/{key}",
            get(connections::show).delete(connections::delete),
        )
        .route("/connection/{key}/secret", put(connections::put_secret))
        .route("/connection/{key}/test", get(connections::test))
        .route("/connection_type", get(connections::types))
        .route(
            "/connection_type/{ty}/secret",
            get(connections::type_secret),
        )
        .route(
            "/integrations",
            get(rest::list_integrations).post(rest::add_integration),
        )
        .route(
            "/integrations/{name}",
            get(rest::show_integration)
                .patch(rest::update_integration)
                .delete(rest::delete_integration),
        )
        .route("/integrations/{name}/sync", post(rest::sync))
        .route("/runs", get(rest::runs))
        .route("/runs/{id}", get(rest::run))
        .route("/graph", get(rest::graph))
        .route("/events", get(rest::events))
        .route("/tokens", post(rest::create_token).get(rest::list_tokens))
        .route("/tokens/{name}", axum::routing::delete(rest::revoke_token));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .nest("/api/v1", api)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

async fn healthz(State(state): State<AppState>) -> Response {
    let status = if state.shared.is_stopping() {
        "stopping"
    } else {
        "ok"
    };
    axum::Json(json!({ "status": status })).into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        state.shared.metrics.render(),
    )
        .into_response()
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no such route; the API is under /api/v1 (see README, Daemon)",
    )
}

/// An error answer: `{"detail": message}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response =
            (self.status, axum::Json(json!({ "detail": self.message }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

fn store_status(e: &StoreError) -> StatusCode {
    match e {
        StoreError::LeaseHeld { .. } | StoreError::TokenExists(_) => StatusCode::CONFLICT,
        StoreError::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::new(store_status(&e), e.to_string())
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("internal error: {e}"),
        )
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        let status = match &e {
            ServiceError::UnknownConnection(_) | ServiceError::UnknownIntegration(_) => {
                StatusCode::NOT_FOUND
            }
            ServiceError::Invalid(_) | ServiceError::VerifyFailed { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ServiceError::Exists { .. }
            | ServiceError::InUse { .. }
            | ServiceError::ConnectionDisabled { .. }
            | ServiceError::IntegrationDisabled { .. } => StatusCode::CONFLICT,
            ServiceError::Store(s) => store_status(s),
            ServiceError::Crypto(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<TriggerError> for ApiError {
    fn from(e: TriggerError) -> Self {
        match e {
            TriggerError::ShuttingDown => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
            TriggerError::Unknown(_) => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
            TriggerError::Service(s) => s.into(),
            TriggerError::Store(s) => s.into(),
            TriggerError::Sync(SyncError::Store(s)) => s.into(),
            TriggerError::Sync(e @ SyncError::Disabled(_)) => {
                ApiError::new(StatusCode::CONFLICT, e.to_string())
            }
            TriggerError::Sync(e @ SyncError::UnknownIntegration(_)) => {
                ApiError::new(StatusCode::NOT_FOUND, e.to_string())
            }
            TriggerError::Sync(e @ SyncError::Source(_)) => ApiError::unprocessable(e.to_string()),
            other => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Denied(Denied::Unauthenticated(message)) => {
                ApiError::new(StatusCode::UNAUTHORIZED, message)
            }
            AuthError::Denied(Denied::MissingScope { token, scope }) => ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "token {token:?} lacks the scope {scope:?}; create a token with --scope {scope}"
                ),
            ),
            AuthError::Store(s) => s.into(),
        }
    }
}

/// Checks the request's token for every scope in `scopes` (the first one
/// missing is named; none: any valid token) and records its use.
pub async fn auth(
    state: &AppState,
    headers: &HeaderMap,
    scopes: &[&str],
) -> Result<TokenRecord, ApiError> {
    let header = match headers.get(header::AUTHORIZATION) {
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| {
                    ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "the Authorization header must be Bearer sxt_…",
                    )
                })?
                .to_owned(),
        ),
        None => None,
    };
    let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
    let record = state
        .shared
        .pool
        .with(move |store| {
            let record = authenticate(store, header.as_deref())?;
            for scope in &scopes {
                require(&record, scope)?;
            }
            Ok::<_, ApiError>(record)
        })
        .await?;
    let due = match state.touched.lock() {
        Ok(mut touched) => {
            let due = touched
                .get(&record.name)
                .is_none_or(|t| t.elapsed() >= TOUCH_EVERY);
            if due {
                touched.insert(record.name.clone(), Instant::now());
            }
            due
        }
        Err(_) => false,
    };
    if due {
        let name = record.name.clone();
        let shared = Arc::clone(&state.shared);
        // Best effort, and not awaited: a database busy with a commit must
        // neither fail nor hold up the request.
        tokio::spawn(async move {
            let touched = shared
                .pool
                .with(move |store| store.touch_token(&name).map_err(ApiError::from))
                .await;
            if let Err(error) = touched {
                tracing::debug!(error = %error.message, "Could not record a token's last use.");
            }
        });
    }
    Ok(record)
}

/// A JSON body whose rejections become `{"detail"}` answers: 400 for
/// malformed JSON, 413 over the limit, 415 without a JSON content type, 422
/// for unknown fields and wrong types.
pub struct Body<T>(pub T);

impl<S, T> FromRequest<S> for Body<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Body(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    let status = rejection.status();
    let message = match status {
        StatusCode::PAYLOAD_TOO_LARGE => format!(
            "the request body is larger than {} KiB; send less at once",
            BODY_LIMIT / 1024
        ),
        _ => format!(
            "invalid request body: {}",
            without_values(&rejection.body_text())
        ),
    };
    ApiError::new(status, message)
}

/// A deserialization message without the values it quotes (`invalid type:
/// string "…"`): the value may be a secret sent in the wrong place.
fn without_values(message: &str) -> String {
    static QUOTED: std::sync::LazyLock<Option<regex::Regex>> =
        std::sync::LazyLock::new(|| regex::Regex::new(r#"(string|value) "(?:[^"\\]|\\.)*""#).ok());
    match QUOTED.as_ref() {
        Some(quoted) => quoted.replace_all(message, "$1").into_owned(),
        // The pattern is a constant; should it ever fail, say nothing.
        None => "the body does not match the expected shape".to_owned(),
    }
}

/// Query parameters whose rejections become 400 `{"detail"}` answers.
pub struct Params<T>(pub T);

impl<S, T> FromRequestParts<S> for Params<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Params(value)),
            Err(rejection) => Err(query_rejection(rejection)),
        }
    }
}

fn query_rejection(rejection: QueryRejection) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        format!("invalid query: {}", without_values(&rejection.body_text())),
    )
}

/// A JSON answer.
pub fn ok(status: StatusCode, value: impl serde::Serialize) -> Response {
    match serde_json::to_value(value) {
        Ok(value) => (status, axum::Json(value)).into_response(),
        Err(e) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

pub fn value(v: Value) -> Response {
    (StatusCode::OK, axum::Json(v)).into_response()
}
