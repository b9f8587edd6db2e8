//! Steps as a DAG (petgraph). Each step declares its id, the `_type`s it
//! produces and the steps it depends on. Ready steps run concurrently
//! (bounded); a step whose dependency did not succeed is skipped, so its types
//! stay partial. What a step emits is validated against the schema when the
//! step ends; bad objects become problems on the step.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use petgraph::algo::toposort;
use petgraph::graph::DiGraph;
use tracing::Instrument;

use crate::graph::{Collected, Entity, Relationship, Schema};
use crate::run::{StepOutcome, StepStatus};
use crate::source::http::RequestStats;

/// Why a step failed. `fatal` errors (a rejected token) stop the whole run:
/// no further step is started.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct StepError {
    pub message: String,
    pub fatal: bool,
}

impl StepError {
    pub fn new(message: impl Into<String>) -> Self {
        StepError {
            message: message.into(),
            fatal: false,
        }
    }
}

/// The body of a step: borrows the source's context and the step's scope.
pub type StepFn<C> = for<'a> fn(&'a C, &'a StepScope<'a>) -> BoxFuture<'a, Result<(), StepError>>;

/// A step of a source.
pub struct Step<C> {
    pub id: &'static str,
    /// Entity and relationship `_type`s this step produces.
    pub produces: &'static [&'static str],
    pub depends_on: &'static [&'static str],
    pub run: StepFn<C>,
}

/// Something to tell a terminal while a run goes on.
#[derive(Debug, Clone)]
pub enum ProgressEvent {
    StepStarted { id: String },
    StepFinished(StepOutcome),
}

pub type Progress = Arc<dyn Fn(ProgressEvent) + Send + Sync>;

/// A problem with the step declarations themselves (a programming error,
/// caught by a test of every source).
#[derive(Debug, thiserror::Error)]
pub enum DagError {
    #[error("step {step:?} depends on unknown step {dependency:?}")]
    UnknownDependency { step: String, dependency: String },
    #[error("step {0:?} is declared twice")]
    DuplicateStep(String),
    #[error("steps form a cycle through {0:?}")]
    Cycle(String),
    #[error("step {step:?} produces {ty:?}, which graph-schema/ does not declare")]
    UnknownType { step: String, ty: String },
}

/// Checks declarations: unique ids, known dependencies, no cycle, declared types.
/// Returns the steps in a topological order.
pub fn check_steps<C>(steps: &[Step<C>], schema: &Schema) -> Result<Vec<usize>, DagError> {
    let mut graph = DiGraph::<usize, ()>::new();
    let mut nodes = BTreeMap::new();
    for (i, step) in steps.iter().enumerate() {
        if nodes.insert(step.id, graph.add_node(i)).is_some() {
            return Err(DagError::DuplicateStep(step.id.to_owned()));
        }
        for ty in step.produces {
            if !schema.entities.contains_key(*ty) && !schema.relationships.contains_key(*ty) {
                return Err(DagError::UnknownType {
                    step: step.id.to_owned(),
                    ty: (*ty).to_owned(),
                });
            }
        }
    }
    for step in steps {
        for dep in step.depends_on {
            let Some(&from) = nodes.get(dep) else {
                return Err(DagError::UnknownDependency {
                    step: step.id.to_owned(),
                    dependency: (*dep).to_owned(),
                });
            };
            graph.add_edge(from, nodes[step.id], ());
        }
    }
    toposort(&graph, None)
        .map(|order| order.into_iter().map(|n| graph[n]).collect())
        .map_err(|cycle| DagError::Cycle(steps[graph[cycle.node_id()]].id.to_owned()))
}

/// Shared state of one run: the schema and the graph collected so far.
pub struct RunState {
    schema: Arc<Schema>,
    graph: Mutex<Collected>,
}

impl RunState {
    pub fn new(schema: Arc<Schema>) -> Self {
        RunState {
            schema,
            graph: Mutex::new(Collected::new()),
        }
    }

    pub fn into_graph(self) -> Collected {
        self.graph
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn graph(&self) -> MutexGuard<'_, Collected> {
        self.graph.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Default)]
struct Buffer {
    entities: Vec<Entity>,
    relationships: Vec<Relationship>,
    warnings: Vec<String>,
}

/// What a running step sees: the graph of the steps before it, a buffer for
/// what it emits, and its request counters.
pub struct StepScope<'a> {
    pub id: &'static str,
    pub stats: RequestStats,
    state: &'a RunState,
    buffer: Mutex<Buffer>,
}

impl<'a> StepScope<'a> {
    fn new(id: &'static str, state: &'a RunState) -> Self {
        StepScope {
            id,
            stats: RequestStats::default(),
            state,
            buffer: Mutex::new(Buffer::default()),
        }
    }

    fn buffer(&self) -> MutexGuard<'_, Buffer> {
        self.buffer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn entity(&self, entity: Entity) {
        self.buffer().entities.push(entity);
    }

    pub fn relationship(&self, rel: Relationship) {
        self.buffer().relationships.push(rel);
    }

    /// Something was missing but the step went on: its types become partial.
    pub fn warn(&self, message: impl Into<String>) {
        let message = message.into();
        tracing::warn!(step = self.id, "{message}");
        self.buffer().warnings.push(message);
    }

    /// The graph collected by the steps that finished before this one.
    pub fn graph(&self) -> MutexGuard<'_, Collected> {
        self.state.graph()
    }

    /// Validates what the step emitted and adds it to the run's graph:
    /// entities first, then relationships (whose endpoints must be in the graph).
    fn flush(&self, outcome: &mut StepOutcome) {
        let buffer = std::mem::take(&mut *self.buffer());
        outcome.warnings.extend(buffer.warnings);
        let schema = &self.state.schema;
        let mut graph = self.state.graph();
        for entity in buffer.entities {
            if let Err(problem) = schema.validate_entity(&entity) {
                tracing::warn!(step = self.id, key = %problem.key, "entity refused: {}", problem.reason);
                outcome.problems.push(problem);
                continue;
            }
            match graph.insert_entity(entity) {
                Ok(()) => outcome.entities += 1,
                Err(dup) => outcome.duplicates.push(dup.into()),
            }
        }
        for rel in buffer.relationships {
            let checked =
                schema.validate_relationship(&rel, |key| graph.entity(key).map(|e| &*e.ty));
            if let Err(problem) = checked {
                tracing::warn!(step = self.id, key = %problem.key, "relationship refused: {}", problem.reason);
                outcome.problems.push(problem);
                continue;
            }
            match graph.insert_relationship(rel) {
                Ok(()) => outcome.relationships += 1,
                Err(dup) => outcome.duplicates.push(dup.into()),
            }
        }
    }
}

/// Runs every step once, respecting dependencies, at most `concurrency` at a
/// time. Returns the outcome of each step in declaration order.
pub async fn execute<C: Sync>(
    steps: &[Step<C>],
    cx: &C,
    state: &RunState,
    concurrency: usize,
    progress: Option<&Progress>,
) -> Vec<StepOutcome> {
    let concurrency = concurrency.max(1);
    let mut outcomes: Vec<Option<StepOutcome>> = vec![None; steps.len()];
    let mut started = vec![false; steps.len()];
    let mut running = FuturesUnordered::new();
    let mut stop = false;
    let index: BTreeMap<&str, usize> = steps.iter().enumerate().map(|(i, s)| (s.id, i)).collect();

    loop {
        // Skip steps whose dependencies ended without success; start ready ones.
        let mut changed = true;
        while changed {
            changed = false;
            for (i, step) in steps.iter().enumerate() {
                if started[i] {
                    continue;
                }
                let deps: Vec<Option<&StepOutcome>> = step
                    .depends_on
                    .iter()
                    .map(|d| index.get(d).and_then(|&j| outcomes[j].as_ref()))
                    .collect();
                let failed_dep = step
                    .depends_on
                    .iter()
                    .zip(&deps)
                    .find(|(_, o)| o.is_some_and(|o| o.status != StepStatus::Success));
                if stop || failed_dep.is_some() {
                    let reason = match failed_dep {
                        Some((dep, _)) => format!("skipped: step {dep:?} did not succeed"),
                        None => "skipped: the run stopped after a fatal error".to_owned(),
                    };
                    let mut outcome = StepOutcome::new(step.id, produces(step));
                    outcome.status = StepStatus::Skipped;
                    outcome.error = Some(reason);
                    if let Some(p) = progress {
                        p(ProgressEvent::StepFinished(outcome.clone()));
                    }
                    outcomes[i] = Some(outcome);
                    started[i] = true;
                    changed = true;
                } else if deps.iter().all(Option::is_some) && running.len() < concurrency {
                    started[i] = true;
                    changed = true;
                    if let Some(p) = progress {
                        p(ProgressEvent::StepStarted {
                            id: step.id.to_owned(),
                        });
                    }
                    running.push(run_step(i, step, cx, state));
                }
            }
        }
        let Some((i, outcome, fatal)) = running.next().await else {
            break;
        };
        stop |= fatal;
        if let Some(p) = progress {
            p(ProgressEvent::StepFinished(outcome.clone()));
        }
        outcomes[i] = Some(outcome);
    }
    outcomes
        .into_iter()
        .zip(steps)
        .map(|(o, s)| {
            o.unwrap_or_else(|| {
                let mut outcome = StepOutcome::new(s.id, produces(s));
                outcome.status = StepStatus::Skipped;
                outcome.error = Some("skipped: never became ready".to_owned());
                outcome
            })
        })
        .collect()
}

fn produces<C>(step: &Step<C>) -> Vec<String> {
    step.produces.iter().map(|t| (*t).to_owned()).collect()
}

async fn run_step<'a, C: Sync>(
    i: usize,
    step: &'a Step<C>,
    cx: &'a C,
    state: &'a RunState,
) -> (usize, StepOutcome, bool) {
    let span = tracing::info_span!("step", step = step.id);
    let scope = StepScope::new(step.id, state);
    let started = Instant::now();
    let result = (step.run)(cx, &scope).instrument(span).await;
    let mut outcome = StepOutcome::new(step.id, produces(step));
    scope.flush(&mut outcome);
    outcome.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    outcome.requests = scope.stats.requests();
    outcome.retries = scope.stats.retries();
    outcome.throttled = scope.stats.throttled();
    outcome.waited_ms = scope.stats.waited_ms();
    outcome.not_modified = scope.stats.not_modified();
    outcome.reset_wait_ms = scope.stats.reset_wait_ms();
    let fatal = match result {
        Ok(()) if outcome.warnings.is_empty() && outcome.problems.is_empty() => false,
        Ok(()) => {
            outcome.status = StepStatus::Partial;
            false
        }
        Err(e) => {
            tracing::warn!(step = step.id, "step failed: {}", e.message);
            outcome.status = StepStatus::Failed;
            outcome.error = Some(e.message);
            e.fatal
        }
    };
    (i, outcome, fatal)
}

/// Every `_type` some step of the list produces.
/// The `_type`s `source` declares in graph-schema that no step produces
/// (a source's steps must cover its schema; checked by each source's tests).
pub fn unproduced_types<C>(steps: &[Step<C>], schema: &Schema, source: &str) -> Vec<String> {
    let produced = produced_types(steps);
    schema
        .entity_types_of(source)
        .map(|d| &d.ty)
        .chain(schema.relationship_types_of(source).map(|d| &d.ty))
        .filter(|ty| !produced.contains(ty.as_str()))
        .cloned()
        .collect()
}

pub fn produced_types<C>(steps: &[Step<C>]) -> BTreeSet<&'static str> {
    steps
        .iter()
        .flat_map(|s| s.produces.iter().copied())
        .collect()
}
