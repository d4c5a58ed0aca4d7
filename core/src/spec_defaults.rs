//! What a spec implies where it leaves a choice open: the input size, the input
//! channels and the stages it runs. Every crate asks these here, so the
//! coordinator's plan and the worker's network always agree.

use crate::spec::{DataFormat, JobSpec};
use crate::stage::{Stage, StagePlan};

/// The CIFAR ResNets, whose default input is 32×32; every other network's is 224×224.
const CIFAR_ARCHS: [&str; 4] = ["resnet20", "resnet32", "resnet56", "resnet110"];

impl JobSpec {
    /// The side of the square input the model sees (and FLOPs are counted at):
    /// `model.input_size`, else 32 for the CIFAR ResNets and 224 otherwise.
    pub fn input_size(&self) -> u32 {
        let cifar = CIFAR_ARCHS.contains(&self.model.arch.as_str());
        self.model.input_size.unwrap_or(if cifar { 32 } else { 224 })
    }

    /// Input channels: `model.in_channels`, else 1 for IDX data and 3 otherwise.
    pub fn in_channels(&self) -> u32 {
        self.model.in_channels.unwrap_or(match self.data.format {
            DataFormat::Idx => 1,
            DataFormat::Cifar10 | DataFormat::ImageFolder => 3,
        })
    }

    /// The stages this spec runs, in order.
    pub fn stages(&self) -> StagePlan {
        StagePlan::for_spec(self)
    }

    /// The stage whose statistics `decide` ranks channels by: `knockoff` for
    /// `prune.criterion: scop`, else `score`.
    pub fn scoring_stage(&self) -> Stage {
        self.stages().scoring()
    }

    /// The epoch of the scoring stage's statistics `decide` uses: the final
    /// knockoff epoch (`knockoff.epochs`), or 1 for the one pass of `score`.
    pub fn final_statistics_epoch(&self) -> u32 {
        match self.scoring_stage() {
            Stage::Knockoff => self.knockoff.epochs,
            _ => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::spec::JobSpec;

    fn check(model: &str, format: &str, expected: (u32, u32)) {
        let spec = JobSpec::from_yaml(&format!(
            "model: {model}\n\
             data: {{format: {format}, root: data}}\n\
             knockoff: {{epochs: 1, batch_size: 8}}\n\
             prune: {{rate: 0.5}}\n\
             finetune: {{epochs: 1, batch_size: 8}}\n"
        ))
        .unwrap();
        assert_eq!((spec.in_channels(), spec.input_size()), expected, "{model} on {format}");
    }

    #[test]
    fn defaults_follow_the_network_family_and_the_data_format() {
        check("{arch: resnet20, num_classes: 10}", "idx", (1, 32));
        check("{arch: resnet56, num_classes: 10}", "cifar10", (3, 32));
        check("{arch: resnet18, num_classes: 10}", "image_folder", (3, 224));
        check("{arch: resnet18, num_classes: 10, input_size: 64, in_channels: 1}", "cifar10", (1, 64));
    }
}
