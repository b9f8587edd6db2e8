//! Pure diff: (stored index, collected graph, complete types) → change plan.
