//! `scopctl`: the command-line client for scopd, and a small Rust client API.

pub mod connection;

pub use connection::{ServerStatus, check_server};
