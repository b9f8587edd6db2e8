//! Provisioning: connections and integrations declared in the config file
//! are created or updated in the store at start (`sync`, `daemon`,
//! `config apply`), so every run, the daemon and the API see one list.
//!
//! The config is the truth for what it declares: a definition it declares is
//! written (and marked `managed_by: config`) whenever it differs from the
//! stored one, taking over a same-named definition made with the CLI (with a
//! warning). Definitions that left the config are kept, never deleted: the
//! report names them so an operator can delete them on purpose. Every secret
//! reference is read BEFORE anything is written, and everything is written
//! in one transaction: an unreadable reference changes nothing.

use std::collections::BTreeMap;

use serde::Serialize;

use super::crypto::MasterKey;
use super::service::{
    MANAGED_BY_CLI, MANAGED_BY_CONFIG, ServiceError, decrypt_fields, encrypt_fields,
};
use crate::config::{Config, ConnectionConfig, IntegrationConfig};
use crate::store::{ConnectionRow, IntegrationRow, Store, Upsert};

/// What provisioning did to one definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    Created,
    Updated,
    /// Existed (made with the CLI or API) and is now managed by the config.
    TakenOver,
    Unchanged,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ProvisionReport {
    /// (name, change) per declared connection, in config order.
    pub connections: Vec<(String, Change)>,
    pub integrations: Vec<(String, Change)>,
    /// Stored `config`-managed definitions the config no longer declares.
    pub orphaned_connections: Vec<String>,
    pub orphaned_integrations: Vec<String>,
}

impl ProvisionReport {
    pub fn changed(&self) -> usize {
        self.connections
            .iter()
            .chain(&self.integrations)
            .filter(|(_, c)| *c != Change::Unchanged)
            .count()
    }
}

/// Creates or updates every connection and integration the config declares.
/// `master` is asked for only when the config declares a connection.
pub fn provision(
    store: &mut Store,
    master: impl FnOnce() -> Result<MasterKey, ServiceError>,
    config: &Config,
) -> Result<ProvisionReport, ServiceError> {
    let mut report = ProvisionReport::default();
    let master = if config.connections.is_empty() {
        None
    } else {
        Some(master()?)
    };
    let now = crate::store::now();
    let mut connection_writes = Vec::new();
    let mut keys = BTreeMap::new();
    for declared in &config.connections {
        let stored = store.connection(&declared.name)?;
        let (write, change) = plan_connection(master.as_ref(), declared, stored, &now)?;
        keys.insert(declared.name.clone(), declared.key.clone());
        if let Some(write) = write {
            connection_writes.push(write);
        }
        report.connections.push((declared.name.clone(), change));
    }
    let mut integration_writes = Vec::new();
    for declared in &config.integrations {
        let connection_key = match keys.get(&declared.connection) {
            Some(key) => key.clone(),
            None => return Err(ServiceError::UnknownConnection(declared.connection.clone())),
        };
        let stored = store.integration(&declared.name)?;
        let (write, change) = plan_integration(declared, connection_key, stored, &now);
        if let Some(write) = write {
            integration_writes.push(write);
        }
        report.integrations.push((declared.name.clone(), change));
    }
    if !connection_writes.is_empty() || !integration_writes.is_empty() {
        store.write_definitions(&connection_writes, &integration_writes)?;
    }

    report.orphaned_connections = store
        .connections()?
        .into_iter()
        .filter(|c| c.managed_by == MANAGED_BY_CONFIG && config.connection(&c.name).is_none())
        .map(|c| c.name)
        .collect();
    report.orphaned_integrations = store
        .integrations()?
        .into_iter()
        .filter(|i| i.managed_by == MANAGED_BY_CONFIG && config.integration(&i.name).is_none())
        .map(|i| i.name)
        .collect();
    log_report(&report);
    Ok(report)
}

fn log_report(report: &ProvisionReport) {
    for (what, list) in [
        ("connection", &report.connections),
        ("integration", &report.integrations),
    ] {
        for (name, change) in list {
            match change {
                Change::Unchanged => {}
                Change::TakenOver => tracing::warn!(
                    "{what} {name:?} was made with the CLI and is also declared in the config file; the config's definition now applies (edit the config to change it)"
                ),
                Change::Created | Change::Updated => {
                    tracing::info!("{what} {name:?} {change:?} from the config file")
                }
            }
        }
    }
    for (what, list) in [
        ("connection", &report.orphaned_connections),
        ("integration", &report.orphaned_integrations),
    ] {
        for name in list {
            tracing::warn!(
                "{what} {name:?} came from the config file, which no longer declares it; it is kept (delete it with: sextant {what} delete {name})"
            );
        }
    }
}

/// The fields a declared connection stores: its plain values (with type
/// defaults) and its secrets, read from their references now.
fn declared_fields(declared: &ConnectionConfig) -> Result<BTreeMap<String, String>, ServiceError> {
    let secrets = declared.resolve().map_err(|e| {
        ServiceError::Invalid(format!(
            "config file: {e}; nothing was provisioned (set it, or fix the reference in the config file)"
        ))
    })?;
    let mut fields = secrets.plain.clone();
    for (name, secret) in &secrets.sensitive {
        fields.insert(name.clone(), secret.expose().to_owned());
    }
    Ok(fields)
}

fn plan_connection(
    master: Option<&MasterKey>,
    declared: &ConnectionConfig,
    stored: Option<ConnectionRow>,
    now: &str,
) -> Result<(Option<Upsert<ConnectionRow>>, Change), ServiceError> {
    let fields = declared_fields(declared)?;
    let master = master.ok_or_else(|| ServiceError::Invalid("no master key".to_owned()))?;
    let requests_per_second = declared.requests_per_second;
    let timeout_ms = declared.timeout.and_then(super::service::timeout_ms);
    let Some(mut row) = stored else {
        let row = ConnectionRow {
            secrets: encrypt_fields(master, &declared.key, &fields)?,
            key: declared.key.clone(),
            name: declared.name.clone(),
            ty: declared.ty.name.to_owned(),
            description: declared.description.clone(),
            disabled: false,
            disabled_reason: None,
            created_at: now.to_owned(),
            updated_at: now.to_owned(),
            last_test_at: None,
            last_test_succeeded: None,
            last_test_error: None,
            requests_per_second,
            timeout_ms,
            managed_by: MANAGED_BY_CONFIG.to_owned(),
        };
        return Ok((Some(Upsert::Insert(row)), Change::Created));
    };
    if row.key != declared.key || row.name != declared.name {
        return Err(ServiceError::Invalid(format!(
            "the config declares connection {:?} with key {:?}, but the stored connection {:?} has key {:?}; \
             give the config entry `key: {}` or delete the stored one",
            declared.name, declared.key, row.name, row.key, row.key
        )));
    }
    if row.ty != declared.ty.name {
        return Err(ServiceError::Invalid(format!(
            "the config declares connection {:?} of type {}, but it is stored with type {}; \
             delete it (sextant connection delete {}) or rename one of them",
            declared.name, declared.ty.name, row.ty, declared.name
        )));
    }
    let change = if row.managed_by == MANAGED_BY_CLI {
        Change::TakenOver
    } else {
        Change::Updated
    };
    let mut changed = row.managed_by != MANAGED_BY_CONFIG;
    if decrypt_fields(master, &row)? != fields {
        row.secrets = encrypt_fields(master, &row.key, &fields)?;
        row.last_test_at = None;
        row.last_test_succeeded = None;
        row.last_test_error = None;
        changed = true;
    }
    changed |= row.description != declared.description
        || row.requests_per_second != requests_per_second
        || row.timeout_ms != timeout_ms;
    if !changed {
        return Ok((None, Change::Unchanged));
    }
    row.description = declared.description.clone();
    row.requests_per_second = requests_per_second;
    row.timeout_ms = timeout_ms;
    row.managed_by = MANAGED_BY_CONFIG.to_owned();
    row.updated_at = now.to_owned();
    Ok((Some(Upsert::Update(row)), change))
}

fn plan_integration(
    declared: &IntegrationConfig,
    connection_key: String,
    stored: Option<IntegrationRow>,
    now: &str,
) -> (Option<Upsert<IntegrationRow>>, Change) {
    let disabled_reason = (!declared.enabled).then(|| "disabled in the config file".to_owned());
    let wanted = IntegrationRow {
        name: declared.name.clone(),
        connection_key: Some(connection_key),
        account_name: declared.account_name.clone(),
        description: declared.description.clone(),
        interval: declared.interval.to_string(),
        tag_account_name: declared.tag_account_name,
        enabled: declared.enabled,
        disabled_reason,
        settings: declared.settings.to_string(),
        created_at: now.to_owned(),
        updated_at: now.to_owned(),
        managed_by: MANAGED_BY_CONFIG.to_owned(),
    };
    let Some(row) = stored else {
        return (Some(Upsert::Insert(wanted)), Change::Created);
    };
    let same = IntegrationRow {
        created_at: row.created_at.clone(),
        updated_at: row.updated_at.clone(),
        ..wanted.clone()
    };
    if same == row {
        return (None, Change::Unchanged);
    }
    let change = if row.managed_by == MANAGED_BY_CLI {
        Change::TakenOver
    } else {
        Change::Updated
    };
    (
        Some(Upsert::Update(IntegrationRow {
            created_at: row.created_at,
            ..wanted
        })),
        change,
    )
}
