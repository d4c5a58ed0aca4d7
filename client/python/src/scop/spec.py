"""Local checks of a job spec before it is sent, and the resolution of its
relative paths, as `scopctl submit` does.

Only the rules this client knows are checked here (the shape of the document,
the required fields, the architecture, ranges of the common numbers); the
coordinator validates the rest and its answer is raised as `InvalidSpec` too.
Relative paths (`data.root`, `output.dir`, `model.init_from`,
`knockoff.source.path`) are made absolute against the spec file's directory,
or the current directory for a spec given as text or a dict, because the
workers read them from wherever they run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Tuple, Union

import yaml

from .errors import FieldError, InvalidSpec

#: The architectures the workers build.
ARCHS = ("resnet20", "resnet32", "resnet56", "resnet110", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
_STAGES = ("pretrain", "knockoff", "finetune")
_CRITERIA = ("scop", "bn_gamma", "l1", "l2", "fpgm", "taylor", "random")

SpecInput = Union[str, "os.PathLike[str]", Mapping[str, Any]]


def load(spec: SpecInput) -> Tuple[str, str]:
    """The YAML to send and the name of where it came from, or `InvalidSpec`
    listing every problem found."""
    if isinstance(spec, Mapping):
        return _prepare(dict(spec), Path.cwd(), "(dict)")
    if isinstance(spec, os.PathLike) or (isinstance(spec, str) and _looks_like_path(spec)):
        path = Path(spec)
        try:
            text = path.read_text()
        except OSError as e:
            raise InvalidSpec(str(path), [FieldError("spec", f"cannot read the file: {e.strerror or e}")]) from e
        return _prepare(_parse(text, str(path)), path.resolve().parent, str(path))
    return _prepare(_parse(spec, "(text)"), Path.cwd(), "(text)")


def _looks_like_path(text: str) -> bool:
    """A one-line string naming a file, or ending in .yaml/.yml, is a path."""
    if "\n" in text or ":" in text and not text.endswith((".yaml", ".yml")):
        return False
    return text.endswith((".yaml", ".yml")) or Path(text).is_file()


def _parse(text: str, source: str) -> Dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise InvalidSpec(source, [FieldError("spec", f"not valid YAML{where}: {getattr(e, 'problem', e)}")]) from e
    if not isinstance(data, dict):
        raise InvalidSpec(source, [FieldError("spec", f"expected a mapping, got {type(data).__name__}")])
    return data


def _prepare(spec: Dict[str, Any], base: Path, source: str) -> Tuple[str, str]:
    errors = check(spec)
    if errors:
        raise InvalidSpec(source, errors)
    _resolve_paths(spec, base)
    header = f"# Submitted by the scop Python client from {source}; its relative paths are resolved.\n"
    return header + yaml.safe_dump(spec, sort_keys=False), source


def check(spec: Mapping[str, Any]) -> List[FieldError]:
    """Every problem this client can see, each with its field path."""
    errors: List[FieldError] = []

    def section(name: str, required: bool = False) -> Mapping[str, Any]:
        value = spec.get(name)
        if value is None:
            if required:
                errors.append(FieldError(name, "missing field"))
            return {}
        if not isinstance(value, Mapping):
            errors.append(FieldError(name, f"expected a mapping, got {value!r}"))
            return {}
        return value

    model = section("model", required=True)
    if model:
        arch = model.get("arch")
        if arch is None:
            errors.append(FieldError("model.arch", "missing field"))
        elif arch not in ARCHS:
            errors.append(FieldError("model.arch", f"must be one of {', '.join(ARCHS)}, got {arch!r}"))
        if "num_classes" not in model:
            errors.append(FieldError("model.num_classes", "missing field"))
        else:
            _positive_int(errors, "model.num_classes", model["num_classes"])
    data = section("data", required=True)
    if data:
        for name in ("format", "root"):
            if name not in data:
                errors.append(FieldError(f"data.{name}", "missing field"))
    for stage in _STAGES:
        train = section(stage)
        for name in ("epochs", "batch_size"):
            if name in train:
                _positive_int(errors, f"{stage}.{name}", train[name])
        if "lr" in train and not (_is_number(train["lr"]) and train["lr"] > 0):
            errors.append(FieldError(f"{stage}.lr", f"must be > 0, got {train['lr']!r}"))
    prune = section("prune")
    if "criterion" in prune and prune["criterion"] not in _CRITERIA:
        errors.append(
            FieldError(
                "prune.criterion",
                f"unknown variant {prune['criterion']!r}, expected one of {', '.join(_CRITERIA)}",
            )
        )
    if "rate" in prune:
        rate = prune["rate"]
        if not _is_number(rate) or not 0 < rate < 1:
            errors.append(FieldError("prune.rate", f"must be > 0 and < 1, got {rate!r}"))
    resources = section("resources")
    if "world_size" in resources:
        _positive_int(errors, "resources.world_size", resources["world_size"])
    return errors


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _positive_int(errors: List[FieldError], path: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        errors.append(FieldError(path, f"must be a whole number >= 1, got {value!r}"))


def _resolve_paths(spec: Dict[str, Any], base: Path) -> None:
    def resolve(section: Any, key: str, default: Any = None) -> None:
        if not isinstance(section, dict):
            return
        value = section.get(key, default)
        if isinstance(value, str):
            section[key] = os.path.normpath(str(base / value)) if not os.path.isabs(value) else value

    resolve(spec.get("data"), "root")
    resolve(spec.get("model"), "init_from")
    spec.setdefault("output", {})
    resolve(spec.get("output"), "dir", "runs/job")
    knockoff = spec.get("knockoff")
    if isinstance(knockoff, dict):
        resolve(knockoff.get("source"), "path")
