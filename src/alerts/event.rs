//! What alert rules look at: a change event from the outbox, or a system
//! event (a sync that failed, a connection test that started failing) that
//! delivery derives from the run and connection records. Both are JSON lines
//! of the same shape, told apart by `object` (`"system"` for system events).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::events::{ChangeEvent, FieldChange};

/// The two sequences a sink follows, each with its own cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    /// Change events of the outbox (`events` table, `seq` gap-free).
    Change,
    /// System events (`alert_system_events` table).
    System,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Change => "change",
            Stream::System => "system",
        }
    }
}

/// `object` of a system event: always `"system"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SystemObject {
    System,
}

/// Actions of system events.
pub const SYNC_FAILED: &str = "sync_failed";
pub const SYNC_PARTIAL: &str = "sync_partial";
pub const CONNECTION_TEST_FAILED: &str = "connection_test_failed";
pub const CONNECTION_TEST_RECOVERED: &str = "connection_test_recovered";

/// `_type` of the system objects.
pub const SYNC_RUN_TYPE: &str = "sextant_sync_run";
pub const CONNECTION_TYPE: &str = "sextant_connection";

/// A system event: `{"seq","time","integration"?,"sync_id"?,"object":"system",
/// "action","_type","_class","_key","changes"?,"before"?,"after"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemEvent {
    pub seq: u64,
    pub time: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub integration: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sync_id: Option<i64>,
    pub object: SystemObject,
    pub action: String,
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

/// An event a rule is evaluated against.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum AlertEvent {
    Change(ChangeEvent),
    System(SystemEvent),
}

impl AlertEvent {
    /// Parses one JSON line: a system event when `object` is `"system"`,
    /// a change event otherwise.
    pub fn from_json(text: &str) -> Result<AlertEvent, serde_json::Error> {
        let value: Value = serde_json::from_str(text)?;
        if value.get("object").and_then(Value::as_str) == Some("system") {
            serde_json::from_value(value).map(AlertEvent::System)
        } else {
            serde_json::from_value(value).map(AlertEvent::Change)
        }
    }

    pub fn stream(&self) -> Stream {
        match self {
            AlertEvent::Change(_) => Stream::Change,
            AlertEvent::System(_) => Stream::System,
        }
    }

    pub fn seq(&self) -> u64 {
        match self {
            AlertEvent::Change(e) => e.seq,
            AlertEvent::System(e) => e.seq,
        }
    }

    pub fn object(&self) -> &str {
        match self {
            AlertEvent::Change(e) => e.object.as_str(),
            AlertEvent::System(_) => "system",
        }
    }

    pub fn action(&self) -> &str {
        match self {
            AlertEvent::Change(e) => e.action.as_str(),
            AlertEvent::System(e) => &e.action,
        }
    }

    pub fn ty(&self) -> &str {
        match self {
            AlertEvent::Change(e) => &e.ty,
            AlertEvent::System(e) => &e.ty,
        }
    }

    pub fn class(&self) -> &str {
        match self {
            AlertEvent::Change(e) => &e.class,
            AlertEvent::System(e) => &e.class,
        }
    }

    pub fn key(&self) -> &str {
        match self {
            AlertEvent::Change(e) => &e.key,
            AlertEvent::System(e) => &e.key,
        }
    }

    pub fn integration(&self) -> Option<&str> {
        match self {
            AlertEvent::Change(e) => Some(&e.integration),
            AlertEvent::System(e) => e.integration.as_deref(),
        }
    }

    pub fn after(&self) -> Option<&Value> {
        match self {
            AlertEvent::Change(e) => e.after.as_ref(),
            AlertEvent::System(e) => e.after.as_ref(),
        }
    }

    pub fn before(&self) -> Option<&Value> {
        match self {
            AlertEvent::Change(e) => e.before.as_ref(),
            AlertEvent::System(e) => e.before.as_ref(),
        }
    }

    pub fn changes(&self) -> Option<&BTreeMap<String, FieldChange>> {
        match self {
            AlertEvent::Change(e) => e.changes.as_ref(),
            AlertEvent::System(e) => e.changes.as_ref(),
        }
    }

    /// A short human label: the object's display name or name; for a
    /// relationship its endpoints (`circleci_project:2883238b… USES …:TOKEN`);
    /// else its key.
    pub fn label(&self) -> String {
        let object = self.after().or(self.before());
        let field = |name: &str| object.and_then(|o| o.get(name)).and_then(Value::as_str);
        if let Some(name) = field("displayName").or_else(|| field("name")) {
            return format!("{name:?}");
        }
        match (field("_fromEntityKey"), field("_toEntityKey")) {
            (Some(from), Some(to)) => {
                format!("{} {} {}", short_key(from), self.class(), short_key(to))
            }
            _ => self.key().to_owned(),
        }
    }
}

/// `type:id` with a long id cut to 8 characters; a key of more parts as
/// `…:last` (scoped keys end with the name that tells them apart).
fn short_key(key: &str) -> String {
    let parts: Vec<&str> = key.split(':').collect();
    match parts.as_slice() {
        [ty, id] if id.chars().count() > 12 => {
            format!("{ty}:{}…", id.chars().take(8).collect::<String>())
        }
        [_, _, .., last] if parts.len() > 2 => format!("…:{last}"),
        _ => key.to_owned(),
    }
}

impl From<ChangeEvent> for AlertEvent {
    fn from(e: ChangeEvent) -> Self {
        AlertEvent::Change(e)
    }
}

impl From<SystemEvent> for AlertEvent {
    fn from(e: SystemEvent) -> Self {
        AlertEvent::System(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_into_the_right_kind() {
        let change = r#"{"seq":1,"time":"t","integration":"a","sync_id":1,"action":"created","object":"entity","_type":"x","_class":"User","_key":"x:1","after":{"name":"n"}}"#;
        let system = r#"{"seq":2,"time":"t","object":"system","action":"sync_failed","_type":"sextant_sync_run","_class":"SyncRun","_key":"sextant_sync_run:3","sync_id":3,"integration":"a"}"#;
        let c = AlertEvent::from_json(change).expect("change event parses");
        let s = AlertEvent::from_json(system).expect("system event parses");
        assert_eq!(
            (c.stream(), c.object(), c.action()),
            (Stream::Change, "entity", "created")
        );
        assert_eq!(
            (s.stream(), s.object(), s.action()),
            (Stream::System, "system", "sync_failed")
        );
        assert_eq!(c.label(), "\"n\"");
        assert_eq!(s.label(), "sextant_sync_run:3");
        assert_eq!(
            short_key("circleci_project:2883238b-f086-4961"),
            "circleci_project:2883238b…"
        );
        assert_eq!(
            short_key("circleci_context_environment_variable:88c2:GITHUB_TOKEN"),
            "…:GITHUB_TOKEN"
        );
        assert_eq!(short_key("plain"), "plain");
        // Serialising gives the same line back.
        let back: Value = serde_json::to_value(&s).expect("serialises");
        assert_eq!(back, serde_json::from_str::<Value>(system).expect("json"));
    }
}
