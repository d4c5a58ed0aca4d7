//! The GPU training-step benchmark behind the hidden `scop-worker bench-gpu-train`
//! (`scripts/gpu-check` runs it beside PyTorch eager): the real `Supervised` step
//! of a dense ResNet on one CUDA device, channels-last and with `amp: bf16` as a
//! stage would train it, on a random batch that stays on the device.
//!
//! Every step reads its loss back (as the epoch loop does), so the time of a step
//! includes its whole GPU work; the baseline does the same with `loss.item()`.
//! `--cpu` runs the same step on the CPU, for the script's CPU rehearsal.

use std::time::Instant;

use scop_core::spec::JobSpec;
use serde::Serialize;
use tch::{Device, Kind, Tensor};

use crate::data::Batch;
use crate::events::Recorder;
use crate::stages::parallel::Single;
use crate::stages::supervised::{Supervised, apply_amp};
use crate::stages::trainer::StageHooks;
use crate::stages::{Error, Result, StageContext, weights};

/// The options of `scop-worker bench-gpu-train`.
#[derive(Debug, Clone, clap::Args)]
pub struct GpuBenchArgs {
    #[arg(long, default_value = "resnet50")]
    pub arch: String,
    #[arg(long, default_value_t = 256)]
    pub batch: i64,
    #[arg(long, default_value_t = 224)]
    pub input_size: i64,
    #[arg(long, default_value_t = 1000)]
    pub num_classes: i64,
    /// CUDA device ordinal.
    #[arg(long, default_value_t = 0)]
    pub device: usize,
    /// On the CPU instead (a rehearsal of the script: same step, no CUDA call).
    #[arg(long)]
    pub cpu: bool,
    /// Untimed steps first (cuDNN picks its algorithms here).
    #[arg(long, default_value_t = 10)]
    pub warmup: usize,
    #[arg(long, default_value_t = 30)]
    pub steps: usize,
}

/// What `bench-gpu-train` prints, as one JSON object.
#[derive(Debug, Clone, Serialize)]
pub struct GpuBenchReport {
    pub arch: String,
    pub batch: i64,
    pub input_size: i64,
    pub seconds_per_step: f64,
    pub images_per_second: f64,
}

/// Times `--steps` supervised steps after `--warmup` untimed ones.
pub fn measure(args: &GpuBenchArgs) -> Result<GpuBenchReport> {
    if !args.cpu && (!tch::Cuda::is_available() || args.device >= tch::Cuda::device_count() as usize) {
        return Err(Error::Input(format!("bench-gpu-train: no CUDA device {}", args.device)));
    }
    if args.steps == 0 || args.batch < 2 {
        return Err(Error::Input("bench-gpu-train: --steps must be >= 1 and --batch >= 2".to_owned()));
    }
    let (device, kind) = if args.cpu { (Device::Cpu, "cpu") } else { (Device::Cuda(args.device), "cuda") };
    let yaml = format!(
        "model: {{ arch: {arch}, num_classes: {n}, in_channels: 3, input_size: {s} }}
data: {{ format: idx, root: . }}
finetune: {{ epochs: 1, batch_size: {b}, lr: 0.1, momentum: 0.9, nesterov: true, weight_decay: 1.0e-4, amp: bf16 }}
resources: {{ device: {kind}, memory_format: channels_last }}
",
        arch = args.arch,
        n = args.num_classes,
        s = args.input_size,
        b = args.batch,
    );
    let spec =
        JobSpec::from_yaml(&yaml).map_err(|e| Error::Input(format!("bench-gpu-train options: {e}")))?;
    let desc = weights::dense_desc(&spec)?;
    let (mut model, vs) = weights::build(&desc, device, 0)?;
    let mut replicas = Single;
    let mut sink = Recorder::default();
    let mut ctx = StageContext::new(&spec, device, &mut replicas, &mut sink, false);
    apply_amp("bench", &spec.finetune, &mut model, device);
    ctx.set_memory_format("bench", &mut model, &vs, args.batch as u32)?;
    let side = args.input_size;
    let batch = Batch {
        index: 0,
        images: Tensor::randn([args.batch, 3, side, side], (Kind::Float, device)),
        labels: Tensor::randint(args.num_classes, [args.batch], (Kind::Int64, device)),
    };
    let mut hooks = Supervised::new("bench", &spec.finetune, &model, &vs);
    let mut run = |ctx: &mut StageContext<'_>, n: usize, first: u64| -> Result<()> {
        for i in 0..n {
            let result = hooks.step(ctx, &batch, 0.1, first + i as u64)?;
            if !result.loss.is_finite() {
                return Err(Error::Input(format!("bench-gpu-train: the loss became {}", result.loss)));
            }
        }
        Ok(())
    };
    let synchronize = || {
        if !args.cpu {
            tch::Cuda::synchronize(args.device as i64);
        }
    };
    run(&mut ctx, args.warmup, 0)?;
    synchronize();
    let start = Instant::now();
    run(&mut ctx, args.steps, args.warmup as u64)?;
    synchronize();
    let seconds_per_step = start.elapsed().as_secs_f64() / args.steps as f64;
    Ok(GpuBenchReport {
        arch: args.arch.clone(),
        batch: args.batch,
        input_size: args.input_size,
        seconds_per_step,
        images_per_second: args.batch as f64 / seconds_per_step,
    })
}
