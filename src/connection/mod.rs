//! Connection types (fields, which are sensitive, token requirements) and
//! secret values that never print.

mod secret;
mod types;

pub use secret::{Secret, SecretRef, Secrets};
pub use types::{ConnectionType, FieldDef, connection_type, connection_types};
