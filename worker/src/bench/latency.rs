//! Inference latency of a dense network against its pruned versions, measured
//! side by side in one process (the hidden `scop-worker bench-models` command that
//! `cargo xtask bench models` runs in a release build).
//!
//! Four variants of the same weights: dense, and pruned with `residual: scatter`,
//! `keep` and `group`, all by the global policy to the same FLOPs target (dense
//! FLOPs divided by `--flops-factor`) from seeded random scores, so that their
//! speed-ups compare at equal work. Each runs as scop's evaluation runs it, every
//! BN folded into its conv (`--unfolded`: conv and BN apart), in the layout
//! `--memory-format` names; `blocked` runs the folded network on oneDNN's
//! blocked tensors ([`crate::models::Folded::into_blocked`]) where a variant can
//! (the scatter variant cannot and runs contiguous; each variant's report says).
//! Every repetition runs each variant once, in turn, so that a change in machine
//! load affects all of them alike; the best and the median time are reported
//! (the best is the least disturbed by other processes). With one
//! intra-op thread all the work runs on the calling thread, and its CPU time
//! (from `/proc/thread-self/schedstat`) is reported too: on a shared machine it
//! is far steadier than the wall clock, which also counts waiting for a core.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use scop_core::arch::ArchDesc;
use scop_core::plan::Plan;
use scop_core::score::random_scores;
use scop_core::spec::{GlobalTarget, PolicyKind, PruneSpec, ResidualMode};
use serde::Serialize;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::export::save_torchscript;
use crate::models::{Error, ResNet, Result};
use crate::prune::apply_plan;

/// The options of `scop-worker bench-models`.
#[derive(Debug, Clone, clap::Args)]
pub struct LatencyArgs {
    #[arg(long, default_value = "resnet50")]
    pub arch: String,
    #[arg(long, default_value_t = 10)]
    pub num_classes: u32,
    /// The pruned variants have this many times fewer FLOPs than the dense one.
    #[arg(long, default_value_t = 2.25)]
    pub flops_factor: f64,
    /// `prune.round_to` of the pruned variants.
    #[arg(long, default_value_t = 8)]
    pub round_to: u32,
    #[arg(long, value_delimiter = ',', default_value = "1,32")]
    pub batches: Vec<i64>,
    #[arg(long, default_value_t = 224)]
    pub input_size: u32,
    /// Timed repetitions per variant and batch size (after one warm-up run).
    #[arg(long, default_value_t = 3)]
    pub reps: usize,
    /// Intra-op threads; libtorch's default (one per core) when absent.
    #[arg(long)]
    pub threads: Option<i32>,
    /// Layout of the inputs and conv weights while timing (the exported
    /// TorchScript is written contiguous either way); `blocked`: oneDNN's
    /// blocked tensors, for the folded network only.
    #[arg(long, value_enum, default_value_t = BenchLayout::Contiguous)]
    pub memory_format: BenchLayout,
    /// Times the eval-mode forward with each BN as its own pass after the conv,
    /// instead of folded into the conv as scop's evaluation runs it.
    #[arg(long)]
    pub unfolded: bool,
    /// Writes `<variant>.json` (the architecture descriptions) and `<variant>.pt`
    /// (the exported TorchScript) here, for baselines.
    #[arg(long)]
    pub arch_dir: Option<PathBuf>,
}

/// The memory layouts `bench-models` can time, named as in the job spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BenchLayout {
    Contiguous,
    #[value(name = "channels_last")]
    ChannelsLast,
    Blocked,
}

/// One variant's figures.
#[derive(Debug, Clone, Serialize)]
pub struct VariantLatency {
    pub name: String,
    /// The layout it ran in: the one asked for, or contiguous where a variant
    /// cannot run blocked.
    pub memory_format: BenchLayout,
    pub params: u64,
    pub flops: u64,
    /// Fastest and median milliseconds per forward pass, by batch size.
    pub best_ms: BTreeMap<i64, f64>,
    pub median_ms: BTreeMap<i64, f64>,
    /// Fastest CPU time of the calling thread per forward pass, where the kernel reports it.
    pub best_cpu_ms: BTreeMap<i64, f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LatencyReport {
    pub arch: String,
    pub input_size: u32,
    pub flops_factor: f64,
    pub round_to: u32,
    pub memory_format: BenchLayout,
    /// Whether each BN was folded into its conv (`ResNet::fold_batch_norm`).
    pub bn_folded: bool,
    pub threads: i32,
    pub reps: usize,
    pub variants: Vec<VariantLatency>,
}

/// CPU time the calling thread has run, in milliseconds (Linux only).
fn thread_cpu_ms() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(ns as f64 / 1e6)
}

fn best(times: &[f64]) -> f64 {
    times.iter().copied().fold(f64::INFINITY, f64::min)
}

fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

pub fn measure(args: &LatencyArgs) -> Result<LatencyReport> {
    if args.reps == 0 || args.batches.iter().any(|&b| b < 1) {
        return Err(Error::Input("--reps and every --batches value must be >= 1".to_owned()));
    }
    if !(args.flops_factor >= 1.0 && args.flops_factor.is_finite()) || args.round_to < 1 {
        return Err(Error::Input(format!(
            "--flops-factor must be >= 1 and --round-to >= 1, got {} and {}",
            args.flops_factor, args.round_to
        )));
    }
    if args.unfolded && args.memory_format == BenchLayout::Blocked {
        return Err(Error::Input(
            "--memory-format blocked runs the folded network; drop --unfolded".to_owned(),
        ));
    }
    if let Some(threads) = args.threads {
        if threads < 1 {
            return Err(Error::Input(format!("--threads must be >= 1, got {threads}")));
        }
        tch::set_num_threads(threads);
    }
    tch::manual_seed(0);
    let desc = ArchDesc::new(&args.arch, args.num_classes, 3)?;
    let vs = VarStore::new(Device::Cpu);
    let dense = ResNet::new(&vs.root(), &desc)?;
    let scores = random_scores(&desc, 0);
    let mut variants = vec![("dense".to_owned(), dense, vs)];
    let variants_pruned =
        [("scatter", ResidualMode::Scatter), ("keep", ResidualMode::Keep), ("group", ResidualMode::Group)];
    for (name, residual) in variants_pruned {
        let prune = PruneSpec {
            rate: 1.0 - 1.0 / args.flops_factor,
            policy: PolicyKind::Global,
            target: GlobalTarget::Flops,
            round_to: args.round_to,
            residual,
            ..PruneSpec::default()
        };
        let plan = Plan::decide(&desc, &scores, &prune, args.input_size)?;
        let (model, vs) = apply_plan(&variants[0].1, &variants[0].2, &plan)?;
        variants.push((name.to_owned(), model, vs));
    }
    if let Some(dir) = &args.arch_dir {
        std::fs::create_dir_all(dir)
            .map_err(|source| Error::Io { path: dir.display().to_string(), source })?;
        for (name, model, _) in &variants {
            let path = dir.join(format!("{name}.json"));
            std::fs::write(&path, model.desc().to_json())
                .map_err(|source| Error::Io { path: path.display().to_string(), source })?;
        }
        for (name, model, vs) in &variants {
            save_torchscript(model, vs, &dir.join(format!("{name}.pt")))?;
        }
    }

    if args.memory_format == BenchLayout::ChannelsLast {
        for (_, model, vs) in &mut variants {
            model.use_channels_last(vs)?;
        }
    }

    // Folded after the layout change, so that the folded weights have it too.
    let mut folded = Vec::new();
    if !args.unfolded {
        for (_, model, _) in &variants {
            let fold = model.fold_batch_norm()?;
            let blocked = args.memory_format == BenchLayout::Blocked && fold.blocked_refusal().is_none();
            folded.push(if blocked { fold.into_blocked()? } else { fold });
        }
    }
    let layouts: Vec<BenchLayout> = (0..variants.len())
        .map(|i| match folded.get(i) {
            Some(fold) if fold.is_blocked() => BenchLayout::Blocked,
            _ if args.memory_format == BenchLayout::ChannelsLast => BenchLayout::ChannelsLast,
            _ => BenchLayout::Contiguous,
        })
        .collect();
    let forward = |i: usize, x: &Tensor| -> Result<Tensor> {
        match folded.get(i) {
            Some(folded) => folded.f_forward(x),
            None => variants[i].1.f_forward_t(x, false),
        }
    };
    let mut times: Vec<BTreeMap<i64, Vec<f64>>> = vec![BTreeMap::new(); variants.len()];
    let mut cpu_times: Vec<BTreeMap<i64, Vec<f64>>> = vec![BTreeMap::new(); variants.len()];
    tch::no_grad(|| -> Result<()> {
        for &batch in &args.batches {
            let side = i64::from(args.input_size);
            let x = Tensor::randn([batch, 3, side, side], (Kind::Float, Device::Cpu));
            for i in 0..variants.len() {
                let _logits = forward(i, &x)?;
            }
            for _ in 0..args.reps {
                for i in 0..variants.len() {
                    let (start, cpu_start) = (Instant::now(), thread_cpu_ms());
                    let _logits = forward(i, &x)?;
                    times[i].entry(batch).or_default().push(start.elapsed().as_secs_f64() * 1e3);
                    if let (Some(from), Some(to)) = (cpu_start, thread_cpu_ms()) {
                        cpu_times[i].entry(batch).or_default().push(to - from);
                    }
                }
            }
        }
        Ok(())
    })?;
    drop(folded);
    let variants = variants
        .into_iter()
        .zip(times.into_iter().zip(cpu_times))
        .zip(layouts)
        .map(|(((name, model, _), (times, cpu_times)), memory_format)| {
            let cost = model.desc().cost(args.input_size);
            VariantLatency {
                name,
                memory_format,
                params: cost.params,
                flops: cost.flops,
                best_ms: times.iter().map(|(b, t)| (*b, best(t))).collect(),
                best_cpu_ms: cpu_times.iter().map(|(b, t)| (*b, best(t))).collect(),
                median_ms: times.into_iter().map(|(b, t)| (b, median(t))).collect(),
            }
        })
        .collect();
    Ok(LatencyReport {
        arch: args.arch.clone(),
        input_size: args.input_size,
        flops_factor: args.flops_factor,
        round_to: args.round_to,
        memory_format: args.memory_format,
        bn_folded: !args.unfolded,
        threads: tch::get_num_threads(),
        reps: args.reps,
        variants,
    })
}
