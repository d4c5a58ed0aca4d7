# Generated from proto/scop/v1 by client/python/generate_stubs.py; do not edit.
from scop.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WorkerMessage(_message.Message):
    __slots__ = ("hello", "heartbeat", "task_event")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    TASK_EVENT_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    heartbeat: Heartbeat
    task_event: TaskEvent
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., task_event: _Optional[_Union[TaskEvent, _Mapping]] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("hostname", "agent_version", "devices", "cpu_cores", "worker_id", "running")
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    CPU_CORES_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    hostname: str
    agent_version: str
    devices: _containers.RepeatedCompositeFieldContainer[_common_pb2.Device]
    cpu_cores: int
    worker_id: str
    running: _containers.RepeatedCompositeFieldContainer[RunningRank]
    def __init__(self, hostname: _Optional[str] = ..., agent_version: _Optional[str] = ..., devices: _Optional[_Iterable[_Union[_common_pb2.Device, _Mapping]]] = ..., cpu_cores: _Optional[int] = ..., worker_id: _Optional[str] = ..., running: _Optional[_Iterable[_Union[RunningRank, _Mapping]]] = ...) -> None: ...

class RunningRank(_message.Message):
    __slots__ = ("task_id", "rank")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    rank: int
    def __init__(self, task_id: _Optional[str] = ..., rank: _Optional[int] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("time_ms", "running_task_ids", "running_complete")
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    RUNNING_TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    RUNNING_COMPLETE_FIELD_NUMBER: _ClassVar[int]
    time_ms: int
    running_task_ids: _containers.RepeatedScalarFieldContainer[str]
    running_complete: bool
    def __init__(self, time_ms: _Optional[int] = ..., running_task_ids: _Optional[_Iterable[str]] = ..., running_complete: _Optional[bool] = ...) -> None: ...

class TaskEvent(_message.Message):
    __slots__ = ("task_id", "rank", "sequence", "permanent", "progress", "statistics", "checkpoint_written", "finished", "failed", "rendezvous_ready", "evaluated", "checkpoint_fallback")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    PERMANENT_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    STATISTICS_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_WRITTEN_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    RENDEZVOUS_READY_FIELD_NUMBER: _ClassVar[int]
    EVALUATED_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FALLBACK_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    rank: int
    sequence: int
    permanent: bool
    progress: TaskProgress
    statistics: ScoreStatistics
    checkpoint_written: str
    finished: TaskFinished
    failed: str
    rendezvous_ready: str
    evaluated: TaskEvaluated
    checkpoint_fallback: str
    def __init__(self, task_id: _Optional[str] = ..., rank: _Optional[int] = ..., sequence: _Optional[int] = ..., permanent: _Optional[bool] = ..., progress: _Optional[_Union[TaskProgress, _Mapping]] = ..., statistics: _Optional[_Union[ScoreStatistics, _Mapping]] = ..., checkpoint_written: _Optional[str] = ..., finished: _Optional[_Union[TaskFinished, _Mapping]] = ..., failed: _Optional[str] = ..., rendezvous_ready: _Optional[str] = ..., evaluated: _Optional[_Union[TaskEvaluated, _Mapping]] = ..., checkpoint_fallback: _Optional[str] = ...) -> None: ...

class TaskEvaluated(_message.Message):
    __slots__ = ("epoch", "loss", "top1", "top5")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    TOP1_FIELD_NUMBER: _ClassVar[int]
    TOP5_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    loss: float
    top1: float
    top5: float
    def __init__(self, epoch: _Optional[int] = ..., loss: _Optional[float] = ..., top1: _Optional[float] = ..., top5: _Optional[float] = ...) -> None: ...

class TaskProgress(_message.Message):
    __slots__ = ("epoch", "step", "steps", "loss", "accuracy", "samples_per_second", "epochs", "step_seconds", "allreduce_seconds", "eta_seconds")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    STEP_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ALLREDUCE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ETA_SECONDS_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    step: int
    steps: int
    loss: float
    accuracy: float
    samples_per_second: float
    epochs: int
    step_seconds: float
    allreduce_seconds: float
    eta_seconds: float
    def __init__(self, epoch: _Optional[int] = ..., step: _Optional[int] = ..., steps: _Optional[int] = ..., loss: _Optional[float] = ..., accuracy: _Optional[float] = ..., samples_per_second: _Optional[float] = ..., epochs: _Optional[int] = ..., step_seconds: _Optional[float] = ..., allreduce_seconds: _Optional[float] = ..., eta_seconds: _Optional[float] = ...) -> None: ...

class ScoreStatistics(_message.Message):
    __slots__ = ("epoch", "units")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    UNITS_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    units: _containers.RepeatedCompositeFieldContainer[_common_pb2.UnitStatistics]
    def __init__(self, epoch: _Optional[int] = ..., units: _Optional[_Iterable[_Union[_common_pb2.UnitStatistics, _Mapping]]] = ...) -> None: ...

class TaskFinished(_message.Message):
    __slots__ = ("metrics", "artifacts")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    METRICS_FIELD_NUMBER: _ClassVar[int]
    ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    metrics: _containers.ScalarMap[str, float]
    artifacts: _containers.RepeatedCompositeFieldContainer[_common_pb2.Artifact]
    def __init__(self, metrics: _Optional[_Mapping[str, float]] = ..., artifacts: _Optional[_Iterable[_Union[_common_pb2.Artifact, _Mapping]]] = ...) -> None: ...

class CoordinatorMessage(_message.Message):
    __slots__ = ("assign", "cancel", "welcome", "rendezvous", "acked")
    ASSIGN_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    RENDEZVOUS_FIELD_NUMBER: _ClassVar[int]
    ACKED_FIELD_NUMBER: _ClassVar[int]
    assign: AssignTask
    cancel: CancelTask
    welcome: Welcome
    rendezvous: RendezvousRecord
    acked: EventsAcked
    def __init__(self, assign: _Optional[_Union[AssignTask, _Mapping]] = ..., cancel: _Optional[_Union[CancelTask, _Mapping]] = ..., welcome: _Optional[_Union[Welcome, _Mapping]] = ..., rendezvous: _Optional[_Union[RendezvousRecord, _Mapping]] = ..., acked: _Optional[_Union[EventsAcked, _Mapping]] = ...) -> None: ...

class EventsAcked(_message.Message):
    __slots__ = ("task_id", "sequence")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    sequence: int
    def __init__(self, task_id: _Optional[str] = ..., sequence: _Optional[int] = ...) -> None: ...

class Welcome(_message.Message):
    __slots__ = ("worker_id", "heartbeat_interval_ms")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    heartbeat_interval_ms: int
    def __init__(self, worker_id: _Optional[str] = ..., heartbeat_interval_ms: _Optional[int] = ...) -> None: ...

class AssignTask(_message.Message):
    __slots__ = ("task_id", "job_id", "stage", "spec_yaml", "rank", "world_size", "rendezvous_json", "attempt", "checkpoint_dir", "device", "plan_json", "resume")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    SPEC_YAML_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    WORLD_SIZE_FIELD_NUMBER: _ClassVar[int]
    RENDEZVOUS_JSON_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_DIR_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    PLAN_JSON_FIELD_NUMBER: _ClassVar[int]
    RESUME_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    job_id: str
    stage: _common_pb2.Stage
    spec_yaml: str
    rank: int
    world_size: int
    rendezvous_json: str
    attempt: int
    checkpoint_dir: str
    device: _common_pb2.Device
    plan_json: str
    resume: bool
    def __init__(self, task_id: _Optional[str] = ..., job_id: _Optional[str] = ..., stage: _Optional[_Union[_common_pb2.Stage, str]] = ..., spec_yaml: _Optional[str] = ..., rank: _Optional[int] = ..., world_size: _Optional[int] = ..., rendezvous_json: _Optional[str] = ..., attempt: _Optional[int] = ..., checkpoint_dir: _Optional[str] = ..., device: _Optional[_Union[_common_pb2.Device, _Mapping]] = ..., plan_json: _Optional[str] = ..., resume: _Optional[bool] = ...) -> None: ...

class CancelTask(_message.Message):
    __slots__ = ("task_id", "reason")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    reason: str
    def __init__(self, task_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class RendezvousRecord(_message.Message):
    __slots__ = ("task_id", "rendezvous_json")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    RENDEZVOUS_JSON_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    rendezvous_json: str
    def __init__(self, task_id: _Optional[str] = ..., rendezvous_json: _Optional[str] = ...) -> None: ...
