"""`Client`: a thin typed wrapper of the coordinator's public `JobService`."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, TypeVar, Union

import grpc
import yaml

from . import spec as specs
from .errors import (
    InvalidArgument,
    JobCancelled,
    JobFailed,
    ScopError,
    Unreachable,
    WaitTimeout,
    from_rpc_error,
)
from .settings import PathLike, Settings
from .types import Artifacts, Artifact, Candidate, Event, Job, JobState, Plan, Worker
from .v1 import jobs_pb2, jobs_pb2_grpc

log = logging.getLogger("scop")

T = TypeVar("T")

#: Reconnection attempts in a row before a watched coordinator counts as gone,
#: and the backoff between them (doubling from the first, capped), as `scopctl watch`.
MAX_RECONNECTS = 20
BACKOFF_FIRST = 0.2
BACKOFF_MAX = 5.0
#: Seconds every unary call may take.
CALL_TIMEOUT = 60.0


class Client:
    """Talks to one coordinator.

    Arguments left out are read like `scopctl` reads them: `SCOP_SERVER` and
    `SCOP_TOKEN`, then the client config file (`$SCOPCTL_CONFIG`, else
    `~/.config/scop/scopctl.yaml`, which `scopd standalone` writes), then
    `http://127.0.0.1:7070`. `ca_cert` is the PEM file of the CA that signed
    an `https://` server's certificate; without it the system's CAs are trusted.
    `client_cert` and `client_key` (PEM files, `SCOP_CLIENT_CERT` and
    `SCOP_CLIENT_KEY`, or the config file's `client_cert`/`client_key`) are a
    certificate this client presents: a coordinator that verifies client
    certificates takes its subject CN as the user, so no token is needed.
    """

    def __init__(
        self,
        server: Optional[str] = None,
        token: Optional[str] = None,
        token_file: Optional[PathLike] = None,
        ca_cert: Optional[PathLike] = None,
        client_cert: Optional[PathLike] = None,
        client_key: Optional[PathLike] = None,
    ) -> None:
        self.settings = Settings.resolve(
            server, token, token_file, ca_cert, client_cert=client_cert, client_key=client_key
        )
        self._channel = self._connect()
        self._stub = jobs_pb2_grpc.JobServiceStub(self._channel)

    @property
    def server(self) -> str:
        return self.settings.server

    def _connect(self) -> grpc.Channel:
        options = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]
        s = self.settings
        if not s.tls:
            return grpc.insecure_channel(s.target, options=options)

        def read(path: Optional[Path]) -> Optional[bytes]:
            if path is None:
                return None
            try:
                return Path(path).read_bytes()
            except OSError as e:
                raise ScopError(f"{path}: {e.strerror or e}") from e

        credentials = grpc.ssl_channel_credentials(
            root_certificates=read(s.ca_cert), private_key=read(s.client_key), certificate_chain=read(s.client_cert)
        )
        return grpc.secure_channel(s.target, credentials, options=options)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _metadata(self) -> List[tuple]:
        return [("authorization", f"Bearer {self.settings.token}")] if self.settings.token else []

    def _call(self, method: Callable[..., T], request: object, source: Optional[str] = None) -> T:
        try:
            return method(request, metadata=self._metadata(), timeout=CALL_TIMEOUT)
        except grpc.RpcError as e:
            raise from_rpc_error(self.server, e, source) from None

    # Jobs.

    def submit(
        self,
        spec: specs.SpecInput,
        labels: Optional[Dict[str, str]] = None,
        priority: Optional[int] = None,
        request_id: Optional[str] = None,
    ) -> Job:
        """Validates the spec (a file path, YAML text or a dict) locally, resolves
        its relative paths, and submits it. Every problem raises `InvalidSpec`
        with its field path, whether this client or the coordinator found it."""
        spec_yaml, source = specs.load(spec)
        request = jobs_pb2.SubmitJobRequest(
            spec_yaml=spec_yaml, labels=labels or {}, priority=priority or 0, request_id=request_id or ""
        )
        return Job.from_proto(self._call(self._stub.SubmitJob, request, source))

    def get(self, job_id: str) -> Job:
        return Job.from_proto(self._call(self._stub.GetJob, jobs_pb2.GetJobRequest(job_id=job_id)))

    def list(
        self, state: Optional[Union[JobState, str]] = None, labels: Optional[Dict[str, str]] = None
    ) -> List[Job]:
        """Every job, newest first, optionally only those in `state` carrying all `labels`."""
        state_value = JobState(state).to_proto() if state is not None else 0
        jobs: List[Job] = []
        token = ""
        while True:
            request = jobs_pb2.ListJobsRequest(state=state_value, labels=labels or {}, page_size=1000, page_token=token)
            response = self._call(self._stub.ListJobs, request)
            jobs.extend(Job.from_proto(j) for j in response.jobs)
            token = response.next_page_token
            if not token:
                return jobs

    def branches(self, sweep_id: str) -> List[Job]:
        """The branch jobs of a sweep, one per candidate it has forked, with their specs."""
        jobs: List[Job] = []
        token = ""
        while True:
            request = jobs_pb2.ListJobsRequest(parent_id=sweep_id, full_view=True, page_size=1000, page_token=token)
            response = self._call(self._stub.ListJobs, request)
            jobs.extend(Job.from_proto(j) for j in response.jobs)
            token = response.next_page_token
            if not token:
                # Listed newest first; the branches were forked in candidate order.
                return jobs[::-1]

    def candidates(self, sweep_id: str) -> List[Candidate]:
        """A sweep's result: one `Candidate` per branch, with the exported
        network's params, FLOPs, CPU latency and top-1 before and after
        finetune read from its model card once the branch has succeeded."""
        result = []
        for branch in self.branches(sweep_id):
            prune = (yaml.safe_load(branch.spec_yaml) or {}).get("prune", {})
            policy = prune.get("policy", "layer")
            what = prune.get("target", "flops") if policy == "global" else "layer"
            card: Dict[str, object] = {}
            if branch.state == JobState.SUCCEEDED:
                card = json.loads(self.read(branch.id, "export/model-card.json"))
            metrics = card.get("metrics", {})
            assert isinstance(metrics, dict)
            result.append(
                Candidate(
                    name=branch.candidate,
                    job_id=branch.id,
                    state=branch.state,
                    criterion=str(prune.get("criterion", "scop")),
                    target=f"{what} {prune.get('rate')}",
                    params=card.get("params"),  # type: ignore[arg-type]
                    flops=card.get("flops"),  # type: ignore[arg-type]
                    dense_params=card.get("dense_params"),  # type: ignore[arg-type]
                    dense_flops=card.get("dense_flops"),  # type: ignore[arg-type]
                    latency_ms=metrics.get("latency_ms"),
                    top1_dense=metrics.get("top1_dense"),
                    top1_before_finetune=metrics.get("top1_pruned_before_finetune"),
                    top1=metrics.get("top1_pruned"),
                    error=branch.error,
                    residual=str(prune.get("residual", "scatter")),
                )
            )
        return result

    def cancel(self, job_id: str) -> Job:
        return Job.from_proto(self._call(self._stub.CancelJob, jobs_pb2.CancelJobRequest(job_id=job_id)))

    def plan(self, job_id: str) -> Plan:
        """The job's pruning plan; `NotFound` until the decide stage has run."""
        return Plan.from_proto(self._call(self._stub.GetPlan, jobs_pb2.GetPlanRequest(job_id=job_id)))

    def workers(self, include_lost: bool = False) -> List[Worker]:
        request = jobs_pb2.ListWorkersRequest(include_lost=include_lost)
        return [Worker.from_proto(w) for w in self._call(self._stub.ListWorkers, request).workers]

    def drain(self, worker_id: str) -> Worker:
        """Admin only: no new ranks go to the worker; its running ones finish."""
        request = jobs_pb2.DrainWorkerRequest(worker_id=worker_id)
        return Worker.from_proto(self._call(self._stub.DrainWorker, request))

    def undrain(self, worker_id: str) -> Worker:
        """Admin only: the worker takes new ranks again."""
        request = jobs_pb2.UndrainWorkerRequest(worker_id=worker_id)
        return Worker.from_proto(self._call(self._stub.UndrainWorker, request))

    # Files.

    def artifacts(self, job_id: str) -> Artifacts:
        response = self._call(self._stub.ListArtifacts, jobs_pb2.ListArtifactsRequest(job_id=job_id))
        return Artifacts(response.job_dir, [Artifact.from_proto(a) for a in response.artifacts])

    def read(self, job_id: str, path: Union[str, Artifact]) -> bytes:
        """One (small) file of the job, in memory; see `download` for large ones."""
        remote = path.path if isinstance(path, Artifact) else path
        request = jobs_pb2.DownloadArtifactRequest(job_id=job_id, path=remote)
        try:
            return b"".join(
                chunk.data for chunk in self._stub.DownloadArtifact(request, metadata=self._metadata(), timeout=600)
            )
        except grpc.RpcError as e:
            raise from_rpc_error(self.server, e) from None

    def download(self, job_id: str, path: Union[str, Artifact], dest: PathLike) -> Path:
        """Fetches one file of the job (a path like "export/model.pt", or an
        `Artifact`) to `dest`; a `dest` that is a directory gets the file's name.
        The file appears only once complete. Returns where it was written."""
        remote = path.path if isinstance(path, Artifact) else path
        target = Path(dest)
        if target.is_dir():
            target = target / Path(remote).name
        partial = target.with_name(target.name + ".part")
        request = jobs_pb2.DownloadArtifactRequest(job_id=job_id, path=remote)
        try:
            with open(partial, "wb") as out:
                written = 0
                total = None
                for chunk in self._stub.DownloadArtifact(request, metadata=self._metadata(), timeout=600):
                    if chunk.offset != written:
                        raise ScopError(f"{remote}: chunk at offset {chunk.offset}, expected {written}")
                    out.write(chunk.data)
                    written += len(chunk.data)
                    total = chunk.total_bytes
            if total is not None and written != total:
                raise ScopError(f"{remote}: received {written} of {total} bytes")
            os.replace(partial, target)
        except grpc.RpcError as e:
            raise from_rpc_error(self.server, e) from None
        finally:
            if partial.exists():
                partial.unlink()
        return target

    # Following a job.

    def watch(self, job_id: str, from_sequence: int = 1, timeout: Optional[float] = None) -> Iterator[Event]:
        """The job's events from `from_sequence` on, then new ones as they
        happen, ending after the event that makes the job terminal. A dropped
        connection (the coordinator restarting, say) is resumed after the last
        event seen, with backoff, so no event is missed or repeated. `timeout`
        bounds the whole watch in seconds and raises `WaitTimeout`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        next_sequence = max(from_sequence, 1)
        failures = 0
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise WaitTimeout(f"job {job_id} did not end within {timeout} s")
            request = jobs_pb2.WatchJobRequest(job_id=job_id, from_sequence=next_sequence)
            try:
                for message in self._stub.WatchJob(request, metadata=self._metadata(), timeout=remaining):
                    if message.sequence < next_sequence:
                        continue
                    failures = 0
                    next_sequence = message.sequence + 1
                    yield Event.from_proto(message)
                return
            except grpc.RpcError as e:
                code = e.code()  # type: ignore[attr-defined]
                if code == grpc.StatusCode.DEADLINE_EXCEEDED and deadline is not None:
                    raise WaitTimeout(f"job {job_id} did not end within {timeout} s") from None
                error = from_rpc_error(self.server, e)
                # UNAVAILABLE is also what a coordinator that shuts down answers.
                if not isinstance(error, Unreachable) and code != grpc.StatusCode.UNAVAILABLE:
                    raise error from None
                failures += 1
                if failures > MAX_RECONNECTS:
                    raise error from None
                delay = min(BACKOFF_FIRST * 2 ** (failures - 1), BACKOFF_MAX)
                log.warning(
                    "connection to %s lost (%s); resuming from event %d in %.1f s",
                    self.server,
                    e.details(),  # type: ignore[attr-defined]
                    next_sequence,
                    delay,
                )
                time.sleep(delay)

    def wait(self, job_id: str, timeout: Optional[float] = None) -> Job:
        """Follows the job until it ends and returns it when it succeeded;
        raises `JobFailed` or `JobCancelled` (with the reason) otherwise, and
        `WaitTimeout` after `timeout` seconds."""
        job = self.get(job_id)
        if not job.state.terminal:
            for _ in self.watch(job_id, job.last_sequence + 1, timeout=timeout):
                pass
            job = self.get(job_id)
        if job.state == JobState.SUCCEEDED:
            return job
        if job.state == JobState.FAILED:
            raise JobFailed(job)
        if job.state == JobState.CANCELLED:
            raise JobCancelled(job)
        raise InvalidArgument(f"job {job_id}: the event stream ended in state {job.state.value}")
