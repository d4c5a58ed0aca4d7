# Generated from proto/scop/v1 by client/python/generate_stubs.py; do not edit.
from scop.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WorkerState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WORKER_STATE_UNSPECIFIED: _ClassVar[WorkerState]
    WORKER_STATE_CONNECTED: _ClassVar[WorkerState]
    WORKER_STATE_DISCONNECTED: _ClassVar[WorkerState]
    WORKER_STATE_LOST: _ClassVar[WorkerState]
WORKER_STATE_UNSPECIFIED: WorkerState
WORKER_STATE_CONNECTED: WorkerState
WORKER_STATE_DISCONNECTED: WorkerState
WORKER_STATE_LOST: WorkerState

class SubmitJobRequest(_message.Message):
    __slots__ = ("spec_yaml", "request_id", "labels", "priority")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SPEC_YAML_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    spec_yaml: str
    request_id: str
    labels: _containers.ScalarMap[str, str]
    priority: int
    def __init__(self, spec_yaml: _Optional[str] = ..., request_id: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., priority: _Optional[int] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("state", "labels", "page_size", "page_token", "full_view", "owner", "parent_id")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    STATE_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FULL_VIEW_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    PARENT_ID_FIELD_NUMBER: _ClassVar[int]
    state: _common_pb2.JobState
    labels: _containers.ScalarMap[str, str]
    page_size: int
    page_token: str
    full_view: bool
    owner: str
    parent_id: str
    def __init__(self, state: _Optional[_Union[_common_pb2.JobState, str]] = ..., labels: _Optional[_Mapping[str, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., full_view: _Optional[bool] = ..., owner: _Optional[str] = ..., parent_id: _Optional[str] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs", "next_page_token")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    next_page_token: str
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class WatchJobRequest(_message.Message):
    __slots__ = ("job_id", "from_sequence")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    from_sequence: int
    def __init__(self, job_id: _Optional[str] = ..., from_sequence: _Optional[int] = ...) -> None: ...

class GetPlanRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class ListWorkersRequest(_message.Message):
    __slots__ = ("include_lost",)
    INCLUDE_LOST_FIELD_NUMBER: _ClassVar[int]
    include_lost: bool
    def __init__(self, include_lost: _Optional[bool] = ...) -> None: ...

class DrainWorkerRequest(_message.Message):
    __slots__ = ("worker_id",)
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    def __init__(self, worker_id: _Optional[str] = ...) -> None: ...

class UndrainWorkerRequest(_message.Message):
    __slots__ = ("worker_id",)
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    def __init__(self, worker_id: _Optional[str] = ...) -> None: ...

class ListWorkersResponse(_message.Message):
    __slots__ = ("workers",)
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    workers: _containers.RepeatedCompositeFieldContainer[Worker]
    def __init__(self, workers: _Optional[_Iterable[_Union[Worker, _Mapping]]] = ...) -> None: ...

class ListArtifactsRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class ListArtifactsResponse(_message.Message):
    __slots__ = ("artifacts", "job_dir")
    ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    JOB_DIR_FIELD_NUMBER: _ClassVar[int]
    artifacts: _containers.RepeatedCompositeFieldContainer[_common_pb2.Artifact]
    job_dir: str
    def __init__(self, artifacts: _Optional[_Iterable[_Union[_common_pb2.Artifact, _Mapping]]] = ..., job_dir: _Optional[str] = ...) -> None: ...

class DownloadArtifactRequest(_message.Message):
    __slots__ = ("job_id", "path")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    path: str
    def __init__(self, job_id: _Optional[str] = ..., path: _Optional[str] = ...) -> None: ...

class ArtifactChunk(_message.Message):
    __slots__ = ("data", "offset", "total_bytes")
    DATA_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    offset: int
    total_bytes: int
    def __init__(self, data: _Optional[bytes] = ..., offset: _Optional[int] = ..., total_bytes: _Optional[int] = ...) -> None: ...

class GetScoreStatisticsRequest(_message.Message):
    __slots__ = ("job_id", "epoch")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    epoch: int
    def __init__(self, job_id: _Optional[str] = ..., epoch: _Optional[int] = ...) -> None: ...

class ScoreStatisticsResponse(_message.Message):
    __slots__ = ("job_id", "epoch", "units")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    UNITS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    epoch: int
    units: _containers.RepeatedCompositeFieldContainer[_common_pb2.UnitStatistics]
    def __init__(self, job_id: _Optional[str] = ..., epoch: _Optional[int] = ..., units: _Optional[_Iterable[_Union[_common_pb2.UnitStatistics, _Mapping]]] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("id", "state", "stage", "spec_yaml", "labels", "priority", "created_at_ms", "updated_at_ms", "error", "request_id", "attempt", "last_sequence", "owner", "queued_reason", "name", "parent_id", "candidate")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    SPEC_YAML_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    QUEUED_REASON_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PARENT_ID_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_FIELD_NUMBER: _ClassVar[int]
    id: str
    state: _common_pb2.JobState
    stage: _common_pb2.Stage
    spec_yaml: str
    labels: _containers.ScalarMap[str, str]
    priority: int
    created_at_ms: int
    updated_at_ms: int
    error: str
    request_id: str
    attempt: int
    last_sequence: int
    owner: str
    queued_reason: str
    name: str
    parent_id: str
    candidate: str
    def __init__(self, id: _Optional[str] = ..., state: _Optional[_Union[_common_pb2.JobState, str]] = ..., stage: _Optional[_Union[_common_pb2.Stage, str]] = ..., spec_yaml: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., priority: _Optional[int] = ..., created_at_ms: _Optional[int] = ..., updated_at_ms: _Optional[int] = ..., error: _Optional[str] = ..., request_id: _Optional[str] = ..., attempt: _Optional[int] = ..., last_sequence: _Optional[int] = ..., owner: _Optional[str] = ..., queued_reason: _Optional[str] = ..., name: _Optional[str] = ..., parent_id: _Optional[str] = ..., candidate: _Optional[str] = ...) -> None: ...

class WhoAmIRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WhoAmIResponse(_message.Message):
    __slots__ = ("user", "role", "max_queued_jobs", "max_running_jobs", "max_rank_slots", "max_priority")
    USER_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    MAX_QUEUED_JOBS_FIELD_NUMBER: _ClassVar[int]
    MAX_RUNNING_JOBS_FIELD_NUMBER: _ClassVar[int]
    MAX_RANK_SLOTS_FIELD_NUMBER: _ClassVar[int]
    MAX_PRIORITY_FIELD_NUMBER: _ClassVar[int]
    user: str
    role: str
    max_queued_jobs: int
    max_running_jobs: int
    max_rank_slots: int
    max_priority: int
    def __init__(self, user: _Optional[str] = ..., role: _Optional[str] = ..., max_queued_jobs: _Optional[int] = ..., max_running_jobs: _Optional[int] = ..., max_rank_slots: _Optional[int] = ..., max_priority: _Optional[int] = ...) -> None: ...

class JobEvent(_message.Message):
    __slots__ = ("job_id", "sequence", "time_ms", "state_changed", "stage_started", "stage_finished", "progress", "statistics_received", "plan_decided", "artifacts_ready", "error", "evaluated", "notice")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    STATE_CHANGED_FIELD_NUMBER: _ClassVar[int]
    STAGE_STARTED_FIELD_NUMBER: _ClassVar[int]
    STAGE_FINISHED_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    STATISTICS_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    PLAN_DECIDED_FIELD_NUMBER: _ClassVar[int]
    ARTIFACTS_READY_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    EVALUATED_FIELD_NUMBER: _ClassVar[int]
    NOTICE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    sequence: int
    time_ms: int
    state_changed: StateChanged
    stage_started: StageStarted
    stage_finished: StageFinished
    progress: Progress
    statistics_received: ScoreStatisticsReceived
    plan_decided: PlanDecided
    artifacts_ready: ArtifactsReady
    error: JobError
    evaluated: Evaluated
    notice: JobNotice
    def __init__(self, job_id: _Optional[str] = ..., sequence: _Optional[int] = ..., time_ms: _Optional[int] = ..., state_changed: _Optional[_Union[StateChanged, _Mapping]] = ..., stage_started: _Optional[_Union[StageStarted, _Mapping]] = ..., stage_finished: _Optional[_Union[StageFinished, _Mapping]] = ..., progress: _Optional[_Union[Progress, _Mapping]] = ..., statistics_received: _Optional[_Union[ScoreStatisticsReceived, _Mapping]] = ..., plan_decided: _Optional[_Union[PlanDecided, _Mapping]] = ..., artifacts_ready: _Optional[_Union[ArtifactsReady, _Mapping]] = ..., error: _Optional[_Union[JobError, _Mapping]] = ..., evaluated: _Optional[_Union[Evaluated, _Mapping]] = ..., notice: _Optional[_Union[JobNotice, _Mapping]] = ...) -> None: ...

class JobNotice(_message.Message):
    __slots__ = ("stage", "attempt", "message")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    stage: _common_pb2.Stage
    attempt: int
    message: str
    def __init__(self, stage: _Optional[_Union[_common_pb2.Stage, str]] = ..., attempt: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class StateChanged(_message.Message):
    __slots__ = ("to", "stage", "reason")
    FROM_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    to: _common_pb2.JobState
    stage: _common_pb2.Stage
    reason: str
    def __init__(self, to: _Optional[_Union[_common_pb2.JobState, str]] = ..., stage: _Optional[_Union[_common_pb2.Stage, str]] = ..., reason: _Optional[str] = ..., **kwargs) -> None: ...

class StageStarted(_message.Message):
    __slots__ = ("stage", "attempt", "world_size")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    WORLD_SIZE_FIELD_NUMBER: _ClassVar[int]
    stage: _common_pb2.Stage
    attempt: int
    world_size: int
    def __init__(self, stage: _Optional[_Union[_common_pb2.Stage, str]] = ..., attempt: _Optional[int] = ..., world_size: _Optional[int] = ...) -> None: ...

class StageFinished(_message.Message):
    __slots__ = ("stage", "seconds", "attempt", "metrics")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    STAGE_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    stage: _common_pb2.Stage
    seconds: float
    attempt: int
    metrics: _containers.ScalarMap[str, float]
    def __init__(self, stage: _Optional[_Union[_common_pb2.Stage, str]] = ..., seconds: _Optional[float] = ..., attempt: _Optional[int] = ..., metrics: _Optional[_Mapping[str, float]] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("stage", "epoch", "epochs", "step", "steps", "loss", "accuracy", "samples_per_second", "eta_seconds")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    ETA_SECONDS_FIELD_NUMBER: _ClassVar[int]
    stage: _common_pb2.Stage
    epoch: int
    epochs: int
    step: int
    steps: int
    loss: float
    accuracy: float
    samples_per_second: float
    eta_seconds: float
    def __init__(self, stage: _Optional[_Union[_common_pb2.Stage, str]] = ..., epoch: _Optional[int] = ..., epochs: _Optional[int] = ..., step: _Optional[int] = ..., steps: _Optional[int] = ..., loss: _Optional[float] = ..., accuracy: _Optional[float] = ..., samples_per_second: _Optional[float] = ..., eta_seconds: _Optional[float] = ...) -> None: ...

class Evaluated(_message.Message):
    __slots__ = ("stage", "epoch", "loss", "top1", "top5")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    TOP1_FIELD_NUMBER: _ClassVar[int]
    TOP5_FIELD_NUMBER: _ClassVar[int]
    stage: _common_pb2.Stage
    epoch: int
    loss: float
    top1: float
    top5: float
    def __init__(self, stage: _Optional[_Union[_common_pb2.Stage, str]] = ..., epoch: _Optional[int] = ..., loss: _Optional[float] = ..., top1: _Optional[float] = ..., top5: _Optional[float] = ...) -> None: ...

class ScoreStatisticsReceived(_message.Message):
    __slots__ = ("stage", "epoch", "units")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    UNITS_FIELD_NUMBER: _ClassVar[int]
    stage: _common_pb2.Stage
    epoch: int
    units: int
    def __init__(self, stage: _Optional[_Union[_common_pb2.Stage, str]] = ..., epoch: _Optional[int] = ..., units: _Optional[int] = ...) -> None: ...

class PlanDecided(_message.Message):
    __slots__ = ("units", "channels_before", "channels_after")
    UNITS_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_BEFORE_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_AFTER_FIELD_NUMBER: _ClassVar[int]
    units: int
    channels_before: int
    channels_after: int
    def __init__(self, units: _Optional[int] = ..., channels_before: _Optional[int] = ..., channels_after: _Optional[int] = ...) -> None: ...

class ArtifactsReady(_message.Message):
    __slots__ = ("stage", "artifacts")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    stage: _common_pb2.Stage
    artifacts: _containers.RepeatedCompositeFieldContainer[_common_pb2.Artifact]
    def __init__(self, stage: _Optional[_Union[_common_pb2.Stage, str]] = ..., artifacts: _Optional[_Iterable[_Union[_common_pb2.Artifact, _Mapping]]] = ...) -> None: ...

class JobError(_message.Message):
    __slots__ = ("stage", "attempt", "message", "retrying")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RETRYING_FIELD_NUMBER: _ClassVar[int]
    stage: _common_pb2.Stage
    attempt: int
    message: str
    retrying: bool
    def __init__(self, stage: _Optional[_Union[_common_pb2.Stage, str]] = ..., attempt: _Optional[int] = ..., message: _Optional[str] = ..., retrying: _Optional[bool] = ...) -> None: ...

class Plan(_message.Message):
    __slots__ = ("job_id", "decided_at_ms", "policy", "rate", "statistics_epoch", "units", "channels_before", "channels_after", "params_before", "params_after", "flops_before", "flops_after", "input_size", "groups", "residual", "round_to", "criterion")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    DECIDED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    RATE_FIELD_NUMBER: _ClassVar[int]
    STATISTICS_EPOCH_FIELD_NUMBER: _ClassVar[int]
    UNITS_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_BEFORE_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_AFTER_FIELD_NUMBER: _ClassVar[int]
    PARAMS_BEFORE_FIELD_NUMBER: _ClassVar[int]
    PARAMS_AFTER_FIELD_NUMBER: _ClassVar[int]
    FLOPS_BEFORE_FIELD_NUMBER: _ClassVar[int]
    FLOPS_AFTER_FIELD_NUMBER: _ClassVar[int]
    INPUT_SIZE_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    RESIDUAL_FIELD_NUMBER: _ClassVar[int]
    ROUND_TO_FIELD_NUMBER: _ClassVar[int]
    CRITERION_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    decided_at_ms: int
    policy: str
    rate: float
    statistics_epoch: int
    units: _containers.RepeatedCompositeFieldContainer[PlanUnit]
    channels_before: int
    channels_after: int
    params_before: int
    params_after: int
    flops_before: int
    flops_after: int
    input_size: int
    groups: _containers.RepeatedCompositeFieldContainer[PlanGroup]
    residual: str
    round_to: int
    criterion: str
    def __init__(self, job_id: _Optional[str] = ..., decided_at_ms: _Optional[int] = ..., policy: _Optional[str] = ..., rate: _Optional[float] = ..., statistics_epoch: _Optional[int] = ..., units: _Optional[_Iterable[_Union[PlanUnit, _Mapping]]] = ..., channels_before: _Optional[int] = ..., channels_after: _Optional[int] = ..., params_before: _Optional[int] = ..., params_after: _Optional[int] = ..., flops_before: _Optional[int] = ..., flops_after: _Optional[int] = ..., input_size: _Optional[int] = ..., groups: _Optional[_Iterable[_Union[PlanGroup, _Mapping]]] = ..., residual: _Optional[str] = ..., round_to: _Optional[int] = ..., criterion: _Optional[str] = ...) -> None: ...

class PlanGroup(_message.Message):
    __slots__ = ("writer", "channels_before", "channels_after", "members")
    WRITER_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_BEFORE_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_AFTER_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    writer: str
    channels_before: int
    channels_after: int
    members: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, writer: _Optional[str] = ..., channels_before: _Optional[int] = ..., channels_after: _Optional[int] = ..., members: _Optional[_Iterable[str]] = ...) -> None: ...

class PlanUnit(_message.Message):
    __slots__ = ("unit", "channels_before", "channels_after", "score")
    UNIT_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_BEFORE_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_AFTER_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    unit: str
    channels_before: int
    channels_after: int
    score: ScoreSummary
    def __init__(self, unit: _Optional[str] = ..., channels_before: _Optional[int] = ..., channels_after: _Optional[int] = ..., score: _Optional[_Union[ScoreSummary, _Mapping]] = ...) -> None: ...

class ScoreSummary(_message.Message):
    __slots__ = ("min", "mean", "max", "kept_min", "pruned_max", "median")
    MIN_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    KEPT_MIN_FIELD_NUMBER: _ClassVar[int]
    PRUNED_MAX_FIELD_NUMBER: _ClassVar[int]
    MEDIAN_FIELD_NUMBER: _ClassVar[int]
    min: float
    mean: float
    max: float
    kept_min: float
    pruned_max: float
    median: float
    def __init__(self, min: _Optional[float] = ..., mean: _Optional[float] = ..., max: _Optional[float] = ..., kept_min: _Optional[float] = ..., pruned_max: _Optional[float] = ..., median: _Optional[float] = ...) -> None: ...

class Worker(_message.Message):
    __slots__ = ("id", "hostname", "agent_version", "state", "devices", "cpu_cores", "slots_total", "slots_busy", "slots_free", "connected_at_ms", "last_seen_ms", "drained")
    ID_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    CPU_CORES_FIELD_NUMBER: _ClassVar[int]
    SLOTS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    SLOTS_BUSY_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FREE_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_MS_FIELD_NUMBER: _ClassVar[int]
    DRAINED_FIELD_NUMBER: _ClassVar[int]
    id: str
    hostname: str
    agent_version: str
    state: WorkerState
    devices: _containers.RepeatedCompositeFieldContainer[_common_pb2.Device]
    cpu_cores: int
    slots_total: int
    slots_busy: int
    slots_free: int
    connected_at_ms: int
    last_seen_ms: int
    drained: bool
    def __init__(self, id: _Optional[str] = ..., hostname: _Optional[str] = ..., agent_version: _Optional[str] = ..., state: _Optional[_Union[WorkerState, str]] = ..., devices: _Optional[_Iterable[_Union[_common_pb2.Device, _Mapping]]] = ..., cpu_cores: _Optional[int] = ..., slots_total: _Optional[int] = ..., slots_busy: _Optional[int] = ..., slots_free: _Optional[int] = ..., connected_at_ms: _Optional[int] = ..., last_seen_ms: _Optional[int] = ..., drained: _Optional[bool] = ...) -> None: ...
