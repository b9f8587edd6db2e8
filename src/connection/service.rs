//! Stored connections and integrations: the library API behind the
//! `connection`, `integration` and `key` commands (and, later, the daemon's
//! HTTP API). Secrets are encrypted before they reach the store and are
//! never returned, printed or put in an error message.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use super::crypto::{CryptoError, MasterKey};
use super::{ConnectionType, Secret, Secrets, connection_type, connection_types};
use crate::config::{IntegrationConfig, Interval, snake_case};
use crate::source::ResolvedConnection;
use crate::store::{ConnectionRow, IntegrationRow, Store, StoreError};

/// What a sensitive field looks like when shown.
pub const MASK: &str = "**********";
/// Why integrations were disabled by a forced connection delete.
pub const CONNECTION_DELETED: &str = "connection deleted";
/// `managed_by` of definitions made through the CLI or the API.
pub const MANAGED_BY_CLI: &str = "cli";
/// `managed_by` of definitions provisioned from the config file.
pub const MANAGED_BY_CONFIG: &str = "config";

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("no connection named {0:?}; list them with: sextant connection list")]
    UnknownConnection(String),
    #[error("no integration named {0:?}; list them with: sextant integration list")]
    UnknownIntegration(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{what} {name:?} already exists; pick another name or update it instead")]
    Exists { what: &'static str, name: String },
    #[error(
        "connection {connection:?} is used by integration(s) {}; delete or move them first, or run again with --force to disable them",
        .integrations.join(", ")
    )]
    InUse {
        connection: String,
        integrations: Vec<String>,
    },
    #[error(
        "connection {connection:?} failed verification: {message}; nothing was saved (fix the secrets, or pass --no-verify to save them untested)"
    )]
    VerifyFailed { connection: String, message: String },
    #[error("connection {connection:?} is disabled{}; enable it with: sextant connection update {connection} --enable", reason_suffix(.reason))]
    ConnectionDisabled {
        connection: String,
        reason: Option<String>,
    },
    #[error("integration {integration:?} is disabled{}; enable it with: sextant integration update {integration} --enable", reason_suffix(.reason))]
    IntegrationDisabled {
        integration: String,
        reason: Option<String>,
    },
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn reason_suffix(reason: &Option<String>) -> String {
    reason
        .as_deref()
        .map(|r| format!(" ({r})"))
        .unwrap_or_default()
}

fn invalid(message: impl Into<String>) -> ServiceError {
    ServiceError::Invalid(message.into())
}

fn known_types() -> String {
    connection_types()
        .iter()
        .map(|t| t.name)
        .collect::<Vec<_>>()
        .join(", ")
}

fn find_type(name: &str) -> Result<&'static ConnectionType, ServiceError> {
    connection_type(name).ok_or_else(|| {
        invalid(format!(
            "{name:?} is not a connection type; use one of {}",
            known_types()
        ))
    })
}

/// Parses and checks a secrets document against its type: one JSON object
/// of strings, no unknown field, every required field given; defaults
/// applied. Errors never quote a value.
pub fn parse_secrets(
    ty: &ConnectionType,
    text: &str,
) -> Result<BTreeMap<String, String>, ServiceError> {
    let doc: serde_json::Map<String, Value> = serde_json::from_str(text).map_err(|e| {
        invalid(format!(
            "the secrets are not a JSON object ({} at line {} column {}); write e.g. {{\"api_token\": \"...\"}}",
            match e.classify() {
                serde_json::error::Category::Data => "not an object",
                _ => "invalid JSON",
            },
            e.line(),
            e.column()
        ))
    })?;
    let mut problems = Vec::new();
    let mut out = BTreeMap::new();
    let fields: Vec<&str> = ty.fields.iter().map(|f| f.name).collect();
    for (name, value) in doc {
        if ty.field(&name).is_none() {
            problems.push(format!(
                "{} connections have no field {name:?}; fields are {}",
                ty.name,
                fields.join(", ")
            ));
            continue;
        }
        match value {
            Value::String(s) if !s.trim().is_empty() => {
                out.insert(name, s.trim().to_owned());
            }
            Value::String(_) => problems.push(format!("{name}: must not be empty")),
            _ => problems.push(format!("{name}: must be a string")),
        }
    }
    for field in ty.fields {
        if out.contains_key(field.name) {
            continue;
        }
        if let Some(default) = field.default {
            out.insert(field.name.to_owned(), default.to_owned());
        } else if field.required && !problems.iter().any(|p| p.starts_with(field.name)) {
            problems.push(format!("{}: is required", field.name));
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(invalid(format!("invalid secrets: {}", problems.join("; "))))
    }
}

/// Splits stored fields into plain values and [`Secret`]s.
pub fn to_secrets(ty: &ConnectionType, fields: &BTreeMap<String, String>) -> Secrets {
    let mut secrets = Secrets::default();
    for (name, value) in fields {
        if ty.field(name).is_some_and(|f| f.sensitive) {
            secrets
                .sensitive
                .insert(name.clone(), Secret::new(value.clone()));
        } else {
            secrets.plain.insert(name.clone(), value.clone());
        }
    }
    secrets
}

pub(crate) fn encrypt_fields(
    master: &MasterKey,
    key: &str,
    fields: &BTreeMap<String, String>,
) -> Result<Vec<u8>, ServiceError> {
    let json = serde_json::to_vec(fields).map_err(|_| CryptoError::Encrypt)?;
    Ok(master.encrypt(key, &json)?)
}

pub(crate) fn decrypt_fields(
    master: &MasterKey,
    row: &ConnectionRow,
) -> Result<BTreeMap<String, String>, ServiceError> {
    let json = master.decrypt(&row.key, &row.secrets)?;
    serde_json::from_slice(&json)
        .map_err(|_| ServiceError::Crypto(CryptoError::Decrypt(row.key.clone())))
}

/// Replaces every sensitive value in `text` with the mask.
fn scrub(text: &str, secrets: &Secrets) -> String {
    let mut out = text.to_owned();
    for secret in secrets.sensitive.values() {
        if !secret.expose().is_empty() {
            out = out.replace(secret.expose(), MASK);
        }
    }
    out
}

/// Tests credentials against the service (CircleCI: `GET /api/v2/me`;
/// GitHub: `GET /user` and the classic token's scopes). `Ok` may carry a
/// note worth showing (what kind of token it is, what could not be
/// checked). Neither the note nor the error ever holds a secret.
pub async fn test_secrets(
    ty: &ConnectionType,
    connection: &str,
    secrets: &Secrets,
) -> Result<Option<String>, String> {
    let result = match ty.name {
        "circleci" => crate::source::circleci::verify(connection, secrets)
            .await
            .map(|()| None),
        "github" => crate::source::github::verify::verify(connection, secrets)
            .await
            .map(Some),
        other => Err(format!("connections of type {other} cannot be tested yet")),
    };
    result
        .map(|note| note.map(|n| scrub(&n, secrets)))
        .map_err(|message| scrub(&message, secrets))
}

/// A connection as listed: never its secrets.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionSummary {
    pub name: String,
    pub key: String,
    pub description: Option<String>,
    pub connection_type: String,
    pub disabled: bool,
    pub disabled_reason: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub last_test_timestamp: Option<String>,
    pub last_test_succeeded: Option<bool>,
    pub last_test_error: Option<String>,
    /// Request rate cap for this connection (default: the source's).
    pub requests_per_second: Option<u32>,
    /// Per-request timeout, e.g. `30s` (default: the source's).
    pub timeout: Option<String>,
    /// `cli` or `config` (declared in the config file, re-applied at start).
    pub managed_by: String,
}

impl From<&ConnectionRow> for ConnectionSummary {
    fn from(row: &ConnectionRow) -> Self {
        ConnectionSummary {
            name: row.name.clone(),
            key: row.key.clone(),
            description: row.description.clone(),
            connection_type: row.ty.clone(),
            disabled: row.disabled,
            disabled_reason: row.disabled_reason.clone(),
            created_at: row.created_at.clone(),
            updated_at: row.updated_at.clone(),
            last_test_timestamp: row.last_test_at.clone(),
            last_test_succeeded: row.last_test_succeeded,
            last_test_error: row.last_test_error.clone(),
            requests_per_second: row.requests_per_second,
            timeout: row
                .timeout_ms
                .map(|ms| crate::config::format_duration(Duration::from_millis(ms.into()))),
            managed_by: row.managed_by.clone(),
        }
    }
}

/// A connection as shown: sensitive fields masked.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionDetail {
    #[serde(flatten)]
    pub summary: ConnectionSummary,
    pub secrets: BTreeMap<String, String>,
    pub integrations: Vec<String>,
}

/// One page of a list, shaped like Fides'.
#[derive(Debug, Clone, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: usize,
    pub page: usize,
    pub size: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestStatus {
    Succeeded,
    Failed,
    Untested,
}

impl std::str::FromStr for TestStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "succeeded" => Ok(TestStatus::Succeeded),
            "failed" => Ok(TestStatus::Failed),
            "untested" => Ok(TestStatus::Untested),
            _ => Err(format!(
                "{s:?} is not a test status; use succeeded, failed or untested"
            )),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ListFilter {
    pub ty: Option<String>,
    pub disabled: Option<bool>,
    pub test_status: Option<TestStatus>,
    pub search: Option<String>,
    /// 1-based.
    pub page: usize,
    pub size: usize,
}

impl Default for ListFilter {
    fn default() -> Self {
        ListFilter {
            ty: None,
            disabled: None,
            test_status: None,
            search: None,
            page: 1,
            size: 50,
        }
    }
}

/// A connection to add. `Debug` leaves the secrets document out.
#[derive(Clone)]
pub struct NewConnection {
    pub name: String,
    pub key: Option<String>,
    pub ty: String,
    pub description: Option<String>,
    /// The secrets document (JSON text).
    pub secrets_json: String,
    pub http: HttpOverrides,
    /// Created disabled (stored so in the same write).
    pub disabled: bool,
}

/// Per-connection HTTP settings. In an update, `None` leaves a value as it
/// is and `Some(0)` / a zero timeout returns it to the source's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HttpOverrides {
    pub requests_per_second: Option<u32>,
    pub timeout: Option<Duration>,
}

pub(crate) fn timeout_ms(timeout: Duration) -> Option<u32> {
    u32::try_from(timeout.as_millis()).ok().filter(|ms| *ms > 0)
}

/// Adds a connection. With `verify`, tests it first and saves nothing if
/// the test fails.
pub async fn add_connection(
    store: &mut Store,
    master: &MasterKey,
    new: NewConnection,
    verify: bool,
) -> Result<ConnectionSummary, ServiceError> {
    let ty = find_type(&new.ty)?;
    if new.name.trim().is_empty() {
        return Err(invalid("the connection name must not be empty"));
    }
    let key = match &new.key {
        Some(k) => k.clone(),
        None => snake_case(&new.name),
    };
    if key.is_empty() || key != snake_case(&key) {
        return Err(invalid(format!(
            "connection key {key:?} must be snake_case letters, digits and underscores; pass --key"
        )));
    }
    if store.connection(&new.name)?.is_some() || store.connection(&key)?.is_some() {
        return Err(ServiceError::Exists {
            what: "connection",
            name: new.name,
        });
    }
    let fields = parse_secrets(ty, &new.secrets_json)?;
    let now = crate::store::now();
    let (mut tested_at, mut succeeded) = (None, None);
    if verify {
        test_secrets(ty, &new.name, &to_secrets(ty, &fields))
            .await
            .map_err(|message| ServiceError::VerifyFailed {
                connection: new.name.clone(),
                message,
            })?;
        tested_at = Some(now.clone());
        succeeded = Some(true);
    }
    let row = ConnectionRow {
        secrets: encrypt_fields(master, &key, &fields)?,
        key,
        name: new.name,
        ty: ty.name.to_owned(),
        description: new.description,
        disabled: new.disabled,
        disabled_reason: new.disabled.then(|| "disabled by a user".to_owned()),
        created_at: now.clone(),
        updated_at: now,
        last_test_at: tested_at,
        last_test_succeeded: succeeded,
        last_test_error: None,
        requests_per_second: new.http.requests_per_second.filter(|n| *n > 0),
        timeout_ms: new.http.timeout.and_then(timeout_ms),
        managed_by: MANAGED_BY_CLI.to_owned(),
    };
    store.insert_connection(&row)?;
    Ok(ConnectionSummary::from(&row))
}

fn get_connection(store: &Store, name: &str) -> Result<ConnectionRow, ServiceError> {
    store
        .connection(name)?
        .ok_or_else(|| ServiceError::UnknownConnection(name.to_owned()))
}

/// Lists connections matching a filter, one page.
pub fn list_connections(
    store: &Store,
    filter: &ListFilter,
) -> Result<Page<ConnectionSummary>, ServiceError> {
    let search = filter.search.as_deref().map(str::to_lowercase);
    let matching: Vec<ConnectionSummary> = store
        .connections()?
        .iter()
        .filter(|c| filter.ty.as_deref().is_none_or(|t| c.ty == t))
        .filter(|c| filter.disabled.is_none_or(|d| c.disabled == d))
        .filter(|c| match filter.test_status {
            None => true,
            Some(TestStatus::Succeeded) => c.last_test_succeeded == Some(true),
            Some(TestStatus::Failed) => c.last_test_succeeded == Some(false),
            Some(TestStatus::Untested) => c.last_test_succeeded.is_none(),
        })
        .filter(|c| {
            search.as_deref().is_none_or(|s| {
                c.name.to_lowercase().contains(s)
                    || c.key.to_lowercase().contains(s)
                    || c.description
                        .as_deref()
                        .is_some_and(|d| d.to_lowercase().contains(s))
            })
        })
        .map(ConnectionSummary::from)
        .collect();
    Ok(paginate(matching, filter.page, filter.size))
}

/// Shows a connection with its sensitive fields masked. Decrypts, so a
/// wrong master key or tampered row is reported here too.
pub fn show_connection(
    store: &Store,
    master: &MasterKey,
    name: &str,
) -> Result<ConnectionDetail, ServiceError> {
    let row = get_connection(store, name)?;
    let fields = decrypt_fields(master, &row)?;
    let ty = find_type(&row.ty)?;
    let secrets = fields
        .into_iter()
        .map(|(k, v)| {
            if ty.field(&k).is_some_and(|f| f.sensitive) {
                (k, MASK.to_owned())
            } else {
                (k, v)
            }
        })
        .collect();
    Ok(ConnectionDetail {
        summary: ConnectionSummary::from(&row),
        secrets,
        integrations: store.integrations_using(&row.key)?,
    })
}

/// What a test found.
#[derive(Debug, Clone, Serialize)]
pub struct TestOutcome {
    pub connection: String,
    pub succeeded: bool,
    pub error: Option<String>,
    /// What the test found besides success (e.g. a token whose permissions
    /// cannot be listed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub tested_at: String,
}

/// Tests a stored connection and records when and how it went.
pub async fn test_connection(
    store: &mut Store,
    master: &MasterKey,
    name: &str,
) -> Result<TestOutcome, ServiceError> {
    let mut row = get_connection(store, name)?;
    let ty = find_type(&row.ty)?;
    let secrets = to_secrets(ty, &decrypt_fields(master, &row)?);
    let result = test_secrets(ty, &row.name, &secrets).await;
    let now = crate::store::now();
    row.last_test_at = Some(now.clone());
    row.last_test_succeeded = Some(result.is_ok());
    row.last_test_error = result.as_ref().err().cloned();
    store.update_connection(&row)?;
    Ok(TestOutcome {
        connection: row.name,
        succeeded: result.is_ok(),
        note: result.as_ref().ok().cloned().flatten(),
        error: result.err(),
        tested_at: now,
    })
}

/// Changes to a connection; `None` leaves a field as it is. `Debug` leaves
/// the secrets document out.
#[derive(Clone, Default)]
pub struct ConnectionUpdate {
    pub secrets_json: Option<String>,
    pub disabled: Option<bool>,
    pub description: Option<String>,
    pub http: HttpOverrides,
}

impl std::fmt::Debug for NewConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewConnection")
            .field("name", &self.name)
            .field("key", &self.key)
            .field("ty", &self.ty)
            .field("secrets_json", &MASK)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ConnectionUpdate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionUpdate")
            .field("secrets_json", &self.secrets_json.as_ref().map(|_| MASK))
            .field("disabled", &self.disabled)
            .field("description", &self.description)
            .field("http", &self.http)
            .finish()
    }
}

impl ConnectionUpdate {
    /// Nothing would change.
    pub fn is_empty(&self) -> bool {
        self.secrets_json.is_none()
            && self.disabled.is_none()
            && self.description.is_none()
            && self.http == HttpOverrides::default()
    }
}

/// Updates a connection. New secrets replace the old ones whole and, with
/// `verify`, are tested first (nothing is saved if the test fails).
pub async fn update_connection(
    store: &mut Store,
    master: &MasterKey,
    name: &str,
    update: ConnectionUpdate,
    verify: bool,
) -> Result<ConnectionSummary, ServiceError> {
    if update.is_empty() {
        return Err(invalid(
            "nothing to update; pass --secrets-file, --enable, --disable, --description, \
             --requests-per-second or --timeout",
        ));
    }
    let mut row = get_connection(store, name)?;
    let ty = find_type(&row.ty)?;
    let now = crate::store::now();
    if let Some(text) = &update.secrets_json {
        let fields = parse_secrets(ty, text)?;
        if verify {
            test_secrets(ty, &row.name, &to_secrets(ty, &fields))
                .await
                .map_err(|message| ServiceError::VerifyFailed {
                    connection: row.name.clone(),
                    message,
                })?;
            row.last_test_at = Some(now.clone());
            row.last_test_succeeded = Some(true);
        } else {
            row.last_test_at = None;
            row.last_test_succeeded = None;
        }
        row.last_test_error = None;
        row.secrets = encrypt_fields(master, &row.key, &fields)?;
    }
    if let Some(disabled) = update.disabled {
        row.disabled = disabled;
        row.disabled_reason = disabled.then(|| "disabled by a user".to_owned());
    }
    if let Some(description) = update.description {
        row.description = Some(description);
    }
    if let Some(rps) = update.http.requests_per_second {
        row.requests_per_second = (rps > 0).then_some(rps);
    }
    if let Some(timeout) = update.http.timeout {
        row.timeout_ms = timeout_ms(timeout);
    }
    row.updated_at = now;
    store.update_connection(&row)?;
    Ok(ConnectionSummary::from(&row))
}

/// Deletes a connection. Refused while integrations use it unless `force`,
/// which disables them with reason "connection deleted". Returns the
/// integrations that were disabled.
pub fn delete_connection(
    store: &mut Store,
    name: &str,
    force: bool,
) -> Result<Vec<String>, ServiceError> {
    let row = get_connection(store, name)?;
    let users = store.integrations_using(&row.key)?;
    if !users.is_empty() && !force {
        return Err(ServiceError::InUse {
            connection: row.name,
            integrations: users,
        });
    }
    Ok(store.delete_connection(&row.key, CONNECTION_DELETED, &crate::store::now())?)
}

/// Re-encrypts every connection's secrets under `new` in one transaction.
/// If any row does not decrypt under `old`, nothing changes.
pub fn rotate_key(
    store: &mut Store,
    old: &MasterKey,
    new: &MasterKey,
) -> Result<usize, ServiceError> {
    let mut rewritten = Vec::new();
    for (key, blob) in store.connection_secrets()? {
        let plain = old.decrypt(&key, &blob)?;
        let blob = new.encrypt(&key, &plain)?;
        rewritten.push((key, blob));
    }
    store.replace_connection_secrets(&rewritten, &crate::store::now())?;
    Ok(rewritten.len())
}

/// An integration as shown and listed.
#[derive(Debug, Clone, Serialize)]
pub struct IntegrationView {
    pub name: String,
    pub connection: Option<String>,
    pub connection_key: Option<String>,
    pub account_name: Option<String>,
    pub description: Option<String>,
    pub interval: String,
    pub tag_account_name: bool,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub settings: Value,
    pub created_at: String,
    pub updated_at: String,
    /// `cli` or `config` (declared in the config file, re-applied at start).
    pub managed_by: String,
}

fn integration_view(store: &Store, row: &IntegrationRow) -> Result<IntegrationView, ServiceError> {
    let connection = match &row.connection_key {
        Some(key) => store.connection(key)?.map(|c| c.name),
        None => None,
    };
    Ok(view_of(row, connection))
}

/// The view of a row whose connection's name is known.
fn view_of(row: &IntegrationRow, connection: Option<String>) -> IntegrationView {
    IntegrationView {
        name: row.name.clone(),
        connection,
        connection_key: row.connection_key.clone(),
        account_name: row.account_name.clone(),
        description: row.description.clone(),
        interval: row.interval.clone(),
        tag_account_name: row.tag_account_name,
        enabled: row.enabled,
        disabled_reason: row.disabled_reason.clone(),
        settings: serde_json::from_str(&row.settings).unwrap_or(Value::Null),
        created_at: row.created_at.clone(),
        updated_at: row.updated_at.clone(),
        managed_by: row.managed_by.clone(),
    }
}

/// An integration to add, or the changes to one (`None`: unchanged).
#[derive(Debug, Clone, Default)]
pub struct IntegrationInput {
    pub connection: Option<String>,
    pub account_name: Option<String>,
    pub description: Option<String>,
    pub interval: Option<String>,
    pub tag_account_name: Option<bool>,
    pub enabled: Option<bool>,
    /// Settings to set (merged into the existing object).
    pub settings: BTreeMap<String, Value>,
}

fn merge_settings(
    ty: &str,
    current: &str,
    set: &BTreeMap<String, Value>,
) -> Result<String, ServiceError> {
    let mut doc = match serde_json::from_str::<Value>(current) {
        Ok(Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    for (k, v) in set {
        doc.insert(k.clone(), v.clone());
    }
    let value = if doc.is_empty() {
        Value::Null
    } else {
        Value::Object(doc)
    };
    crate::source::check_settings(ty, &value).map_err(|e| invalid(format!("settings: {e}")))?;
    Ok(value.to_string())
}

/// Adds an integration on a stored connection.
pub fn add_integration(
    store: &mut Store,
    name: &str,
    input: IntegrationInput,
) -> Result<IntegrationView, ServiceError> {
    if name.trim().is_empty() {
        return Err(invalid("the integration name must not be empty"));
    }
    if store.integration(name)?.is_some() {
        return Err(ServiceError::Exists {
            what: "integration",
            name: name.to_owned(),
        });
    }
    let conn_name = input
        .connection
        .as_deref()
        .ok_or_else(|| invalid("an integration needs --connection"))?;
    let connection = get_connection(store, conn_name)?;
    let interval = match &input.interval {
        Some(text) => Interval::parse(text).map_err(invalid)?,
        None => Interval::Every(std::time::Duration::from_secs(3600)),
    };
    let now = crate::store::now();
    let enabled = input.enabled.unwrap_or(true);
    let row = IntegrationRow {
        name: name.to_owned(),
        connection_key: Some(connection.key.clone()),
        account_name: input.account_name,
        description: input.description,
        interval: interval.to_string(),
        tag_account_name: input.tag_account_name.unwrap_or(false),
        enabled,
        disabled_reason: (!enabled).then(|| "disabled by a user".to_owned()),
        settings: merge_settings(&connection.ty, "null", &input.settings)?,
        created_at: now.clone(),
        updated_at: now,
        managed_by: MANAGED_BY_CLI.to_owned(),
    };
    store.insert_integration(&row)?;
    integration_view(store, &row)
}

fn get_integration(store: &Store, name: &str) -> Result<IntegrationRow, ServiceError> {
    store
        .integration(name)?
        .ok_or_else(|| ServiceError::UnknownIntegration(name.to_owned()))
}

/// Which integrations to list.
#[derive(Debug, Clone)]
pub struct IntegrationFilter {
    /// A connection's name or key.
    pub connection: Option<String>,
    pub enabled: Option<bool>,
    /// Case-insensitive, over name, account name and description.
    pub search: Option<String>,
    /// 1-based.
    pub page: usize,
    pub size: usize,
}

impl Default for IntegrationFilter {
    fn default() -> Self {
        IntegrationFilter {
            connection: None,
            enabled: None,
            search: None,
            page: 1,
            size: 50,
        }
    }
}

/// Lists integrations matching a filter, one page.
pub fn find_integrations(
    store: &Store,
    filter: &IntegrationFilter,
) -> Result<Page<IntegrationView>, ServiceError> {
    let connection_key = match &filter.connection {
        Some(name) => Some(get_connection(store, name)?.key),
        None => None,
    };
    let search = filter.search.as_deref().map(str::to_lowercase);
    let matches = |text: &Option<String>, s: &str| {
        text.as_deref()
            .is_some_and(|t| t.to_lowercase().contains(s))
    };
    let matching: Vec<IntegrationRow> = store
        .integrations()?
        .into_iter()
        .filter(|i| connection_key.is_none() || i.connection_key == connection_key)
        .filter(|i| filter.enabled.is_none_or(|e| i.enabled == e))
        .filter(|i| {
            search.as_deref().is_none_or(|s| {
                i.name.to_lowercase().contains(s)
                    || matches(&i.account_name, s)
                    || matches(&i.description, s)
            })
        })
        .collect();
    // Connection names in one read, not one query per integration.
    let names: std::collections::HashMap<String, String> = store
        .connections()?
        .into_iter()
        .map(|c| (c.key, c.name))
        .collect();
    let page = paginate(matching, filter.page, filter.size);
    Ok(Page {
        items: page
            .items
            .iter()
            .map(|row| {
                let name = row
                    .connection_key
                    .as_ref()
                    .and_then(|k| names.get(k))
                    .cloned();
                view_of(row, name)
            })
            .collect(),
        total: page.total,
        page: page.page,
        size: page.size,
    })
}

/// One page (1-based) of `all`.
pub(crate) fn paginate<T>(all: Vec<T>, page: usize, size: usize) -> Page<T> {
    let page = page.max(1);
    let size = size.max(1);
    let total = all.len();
    let items = all
        .into_iter()
        .skip((page - 1).saturating_mul(size))
        .take(size)
        .collect();
    Page {
        items,
        total,
        page,
        size,
    }
}

pub fn show_integration(store: &Store, name: &str) -> Result<IntegrationView, ServiceError> {
    integration_view(store, &get_integration(store, name)?)
}

pub fn update_integration(
    store: &mut Store,
    name: &str,
    input: IntegrationInput,
) -> Result<IntegrationView, ServiceError> {
    let mut row = get_integration(store, name)?;
    if let Some(conn) = &input.connection {
        row.connection_key = Some(get_connection(store, conn)?.key);
    }
    if let Some(v) = input.account_name {
        row.account_name = Some(v);
    }
    if let Some(v) = input.description {
        row.description = Some(v);
    }
    if let Some(text) = &input.interval {
        row.interval = Interval::parse(text).map_err(invalid)?.to_string();
    }
    if let Some(v) = input.tag_account_name {
        row.tag_account_name = v;
    }
    if let Some(enabled) = input.enabled {
        if enabled && row.connection_key.is_none() {
            return Err(invalid(format!(
                "integration {name:?} has no connection (it was deleted); pass --connection CONN to enable it"
            )));
        }
        row.enabled = enabled;
        row.disabled_reason = (!enabled).then(|| "disabled by a user".to_owned());
    }
    if !input.settings.is_empty() {
        let ty = match &row.connection_key {
            Some(key) => get_connection(store, key)?.ty,
            None => String::new(),
        };
        row.settings = merge_settings(&ty, &row.settings, &input.settings)?;
    }
    row.updated_at = crate::store::now();
    store.update_integration(&row)?;
    integration_view(store, &row)
}

pub fn delete_integration(store: &mut Store, name: &str) -> Result<(), ServiceError> {
    if store.delete_integration(name)? {
        Ok(())
    } else {
        Err(ServiceError::UnknownIntegration(name.to_owned()))
    }
}

/// The stored integration `name` ready to run: its config and its
/// connection with secrets decrypted. `Ok(None)` if no such integration is
/// stored. Disabled integrations and connections are refused.
pub fn resolve_stored(
    store: &Store,
    master: impl FnOnce() -> Result<MasterKey, ServiceError>,
    name: &str,
) -> Result<Option<(IntegrationConfig, ResolvedConnection)>, ServiceError> {
    let Some(row) = store.integration(name)? else {
        return Ok(None);
    };
    if !row.enabled {
        return Err(ServiceError::IntegrationDisabled {
            integration: row.name,
            reason: row.disabled_reason,
        });
    }
    let Some(key) = &row.connection_key else {
        return Err(ServiceError::IntegrationDisabled {
            integration: row.name,
            reason: Some(CONNECTION_DELETED.to_owned()),
        });
    };
    let connection = get_connection(store, key)?;
    if connection.disabled {
        return Err(ServiceError::ConnectionDisabled {
            connection: connection.name,
            reason: connection.disabled_reason,
        });
    }
    let ty = find_type(&connection.ty)?;
    let secrets = to_secrets(ty, &decrypt_fields(&master()?, &connection)?);
    let interval = Interval::parse(&row.interval).unwrap_or(Interval::Disabled);
    let settings = serde_json::from_str(&row.settings).unwrap_or(Value::Null);
    Ok(Some((
        IntegrationConfig {
            name: row.name,
            connection: connection.name.clone(),
            account_name: row.account_name,
            description: row.description,
            interval,
            tag_account_name: row.tag_account_name,
            enabled: row.enabled,
            settings,
        },
        ResolvedConnection {
            name: connection.name,
            ty,
            secrets,
            http: crate::config::http_config(
                connection.requests_per_second,
                connection
                    .timeout_ms
                    .map(|ms| Duration::from_millis(ms.into())),
            ),
        },
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn circleci() -> &'static ConnectionType {
        connection_type("circleci").expect("circleci")
    }

    fn error(text: &str) -> String {
        match parse_secrets(circleci(), text) {
            Err(e) => e.to_string(),
            Ok(_) => String::new(),
        }
    }

    #[test]
    fn requests_carrying_secrets_do_not_debug_them() {
        let secrets = r#"{"api_token": "debug-leak-0123456789"}"#.to_owned();
        let new = NewConnection {
            name: "ci".into(),
            key: None,
            ty: "circleci".into(),
            description: None,
            secrets_json: secrets.clone(),
            http: HttpOverrides::default(),
            disabled: false,
        };
        let update = ConnectionUpdate {
            secrets_json: Some(secrets),
            ..ConnectionUpdate::default()
        };
        for shown in [format!("{new:?}"), format!("{update:?}")] {
            assert!(!shown.contains("debug-leak"), "{shown}");
            assert!(shown.contains(MASK), "{shown}");
        }
    }

    #[test]
    fn secrets_are_checked_against_the_type_and_defaults_applied() {
        let fields = parse_secrets(circleci(), r#"{"api_token": " t0k "}"#).expect("valid");
        assert_eq!(fields.get("api_token").map(String::as_str), Some("t0k"));
        assert_eq!(
            fields.get("host").map(String::as_str),
            Some("https://circleci.com")
        );
        let secrets = to_secrets(circleci(), &fields);
        assert_eq!(secrets.secret("api_token").map(Secret::expose), Some("t0k"));
        assert!(secrets.plain("api_token").is_none());
        assert_eq!(secrets.plain("host"), Some("https://circleci.com"));

        assert!(error(r#"{"host": "h"}"#).contains("api_token: is required"));
        let unknown = error(r#"{"api_token": "x", "token": "s3cr3t-value"}"#);
        assert!(unknown.contains("no field \"token\""), "{unknown}");
        assert!(!unknown.contains("s3cr3t-value"), "{unknown}");
        let typed = error(r#"{"api_token": 12345678}"#);
        assert!(typed.contains("api_token: must be a string"), "{typed}");
        assert!(!typed.contains("12345678"), "{typed}");
        let broken = error(r#"{"api_token": "s3cr3t-value"#);
        assert!(broken.contains("invalid JSON"), "{broken}");
        assert!(!broken.contains("s3cr3t-value"), "{broken}");
        assert!(error("[1]").contains("not a JSON object"));
    }

    #[test]
    fn test_errors_never_hold_the_secret() {
        let mut secrets = Secrets::default();
        secrets
            .sensitive
            .insert("api_token".into(), Secret::new("s3cr3t-value"));
        assert_eq!(
            scrub("bad s3cr3t-value here", &secrets),
            format!("bad {MASK} here")
        );
    }
}
