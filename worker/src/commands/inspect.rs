//! `scop-worker inspect`: what a plan would do to a network, unit by unit.
//!
//! The command's options and score files; the arithmetic on the architecture
//! description is `scop_core::inspect` (no network is built, so it is instant
//! even for ResNet-152). Without `--scores` the scores are seeded random
//! numbers, which decide *which* channels go but not *how many* under the layer
//! policy.

use std::path::PathBuf;

use scop_core::arch::ArchDesc;
use scop_core::arch::Family;
pub use scop_core::inspect::{InspectReport, UnitRow};
use scop_core::score::{random_scores, scores_from_json};
use scop_core::spec::{GlobalTarget, PolicyKind, PruneSpec, ResidualMode};

use crate::models::{Error, Result};

/// `--policy`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum PolicyArg {
    Layer,
    Global,
}

/// `--target` of the global policy.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum TargetArg {
    Params,
    Flops,
}

/// `--residual`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ResidualArg {
    Scatter,
    Keep,
    Group,
}

/// The options of `scop-worker inspect`.
#[derive(Debug, Clone, clap::Args)]
pub struct InspectArgs {
    /// resnet20|32|56|110 or resnet18|34|50|101|152.
    #[arg(long)]
    pub arch: String,
    #[arg(long, default_value_t = 10)]
    pub num_classes: u32,
    #[arg(long, default_value_t = 3)]
    pub in_channels: u32,
    /// Fraction removed: of each unit's channels (layer) or of params/FLOPs (global).
    #[arg(long, default_value_t = 0.45)]
    pub prune_rate: f64,
    #[arg(long, value_enum, default_value = "layer")]
    pub policy: PolicyArg,
    #[arg(long, value_enum, default_value = "flops")]
    pub target: TargetArg,
    #[arg(long, value_enum, default_value = "scatter")]
    pub residual: ResidualArg,
    #[arg(long, default_value_t = 1)]
    pub min_channels: u32,
    #[arg(long, default_value_t = 1)]
    pub round_to: u32,
    /// Side of the square input FLOPs are counted at; 32 for CIFAR-style nets, else 224.
    #[arg(long)]
    pub input_size: Option<u32>,
    /// JSON object from unit name to per-channel scores; random when absent.
    #[arg(long)]
    pub scores: Option<PathBuf>,
    /// Seed of the random scores.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

impl InspectArgs {
    pub fn prune_spec(&self) -> PruneSpec {
        PruneSpec {
            rate: self.prune_rate,
            policy: match self.policy {
                PolicyArg::Layer => PolicyKind::Layer,
                PolicyArg::Global => PolicyKind::Global,
            },
            target: match self.target {
                TargetArg::Params => GlobalTarget::Params,
                TargetArg::Flops => GlobalTarget::Flops,
            },
            min_channels: self.min_channels,
            round_to: self.round_to,
            residual: match self.residual {
                ResidualArg::Scatter => ResidualMode::Scatter,
                ResidualArg::Keep => ResidualMode::Keep,
                ResidualArg::Group => ResidualMode::Group,
            },
            ..PruneSpec::default()
        }
    }
}

pub fn inspect(args: &InspectArgs) -> Result<InspectReport> {
    let desc = ArchDesc::new(&args.arch, args.num_classes, args.in_channels)?;
    let input_size = args.input_size.unwrap_or(match desc.family {
        Family::Cifar => 32,
        Family::Imagenet => 224,
    });
    let (scores, source) = match &args.scores {
        Some(path) => {
            let shown = path.display().to_string();
            let text =
                std::fs::read_to_string(path).map_err(|source| Error::Io { path: shown.clone(), source })?;
            (scores_from_json(&text, &shown)?, shown)
        }
        None => (random_scores(&desc, args.seed), format!("random (seed {})", args.seed)),
    };
    Ok(InspectReport::of(&desc, &scores, args.prune_spec(), input_size, source)?)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: InspectArgs,
    }

    fn args(line: &str) -> InspectArgs {
        Cli::try_parse_from(std::iter::once("inspect").chain(line.split_whitespace())).unwrap().args
    }

    #[test]
    fn resnet50_at_45_percent_has_the_reference_figures() {
        let report =
            inspect(&args("--arch resnet50 --num-classes 10 --prune-rate 0.45 --input-size 32")).unwrap();
        assert_eq!((report.params_dense, report.params_pruned), (23_528_522, 10_180_582));
        assert_eq!((report.flops_dense, report.flops_pruned), (83_431_424, 37_059_686));
        assert_eq!(report.units.len(), 48);
        let row = &report.units[1];
        assert_eq!(
            (row.name.as_str(), row.in_dense, row.in_pruned, row.out_dense, row.out_pruned),
            ("layer1.0.conv2", 64, 36, 64, 36)
        );
        let json = serde_json::to_value(&report).unwrap();
        for key in ["params_dense", "params_pruned", "flops_dense", "flops_pruned", "units"] {
            assert!(json.get(key).is_some(), "{key}");
        }
        let table = report.render();
        assert!(
            table.contains("params       23,528,522 →      10,180,582  (43.27 % kept, 2.31× smaller)"),
            "{table}"
        );
        assert!(table.contains("policy layer, rate 0.45, residual scatter"), "{table}");
    }

    #[test]
    fn keep_and_global_change_the_totals() {
        let keep = inspect(&args("--arch resnet50 --residual keep")).unwrap();
        assert_eq!(keep.input_size, 224);
        assert!(keep.params_pruned > 10_180_582);
        let global =
            inspect(&args("--arch resnet56 --policy global --target params --prune-rate 0.5")).unwrap();
        assert!((0.49..=0.5).contains(&global.params_ratio), "{}", global.params_ratio);
    }

    #[test]
    fn group_shrinks_the_residual_streams_and_lists_them() {
        let scatter = inspect(&args("--arch resnet20")).unwrap();
        let group = inspect(&args("--arch resnet20 --residual group")).unwrap();
        assert!(group.flops_pruned < scatter.flops_pruned);
        assert_eq!(group.groups.len(), 3);
        // The first unit of layer2 reads the pruned stem stream: 16 - floor(7.2) = 9.
        let row = group.units.iter().find(|u| u.name == "layer2.0.conv1").unwrap();
        assert_eq!((row.in_dense, row.in_pruned), (16, 9));
        let table = group.render();
        assert!(table.contains("residual group"), "{table}");
        assert!(
            table.contains("conv1                 16→9     layer1.0.conv2, layer1.1.conv2, layer1.2.conv2"),
            "{table}"
        );
    }

    #[test]
    fn bad_input_is_named() {
        let err = inspect(&args("--arch resnet51")).unwrap_err().to_string();
        assert!(err.starts_with("arch: must be one of resnet20"), "{err}");
        let err = inspect(&args("--arch resnet20 --scores /nonexistent/s.json")).unwrap_err().to_string();
        assert!(err.starts_with("/nonexistent/s.json: "), "{err}");
    }
}
