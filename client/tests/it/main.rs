//! Integration tests: the real `scopctl` binary against a real in-process
//! scopd on 127.0.0.1, with real SQLite and a scripted worker.

mod connection;
mod exit_codes;
mod job_flow;
mod report;
mod resume;
mod support;
mod tls;
mod users;
mod workers;
