//! Fan-out helpers shared by source steps: run many requests with bounded
//! concurrency, then settle their results into what the step emits and the
//! error it ends with. What differs between sources (which HTTP errors stop
//! the whole run) is passed in.

use std::future::Future;

use futures::stream::{self, StreamExt};

use super::dag::{StepError, StepScope};
use super::http::HttpError;

/// Runs `f` over `items`, at most `concurrency` at once.
pub async fn fan_out<T, R, F, Fut>(items: Vec<T>, concurrency: usize, f: F) -> Vec<R>
where
    F: Fn(T) -> Fut,
    Fut: Future<Output = R>,
{
    stream::iter(items)
        .map(f)
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await
}

/// The step error for an HTTP error; `fatal` (the source's rule, e.g. a
/// rejected token) stops the whole run, anything else only the step.
pub fn step_error(e: &HttpError, fatal: fn(&HttpError) -> bool) -> StepError {
    StepError {
        message: e.to_string(),
        fatal: fatal(e),
    }
}

/// Splits fan-out results: a 404 becomes a warning (the object went away or
/// the token cannot see it; its data is kept), any other error fails the
/// step after its successes are emitted. Successes come back sorted by label.
pub fn settle<T>(
    s: &StepScope<'_>,
    results: Vec<(String, Result<T, HttpError>)>,
    fatal: fn(&HttpError) -> bool,
) -> (Vec<(String, T)>, Option<StepError>) {
    let mut ok = Vec::new();
    let mut errors: Vec<HttpError> = Vec::new();
    for (label, result) in results {
        match result {
            Ok(value) => ok.push((label, value)),
            Err(e) if e.is_not_found() => s.warn(format!(
                "{label}: not found (404); it was deleted or the token cannot see it, so its data is kept as it was"
            )),
            Err(e) => errors.push(e),
        }
    }
    ok.sort_by(|a, b| a.0.cmp(&b.0));
    let error = errors.first().map(|first| {
        let mut err = step_error(first, fatal);
        if errors.len() > 1 {
            err.message = format!(
                "{} (and {} more failed requests)",
                err.message,
                errors.len() - 1
            );
        }
        err.fatal = errors.iter().any(fatal);
        err
    });
    (ok, error)
}

/// The step's result from its settled error.
pub fn finish(error: Option<StepError>) -> Result<(), StepError> {
    error.map_or(Ok(()), Err)
}
