"""Specs are checked before they are sent, every problem with its field path,
and their relative paths resolved as scopctl resolves them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from scop import InvalidSpec
from scop.spec import load


def test_every_problem_is_reported_with_its_field_path() -> None:
    with pytest.raises(InvalidSpec) as raised:
        load({"model": {"arch": "resnet21"}, "prune": {"rate": 1.5}, "finetune": {"epochs": 0}})
    paths = [e.path for e in raised.value.errors]
    assert paths == ["model.arch", "model.num_classes", "data", "finetune.epochs", "prune.rate"], raised.value
    assert raised.value.exit_code == 7
    text = str(raised.value)
    assert text.startswith("invalid job spec (dict):\n"), text
    assert "\n  model.arch: must be one of resnet20," in text and "got 'resnet21'" in text, text
    assert "\n  prune.rate: must be > 0 and < 1, got 1.5" in text, text


def test_yaml_errors_and_unreadable_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(InvalidSpec, match=r"spec: not valid YAML at line 2"):
        load("model: {arch: resnet20\ndata: [\n")
    with pytest.raises(InvalidSpec, match=r"missing\.yaml:\n  spec: cannot read the file"):
        load(tmp_path / "missing.yaml")
    with pytest.raises(InvalidSpec, match=r"spec: expected a mapping, got list"):
        load("- 1\n- 2\n")


def test_relative_paths_are_resolved_against_the_spec_file(tmp_path: Path) -> None:
    examples = tmp_path / "examples"
    examples.mkdir()
    path = examples / "job.yaml"
    path.write_text("model: { arch: resnet20, num_classes: 10, init_from: w.safetensors }\ndata: { format: idx, root: ../data/fm }\n")
    text, source = load(path)
    assert source == str(path)
    sent = yaml.safe_load(text)
    assert sent["data"]["root"] == str(tmp_path / "data" / "fm")
    assert sent["model"]["init_from"] == str(examples / "w.safetensors")
    assert sent["output"]["dir"] == str(examples / "runs" / "job")
    # A path given as a string is read as a file too.
    assert yaml.safe_load(load(str(path))[0]) == sent


def test_an_unknown_criterion_is_named_with_its_field_path() -> None:
    spec = {"model": {"arch": "resnet20", "num_classes": 10}, "data": {"format": "idx", "root": "d"}}
    load({**spec, "prune": {"criterion": "fpgm"}})
    with pytest.raises(InvalidSpec) as raised:
        load({**spec, "prune": {"criterion": "l3"}})
    assert [e.path for e in raised.value.errors] == ["prune.criterion"], raised.value
    assert "unknown variant 'l3', expected one of scop, bn_gamma, l1, l2, fpgm, taylor, random" in str(raised.value)
