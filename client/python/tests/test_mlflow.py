"""The coordinator's MLflow tracking against a real `mlflow server` (SQLite
backend, local artifact folder served through its artifact proxy), read back
with MLflow's own client; and a tracking server that is down, which must not
touch the job."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Dict, Iterator, List

import pytest
from mlflow.tracking import MlflowClient

from scop import Client, JobState, Stage
from scop import Evaluated

from conftest import Scopd, free_port, tiny_spec

EXPERIMENT = "scop-pytest"


class MlflowServer:
    """`mlflow server` from the venv on a free loopback port, in its own
    process group so that its workers stop with it."""

    def __init__(self, dir: Path, timeout: float = 300) -> None:
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.log = dir / "mlflow.log"
        mlflow = Path(sys.executable).parent / "mlflow"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [
                    str(mlflow),
                    "server",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--workers",
                    "1",
                    "--backend-store-uri",
                    f"sqlite:///{dir / 'mlflow.db'}",
                    "--artifacts-destination",
                    str(dir / "mlartifacts"),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        # The first start creates the database's schema: wait for /health, not a guess.
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlflow server exited with {self.process.returncode}:\n{self.log.read_text()}")
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=5) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"mlflow server did not answer within {timeout} s:\n{self.log.read_text()}")
            time.sleep(0.5)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    server = MlflowServer(tmp_path_factory.mktemp("mlflow"))
    yield server
    server.stop()


def client_of(scopd: Scopd) -> Client:
    return Client(server=scopd.server, token_file=scopd.token_file)


def runs_of(mlflow: MlflowClient, job_id: str) -> list:
    experiment = mlflow.get_experiment_by_name(EXPERIMENT)
    if experiment is None:
        return []
    return mlflow.search_runs([experiment.experiment_id], filter_string=f"tags.`scop.job_id` = '{job_id}'")


def eventually(what: str, check, timeout: float = 120):  # type: ignore[no-untyped-def]
    """`check()`'s first truthy value; tracking lags the job by a pass or two."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout} s")
        time.sleep(0.5)


def failures(scopd: Scopd) -> Dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{scopd.metrics_port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    counts = {}
    for line in text.splitlines():
        if line.startswith("scop_tracking_failures_total{"):
            labels, value = line.rsplit(" ", 1)
            counts[labels.split('call="', 1)[1].split('"', 1)[0]] = float(value)
    return counts


def test_a_job_is_one_mlflow_run_with_its_params_metrics_tags_and_files(
    mlflow_server: MlflowServer, tmp_path: Path
) -> None:
    scopd = Scopd(tmp_path, extra=["--mlflow-tracking-uri", mlflow_server.uri])
    try:
        client = client_of(scopd)
        scopd.wait_for_workers(client)
        mlflow = MlflowClient(mlflow_server.uri)
        spec = tiny_spec(name="tracked", tracking={"experiment": EXPERIMENT})
        job = client.submit(spec, labels={"team": "mlops"})

        # The run exists while the job runs; a coordinator restarted then goes on with it.
        eventually("a run for the job", lambda: runs_of(mlflow, job.id))
        scopd.restart()
        client = client_of(scopd)
        done = client.wait(job.id, timeout=600)
        assert done.state == JobState.SUCCEEDED

        runs = eventually("the run ended", lambda: [r for r in runs_of(mlflow, job.id) if r.info.status == "FINISHED"])
        assert len(runs_of(mlflow, job.id)) == 1, "one run per job, across the restart"
        run = mlflow.get_run(runs[0].info.run_id)
        assert run.info.run_name == "tracked"

        params = run.data.params
        assert params["model.arch"] == "resnet20" and params["finetune.lr"] == "0.02", params
        assert params["prune.rate"] == "0.45" and params["tracking.experiment"] == EXPERIMENT, params
        assert params["knockoff.lr"] == "0.004", "the spec's defaults are parameters too"

        tags = run.data.tags
        assert tags["scop.job_id"] == job.id and tags["scop.owner"] == "admin", tags
        assert tags["scop.state"] == "succeeded" and tags["scop.label.team"] == "mlops", tags

        # Every evaluation the job reported is one point of its stage's series, the epoch as the step.
        evaluated: Dict[str, List[int]] = {}
        for event in client.watch(job.id):
            if isinstance(event.detail, Evaluated):
                evaluated.setdefault(event.detail.stage.value, []).append(event.detail.epoch)
        assert set(evaluated) == {"pretrain", "knockoff", "finetune"}, evaluated
        for stage, epochs in evaluated.items():
            for key in ("top1", "top5", "loss"):
                history = mlflow.get_metric_history(run.info.run_id, f"{stage}/{key}")
                assert sorted(m.step for m in history) == sorted(epochs), (stage, key, history)
            speed = mlflow.get_metric_history(run.info.run_id, f"{stage}/samples_per_second")
            assert sorted(m.step for m in speed) == [e for e in sorted(epochs) if e > 0], (stage, speed)
            assert all(m.value > 0 for m in speed), speed
        # finetune: the evaluation before training, then one per epoch.
        assert len(mlflow.get_metric_history(run.info.run_id, "finetune/top1")) == spec["finetune"]["epochs"] + 1

        metrics = run.data.metrics
        plan = client.plan(job.id)
        assert metrics["plan/params_before"] == plan.params_before and metrics["plan/params_after"] == plan.params_after
        assert metrics["plan/flops_before"] == plan.flops_before and metrics["plan/flops_after"] == plan.flops_after
        assert metrics["plan/params_after"] < metrics["plan/params_before"]
        assert 0 <= metrics["final/top1_pruned"] <= 1 and metrics["final/params_pruned"] == plan.params_after, metrics

        files = {f.path for f in mlflow.list_artifacts(run.info.run_id)}
        assert {"model-card.json", "plan.json", "report.json"} <= files, files
        report_path = mlflow.download_artifacts(run.info.run_id, "report.json", str(tmp_path))
        report = json.loads(Path(report_path).read_text())
        assert report["job_id"] == job.id and report["state"] == "succeeded", report
        assert set(report["stages"]) >= {Stage.KNOCKOFF.value, Stage.FINETUNE.value, Stage.EXPORT.value}, report
        print(
            f"\nMLflow run {run.info.run_id} of job {job.id}: status {run.info.status}; "
            f"metrics {sorted(metrics)}; finetune/top1 history "
            f"{[(m.step, round(m.value, 4)) for m in mlflow.get_metric_history(run.info.run_id, 'finetune/top1')]}"
        )
        assert failures(scopd) == {c: 0.0 for c in ("experiment", "run", "log", "artifact", "end")}
    finally:
        scopd.stop()


def test_a_tracking_server_that_is_down_fails_no_job_and_is_counted(tmp_path: Path) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    scopd = Scopd(tmp_path, extra=["--mlflow-tracking-uri", nowhere])
    try:
        client = client_of(scopd)
        scopd.wait_for_workers(client)
        spec = tiny_spec()
        job = client.submit(spec)
        assert client.wait(job.id, timeout=600).state == JobState.SUCCEEDED
        counted = eventually("a counted tracking failure", lambda: failures(scopd).get("experiment", 0) > 0)
        assert counted
        assert "tracking: MLflow call failed" in (tmp_path / "scopd.log").read_text()
    finally:
        scopd.stop()
