//! The subcommands of `scop-worker` that do a job's work or describe it: the
//! local front end (`run`, over `launch`), one stage on one rank (`rank`, what
//! the launcher and the agent start), `inspect`, `info` (`runtime`) and
//! `check-nccl`. They orchestrate with `scop-core` and run the library modules.

pub mod inspect;
pub mod launch;
#[cfg(feature = "nccl")]
pub mod nccl_check;
pub mod rank;
pub mod run;
pub mod runtime;
