//! The decide step: score statistics in, pruning plan out. Pure `scop-core`
//! code, so the coordinator runs exactly the same decision without libtorch;
//! `scop-worker run` calls it locally.

use scop_core::plan::Plan;

use super::context::StageContext;
use super::error::Result;
use super::weights;

/// Decides the plan from the scoring stage's last statistics (the final knockoff
/// epoch's, or the score stage's) and writes `plan.json`.
pub fn run(ctx: &StageContext<'_>) -> Result<Plan> {
    let stats = ctx.layout.read_last_statistics_of(ctx.spec.scoring_stage())?;
    let desc = weights::dense_desc(ctx.spec)?;
    let plan = Plan::decide(&desc, &stats.scores(), &ctx.spec.prune, ctx.input_size() as u32)?;
    ctx.layout.write_plan(&plan)?;
    Ok(plan)
}
