//! TorchScript for an exported network, written as a TorchScript archive
//! directly rather than traced.
//!
//! Tracing through libtorch records every weight as a constant of the graph, so
//! the traced module has no parameters: `state_dict()` is empty, `.to("cuda")`
//! leaves the weights behind and nothing can be finetuned. This writes the
//! archive `torch.jit.save` would write for an `nn.Module` tree with
//! torchvision's names instead: `conv1`, `bn1`, `layerS` holding blocks `"I"`,
//! each with its `convK`/`bnK` and `downsample` (`"0"` conv, `"1"` BN), and
//! `fc`. Weights and BN affine parameters are parameters, BN statistics are
//! buffers, so `state_dict()` has exactly the tensors of `model.safetensors`.
//! Each module's TorchScript source is generated from the [`ArchDesc`]; BN
//! follows the module's `training` flag as `nn.BatchNorm2d` does.
//!
//! The archive is a zip of `data.pkl` (the module tree, see [`pickle`]), one
//! file per tensor under `data/`, the source under `code/`, and `version`,
//! `byteorder` and an empty `constants.pkl`.

mod pickle;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use scop_core::arch::{ArchDesc, BlockDesc};
use tch::{Device, Kind, Tensor};

use self::pickle::{TensorRef, Value};
use crate::models::{Error, Result};

/// The Python module every generated class lives in: `__torch__.scop.<Class>`.
const MODULE: &str = "__torch__.scop";
/// The archive's top folder; `torch.jit.load` accepts any single one.
const ROOT: &str = "model";
/// BN hyper-parameters of the workers (torchvision's).
const BN_MOMENTUM: &str = "0.1";
const BN_EPS: &str = "1.0000000000000001e-05";

/// Writes `desc` with the weights in `tensors` (torchvision names, as in
/// `model.safetensors`) as a TorchScript archive at `path`.
pub fn save(desc: &ArchDesc, tensors: &BTreeMap<String, Tensor>, path: &Path) -> Result<()> {
    let mut archive = Archive { tensors, data: Vec::new(), code: String::new(), classes: BTreeSet::new() };
    let root = archive.resnet(desc)?;
    write_zip(path, &archive.code, &pickle::dumps(&root), &archive.data)
}

/// The archive being built: tensor files and class sources, each class once.
struct Archive<'a> {
    tensors: &'a BTreeMap<String, Tensor>,
    data: Vec<Vec<u8>>,
    code: String,
    classes: BTreeSet<String>,
}

/// A submodule or attribute of a class: its name, TorchScript type and value.
struct Member {
    name: String,
    ty: String,
    value: Value,
    role: Role,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Parameter,
    Buffer,
    /// A submodule or plain attribute.
    Other,
}

fn qualified(class: &str) -> String {
    format!("{MODULE}.{class}")
}

fn member(name: &str, class: &str, value: Value) -> Member {
    Member { name: name.to_owned(), ty: qualified(class), value, role: Role::Other }
}

impl Archive<'_> {
    /// The tensor `name` as a parameter, buffer or plain attribute `as_name`.
    fn tensor(&mut self, name: &str, as_name: &str, role: Role) -> Result<Member> {
        let tensor = self.tensors.get(name).ok_or_else(|| Error::File {
            path: name.to_owned(),
            message: "the network has no such tensor to export".into(),
        })?;
        let value = self.store(tensor, name, Kind::Float, role == Role::Parameter)?;
        Ok(Member { name: as_name.to_owned(), ty: "Tensor".into(), value, role })
    }

    fn store(&mut self, tensor: &Tensor, name: &str, kind: Kind, requires_grad: bool) -> Result<Value> {
        let context = |source| Error::Torch { context: format!("exporting {name}"), source };
        let t =
            tensor.f_to_device(Device::Cpu).and_then(|t| t.f_to_kind(kind)).and_then(|t| t.f_contiguous());
        let t = t.map_err(context)?;
        let numel = t.numel();
        let bytes: Vec<u8> = match kind {
            Kind::Int64 => {
                let mut values = vec![0i64; numel];
                t.f_copy_data(&mut values, numel).map_err(context)?;
                values.iter().flat_map(|v| v.to_le_bytes()).collect()
            }
            _ => {
                let mut values = vec![0f32; numel];
                t.f_copy_data(&mut values, numel).map_err(context)?;
                values.iter().flat_map(|v| v.to_le_bytes()).collect()
            }
        };
        let key = self.data.len().to_string();
        self.data.push(bytes);
        let storage = if kind == Kind::Int64 { "LongStorage" } else { "FloatStorage" };
        Ok(Value::Tensor(TensorRef { key, storage, shape: t.size(), requires_grad }))
    }

    /// Defines `class` once, with `members` declared and `forward` as its body.
    fn class(&mut self, class: &str, members: &[Member], forward: &str) {
        if !self.classes.insert(class.to_owned()) {
            return;
        }
        let list = |role: Role| -> String {
            members.iter().filter(|m| m.role == role).map(|m| format!("\"{}\", ", m.name)).collect()
        };
        let code = &mut self.code;
        let _ = writeln!(code, "class {class}(Module):");
        let _ = writeln!(code, "  __parameters__ = [{}]", list(Role::Parameter));
        let _ = writeln!(code, "  __buffers__ = [{}]", list(Role::Buffer));
        let _ = writeln!(code, "  training : bool");
        for m in members {
            if m.name.chars().all(|c| c.is_ascii_digit()) {
                let _ = writeln!(code, "  __annotations__[\"{}\"] = {}", m.name, m.ty);
            } else {
                let _ = writeln!(code, "  {} : {}", m.name, m.ty);
            }
        }
        let _ = writeln!(code, "  def forward(self: {}, x: Tensor) -> Tensor:", qualified(class));
        for line in forward.lines() {
            let _ = writeln!(code, "    {line}");
        }
    }

    /// A module object of `class` with `members` as its attributes, in eval mode.
    fn object(class: &str, members: Vec<Member>) -> Value {
        let mut attributes = vec![("training".to_owned(), Value::Bool(false))];
        attributes.extend(members.into_iter().map(|m| (m.name, m.value)));
        Value::Object { module: MODULE.into(), class: class.into(), attributes }
    }

    fn conv(&mut self, prefix: &str, stride: u32, padding: u32, groups: u32) -> Result<(String, Value)> {
        let class = format!("Conv2d_s{stride}_p{padding}_g{groups}");
        let members = vec![self.tensor(&format!("{prefix}.weight"), "weight", Role::Parameter)?];
        let forward = format!(
            "return torch.conv2d(x, self.weight, None, [{stride}, {stride}], [{padding}, {padding}], [1, 1], {groups})"
        );
        self.class(&class, &members, &forward);
        Ok((class.clone(), Self::object(&class, members)))
    }

    fn batch_norm(&mut self, prefix: &str) -> Result<(String, Value)> {
        let class = "BatchNorm2d";
        let members = vec![
            self.tensor(&format!("{prefix}.weight"), "weight", Role::Parameter)?,
            self.tensor(&format!("{prefix}.bias"), "bias", Role::Parameter)?,
            self.tensor(&format!("{prefix}.running_mean"), "running_mean", Role::Buffer)?,
            self.tensor(&format!("{prefix}.running_var"), "running_var", Role::Buffer)?,
        ];
        let forward = format!(
            "return torch.batch_norm(x, self.weight, self.bias, self.running_mean, self.running_var, \
             self.training, {BN_MOMENTUM}, {BN_EPS}, True)"
        );
        self.class(class, &members, &forward);
        Ok((class.to_owned(), Self::object(class, members)))
    }

    fn block(&mut self, desc: &BlockDesc) -> Result<(String, Value)> {
        let class = format!("Block_{}", desc.name.replace('.', "_"));
        let local = |name: &str| name.strip_prefix(&format!("{}.", desc.name)).unwrap_or(name).to_owned();
        let mut members = Vec::new();
        let mut forward = String::new();
        let last = desc.units.len().saturating_sub(1);
        for (i, unit) in desc.units.iter().enumerate() {
            let (conv_name, bn_name) = (local(&unit.name), local(&unit.bn));
            let (conv_class, conv) = self.conv(&unit.name, unit.stride, unit.padding, unit.groups)?;
            let (bn_class, bn) = self.batch_norm(&unit.bn)?;
            members.push(member(&conv_name, &conv_class, conv));
            members.push(member(&bn_name, &bn_class, bn));
            let input = if i == 0 { "x" } else { "y" };
            let _ = writeln!(forward, "y = self.{bn_name}.forward(self.{conv_name}.forward({input}))");
            if i < last {
                let _ = writeln!(forward, "y = torch.relu(y)");
            }
        }
        match &desc.shortcut {
            Some(s) => {
                let prefix = format!("{}.downsample", desc.name);
                let (conv_class, conv) = self.conv(&format!("{prefix}.0"), s.stride, 0, 1)?;
                let (bn_class, bn) = self.batch_norm(&format!("{prefix}.1"))?;
                let ds_class = format!("Downsample_s{}", s.stride);
                let ds_members = vec![member("0", &conv_class, conv), member("1", &bn_class, bn)];
                self.class(
                    &ds_class,
                    &ds_members,
                    "return getattr(self, \"1\").forward(getattr(self, \"0\").forward(x))",
                );
                members.push(member("downsample", &ds_class, Self::object(&ds_class, ds_members)));
                let _ = writeln!(forward, "identity = self.downsample.forward(x)");
            }
            None => {
                let _ = writeln!(forward, "identity = x");
            }
        }
        match desc.scatter() {
            // The pruned last unit's channels go back to their places in the
            // residual. The indices are a plain attribute, not a buffer, so that
            // the state dict stays that of model.safetensors.
            Some(kept) => {
                let kept: Vec<i64> = kept.iter().map(|&k| i64::from(k)).collect();
                let value = self.store(
                    &Tensor::from_slice(&kept),
                    &format!("{}.scatter", desc.name),
                    Kind::Int64,
                    false,
                )?;
                members.push(Member {
                    name: "scatter".into(),
                    ty: "Tensor".into(),
                    value,
                    role: Role::Other,
                });
                let _ = writeln!(forward, "out = torch.index_add(identity, 1, self.scatter.to(y.device), y)");
            }
            None => {
                let _ = writeln!(forward, "out = torch.add(y, identity)");
            }
        }
        let _ = writeln!(forward, "return torch.relu(out)");
        self.class(&class, &members, &forward);
        Ok((class.clone(), Self::object(&class, members)))
    }

    fn resnet(&mut self, desc: &ArchDesc) -> Result<Value> {
        let mut members = Vec::new();
        let mut forward = String::new();
        let (conv_class, conv) = self.conv("conv1", desc.stem.stride, desc.stem.padding, 1)?;
        let (bn_class, bn) = self.batch_norm("bn1")?;
        members.push(member("conv1", &conv_class, conv));
        members.push(member("bn1", &bn_class, bn));
        let _ = writeln!(forward, "x = torch.relu(self.bn1.forward(self.conv1.forward(x)))");
        if desc.stem.max_pool {
            let _ = writeln!(forward, "x = torch.max_pool2d(x, [3, 3], [2, 2], [1, 1], [1, 1], False)");
        }
        // Blocks `layerS.I` grouped into one module per stage `layerS`.
        let mut stages: Vec<(String, Vec<&BlockDesc>)> = Vec::new();
        for block in &desc.blocks {
            let stage = block.name.split('.').next().unwrap_or(&block.name).to_owned();
            match stages.last_mut() {
                Some((name, blocks)) if *name == stage => blocks.push(block),
                _ => stages.push((stage, vec![block])),
            }
        }
        for (stage, blocks) in stages {
            let mut stage_members = Vec::new();
            let mut stage_forward = String::new();
            for (i, block) in blocks.into_iter().enumerate() {
                let (class, value) = self.block(block)?;
                stage_members.push(member(&i.to_string(), &class, value));
                let _ = writeln!(stage_forward, "x = getattr(self, \"{i}\").forward(x)");
            }
            let _ = writeln!(stage_forward, "return x");
            let class = format!("Stage_{stage}");
            self.class(&class, &stage_members, &stage_forward);
            members.push(member(&stage, &class, Self::object(&class, stage_members)));
            let _ = writeln!(forward, "x = self.{stage}.forward(x)");
        }
        let fc = vec![
            self.tensor("fc.weight", "weight", Role::Parameter)?,
            self.tensor("fc.bias", "bias", Role::Parameter)?,
        ];
        self.class("Linear", &fc, "return torch.linear(x, self.weight, self.bias)");
        members.push(member("fc", "Linear", Self::object("Linear", fc)));
        let _ = writeln!(forward, "x = torch.flatten(torch.adaptive_avg_pool2d(x, [1, 1]), 1)");
        let _ = writeln!(forward, "return self.fc.forward(x)");
        self.class("ResNet", &members, &forward);
        Ok(Self::object("ResNet", members))
    }
}

fn write_zip(path: &Path, code: &str, data_pkl: &[u8], data: &[Vec<u8>]) -> Result<()> {
    let io = |source: std::io::Error| Error::Io { path: path.display().to_string(), source };
    let zip_error = |e: zip::result::ZipError| io(std::io::Error::other(e));
    let file = std::fs::File::create(path).map_err(io)?;
    let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(file));
    let stored = zip::write::FileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(data.iter().any(|d| d.len() as u64 >= u32::MAX as u64));
    let mut entry = |name: String, bytes: &[u8]| -> Result<()> {
        zip.start_file(name, stored).map_err(zip_error)?;
        zip.write_all(bytes).map_err(io)
    };
    entry(format!("{ROOT}/data.pkl"), data_pkl)?;
    entry(format!("{ROOT}/code/__torch__/scop.py"), code.as_bytes())?;
    entry(format!("{ROOT}/constants.pkl"), b"\x80\x02).")?;
    entry(format!("{ROOT}/version"), b"3\n")?;
    entry(format!("{ROOT}/byteorder"), b"little")?;
    for (key, bytes) in data.iter().enumerate() {
        entry(format!("{ROOT}/data/{key}"), bytes)?;
    }
    zip.finish().map_err(zip_error)?.flush().map_err(io)
}
