//! CircleCI wire types → graph entities.
