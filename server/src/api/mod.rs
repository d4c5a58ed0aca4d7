//! The gRPC edge: one handler file per service, the conversions to and from
//! `scop.v1`, request validation, authentication and request metrics.

pub mod artifact_files;
pub mod auth;
pub mod client_cert;
pub mod convert;
pub mod grpc_metrics;
pub mod job_service;
pub mod stream_limits;
pub mod validation;
pub mod worker_service;
