"""Python client of the scop coordinator: submit SCOP pruning jobs, follow and
wait for them, fetch their artifacts, and load the exported network."""

import os
from typing import TYPE_CHECKING, Union

from .client import Client
from .errors import (
    ConfigError,
    FieldError,
    InvalidArgument,
    InvalidSpec,
    JobCancelled,
    JobEnded,
    JobFailed,
    NotFound,
    RpcError,
    ScopError,
    Unauthenticated,
    Unreachable,
    WaitTimeout,
)
from .settings import Settings
from .types import (
    Artifact,
    Artifacts,
    ArtifactsReady,
    Candidate,
    Evaluated,
    Event,
    Job,
    JobError,
    JobState,
    Plan,
    PlanDecided,
    PlanGroup,
    PlanUnit,
    Progress,
    ScoreSummary,
    Stage,
    StageFinished,
    StageStarted,
    StateChanged,
    StatisticsReceived,
    Worker,
)


if TYPE_CHECKING:
    import torch


def load_model(
    export_dir: "Union[str, os.PathLike[str]]", device: "Union[str, torch.device]" = "cpu"
) -> "torch.nn.Module":
    """Rebuilds an exported network in plain PyTorch from `arch.json` and
    `model.safetensors` (needs torch); see `scop.model.load_model`."""
    from .model import load_model as load

    return load(export_dir, device)


__all__ = [
    "Artifact",
    "Artifacts",
    "ArtifactsReady",
    "Candidate",
    "Client",
    "ConfigError",
    "Evaluated",
    "Event",
    "FieldError",
    "InvalidArgument",
    "InvalidSpec",
    "Job",
    "JobCancelled",
    "JobEnded",
    "JobError",
    "JobFailed",
    "JobState",
    "NotFound",
    "Plan",
    "PlanDecided",
    "PlanGroup",
    "PlanUnit",
    "Progress",
    "RpcError",
    "ScopError",
    "ScoreSummary",
    "Settings",
    "Stage",
    "StageFinished",
    "StageStarted",
    "StateChanged",
    "StatisticsReceived",
    "Unauthenticated",
    "Unreachable",
    "WaitTimeout",
    "Worker",
    "load_model",
]
