//! The CircleCI source (API v2).

pub mod api;
pub mod map;
