//! Connection types (fields, which are sensitive, token requirements),
//! secret values that never print, encryption at rest and the stored
//! connections and integrations.

pub mod crypto;
pub mod provision;
mod secret;
pub mod service;
mod types;

pub use crypto::{CryptoError, KeySource, MasterKey};
pub use secret::{Secret, SecretRef, Secrets};
pub use types::{ConnectionType, FieldDef, connection_type, connection_types};
