//! What a sync run reports: per-step outcomes, the run's status and its
//! change counts. Shared by sources (which fill it), the store (which records
//! it) and the CLI (which prints it).

use std::collections::BTreeSet;

use serde::Serialize;

use crate::graph::{Duplicate, Problem, Schema};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Ran to the end; its types are complete.
    Success,
    /// Ran, but some of what it should have collected is missing (a warning
    /// such as an organisation answering 404); its types are kept as they were.
    Partial,
    /// Failed; its types are kept as they were.
    Failed,
    /// Not run because a step it depends on did not succeed.
    Skipped,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Success => "success",
            StepStatus::Partial => "partial",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Success,
    Partial,
    Failed,
    Aborted,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Success => "success",
            RunStatus::Partial => "partial",
            RunStatus::Failed => "failed",
            RunStatus::Aborted => "aborted",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "running" => RunStatus::Running,
            "success" => RunStatus::Success,
            "partial" => RunStatus::Partial,
            "failed" => RunStatus::Failed,
            "aborted" => RunStatus::Aborted,
            _ => return None,
        })
    }

    /// The exit code of `sextant sync`: 0 success, 3 partial, 1 otherwise.
    pub fn exit_code(self) -> i32 {
        match self {
            RunStatus::Success => 0,
            RunStatus::Partial => 3,
            _ => 1,
        }
    }
}

/// A duplicate key as recorded on a step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DuplicateReport {
    pub key: String,
    pub kept: serde_json::Value,
    pub rejected: serde_json::Value,
}

impl From<Duplicate> for DuplicateReport {
    fn from(d: Duplicate) -> Self {
        DuplicateReport {
            key: d.key,
            kept: d.kept,
            rejected: d.rejected,
        }
    }
}

/// The outcome of one step of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepOutcome {
    pub id: String,
    pub status: StepStatus,
    /// The `_type`s the step produces (entities and relationships).
    pub produces: Vec<String>,
    pub entities: u64,
    pub relationships: u64,
    pub requests: u64,
    pub retries: u64,
    /// 429 responses received (filled by the step executor from its
    /// `RequestStats`).
    pub throttled: u64,
    /// Time spent waiting on rate limits (our limiter, `Retry-After` and
    /// rate-limit window resets).
    pub waited_ms: u64,
    /// `304 Not Modified` answers (conditional requests; bodies replayed).
    #[serde(skip_serializing_if = "is_zero")]
    pub not_modified: u64,
    /// Of `waited_ms`, the time spent waiting for the API's rate-limit
    /// window to reset.
    #[serde(skip_serializing_if = "is_zero")]
    pub reset_wait_ms: u64,
    pub duration_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<Problem>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub duplicates: Vec<DuplicateReport>,
}

impl StepOutcome {
    pub fn new(id: &str, produces: Vec<String>) -> Self {
        StepOutcome {
            id: id.to_owned(),
            status: StepStatus::Success,
            produces,
            entities: 0,
            relationships: 0,
            requests: 0,
            retries: 0,
            throttled: 0,
            waited_ms: 0,
            not_modified: 0,
            reset_wait_ms: 0,
            duration_ms: 0,
            error: None,
            warnings: Vec::new(),
            problems: Vec::new(),
            duplicates: Vec::new(),
        }
    }
}

/// Created, updated and deleted objects of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ChangeCounts {
    pub created: u64,
    pub updated: u64,
    pub deleted: u64,
}

/// The `_type`s whose producing steps all succeeded: the only types a run may
/// delete from. Append-only types are never complete.
pub fn complete_types(schema: &Schema, steps: &[StepOutcome]) -> BTreeSet<String> {
    let mut complete = BTreeSet::new();
    let mut incomplete = BTreeSet::new();
    for step in steps {
        for ty in &step.produces {
            if step.status == StepStatus::Success {
                complete.insert(ty.clone());
            } else {
                incomplete.insert(ty.clone());
            }
        }
    }
    complete
        .into_iter()
        .filter(|ty| !incomplete.contains(ty))
        .filter(|ty| !schema.entities.get(ty).is_some_and(|d| d.append_only))
        .collect()
}

/// The run's status from its steps: success when all succeeded, failed when
/// none did, partial otherwise.
pub fn run_status(steps: &[StepOutcome]) -> RunStatus {
    let count = |f: fn(StepStatus) -> bool| steps.iter().filter(|s| f(s.status)).count();
    if count(|s| s == StepStatus::Success) == steps.len() {
        RunStatus::Success
    } else if count(|s| matches!(s, StepStatus::Success | StepStatus::Partial)) == 0 {
        // Nothing was collected: every step failed or was skipped.
        RunStatus::Failed
    } else {
        // Some data came in (partial steps too): what is complete was
        // committed, the rest kept as it was.
        RunStatus::Partial
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}
