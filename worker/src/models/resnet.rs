//! A ResNet built from an [`ArchDesc`], dense or pruned, with torchvision's names.

use scop_core::arch::ArchDesc;
use scop_core::score::{ScoreMap, unit_scores};
use tch::nn::{self, Init, ModuleT};
use tch::{Device, Kind, Tensor};

use super::block::{Block, FoldedBlock};
use super::conv_bn::{ConvBn, ConvShape, FoldedConv, Weights, in_kind_of};
use super::error::{Error, Result, TorchContext};
use super::unit::Unit;

/// β and |γ| of one unit, per channel.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitKnockoff {
    pub name: String,
    pub beta: Vec<f32>,
    pub gamma_abs: Vec<f32>,
}

/// A ResNet of either family. Variables live in the VarStore of the path it was
/// built on: `conv1.weight`, `bn1.running_mean`, `layer1.0.conv1.weight`,
/// `layer1.0.downsample.0.weight`, `fc.weight`, … and, in knockoff mode,
/// `layer1.0.conv1.kfscale`.
#[derive(Debug)]
pub struct ResNet {
    desc: ArchDesc,
    stem: ConvBn,
    blocks: Vec<Block>,
    fc_weight: Tensor,
    fc_bias: Tensor,
    /// Inputs are converted to channels-last on entry (see [`super::layout`]).
    channels_last: bool,
    /// bf16 mixed precision: activations in bf16, every conv and the classifier
    /// on bf16 casts of the fp32 weights, BN with fp32 parameters and
    /// statistics, logits returned in fp32.
    bf16: bool,
}

impl ResNet {
    /// Builds the network `desc` describes, with fresh torchvision-style initialisation.
    pub fn new(root: &nn::Path, desc: &ArchDesc) -> Result<Self> {
        Self::with_weights(root, desc, Weights::Random)
    }

    /// Builds the network with all-zero variables, to be overwritten at once by
    /// [`crate::models::load_strict`], `VarStore::copy` or pruning.
    pub fn new_zeroed(root: &nn::Path, desc: &ArchDesc) -> Result<Self> {
        Self::with_weights(root, desc, Weights::Zeros)
    }

    fn with_weights(root: &nn::Path, desc: &ArchDesc, weights: Weights) -> Result<Self> {
        desc.validate()?;
        let stem_shape = ConvShape {
            in_channels: desc.in_channels,
            out_channels: desc.stem.out_channels,
            kernel: desc.stem.kernel,
            stride: desc.stem.stride,
            padding: desc.stem.padding,
            groups: 1,
        };
        let stem = ConvBn::new(&root.sub("conv1"), &root.sub("bn1"), stem_shape, weights);
        let blocks = desc.blocks.iter().map(|b| Block::new(root, b, weights)).collect();
        let (fc_in, fc_out) =
            (i64::from(desc.classifier.in_features), i64::from(desc.classifier.out_features));
        // PyTorch's nn.Linear default: U(−1/√in, 1/√in) for weight and bias.
        let bound = 1.0 / (fc_in as f64).sqrt();
        let fc = root.sub("fc");
        let init = match weights {
            Weights::Random => Init::Uniform { lo: -bound, up: bound },
            Weights::Zeros => Init::Const(0.0),
        };
        let fc_weight = fc.var("weight", &[fc_out, fc_in], init);
        let fc_bias = fc.var("bias", &[fc_out], init);
        Ok(Self { desc: desc.clone(), stem, blocks, fc_weight, fc_bias, channels_last: false, bf16: false })
    }

    pub fn desc(&self) -> &ArchDesc {
        &self.desc
    }

    /// The prunable units, in forward order.
    pub fn units(&self) -> impl Iterator<Item = &Unit> {
        self.blocks.iter().flat_map(|b| b.units().iter())
    }

    pub fn unit(&self, name: &str) -> Option<&Unit> {
        self.units().find(|u| u.name() == name)
    }

    /// Logits for a batch `[N, in_channels, H, W]`. In knockoff mode with `train`,
    /// the batch is `[real; knockoff]` and N must be even.
    pub fn f_forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let converted = self.prepare_input(xs)?;
        let xs = converted.as_ref().unwrap_or(xs);
        let mut x = self.stem.f_forward_t(xs, train).ctx("stem")?;
        x = self.stem_tail(x)?;
        for block in &self.blocks {
            x = block.f_forward_t(&x, train)?;
        }
        self.classify(&x)
    }

    /// The network at inference with every BN folded into its conv (see
    /// [`Folded`]): the same logits as `f_forward_t(xs, false)` up to float
    /// rounding, with one pass over each activation fewer.
    pub fn fold_batch_norm(&self) -> Result<Folded<'_>> {
        let stem = FoldedConv::new(&self.stem).ctx("stem")?;
        let blocks = self.blocks.iter().map(Block::fold).collect::<Result<Vec<_>>>()?;
        Ok(Folded { net: self, stem, blocks, blocked: false })
    }

    fn check_input(&self, xs: &Tensor) -> Result<()> {
        let size = xs.size();
        if size.len() != 4 || size[1] != i64::from(self.desc.in_channels) {
            return Err(Error::Input(format!(
                "{} expects [N, {}, H, W], got {size:?}",
                self.desc.arch, self.desc.in_channels
            )));
        }
        Ok(())
    }

    /// Checks the input's shape; returns it converted to the model's layout and
    /// precision when it is not in them already.
    fn prepare_input(&self, xs: &Tensor) -> Result<Option<Tensor>> {
        self.check_input(xs)?;
        let mut converted = None;
        if self.channels_last {
            converted = Some(super::layout::channels_last(xs).ctx("input layout")?);
        }
        if self.bf16 {
            let input = converted.as_ref().unwrap_or(xs);
            converted = Some(input.f_to_kind(Kind::BFloat16).ctx("input precision")?);
        }
        Ok(converted)
    }

    /// ReLU and, where the architecture has it, max-pooling after the stem's conv and BN.
    fn stem_tail(&self, mut x: Tensor) -> Result<Tensor> {
        x = x.f_relu_().ctx("stem")?;
        if self.desc.stem.max_pool {
            x = x.f_max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false).ctx("stem max-pool")?;
        }
        Ok(x)
    }

    /// Global average pooling and the classifier; logits in fp32.
    fn classify(&self, x: &Tensor) -> Result<Tensor> {
        x.f_adaptive_avg_pool2d([1, 1])
            .and_then(|t| t.f_flatten(1, -1))
            .and_then(|t| {
                let (weight, bias) = (in_kind_of(&self.fc_weight, &t)?, in_kind_of(&self.fc_bias, &t)?);
                t.f_linear(&weight, Some(&bias))?.f_to_kind(Kind::Float)
            })
            .ctx("classifier")
    }

    /// Switches every unit to knockoff mode, creating β under `root` (use the
    /// root of the model's own VarStore so that checkpoints hold β too).
    pub fn enable_knockoff(&mut self, root: &nn::Path) -> Result<()> {
        for block in &mut self.blocks {
            for unit in &mut block.units {
                unit.enable_knockoff(root)?;
            }
        }
        Ok(())
    }

    /// Every unit back to plain conv + BN.
    pub fn disable_knockoff(&mut self) {
        self.blocks.iter_mut().flat_map(|b| b.units.iter_mut()).for_each(Unit::disable_knockoff);
    }

    /// Clamps every β into [0, 1]; call after each optimiser step.
    pub fn clamp_kfscale(&self) -> Result<()> {
        self.units().try_for_each(Unit::clamp_kfscale)
    }

    /// β and |γ| of every unit in knockoff mode, in forward order.
    pub fn knockoff_state(&self) -> Result<Vec<UnitKnockoff>> {
        let mut state = Vec::new();
        for unit in self.units() {
            if let Some((beta, gamma_abs)) = unit.beta_and_gamma()? {
                state.push(UnitKnockoff { name: unit.name().to_owned(), beta, gamma_abs });
            }
        }
        Ok(state)
    }

    /// SCOP scores `|γ|·(2β−1)` of every unit; all units must be in knockoff mode.
    pub fn scores(&self) -> Result<ScoreMap> {
        let state = self.knockoff_state()?;
        if state.len() != self.units().count() {
            return Err(Error::Mode("scores need every unit in knockoff mode".to_owned()));
        }
        let mut scores = ScoreMap::new();
        for unit in state {
            let values = unit_scores(&unit.name, &unit.gamma_abs, &unit.beta)?;
            scores.insert(unit.name, values);
        }
        Ok(scores)
    }

    /// Trains and infers channels-last from now on: the conv weights in `vs`
    /// (this model's VarStore) are converted once, each input on entry.
    pub fn use_channels_last(&mut self, vs: &nn::VarStore) -> Result<()> {
        super::layout::vars_to_channels_last(vs).ctx("channels-last weights")?;
        self.channels_last = true;
        Ok(())
    }

    /// Trains and infers contiguous (NCHW) from now on: undoes [`ResNet::use_channels_last`].
    pub fn use_contiguous(&mut self, vs: &nn::VarStore) -> Result<()> {
        super::layout::vars_to_contiguous(vs).ctx("contiguous weights")?;
        self.channels_last = false;
        Ok(())
    }

    /// Whether inputs and conv weights are channels-last.
    pub fn is_channels_last(&self) -> bool {
        self.channels_last
    }

    /// Trains and infers in bf16 mixed precision from now on (the variables stay fp32).
    pub fn use_bf16(&mut self) {
        self.bf16 = true;
    }

    /// Call after `VarStore::set_device` so that non-variable tensors follow.
    pub fn move_to(&mut self, device: Device) {
        self.blocks.iter_mut().for_each(|b| b.move_to(device));
    }
}

/// A [`ResNet`] for inference, every BN folded into the conv before it, from
/// [`ResNet::fold_batch_norm`]. It is a snapshot: the folded convs hold the
/// weights and BN statistics of the moment it was made, so fold again after
/// they change (a training step, a load). The model's layout and precision
/// apply as in its own forward, unless [`Folded::into_blocked`] moved it to
/// oneDNN's blocked layout; nothing records gradients.
#[derive(Debug)]
pub struct Folded<'a> {
    net: &'a ResNet,
    stem: FoldedConv,
    blocks: Vec<FoldedBlock>,
    /// Activations run in oneDNN's blocked layout (see [`Folded::into_blocked`]).
    blocked: bool,
}

impl Folded<'_> {
    /// Logits for a batch `[N, in_channels, H, W]`, as the model's eval-mode forward.
    pub fn f_forward(&self, xs: &Tensor) -> Result<Tensor> {
        let net = self.net;
        tch::no_grad(|| {
            let mut x = if self.blocked {
                net.check_input(xs)?;
                if xs.kind() != Kind::Float {
                    return Err(Error::Input(format!(
                        "the blocked layout takes fp32 inputs, got {:?}",
                        xs.kind()
                    )));
                }
                let xs = xs.f_contiguous().and_then(|t| t.f_to_mkldnn(None)).ctx("input layout")?;
                self.stem.f_forward(&xs)
            } else {
                let converted = net.prepare_input(xs)?;
                self.stem.f_forward(converted.as_ref().unwrap_or(xs))
            }
            .ctx("stem")?;
            x = net.stem_tail(x)?;
            for (block, folded) in net.blocks.iter().zip(&self.blocks) {
                x = block.f_forward_folded(&x, folded)?;
            }
            if self.blocked {
                x = x.f_to_dense(None, false).ctx("output layout")?;
            }
            net.classify(&x)
        })
    }

    /// Why [`Folded::into_blocked`] would refuse this network, if it would.
    pub fn blocked_refusal(&self) -> Option<String> {
        let net = self.net;
        if !tch::utils::has_mkldnn() {
            return Some("this libtorch was built without oneDNN".to_owned());
        }
        if net.fc_weight.device() != Device::Cpu {
            return Some(format!(
                "oneDNN's blocked layout is for the CPU, the network is on {:?}",
                net.fc_weight.device()
            ));
        }
        if net.bf16 {
            return Some("the blocked layout runs in fp32, the network in bf16".to_owned());
        }
        net.blocks.iter().find(|b| b.scatters()).map(|b| {
            format!(
                "{} adds its pruned output into the residual by index (residual: scatter), \
                 which oneDNN tensors do not support",
                b.name()
            )
        })
    }

    /// The same network with its activations in oneDNN's blocked layout
    /// (`Tensor::to_mkldnn`) from the stem's input to the last block's output, and
    /// every folded weight reordered once for it: no conv reorders its input or
    /// weight on the way. On a CPU with wide convs (ResNet-50 at 224×224) this
    /// beats channels-last; on narrow ones it can lose, since oneDNN pads the
    /// channels to whole blocks. Fails as [`Folded::blocked_refusal`] says.
    pub fn into_blocked(self) -> Result<Self> {
        if let Some(why) = self.blocked_refusal() {
            return Err(Error::Mode(format!("cannot run in the blocked layout: {why}")));
        }
        let net = self.net;
        let stem = self.stem.into_blocked().ctx("stem")?;
        let blocks = (self.blocks.into_iter().zip(&net.blocks))
            .map(|(folded, block)| folded.into_blocked(block))
            .collect::<Result<Vec<_>>>()?;
        Ok(Folded { net, stem, blocks, blocked: true })
    }

    /// Whether [`Folded::into_blocked`] made this.
    pub fn is_blocked(&self) -> bool {
        self.blocked
    }
}

impl ModuleT for ResNet {
    /// The infallible form for tch's APIs; training loops should call
    /// [`ResNet::f_forward_t`] and handle the error.
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.f_forward_t(xs, train).unwrap_or_else(|e| panic!("{e}"))
    }
}
