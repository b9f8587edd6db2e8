//! The shared HTTP layer every source polls through.
