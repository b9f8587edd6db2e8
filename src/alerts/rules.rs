//! Alert rules and sinks as the config file declares them: each YAML item is
//! read as a plain value and checked field by field, so that every problem
//! is reported at once naming the rule or sink and the field at fault
//! (`rules[2] "job-failed": match.after.status: unknown operator "is"; …`).

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use regex::Regex;
use serde::Serialize;
use serde_json::{Map, Value};
use url::Url;

use super::eval::{ACTIONS, Matcher, NameSet, OBJECTS, Pattern, Predicate, Scope, Test};
use super::event::AlertEvent;
use crate::connection::SecretRef;

/// How much an alert matters; sinks pass it on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

const SEVERITIES: &str = "info, low, medium, high or critical";

impl Severity {
    pub fn parse(text: &str) -> Option<Severity> {
        Some(match text {
            "info" => Severity::Info,
            "low" => Severity::Low,
            "medium" => Severity::Medium,
            "high" => Severity::High,
            "critical" => Severity::Critical,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// A validated alert rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub description: Option<String>,
    pub severity: Severity,
    /// Only events of these integrations; empty means every integration.
    pub integrations: Vec<String>,
    /// Also alert on the changes of an integration's first sync (when every
    /// object is new). Off by default: a first sync is a baseline.
    pub first_sync: bool,
    pub matcher: Matcher,
    /// The `match` as written, for `alerts list`.
    pub match_source: Value,
    pub sinks: Vec<String>,
}

impl Rule {
    /// The pure part of a rule: its integration filter and its match.
    pub fn matches(&self, event: &AlertEvent) -> bool {
        (self.integrations.is_empty()
            || event
                .integration()
                .is_some_and(|i| self.integrations.iter().any(|n| n == i)))
            && self.matcher.matches(event)
    }
}

/// Where a new sink's cursor starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// After the newest event when the sink is first used (the default): a
    /// new sink is not flooded with history.
    End,
    /// At the first event ever recorded: replay history through the rules.
    Beginning,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StdoutFormat {
    /// One readable line per alert.
    Text,
    /// One JSON object per line (the webhook body).
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookFormat {
    /// The alert as JSON (see `alerts::sinks::AlertPayload`).
    Json,
    /// `{"text": …}`, accepted by Slack incoming webhooks and compatibles.
    Slack,
}

/// A webhook address: literal, or a reference when the URL itself is a
/// credential (Slack webhook URLs are). Shown only as scheme and host.
#[derive(Clone, PartialEq)]
pub enum WebhookUrl {
    Literal(Url),
    Reference(SecretRef),
}

impl WebhookUrl {
    /// What may be shown: `https://hooks.example.com/…`, or the reference.
    pub fn display(&self) -> String {
        match self {
            WebhookUrl::Literal(url) => url_origin(url),
            WebhookUrl::Reference(r) => format!("{r:?}"),
        }
    }
}

impl fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display())
    }
}

/// `scheme://host[:port]/…` — never the path, query or user info, which
/// may carry credentials.
pub fn url_origin(url: &Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(port) => format!("{}://{host}:{port}/…", url.scheme()),
        None => format!("{}://{host}/…", url.scheme()),
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct WebhookConfig {
    pub url: WebhookUrl,
    /// HMAC-SHA256 key; read at delivery, never stored or printed.
    pub secret: SecretRef,
    pub format: WebhookFormat,
    /// Time allowed for one attempt, connection included.
    pub timeout: Duration,
    /// Retries after the first attempt within one delivery pass.
    pub retries: usize,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SinkKind {
    Stdout(StdoutFormat),
    File(PathBuf),
    Webhook(WebhookConfig),
}

impl SinkKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            SinkKind::Stdout(_) => "stdout",
            SinkKind::File(_) => "file",
            SinkKind::Webhook(_) => "webhook",
        }
    }

    /// Where it sends, safe to print.
    pub fn target(&self) -> String {
        match self {
            SinkKind::Stdout(_) => "standard output".to_owned(),
            SinkKind::File(path) => path.display().to_string(),
            SinkKind::Webhook(w) => w.url.display(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SinkConfig {
    pub name: String,
    pub kind: SinkKind,
    pub start: Start,
}

/// The `rules:` and `sinks:` of the config file, validated.
#[derive(Debug, Clone, Default)]
pub struct AlertsConfig {
    pub rules: Vec<Rule>,
    pub sinks: Vec<SinkConfig>,
}

impl AlertsConfig {
    pub fn rule(&self, name: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.name == name)
    }

    /// `(rule, integration)` for each integration a rule names that is not
    /// in `known`: the rule never matches it (a typo, or an integration not
    /// added yet).
    pub fn unknown_integrations<'a>(
        &'a self,
        known: &std::collections::BTreeSet<String>,
    ) -> Vec<(&'a str, &'a str)> {
        self.rules
            .iter()
            .flat_map(|rule| {
                rule.integrations
                    .iter()
                    .filter(|name| !known.contains(*name))
                    .map(|name| (rule.name.as_str(), name.as_str()))
            })
            .collect()
    }

    /// The rules that send to `sink`, in config order.
    pub fn rules_for<'a>(&'a self, sink: &'a str) -> impl Iterator<Item = &'a Rule> + 'a {
        self.rules
            .iter()
            .filter(move |r| r.sinks.iter().any(|s| s == sink))
    }
}

const RULE_FIELDS: &[&str] = &[
    "name",
    "description",
    "severity",
    "integrations",
    "first_sync",
    "match",
    "sinks",
];
const MATCH_FIELDS: &str =
    "object, action, _type, _class, _key, after.FIELD, before.FIELD, changes.FIELD";
const SINK_FIELDS: &[&str] = &[
    "name",
    "type",
    "start",
    "format",
    "path",
    "url",
    "secret",
    "timeout",
    "retries",
    "backoff_min",
    "backoff_max",
];

/// Collects the problems of one rule or sink under its path and name.
struct At<'p> {
    at: String,
    problems: &'p mut Vec<String>,
}

impl At<'_> {
    fn new<'p>(list: &str, index: usize, item: &Value, problems: &'p mut Vec<String>) -> At<'p> {
        let at = match item.get("name").and_then(Value::as_str) {
            Some(name) => format!("{list}[{index}] {name:?}"),
            None => format!("{list}[{index}]"),
        };
        At { at, problems }
    }

    fn push(&mut self, field: &str, message: impl fmt::Display) {
        self.problems
            .push(format!("{}: {field}: {message}", self.at));
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "empty",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// `name` values become parts of delivery ids and HTTP headers.
fn check_name(at: &mut At<'_>, name: &str) {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        at.push(
            "name",
            format!(
                "{name:?} is not a valid name; use 1 to 64 letters, digits, '-', '_' or '.' (names are part of delivery ids)"
            ),
        );
    }
}

fn string<'v>(at: &mut At<'_>, map: &'v Map<String, Value>, field: &str) -> Option<&'v str> {
    match map.get(field)? {
        Value::String(s) => Some(s),
        other => {
            at.push(field, format!("must be a string, not {}", kind(other)));
            None
        }
    }
}

/// A string or a list of strings.
fn strings(at: &mut At<'_>, map: &Map<String, Value>, field: &str) -> Vec<String> {
    match map.get(field) {
        None => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) if !items.is_empty() => {
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::String(s) => out.push(s.clone()),
                    other => at.push(
                        &format!("{field}[{i}]"),
                        format!("must be a string, not {}", kind(other)),
                    ),
                }
            }
            out
        }
        Some(other) => {
            at.push(
                field,
                format!(
                    "must be a string or a non-empty list of strings, not {}",
                    kind(other)
                ),
            );
            Vec::new()
        }
    }
}

fn unknown_fields(at: &mut At<'_>, map: &Map<String, Value>, known: &[&str]) {
    for key in map.keys() {
        if !known.contains(&key.as_str()) {
            at.push(
                key,
                format!("unknown field; fields are {}", known.join(", ")),
            );
        }
    }
}

fn duration(at: &mut At<'_>, map: &Map<String, Value>, field: &str, default: Duration) -> Duration {
    let Some(text) = string(at, map, field) else {
        return default;
    };
    match crate::config::parse_duration(text).filter(|d| !d.is_zero()) {
        Some(d) => d,
        None => {
            at.push(
                field,
                format!("{text:?} is not a duration; try 500ms, 10s or 1m"),
            );
            default
        }
    }
}

/// Validates `rules:` and `sinks:`; problems are appended to `problems`.
pub(crate) fn validate(
    raw_rules: &[Value],
    raw_sinks: &[Value],
    problems: &mut Vec<String>,
) -> AlertsConfig {
    let mut config = AlertsConfig::default();
    let mut names = BTreeSet::new();
    for (i, raw) in raw_sinks.iter().enumerate() {
        let mut at = At::new("sinks", i, raw, problems);
        if let Some(sink) = sink(&mut at, raw) {
            config.sinks.push(sink);
        }
        if let Some(name) = raw.get("name").and_then(Value::as_str)
            && !names.insert(name)
        {
            at.push("name", format!("{name:?} is used by another sink"));
        }
    }
    let sink_names: Vec<&str> = raw_sinks
        .iter()
        .filter_map(|s| s.get("name").and_then(Value::as_str))
        .collect();
    let mut names = BTreeSet::new();
    for (i, raw) in raw_rules.iter().enumerate() {
        let mut at = At::new("rules", i, raw, problems);
        if let Some(rule) = rule(&mut at, raw, &sink_names) {
            config.rules.push(rule);
        }
        if let Some(name) = raw.get("name").and_then(Value::as_str)
            && !names.insert(name)
        {
            at.push("name", format!("{name:?} is used by another rule"));
        }
    }
    config
}

fn rule(at: &mut At<'_>, raw: &Value, sinks: &[&str]) -> Option<Rule> {
    let Some(map) = raw.as_object() else {
        at.push(
            "",
            format!(
                "a rule is a mapping with {}, not {}",
                RULE_FIELDS.join(", "),
                kind(raw)
            ),
        );
        return None;
    };
    unknown_fields(at, map, RULE_FIELDS);
    let name = string(at, map, "name");
    match name {
        Some(name) => check_name(at, name),
        None if !map.contains_key("name") => at.push("name", "is required"),
        None => {}
    }
    let description = string(at, map, "description").map(str::to_owned);
    let severity = match string(at, map, "severity") {
        None => Severity::Medium,
        Some(text) => Severity::parse(text).unwrap_or_else(|| {
            at.push(
                "severity",
                format!("{text:?} is not a severity; use {SEVERITIES}"),
            );
            Severity::Medium
        }),
    };
    let integrations = strings(at, map, "integrations");
    let first_sync = match map.get("first_sync") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            at.push(
                "first_sync",
                format!("must be true or false, not {}", kind(other)),
            );
            false
        }
    };
    let matcher = match map.get("match") {
        Some(Value::Object(m)) => matcher(at, m),
        Some(other) => {
            at.push(
                "match",
                format!("must be a mapping of {MATCH_FIELDS}, not {}", kind(other)),
            );
            Matcher::default()
        }
        None => {
            at.push(
                "match",
                format!("is required; give at least one of {MATCH_FIELDS}"),
            );
            Matcher::default()
        }
    };
    let rule_sinks = strings(at, map, "sinks");
    if !map.contains_key("sinks") {
        at.push(
            "sinks",
            "is required; name one or more sinks declared under sinks",
        );
    }
    for (i, s) in rule_sinks.iter().enumerate() {
        if !sinks.contains(&s.as_str()) {
            let known = if sinks.is_empty() {
                "none is declared".to_owned()
            } else {
                format!("declared: {}", sinks.join(", "))
            };
            at.push(
                &format!("sinks[{i}]"),
                format!("no sink named {s:?}; declare it under sinks ({known})"),
            );
        }
    }
    Some(Rule {
        name: name?.to_owned(),
        description,
        severity,
        integrations,
        first_sync,
        matcher,
        match_source: map.get("match").cloned().unwrap_or(Value::Null),
        sinks: rule_sinks,
    })
}

fn name_set(at: &mut At<'_>, map: &Map<String, Value>, field: &str, names: &[&str]) -> NameSet {
    let mut set = NameSet::default();
    for value in strings(at, map, field) {
        match names.iter().position(|n| *n == value) {
            Some(i) => set.insert(i),
            None => at.push(
                &format!("match.{field}"),
                format!("{value:?} is not known; use {}", names.join(", ")),
            ),
        }
    }
    set
}

fn matcher(at: &mut At<'_>, map: &Map<String, Value>) -> Matcher {
    let mut m = Matcher {
        objects: name_set(at, map, "object", OBJECTS),
        actions: name_set(at, map, "action", ACTIONS),
        types: strings(at, map, "_type")
            .iter()
            .map(|s| Pattern::parse(s))
            .collect(),
        classes: strings(at, map, "_class")
            .iter()
            .map(|s| Pattern::parse(s))
            .collect(),
        keys: strings(at, map, "_key")
            .iter()
            .map(|s| Pattern::parse(s))
            .collect(),
        predicates: Vec::new(),
    };
    for (key, value) in map {
        if matches!(
            key.as_str(),
            "object" | "action" | "_type" | "_class" | "_key"
        ) {
            continue;
        }
        let scoped = [
            ("after.", Scope::After),
            ("before.", Scope::Before),
            ("changes.", Scope::Changes),
        ]
        .into_iter()
        .find_map(|(prefix, scope)| key.strip_prefix(prefix).map(|f| (scope, f)));
        match scoped {
            Some((_, "")) => at.push(
                &format!("match.{key}"),
                "name a field after the dot, e.g. after.name",
            ),
            Some((scope, field)) => {
                if let Some(p) = predicate(at, key, scope, field, value) {
                    m.predicates.push(p);
                }
            }
            None => at.push(
                &format!("match.{key}"),
                format!("unknown field; fields are {MATCH_FIELDS}"),
            ),
        }
    }
    m
}

fn scalar(v: &Value) -> bool {
    matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_))
}

/// A scalar or a list of scalars.
fn values(at: &mut At<'_>, field: &str, v: &Value) -> Vec<Value> {
    match v {
        Value::Array(items) if !items.is_empty() && items.iter().all(scalar) => items.clone(),
        v if scalar(v) => vec![v.clone()],
        other => {
            at.push(
                field,
                format!(
                    "must be a value or a non-empty list of values, not {}",
                    kind(other)
                ),
            );
            Vec::new()
        }
    }
}

fn predicate(
    at: &mut At<'_>,
    key: &str,
    scope: Scope,
    field: &str,
    value: &Value,
) -> Option<Predicate> {
    let path = format!("match.{key}");
    let ops: &[&str] = if scope == Scope::Changes {
        &["from", "to", "exists"]
    } else {
        &["equals", "in", "regex", "exists"]
    };
    let ops_text = ops.join(", ");
    let mut tests = Vec::new();
    let map = match value {
        // `after.status: failed` is `after.status: {equals: failed}`.
        v if scalar(v) && scope != Scope::Changes => {
            tests.push(Test::Equals(v.clone()));
            return Some(Predicate {
                scope,
                field: field.to_owned(),
                tests,
            });
        }
        Value::Object(map) if !map.is_empty() => map,
        other => {
            at.push(
                &path,
                format!(
                    "must be a mapping of operators ({ops_text}), not {}",
                    kind(other)
                ),
            );
            return None;
        }
    };
    for (op, arg) in map {
        let op_path = format!("{path}.{op}");
        if !ops.contains(&op.as_str()) {
            let hint = match (scope, op.as_str()) {
                (Scope::Changes, "equals" | "in" | "regex") => {
                    format!("; on changes use from/to, or test after.{field} or before.{field}")
                }
                (_, "from" | "to") => format!("; from and to apply to changes.{field}"),
                _ => String::new(),
            };
            at.push(
                &path,
                format!("unknown operator {op:?}; use {ops_text}{hint}"),
            );
            continue;
        }
        match op.as_str() {
            "equals" if scalar(arg) => tests.push(Test::Equals(arg.clone())),
            "equals" => at.push(
                &op_path,
                format!(
                    "must be a single value, not {}; to test several use in",
                    kind(arg)
                ),
            ),
            "in" => match arg {
                Value::Array(items) if !items.is_empty() && items.iter().all(scalar) => {
                    tests.push(Test::In(items.clone()))
                }
                other => at.push(
                    &op_path,
                    format!("must be a non-empty list of values, not {}", kind(other)),
                ),
            },
            "regex" => match arg {
                Value::String(text) => match Regex::new(text) {
                    Ok(re) => tests.push(Test::Regex(re)),
                    Err(e) => at.push(
                        &op_path,
                        format!(
                            "{text:?} is not a valid regular expression: {}",
                            e.to_string()
                                .split_whitespace()
                                .collect::<Vec<_>>()
                                .join(" ")
                        ),
                    ),
                },
                other => at.push(&op_path, format!("must be a string, not {}", kind(other))),
            },
            "exists" => match arg {
                Value::Bool(b) => tests.push(Test::Exists(*b)),
                other => at.push(
                    &op_path,
                    format!("must be true or false, not {}", kind(other)),
                ),
            },
            "from" => tests.push(Test::From(values(at, &op_path, arg))),
            "to" => tests.push(Test::To(values(at, &op_path, arg))),
            _ => {}
        }
    }
    Some(Predicate {
        scope,
        field: field.to_owned(),
        tests,
    })
}

fn sink(at: &mut At<'_>, raw: &Value) -> Option<SinkConfig> {
    let Some(map) = raw.as_object() else {
        at.push(
            "",
            format!("a sink is a mapping with name and type, not {}", kind(raw)),
        );
        return None;
    };
    unknown_fields(at, map, SINK_FIELDS);
    let name = string(at, map, "name");
    match name {
        Some(name) => check_name(at, name),
        None if !map.contains_key("name") => at.push("name", "is required"),
        None => {}
    }
    let start = match string(at, map, "start") {
        None | Some("end") => Start::End,
        Some("beginning") => Start::Beginning,
        Some(other) => {
            at.push(
                "start",
                format!("{other:?} is not a start; use end (the default) or beginning"),
            );
            Start::End
        }
    };
    let ty = string(at, map, "type");
    let allowed: &[&str] = match ty {
        Some("stdout") => &["format"],
        Some("file") => &["path"],
        Some("webhook") => &[
            "url",
            "secret",
            "format",
            "timeout",
            "retries",
            "backoff_min",
            "backoff_max",
        ],
        Some(other) => {
            at.push(
                "type",
                format!("{other:?} is not a sink type; use stdout, file or webhook"),
            );
            return None;
        }
        None => {
            if !map.contains_key("type") {
                at.push("type", "is required; use stdout, file or webhook");
            }
            return None;
        }
    };
    let ty = ty?;
    for field in [
        "format",
        "path",
        "url",
        "secret",
        "timeout",
        "retries",
        "backoff_min",
        "backoff_max",
    ] {
        if map.contains_key(field) && !allowed.contains(&field) {
            at.push(
                field,
                format!(
                    "{ty} sinks take no {field}; they take {}",
                    allowed.join(", ")
                ),
            );
        }
    }
    let kind = match ty {
        "stdout" => SinkKind::Stdout(match string(at, map, "format") {
            None | Some("text") => StdoutFormat::Text,
            Some("json") => StdoutFormat::Json,
            Some(other) => {
                at.push(
                    "format",
                    format!("{other:?} is not a stdout format; use text or json"),
                );
                StdoutFormat::Text
            }
        }),
        "file" => match string(at, map, "path") {
            Some(path) if !path.trim().is_empty() => SinkKind::File(PathBuf::from(path)),
            _ => {
                at.push(
                    "path",
                    "is required: the JSON-lines file to append alerts to",
                );
                return None;
            }
        },
        _ => SinkKind::Webhook(webhook(at, map)?),
    };
    Some(SinkConfig {
        name: name?.to_owned(),
        kind,
        start,
    })
}

fn webhook(at: &mut At<'_>, map: &Map<String, Value>) -> Option<WebhookConfig> {
    let url = match string(at, map, "url") {
        None => {
            at.push(
                "url",
                "is required: the address to POST alerts to (or env:VAR / file:PATH)",
            );
            None
        }
        Some(text) => match SecretRef::parse(text) {
            Some(r) => Some(WebhookUrl::Reference(r)),
            None => match Url::parse(text) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() => {
                    Some(WebhookUrl::Literal(url))
                }
                // Never echo the URL: it may carry a token.
                _ => {
                    at.push("url", "is not an http(s) URL; write https://host/path, or env:VAR / file:PATH when the URL is itself a secret");
                    None
                }
            },
        },
    };
    let secret = match string(at, map, "secret") {
        None => {
            at.push(
                "secret",
                "is required: the HMAC key, as env:VARIABLE or file:/path/to/it",
            );
            None
        }
        Some(text) => {
            match SecretRef::parse(text) {
                Some(r) => Some(r),
                // Never echo the value: it may be the secret itself.
                None => {
                    at.push("secret", "must be a reference, not a literal; write env:VARIABLE or file:/path/to/file");
                    None
                }
            }
        }
    };
    let format = match string(at, map, "format") {
        None | Some("json") => WebhookFormat::Json,
        Some("slack") => WebhookFormat::Slack,
        Some(other) => {
            at.push(
                "format",
                format!("{other:?} is not a webhook format; use json or slack"),
            );
            WebhookFormat::Json
        }
    };
    let timeout = duration(at, map, "timeout", Duration::from_secs(10));
    let retries = match map.get("retries") {
        None => 3,
        Some(v) => match v.as_u64().filter(|n| *n <= 20) {
            Some(n) => n as usize,
            None => {
                at.push("retries", "must be a whole number from 0 to 20");
                3
            }
        },
    };
    let backoff_min = duration(at, map, "backoff_min", Duration::from_millis(500));
    let backoff_max = duration(at, map, "backoff_max", Duration::from_secs(30));
    if backoff_max < backoff_min {
        at.push("backoff_max", "must not be shorter than backoff_min");
    }
    Some(WebhookConfig {
        url: url?,
        secret: secret?,
        format,
        timeout,
        retries,
        backoff_min,
        backoff_max,
    })
}
