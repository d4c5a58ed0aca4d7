"""`load_model`: an exported network rebuilt in plain PyTorch from `arch.json`
and `model.safetensors`.

The module's `state_dict()` has exactly the tensors of `model.safetensors`,
under the same torchvision names (`conv1.weight`, `layer2.0.bn1.running_var`,
`fc.bias`, ...), so it can be finetuned, moved with `.to()`, or exported to
ONNX like any other PyTorch module. Its forward is the one the workers run:
a pruned block whose last conv lost channels adds them back into their places
of the full-width residual (`index_add`), with the indices from `arch.json`.

Needs `torch` (`pip install scop[torch]`); the safetensors file is read here
without the `safetensors` package.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import torch
from torch import nn

ARCH_FILE = "arch.json"
WEIGHTS_FILE = "model.safetensors"

# BatchNorm hyper-parameters of the workers (torchvision's).
_BN_EPS = 1e-5
_BN_MOMENTUM = 0.1

_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


def _bn(channels: int) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)
    # The exports hold no step counter; without it `state_dict()` is the file's.
    bn.register_buffer("num_batches_tracked", None)
    return bn


def _conv(unit: Dict[str, Any]) -> nn.Conv2d:
    return nn.Conv2d(
        unit["in_channels"],
        unit["out_channels"],
        unit["kernel"],
        stride=unit["stride"],
        padding=unit["padding"],
        groups=unit["groups"],
        bias=False,
    )


def _local(name: str, block: str) -> str:
    """`layer2.0.conv1` inside block `layer2.0` is `conv1`."""
    prefix = block + "."
    if not name.startswith(prefix) or "." in name[len(prefix) :]:
        raise ValueError(f"{ARCH_FILE}: unit {name!r} is not a direct child of block {block!r}")
    return name[len(prefix) :]


class Block(nn.Module):
    """A residual block (BasicBlock or Bottleneck), dense or pruned."""

    scatter: Optional[torch.Tensor]

    def __init__(self, desc: Dict[str, Any]) -> None:
        super().__init__()
        self.convs: List[str] = []
        self.bns: List[str] = []
        for unit in desc["units"]:
            conv, bn = _local(unit["name"], desc["name"]), _local(unit["bn"], desc["name"])
            self.add_module(conv, _conv(unit))
            self.add_module(bn, _bn(unit["out_channels"]))
            self.convs.append(conv)
            self.bns.append(bn)
        shortcut = desc.get("shortcut")
        self.downsample: Optional[nn.Sequential] = None
        if shortcut is not None:
            self.downsample = nn.Sequential(
                nn.Conv2d(shortcut["in_channels"], shortcut["out_channels"], 1, stride=shortcut["stride"], bias=False),
                _bn(shortcut["out_channels"]),
            )
        # The last unit's pruned outputs are scattered back into the residual
        # only when the residual stream kept its width (`residual: scatter`);
        # a stream pruned as a group is narrower everywhere and adds plainly.
        last = desc["units"][-1] if desc["units"] else None
        scattered = last is not None and last["out_channels"] != desc["out_channels"]
        kept = last.get("kept") if scattered else None
        # Not part of the state dict (the export has no such tensor), but moves with `.to()`.
        self.register_buffer(
            "scatter", torch.tensor(kept, dtype=torch.int64) if kept is not None else None, persistent=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        last = len(self.convs) - 1
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            y = getattr(self, bn)(getattr(self, conv)(y))
            if i < last:
                y = torch.relu(y)
        identity = self.downsample(x) if self.downsample is not None else x
        if self.scatter is not None:
            out = identity.index_add(1, self.scatter, y)
        else:
            out = y + identity
        return torch.relu(out)


class ResNet(nn.Module):
    """The network an `arch.json` describes, with torchvision's module names."""

    def __init__(self, arch: Dict[str, Any]) -> None:
        super().__init__()
        self.arch = arch
        stem = arch["stem"]
        self.conv1 = nn.Conv2d(
            arch["in_channels"],
            stem["out_channels"],
            stem["kernel"],
            stride=stem["stride"],
            padding=stem["padding"],
            bias=False,
        )
        self.bn1 = _bn(stem["out_channels"])
        self.max_pool = bool(stem["max_pool"])
        self.layers: List[str] = []
        for block in arch["blocks"]:
            layer, _, index = block["name"].partition(".")
            if not index.isdigit():
                raise ValueError(f"{ARCH_FILE}: block name {block['name']!r} is not `layerS.I`")
            if layer not in self.layers:
                self.add_module(layer, nn.Sequential())
                self.layers.append(layer)
            sequential = getattr(self, layer)
            if int(index) != len(sequential):
                raise ValueError(f"{ARCH_FILE}: block {block['name']!r} is out of order")
            sequential.append(Block(block))
        classifier = arch["classifier"]
        self.fc = nn.Linear(classifier["in_features"], classifier["out_features"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        if self.max_pool:
            x = nn.functional.max_pool2d(x, 3, 2, 1)
        for layer in self.layers:
            x = getattr(self, layer)(x)
        x = nn.functional.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


def read_safetensors(path: Union[str, "os.PathLike[str]"]) -> Dict[str, torch.Tensor]:
    """Every tensor of a `.safetensors` file, on the CPU."""
    path = Path(path)
    data = path.read_bytes()
    if len(data) < 8:
        raise ValueError(f"{path}: too short for a safetensors file")
    (length,) = struct.unpack("<Q", data[:8])
    if 8 + length > len(data):
        raise ValueError(f"{path}: header of {length} bytes runs past the end of the file")
    try:
        header = json.loads(data[8 : 8 + length])
    except ValueError as e:
        raise ValueError(f"{path}: header is not JSON: {e}") from e
    body = memoryview(data)[8 + length :]
    tensors: Dict[str, torch.Tensor] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = _DTYPES.get(info["dtype"])
        if dtype is None:
            raise ValueError(f"{path}: {name}: unsupported dtype {info['dtype']}")
        start, end = info["data_offsets"]
        if end > len(body) or start > end:
            raise ValueError(f"{path}: {name}: data offsets {start}..{end} out of the file")
        raw = bytearray(body[start:end])
        flat = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
        tensors[name] = flat.reshape(info["shape"]).clone()
    return tensors


def load_model(export_dir: Union[str, "os.PathLike[str]"], device: Union[str, torch.device] = "cpu") -> nn.Module:
    """The network of an export directory (`arch.json` + `model.safetensors`)
    on `device`, in eval mode. Its outputs equal those of the directory's
    TorchScript `model.pt`. Every weight must be in the file and nothing else."""
    export_dir = Path(export_dir)
    arch_path = export_dir / ARCH_FILE
    try:
        arch = json.loads(arch_path.read_text())
    except OSError as e:
        raise FileNotFoundError(f"{arch_path}: {e.strerror or e}") from e
    except ValueError as e:
        raise ValueError(f"{arch_path}: not JSON: {e}") from e
    model = ResNet(arch)
    weights = read_safetensors(export_dir / WEIGHTS_FILE)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"{export_dir / WEIGHTS_FILE} does not match {arch_path}: "
            f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )
    for name, tensor in weights.items():
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise ValueError(
                f"{export_dir / WEIGHTS_FILE}: {name}: shape {list(tensor.shape)}, "
                f"{arch_path} says {list(expected[name].shape)}"
            )
    # Names and shapes were checked above. Not strict because BatchNorm2d adds a
    # `num_batches_tracked` of its own to what it loads, which these modules lack.
    model.load_state_dict(weights, strict=False)
    return model.to(device).eval()
