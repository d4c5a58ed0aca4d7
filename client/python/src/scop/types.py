"""Plain dataclasses for what the coordinator returns: jobs, events, plans,
artifacts and workers. They are built from the protobuf messages at the edge,
so callers never handle generated types."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Dict, List, Optional, Union

from .v1 import common_pb2, jobs_pb2


class JobState(str, enum.Enum):
    """QUEUED -> RUNNING -> exactly one of SUCCEEDED, FAILED, CANCELLED."""

    UNSPECIFIED = "unspecified"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)

    @staticmethod
    def from_proto(value: int) -> "JobState":
        name = common_pb2.JobState.Name(value) if value in common_pb2.JobState.values() else ""
        return JobState(name.removeprefix("JOB_STATE_").lower()) if name else JobState.UNSPECIFIED

    def to_proto(self) -> int:
        return common_pb2.JobState.Value("JOB_STATE_" + self.name)


class Stage(str, enum.Enum):
    """The stages of a job, in the order they run."""

    UNSPECIFIED = "unspecified"
    PRETRAIN = "pretrain"
    KNOCKOFF = "knockoff"
    #: Runs instead of KNOCKOFF for a `prune.criterion` other than `scop`.
    SCORE = "score"
    DECIDE = "decide"
    FINETUNE = "finetune"
    EXPORT = "export"
    #: A sweep's last stage: one branch job per candidate (see `Client.candidates`).
    SWEEP = "sweep"

    @staticmethod
    def from_proto(value: int) -> "Stage":
        name = common_pb2.Stage.Name(value) if value in common_pb2.Stage.values() else ""
        return Stage(name.removeprefix("STAGE_").lower()) if name else Stage.UNSPECIFIED


def _time(ms: int) -> Optional[datetime]:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc) if ms else None


@dataclass(frozen=True)
class Job:
    id: str
    state: JobState
    #: The stage running now, or the last one that ran.
    stage: Stage
    spec_yaml: str
    labels: Dict[str, str]
    priority: int
    created_at: Optional[datetime]
    updated_at: Optional[datetime]
    #: Why the job failed or was cancelled; empty otherwise.
    error: str
    request_id: str
    attempt: int
    #: Sequence number of the job's latest event.
    last_sequence: int
    #: For a branch of a sweep: the sweep job and the branch's candidate; empty otherwise.
    parent_id: str = ""
    candidate: str = ""

    @staticmethod
    def from_proto(m: jobs_pb2.Job) -> "Job":
        return Job(
            id=m.id,
            state=JobState.from_proto(m.state),
            stage=Stage.from_proto(m.stage),
            spec_yaml=m.spec_yaml,
            labels=dict(m.labels),
            priority=m.priority,
            created_at=_time(m.created_at_ms),
            updated_at=_time(m.updated_at_ms),
            error=m.error,
            request_id=m.request_id,
            attempt=m.attempt,
            last_sequence=m.last_sequence,
            parent_id=m.parent_id,
            candidate=m.candidate,
        )


@dataclass(frozen=True)
class Candidate:
    """One candidate of a sweep and how its branch went (the figures are
    `None` until the branch has succeeded)."""

    name: str
    #: The branch job.
    job_id: str
    state: JobState
    criterion: str
    #: "layer 0.45", or "flops 0.5" / "params 0.5" for a global target.
    target: str
    params: Optional[int] = None
    flops: Optional[int] = None
    dense_params: Optional[int] = None
    dense_flops: Optional[int] = None
    #: Median milliseconds of one single-image forward of the export on the CPU.
    latency_ms: Optional[float] = None
    top1_dense: Optional[float] = None
    top1_before_finetune: Optional[float] = None
    top1: Optional[float] = None
    #: Why the branch failed or was cancelled.
    error: str = ""
    #: Its `prune.residual`: "scatter", "keep" or "group".
    residual: str = ""


@dataclass(frozen=True)
class Artifact:
    #: "torchscript", "safetensors", "arch", "model_card", "plan" or "file".
    kind: str
    #: Relative to the job's directory, e.g. "export/model.pt"; what `download` takes.
    path: str
    size_bytes: int
    stage: Stage

    @staticmethod
    def from_proto(m: common_pb2.Artifact) -> "Artifact":
        return Artifact(m.kind, m.path, m.size_bytes, Stage.from_proto(m.stage))


@dataclass(frozen=True)
class Artifacts:
    #: The job's directory as the coordinator sees it.
    job_dir: str
    artifacts: List[Artifact]

    def by_kind(self, kind: str) -> Optional[Artifact]:
        """The first artifact of a kind, e.g. "torchscript"."""
        return next((a for a in self.artifacts if a.kind == kind), None)


# The event kinds: one dataclass each, named as in the proto.


@dataclass(frozen=True)
class StateChanged:
    from_state: JobState
    to_state: JobState
    stage: Stage
    reason: str


@dataclass(frozen=True)
class StageStarted:
    stage: Stage
    attempt: int
    world_size: int


@dataclass(frozen=True)
class StageFinished:
    stage: Stage
    seconds: float
    attempt: int
    metrics: Dict[str, float]


@dataclass(frozen=True)
class Progress:
    stage: Stage
    epoch: int
    epochs: int
    step: int
    steps: int
    loss: float
    accuracy: float
    samples_per_second: float
    eta_seconds: float


@dataclass(frozen=True)
class Evaluated:
    stage: Stage
    epoch: int
    loss: float
    top1: float
    top5: float


@dataclass(frozen=True)
class StatisticsReceived:
    stage: Stage
    epoch: int
    units: int


@dataclass(frozen=True)
class PlanDecided:
    units: int
    channels_before: int
    channels_after: int


@dataclass(frozen=True)
class ArtifactsReady:
    stage: Stage
    artifacts: List[Artifact]


@dataclass(frozen=True)
class JobError:
    stage: Stage
    attempt: int
    message: str
    retrying: bool


EventDetail = Union[
    StateChanged,
    StageStarted,
    StageFinished,
    Progress,
    Evaluated,
    StatisticsReceived,
    PlanDecided,
    ArtifactsReady,
    JobError,
    None,
]


@dataclass(frozen=True)
class Event:
    """One entry of a job's event log; sequence numbers start at 1 and have no gaps."""

    job_id: str
    sequence: int
    time: Optional[datetime]
    #: The oneof's name, e.g. "progress", "state_changed"; "" for a kind this client does not know.
    kind: str
    detail: EventDetail

    @staticmethod
    def from_proto(m: jobs_pb2.JobEvent) -> "Event":
        kind = m.WhichOneof("kind") or ""
        return Event(m.job_id, m.sequence, _time(m.time_ms), kind, _detail(m, kind))


def _detail(m: jobs_pb2.JobEvent, kind: str) -> EventDetail:
    st = Stage.from_proto
    if kind == "state_changed":
        c = m.state_changed
        return StateChanged(JobState.from_proto(getattr(c, "from")), JobState.from_proto(c.to), st(c.stage), c.reason)
    if kind == "stage_started":
        s = m.stage_started
        return StageStarted(st(s.stage), s.attempt, s.world_size)
    if kind == "stage_finished":
        f = m.stage_finished
        return StageFinished(st(f.stage), f.seconds, f.attempt, dict(f.metrics))
    if kind == "progress":
        p = m.progress
        return Progress(
            st(p.stage), p.epoch, p.epochs, p.step, p.steps, p.loss, p.accuracy, p.samples_per_second, p.eta_seconds
        )
    if kind == "evaluated":
        e = m.evaluated
        return Evaluated(st(e.stage), e.epoch, e.loss, e.top1, e.top5)
    if kind == "statistics_received":
        r = m.statistics_received
        return StatisticsReceived(st(r.stage), r.epoch, r.units)
    if kind == "plan_decided":
        d = m.plan_decided
        return PlanDecided(d.units, d.channels_before, d.channels_after)
    if kind == "artifacts_ready":
        a = m.artifacts_ready
        return ArtifactsReady(st(a.stage), [Artifact.from_proto(x) for x in a.artifacts])
    if kind == "error":
        e = m.error
        return JobError(st(e.stage), e.attempt, e.message, e.retrying)
    return None


@dataclass(frozen=True)
class ScoreSummary:
    min: float
    mean: float
    max: float
    kept_min: float
    #: The highest score that was pruned; None when nothing was pruned.
    pruned_max: Optional[float]
    median: Optional[float]


@dataclass(frozen=True)
class PlanUnit:
    unit: str
    channels_before: int
    channels_after: int
    score: ScoreSummary


@dataclass(frozen=True)
class PlanGroup:
    """A residual stream pruned as one group (`prune.residual: group`)."""

    #: The conv that writes the stream, e.g. "conv1" or "layer2.0.downsample.0".
    writer: str
    channels_before: int
    channels_after: int
    #: The units whose outputs add into the stream.
    members: List[str]


@dataclass(frozen=True)
class Plan:
    """The pruning plan the coordinator decided for a job."""

    job_id: str
    decided_at: Optional[datetime]
    policy: str
    #: The `prune.criterion` the channels were scored by.
    criterion: str
    rate: float
    statistics_epoch: int
    units: List[PlanUnit]
    channels_before: int
    channels_after: int
    params_before: int
    params_after: int
    #: Multiply-accumulates of one forward pass at `input_size`.
    flops_before: int
    flops_after: int
    input_size: int
    #: "scatter", "keep" or "group" ("" when the coordinator did not record it).
    residual: str = ""
    #: Pruned widths are multiples of this (1: not rounded; 0: not recorded).
    round_to: int = 0
    #: With `residual: group`: each residual stream pruned as one group.
    groups: List[PlanGroup] = field(default_factory=list)

    @staticmethod
    def from_proto(m: jobs_pb2.Plan) -> "Plan":
        def summary(s: jobs_pb2.ScoreSummary) -> ScoreSummary:
            return ScoreSummary(
                s.min,
                s.mean,
                s.max,
                s.kept_min,
                s.pruned_max if s.HasField("pruned_max") else None,
                s.median if s.HasField("median") else None,
            )

        return Plan(
            job_id=m.job_id,
            decided_at=_time(m.decided_at_ms),
            policy=m.policy,
            criterion=m.criterion or "scop",
            rate=m.rate,
            statistics_epoch=m.statistics_epoch,
            units=[PlanUnit(u.unit, u.channels_before, u.channels_after, summary(u.score)) for u in m.units],
            channels_before=m.channels_before,
            channels_after=m.channels_after,
            params_before=m.params_before,
            params_after=m.params_after,
            flops_before=m.flops_before,
            flops_after=m.flops_after,
            input_size=m.input_size,
            residual=m.residual,
            round_to=m.round_to,
            groups=[PlanGroup(g.writer, g.channels_before, g.channels_after, list(g.members)) for g in m.groups],
        )


@dataclass(frozen=True)
class Device:
    kind: str
    index: int
    name: str
    memory_bytes: int


@dataclass(frozen=True)
class Worker:
    id: str
    hostname: str
    #: "connected", "disconnected" or "lost".
    state: str
    devices: List[Device] = field(default_factory=list)
    slots_total: int = 0
    slots_busy: int = 0
    slots_free: int = 0
    #: An admin drained it: no new ranks go to it; its running ones finish.
    drained: bool = False

    @staticmethod
    def from_proto(m: jobs_pb2.Worker) -> "Worker":
        state = jobs_pb2.WorkerState.Name(m.state).removeprefix("WORKER_STATE_").lower()
        devices = [Device(d.kind, d.index, d.name, d.memory_bytes) for d in m.devices]
        return Worker(m.id, m.hostname, state, devices, m.slots_total, m.slots_busy, m.slots_free, m.drained)
