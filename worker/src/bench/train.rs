//! Training-step throughput of the real stage code (the hidden `scop-worker
//! bench-train` command that `cargo xtask bench train` runs in a release build).
//!
//! Five steps on the same random batch, timed side by side in one process: the
//! supervised step of the dense network (SGD with Nesterov momentum, as in
//! pretrain and finetune), the knockoff step of the same network (`[real;
//! knockoff]`, only β trained) and the supervised steps of the network pruned
//! layer-wise at `--prune-rate` from seeded random scores with `residual:
//! scatter`, `keep` and `group`. Every round times
//! each step in turn, so a change in machine load affects all of them alike; the
//! median round is reported. Optionally the data loader's throughput on a real
//! dataset is measured too, to compare with the training throughput.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use scop_core::plan::Plan;
use scop_core::score::random_scores;
use scop_core::spec::{JobSpec, MemoryFormat, PruneSpec, ResidualMode};
use serde::Serialize;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::data::{Batch, Loader, LoaderConfig, ModelInput, Shard, Split, measure_loader};
use crate::events::Recorder;
use crate::models::{ResNet, count_params, layout};
use crate::prune::apply_plan;
use crate::stages::knockoff::KnockoffHooks;
use crate::stages::parallel::Single;
use crate::stages::supervised::Supervised;
use crate::stages::trainer::StageHooks;
use crate::stages::{Error, Result, StageContext, weights};

/// The options of `scop-worker bench-train`.
#[derive(Debug, Clone, clap::Args)]
pub struct TrainBenchArgs {
    #[arg(long, default_value = "resnet20")]
    pub arch: String,
    #[arg(long, default_value_t = 128)]
    pub batch: i64,
    #[arg(long, default_value_t = 32)]
    pub input_size: i64,
    #[arg(long, default_value_t = 3)]
    pub in_channels: i64,
    /// Intra-op threads (0: libtorch's default).
    #[arg(long, default_value_t = 0)]
    pub threads: i32,
    /// Untimed steps of each kind first.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Timed steps of each kind per round.
    #[arg(long, default_value_t = 5)]
    pub steps: usize,
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    #[arg(long, default_value_t = 0.45)]
    pub prune_rate: f64,
    /// `prune.round_to` values of the pruned networks: each residual mode is measured with each.
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    pub round_to: Vec<u32>,
    /// An IDX dataset directory (e.g. data/fashion-mnist) to measure the loader on.
    #[arg(long)]
    pub loader_data: Option<PathBuf>,
    #[arg(long, default_value_t = 2)]
    pub loader_workers: u32,
    #[arg(long, default_value_t = 100)]
    pub loader_batches: usize,
    /// Memory layout of each net, as the stages choose it (`auto`) or forced.
    #[arg(long, value_enum, default_value = "auto")]
    pub memory_format: BenchMemoryFormat,
    /// Writes the architecture descriptions of the dense network (`dense.json`)
    /// and of each pruned one (`<residual>-<round_to>.json`) here, for baselines.
    #[arg(long)]
    pub arch_dir: Option<PathBuf>,
}

/// `--memory-format`: the spec's values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum BenchMemoryFormat {
    Auto,
    ChannelsLast,
    Contiguous,
}

impl From<BenchMemoryFormat> for scop_core::spec::MemoryFormat {
    fn from(format: BenchMemoryFormat) -> Self {
        match format {
            BenchMemoryFormat::Auto => Self::Auto,
            BenchMemoryFormat::ChannelsLast => Self::ChannelsLast,
            BenchMemoryFormat::Contiguous => Self::Contiguous,
        }
    }
}

/// Seconds per step and images per second of one kind of step.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct StepTiming {
    pub seconds_per_step: f64,
    pub images_per_second: f64,
}

/// What `bench-train` prints, as one JSON object.
#[derive(Debug, Clone, Serialize)]
pub struct TrainBenchReport {
    pub arch: String,
    pub batch: i64,
    pub input_size: i64,
    pub threads: i32,
    pub dense_params: u64,
    pub dense_flops: u64,
    pub plain: StepTiming,
    pub knockoff: StepTiming,
    /// The plain step of each pruned network: scatter, keep, group.
    pub pruned: Vec<PrunedTiming>,
    /// Whether the dense net (plain and knockoff steps) trained channels-last.
    pub dense_channels_last: bool,
    /// Images per second the loader delivers, if `--loader-data` was given.
    pub loader_images_per_second: Option<f64>,
}

/// The plain step of one pruned network.
#[derive(Debug, Clone, Serialize)]
pub struct PrunedTiming {
    /// `scatter`, `keep` or `group`.
    pub residual: String,
    pub round_to: u32,
    pub params: u64,
    pub flops: u64,
    pub channels_last: bool,
    #[serde(flatten)]
    pub timing: StepTiming,
}

/// A spec carrying the step settings: SGD, Nesterov momentum 0.9, weight decay 1e-4 on everything.
fn bench_spec(args: &TrainBenchArgs) -> Result<JobSpec> {
    let root = args.loader_data.clone().unwrap_or_else(|| PathBuf::from("."));
    let yaml = format!(
        "model: {{ arch: {arch}, num_classes: 10, in_channels: {c}, input_size: {s} }}
data: {{ format: idx, root: {root:?}, loader_workers: {w} }}
finetune: {{ epochs: 1, batch_size: {b}, lr: 0.1, momentum: 0.9, nesterov: true, weight_decay: 1.0e-4, decay_bn_and_bias: true }}
knockoff: {{ epochs: 1, batch_size: {b} }}
seed: 0
",
        arch = args.arch,
        c = args.in_channels,
        s = args.input_size,
        root = root.display().to_string(),
        w = args.loader_workers,
        b = args.batch,
    );
    JobSpec::from_yaml(&yaml).map_err(|e| Error::Input(format!("bench-train options: {e}")))
}

/// Whether `net` trains channels-last under `format`, as the stages decide it on the
/// CPU: `auto` times both layouts on the bench's batch.
fn layout_for(format: MemoryFormat, net: &mut ResNet, vs: &VarStore, args: &TrainBenchArgs) -> Result<bool> {
    if let Some(channels_last) = layout::fixed_layout(format, Device::Cpu, net.desc()) {
        return Ok(channels_last);
    }
    let shape = [args.batch, args.in_channels, args.input_size, args.input_size];
    Ok(layout::time_layouts(net, vs, shape, layout::TIMED_PASSES)?.channels_last_is_faster())
}

/// Times the three steps (and the loader); see the module documentation.
pub fn measure(args: &TrainBenchArgs) -> Result<TrainBenchReport> {
    if args.steps == 0 || args.rounds == 0 || args.batch < 2 {
        return Err(Error::Input("--steps and --rounds must be >= 1 and --batch >= 2".to_owned()));
    }
    if args.threads > 0 {
        tch::set_num_threads(args.threads);
    }
    let spec = bench_spec(args)?;
    let desc = weights::dense_desc(&spec)?;
    let (mut dense, dense_vs) = weights::build(&desc, Device::Cpu, 0)?;
    let (mut scored, scored_vs) = weights::build(&desc, Device::Cpu, 0)?;
    let format = args.memory_format.into();
    let modes =
        [("scatter", ResidualMode::Scatter), ("keep", ResidualMode::Keep), ("group", ResidualMode::Group)];
    let mut pruned_nets = Vec::new();
    for (round_to, (name, residual)) in args.round_to.iter().flat_map(|&r| modes.map(|m| (r, m))) {
        let prune = PruneSpec { rate: args.prune_rate, round_to, residual, ..PruneSpec::default() };
        let plan = Plan::decide(&desc, &random_scores(&desc, 0), &prune, args.input_size as u32)?;
        let (mut pruned, pruned_vs) = apply_plan(&dense, &dense_vs, &plan)?;
        let channels_last = layout_for(format, &mut pruned, &pruned_vs, args)?;
        if channels_last {
            pruned.use_channels_last(&pruned_vs)?;
        }
        pruned_nets.push((name, round_to, pruned, pruned_vs, channels_last));
    }
    if let Some(dir) = &args.arch_dir {
        let names = pruned_nets.iter().map(|(name, round_to, net, ..)| (format!("{name}-{round_to}"), net));
        for (name, net) in std::iter::once(("dense".to_owned(), &dense)).chain(names) {
            let path = dir.join(format!("{name}.json"));
            std::fs::create_dir_all(dir)
                .and_then(|()| std::fs::write(&path, net.desc().to_json()))
                .map_err(|source| Error::Io { path: path.clone(), source })?;
        }
    }
    let dense_channels_last = layout_for(format, &mut dense, &dense_vs, args)?;
    if dense_channels_last {
        dense.use_channels_last(&dense_vs)?;
        scored.use_channels_last(&scored_vs)?;
    }

    let side = args.input_size;
    let batch = Batch {
        index: 0,
        images: Tensor::randn([args.batch, args.in_channels, side, side], (Kind::Float, Device::Cpu)),
        labels: Tensor::randint(10, [args.batch], (Kind::Int64, Device::Cpu)),
    };
    let mut plain = Supervised::new("bench", &spec.finetune, &dense, &dense_vs);
    let mut small: Vec<Supervised> = pruned_nets
        .iter()
        .map(|(_, _, net, vs, _)| Supervised::new("bench", &spec.finetune, net, vs))
        .collect();
    let mut knockoff = KnockoffHooks::new(spec.knockoff.clone(), &mut scored, &scored_vs, Device::Cpu)?;
    let mut replicas = Single;
    let mut sink = Recorder::default();
    let mut ctx = StageContext::new(&spec, Device::Cpu, &mut replicas, &mut sink, false);

    let mut hooks: Vec<&mut dyn StageHooks> = vec![&mut plain, &mut knockoff];
    hooks.extend(small.iter_mut().map(|s| s as &mut dyn StageHooks));
    let mut lrs = vec![0.1; hooks.len()];
    lrs[1] = spec.knockoff.lr;
    let mut step_count = 0u64;
    let mut run =
        |hooks: &mut dyn StageHooks, ctx: &mut StageContext<'_>, lr: f64, n: usize| -> Result<f64> {
            let start = Instant::now();
            for _ in 0..n {
                let result = hooks.step(ctx, &batch, lr, step_count)?;
                step_count += 1;
                if !result.loss.is_finite() {
                    return Err(Error::Input(format!("bench-train: the loss became {}", result.loss)));
                }
            }
            Ok(start.elapsed().as_secs_f64() / n.max(1) as f64)
        };
    for (h, lr) in hooks.iter_mut().zip(&lrs) {
        run(&mut **h, &mut ctx, *lr, args.warmup)?;
    }
    let mut rounds: Vec<Vec<f64>> = vec![Vec::new(); hooks.len()];
    for _ in 0..args.rounds {
        for ((h, lr), times) in hooks.iter_mut().zip(&lrs).zip(&mut rounds) {
            times.push(run(&mut **h, &mut ctx, *lr, args.steps)?);
        }
    }
    let timing = |mut times: Vec<f64>| {
        times.sort_by(f64::total_cmp);
        let seconds_per_step = times[times.len() / 2];
        StepTiming { seconds_per_step, images_per_second: args.batch as f64 / seconds_per_step }
    };
    drop(hooks);
    let mut timings = rounds.into_iter().map(timing);
    let (plain_t, knockoff_t) =
        (timings.next().expect("the plain round"), timings.next().expect("the knockoff round"));
    let input = args.input_size as u32;
    let pruned = pruned_nets
        .iter()
        .zip(timings)
        .map(|((name, round_to, net, vs, channels_last), timing)| PrunedTiming {
            residual: (*name).to_owned(),
            round_to: *round_to,
            params: count_params(vs),
            flops: net.desc().cost(input).flops,
            channels_last: *channels_last,
            timing,
        })
        .collect();
    let loader_images_per_second = match &args.loader_data {
        Some(_) => Some(loader_throughput(args, &spec)?),
        None => None,
    };
    Ok(TrainBenchReport {
        arch: args.arch.clone(),
        batch: args.batch,
        input_size: args.input_size,
        threads: tch::get_num_threads(),
        dense_params: count_params(&dense_vs),
        dense_flops: desc.cost(input).flops,
        plain: plain_t,
        knockoff: knockoff_t,
        pruned,
        dense_channels_last,
        loader_images_per_second,
    })
}

/// Images per second of the shuffled, augmenting training loader on the spec's data.
fn loader_throughput(args: &TrainBenchArgs, spec: &JobSpec) -> Result<f64> {
    let input = ModelInput {
        size: args.input_size as usize,
        channels: Some(args.in_channels as usize),
        num_classes: 10,
    };
    let dataset = crate::data::Dataset::from_spec(&spec.data, Split::Train, input)?;
    let config = LoaderConfig::train(args.batch as usize, Shard::SINGLE, args.loader_workers as usize, 0);
    let loader = Loader::new(Arc::new(dataset), config)?;
    Ok(measure_loader(&loader, args.loader_batches)?.images_per_second())
}
