//! What a plan does to a network, unit by unit: params and FLOPs dense and
//! pruned, from the architecture description alone (no network is built, so
//! it is instant even for ResNet-152). `scop-worker inspect` prints it.

use serde::Serialize;

use crate::arch::ArchDesc;
use crate::error::Result;
use crate::plan::{GroupPlan, Plan};
use crate::score::ScoreMap;
use crate::spec::PruneSpec;

/// One row of the table.
#[derive(Debug, Clone, Serialize)]
pub struct UnitRow {
    pub name: String,
    pub in_dense: u32,
    pub out_dense: u32,
    pub in_pruned: u32,
    pub out_pruned: u32,
    pub params_dense: u64,
    pub params_pruned: u64,
    pub flops_dense: u64,
    pub flops_pruned: u64,
}

/// What `inspect` prints.
#[derive(Debug, Clone, Serialize)]
pub struct InspectReport {
    pub arch: String,
    pub num_classes: u32,
    pub input_size: u32,
    pub prune: PruneSpec,
    /// `random (seed N)` or the score file.
    pub scores: String,
    pub params_dense: u64,
    pub params_pruned: u64,
    pub flops_dense: u64,
    pub flops_pruned: u64,
    /// Pruned over dense.
    pub params_ratio: f64,
    pub flops_ratio: f64,
    pub units: Vec<UnitRow>,
    /// The residual streams pruned as groups (`--residual group`).
    pub groups: Vec<GroupPlan>,
}

impl InspectReport {
    /// Decides the plan `prune` gives `desc` from `scores` and counts each
    /// unit's params and FLOPs at a square input of side `input_size`, dense
    /// and pruned. `scores_source` says where the scores came from.
    pub fn of(
        desc: &ArchDesc,
        scores: &ScoreMap,
        prune: PruneSpec,
        input_size: u32,
        scores_source: String,
    ) -> Result<InspectReport> {
        let plan = Plan::decide(desc, scores, &prune, input_size)?;
        let pruned = desc.pruned(&plan)?;
        let units = desc
            .unit_costs(input_size)
            .into_iter()
            .zip(pruned.unit_costs(input_size))
            .map(|(d, p)| UnitRow {
                name: d.name,
                in_dense: d.in_channels,
                out_dense: d.out_channels,
                in_pruned: p.in_channels,
                out_pruned: p.out_channels,
                params_dense: d.cost.params,
                params_pruned: p.cost.params,
                flops_dense: d.cost.flops,
                flops_pruned: p.cost.flops,
            })
            .collect();
        let s = plan.summary;
        Ok(InspectReport {
            arch: desc.arch.clone(),
            num_classes: desc.num_classes,
            input_size,
            prune,
            scores: scores_source,
            params_dense: s.params_before,
            params_pruned: s.params_after,
            flops_dense: s.flops_before,
            flops_pruned: s.flops_after,
            params_ratio: s.params_after as f64 / s.params_before as f64,
            flops_ratio: s.flops_after as f64 / s.flops_before as f64,
            units,
            groups: plan.groups,
        })
    }
}

/// `1234567` → `1,234,567`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl InspectReport {
    /// The human-readable table.
    pub fn render(&self) -> String {
        let p = &self.prune;
        let mut out = format!(
            "{} · {} classes · input {}×{} · policy {:?}, rate {}, residual {:?}, min_channels {}, round_to {} · scores: {}\n\n",
            self.arch, self.num_classes, self.input_size, self.input_size, p.policy, p.rate, p.residual,
            p.min_channels, p.round_to, self.scores
        )
        .replace("Layer", "layer")
        .replace("Global", "global")
        .replace("Scatter", "scatter")
        .replace("Keep", "keep")
        .replace("Group", "group");
        out.push_str(&format!(
            "{:<18} {:>11} {:>11} {:>12} {:>12} {:>15} {:>15}\n",
            "unit", "in", "out", "params", "pruned", "FLOPs", "pruned"
        ));
        for u in &self.units {
            out.push_str(&format!(
                "{:<18} {:>5}→{:<5} {:>5}→{:<5} {:>12} {:>12} {:>15} {:>15}\n",
                u.name,
                u.in_dense,
                u.in_pruned,
                u.out_dense,
                u.out_pruned,
                grouped(u.params_dense),
                grouped(u.params_pruned),
                grouped(u.flops_dense),
                grouped(u.flops_pruned)
            ));
        }
        if !self.groups.is_empty() {
            out.push_str("\nresidual stream    width       units adding into it\n");
        }
        for g in &self.groups {
            out.push_str(&format!(
                "{:<18} {:>5}→{:<5} {}\n",
                g.writer,
                g.channels,
                g.kept.len(),
                g.members.join(", ")
            ));
        }
        out.push_str(&format!(
            "\nparams  {:>15} → {:>15}  ({:.2} % kept, {:.2}× smaller)\n",
            grouped(self.params_dense),
            grouped(self.params_pruned),
            100.0 * self.params_ratio,
            1.0 / self.params_ratio
        ));
        out.push_str(&format!(
            "FLOPs   {:>15} → {:>15}  ({:.2} % kept, {:.2}× fewer; multiply-accumulates per sample)\n",
            grouped(self.flops_dense),
            grouped(self.flops_pruned),
            100.0 * self.flops_ratio,
            1.0 / self.flops_ratio
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::score::random_scores;

    #[test]
    fn resnet50_at_45_percent_has_the_reference_figures() {
        let desc = ArchDesc::new("resnet50", 10, 3).unwrap();
        let prune = PruneSpec { rate: 0.45, ..PruneSpec::default() };
        let report = InspectReport::of(&desc, &random_scores(&desc, 0), prune, 32, "random".into()).unwrap();
        assert_eq!((report.params_dense, report.params_pruned), (23_528_522, 10_180_582));
        assert_eq!((report.flops_dense, report.flops_pruned), (83_431_424, 37_059_686));
        assert_eq!(report.units.len(), 48);
        let sum: u64 = report.units.iter().map(|u| u.params_pruned).sum();
        assert!(sum <= report.params_pruned, "units {sum} > total {}", report.params_pruned);
        assert!(report.render().contains("(43.27 % kept, 2.31× smaller)"), "{}", report.render());
    }
}
