//! Residual streams: the channels that a stem or downsample writes and that every
//! block after it adds into, until the next downsample.
//!
//! Under `residual: group` each stream is pruned as one group: its writer (the stem
//! conv or a shortcut conv), the last unit of every block that adds into it, and
//! its readers (the first unit and shortcut of the blocks that read it, and the
//! classifier after the last stage) all keep the same channels.

use std::ops::Range;

use super::ArchDesc;

/// One residual stream of a dense network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResidualStream {
    /// The conv that writes it: `conv1` (the stem) or `layerS.I.downsample.0`.
    pub writer: String,
    /// The BN after the writer: `bn1` or `layerS.I.downsample.1`.
    pub writer_bn: String,
    /// Dense width.
    pub channels: u32,
    /// The blocks whose output is this stream (each adds its last unit into it).
    pub blocks: Range<usize>,
    /// The last units of those blocks, in forward order: the scored members.
    pub members: Vec<String>,
}

impl ResidualStream {
    /// Whether the stream is written by the stem rather than by a shortcut.
    pub fn is_stem(&self) -> bool {
        self.writer == "conv1"
    }
}

impl ArchDesc {
    /// Every residual stream in forward order, starting with the stem's (which has no
    /// members when the first block has a shortcut, as in a Bottleneck network).
    pub fn residual_streams(&self) -> Vec<ResidualStream> {
        let mut streams = vec![ResidualStream {
            writer: "conv1".into(),
            writer_bn: "bn1".into(),
            channels: self.stem.out_channels,
            blocks: 0..0,
            members: Vec::new(),
        }];
        for (b, block) in self.blocks.iter().enumerate() {
            if block.shortcut.is_some() {
                streams.push(ResidualStream {
                    writer: format!("{}.downsample.0", block.name),
                    writer_bn: format!("{}.downsample.1", block.name),
                    channels: block.dense_out_channels(),
                    blocks: b..b,
                    members: Vec::new(),
                });
            }
            let stream = streams.last_mut().expect("the stem's stream is always there");
            stream.blocks.end = b + 1;
            if let Some(last) = block.units.last() {
                stream.members.push(last.name.clone());
            }
        }
        streams
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_follow_the_stages() {
        let cifar = ArchDesc::new("resnet20", 10, 1).unwrap();
        let streams = cifar.residual_streams();
        assert_eq!(streams.len(), 3);
        assert_eq!(streams[0].writer, "conv1");
        assert_eq!(streams[0].members, ["layer1.0.conv2", "layer1.1.conv2", "layer1.2.conv2"]);
        assert_eq!((streams[1].writer_bn.as_str(), streams[1].channels), ("layer2.0.downsample.1", 32));
        assert_eq!(streams[2].blocks, 6..9);

        let bottleneck = ArchDesc::new("resnet50", 10, 3).unwrap();
        let streams = bottleneck.residual_streams();
        assert_eq!(streams.len(), 5);
        assert!(streams[0].members.is_empty() && streams[0].is_stem());
        assert_eq!(streams[1].writer, "layer1.0.downsample.0");
        assert_eq!(streams[1].channels, 256);
        assert_eq!(streams[4].members.len(), 3);
    }
}
