//! The dense descriptions of the nine ResNets scop knows.

use super::{ArchDesc, BlockDesc, BlockKind, ClassifierDesc, Family, ShortcutDesc, StemDesc, UnitDesc};

/// Builds the dense description, or `None` for an unknown name.
pub(super) fn build(arch: &str, num_classes: u32, in_channels: u32) -> Option<ArchDesc> {
    let (family, kind, depths): (Family, BlockKind, &[u32]) = match arch {
        "resnet20" => (Family::Cifar, BlockKind::Basic, &[3, 3, 3]),
        "resnet32" => (Family::Cifar, BlockKind::Basic, &[5, 5, 5]),
        "resnet56" => (Family::Cifar, BlockKind::Basic, &[9, 9, 9]),
        "resnet110" => (Family::Cifar, BlockKind::Basic, &[18, 18, 18]),
        "resnet18" => (Family::Imagenet, BlockKind::Basic, &[2, 2, 2, 2]),
        "resnet34" => (Family::Imagenet, BlockKind::Basic, &[3, 4, 6, 3]),
        "resnet50" => (Family::Imagenet, BlockKind::Bottleneck, &[3, 4, 6, 3]),
        "resnet101" => (Family::Imagenet, BlockKind::Bottleneck, &[3, 4, 23, 3]),
        "resnet152" => (Family::Imagenet, BlockKind::Bottleneck, &[3, 8, 36, 3]),
        _ => return None,
    };
    let (stem, widths): (StemDesc, &[u32]) = match family {
        Family::Cifar => (
            StemDesc { out_channels: 16, kernel: 3, stride: 1, padding: 1, max_pool: false, kept: None },
            &[16, 32, 64],
        ),
        Family::Imagenet => (
            StemDesc { out_channels: 64, kernel: 7, stride: 2, padding: 3, max_pool: true, kept: None },
            &[64, 128, 256, 512],
        ),
    };
    let mut blocks = Vec::new();
    let mut width = stem.out_channels;
    for (stage, (&planes, &depth)) in widths.iter().zip(depths).enumerate() {
        for index in 0..depth {
            let stride = if stage > 0 && index == 0 { 2 } else { 1 };
            let name = format!("layer{}.{index}", stage + 1);
            let block = match kind {
                BlockKind::Basic => basic(name, width, planes, stride),
                BlockKind::Bottleneck => bottleneck(name, width, planes, stride),
            };
            width = block.out_channels;
            blocks.push(block);
        }
    }
    Some(ArchDesc {
        arch: arch.to_owned(),
        family,
        num_classes,
        in_channels,
        stem,
        blocks,
        classifier: ClassifierDesc { in_features: width, out_features: num_classes },
    })
}

fn unit(block: &str, index: u32, in_channels: u32, out_channels: u32, kernel: u32, stride: u32) -> UnitDesc {
    UnitDesc {
        name: format!("{block}.conv{index}"),
        bn: format!("{block}.bn{index}"),
        in_channels,
        out_channels,
        dense_out_channels: out_channels,
        kernel,
        stride,
        padding: kernel / 2,
        groups: 1,
        kept: None,
    }
}

fn block(name: String, kind: BlockKind, in_channels: u32, stride: u32, units: Vec<UnitDesc>) -> BlockDesc {
    let out_channels = units.last().map_or(in_channels, |u| u.out_channels);
    let shortcut = (stride != 1 || in_channels != out_channels).then_some(ShortcutDesc {
        in_channels,
        out_channels,
        stride,
    });
    BlockDesc { name, kind, in_channels, out_channels, stride, units, shortcut, kept: None }
}

fn basic(name: String, in_channels: u32, planes: u32, stride: u32) -> BlockDesc {
    let units = vec![unit(&name, 1, in_channels, planes, 3, stride), unit(&name, 2, planes, planes, 3, 1)];
    block(name, BlockKind::Basic, in_channels, stride, units)
}

fn bottleneck(name: String, in_channels: u32, planes: u32, stride: u32) -> BlockDesc {
    let units = vec![
        unit(&name, 1, in_channels, planes, 1, 1),
        unit(&name, 2, planes, planes, 3, stride),
        unit(&name, 3, planes, planes * 4, 1, 1),
    ];
    block(name, BlockKind::Bottleneck, in_channels, stride, units)
}
