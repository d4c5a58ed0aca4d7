"""The short Fashion-MNIST job of `scripts/gpu-check`, and PyTorch's evaluation of its export."""

import gzip
import json
import os
import subprocess
import time

import torch

SPEC = """name: gpu-check
model: {{ arch: resnet20, num_classes: 10, in_channels: 1, input_size: 28 }}
data: {{ format: idx, root: {data}, mean: [0.2860], std: [0.3530], loader_workers: 6 }}
pretrain: {{ epochs: 3, batch_size: 256, lr: 0.2, schedule: cosine, amp: bf16 }}
knockoff: {{ epochs: 1, batch_size: 256 }}
prune: {{ rate: 0.45, policy: layer, round_to: 8 }}
finetune: {{ epochs: 2, batch_size: 256, lr: 0.05, schedule: cosine, amp: bf16, bn_recalibration_batches: 20 }}
resources: {{ device: cuda, world_size: 1, backend: nccl, memory_format: channels_last, threads: 8 }}
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


def evaluate_export(model_path, data):
    """Top-1 (in %) of the TorchScript export on the whole test set, on the GPU."""
    model = torch.jit.load(model_path, map_location="cuda").eval()
    images = read_idx(os.path.join(data, "t10k-images-idx3-ubyte.gz")).float().div_(255.0)
    images = images.sub_(0.2860).div_(0.3530).unsqueeze(1)
    labels = read_idx(os.path.join(data, "t10k-labels-idx1-ubyte.gz")).long()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(labels), 1000):
            x = images[start : start + 1000].cuda()
            correct += (model(x).argmax(1).cpu() == labels[start : start + 1000]).sum().item()
    return 100.0 * correct / len(labels)


def run(worker, data, workdir, env):
    """Rows (check, ok, detail) for the job and the export's evaluation."""
    out = os.path.join(workdir, "job")
    spec = os.path.join(workdir, "gpu-check.yaml")
    with open(spec, "w") as f:
        f.write(SPEC.format(data=data, out=out))
    started = time.monotonic()
    try:
        job = subprocess.run([worker, "run", spec], env=env, capture_output=True, text=True, timeout=240)
    except subprocess.TimeoutExpired:
        return [("job on cuda (nccl, bf16, channels-last)", False, "did not finish within 240 s")]
    seconds = time.monotonic() - started
    if job.returncode != 0:
        lines = [l for l in job.stderr.strip().splitlines() if l.strip()]
        return [("job on cuda (nccl, bf16, channels-last)", False, lines[-1] if lines else "failed")]
    events = []
    with open(os.path.join(out, "metrics.jsonl")) as f:
        for line in f:
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    finetune = [e for e in events if e.get("type") == "evaluated" and e.get("stage") == "finetune"]
    if not finetune:
        return [("job on cuda (nccl, bf16, channels-last)", False, "no finetune evaluation in metrics.jsonl")]
    reported = 100.0 * finetune[-1]["top1"]
    rows = [("job on cuda (nccl, bf16, channels-last)", True,
             f"pretrain 3 + knockoff 1 + finetune 2 epochs in {seconds:.0f} s, finetuned top-1 {reported:.2f} %")]
    model = os.path.join(out, "export", "model.pt")
    try:
        theirs = evaluate_export(model, data)
    except Exception as e:  # noqa: BLE001 - any failure is the check's result
        return rows + [("export evaluated by PyTorch (GPU)", False, f"{type(e).__name__}: {e}")]
    gap = abs(theirs - reported)
    rows.append(("export evaluated by PyTorch (GPU)", gap <= TOLERANCE,
                 f"TorchScript top-1 {theirs:.2f} % vs job {reported:.2f} % (gap {gap:.2f} pt, limit {TOLERANCE})"))
    return rows
