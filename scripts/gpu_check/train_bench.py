"""ResNet-50 training throughput and peak GPU memory of `scripts/gpu-check`:
scop's `bench-gpu-train` against `torch_resnet50.py`, one after the other on the
same GPU, both measured by nvidia-smi the same way."""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
BATCH, SIZE = 256, 224
MIN_SPEED_RATIO, MAX_MEMORY_RATIO = 0.95, 1.1


def _json(text):
    for line in reversed(text.strip().splitlines()):
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            continue
    return None


def run(worker, env, steps, run_measured):
    """Rows (check, ok, detail) and a note, or None."""
    common = ["--batch", str(BATCH), "--steps", str(steps), "--warmup", "10"]
    ours, ours_mib = run_measured(
        [worker, "bench-gpu-train", "--arch", "resnet50", "--input-size", str(SIZE), *common], env, 240)
    theirs, theirs_mib = run_measured(
        [sys.executable, os.path.join(HERE, "torch_resnet50.py"), "--size", str(SIZE), *common], env, 240)
    a, b = _json(ours.stdout), _json(theirs.stdout)
    name = f"resnet-50 training, batch {BATCH}, bf16, channels-last"
    if a is None or ours.returncode != 0:
        return [(name, False, f"scop-worker bench-gpu-train failed: {ours.stderr.strip()[-300:]}")], None
    if b is None or theirs.returncode != 0:
        return [(name, False, f"the PyTorch baseline failed: {theirs.stderr.strip()[-300:]}")], None
    ratio = a["images_per_second"] / b["images_per_second"]
    rows = [(f"{name}: speed", ratio >= MIN_SPEED_RATIO,
             f"ours {a['images_per_second']:.0f} img/s, PyTorch eager {b['images_per_second']:.0f} img/s, "
             f"ratio {ratio:.3f} (goal >= {MIN_SPEED_RATIO})")]
    if ours_mib and theirs_mib:
        mem = ours_mib / theirs_mib
        rows.append((f"{name}: peak memory", mem <= MAX_MEMORY_RATIO,
                     f"ours {ours_mib} MiB, PyTorch {theirs_mib} MiB (nvidia-smi, GPU 0 above idle), "
                     f"ratio {mem:.3f} (goal <= {MAX_MEMORY_RATIO})"))
    else:
        rows.append((f"{name}: peak memory", False, "nvidia-smi reported no memory for the processes"))
    return rows, None
