//! Training building blocks shared by the stages: schedules, optimisers, metrics.

pub mod metrics;
pub mod optim;
pub mod schedule;
