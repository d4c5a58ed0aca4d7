"""`scop.load_model` rebuilds every architecture in plain PyTorch with the
export's weights and BN statistics as its state dict, and computes what the
export's TorchScript computes."""

from __future__ import annotations

import json
import struct
import subprocess
from pathlib import Path
from typing import Dict

import pytest
import torch

import scop
from scop.model import read_safetensors
from scop.spec import ARCHS

from conftest import binary


def write_safetensors(path: Path, tensors: Dict[str, torch.Tensor]) -> None:
    header: Dict[str, object] = {}
    offset = 0
    blobs = []
    for name in sorted(tensors):
        data = tensors[name].contiguous().to(torch.float32).numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def export(arch: str, out: Path, *extra: str) -> None:
    subprocess.run(
        [str(binary("scop-worker")), "export", "--arch", arch, "--num-classes", "7", "--in-channels", "3",
         "--input-size", "32", "--out", str(out), *extra],
        check=True,
        capture_output=True,
    )  # fmt: skip


def check(export_dir: Path, in_channels: int, seed: int) -> None:
    model = scop.load_model(export_dir)
    stored = read_safetensors(export_dir / "model.safetensors")
    state = model.state_dict()
    assert sorted(state) == sorted(stored)
    for name, tensor in stored.items():
        assert torch.equal(state[name], tensor), name
    assert not model.training

    scripted = torch.jit.load(str(export_dir / "model.pt"))
    # The TorchScript module has the same tensors, as parameters and buffers.
    assert sorted(scripted.state_dict()) == sorted(stored)
    x = torch.randn(2, in_channels, 32, 32, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        expected = scripted(x)
        actual = model(x)
    assert actual.shape == expected.shape == (2, 7)
    scale = expected.abs().max().item()
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4 * max(scale, 1.0))


@pytest.mark.parametrize("arch", ARCHS)
def test_load_model_matches_the_torchscript_export(arch: str, tmp_path: Path) -> None:
    export(arch, tmp_path)
    check(tmp_path, 3, len(arch))


@pytest.mark.parametrize("arch", ["resnet20", "resnet50"])
def test_bn_statistics_and_affine_parameters_land_in_their_places(arch: str, tmp_path: Path) -> None:
    # Every BN gets statistics and affine parameters of its own, so that a
    # mix-up of any two of them would change the outputs.
    export(arch, tmp_path / "fresh")
    generator = torch.Generator().manual_seed(len(arch))
    weights = read_safetensors(tmp_path / "fresh" / "model.safetensors")
    for name, tensor in weights.items():
        noise = torch.rand(tensor.shape, generator=generator)
        is_bn = name.startswith("bn1.") or ".bn" in name or ".downsample.1." in name
        if name.endswith("running_var"):
            weights[name] = 0.5 + noise
        elif is_bn:
            weights[name] = tensor + 0.2 * (noise - 0.5)
    write_safetensors(tmp_path / "init.safetensors", weights)
    export(arch, tmp_path / "export", "--init-from", str(tmp_path / "init.safetensors"))
    assert torch.equal(read_safetensors(tmp_path / "export" / "model.safetensors")["bn1.running_var"], weights["bn1.running_var"])
    check(tmp_path / "export", 3, 1)


def test_mismatched_weights_are_named(tmp_path: Path) -> None:
    export("resnet20", tmp_path / "a")
    weights = read_safetensors(tmp_path / "a" / "model.safetensors")
    del weights["fc.bias"]
    write_safetensors(tmp_path / "a" / "model.safetensors", weights)
    with pytest.raises(ValueError, match=r"model\.safetensors does not match .*arch\.json: missing \['fc\.bias'\]"):
        scop.load_model(tmp_path / "a")
    with pytest.raises(FileNotFoundError, match=r"arch\.json"):
        scop.load_model(tmp_path / "missing")
