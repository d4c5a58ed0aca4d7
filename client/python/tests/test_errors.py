"""Every exception of the client, raised by a real coordinator (or by no
coordinator at all), with the exit code scopctl uses for the same failure."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import scop
from scop import Client

from conftest import Scopd, free_port, tiny_spec


@pytest.fixture(scope="module")
def client(scopd: Scopd) -> Client:
    return Client(server=scopd.server, token_file=scopd.token_file)


def test_unknown_jobs_are_not_found(client: Client) -> None:
    with pytest.raises(scop.NotFound, match="nope") as raised:
        client.get("nope")
    assert raised.value.exit_code == 4
    with pytest.raises(scop.NotFound):
        client.plan("nope")


def test_a_wrong_or_missing_token_is_unauthenticated(scopd: Scopd) -> None:
    with pytest.raises(scop.Unauthenticated, match=scopd.server) as raised:
        Client(server=scopd.server, token="wrong").list()
    assert raised.value.exit_code == 6
    # An empty token means none, as in scopctl.
    with pytest.raises(scop.Unauthenticated):
        Client(server=scopd.server, token="").get("x")


def test_a_closed_port_is_unreachable() -> None:
    server = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(scop.Unreachable, match=f"server {server} is unreachable") as raised:
        Client(server=server, token="t").list()
    assert raised.value.exit_code == 5


def test_bad_specs_are_invalid_locally_and_on_the_server(client: Client) -> None:
    with pytest.raises(scop.InvalidSpec) as raised:
        client.submit(tiny_spec(prune={"rate": 2}))
    assert [e.path for e in raised.value.errors] == ["prune.rate"]
    # A rule this client does not check: the server's answer names the field.
    with pytest.raises(scop.InvalidSpec) as raised:
        client.submit(tiny_spec(finetune={"epochs": 1, "batch_size": 32, "momentum": -1}))
    assert raised.value.exit_code == 7
    assert [e.path for e in raised.value.errors] == ["finetune.momentum"], raised.value


def test_malformed_requests_are_invalid_arguments(client: Client) -> None:
    with pytest.raises(scop.InvalidArgument, match="label") as raised:
        client.submit(tiny_spec(), labels={"bad key!": "x"})
    assert raised.value.exit_code == 1


def test_a_reused_request_id_with_another_spec_is_an_rpc_error(client: Client) -> None:
    key = f"python-{time.time_ns()}"
    first = client.submit(tiny_spec(), request_id=key, priority=-100)
    assert client.submit(tiny_spec(), request_id=key, priority=-100).id == first.id
    with pytest.raises(scop.RpcError) as raised:
        client.submit(tiny_spec(name="other"), request_id=key, priority=-100)
    assert raised.value.code == "ALREADY_EXISTS" and raised.value.exit_code == 1
    client.cancel(first.id)


def test_waiting_raises_cancelled_failed_and_timeout(client: Client, scopd: Scopd, tmp_path: Path) -> None:
    # Lowest priority: it stays queued behind anything else.
    queued = client.submit(tiny_spec(), priority=-1000)
    with pytest.raises(scop.WaitTimeout):
        client.wait(queued.id, timeout=0.5)
    cancelled = client.cancel(queued.id)
    assert cancelled.state == scop.JobState.CANCELLED
    with pytest.raises(scop.JobCancelled) as raised:
        client.wait(queued.id)
    assert raised.value.exit_code == 3 and raised.value.job.id == queued.id

    scopd.wait_for_workers(client)
    # Inside standalone's own data dir, which its default data roots allow: the
    # spec is accepted, and the rank finds nothing there.
    missing = scopd.dir / "data" / "no-such-data"
    spec = tiny_spec(max_restarts=0)
    spec["data"] = {**spec["data"], "root": str(missing)}  # type: ignore[dict-item]
    failing = client.submit(spec, priority=1000)
    with pytest.raises(scop.JobFailed) as failed:
        client.wait(failing.id, timeout=300)
    assert failed.value.exit_code == 3
    assert failed.value.reason and "no-such-data" in failed.value.reason, failed.value.reason
