//! The bundled fixture server: recorded API responses served on loopback.
