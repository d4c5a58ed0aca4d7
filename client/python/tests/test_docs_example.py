"""docs/python.md's examples as a new user runs them: `pip install
./client/python` into a fresh virtual environment, then the notebook example
and the pipeline step, verbatim, against `scopd standalone` (with the example
spec cut down to a tiny schedule, as `cargo xtask check-docs` does)."""

from __future__ import annotations

import os
import re
import subprocess
import venv
from pathlib import Path
from typing import List

import yaml

from conftest import ROOT, Scopd, tiny_spec

DOC = ROOT / "docs" / "python.md"


def python_block_under(heading: str) -> str:
    """The first ```python block after the `## heading` line of docs/python.md."""
    text = DOC.read_text()
    start = text.index(f"\n## {heading}\n")
    match = re.compile(r"```python\n(.*?)```", re.S).search(text, start)
    assert match is not None, f"docs/python.md has no python block under '## {heading}'"
    return match.group(1)


def run(command: List[str], **kwargs: object) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    assert done.returncode == 0, f"{command} exited with {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


def test_the_docs_examples_run_from_a_fresh_venv(scopd: Scopd, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    # The registry's wheels, cached under target/ between runs; nothing else of this checkout's venv.
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "PIP_CACHE_DIR": str(ROOT / "target" / "pip-cache"),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    run([str(python), "-m", "pip", "install", "--quiet", str(ROOT / "client" / "python")], env=env)
    # The fresh venv has the package and its dependencies, and not this test's packages.
    probe = "import scop, importlib.util as u; print(scop.__file__, u.find_spec('torch') is None)"
    where, no_torch = run([str(python), "-c", probe], env=env).stdout.split()
    assert where.startswith(str(env_dir)) and no_torch == "True", (where, no_torch)

    work = tmp_path / "work"
    (work / "examples").mkdir(parents=True)
    (work / "examples" / "fashion-mnist-resnet20.yaml").write_text(yaml.safe_dump(tiny_spec()))
    script = "\n".join(
        [
            python_block_under("In a notebook"),
            python_block_under("In a pipeline step"),
            'print("pipeline job", prune("examples/fashion-mnist-resnet20.yaml", "out"))',
        ]
    )
    client_env = {**env, "SCOPCTL_CONFIG": str(scopd.config)}
    done = run([str(python), "-c", script], cwd=work, env=client_env, timeout=1200)
    assert "params " in done.stdout and "epoch 1: top-1" in done.stdout, done.stdout
    assert "pipeline job " in done.stdout, done.stdout
    downloaded = {p.name for p in (work / "out").rglob("*") if p.is_file()}
    assert {"model.pt", "model.safetensors", "arch.json", "model-card.json"} <= downloaded, downloaded
