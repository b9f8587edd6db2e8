//! CircleCI API v2 wire types.
