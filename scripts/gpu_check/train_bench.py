"""ResNet-50 training throughput and peak memory of `scripts/gpu-check`:
scop's `bench-gpu-train` against `torch_resnet50.py`, one after the other, both
measured the same way (GPU memory through nvidia-smi; in the CPU rehearsal,
each process's peak resident set)."""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
MIN_SPEED_RATIO, MAX_MEMORY_RATIO = 0.95, 1.1


def _json(text):
    for line in reversed(text.strip().splitlines()):
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            continue
    return None


def run(worker, env, mode, run_measured):
    """Rows (check, ok or None when it could not run, detail, "goal") and a note, or None."""
    common = ["--batch", str(mode.bench_batch), "--steps", str(mode.bench_steps), "--warmup", str(mode.bench_warmup)]
    ours_cmd = [worker, "bench-gpu-train", "--arch", "resnet50", "--input-size", str(mode.bench_size), *common]
    if mode.rehearsal:
        ours_cmd.append("--cpu")
    theirs_cmd = [sys.executable, os.path.join(HERE, "torch_resnet50.py"), "--size", str(mode.bench_size),
                  "--device", mode.device, *common]
    ours, ours_mib = run_measured(ours_cmd, env, mode.timeout_s)
    theirs, theirs_mib = run_measured(theirs_cmd, env, mode.timeout_s)
    a, b = _json(ours.stdout), _json(theirs.stdout)
    name = f"resnet-50 training, batch {mode.bench_batch} at {mode.bench_size} px, bf16, channels-last"
    if a is None or ours.returncode != 0:
        return [(name, None, f"scop-worker bench-gpu-train failed: {ours.stderr.strip()[-300:]}", "goal")], None
    if b is None or theirs.returncode != 0:
        return [(name, None, f"the PyTorch baseline failed: {theirs.stderr.strip()[-300:]}", "goal")], None
    ratio = a["images_per_second"] / b["images_per_second"]
    rows = [(f"{name}: speed", ratio >= MIN_SPEED_RATIO,
             f"ours {a['images_per_second']:.1f} img/s, PyTorch eager {b['images_per_second']:.1f} img/s, "
             f"ratio {ratio:.3f} (goal >= {MIN_SPEED_RATIO})", "goal")]
    how = "peak resident set" if mode.rehearsal else "nvidia-smi, GPU 0 above idle"
    if ours_mib and theirs_mib:
        mem = ours_mib / theirs_mib
        rows.append((f"{name}: peak memory", mem <= MAX_MEMORY_RATIO,
                     f"ours {ours_mib} MiB, PyTorch {theirs_mib} MiB ({how}), "
                     f"ratio {mem:.3f} (goal <= {MAX_MEMORY_RATIO})", "goal"))
    else:
        rows.append((f"{name}: peak memory", None, f"no memory figure for the processes ({how})", "goal"))
    return rows, None
