//! Integration tests: a real `scopd` on `127.0.0.1:0` with real SQLite.

mod agent;
mod agent_backend;
mod artifacts;
mod audit;
mod auth;
mod backend;
mod dashboard;
mod health;
mod jobs;
mod logs;
mod metrics;
mod mtls;
mod reliability;
mod restart;
mod scheduling;
mod spec_validation;
mod standalone;
mod sweep;
mod tenancy;
mod watch;
mod workers;
