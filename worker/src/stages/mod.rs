//! The stages of a SCOP job as functions of (spec, model state, data) →
//! (model state, metrics): pretrain, knockoff (or score), decide, finetune, export.
//!
//! Stages hand state to each other only through files in the job's output
//! directory ([`JobDir`], from `scop-core`), so each can run in its own process.

pub mod context;
pub mod ddp;
pub mod decide;
pub mod error;
pub mod export;
pub mod finetune;
pub mod knockoff;
pub mod knockoff_source;
pub mod parallel;
pub mod pretrain;
pub mod score;
pub mod step_bench;
pub mod supervised;
pub mod trainer;
pub mod weights;

pub use context::StageContext;
pub use error::{Error, Result};
pub use scop_core::job_dir::JobDir;
