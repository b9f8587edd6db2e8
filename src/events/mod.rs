//! Change events: the outbox rows a sync writes in the same transaction as
//! its graph changes, in the JSON-lines shape of DESIGN.md.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Created,
    Updated,
    Deleted,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Created => "created",
            Action::Updated => "updated",
            Action::Deleted => "deleted",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    Entity,
    Relationship,
}

impl ObjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Entity => "entity",
            ObjectKind::Relationship => "relationship",
        }
    }
}

/// One field's change on an update.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldChange {
    pub old: Value,
    pub new: Value,
}

/// A change event. `changes` on updates, `before` on updates and deletes,
/// `after` on creates and updates. Events are read back from files by rule
/// authors, hence `Deserialize`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeEvent {
    pub seq: u64,
    /// RFC 3339, UTC.
    pub time: String,
    pub integration: String,
    pub sync_id: i64,
    pub action: Action,
    pub object: ObjectKind,
    #[serde(rename = "_type")]
    pub ty: String,
    #[serde(rename = "_class")]
    pub class: String,
    #[serde(rename = "_key")]
    pub key: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub changes: Option<BTreeMap<String, FieldChange>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub before: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub after: Option<Value>,
}
