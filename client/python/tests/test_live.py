"""The client against a real `scopd standalone` with a real CPU agent: a tiny
Fashion-MNIST job submitted, watched across a coordinator restart, waited
for, its plan read and its export downloaded and loaded with PyTorch."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import scop
from scop import Client, JobState, Stage

from conftest import Scopd, tiny_spec


def client_from_config(scopd: Scopd) -> Client:
    """A client that finds everything in the config file scopd standalone wrote."""
    old = os.environ.get("SCOPCTL_CONFIG")
    os.environ["SCOPCTL_CONFIG"] = str(scopd.config)
    try:
        for name in ("SCOP_SERVER", "SCOP_TOKEN"):
            os.environ.pop(name, None)
        return Client()
    finally:
        if old is None:
            del os.environ["SCOPCTL_CONFIG"]
        else:
            os.environ["SCOPCTL_CONFIG"] = old


def test_a_job_survives_a_coordinator_restart_and_its_export_loads(
    scopd: Scopd, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client = client_from_config(scopd)
    assert client.server == scopd.server
    scopd.wait_for_workers(client)
    job = client.submit(tiny_spec(), labels={"team": "python"}, priority=3)
    assert job.state == JobState.QUEUED and job.labels == {"team": "python"} and job.priority == 3
    assert [j.id for j in client.list(labels={"team": "python"})] == [job.id]

    events = []
    restarted = False
    for event in client.watch(job.id):
        events.append(event)
        if event.kind == "progress" and not restarted:
            # The coordinator stops and comes back on the same data dir and port;
            # the watch reconnects and resumes after the last event it saw.
            scopd.restart()
            restarted = True
    assert restarted, [e.kind for e in events]
    resumes = [r.getMessage() for r in caplog.records if "resuming from event" in r.getMessage()]
    assert resumes and resumes[0].startswith(f"connection to {scopd.server} lost"), caplog.text
    sequences = [e.sequence for e in events]
    assert sequences == list(range(1, len(events) + 1)), "no gap and no duplicate"
    last = events[-1]
    assert isinstance(last.detail, scop.StateChanged) and last.detail.to_state == JobState.SUCCEEDED, last
    finished = [e.detail.stage for e in events if isinstance(e.detail, scop.StageFinished)]
    assert finished == [Stage.PRETRAIN, Stage.KNOCKOFF, Stage.DECIDE, Stage.FINETUNE, Stage.EXPORT], finished
    progress = [e.detail for e in events if isinstance(e.detail, scop.Progress)]
    assert progress and all(p.loss > 0 and p.samples_per_second > 0 for p in progress), progress

    done = client.wait(job.id, timeout=60)
    assert done.state == JobState.SUCCEEDED and done.last_sequence == events[-1].sequence

    plan = client.plan(job.id)
    assert plan.job_id == job.id and plan.rate == pytest.approx(0.45)
    assert plan.units and plan.channels_after < plan.channels_before
    assert 0 < plan.params_after < plan.params_before and 0 < plan.flops_after < plan.flops_before
    assert sum(u.channels_after for u in plan.units) == plan.channels_after

    artifacts = client.artifacts(job.id)
    kinds = {a.kind for a in artifacts.artifacts}
    assert {"torchscript", "safetensors", "arch", "model_card", "plan"} <= kinds, artifacts
    export = tmp_path / "export"
    export.mkdir()
    for kind in ("torchscript", "safetensors", "arch"):
        artifact = artifacts.by_kind(kind)
        assert artifact is not None
        written = client.download(job.id, artifact, export)
        assert written.stat().st_size == artifact.size_bytes > 0

    scripted = torch.jit.load(str(export / "model.pt"))
    model = scop.load_model(export)
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        expected = scripted(x)
        assert expected.shape == (2, 10)
        torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-5)
    client.close()


def test_a_sweep_runs_each_candidate_as_a_branch_with_its_figures(scopd: Scopd) -> None:
    """Real stages on a real agent: one knockoff, then a SCOP branch and an L1
    branch, each exported with its measured CPU latency; the candidates come
    back with the figures of their model cards."""
    client = client_from_config(scopd)
    scopd.wait_for_workers(client)
    sweep = client.submit(
        tiny_spec(name="python-sweep", sweep=[{"criterion": "scop", "rate": 0.3}, {"criterion": "l1", "rate": 0.6}])
    )
    done = client.wait(sweep.id, timeout=300)
    assert done.state == JobState.SUCCEEDED and done.stage == Stage.SWEEP

    candidates = client.candidates(sweep.id)
    assert [c.name for c in candidates] == ["scop-0.3", "l1-0.6"], candidates
    for c in candidates:
        branch = client.get(c.job_id)
        assert branch.parent_id == sweep.id and branch.candidate == c.name
        assert c.state == JobState.SUCCEEDED and c.error == "", c
        assert c.latency_ms is not None and c.latency_ms > 0, c
        assert c.flops is not None and c.dense_flops is not None and 0 < c.flops < c.dense_flops, c
        assert c.top1 is not None and 0 <= c.top1 <= 1, c
    scop_c, l1_c = candidates
    assert (scop_c.criterion, scop_c.target, l1_c.criterion, l1_c.target) == ("scop", "layer 0.3", "l1", "layer 0.6")
    # The heavier rate removes more; both start from the same dense network.
    assert l1_c.flops < scop_c.flops and scop_c.dense_flops == l1_c.dense_flops  # type: ignore[operator]
    # The knockoff ran once, in the sweep; the L1 branch scored on its own.
    assert client.plan(scop_c.job_id).criterion == "scop" and client.plan(l1_c.job_id).criterion == "l1"
    client.close()
