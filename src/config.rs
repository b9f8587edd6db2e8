//! The YAML config file: raw serde types (unknown fields refused) become a
//! validated [`Config`]; every problem is reported at once with its path.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::alerts::AlertsConfig;
use crate::connection::{ConnectionType, SecretRef, Secrets, connection_type, connection_types};
use crate::source::http::{HttpConfig, RateLimit};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config {path} is not valid YAML for sextant: {message}")]
    Parse { path: String, message: String },
    #[error("config {path} has {} problem(s):\n  {}", .problems.len(), .problems.join("\n  "))]
    Invalid { path: String, problems: Vec<String> },
}

/// How often an integration runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interval {
    Disabled,
    Every(Duration),
    Cron(String),
}

impl Interval {
    /// `DISABLED`, a duration such as `30m`, `1h`, `1d`, or `cron:<expr>`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("disabled") {
            return Ok(Interval::Disabled);
        }
        if let Some(expr) = text.strip_prefix("cron:") {
            let fields = expr.split_whitespace().count();
            return if (5..=7).contains(&fields) {
                let expr = expr.trim();
                // Parsed as the scheduler will parse it, so a bad field is
                // refused here rather than logged at every daemon start.
                tokio_cron_scheduler::Job::new(cron_with_seconds(expr), |_, _| {})
                    .map(|_| Interval::Cron(expr.to_owned()))
                    .map_err(|_| {
                        format!(
                            "{text:?} is not a valid cron expression; fields are minute hour day-of-month month day-of-week, e.g. cron:0 */4 * * *"
                        )
                    })
            } else {
                Err(format!(
                    "{text:?} is not a cron expression; write cron: followed by 5 to 7 fields, e.g. cron:0 */4 * * *"
                ))
            };
        }
        parse_duration(text)
            .filter(|d| *d >= Duration::from_secs(60))
            .map(Interval::Every)
            .ok_or_else(|| format!("{text:?} is not an interval; try DISABLED, 30m, 1h, 4h, 12h, 1d or cron:<expr> (at least 1m)"))
    }
}

impl std::fmt::Display for Interval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Interval::Disabled => f.write_str("DISABLED"),
            Interval::Cron(expr) => write!(f, "cron:{expr}"),
            Interval::Every(d) => f.write_str(&format_duration(*d)),
        }
    }
}

/// The shortest of `1d`, `4h`, `30m`, `90s` (whole seconds) that is exact.
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s == 0 {
        "0s".to_owned()
    } else if s.is_multiple_of(86_400) {
        format!("{}d", s / 86_400)
    } else if s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

/// Cron expressions in the config have five fields (minute first); the
/// scheduler wants seconds first, so five fields run at second 0.
pub fn cron_with_seconds(expr: &str) -> String {
    if expr.split_whitespace().count() == 5 {
        format!("0 {expr}")
    } else {
        expr.to_owned()
    }
}

/// The HTTP client settings of a connection: defaults plus its overrides.
pub fn http_config(requests_per_second: Option<u32>, timeout: Option<Duration>) -> HttpConfig {
    let mut config = HttpConfig::default();
    if let Some(rps) = requests_per_second.filter(|n| *n > 0) {
        config.rate_limit = RateLimit::per_second(rps, rps);
    }
    if let Some(timeout) = timeout.filter(|t| !t.is_zero()) {
        config.request_timeout = timeout;
    }
    config
}

/// `500ms`, `90s`, `30m`, `1h`, `1d`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let (digits, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = digits.parse().ok()?;
    let secs = match unit {
        "ms" => return Some(Duration::from_millis(n)),
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

/// A named, typed connection whose sensitive fields are references.
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    pub name: String,
    pub key: String,
    pub ty: &'static ConnectionType,
    pub description: Option<String>,
    pub requests_per_second: Option<u32>,
    pub timeout: Option<Duration>,
    pub plain: BTreeMap<String, String>,
    pub sensitive: BTreeMap<String, SecretRef>,
}

impl ConnectionConfig {
    /// Reads every referenced secret now (at use), applying field defaults.
    pub fn resolve(&self) -> Result<Secrets, String> {
        let mut secrets = Secrets::default();
        for field in self.ty.fields {
            if let Some(value) = self.plain.get(field.name) {
                secrets.plain.insert(field.name.to_owned(), value.clone());
            } else if let Some(default) = field.default {
                secrets
                    .plain
                    .insert(field.name.to_owned(), default.to_owned());
            }
        }
        for (name, reference) in &self.sensitive {
            let value = reference
                .resolve()
                .map_err(|e| format!("connection {:?}: {name}: {e}", self.name))?;
            secrets.sensitive.insert(name.clone(), value);
        }
        Ok(secrets)
    }
}

/// A configured integration run.
#[derive(Debug, Clone)]
pub struct IntegrationConfig {
    pub name: String,
    pub connection: String,
    pub account_name: Option<String>,
    pub description: Option<String>,
    pub interval: Interval,
    pub tag_account_name: bool,
    pub enabled: bool,
    /// Source-specific settings, checked by the source.
    pub settings: serde_json::Value,
}

impl IntegrationConfig {
    /// The `tag.AccountName` every entity gets when the integration asks
    /// for it: its account name, else its name.
    pub fn account_name_tag(&self) -> Option<String> {
        self.tag_account_name.then(|| {
            self.account_name
                .clone()
                .unwrap_or_else(|| self.name.clone())
        })
    }
}

#[derive(Debug, Clone, Default)]
pub struct Config {
    pub connections: Vec<ConnectionConfig>,
    pub integrations: Vec<IntegrationConfig>,
    /// Alert rules and sinks (`rules:`, `sinks:`).
    pub alerts: AlertsConfig,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    connections: Vec<RawConnection>,
    #[serde(default)]
    integrations: Vec<RawIntegration>,
    /// Checked field by field by `alerts::rules`, so that problems name
    /// the rule or sink.
    #[serde(default)]
    rules: Vec<serde_json::Value>,
    #[serde(default)]
    sinks: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConnection {
    name: String,
    #[serde(rename = "type")]
    ty: String,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    requests_per_second: Option<u32>,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    secrets: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIntegration {
    name: String,
    connection: String,
    #[serde(default)]
    account_name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    interval: Option<String>,
    #[serde(default)]
    tag_account_name: bool,
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    settings: Option<serde_json::Value>,
}

fn yes() -> bool {
    true
}

/// snake_case of a name: `ci-prod` → `ci_prod`, `CI Prod` → `ci_prod`.
pub fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('_') && !out.is_empty() {
            out.push('_');
        }
    }
    out.trim_end_matches('_').to_owned()
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&path.display().to_string(), &text)
    }

    pub fn parse(path: &str, text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = if text.trim().is_empty() {
            RawConfig {
                connections: Vec::new(),
                integrations: Vec::new(),
                rules: Vec::new(),
                sinks: Vec::new(),
            }
        } else {
            serde_saphyr::from_str(text).map_err(|e| ConfigError::Parse {
                path: path.to_owned(),
                message: e
                    .to_string()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" "),
            })?
        };
        let mut problems = Vec::new();
        let mut config = Config::default();
        let mut names = BTreeSet::new();
        for (i, raw) in raw.connections.into_iter().enumerate() {
            let at = format!("connections[{i}]");
            if !names.insert(raw.name.clone()) {
                problems.push(format!("{at}.name: {:?} is used twice", raw.name));
            }
            if let Some(c) = validate_connection(&at, raw, &mut problems) {
                config.connections.push(c);
            }
        }
        let mut integration_names = BTreeSet::new();
        for (i, raw) in raw.integrations.into_iter().enumerate() {
            let at = format!("integrations[{i}]");
            if raw.name.trim().is_empty() {
                problems.push(format!("{at}.name: must not be empty"));
            }
            if !integration_names.insert(raw.name.clone()) {
                problems.push(format!("{at}.name: {:?} is used twice", raw.name));
            }
            match config.connections.iter().find(|c| c.name == raw.connection) {
                Some(connection) => {
                    let settings = raw.settings.as_ref().unwrap_or(&serde_json::Value::Null);
                    if let Err(e) = crate::source::check_settings(connection.ty.name, settings) {
                        problems.push(format!("{at}.settings: {e}"));
                    }
                }
                None if names.contains(&raw.connection) => {}
                None => problems.push(format!(
                    "{at}.connection: no connection named {:?}; declare it under connections",
                    raw.connection
                )),
            }
            let interval = match raw.interval.as_deref().map(Interval::parse) {
                None => Interval::Every(Duration::from_secs(3600)),
                Some(Ok(i)) => i,
                Some(Err(e)) => {
                    problems.push(format!("{at}.interval: {e}"));
                    Interval::Disabled
                }
            };
            config.integrations.push(IntegrationConfig {
                name: raw.name,
                connection: raw.connection,
                account_name: raw.account_name,
                description: raw.description,
                interval,
                tag_account_name: raw.tag_account_name,
                enabled: raw.enabled,
                settings: raw.settings.unwrap_or(serde_json::Value::Null),
            });
        }
        config.alerts = crate::alerts::rules::validate(&raw.rules, &raw.sinks, &mut problems);
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                path: path.to_owned(),
                problems,
            })
        }
    }

    pub fn integration(&self, name: &str) -> Option<&IntegrationConfig> {
        self.integrations.iter().find(|i| i.name == name)
    }

    pub fn connection(&self, name: &str) -> Option<&ConnectionConfig> {
        self.connections.iter().find(|c| c.name == name)
    }
}

fn validate_connection(
    at: &str,
    raw: RawConnection,
    problems: &mut Vec<String>,
) -> Option<ConnectionConfig> {
    let Some(ty) = connection_type(&raw.ty) else {
        let known: Vec<&str> = connection_types().iter().map(|t| t.name).collect();
        problems.push(format!(
            "{at}.type: {:?} is not a connection type; use one of {}",
            raw.ty,
            known.join(", ")
        ));
        return None;
    };
    let mut plain = BTreeMap::new();
    let mut sensitive = BTreeMap::new();
    let mut refused = BTreeSet::new();
    for (name, value) in raw.secrets {
        let Some(field) = ty.field(&name) else {
            let fields: Vec<&str> = ty.fields.iter().map(|f| f.name).collect();
            problems.push(format!(
                "{at}.secrets.{name}: {} connections have no field {name:?}; fields are {}",
                ty.name,
                fields.join(", ")
            ));
            continue;
        };
        if field.sensitive {
            match SecretRef::parse(&value) {
                Some(r) => {
                    sensitive.insert(name, r);
                }
                // Never echo the value: it may be the secret itself.
                None => {
                    refused.insert(name.clone());
                    problems.push(format!(
                    "{at}.secrets.{name}: is sensitive and must be a reference, not a literal; write env:VARIABLE or file:/path/to/file"
                    ))
                }
            }
        } else {
            plain.insert(name, value);
        }
    }
    for field in ty.fields.iter().filter(|f| f.required) {
        let given = sensitive.contains_key(field.name)
            || plain.contains_key(field.name)
            || refused.contains(field.name);
        if !given {
            problems.push(format!("{at}.secrets.{}: is required", field.name));
        }
    }
    if raw.requests_per_second == Some(0) {
        problems.push(format!("{at}.requests_per_second: must be at least 1"));
    }
    let timeout = match raw.timeout.as_deref() {
        None => None,
        Some(text) => match parse_duration(text).filter(|d| !d.is_zero()) {
            Some(d) => Some(d),
            None => {
                problems.push(format!(
                    "{at}.timeout: {text:?} is not a duration; try 30s or 2m"
                ));
                None
            }
        },
    };
    Some(ConnectionConfig {
        key: raw.key.unwrap_or_else(|| snake_case(&raw.name)),
        name: raw.name,
        ty,
        description: raw.description,
        requests_per_second: raw.requests_per_second,
        timeout,
        plain,
        sensitive,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(yaml: &str) -> Vec<String> {
        match Config::parse("test.yaml", yaml) {
            Err(ConfigError::Invalid { problems, .. }) => problems,
            Err(other) => vec![other.to_string()],
            Ok(_) => Vec::new(),
        }
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let found = problems(
            "connections:\n  - name: ci\n    type: circleci\n    secrets:\n      api_token: hunter2-literal\n\
             integrations:\n  - name: a\n    connection: nope\n    interval: 2x\n",
        );
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found[0].starts_with("connections[0].secrets.api_token: is sensitive"));
        assert!(!found.join(" ").contains("hunter2-literal"));
        assert!(found[1].starts_with("integrations[0].connection: no connection named \"nope\""));
        assert!(found[2].starts_with("integrations[0].interval: \"2x\" is not an interval"));
    }

    #[test]
    fn source_settings_are_checked_at_load() {
        let found = problems(
            "connections:\n  - name: ci\n    type: circleci\n    secrets: {api_token: env:T}\n\
             integrations:\n  - name: a\n    connection: ci\n    settings: {org_slug: [gh/x]}\n",
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("integrations[0].settings: unknown field `org_slug`"),
            "{found:?}"
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        let found = problems("integrationz: []\n");
        assert_eq!(found.len(), 1);
        assert!(found[0].contains("integrationz"), "{found:?}");
    }

    #[test]
    fn intervals() {
        assert_eq!(Interval::parse("DISABLED"), Ok(Interval::Disabled));
        assert_eq!(
            Interval::parse("30m"),
            Ok(Interval::Every(Duration::from_secs(1800)))
        );
        assert_eq!(
            Interval::parse("1d").map(|i| i.to_string()),
            Ok("1d".to_owned())
        );
        assert!(Interval::parse("cron:0 */4 * * *").is_ok());
        assert!(Interval::parse("cron:bad").is_err());
        assert!(Interval::parse("10s").is_err());
    }

    #[test]
    fn keys_are_snake_case() {
        assert_eq!(snake_case("ci-prod"), "ci_prod");
        assert_eq!(snake_case("CI Prod 2"), "ci_prod_2");
    }
}
