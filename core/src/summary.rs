//! The final table of a job: dense vs pruned top-1/top-5, params, FLOPs, the
//! prune rate and the time per stage.
//!
//! One table for every way a job runs. Its figures come from the stages'
//! finish metrics: the export reports its model card's figures
//! ([`ExportFigures`], read by the agent from `export/model-card.json`), and
//! `decide` reports params and FLOPs before and after. `scopctl` feeds it the
//! `StageFinished` events of a coordinator job; `scop-worker run` feeds it the
//! same model card read from its own output directory.

use std::collections::BTreeMap;
use std::path::Path;

use comfy_table::Table;
use comfy_table::presets::ASCII_MARKDOWN;
use serde::{Deserialize, Serialize};

use crate::error::{Error, FieldError, Result};
use crate::spec::JobSpec;
use crate::stage::Stage;

/// Accuracy and size of one model; `None` where the job did not report it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    pub top1: Option<f64>,
    pub top5: Option<f64>,
    pub params: Option<f64>,
    pub flops: Option<f64>,
}

/// Everything the final table shows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobSummary {
    pub network: String,
    pub dataset: String,
    pub prune_rate: Option<f64>,
    /// The spec's `prune.criterion` (`None`: unknown, shown as SCOP).
    #[serde(default)]
    pub criterion: Option<String>,
    pub dense: Figures,
    pub pruned: Figures,
    /// `(stage, seconds)` in the order the stages finished.
    pub stage_seconds: Vec<(String, f64)>,
}

impl JobSummary {
    /// The table's names and rate from the spec, no figures yet.
    pub fn for_spec(spec: &JobSpec) -> JobSummary {
        JobSummary {
            network: spec.model.arch.clone(),
            dataset: dataset_name(spec),
            prune_rate: Some(spec.prune.rate),
            criterion: Some(spec.prune.criterion.as_str().to_owned()),
            ..JobSummary::default()
        }
    }

    /// The pruned row's name: `SCOP pruned`, or `l1 pruned` for another criterion.
    pub fn pruned_label(&self) -> String {
        match self.criterion.as_deref() {
            None | Some("scop") => "SCOP pruned".to_owned(),
            Some(other) => format!("{other} pruned"),
        }
    }

    /// Notes how long `stage` took; a stage that ran again replaces its time.
    pub fn stage_finished(&mut self, stage: &str, seconds: f64) {
        self.stage_seconds.retain(|(s, _)| s != stage);
        self.stage_seconds.push((stage.to_owned(), seconds));
    }

    /// Takes the figures a finished stage reported: `decide`'s params and
    /// FLOPs before and after, and the export's model-card figures
    /// ([`ExportFigures::metrics`]). Other stages and missing keys change nothing.
    pub fn apply(&mut self, stage: Stage, metrics: &BTreeMap<String, f64>) {
        let get = |key: &str| metrics.get(key).copied();
        let set = |slot: &mut Option<f64>, value: Option<f64>| {
            if value.is_some() {
                *slot = value;
            }
        };
        match stage {
            Stage::Decide => {
                set(&mut self.dense.params, get("params_before"));
                set(&mut self.pruned.params, get("params_after"));
                set(&mut self.dense.flops, get("flops_before"));
                set(&mut self.pruned.flops, get("flops_after"));
            }
            Stage::Export => {
                set(&mut self.dense.top1, get("top1_dense"));
                set(&mut self.dense.top5, get("top5_dense"));
                set(&mut self.pruned.top1, get("top1_pruned"));
                set(&mut self.pruned.top5, get("top5_pruned"));
                set(&mut self.dense.params, get("params_dense"));
                set(&mut self.pruned.params, get("params_pruned"));
                set(&mut self.dense.flops, get("flops_dense"));
                set(&mut self.pruned.flops, get("flops_pruned"));
                set(&mut self.prune_rate, get("prune_rate"));
            }
            _ => {}
        }
    }

    /// The table, then the time per stage.
    pub fn render(&self) -> String {
        // Markdown, so the table pastes into a report as it is.
        let mut table = Table::new();
        table.load_style(ASCII_MARKDOWN);
        table.set_header(["model", "network", "dataset", "top-1", "top-5", "prune rate", "params", "FLOPs"]);
        let show = |value: Option<f64>, f: fn(f64) -> String| value.map_or_else(|| "-".to_owned(), f);
        table.add_row([
            "dense".to_owned(),
            self.network.clone(),
            self.dataset.clone(),
            show(self.dense.top1, percent),
            show(self.dense.top5, percent),
            "-".to_owned(),
            show(self.dense.params, millions),
            show(self.dense.flops, millions),
        ]);
        table.add_row([
            self.pruned_label(),
            self.network.clone(),
            self.dataset.clone(),
            show(self.pruned.top1, percent),
            show(self.pruned.top5, percent),
            show(self.prune_rate, rate),
            with_ratio(self.pruned.params, self.dense.params),
            with_ratio(self.pruned.flops, self.dense.flops),
        ]);
        format!("{table}\ntime per stage: {}", self.stage_times())
    }

    /// `pretrain 6m12s, knockoff 1m01s, …, total 9m30s`.
    pub fn stage_times(&self) -> String {
        let mut parts: Vec<String> =
            self.stage_seconds.iter().map(|(stage, s)| format!("{stage} {}", duration(*s))).collect();
        let total: f64 = self.stage_seconds.iter().map(|(_, s)| s).sum();
        parts.push(format!("total {}", duration(total)));
        parts.join(", ")
    }
}

/// A short dataset name for reports: the data folder's name.
pub fn dataset_name(spec: &JobSpec) -> String {
    spec.data.root.file_name().map_or_else(|| "data".into(), |n| n.to_string_lossy().into_owned())
}

/// The part of the export's model card (`scop_worker::export::ModelCard`,
/// whose tests check it against this view) that the final table needs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ExportFigures {
    pub params: u64,
    pub flops: u64,
    pub dense_params: u64,
    pub dense_flops: u64,
    pub input_size: u32,
    #[serde(default)]
    pub prune: Option<PruneRate>,
    /// Accuracies the stages recorded (`top1_dense`, `top1_pruned`, ...).
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
}

/// The card's prune section, as far as the table needs it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PruneRate {
    pub rate: f64,
}

impl ExportFigures {
    /// Reads a model card; the error names the file.
    pub fn read(path: &Path) -> Result<ExportFigures> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| Error::Io { path: path.display().to_string(), source })?;
        serde_json::from_str(&text).map_err(|e| {
            Error::Parse(FieldError::new(path.display().to_string(), format!("not a model card: {e}")))
        })
    }

    /// The export's finish metrics: accuracy dense and pruned (as the stages
    /// recorded them), params, FLOPs, input size and prune rate. What the
    /// agent reports to the coordinator and what [`JobSummary::apply`] reads.
    pub fn metrics(&self) -> BTreeMap<String, f64> {
        let mut figures: Vec<(&str, f64)> =
            ["top1_dense", "top5_dense", "top1_pruned_before_finetune", "top1_pruned", "top5_pruned"]
                .into_iter()
                .filter_map(|key| self.metrics.get(key).map(|value| (key, *value)))
                .collect();
        figures.extend([
            ("params_dense", self.dense_params as f64),
            ("params_pruned", self.params as f64),
            ("flops_dense", self.dense_flops as f64),
            ("flops_pruned", self.flops as f64),
            ("input_size", f64::from(self.input_size)),
            ("prune_rate", self.prune.as_ref().map_or(0.0, |p| p.rate)),
        ]);
        figures.into_iter().map(|(key, value)| (key.to_owned(), value)).collect()
    }
}

/// `0.9125` → `91.25 %`.
pub fn percent(fraction: f64) -> String {
    format!("{:.2} %", fraction * 100.0)
}

/// `272474` → `0.27 M`.
pub fn millions(n: f64) -> String {
    format!("{:.2} M", n / 1e6)
}

/// `0.45` → `45 %`.
fn rate(r: f64) -> String {
    format!("{:.0} %", r * 100.0)
}

/// `0.15 M (0.55x)`: the pruned figure and its ratio to the dense one.
fn with_ratio(after: Option<f64>, before: Option<f64>) -> String {
    match (after, before) {
        (Some(a), Some(b)) if b > 0.0 => format!("{} ({:.2}x)", millions(a), a / b),
        (Some(a), _) => millions(a),
        _ => "-".to_owned(),
    }
}

/// `75.0` → `1m15s`; `3700.0` → `1h01m40s`; `0.4` → `0.4s`.
pub fn duration(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return "?".to_owned();
    }
    if seconds < 10.0 {
        return format!("{seconds:.1}s");
    }
    let s = seconds.round() as u64;
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, min, sec) => format!("{min}m{sec:02}s"),
        (h, min, sec) => format!("{h}h{min:02}m{sec:02}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> JobSpec {
        JobSpec::from_yaml(
            "model: {arch: resnet20, num_classes: 10}\n\
             data: {format: idx, root: data/fashion-mnist}\n\
             prune: {rate: 0.45}\n",
        )
        .unwrap()
    }

    fn card() -> ExportFigures {
        serde_json::from_str(
            r#"{"params": 150066, "flops": 22556288, "dense_params": 272474, "dense_flops": 40813184,
                "input_size": 28, "prune": {"rate": 0.45, "policy": "global"},
                "metrics": {"top1_dense": 0.9125, "top5_dense": 0.9987, "top1_pruned": 0.905,
                            "top5_pruned": 0.9979, "loss_pruned": 0.3}}"#,
        )
        .unwrap()
    }

    #[test]
    fn the_exports_card_figures_make_the_table() {
        let mut summary = JobSummary::for_spec(&spec());
        assert_eq!((summary.network.as_str(), summary.dataset.as_str()), ("resnet20", "fashion-mnist"));
        summary.stage_finished("knockoff", 61.0);
        summary.stage_finished("decide", 0.02);
        summary.stage_finished("finetune", 372.0);
        summary.stage_finished("export", 3.0);
        summary.apply(Stage::Export, &card().metrics());
        assert_eq!((summary.dense.top1, summary.pruned.top1), (Some(0.9125), Some(0.905)));
        let text = summary.render();
        for expected in [
            "| model ",
            "| SCOP pruned ",
            "91.25 %",
            "90.50 %",
            "99.79 %",
            "45 %",
            "0.15 M (0.55x)",
            "22.56 M (0.55x)",
        ] {
            assert!(text.contains(expected), "{expected} in\n{text}");
        }
        assert!(
            text.ends_with(
                "time per stage: knockoff 1m01s, decide 0.0s, finetune 6m12s, export 3.0s, total 7m16s"
            ),
            "{text}"
        );
    }

    #[test]
    fn the_card_reports_only_what_it_holds_and_a_rerun_stage_replaces_its_time() {
        let metrics = card().metrics();
        assert!(!metrics.contains_key("top1_pruned_before_finetune") && !metrics.contains_key("loss_pruned"));
        assert_eq!(metrics["params_dense"], 272_474.0);
        assert_eq!(metrics["prune_rate"], 0.45);

        let mut summary = JobSummary::default();
        summary.apply(Stage::Decide, &BTreeMap::from([("params_after".to_owned(), 150_066.0)]));
        summary.apply(Stage::Finetune, &BTreeMap::from([("top1_pruned".to_owned(), 0.5)]));
        assert_eq!((summary.pruned.params, summary.pruned.top1), (Some(150_066.0), None));
        summary.stage_finished("knockoff", 5.0);
        summary.stage_finished("knockoff", 7.0);
        assert_eq!(summary.stage_seconds, vec![("knockoff".to_owned(), 7.0)]);
        assert!(summary.render().contains("| -"), "{}", summary.render());
    }

    #[test]
    fn an_unreadable_card_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("card.json");
        std::fs::write(&path, "{}").unwrap();
        let err = ExportFigures::read(&path).unwrap_err().to_string();
        assert!(err.contains("card.json: not a model card"), "{err}");
    }

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(duration(0.4), "0.4s");
        assert_eq!(duration(75.0), "1m15s");
        assert_eq!(duration(3700.0), "1h01m40s");
        assert_eq!(duration(f64::NAN), "?");
    }
}
