//! The summary table printed at the end of a run, in the shape of the SCOP
//! seed's results: algorithm, network, dataset, top-1, top-5, prune rate,
//! params, plus FLOPs and the time per stage.

use comfy_table::{Table, presets::ASCII_MARKDOWN};
use serde::{Deserialize, Serialize};

use crate::events::format_duration;

/// Accuracy and size of one model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ModelFigures {
    pub top1: f64,
    pub top5: f64,
    pub params: u64,
    pub flops: u64,
}

/// Everything the final table shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub network: String,
    pub dataset: String,
    /// The unit-level rate of the spec (`prune.rate`).
    pub prune_rate: f64,
    pub dense: ModelFigures,
    pub pruned: ModelFigures,
    /// `(stage, seconds)` in the order the stages ran.
    pub stage_seconds: Vec<(String, f64)>,
}

fn millions(n: u64) -> String {
    format!("{:.2} M", n as f64 / 1e6)
}

fn percent(x: f64) -> String {
    format!("{:.2} %", x * 100.0)
}

impl RunSummary {
    /// The table as Markdown-compatible ASCII, followed by the stage times.
    pub fn render(&self) -> String {
        let mut table = Table::new();
        table.load_style(ASCII_MARKDOWN);
        table.set_header([
            "algorithm",
            "network",
            "dataset",
            "top-1",
            "top-5",
            "prune rate",
            "params",
            "FLOPs",
        ]);
        let ratio = |after: u64, before: u64| after as f64 / before.max(1) as f64;
        table.add_row([
            "dense".to_owned(),
            self.network.clone(),
            self.dataset.clone(),
            percent(self.dense.top1),
            percent(self.dense.top5),
            "-".to_owned(),
            millions(self.dense.params),
            millions(self.dense.flops),
        ]);
        table.add_row([
            "SCOP".to_owned(),
            self.network.clone(),
            self.dataset.clone(),
            percent(self.pruned.top1),
            percent(self.pruned.top5),
            format!("{:.0} %", self.prune_rate * 100.0),
            format!(
                "{} ({:.2}x)",
                millions(self.pruned.params),
                ratio(self.pruned.params, self.dense.params)
            ),
            format!("{} ({:.2}x)", millions(self.pruned.flops), ratio(self.pruned.flops, self.dense.flops)),
        ]);
        let times: Vec<String> =
            self.stage_seconds.iter().map(|(stage, s)| format!("{stage} {}", format_duration(*s))).collect();
        format!("{table}\ntime per stage: {}", times.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_dense_and_pruned_rows_with_ratios() {
        let summary = RunSummary {
            network: "resnet20".into(),
            dataset: "fashion-mnist".into(),
            prune_rate: 0.45,
            dense: ModelFigures { top1: 0.92, top5: 0.998, params: 272_474, flops: 41_000_000 },
            pruned: ModelFigures { top1: 0.915, top5: 0.997, params: 150_000, flops: 22_000_000 },
            stage_seconds: vec![("pretrain".into(), 372.0), ("knockoff".into(), 61.0)],
        };
        let text = summary.render();
        assert!(text.contains("| SCOP "), "{text}");
        assert!(text.contains("91.50 %"), "{text}");
        assert!(text.contains("0.15 M (0.55x)"), "{text}");
        assert!(text.contains("45 %"), "{text}");
        assert!(text.ends_with("time per stage: pretrain 6m12s, knockoff 1m01s"), "{text}");
    }
}
