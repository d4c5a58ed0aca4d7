# Generated from proto/scop/v1 by client/python/generate_stubs.py; do not edit.
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_QUEUED: _ClassVar[JobState]
    JOB_STATE_RUNNING: _ClassVar[JobState]
    JOB_STATE_SUCCEEDED: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]
    JOB_STATE_CANCELLED: _ClassVar[JobState]

class Stage(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STAGE_UNSPECIFIED: _ClassVar[Stage]
    STAGE_PRETRAIN: _ClassVar[Stage]
    STAGE_KNOCKOFF: _ClassVar[Stage]
    STAGE_DECIDE: _ClassVar[Stage]
    STAGE_FINETUNE: _ClassVar[Stage]
    STAGE_EXPORT: _ClassVar[Stage]
    STAGE_SCORE: _ClassVar[Stage]
    STAGE_SWEEP: _ClassVar[Stage]
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_QUEUED: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_SUCCEEDED: JobState
JOB_STATE_FAILED: JobState
JOB_STATE_CANCELLED: JobState
STAGE_UNSPECIFIED: Stage
STAGE_PRETRAIN: Stage
STAGE_KNOCKOFF: Stage
STAGE_DECIDE: Stage
STAGE_FINETUNE: Stage
STAGE_EXPORT: Stage
STAGE_SCORE: Stage
STAGE_SWEEP: Stage

class UnitStatistics(_message.Message):
    __slots__ = ("unit", "beta", "gamma_abs", "score")
    UNIT_FIELD_NUMBER: _ClassVar[int]
    BETA_FIELD_NUMBER: _ClassVar[int]
    GAMMA_ABS_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    unit: str
    beta: _containers.RepeatedScalarFieldContainer[float]
    gamma_abs: _containers.RepeatedScalarFieldContainer[float]
    score: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, unit: _Optional[str] = ..., beta: _Optional[_Iterable[float]] = ..., gamma_abs: _Optional[_Iterable[float]] = ..., score: _Optional[_Iterable[float]] = ...) -> None: ...

class Device(_message.Message):
    __slots__ = ("kind", "index", "name", "memory_bytes")
    KIND_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    kind: str
    index: int
    name: str
    memory_bytes: int
    def __init__(self, kind: _Optional[str] = ..., index: _Optional[int] = ..., name: _Optional[str] = ..., memory_bytes: _Optional[int] = ...) -> None: ...

class Artifact(_message.Message):
    __slots__ = ("kind", "path", "size_bytes", "stage")
    KIND_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    kind: str
    path: str
    size_bytes: int
    stage: Stage
    def __init__(self, kind: _Optional[str] = ..., path: _Optional[str] = ..., size_bytes: _Optional[int] = ..., stage: _Optional[_Union[Stage, str]] = ...) -> None: ...
