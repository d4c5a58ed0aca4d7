//! The job spec: what a user submits, parsed from YAML and validated with field paths.
//!
//! Defaults follow the SCOP reference (knockoff Adam lr 0.004, betas 0.5/0.9;
//! finetune SGD Nesterov, momentum 0.9, weight decay 1e-4, cosine LR; rate 0.45).
//! `docs/job-spec.md` documents every field.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, FieldError, Result};

mod duration;
mod shape;
mod sweep;
pub use duration::SpecDuration;
pub use sweep::{CANDIDATE_NAME_CHARS, Candidate, MAX_CANDIDATES};

/// A whole pruning job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// Human-readable name, used in reports.
    #[serde(default)]
    pub name: Option<String>,
    pub model: ModelSpec,
    pub data: DataSpec,
    /// Optional ordinary training from scratch before the knockoff stage.
    #[serde(default)]
    pub pretrain: Option<TrainSpec>,
    #[serde(default)]
    pub knockoff: KnockoffSpec,
    #[serde(default)]
    pub prune: PruneSpec,
    #[serde(default)]
    pub finetune: TrainSpec,
    #[serde(default)]
    pub resources: ResourcesSpec,
    #[serde(default)]
    pub output: OutputSpec,
    #[serde(default)]
    pub checkpoint: CheckpointSpec,
    /// Where the coordinator's experiment tracking files the job (when it tracks).
    #[serde(default)]
    pub tracking: TrackingSpec,
    /// Seed for initialisation, data order and augmentation.
    #[serde(default)]
    pub seed: u64,
    /// How often a failed stage is retried from its last checkpoint.
    #[serde(default = "default_max_restarts")]
    pub max_restarts: u32,
    /// Candidates to prune and finetune side by side from one pretrain and one
    /// knockoff; empty for a job with the one candidate `prune` describes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sweep: Vec<Candidate>,
}

fn default_max_restarts() -> u32 {
    3
}

/// Which network to prune.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// `resnet20|32|56|110` (CIFAR style) or `resnet18|34|50|101|152` (ImageNet style).
    pub arch: String,
    pub num_classes: u32,
    /// 1 for grayscale data, 3 for RGB. Defaults to the dataset's channel count.
    #[serde(default)]
    pub in_channels: Option<u32>,
    /// Side of the square input the model is fed; defaults to 32 (CIFAR style) or 224.
    #[serde(default)]
    pub input_size: Option<u32>,
    /// A safetensors checkpoint with torchvision-style names to start from.
    #[serde(default)]
    pub init_from: Option<PathBuf>,
}

/// The on-disk format of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataFormat {
    /// MNIST-style IDX files, gzipped or raw.
    Idx,
    /// CIFAR-10 binary batches.
    Cifar10,
    /// One sub-folder of JPEG/PNG images per class.
    ImageFolder,
}

/// Where the data lives and how to read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    pub format: DataFormat,
    /// Root directory (relative paths are resolved against the spec file's directory).
    pub root: PathBuf,
    /// Per-channel normalisation mean; defaults to the dataset's usual values.
    #[serde(default)]
    pub mean: Option<Vec<f32>>,
    #[serde(default)]
    pub std: Option<Vec<f32>>,
    /// Use only the first N training samples (for quick runs and tests).
    #[serde(default)]
    pub train_subset: Option<usize>,
    /// Use only the first N test samples.
    #[serde(default)]
    pub test_subset: Option<usize>,
    /// Random crop + flip on training batches.
    #[serde(default = "default_true")]
    pub augment: bool,
    /// Background threads decoding batches.
    #[serde(default = "default_loader_workers")]
    pub loader_workers: u32,
}

fn default_true() -> bool {
    true
}

fn default_loader_workers() -> u32 {
    2
}

/// Optimiser of a training stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    Sgd,
    Adam,
}

/// Learning-rate schedule of a training stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    Constant,
    Cosine,
    Poly,
}

/// Mixed precision on CUDA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Amp {
    Off,
    Bf16,
}

/// An ordinary training stage (pretrain or finetune).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainSpec {
    pub epochs: u32,
    pub batch_size: u32,
    pub optimizer: OptimizerKind,
    pub lr: f64,
    pub momentum: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
    /// Apply weight decay to BN parameters and biases too.
    pub decay_bn_and_bias: bool,
    pub schedule: Schedule,
    pub warmup_epochs: f64,
    pub label_smoothing: f64,
    /// Clip the global gradient norm to this value; none by default.
    pub grad_clip: Option<f64>,
    pub amp: Amp,
    /// Batches of BN recalibration before finetuning (ignored for pretrain).
    pub bn_recalibration_batches: u32,
    /// Write a checkpoint every N steps (and always at the end of an epoch); 0 means only at epoch ends.
    pub checkpoint_every_steps: u64,
}

impl Default for TrainSpec {
    fn default() -> Self {
        Self {
            epochs: 120,
            batch_size: 128,
            optimizer: OptimizerKind::Sgd,
            lr: 0.1,
            momentum: 0.9,
            nesterov: true,
            weight_decay: 1e-4,
            decay_bn_and_bias: true,
            schedule: Schedule::Cosine,
            warmup_epochs: 0.0,
            label_smoothing: 0.0,
            grad_clip: None,
            amp: Amp::Off,
            bn_recalibration_batches: 50,
            checkpoint_every_steps: 0,
        }
    }
}

/// Where knockoff samples come from. In YAML `{kind: permute}`, or just
/// `permute` (and `gaussian`) for the kinds that take no settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", deny_unknown_fields)]
#[serde(remote = "Self")]
pub enum KnockoffSource {
    /// A random permutation of the local batch.
    Permute,
    /// Per-pixel Gaussian noise with each channel's batch mean and std.
    Gaussian,
    /// A TorchScript generator mapping noise `[N, 128]` to images.
    Generator { path: PathBuf },
}

impl Serialize for KnockoffSource {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        KnockoffSource::serialize(self, serializer)
    }
}

impl<'de> Deserialize<'de> for KnockoffSource {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = KnockoffSource;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("`permute`, `gaussian`, or a map such as `{kind: generator, path: FILE}`")
            }
            fn visit_str<E: serde::de::Error>(self, name: &str) -> std::result::Result<Self::Value, E> {
                match name {
                    "permute" => Ok(KnockoffSource::Permute),
                    "gaussian" => Ok(KnockoffSource::Gaussian),
                    "generator" => {
                        Err(E::custom("`generator` needs a path: `{kind: generator, path: FILE}`"))
                    }
                    other => Err(E::unknown_variant(other, &["permute", "gaussian", "generator"])),
                }
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                KnockoffSource::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// Which half of the `[real; knockoff]` batch the loss is computed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KnockoffLoss {
    Real,
    Both,
}

/// The knockoff stage: learn β with everything else frozen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KnockoffSpec {
    pub epochs: u32,
    pub batch_size: u32,
    pub lr: f64,
    pub betas: (f64, f64),
    pub source: KnockoffSource,
    pub loss: KnockoffLoss,
    pub checkpoint_every_steps: u64,
}

impl Default for KnockoffSpec {
    fn default() -> Self {
        Self {
            epochs: 20,
            batch_size: 128,
            lr: 0.004,
            betas: (0.5, 0.9),
            source: KnockoffSource::Permute,
            loss: KnockoffLoss::Real,
            checkpoint_every_steps: 0,
        }
    }
}

/// How scores become kept channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyKind {
    /// Each unit drops its `floor(rate·C)` lowest scores (the reference).
    Layer,
    /// One ranking across all units until the target reduction is met.
    Global,
}

/// What a global policy's rate measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GlobalTarget {
    Params,
    Flops,
}

/// What happens to the last conv of each residual block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResidualMode {
    /// Prune its outputs and scatter them back to the full residual width (the reference).
    Scatter,
    /// Keep all its outputs.
    Keep,
    /// Prune each residual stream as one group: the stem or downsample that writes
    /// it, every last unit that adds into it, and every layer that reads it (the
    /// next blocks' first units and shortcuts, the classifier) keep the same
    /// channels, so the residual width itself shrinks. A group's score per channel
    /// is the mean over its member units of their scores normalised per unit.
    Group,
}

impl ResidualMode {
    /// The name the spec uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scatter => "scatter",
            Self::Keep => "keep",
            Self::Group => "group",
        }
    }
}

/// How each output channel of a unit is scored before the policy ranks the
/// scores (docs/job-spec.md gives each formula). Only `scop` needs the knockoff
/// stage; the others are computed by the short `score` stage from the dense weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Criterion {
    /// `|γ|·(2β − 1)`, β learned against knockoff data (the reference).
    Scop,
    /// `|γ|` of the BN after the conv (network slimming).
    BnGamma,
    /// `Σ|W_c|` over the output filter's weights.
    L1,
    /// `sqrt(Σ W_c²)` over the output filter's weights.
    L2,
    /// `Σ_{c'} ‖W_c − W_c'‖₂` over the other filters of the unit (geometric median).
    Fpgm,
    /// `|Σ W_c · ∂L/∂W_c|`, the gradient averaged over a short pass of training batches.
    Taylor,
    /// Uniform in [0, 1), from the spec's `seed`.
    Random,
}

impl Criterion {
    /// Every criterion, in the order the docs list them.
    pub const ALL: [Criterion; 7] = [
        Criterion::Scop,
        Criterion::BnGamma,
        Criterion::L1,
        Criterion::L2,
        Criterion::Fpgm,
        Criterion::Taylor,
        Criterion::Random,
    ];

    /// The name a spec writes.
    pub const fn as_str(self) -> &'static str {
        match self {
            Criterion::Scop => "scop",
            Criterion::BnGamma => "bn_gamma",
            Criterion::L1 => "l1",
            Criterion::L2 => "l2",
            Criterion::Fpgm => "fpgm",
            Criterion::Taylor => "taylor",
            Criterion::Random => "random",
        }
    }

    /// Whether the scores come from the knockoff stage's β (else from the `score` stage).
    pub fn needs_knockoff(self) -> bool {
        self == Criterion::Scop
    }
}

/// The pruning decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PruneSpec {
    /// How channels are scored; `scop` by default.
    pub criterion: Criterion,
    /// `taylor` only: how many training batches (per rank) the gradient is averaged over.
    pub taylor_batches: u32,
    /// `taylor` only: the size of those batches.
    pub taylor_batch_size: u32,
    /// Fraction removed: of each unit's channels (`layer`) or of params/FLOPs (`global`).
    pub rate: f64,
    pub policy: PolicyKind,
    pub target: GlobalTarget,
    pub min_channels: u32,
    /// Kept counts are rounded to the nearest multiple of this. A spec that does not set
    /// it gets 8 when `resources.device` is `cuda` or `resources.memory_format` is
    /// `channels_last` (the fast kernels want multiples of 8), 1 otherwise.
    pub round_to: u32,
    pub residual: ResidualMode,
}

/// `prune.round_to` when a spec leaves it out and runs where odd widths are slow.
pub const HARDWARE_ROUND_TO: u32 = 8;

impl Default for PruneSpec {
    fn default() -> Self {
        Self {
            criterion: Criterion::Scop,
            taylor_batches: 16,
            taylor_batch_size: 64,
            rate: 0.45,
            policy: PolicyKind::Layer,
            target: GlobalTarget::Flops,
            min_channels: 1,
            round_to: 1,
            residual: ResidualMode::Scatter,
        }
    }
}

/// Compute device of the ranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    Cpu,
    Cuda,
}

/// Memory layout of activations and conv weights while training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemoryFormat {
    /// On the CPU, both layouts are timed on the stage's network when the stage
    /// starts and the faster is kept (no width rule predicts oneDNN's speed); on
    /// a GPU, channels-last when every unit's channel counts are multiples of 8
    /// (the dense ResNets; pruned ones with `prune.round_to: 8`), contiguous
    /// otherwise, since cuDNN's fast kernels want multiples of 8.
    Auto,
    ChannelsLast,
    Contiguous,
}

/// Which collective transport the ranks use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendChoice {
    /// NCCL for a CUDA group of two or more ranks, otherwise the TCP ring (a
    /// one-rank group then exchanges nothing).
    Auto,
    /// The TCP ring (CPU tensors; a CUDA job copies through the host).
    Tcp,
    /// NCCL, even for one rank (a one-rank communicator), so that a single GPU
    /// exercises the whole NCCL path. Needs `device: cuda`.
    Nccl,
}

/// Where and how wide the job runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResourcesSpec {
    pub device: DeviceKind,
    pub world_size: u32,
    /// Intra-op threads per rank; 0 means the machine's cores split between ranks.
    pub threads: u32,
    pub memory_format: MemoryFormat,
    pub backend: BackendChoice,
    /// How long a rank waits in one collective for a silent peer (one that
    /// neither answers nor closes its connection) before the job fails. A peer
    /// that crashes is noticed at once, whatever this says.
    pub collective_timeout: SpecDuration,
    /// How long a rank waits for its peers to join the group.
    pub connect_timeout: SpecDuration,
    /// Seconds a stage may go without any progress (no event from its ranks)
    /// before its attempt is failed and retried; none by default.
    pub stage_timeout: Option<u64>,
}

/// Default of `resources.collective_timeout`: PyTorch's NCCL default.
pub const DEFAULT_COLLECTIVE_TIMEOUT: SpecDuration = SpecDuration::from_secs(600);
/// Default of `resources.connect_timeout`.
pub const DEFAULT_CONNECT_TIMEOUT: SpecDuration = SpecDuration::from_secs(120);

impl Default for ResourcesSpec {
    fn default() -> Self {
        Self {
            device: DeviceKind::Cpu,
            world_size: 1,
            threads: 0,
            memory_format: MemoryFormat::Auto,
            backend: BackendChoice::Auto,
            collective_timeout: DEFAULT_COLLECTIVE_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            stage_timeout: None,
        }
    }
}

impl ResourcesSpec {
    /// Whether the ranks talk over NCCL (otherwise the TCP ring).
    pub fn uses_nccl(&self) -> bool {
        self.group_uses_nccl(self.world_size)
    }

    /// Whether a group of `world` ranks of this job talks over NCCL: the one
    /// rule the local launcher, the coordinator and the agent all follow, for
    /// stages that run on fewer ranks than `world_size` too.
    pub fn group_uses_nccl(&self, world: u32) -> bool {
        match self.backend {
            BackendChoice::Auto => self.device == DeviceKind::Cuda && world > 1,
            BackendChoice::Tcp => false,
            BackendChoice::Nccl => self.device == DeviceKind::Cuda,
        }
    }

    /// Whether the ranks of one `stage` attempt on `world` ranks talk over NCCL,
    /// as the coordinator and its agents decide it: export runs on rank 0 alone
    /// and exchanges nothing, so it never needs a communicator.
    pub fn stage_uses_nccl(&self, stage: crate::stage::Stage, world: u32) -> bool {
        stage != crate::stage::Stage::Export && self.group_uses_nccl(world)
    }
}

/// How checkpoints are kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointSpec {
    /// Complete checkpoints kept per stage, newest first; older ones are
    /// deleted. At least 2 leaves one to fall back to when the latest is damaged.
    pub keep: u32,
}

impl Default for CheckpointSpec {
    fn default() -> Self {
        Self { keep: 2 }
    }
}

/// Where results go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputSpec {
    pub dir: PathBuf,
    /// Print a progress line every N steps.
    pub log_every_steps: u64,
}

impl Default for OutputSpec {
    fn default() -> Self {
        Self { dir: PathBuf::from("runs/job"), log_every_steps: 50 }
    }
}

/// Experiment tracking: the coordinator logs each job as one MLflow run when it
/// is given a tracking server.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrackingSpec {
    /// The MLflow experiment of the job's run; the coordinator's default
    /// (`MLFLOW_EXPERIMENT_NAME` where it runs, else "scop") when `None`.
    pub experiment: Option<String>,
}

/// The architectures scop knows, by spec name.
pub const ARCHS: &[&str] = &[
    "resnet20",
    "resnet32",
    "resnet56",
    "resnet110",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
];

impl JobSpec {
    /// Parses YAML and validates it; errors carry field paths.
    pub fn from_yaml(text: &str) -> Result<Self> {
        let mut spec: JobSpec = shape::parse_all(text).map_err(|mut errors| {
            if errors.len() == 1 { Error::Parse(errors.remove(0)) } else { Error::Shape(errors) }
        })?;
        if !round_to_given(text) && spec.resources.prefers_round_widths() {
            spec.prune.round_to = HARDWARE_ROUND_TO;
        }
        spec.validate()?;
        Ok(spec)
    }

    /// Reads and parses a spec file. Relative paths in it are resolved against
    /// the file's directory, so a spec means the same from any working directory.
    pub fn from_file(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| Error::Io { path: path.display().to_string(), source })?;
        let mut spec = Self::from_yaml(&text)?;
        let dir = path.parent().unwrap_or(std::path::Path::new("."));
        let dir = if dir.as_os_str().is_empty() { std::path::Path::new(".") } else { dir };
        // Absolute, since the spec is read elsewhere (a rank's scratch folder, another
        // machine) than where a relative spec path such as `examples/x.yaml` meant it.
        let dir = std::path::absolute(dir)
            .map_err(|source| Error::Io { path: path.display().to_string(), source })?;
        spec.resolve_paths(&dir);
        Ok(spec)
    }

    /// Makes every relative path of the spec relative to `base` instead.
    pub fn resolve_paths(&mut self, base: &std::path::Path) {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = normalise(&base.join(&*p));
            }
        };
        resolve(&mut self.data.root);
        resolve(&mut self.output.dir);
        if let Some(p) = &mut self.model.init_from {
            resolve(p);
        }
        if let KnockoffSource::Generator { path } = &mut self.knockoff.source {
            resolve(path);
        }
    }

    /// Every range problem at once, each with its field path.
    pub fn validate(&self) -> Result<()> {
        let mut errors = Vec::new();
        let mut check = |ok: bool, path: &str, message: String| {
            if !ok {
                errors.push(FieldError::new(path, message));
            }
        };
        check(
            ARCHS.contains(&self.model.arch.as_str()),
            "model.arch",
            format!("must be one of {}, got {:?}", ARCHS.join(", "), self.model.arch),
        );
        check(
            self.model.num_classes >= 2,
            "model.num_classes",
            format!("must be >= 2, got {}", self.model.num_classes),
        );
        if let Some(c) = self.model.in_channels {
            check(c >= 1, "model.in_channels", format!("must be >= 1, got {c}"));
        }
        if let Some(s) = self.model.input_size {
            check(s >= 8, "model.input_size", format!("must be >= 8, got {s}"));
        }
        for (name, values) in [("data.mean", &self.data.mean), ("data.std", &self.data.std)] {
            if let Some(values) = values {
                check(!values.is_empty(), name, "must not be empty".to_owned());
                for (i, v) in values.iter().enumerate() {
                    let positive = name == "data.std";
                    let ok = v.is_finite() && (!positive || *v > 0.0);
                    let want = if positive { "a finite number > 0" } else { "a finite number" };
                    check(ok, &format!("{name}[{i}]"), format!("must be {want}, got {v}"));
                }
            }
        }
        check(
            self.data.loader_workers >= 1,
            "data.loader_workers",
            format!("must be >= 1, got {}", self.data.loader_workers),
        );
        if let Some(pretrain) = &self.pretrain {
            validate_train("pretrain", pretrain, &mut check);
        }
        validate_train("finetune", &self.finetune, &mut check);
        let k = &self.knockoff;
        check(k.batch_size >= 1, "knockoff.batch_size", format!("must be >= 1, got {}", k.batch_size));
        check(k.lr > 0.0 && k.lr.is_finite(), "knockoff.lr", format!("must be > 0, got {}", k.lr));
        for (i, b) in [k.betas.0, k.betas.1].into_iter().enumerate() {
            check(
                (0.0..1.0).contains(&b),
                &format!("knockoff.betas[{i}]"),
                format!("must be in [0, 1), got {b}"),
            );
        }
        let p = &self.prune;
        check(p.rate >= 0.0 && p.rate < 1.0, "prune.rate", format!("must be in [0, 1), got {}", p.rate));
        check(p.min_channels >= 1, "prune.min_channels", format!("must be >= 1, got {}", p.min_channels));
        check(p.round_to >= 1, "prune.round_to", format!("must be >= 1, got {}", p.round_to));
        check(
            p.taylor_batches >= 1,
            "prune.taylor_batches",
            format!("must be >= 1, got {}", p.taylor_batches),
        );
        check(
            p.taylor_batch_size >= 1,
            "prune.taylor_batch_size",
            format!("must be >= 1, got {}", p.taylor_batch_size),
        );
        if let Some(timeout) = self.resources.stage_timeout {
            check(timeout >= 1, "resources.stage_timeout", format!("must be >= 1 (seconds), got {timeout}"));
        }
        check(
            self.checkpoint.keep >= 1,
            "checkpoint.keep",
            format!("must be >= 1, got {}", self.checkpoint.keep),
        );
        check(
            self.resources.world_size >= 1,
            "resources.world_size",
            format!("must be >= 1, got {}", self.resources.world_size),
        );
        let r = &self.resources;
        check(
            r.backend != BackendChoice::Nccl || r.device == DeviceKind::Cuda,
            "resources.backend",
            "nccl needs resources.device: cuda".to_owned(),
        );
        for (path, d) in [
            ("resources.collective_timeout", r.collective_timeout),
            ("resources.connect_timeout", r.connect_timeout),
        ] {
            check(d.as_millis() >= 1, path, format!("must be > 0, got {d}"));
        }
        check(
            self.output.log_every_steps >= 1,
            "output.log_every_steps",
            format!("must be >= 1, got {}", self.output.log_every_steps),
        );
        if let Some(experiment) = &self.tracking.experiment {
            check(
                !experiment.trim().is_empty(),
                "tracking.experiment",
                "must not be empty (leave it out for the coordinator's default)".to_owned(),
            );
            check(
                !experiment.chars().any(char::is_control),
                "tracking.experiment",
                format!("must not contain control characters, got {experiment:?}"),
            );
        }
        self.validate_sweep(&mut check);
        self.check_upper_bounds(&mut check);
        if errors.is_empty() { Ok(()) } else { Err(Error::Invalid(errors)) }
    }

    /// Caps on the numeric fields, so one spec cannot ask a shared cluster
    /// for unbounded work (docs/job-spec.md lists them).
    fn check_upper_bounds(&self, check: &mut impl FnMut(bool, &str, String)) {
        if let Some(name) = &self.name {
            let chars = name.chars().count();
            check(
                chars <= limits::NAME_CHARS,
                "name",
                format!("must be at most {} characters, got {chars}", limits::NAME_CHARS),
            );
        }
        let mut at_most = |path: &str, value: u64, max: u64| {
            check(value <= max, path, format!("must be <= {max}, got {value}"));
        };
        let m = &self.model;
        at_most("model.num_classes", m.num_classes.into(), limits::NUM_CLASSES);
        at_most("model.in_channels", m.in_channels.unwrap_or(1).into(), limits::IN_CHANNELS);
        at_most("model.input_size", m.input_size.unwrap_or(8).into(), limits::INPUT_SIZE);
        at_most("data.loader_workers", self.data.loader_workers.into(), limits::LOADER_WORKERS);
        let mut train = |section: &str, t: &TrainSpec| {
            at_most(&format!("{section}.epochs"), t.epochs.into(), limits::EPOCHS);
            at_most(&format!("{section}.batch_size"), t.batch_size.into(), limits::BATCH_SIZE);
            at_most(
                &format!("{section}.bn_recalibration_batches"),
                t.bn_recalibration_batches.into(),
                limits::BN_RECALIBRATION_BATCHES,
            );
        };
        if let Some(pretrain) = &self.pretrain {
            train("pretrain", pretrain);
        }
        train("finetune", &self.finetune);
        at_most("knockoff.epochs", self.knockoff.epochs.into(), limits::EPOCHS);
        at_most("knockoff.batch_size", self.knockoff.batch_size.into(), limits::BATCH_SIZE);
        at_most("prune.min_channels", self.prune.min_channels.into(), limits::CHANNELS);
        at_most("prune.round_to", self.prune.round_to.into(), limits::CHANNELS);
        at_most("prune.taylor_batches", self.prune.taylor_batches.into(), limits::TAYLOR_BATCHES);
        at_most("prune.taylor_batch_size", self.prune.taylor_batch_size.into(), limits::BATCH_SIZE);
        at_most("resources.world_size", self.resources.world_size.into(), limits::WORLD_SIZE);
        at_most("resources.threads", self.resources.threads.into(), limits::THREADS);
        at_most("max_restarts", self.max_restarts.into(), limits::MAX_RESTARTS);
        if let Some(experiment) = &self.tracking.experiment {
            let chars = experiment.chars().count();
            check(
                chars <= limits::EXPERIMENT_CHARS,
                "tracking.experiment",
                format!("must be at most {} characters, got {chars}", limits::EXPERIMENT_CHARS),
            );
        }
    }
}

/// Upper bounds of the spec's numeric fields.
pub mod limits {
    pub const NAME_CHARS: usize = 128;
    pub const EXPERIMENT_CHARS: usize = 256;
    pub const NUM_CLASSES: u64 = 100_000;
    pub const IN_CHANNELS: u64 = 64;
    pub const INPUT_SIZE: u64 = 4096;
    pub const LOADER_WORKERS: u64 = 64;
    pub const EPOCHS: u64 = 10_000;
    pub const BATCH_SIZE: u64 = 65_536;
    pub const BN_RECALIBRATION_BATCHES: u64 = 100_000;
    pub const TAYLOR_BATCHES: u64 = 100_000;
    pub const CHANNELS: u64 = 4096;
    pub const WORLD_SIZE: u64 = 1024;
    pub const THREADS: u64 = 1024;
    pub const MAX_RESTARTS: u64 = 100;
}

impl ResourcesSpec {
    /// Whether the job runs where channel counts that are not multiples of 8 fall
    /// off the fast kernels: on CUDA, or channels-last by request.
    pub fn prefers_round_widths(&self) -> bool {
        self.device == DeviceKind::Cuda || self.memory_format == MemoryFormat::ChannelsLast
    }
}

/// Whether the YAML sets `prune.round_to` itself (called after it parsed as a spec).
fn round_to_given(text: &str) -> bool {
    #[derive(Deserialize)]
    struct Probe {
        #[serde(default)]
        prune: Option<PruneProbe>,
    }
    #[derive(Deserialize)]
    struct PruneProbe {
        #[serde(default)]
        round_to: Option<serde_norway::Value>,
    }
    serde_norway::from_str::<Probe>(text).ok().and_then(|p| p.prune).is_some_and(|p| p.round_to.is_some())
}

/// Removes `.` and resolvable `..` components without touching the file system.
fn normalise(path: &std::path::Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir if matches!(out.components().next_back(), Some(Component::Normal(_))) => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

fn validate_train(section: &str, t: &TrainSpec, check: &mut impl FnMut(bool, &str, String)) {
    let path = |field: &str| format!("{section}.{field}");
    check(t.batch_size >= 1, &path("batch_size"), format!("must be >= 1, got {}", t.batch_size));
    check(t.lr > 0.0 && t.lr.is_finite(), &path("lr"), format!("must be > 0, got {}", t.lr));
    check(
        (0.0..1.0).contains(&t.momentum),
        &path("momentum"),
        format!("must be in [0, 1), got {}", t.momentum),
    );
    check(
        t.weight_decay >= 0.0 && t.weight_decay.is_finite(),
        &path("weight_decay"),
        format!("must be >= 0, got {}", t.weight_decay),
    );
    check(
        t.warmup_epochs >= 0.0 && t.warmup_epochs <= f64::from(t.epochs),
        &path("warmup_epochs"),
        format!("must be in [0, epochs={}], got {}", t.epochs, t.warmup_epochs),
    );
    check(
        (0.0..1.0).contains(&t.label_smoothing),
        &path("label_smoothing"),
        format!("must be in [0, 1), got {}", t.label_smoothing),
    );
    if let Some(c) = t.grad_clip {
        check(c > 0.0 && c.is_finite(), &path("grad_clip"), format!("must be > 0, got {c}"));
    }
    check(
        !(t.nesterov && t.optimizer == OptimizerKind::Sgd && t.momentum == 0.0),
        &path("nesterov"),
        "needs momentum > 0".to_owned(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const MINIMAL: &str = "
model: { arch: resnet20, num_classes: 10 }
data: { format: idx, root: data/fashion-mnist }
";

    #[test]
    fn minimal_spec_gets_reference_defaults() {
        let spec = JobSpec::from_yaml(MINIMAL).unwrap();
        assert_eq!(spec.knockoff.lr, 0.004);
        assert_eq!(spec.knockoff.betas, (0.5, 0.9));
        assert_eq!(spec.knockoff.source, KnockoffSource::Permute);
        assert_eq!(spec.prune.rate, 0.45);
        assert_eq!(spec.prune.policy, PolicyKind::Layer);
        assert!(spec.finetune.nesterov);
        assert_eq!(spec.finetune.schedule, Schedule::Cosine);
        assert_eq!(spec.max_restarts, 3);
        assert!(spec.pretrain.is_none());
    }

    fn check(extra: &str, expected: &[&str]) {
        let err = JobSpec::from_yaml(&format!("{MINIMAL}{extra}")).unwrap_err();
        let got: Vec<String> = err.field_errors().iter().map(ToString::to_string).collect();
        assert_eq!(got.len(), expected.len(), "got {got:#?}");
        for (got, want) in got.iter().zip(expected) {
            assert!(got.starts_with(want), "expected {want:?}, got {got:?}");
        }
    }

    #[test]
    fn range_errors_name_every_field() {
        check("finetune: { lr: -0.1 }", &["finetune.lr: must be > 0, got -0.1"]);
        check(
            "prune: { rate: 1.5, round_to: 0 }",
            &["prune.rate: must be in [0, 1), got 1.5", "prune.round_to: must be >= 1, got 0"],
        );
        check("pretrain: { batch_size: 0 }", &["pretrain.batch_size: must be >= 1, got 0"]);
        check("knockoff: { betas: [0.5, 1.0] }", &["knockoff.betas[1]: must be in [0, 1), got 1"]);
    }

    #[test]
    fn a_tracking_experiment_is_optional_named_and_bounded() {
        assert_eq!(JobSpec::from_yaml(MINIMAL).unwrap().tracking.experiment, None);
        let spec =
            JobSpec::from_yaml(&format!("{MINIMAL}tracking: {{ experiment: resnet-sweeps }}\n")).unwrap();
        assert_eq!(spec.tracking.experiment.as_deref(), Some("resnet-sweeps"));
        check("tracking: { experiment: '  ' }", &["tracking.experiment: must not be empty"]);
        check(
            "tracking: { experiment: \"a\\tb\" }",
            &["tracking.experiment: must not contain control characters"],
        );
        check(
            &format!("tracking: {{ experiment: {} }}", "x".repeat(257)),
            &["tracking.experiment: must be at most 256 characters, got 257"],
        );
        let err =
            JobSpec::from_yaml(&format!("{MINIMAL}tracking: {{ experimnet: x }}\n")).unwrap_err().to_string();
        assert!(err.contains("tracking") && err.contains("unknown field `experimnet`"), "{err}");
    }

    #[test]
    fn knockoff_sources_plain_or_as_maps() {
        let source = |yaml: &str| {
            JobSpec::from_yaml(&format!("{MINIMAL}knockoff: {{ source: {yaml} }}\n"))
                .map(|s| s.knockoff.source)
        };
        assert_eq!(source("permute").unwrap(), KnockoffSource::Permute);
        assert_eq!(source("gaussian").unwrap(), KnockoffSource::Gaussian);
        assert_eq!(source("{ kind: permute }").unwrap(), KnockoffSource::Permute);
        assert_eq!(
            source("{ kind: generator, path: /g.pt }").unwrap(),
            KnockoffSource::Generator { path: "/g.pt".into() }
        );
        let err = source("generator").unwrap_err().to_string();
        assert!(err.contains("knockoff.source") && err.contains("needs a path"), "{err}");
        let err = source("shuffle").unwrap_err().to_string();
        assert!(err.contains("knockoff.source") && err.contains("shuffle"), "{err}");
        let err = source("{ kind: generator }").unwrap_err().to_string();
        assert!(err.contains("knockoff.source") && err.contains("path"), "{err}");
    }

    #[test]
    fn a_relative_spec_path_still_gives_absolute_data_paths() {
        // Tests run in the crate's folder: `../examples/...` is a relative spec path.
        let spec = JobSpec::from_file(Path::new("../examples/fashion-mnist-resnet20.yaml")).unwrap();
        assert!(spec.data.root.is_absolute(), "{}", spec.data.root.display());
        assert!(spec.data.root.ends_with("data/fashion-mnist"), "{}", spec.data.root.display());
        assert!(spec.output.dir.is_absolute(), "{}", spec.output.dir.display());
    }

    #[test]
    fn round_to_defaults_to_8_on_cuda_and_channels_last_unless_set() {
        let with = |extra: &str| JobSpec::from_yaml(&format!("{MINIMAL}{extra}")).unwrap().prune.round_to;
        assert_eq!(with(""), 1);
        assert_eq!(with("resources: { device: cuda }"), 8);
        assert_eq!(with("resources: { memory_format: channels_last }"), 8);
        assert_eq!(with("resources: { memory_format: contiguous }"), 1);
        assert_eq!(with("resources: { device: cuda }\nprune: { round_to: 1 }"), 1);
        assert_eq!(with("resources: { device: cpu }\nprune: { round_to: 4 }"), 4);
    }

    #[test]
    fn numeric_fields_have_upper_bounds() {
        check("finetune: { epochs: 10001 }", &["finetune.epochs: must be <= 10000, got 10001"]);
        check(
            "knockoff: { batch_size: 70000 }\nmax_restarts: 101",
            &["knockoff.batch_size: must be <= 65536, got 70000", "max_restarts: must be <= 100, got 101"],
        );
        check(
            "resources: { world_size: 1025, threads: 2000 }",
            &[
                "resources.world_size: must be <= 1024, got 1025",
                "resources.threads: must be <= 1024, got 2000",
            ],
        );
        let over = "model: { arch: resnet20, num_classes: 10 }\n\
                    data: { format: idx, root: d, loader_workers: 65 }\nfinetune: { batch_size: 65537 }\n";
        let got: Vec<String> =
            JobSpec::from_yaml(over).unwrap_err().field_errors().iter().map(ToString::to_string).collect();
        assert_eq!(
            got,
            [
                "data.loader_workers: must be <= 64, got 65",
                "finetune.batch_size: must be <= 65536, got 65537"
            ]
        );
        assert!(
            JobSpec::from_yaml(&format!("{MINIMAL}finetune: {{ epochs: 10000 }}\nmax_restarts: 100")).is_ok()
        );
    }

    #[test]
    fn parse_errors_carry_the_path() {
        check("finetune: { lr: fast }", &["finetune.lr: invalid type"]);
        check("prune: { policy: random }", &["prune.policy: unknown variant `random`"]);
        check(
            "prune: { criterion: l3 }",
            &["prune.criterion: unknown variant `l3`, expected one of `scop`, `bn_gamma`, `l1`"],
        );
        check(
            "prune: { criterion: taylor, taylor_batches: 0, taylor_batch_size: 70000 }",
            &[
                "prune.taylor_batches: must be >= 1, got 0",
                "prune.taylor_batch_size: must be <= 65536, got 70000",
            ],
        );
        check(
            "finetune: { learning_rate: 0.1 }",
            &["finetune.learning_rate: unknown field `learning_rate`, expected one of `epochs`"],
        );
    }

    #[test]
    fn every_shape_problem_is_listed_not_just_the_first() {
        // Three independent mistakes: an unknown field, a wrong type, an unknown variant.
        check(
            "finetune: { learning_rate: 0.1, epochs: 2 }\nknockoff: { lr: fast }\nprune: { policy: random }\n",
            &[
                "finetune.learning_rate: unknown field `learning_rate`",
                "knockoff.lr: invalid type: string \"fast\"",
                "prune.policy: unknown variant `random`",
            ],
        );
        // A required field of the wrong type is reported once, and reading goes on past it.
        let err = JobSpec::from_yaml(
            "model: { arch: [resnet20], num_classes: 10, colour: true }\ndata: { format: idx, root: d }\nseed: -1\n",
        )
        .unwrap_err();
        let got: Vec<String> = err.field_errors().iter().map(ToString::to_string).collect();
        assert_eq!(got.len(), 3, "{got:#?}");
        assert!(got[0].starts_with("model.arch: invalid type: sequence"), "{got:#?}");
        assert!(got[1].starts_with("model.colour: unknown field `colour`"), "{got:#?}");
        assert!(got[2].starts_with("seed: invalid value: integer `-1`"), "{got:#?}");
        // A missing required section is named, and the rest is still read.
        let err = JobSpec::from_yaml("model: { arch: resnet20, num_classes: 10 }\nsed: 1\n").unwrap_err();
        let got: Vec<String> = err.field_errors().iter().map(ToString::to_string).collect();
        assert!(got.iter().any(|e| e.starts_with("sed: unknown field `sed`")), "{got:#?}");
        assert!(got.iter().any(|e| e.starts_with("spec: missing field `data`")), "{got:#?}");
    }

    #[test]
    fn every_example_spec_is_valid() {
        let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
        let mut seen = 0;
        for entry in std::fs::read_dir(&examples).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                let spec = JobSpec::from_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert!(spec.data.root.is_absolute(), "{}: data.root not resolved", path.display());
                seen += 1;
            }
        }
        assert!(seen >= 3, "expected the three documented examples, found {seen}");
    }

    #[test]
    fn relative_paths_resolve_against_the_spec_file() {
        let mut spec = JobSpec::from_yaml(MINIMAL).unwrap();
        spec.resolve_paths(std::path::Path::new("/jobs/examples"));
        assert_eq!(spec.data.root, PathBuf::from("/jobs/examples/data/fashion-mnist"));
        spec.data.root = PathBuf::from("../data");
        spec.resolve_paths(std::path::Path::new("/jobs/examples"));
        assert_eq!(spec.data.root, PathBuf::from("/jobs/data"));
    }

    #[test]
    fn unknown_arch_is_listed() {
        let err =
            JobSpec::from_yaml("model: { arch: vgg16, num_classes: 1 }\ndata: { format: idx, root: d }")
                .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("model.arch: must be one of resnet20"), "{text}");
        assert!(text.contains("model.num_classes: must be >= 2, got 1"), "{text}");
    }
}
