"""Fixtures of the Python client's tests: the repository's binaries, a real
`scopd standalone` with real CPU agents, and a tiny Fashion-MNIST spec."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import pytest

ROOT = Path(__file__).resolve().parents[3]

# No server, token or config file of the machine running the tests leaks in.
for _name in ("SCOP_SERVER", "SCOP_TOKEN", "SCOPCTL_CONFIG", "XDG_CONFIG_HOME"):
    os.environ.pop(_name, None)
os.environ["HOME"] = tempfile.mkdtemp(prefix="scop-python-tests-home-")


def binary(name: str) -> Path:
    """A binary of the repository's build; `SCOP_BIN_DIR` overrides target/debug."""
    path = Path(os.environ.get("SCOP_BIN_DIR", ROOT / "target" / "debug")) / name
    if not path.exists():
        pytest.fail(f"{path} does not exist: build it first (cargo build -p scop-server -p scop-worker)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiny_spec(**overrides: object) -> Dict[str, object]:
    """One rank, a few steps per stage; every stage runs."""
    spec: Dict[str, object] = {
        "name": "python-tiny",
        "model": {"arch": "resnet20", "num_classes": 10, "in_channels": 1, "input_size": 32},
        "data": {
            "format": "idx",
            "root": str(ROOT / "data" / "fashion-mnist"),
            "train_subset": 128,
            "test_subset": 64,
            "augment": False,
            "loader_workers": 1,
        },
        "pretrain": {"epochs": 1, "batch_size": 32, "lr": 0.05, "schedule": "constant"},
        "knockoff": {"epochs": 1, "batch_size": 32},
        "prune": {"rate": 0.45},
        "finetune": {"epochs": 1, "batch_size": 32, "lr": 0.02, "schedule": "constant", "bn_recalibration_batches": 2},
        "resources": {"device": "cpu", "world_size": 1, "threads": 1},
        "output": {"log_every_steps": 1},
    }
    spec.update(overrides)
    return spec


class Scopd:
    """`scopd standalone` with one CPU agent, on a fixed public port so that a
    restart on the same data dir comes back at the same address."""

    def __init__(self, dir: Path, extra: Optional[List[str]] = None) -> None:
        self.dir = dir
        self.port = free_port()
        self.metrics_port = free_port()
        self.server = f"http://127.0.0.1:{self.port}"
        self.config = dir / "scopctl.yaml"
        self.token_file = dir / "data" / "client.token"
        self.extra = extra or []
        self.process: Optional[subprocess.Popen] = None
        self.start()

    def start(self, timeout: float = 120) -> None:
        stdout_path = self.dir / "scopd.out"
        stdout_path.write_text("")
        with open(self.dir / "scopd.log", "ab") as log, open(stdout_path, "wb") as out:
            self.process = subprocess.Popen(
                [
                    str(binary("scopd")),
                    "standalone",
                    "--workers",
                    "1",
                    "--cpu",
                    "--public-addr",
                    f"127.0.0.1:{self.port}",
                    "--worker-addr",
                    "127.0.0.1:0",
                    "--metrics-addr",
                    f"127.0.0.1:{self.metrics_port}",
                    "--data-dir",
                    str(self.dir / "data"),
                    "--client-config",
                    str(self.config),
                    *self.extra,
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=log,
                env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
            )
        # It prints its addresses, then where the agents log, once everything is up.
        deadline = time.monotonic() + timeout
        while "agent logs" not in stdout_path.read_text():
            if self.process.poll() is not None:
                raise RuntimeError(f"scopd standalone exited with {self.process.returncode}; see {self.dir}/scopd.log")
            if time.monotonic() > deadline:
                raise RuntimeError(f"scopd standalone did not start within {timeout} s; see {self.dir}/scopd.log")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def wait_for_workers(self, client: "object", count: int = 1, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            workers = client.workers()  # type: ignore[attr-defined]
            if sum(1 for w in workers if w.state == "connected") >= count:
                return
            time.sleep(0.2)
        raise AssertionError(f"no agent connected within {timeout} s")


@pytest.fixture(scope="module")
def scopd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scopd]:
    server = Scopd(tmp_path_factory.mktemp("scopd"))
    yield server
    server.stop()
