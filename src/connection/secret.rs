//! Secret values: a newtype whose `Debug` is redacted and which has no
//! `Display`, and references (`env:VAR`, `file:PATH`) resolved at use.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// A secret value. Reading it is explicit (`expose`); printing it is impossible.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for the one place that must send it (an auth header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(**redacted**)")
    }
}

/// Where a secret comes from in the config file.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretRef {
    Env(String),
    File(PathBuf),
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(var) => write!(f, "env:{var}"),
            SecretRef::File(path) => write!(f, "file:{}", path.display()),
        }
    }
}

impl SecretRef {
    /// Parses `env:VAR` or `file:PATH`; anything else is not a reference.
    pub fn parse(text: &str) -> Option<Self> {
        if let Some(var) = text.strip_prefix("env:") {
            (!var.is_empty()).then(|| SecretRef::Env(var.to_owned()))
        } else {
            text.strip_prefix("file:")
                .filter(|p| !p.is_empty())
                .map(|p| SecretRef::File(PathBuf::from(p)))
        }
    }

    /// Reads the secret. Errors name the reference, never the value.
    pub fn resolve(&self) -> Result<Secret, String> {
        match self {
            SecretRef::Env(var) => std::env::var(var)
                .map(|v| Secret::new(v.trim().to_owned()))
                .map_err(|_| format!("environment variable {var} is not set")),
            SecretRef::File(path) => std::fs::read_to_string(path)
                .map(|v| Secret::new(v.trim().to_owned()))
                .map_err(|e| format!("cannot read secret file {}: {e}", path.display())),
        }
    }
}

/// The resolved fields of a connection: sensitive ones as [`Secret`]s.
#[derive(Clone, Default, PartialEq)]
pub struct Secrets {
    pub plain: BTreeMap<String, String>,
    pub sensitive: BTreeMap<String, Secret>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secrets")
            .field("plain", &self.plain)
            .field("sensitive", &self.sensitive.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Secrets {
    pub fn secret(&self, name: &str) -> Option<&Secret> {
        self.sensitive.get(name)
    }

    pub fn plain(&self, name: &str) -> Option<&str> {
        self.plain.get(name).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let mut secrets = Secrets::default();
        secrets
            .sensitive
            .insert("api_token".into(), Secret::new("s3cr3t-value"));
        let shown = format!("{secrets:?} {:?}", Secret::new("s3cr3t-value"));
        assert!(!shown.contains("s3cr3t-value"), "{shown}");
        assert!(shown.contains("api_token"));
    }

    #[test]
    fn references_parse() {
        assert_eq!(
            SecretRef::parse("env:TOKEN"),
            Some(SecretRef::Env("TOKEN".into()))
        );
        assert_eq!(
            SecretRef::parse("file:/run/t"),
            Some(SecretRef::File("/run/t".into()))
        );
        assert_eq!(SecretRef::parse("abc"), None);
        assert_eq!(SecretRef::parse("env:"), None);
    }
}
