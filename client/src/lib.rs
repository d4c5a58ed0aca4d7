//! `scopctl`: the command-line client of scopd, and the small Rust client API
//! it is built on. [`Client`] connects (server, token, TLS) and makes typed
//! calls whose failures are one [`Error`] type; the modules around it turn
//! results into tables, JSON/YAML records, live progress and HTML reports.

pub mod cli;
pub mod client;
pub mod error;
pub mod format;
pub mod records;
pub mod report;
pub mod settings;
pub mod submit;
pub mod summary;
pub mod sweep;
pub mod tables;
pub mod watch;

pub use client::{Client, ServerStatus};
pub use error::{Error, ExitCode, Result};
pub use settings::{ConnectionFlags, Settings};
