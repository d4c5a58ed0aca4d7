//! What every stage runs with: the spec, the output layout, the device, the
//! replicas it trains with, and where its events go.

use scop_core::spec::{DeviceKind, JobSpec, MemoryFormat};
use tch::Device;
use tch::nn::VarStore;

use super::error::{Error, InStage, Result};
use super::parallel::Replicas;
use crate::data::{Dataset, Loader, LoaderConfig, ModelInput, Shard, Split};
use crate::events::EventSink;
use crate::models::ResNet;
use crate::models::layout::{LayoutTiming, TIMED_PASSES, fixed_layout, time_layouts};
use scop_core::job_dir::JobDir;

/// The environment of one stage on one rank.
pub struct StageContext<'a> {
    pub spec: &'a JobSpec,
    pub layout: JobDir,
    pub device: Device,
    pub replicas: &'a mut dyn Replicas,
    pub sink: &'a mut dyn EventSink,
    /// Continue from the stage's latest checkpoint when there is one.
    pub resume: bool,
    /// The pruning plan this rank was handed with its assignment (`scop-worker
    /// rank --plan`); without one, the stages after decide read the job
    /// directory's.
    pub plan: Option<scop_core::plan::Plan>,
}

impl<'a> StageContext<'a> {
    pub fn new(
        spec: &'a JobSpec,
        device: Device,
        replicas: &'a mut dyn Replicas,
        sink: &'a mut dyn EventSink,
        resume: bool,
    ) -> Self {
        Self {
            layout: JobDir::new(spec.output.dir.clone()),
            spec,
            device,
            replicas,
            sink,
            resume,
            plan: None,
        }
    }

    /// The plan of the stages after decide: the one handed to this rank, else
    /// the job directory's `plan.json`.
    pub fn plan(&self) -> Result<scop_core::plan::Plan> {
        match &self.plan {
            Some(plan) => Ok(plan.clone()),
            None => Ok(self.layout.read_plan()?),
        }
    }

    /// The side of the square input the model sees: the spec's, or the family default.
    pub fn input_size(&self) -> usize {
        self.spec.input_size() as usize
    }

    /// Switches `model` (with its VarStore `vs`) to the memory layout the spec's
    /// `resources.memory_format` asks for; call before the stage's first step,
    /// after the model's precision is set. `batch` is one step's batch on this rank.
    ///
    /// `auto` on the CPU times both layouts on this network and batch
    /// ([`time_layouts`]) and keeps the faster: every rank times, the sums over
    /// ranks decide, so all ranks agree. Rank 0 records the choice in the stage's
    /// `memory-format.json`, and a resumed stage keeps what it chose before, so a
    /// resumed run computes exactly what the uninterrupted one would have.
    pub fn set_memory_format(
        &mut self,
        stage: &str,
        model: &mut ResNet,
        vs: &VarStore,
        batch: u32,
    ) -> Result<()> {
        let format = self.spec.resources.memory_format;
        let channels_last = match fixed_layout(format, self.device, model.desc()) {
            Some(channels_last) => channels_last,
            None => self.timed_layout(stage, model, vs, batch)?,
        };
        if channels_last {
            model.use_channels_last(vs)?;
        }
        Ok(())
    }

    /// Whether `auto` on the CPU trains `model` channels-last: the recorded choice
    /// when resuming, else the faster layout by the ranks' summed timings, recorded.
    fn timed_layout(&mut self, stage: &str, model: &mut ResNet, vs: &VarStore, batch: u32) -> Result<bool> {
        let record = self.layout.memory_format(stage);
        let recorded = if self.resume { LayoutChoice::read(&record) } else { None };
        // [ranks that recorded a choice, of them channels-last, contiguous s, channels-last s]
        let mut sums = [0.0; 4];
        match recorded {
            Some(choice) => sums[..2].copy_from_slice(&[1.0, f64::from(u8::from(choice.channels_last()))]),
            None => {
                let size = self.input_size() as i64;
                let shape = [i64::from(batch), i64::from(model.desc().in_channels), size, size];
                let timing = time_layouts(model, vs, shape, TIMED_PASSES)?;
                sums[2..].copy_from_slice(&[timing.contiguous, timing.channels_last]);
            }
        }
        self.replicas.sum_scalars(&mut sums).in_stage(stage)?;
        let [recorded, recorded_cl, contiguous, channels_last] = sums;
        if recorded > 0.0 {
            return Ok(2.0 * recorded_cl > recorded);
        }
        let ranks = self.replicas.world() as f64;
        let mean = LayoutTiming { contiguous: contiguous / ranks, channels_last: channels_last / ranks };
        let chosen = mean.channels_last_is_faster();
        let choice = LayoutChoice {
            memory_format: if chosen { MemoryFormat::ChannelsLast } else { MemoryFormat::Contiguous },
            batch,
            contiguous_ms_per_pass: 1e3 * mean.contiguous,
            channels_last_ms_per_pass: 1e3 * mean.channels_last,
        };
        tracing::info!(
            stage,
            memory_format = ?choice.memory_format,
            contiguous_ms = choice.contiguous_ms_per_pass,
            channels_last_ms = choice.channels_last_ms_per_pass,
            "memory_format auto: timed both layouts"
        );
        if self.replicas.rank() == 0 {
            choice.write(&record)?;
        }
        Ok(chosen)
    }

    /// This rank's shard of the data.
    pub fn shard(&self) -> Shard {
        Shard { rank: self.replicas.rank(), world: self.replicas.world() }
    }

    fn model_input(&self) -> ModelInput {
        ModelInput {
            size: self.input_size(),
            channels: self.spec.model.in_channels.map(|c| c as usize),
            num_classes: self.spec.model.num_classes as usize,
        }
    }

    /// The shuffled, sharded training loader for a stage with this batch size.
    pub fn train_loader(&self, batch_size: u32) -> Result<Loader> {
        let dataset = Dataset::from_spec(&self.spec.data, Split::Train, self.model_input())?;
        let cfg = LoaderConfig::train(
            batch_size as usize,
            self.shard(),
            self.spec.data.loader_workers as usize,
            self.spec.seed,
        );
        Ok(Loader::new(std::sync::Arc::new(dataset), cfg)?)
    }

    /// The in-order, sharded test loader.
    pub fn test_loader(&self, batch_size: u32) -> Result<Loader> {
        let dataset = Dataset::from_spec(&self.spec.data, Split::Test, self.model_input())?;
        let cfg =
            LoaderConfig::eval(batch_size as usize, self.shard(), self.spec.data.loader_workers as usize);
        Ok(Loader::new(std::sync::Arc::new(dataset), cfg)?)
    }
}

/// The tch device a spec asks for on this rank (one GPU per local rank on CUDA).
pub fn device_for(kind: DeviceKind, local_rank: usize) -> Result<Device> {
    match kind {
        DeviceKind::Cpu => Ok(Device::Cpu),
        DeviceKind::Cuda => {
            let count = tch::Cuda::device_count() as usize;
            if local_rank >= count {
                return Err(Error::Input(format!(
                    "resources.device: cuda rank {local_rank} needs GPU {local_rank}, but {count} are visible"
                )));
            }
            Ok(Device::Cuda(local_rank))
        }
    }
}

/// What a stage's `memory-format.json` holds.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct LayoutChoice {
    /// `contiguous` or `channels_last`.
    memory_format: MemoryFormat,
    /// The batch the passes were timed on (one rank's).
    batch: u32,
    /// Mean over ranks of the best timed training-shaped pass in each layout.
    contiguous_ms_per_pass: f64,
    channels_last_ms_per_pass: f64,
}

impl LayoutChoice {
    fn channels_last(&self) -> bool {
        self.memory_format == MemoryFormat::ChannelsLast
    }

    /// The recorded choice, if the file is there and reads as one; anything else times again.
    fn read(path: &std::path::Path) -> Option<Self> {
        let text = std::fs::read_to_string(path).ok()?;
        serde_json::from_str::<Self>(&text).ok().filter(|c| c.memory_format != MemoryFormat::Auto)
    }

    fn write(&self, path: &std::path::Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| Error::Io { path: dir.to_owned(), source })?;
        }
        let json = serde_json::to_string_pretty(self).expect("a layout choice serialises");
        super::error::write_atomic(path, json.as_bytes())
    }
}
