//! Where alerts go: standard output, a JSON-lines file, or a webhook (JSON
//! POST signed with HMAC-SHA256, timeouts, retries with backoff, optional
//! Slack-compatible body). The webhook client is built here and only here.
//!
//! Invariant: the webhook secret and URL path never reach a log, an error or
//! `Debug`; errors name the sink and the URL's scheme and host only.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use hmac::{Hmac, KeyInit, Mac};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use serde::Serialize;
use serde_json::Value;
use sha2::Sha256;
use url::Url;

use super::event::{AlertEvent, Stream};
use super::rules::{
    Rule, Severity, StdoutFormat, WebhookConfig, WebhookFormat, WebhookUrl, url_origin,
};
use crate::connection::Secret;

/// Header carrying the delivery id (`sink/stream/seq/rule`), stable across
/// retries and restarts so receivers can drop duplicates.
pub const DELIVERY_HEADER: &str = "x-sextant-delivery";
/// Header carrying the Unix time (seconds) the request was signed at.
pub const TIMESTAMP_HEADER: &str = "x-sextant-timestamp";
/// Header carrying `sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`.
pub const SIGNATURE_HEADER: &str = "x-sextant-signature";

/// The stable id of one alert at one sink.
pub fn delivery_id(sink: &str, stream: Stream, seq: u64, rule: &str) -> String {
    format!("{sink}/{}/{seq}/{rule}", stream.as_str())
}

/// The alert as sinks send it (the webhook's JSON body, a JSON line).
#[derive(Debug, Serialize)]
pub struct AlertPayload<'a> {
    pub id: String,
    pub rule: &'a str,
    pub severity: Severity,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<&'a str>,
    pub summary: String,
    pub sink: &'a str,
    pub stream: Stream,
    pub event: &'a AlertEvent,
}

impl<'a> AlertPayload<'a> {
    pub fn new(sink: &'a str, rule: &'a Rule, event: &'a AlertEvent) -> Self {
        AlertPayload {
            id: delivery_id(sink, event.stream(), event.seq(), &rule.name),
            rule: &rule.name,
            severity: rule.severity,
            description: rule.description.as_deref(),
            summary: summary(event),
            sink,
            stream: event.stream(),
            event,
        }
    }

    /// `[high] rule-name: summary`.
    pub fn text_line(&self) -> String {
        format!(
            "[{}] {}: {}",
            self.severity.as_str(),
            self.rule,
            self.summary
        )
    }

    pub fn json(&self) -> Result<String, SinkError> {
        serde_json::to_string(self)
            .map_err(|e| SinkError::new(format!("cannot encode alert {}: {e}", self.id)))
    }

    /// A Slack incoming-webhook body: `{"text": "…"}`.
    pub fn slack(&self) -> Result<String, SinkError> {
        let text = format!(
            "*[{}] {}*: {}",
            self.severity.as_str().to_uppercase(),
            self.rule,
            self.summary
        );
        serde_json::to_string(&serde_json::json!({ "text": text }))
            .map_err(|e| SinkError::new(format!("cannot encode alert {}: {e}", self.id)))
    }
}

fn short(v: &Value) -> String {
    let text = v.to_string();
    if text.chars().count() > 60 {
        format!("{}…", text.chars().take(60).collect::<String>())
    } else {
        text
    }
}

/// One line saying what happened: `created circleci_user "Dmitri" in acme`,
/// `updated circleci_job "test" in acme (status: "running" → "failed")`.
pub fn summary(event: &AlertEvent) -> String {
    let mut out = format!("{} {} {}", event.action(), event.ty(), event.label());
    if let Some(integration) = event.integration() {
        out.push_str(" in ");
        out.push_str(integration);
    }
    if let Some(changes) = event.changes().filter(|c| !c.is_empty()) {
        let parts: Vec<String> = changes
            .iter()
            .take(4)
            .map(|(field, c)| format!("{field}: {} → {}", short(&c.old), short(&c.new)))
            .collect();
        out.push_str(&format!(" ({})", parts.join(", ")));
    }
    if let Some(error) = event
        .after()
        .and_then(|a| a.get("error"))
        .and_then(Value::as_str)
    {
        out.push_str(": ");
        out.push_str(error);
    }
    out
}

/// Hex HMAC-SHA256 of `"<timestamp>.<body>"` under `secret`.
pub fn signature(secret: &Secret, timestamp: &str, body: &[u8]) -> Result<String, SinkError> {
    // HMAC takes keys of any length; the error exists only in the trait.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.expose().as_bytes())
        .map_err(|_| SinkError::new("cannot key HMAC-SHA256 with the webhook secret".into()))?;
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    let mut hex = String::with_capacity(bytes.len() * 2);
    for b in bytes.iter() {
        hex.push_str(&format!("{b:02x}"));
    }
    Ok(hex)
}

/// Why a delivery failed. The message names the sink's target in a form
/// safe to print (never a secret or a URL path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkError {
    pub message: String,
}

impl SinkError {
    fn new(message: String) -> Self {
        SinkError { message }
    }
}

impl fmt::Display for SinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SinkError {}

/// Where the stdout sink writes (the process's stdout, or anything else:
/// `sync --json` sends it to stderr, tests to a buffer).
pub type SharedWriter = Arc<Mutex<Box<dyn Write + Send>>>;

/// An opened sink for one delivery pass.
pub(crate) enum Target {
    Stdout {
        out: SharedWriter,
        format: StdoutFormat,
    },
    File {
        path: PathBuf,
    },
    Webhook(Box<Webhook>),
}

impl Target {
    /// Whether alerts go one request at a time (and are acknowledged one
    /// at a time) rather than as a written batch.
    pub(crate) fn one_by_one(&self) -> bool {
        matches!(self, Target::Webhook(_))
    }

    /// Writes a batch of alerts (stdout and file sinks).
    pub(crate) fn write_batch(&mut self, alerts: &[AlertPayload<'_>]) -> Result<(), SinkError> {
        match self {
            Target::Stdout { out, format } => {
                let mut text = String::new();
                for alert in alerts {
                    match format {
                        StdoutFormat::Text => text.push_str(&alert.text_line()),
                        StdoutFormat::Json => text.push_str(&alert.json()?),
                    }
                    text.push('\n');
                }
                let mut out = out.lock().map_err(|_| {
                    SinkError::new("standard output is unusable after a panic".into())
                })?;
                out.write_all(text.as_bytes())
                    .and_then(|()| out.flush())
                    .map_err(|e| SinkError::new(format!("cannot write to standard output: {e}")))
            }
            Target::File { path } => append_lines(path, alerts),
            Target::Webhook(hook) => Err(SinkError::new(format!(
                "webhook {} takes alerts one at a time; this is a bug",
                hook.shown
            ))),
        }
    }
}

/// Appends JSON lines and syncs them to disk before they are acknowledged.
fn append_lines(path: &Path, alerts: &[AlertPayload<'_>]) -> Result<(), SinkError> {
    let fail = |e: std::io::Error| {
        SinkError::new(format!(
            "cannot append to {}: {e}; check that its directory exists and is writable",
            path.display()
        ))
    };
    let mut text = String::new();
    for alert in alerts {
        text.push_str(&alert.json()?);
        text.push('\n');
    }
    let mut file: File = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(fail)?;
    file.write_all(text.as_bytes()).map_err(fail)?;
    file.sync_data().map_err(fail)
}

/// The one HTTP client of alert delivery: bounded connect time, no
/// redirects (a POST is not re-sent elsewhere), our user agent. Per-sink
/// timeouts apply per request.
pub(crate) fn http_client() -> Result<reqwest::Client, SinkError> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(120))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("sextant/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| {
            SinkError::new(format!(
                "cannot build the webhook HTTP client: {}",
                e.without_url()
            ))
        })
}

/// A webhook ready to post: URL and secret resolved for this pass.
pub(crate) struct Webhook {
    client: reqwest::Client,
    url: Url,
    secret: Secret,
    config: WebhookConfig,
    /// `https://host/…`, for messages.
    shown: String,
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &self.shown)
            .finish_non_exhaustive()
    }
}

enum Attempt {
    /// The sink cannot deliver anything as configured (URL, secret).
    Fatal(String),
    /// The receiver refused this alert (a 4xx that is not about the
    /// configuration): the answer to resend is the same, so it is not
    /// retried, and the operator may skip it.
    Refused(String),
    Transient(String, Option<Duration>),
}

/// Whether a 4xx answer says the sink is misconfigured (wrong address,
/// credentials or proxy: every alert would get it) rather than that the
/// receiver refuses this one alert. 405 and 410 belong here too: a wrong
/// path, or an endpoint that is gone (Slack answers 410 for an archived
/// channel), refuses every alert alike.
pub fn is_configuration_refusal(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::UNAUTHORIZED
            | StatusCode::FORBIDDEN
            | StatusCode::NOT_FOUND
            | StatusCode::METHOD_NOT_ALLOWED
            | StatusCode::PROXY_AUTHENTICATION_REQUIRED
            | StatusCode::GONE
    )
}

impl Webhook {
    /// Reads the URL (if a reference) and the secret now, at use.
    pub(crate) fn open(
        client: reqwest::Client,
        config: &WebhookConfig,
    ) -> Result<Webhook, SinkError> {
        let url = match &config.url {
            WebhookUrl::Literal(url) => url.clone(),
            WebhookUrl::Reference(r) => {
                let value = r
                    .resolve()
                    .map_err(|e| SinkError::new(format!("webhook url: {e}")))?;
                match Url::parse(value.expose()) {
                    Ok(url)
                        if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() =>
                    {
                        url
                    }
                    // Never echo the value: it is a secret.
                    _ => {
                        return Err(SinkError::new(format!(
                            "webhook url: {r:?} does not hold an http(s) URL; put https://host/path in it"
                        )));
                    }
                }
            }
        };
        let secret = config
            .secret
            .resolve()
            .map_err(|e| SinkError::new(format!("webhook secret: {e}")))?;
        if secret.expose().is_empty() {
            return Err(SinkError::new(format!(
                "webhook secret: {:?} is empty; put the HMAC key in it",
                config.secret
            )));
        }
        Ok(Webhook {
            client,
            shown: url_origin(&url),
            url,
            secret,
            config: config.clone(),
        })
    }

    /// Posts one alert, retrying transient failures (connection errors,
    /// timeouts, 408, 429, 5xx) with exponential backoff and `Retry-After`.
    pub(crate) async fn post(&self, alert: &AlertPayload<'_>) -> Result<(), SinkError> {
        let body = match self.config.format {
            WebhookFormat::Json => alert.json()?,
            WebhookFormat::Slack => alert.slack()?,
        };
        let mut backoff = ExponentialBuilder::default()
            .with_min_delay(self.config.backoff_min)
            .with_max_delay(self.config.backoff_max)
            .with_max_times(self.config.retries)
            .with_jitter()
            .build();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let (why, retry_after) = match self.attempt(&alert.id, body.as_bytes()).await {
                Ok(()) => {
                    tracing::debug!(id = %alert.id, attempt, "alert delivered");
                    return Ok(());
                }
                Err(Attempt::Fatal(why)) => {
                    return Err(SinkError::new(format!("webhook {}: {why}", self.shown)));
                }
                Err(Attempt::Refused(why)) => {
                    let system = if alert.stream == Stream::System {
                        " --system"
                    } else {
                        ""
                    };
                    return Err(SinkError::new(format!(
                        "webhook {}: {why} to alert {}: the receiver refuses this alert, and the \
                         alerts after it wait behind it; fix what the receiver objects to, or \
                         move past it with: sextant alerts skip {}{system}",
                        self.shown, alert.id, alert.sink
                    )));
                }
                Err(Attempt::Transient(why, retry_after)) => (why, retry_after),
            };
            let Some(delay) = backoff.next() else {
                let tries = if attempt == 1 {
                    "1 attempt".to_owned()
                } else {
                    format!("{attempt} attempts")
                };
                return Err(SinkError::new(format!(
                    "webhook {}: {why} ({tries}); the alert stays queued",
                    self.shown
                )));
            };
            let wait = retry_after.unwrap_or(delay).min(self.config.backoff_max);
            tracing::info!(id = %alert.id, attempt, wait_ms = wait.as_millis() as u64, reason = %why, "Webhook delivery failed; retrying.");
            tokio::time::sleep(wait).await;
        }
    }

    async fn attempt(&self, id: &str, body: &[u8]) -> Result<(), Attempt> {
        let timestamp = time::OffsetDateTime::now_utc().unix_timestamp().to_string();
        let signature =
            signature(&self.secret, &timestamp, body).map_err(|e| Attempt::Fatal(e.message))?;
        let signature = format!("sha256={signature}");
        let mut signature = HeaderValue::from_str(&signature)
            .map_err(|_| Attempt::Fatal("cannot build the signature header".into()))?;
        signature.set_sensitive(true);
        let response = self
            .client
            .post(self.url.clone())
            .timeout(self.config.timeout)
            .header(CONTENT_TYPE, "application/json")
            .header(DELIVERY_HEADER, id)
            .header(TIMESTAMP_HEADER, &timestamp)
            .header(SIGNATURE_HEADER, signature)
            .body(body.to_vec())
            .send()
            .await;
        let response = match response {
            Ok(r) => r,
            Err(e) if e.is_timeout() => {
                return Err(Attempt::Transient(
                    format!("no answer within {} ms", self.config.timeout.as_millis()),
                    None,
                ));
            }
            Err(e) => {
                return Err(Attempt::Transient(
                    format!(
                        "request failed: {}",
                        crate::source::http::transport_message(e)
                    ),
                    None,
                ));
            }
        };
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        // Seconds or an HTTP date, as for sources.
        let retry_after =
            crate::source::http::retry_after(response.headers(), std::time::SystemTime::now());
        let why = format!("answered {status}");
        if status.is_server_error()
            || status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::REQUEST_TIMEOUT
        {
            Err(Attempt::Transient(why, retry_after))
        } else if status.is_redirection() {
            Err(Attempt::Fatal(format!(
                "{why} (a redirect); set url to the final address"
            )))
        } else if is_configuration_refusal(status) {
            Err(Attempt::Fatal(format!(
                "{why}; check the receiver's URL and secret, then retry with the next delivery"
            )))
        } else {
            Err(Attempt::Refused(why))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_a_known_vector() {
        // Computed independently (Python's hmac module) over
        // "what do ya want" + "." + "for nothing?" with key "Jefe".
        let secret = Secret::new("Jefe");
        let sig = signature(&secret, "what do ya want", b"for nothing?").expect("signs");
        assert_eq!(
            sig,
            "e33f91577b90d4b3bbd73cb61803074f1965d27701b5527942dd9ea9443af37c"
        );
    }

    #[test]
    fn only_answers_about_the_configuration_stop_short_of_a_skip_hint() {
        for (status, configuration) in [
            (401, true),
            (403, true),
            (404, true),
            (405, true),
            (407, true),
            (410, true),
            (400, false),
            (409, false),
            (413, false),
            (415, false),
            (422, false),
        ] {
            let status = StatusCode::from_u16(status).expect("status");
            assert_eq!(is_configuration_refusal(status), configuration, "{status}");
        }
    }

    #[test]
    fn delivery_ids_are_stable() {
        assert_eq!(
            delivery_id("ops", Stream::Change, 42, "new-user"),
            "ops/change/42/new-user"
        );
        assert_eq!(
            delivery_id("ops", Stream::System, 3, "sync"),
            "ops/system/3/sync"
        );
    }
}
