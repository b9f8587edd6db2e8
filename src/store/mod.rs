//! The SQLite store: the only module with SQL.
