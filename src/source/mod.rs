//! Sources and the one shared HTTP driver.

pub mod circleci;
pub mod http;
