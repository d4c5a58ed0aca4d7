"""The exceptions of the client, one per thing a caller acts on.

They mirror `scopctl`'s exit codes: every exception has the `exit_code` that
`scopctl` ends with for the same failure, so a pipeline step can exit with it.

| exception                     | exit code | when                                         |
|-------------------------------|-----------|----------------------------------------------|
| `JobFailed`, `JobCancelled`   | 3         | a waited-for job ended without succeeding    |
| `NotFound`                    | 4         | no such job, plan or file                    |
| `Unreachable`                 | 5         | no coordinator answered at the address       |
| `Unauthenticated`             | 6         | the coordinator refused the token            |
| `InvalidSpec`                 | 7         | the job spec does not parse or validate      |
| anything else (`ScopError`)   | 1         | e.g. `InvalidArgument`, `RpcError`, `ConfigError`, `WaitTimeout` |
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Sequence

if TYPE_CHECKING:
    import grpc

    from .types import Job


class ScopError(Exception):
    """Base class of every error of the client."""

    exit_code: int = 1


class ConfigError(ScopError):
    """The connection settings are unreadable or inconsistent."""


class Unreachable(ScopError):
    """No coordinator answered at the address (refused, TLS failure, dropped)."""

    exit_code = 5

    def __init__(self, server: str, reason: str) -> None:
        super().__init__(f"server {server} is unreachable: {reason}")
        self.server = server
        self.reason = reason


class Unauthenticated(ScopError):
    """The coordinator refused the token (or its absence)."""

    exit_code = 6

    def __init__(self, server: str, message: str) -> None:
        super().__init__(
            f"server {server} refused the request: {message} (check token, token_file or SCOP_TOKEN)"
        )
        self.server = server
        self.message = message


class NotFound(ScopError):
    """No such job, plan or file; the message names what is missing."""

    exit_code = 4


@dataclass(frozen=True)
class FieldError:
    """One problem of a spec: the field's path (e.g. `prune.rate`) and what is wrong."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class InvalidSpec(ScopError):
    """The job spec does not parse or validate; `errors` lists every problem."""

    exit_code = 7

    def __init__(self, source: str, errors: Sequence[FieldError]) -> None:
        lines = "\n".join(f"  {e}" for e in errors)
        super().__init__(f"invalid job spec {source}:\n{lines}")
        self.source = source
        self.errors = list(errors)


class InvalidArgument(ScopError):
    """A request the coordinator refused as malformed (other than a spec)."""


class RpcError(ScopError):
    """Any other gRPC failure; `code` is the gRPC status code's name."""

    def __init__(self, server: str, code: str, message: str) -> None:
        super().__init__(f"server {server} answered {code}: {message}")
        self.server = server
        self.code = code
        self.message = message


class WaitTimeout(ScopError, TimeoutError):
    """`Client.wait` gave up before the job ended."""


class JobEnded(ScopError):
    """A waited-for job ended without succeeding; `job` is its final state."""

    exit_code = 3

    def __init__(self, job: "Job") -> None:
        super().__init__(f"job {job.id} {job.state.value}: {job.error}")
        self.job = job
        self.reason = job.error


class JobFailed(JobEnded):
    """The job failed; `reason` says why."""


class JobCancelled(JobEnded):
    """The job was cancelled; `reason` says why."""


# Messages of statuses that gRPC made itself because no answer came: the
# connection was refused, TLS failed, or the stream broke.
_TRANSPORT_MARKERS = (
    "failed to connect",
    "connection refused",
    "connection reset",
    "socket closed",
    "handshake",
    "connection lost",
    "broken pipe",
    "rst_stream",
    "goaway",
    "dns resolution failed",
    "end of tcp stream",
)


def is_transport(code_name: str, message: str) -> bool:
    """Whether a status means no coordinator answered rather than an answer."""
    lowered = message.lower()
    return code_name in ("UNAVAILABLE", "UNKNOWN", "INTERNAL") and any(m in lowered for m in _TRANSPORT_MARKERS)


def from_rpc_error(server: str, error: "grpc.RpcError", source: Optional[str] = None) -> ScopError:
    """Maps a gRPC status to the exception a caller can act on, as `scopctl` maps
    statuses to exit codes. `source` names the spec a rejected submission came from."""
    code = error.code()  # type: ignore[attr-defined]
    name = code.name if code is not None else "UNKNOWN"
    message = error.details() or ""  # type: ignore[attr-defined]
    if name in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
        return Unauthenticated(server, message)
    if name == "NOT_FOUND":
        return NotFound(message)
    if name == "INVALID_ARGUMENT":
        violations = spec_violations(message)
        if violations is not None:
            return InvalidSpec(source or "(as the server read it)", violations)
        return InvalidArgument(message)
    if is_transport(name, message):
        return Unreachable(server, message)
    return RpcError(server, name, message)


def spec_violations(message: str) -> Optional[list]:
    """The server answers a bad spec with "invalid job spec:" and one
    `field.path: reason` per line."""
    prefix = "invalid job spec:"
    if not message.startswith(prefix):
        return None
    errors = []
    for line in message[len(prefix) :].splitlines():
        line = line.strip()
        if not line:
            continue
        path, sep, reason = line.partition(": ")
        errors.append(FieldError(path, reason) if sep else FieldError("spec", line))
    return errors
