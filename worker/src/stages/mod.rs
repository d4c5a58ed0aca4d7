//! The training stages of a SCOP job: pretrain, knockoff, finetune, export.

pub mod knockoff_source;
