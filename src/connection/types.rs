//! Connection types: each declares its fields (sensitive or not, required,
//! default) and, in words, what its token needs.

use serde_json::{Value, json};

#[derive(Debug, Clone)]
pub struct FieldDef {
    pub name: &'static str,
    pub description: &'static str,
    pub sensitive: bool,
    pub required: bool,
    pub default: Option<&'static str>,
}

#[derive(Debug, Clone)]
pub struct ConnectionType {
    pub name: &'static str,
    pub human_name: &'static str,
    pub fields: &'static [FieldDef],
    /// What the token must be allowed to do, for humans.
    pub token_requirements: &'static str,
}

impl ConnectionType {
    /// The JSON Schema of the secrets file, with `sensitive` markers.
    pub fn json_schema(&self) -> Value {
        let mut properties = serde_json::Map::new();
        for f in self.fields {
            let mut field = json!({
                "title": f.name,
                "description": f.description,
                "type": "string",
                "sensitive": f.sensitive,
            });
            if let (Some(default), Value::Object(map)) = (f.default, &mut field) {
                map.insert("default".into(), default.into());
            }
            properties.insert(f.name.into(), field);
        }
        let required: Vec<&str> = self
            .fields
            .iter()
            .filter(|f| f.required)
            .map(|f| f.name)
            .collect();
        json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "title": format!("{} connection", self.human_name),
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": false,
        })
    }

    pub fn field(&self, name: &str) -> Option<&FieldDef> {
        self.fields.iter().find(|f| f.name == name)
    }
}

const CIRCLECI: ConnectionType = ConnectionType {
    name: "circleci",
    human_name: "CircleCI",
    fields: &[
        FieldDef {
            name: "api_token",
            description: "A CircleCI personal API token (User Settings → Personal API Tokens).",
            sensitive: true,
            required: true,
            default: None,
        },
        FieldDef {
            name: "host",
            description: "Base URL of CircleCI, or of a CircleCI server install.",
            sensitive: false,
            required: false,
            default: Some("https://circleci.com"),
        },
    ],
    token_requirements: "a personal API token of a user who can see the organisations to sync; \
project tokens cannot list pipelines or contexts. Read access is enough: Sextant only calls GET endpoints.",
};

const GITHUB: ConnectionType = ConnectionType {
    name: "github",
    human_name: "GitHub",
    fields: &[
        FieldDef {
            name: "token",
            description: "A GitHub personal access token: classic (scopes repo, read:org, read:user) or fine-grained (read-only Metadata, Contents, Pull requests on repositories; Members, Administration on the organisation).",
            sensitive: true,
            required: true,
            default: None,
        },
        FieldDef {
            name: "api_url",
            description: "Base URL of the GitHub REST API: https://api.github.com, or https://HOST/api/v3 for GitHub Enterprise Server.",
            sensitive: false,
            required: false,
            default: Some("https://api.github.com"),
        },
    ],
    token_requirements: "a classic personal access token with the repo, read:org and read:user scopes, \
or a fine-grained personal access token with read-only Metadata, Contents and Pull requests permissions on the \
repositories and read-only Members and Administration permissions on the organisation. Where the organisation \
enforces SAML single sign-on, authorise the token for it. Sextant only calls GET endpoints.",
};

static TYPES: &[ConnectionType] = &[CIRCLECI, GITHUB];

pub fn connection_types() -> &'static [ConnectionType] {
    TYPES
}

pub fn connection_type(name: &str) -> Option<&'static ConnectionType> {
    TYPES.iter().find(|t| t.name == name)
}
