//! What every stage runs with: the spec, the output layout, the device, the
//! replicas it trains with, and where its events go.

use scop_core::spec::{DeviceKind, JobSpec};
use tch::Device;

use super::error::{Error, Result};
use super::parallel::Replicas;
use crate::data::{Dataset, Loader, LoaderConfig, ModelInput, Shard, Split};
use crate::events::EventSink;
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
    /// `resources.memory_format` asks for; call before the stage's first step.
    pub fn set_memory_format(&self, model: &mut crate::models::ResNet, vs: &tch::nn::VarStore) -> Result<()> {
        use crate::models::layout::trains_channels_last;
        if trains_channels_last(self.spec.resources.memory_format, model.desc()) {
            model.use_channels_last(vs)?;
        }
        Ok(())
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
