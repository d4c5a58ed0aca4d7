//! The decide step: score statistics in, pruning plan out. Pure `scop-core`
//! code, so the coordinator runs exactly the same decision without libtorch;
//! `scop-worker run` calls it locally.

use scop_core::plan::{Plan, decide_for_spec};

use super::context::StageContext;
use super::error::Result;

/// Decides the plan from the scoring stage's last statistics (the final knockoff
/// epoch's, or the score stage's) and writes `plan.json`.
pub fn run(ctx: &StageContext<'_>) -> Result<Plan> {
    let stats = ctx.layout.read_last_statistics_of(ctx.spec.scoring_stage())?;
    let plan = decide_for_spec(ctx.spec, &stats)?;
    ctx.layout.write_plan(&plan)?;
    Ok(plan)
}
