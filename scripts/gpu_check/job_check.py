"""The short Fashion-MNIST job of `scripts/gpu-check`, and PyTorch's evaluation of its export.

On the GPU: `device: cuda`, `backend: nccl` (a one-rank communicator), `amp:
bf16`, channels-last, the whole data set, the export evaluated on the GPU. In
the CPU rehearsal the same job runs with `device: cpu`, `backend: tcp` on a
subset, and the export is evaluated on the CPU, on the same test samples the
job evaluated."""

import gzip
import json
import os
import subprocess
import time

import torch

SPEC = """name: gpu-check
model: {{ arch: resnet20, num_classes: 10, in_channels: 1, input_size: 28 }}
data: {{ format: idx, root: {data}, mean: [0.2860], std: [0.3530], loader_workers: 6{sizes} }}
pretrain: {{ epochs: {e0}, batch_size: 256, lr: 0.2, schedule: cosine, amp: bf16 }}
knockoff: {{ epochs: {e1}, batch_size: 256 }}
prune: {{ rate: 0.45, policy: layer, round_to: 8 }}
finetune: {{ epochs: {e2}, batch_size: 256, lr: 0.05, schedule: cosine, amp: bf16, bn_recalibration_batches: 20 }}
resources: {{ device: {device}, world_size: 1, backend: {backend}, memory_format: channels_last, threads: 8 }}
output: {{ dir: {out}, log_every_steps: 100 }}
seed: 1
"""

# How far PyTorch's top-1 on the export may be from the job's own (points).
TOLERANCE = 0.5


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return torch.frombuffer(bytearray(data[4 + 4 * dims :]), dtype=torch.uint8).reshape(shape)


def evaluate_export(model_path, data, device, limit):
    """Top-1 (in %) of the TorchScript export on the first `limit` test samples (all if None)."""
    model = torch.jit.load(model_path, map_location=device).eval()
    images = read_idx(os.path.join(data, "t10k-images-idx3-ubyte.gz")).float().div_(255.0)
    images = images.sub_(0.2860).div_(0.3530).unsqueeze(1)
    labels = read_idx(os.path.join(data, "t10k-labels-idx1-ubyte.gz")).long()
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    correct = 0
    with torch.no_grad():
        for start in range(0, len(labels), 1000):
            x = images[start : start + 1000].to(device)
            correct += (model(x).argmax(1).cpu() == labels[start : start + 1000]).sum().item()
    return 100.0 * correct / len(labels)


def test_limit(sizes):
    """The `test_subset` in the job's extra data fields, if any."""
    for field in sizes.split(","):
        name, _, value = field.partition(":")
        if name.strip() == "test_subset":
            return int(value)
    return None


def run(worker, data, workdir, env, mode):
    """Rows (check, ok or None when it could not run, detail, "check") for the job and the export."""
    name = f"job on {mode.device} ({mode.backend}, bf16, channels-last)"
    out = os.path.join(workdir, "job")
    spec = os.path.join(workdir, "gpu-check.yaml")
    e0, e1, e2 = mode.epochs
    with open(spec, "w") as f:
        f.write(SPEC.format(data=data, out=out, sizes=mode.job_sizes, e0=e0, e1=e1, e2=e2,
                            device=mode.device, backend=mode.backend))
    started = time.monotonic()
    try:
        job = subprocess.run([worker, "run", spec], env=env, capture_output=True, text=True,
                             timeout=mode.timeout_s)
    except subprocess.TimeoutExpired:
        return [(name, None, f"did not finish within {mode.timeout_s} s", "check")]
    seconds = time.monotonic() - started
    if job.returncode != 0:
        lines = [l for l in job.stderr.strip().splitlines() if l.strip()]
        return [(name, None, lines[-1] if lines else "failed", "check")]
    events = []
    with open(os.path.join(out, "metrics.jsonl")) as f:
        for line in f:
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    finetune = [e for e in events if e.get("type") == "evaluated" and e.get("stage") == "finetune"]
    if not finetune:
        return [(name, None, "no finetune evaluation in metrics.jsonl", "check")]
    reported = 100.0 * finetune[-1]["top1"]
    rows = [(name, True,
             f"pretrain {e0} + knockoff {e1} + finetune {e2} epochs in {seconds:.0f} s, "
             f"finetuned top-1 {reported:.2f} %", "check")]
    model = os.path.join(out, "export", "model.pt")
    check = f"export evaluated by PyTorch ({mode.device})"
    try:
        theirs = evaluate_export(model, data, mode.device, test_limit(mode.job_sizes))
    except Exception as e:  # noqa: BLE001 - any failure is the check's result
        return rows + [(check, None, f"{type(e).__name__}: {e}", "check")]
    gap = abs(theirs - reported)
    rows.append((check, gap <= TOLERANCE,
                 f"TorchScript top-1 {theirs:.2f} % vs job {reported:.2f} % (gap {gap:.2f} pt, limit {TOLERANCE})",
                 "check"))
    return rows
