//! The description of a network after a plan: fewer channels per unit, and under
//! `residual: group` narrower residual streams.

use super::ArchDesc;
use crate::error::{Error, FieldError, Result};
use crate::plan::{Plan, UnitPlan};
use crate::spec::ResidualMode;

impl ArchDesc {
    /// The pruned description: every unit keeps `plan`'s channels, the next unit in
    /// the block loses the matching inputs, and the last unit of a block keeps its
    /// `kept` indices so that its output can be scattered back to the residual width.
    /// Under `residual: group` the last units of a stream keep the same channels,
    /// which the stream itself keeps: its writer's outputs, its readers' inputs.
    pub fn pruned(&self, plan: &Plan) -> Result<ArchDesc> {
        if plan.arch != self.arch {
            return Err(Error::Invalid(vec![FieldError::new(
                "plan.arch",
                format!("must be {:?} to prune this network, got {:?}", self.arch, plan.arch),
            )]));
        }
        self.apply_units(&plan.units, plan.prune.residual)
    }

    /// As [`ArchDesc::pruned`], from the units of a plan.
    pub fn apply_units(&self, units: &[UnitPlan], residual: ResidualMode) -> Result<ArchDesc> {
        check_units(self, units)?;
        let mut desc = self.clone();
        if residual == ResidualMode::Group {
            prune_streams(&mut desc, units)?;
        }
        let mut plans = units.iter();
        let mut width = desc.stem.out_channels;
        for block in &mut desc.blocks {
            block.in_channels = width;
            if let Some(shortcut) = &mut block.shortcut {
                shortcut.in_channels = width;
            }
            let mut inner = width;
            for unit in &mut block.units {
                let plan = plans.next().expect("checked: one plan per unit");
                unit.in_channels = inner;
                unit.out_channels = plan.kept.len() as u32;
                unit.kept = (plan.kept.len() as u32 != plan.channels).then(|| plan.kept.clone());
                inner = unit.out_channels;
            }
            width = block.out_channels;
        }
        desc.classifier.in_features = width;
        Ok(desc)
    }
}

/// Narrows every residual stream to what its members keep; they must agree.
fn prune_streams(desc: &mut ArchDesc, units: &[UnitPlan]) -> Result<()> {
    let index: std::collections::HashMap<&str, usize> =
        units.iter().enumerate().map(|(i, u)| (u.name.as_str(), i)).collect();
    let mut errors = Vec::new();
    for stream in desc.residual_streams() {
        let Some(first) = stream.members.first() else { continue };
        let kept = &units[index[first.as_str()]].kept;
        for member in &stream.members[1..] {
            let i = index[member.as_str()];
            if &units[i].kept != kept {
                errors.push(FieldError::new(
                    format!("plan.units[{i}].kept"),
                    format!(
                        "{member}: must keep the channels {first} keeps: both add into the residual \
                         stream of {} (residual: group)",
                        stream.writer
                    ),
                ));
            }
        }
        if kept.len() as u32 == stream.channels {
            continue;
        }
        let width = kept.len() as u32;
        if stream.is_stem() {
            desc.stem.out_channels = width;
            desc.stem.kept = Some(kept.clone());
        }
        for block in &mut desc.blocks[stream.blocks.clone()] {
            block.out_channels = width;
            block.kept = Some(kept.clone());
            if let Some(shortcut) = &mut block.shortcut {
                shortcut.out_channels = width;
            }
        }
    }
    if errors.is_empty() { Ok(()) } else { Err(Error::Invalid(errors)) }
}

/// One plan per unit, in forward order, with valid kept indices; every problem listed.
fn check_units(desc: &ArchDesc, units: &[UnitPlan]) -> Result<()> {
    let mut errors = Vec::new();
    if desc.is_pruned() {
        errors.push(FieldError::new(
            "arch",
            format!("{} is already pruned; plans apply to the dense network", desc.arch),
        ));
    }
    let expected = desc.units().count();
    if units.len() != expected {
        errors.push(FieldError::new("plan.units", format!("expected {expected} units, got {}", units.len())));
    }
    for (i, (unit, plan)) in desc.units().zip(units).enumerate() {
        let at = format!("plan.units[{i}]");
        if plan.name != unit.name {
            errors.push(FieldError::new(
                format!("{at}.name"),
                format!("expected {:?}, got {:?}", unit.name, plan.name),
            ));
            continue;
        }
        if plan.channels != unit.dense_out_channels {
            errors.push(FieldError::new(
                format!("{at}.channels"),
                format!("{} has {} channels, got {}", unit.name, unit.dense_out_channels, plan.channels),
            ));
        }
        let ascending = plan.kept.windows(2).all(|w| w[0] < w[1]);
        let in_range = plan.kept.iter().all(|&k| k < unit.dense_out_channels);
        if plan.kept.is_empty() || !ascending || !in_range {
            errors.push(FieldError::new(
                format!("{at}.kept"),
                format!(
                    "{}: must be 1 to {} ascending channel indices below {}",
                    unit.name, unit.dense_out_channels, unit.dense_out_channels
                ),
            ));
        }
    }
    if errors.is_empty() { Ok(()) } else { Err(Error::Invalid(errors)) }
}
