//! Architecture descriptions: the channel layout of a ResNet, dense or pruned, as plain data.
//!
//! An [`ArchDesc`] is everything needed to build a network (the worker builds tch
//! models from it) and to count its parameters and multiply-accumulates without
//! building it. It serialises to the `arch.json` that travels with exported weights.
//!
//! Names follow torchvision: the stem is `conv1`/`bn1`, blocks are `layerS.I`,
//! the prunable units inside a block are `layerS.I.convK` with BN `layerS.I.bnK`,
//! the shortcut is `layerS.I.downsample.{0,1}` and the classifier is `fc`.

mod cost;
mod pruned;
mod streams;
mod zoo;

use serde::{Deserialize, Serialize};

pub(crate) use cost::out_side;
pub use cost::{Cost, UnitCost};
pub use streams::ResidualStream;

use crate::error::{Error, FieldError, Result};

/// Which family an architecture belongs to; decides the stem and block type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// 3×3 stem, three stages of BasicBlocks with 16/32/64 channels (He et al. 2016, §4.2).
    Cifar,
    /// 7×7 stride-2 stem with max-pool, four stages (torchvision's layout).
    Imagenet,
}

/// The two residual block types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockKind {
    /// Two 3×3 convs.
    Basic,
    /// 1×1 reduce, 3×3, 1×1 expand (stride on the 3×3, as torchvision does).
    Bottleneck,
}

/// The stem: conv + BN + ReLU, optionally followed by a 3×3 stride-2 max-pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StemDesc {
    pub out_channels: u32,
    pub kernel: u32,
    pub stride: u32,
    pub padding: u32,
    pub max_pool: bool,
    /// Under `residual: group`, which dense channels of the residual stream the
    /// stem writes survive (ascending); only when the first block has no shortcut,
    /// so that the stream continues into it and `blocks[0].kept` names the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept: Option<Vec<u32>>,
}

/// A prunable unit: one conv (no bias) followed by one BN, inside a residual block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnitDesc {
    /// Stable name of the unit and of its conv, e.g. `layer2.0.conv1`.
    pub name: String,
    /// Name of the BN that follows, e.g. `layer2.0.bn1`.
    pub bn: String,
    pub in_channels: u32,
    pub out_channels: u32,
    /// Output channels of the dense network; equal to `out_channels` unless pruned.
    pub dense_out_channels: u32,
    pub kernel: u32,
    pub stride: u32,
    pub padding: u32,
    pub groups: u32,
    /// For a pruned unit, which of the dense output channels it kept (ascending).
    /// For the last unit of a block these are also the residual channels its
    /// output is scattered back into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept: Option<Vec<u32>>,
}

/// The projection shortcut: 1×1 conv (no bias) + BN, named `<block>.downsample`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShortcutDesc {
    pub in_channels: u32,
    pub out_channels: u32,
    pub stride: u32,
}

/// One residual block: its units in order, and its shortcut when the shape changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockDesc {
    /// e.g. `layer2.0`.
    pub name: String,
    pub kind: BlockKind,
    /// Width of the residual stream entering the block.
    pub in_channels: u32,
    /// Width of the residual stream leaving the block: the dense width, unless the
    /// stream was pruned as a group (`kept`).
    pub out_channels: u32,
    pub stride: u32,
    pub units: Vec<UnitDesc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shortcut: Option<ShortcutDesc>,
    /// Under `residual: group`, which dense channels of the residual stream leaving
    /// the block survive (ascending). The last unit then keeps exactly these, so
    /// nothing is scattered; a block without a shortcut continues the stream it
    /// reads and must name the same channels as the block (or stem) before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept: Option<Vec<u32>>,
}

/// The classifier after global average pooling: `fc`, with bias.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifierDesc {
    pub in_features: u32,
    pub out_features: u32,
}

/// A whole network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchDesc {
    /// One of [`crate::spec::ARCHS`].
    pub arch: String,
    pub family: Family,
    pub num_classes: u32,
    pub in_channels: u32,
    pub stem: StemDesc,
    pub blocks: Vec<BlockDesc>,
    pub classifier: ClassifierDesc,
}

impl UnitDesc {
    /// Whether this unit holds fewer output channels than in the dense network.
    pub fn is_pruned(&self) -> bool {
        self.kept.is_some()
    }
}

impl BlockDesc {
    /// The output channels of the last unit are scattered back into the residual
    /// width when they were pruned and the stream was not (`residual: scatter`).
    pub fn scatter(&self) -> Option<&[u32]> {
        self.units.last().filter(|u| u.out_channels != self.out_channels).and_then(|u| u.kept.as_deref())
    }

    /// The width of the residual stream leaving the block in the dense network.
    pub fn dense_out_channels(&self) -> u32 {
        self.units.last().map_or(self.out_channels, |u| u.dense_out_channels)
    }
}

impl ArchDesc {
    /// The dense description of a named architecture.
    pub fn new(arch: &str, num_classes: u32, in_channels: u32) -> Result<Self> {
        let mut errors = Vec::new();
        if num_classes < 1 {
            errors.push(FieldError::new("num_classes", format!("must be >= 1, got {num_classes}")));
        }
        if in_channels < 1 {
            errors.push(FieldError::new("in_channels", format!("must be >= 1, got {in_channels}")));
        }
        let desc = zoo::build(arch, num_classes, in_channels);
        if desc.is_none() {
            errors.push(FieldError::new(
                "arch",
                format!("must be one of {}, got {arch:?}", crate::spec::ARCHS.join(", ")),
            ));
        }
        match desc {
            Some(desc) if errors.is_empty() => Ok(desc),
            _ => Err(Error::Invalid(errors)),
        }
    }

    /// Every prunable unit, in forward order.
    pub fn units(&self) -> impl Iterator<Item = &UnitDesc> {
        self.blocks.iter().flat_map(|b| b.units.iter())
    }

    /// Whether any unit or residual stream was pruned.
    pub fn is_pruned(&self) -> bool {
        self.units().any(UnitDesc::is_pruned) || self.blocks.iter().any(|b| b.kept.is_some())
    }

    /// Whether `name` is the last unit of its block (the one whose output meets the residual).
    pub fn is_residual_unit(&self, name: &str) -> bool {
        self.blocks.iter().any(|b| b.units.last().is_some_and(|u| u.name == name))
    }

    /// Parses and checks an `arch.json`; `origin` names the file in errors.
    pub fn from_json(text: &str, origin: &str) -> Result<Self> {
        let mut de = serde_json::Deserializer::from_str(text);
        let desc: ArchDesc = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            Error::Parse(FieldError::new(format!("{origin}: {path}"), e.into_inner().to_string()))
        })?;
        desc.validate().map_err(|e| match e {
            Error::Invalid(errors) => Error::Invalid(
                errors
                    .into_iter()
                    .map(|f| FieldError::new(format!("{origin}: {}", f.path), f.message))
                    .collect(),
            ),
            other => other,
        })?;
        Ok(desc)
    }

    /// Pretty JSON, the content of `arch.json`.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("an ArchDesc always serialises")
    }

    /// Checks that channel counts chain up, so that a network can be built from it.
    pub fn validate(&self) -> Result<()> {
        let mut errors = Vec::new();
        let mut check = |ok: bool, path: String, message: String| {
            if !ok {
                errors.push(FieldError::new(path, message));
            }
        };
        check(
            crate::spec::ARCHS.contains(&self.arch.as_str()),
            "arch".into(),
            format!("must be one of {}, got {:?}", crate::spec::ARCHS.join(", "), self.arch),
        );
        check(self.in_channels >= 1, "in_channels".into(), format!("must be >= 1, got {}", self.in_channels));
        let mut width = self.stem.out_channels;
        // The channels of the stream entering the next block, when pruned as a group.
        let mut stream: Option<&[u32]> = self.stem.kept.as_deref();
        if let Some(kept) = &self.stem.kept {
            let continues = self.blocks.first().is_some_and(|b| b.shortcut.is_none());
            check(
                continues && kept.len() == self.stem.out_channels as usize,
                "stem.kept".into(),
                format!(
                    "must list the stem's {} channels and continue into blocks[0], which has no shortcut",
                    self.stem.out_channels
                ),
            );
        }
        for (b, block) in self.blocks.iter().enumerate() {
            let at = |field: &str| format!("blocks[{b}].{field}");
            check(
                block.in_channels == width,
                at("in_channels"),
                format!("must equal the previous output width {width}, got {}", block.in_channels),
            );
            check(!block.units.is_empty(), at("units"), "must not be empty".into());
            let mut inner = block.in_channels;
            for (u, unit) in block.units.iter().enumerate() {
                let at = |field: &str| format!("blocks[{b}].units[{u}].{field}");
                check(
                    unit.in_channels == inner,
                    at("in_channels"),
                    format!("must equal the previous unit's output width {inner}, got {}", unit.in_channels),
                );
                check(unit.out_channels >= 1, at("out_channels"), "must be >= 1, got 0".into());
                check(
                    unit.groups >= 1 && unit.in_channels % unit.groups.max(1) == 0,
                    at("groups"),
                    format!("must divide in_channels {}, got {}", unit.in_channels, unit.groups),
                );
                match &unit.kept {
                    Some(kept) => {
                        let ascending = kept.windows(2).all(|w| w[0] < w[1]);
                        let in_range = kept.iter().all(|&k| k < unit.dense_out_channels);
                        check(
                            ascending && in_range && kept.len() == unit.out_channels as usize,
                            at("kept"),
                            format!(
                                "must be {} ascending indices below {}, got {} values",
                                unit.out_channels,
                                unit.dense_out_channels,
                                kept.len()
                            ),
                        );
                    }
                    None => check(
                        unit.out_channels == unit.dense_out_channels,
                        at("out_channels"),
                        format!(
                            "must equal dense_out_channels {} for an unpruned unit, got {}",
                            unit.dense_out_channels, unit.out_channels
                        ),
                    ),
                }
                inner = unit.out_channels;
            }
            if block.shortcut.is_none() {
                check(
                    block.kept.as_deref() == stream,
                    format!("blocks[{b}].kept"),
                    "must equal the channels of the stream it continues (the previous block's or the stem's)"
                        .into(),
                );
            }
            if let (Some(kept), Some(last)) = (&block.kept, block.units.last()) {
                check(
                    last.kept.as_ref() == Some(kept) && last.out_channels == block.out_channels,
                    format!("blocks[{b}].kept"),
                    format!("must be what {} keeps, the whole stream being one group", last.name),
                );
            } else if let Some(last) = block.units.last() {
                check(
                    last.dense_out_channels == block.out_channels,
                    format!("blocks[{b}].units[{}].dense_out_channels", block.units.len() - 1),
                    format!(
                        "must equal the block's out_channels {}, got {}",
                        block.out_channels, last.dense_out_channels
                    ),
                );
            }
            let needs_shortcut = block.stride != 1 || block.in_channels != block.out_channels;
            match &block.shortcut {
                Some(s) => check(
                    s.in_channels == block.in_channels
                        && s.out_channels == block.out_channels
                        && s.stride == block.stride,
                    at("shortcut"),
                    format!(
                        "must map {} to {} channels with stride {}",
                        block.in_channels, block.out_channels, block.stride
                    ),
                ),
                None => check(
                    !needs_shortcut,
                    at("shortcut"),
                    "is required when the stride or the width changes".into(),
                ),
            }
            width = block.out_channels;
            stream = block.kept.as_deref();
        }
        check(
            self.classifier.in_features == width,
            "classifier.in_features".into(),
            format!("must equal the last block's width {width}, got {}", self.classifier.in_features),
        );
        check(
            self.classifier.out_features == self.num_classes,
            "classifier.out_features".into(),
            format!("must equal num_classes {}, got {}", self.num_classes, self.classifier.out_features),
        );
        if errors.is_empty() { Ok(()) } else { Err(Error::Invalid(errors)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spec_arch_has_a_description_that_validates() {
        for arch in crate::spec::ARCHS {
            let desc = ArchDesc::new(arch, 10, 3).unwrap();
            assert_eq!(desc.arch, *arch);
            desc.validate().unwrap();
            let back = ArchDesc::from_json(&desc.to_json(), "arch.json").unwrap();
            assert_eq!(back, desc);
        }
    }

    #[test]
    fn unit_names_follow_torchvision() {
        let desc = ArchDesc::new("resnet50", 10, 3).unwrap();
        let names: Vec<&str> = desc.units().map(|u| u.name.as_str()).take(4).collect();
        assert_eq!(names, ["layer1.0.conv1", "layer1.0.conv2", "layer1.0.conv3", "layer1.1.conv1"]);
        assert_eq!(desc.units().count(), 16 * 3);
        assert_eq!(desc.blocks[0].units[2].bn, "layer1.0.bn3");
        assert!(desc.is_residual_unit("layer4.2.conv3"));
        assert!(!desc.is_residual_unit("layer4.2.conv2"));
        let cifar = ArchDesc::new("resnet56", 10, 1).unwrap();
        assert_eq!(cifar.units().count(), 54);
        assert_eq!(cifar.blocks.last().unwrap().name, "layer3.8");
    }

    #[test]
    fn bad_input_names_the_field() {
        let err = ArchDesc::new("vgg16", 0, 3).unwrap_err().to_string();
        assert!(err.contains("num_classes: must be >= 1, got 0"), "{err}");
        assert!(err.contains("arch: must be one of resnet20"), "{err}");

        let mut desc = ArchDesc::new("resnet20", 10, 3).unwrap();
        desc.blocks[1].units[1].in_channels = 7;
        let err = ArchDesc::from_json(&desc.to_json(), "run/arch.json").unwrap_err().to_string();
        assert_eq!(
            err,
            "run/arch.json: blocks[1].units[1].in_channels: must equal the previous unit's output width 16, got 7"
        );
        let err = ArchDesc::from_json("{\"arch\": 3}", "a.json").unwrap_err().to_string();
        assert!(err.starts_with("a.json: arch: invalid type"), "{err}");
    }
}
