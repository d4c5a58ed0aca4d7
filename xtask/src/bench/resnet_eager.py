"""PyTorch eager ResNet built from a scop arch.json (dense or pruned), for baselines.

Usage: resnet_eager.py bench ARCH_JSON... --batches 1,32 --size 224 --reps 3 [--threads N] [--memory-format F]
       resnet_eager.py script MODEL_PT... --batches 1,32 --size 224 --reps 3 [--threads N] [--memory-format F]
       resnet_eager.py script MODEL_PT... ... --optimize 1
       resnet_eager.py count ARCH_JSON SIZE   (params and conv/linear MACs, via hooks)

`cargo xtask bench models` runs the first three (`script` times the TorchScript
files scop exported, loaded with torch.jit.load), contiguous or, with
`--memory-format channels_last`, with the models and inputs converted to
channels-last. `script --optimize 1` first runs PyTorch's own CPU inference
passes on each loaded module (`torch.jit.freeze`, then
`torch.jit.optimize_for_inference`: BN folded into the conv, activations moved
to oneDNN's blocked layout, ReLUs and adds fused into the convs), the
counterpart of scop's folded network on blocked tensors; `count` cross-checks scop's
analytic counts. Only torch is needed. Names and semantics mirror scop's tch
models: units are conv+BN, a pruned last unit of a block is scattered back into
the residual width unless the residual stream was pruned with it (`residual:
group`, the last unit then as wide as the block's output). At inference the
forward adds a scattered output into the block's input in place, as scop does;
while gradients are recorded it adds out of place (that input is a ReLU's
output, which autograd needs), so `xtask/bench/pytorch_train.py` trains these
networks too."""

import json
import sys
import time

import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, desc):
        super().__init__()
        self.n = len(desc["units"])
        for i, u in enumerate(desc["units"], start=1):
            setattr(self, f"conv{i}", nn.Conv2d(u["in_channels"], u["out_channels"], u["kernel"],
                                                 u["stride"], u["padding"], groups=u["groups"], bias=False))
            setattr(self, f"bn{i}", nn.BatchNorm2d(u["out_channels"]))
        s = desc.get("shortcut")
        self.downsample = None
        if s is not None:
            self.downsample = nn.Sequential(
                nn.Conv2d(s["in_channels"], s["out_channels"], 1, s["stride"], bias=False),
                nn.BatchNorm2d(s["out_channels"]))
        last = desc["units"][-1]
        kept = last.get("kept") if last["out_channels"] != desc["out_channels"] else None
        self.register_buffer("scatter", None if kept is None else torch.tensor(kept, dtype=torch.long))

    def forward(self, x):
        # In place as scop's tch blocks at inference (torchvision does the same
        # for ReLU and the add): the pruned output is added into the residual.
        identity = x if self.downsample is None else self.downsample(x)
        y = x
        for i in range(1, self.n + 1):
            y = getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(y))
            if i < self.n:
                y = torch.relu_(y)
        if self.scatter is not None and torch.is_grad_enabled():
            return torch.relu(identity.index_add(1, self.scatter, y))
        if self.scatter is not None:
            return torch.relu_(identity.index_add_(1, self.scatter, y))
        # y is a BN's output, which BN's backward does not need: in place either way.
        return torch.relu_(y.add_(identity))


class ResNet(nn.Module):
    def __init__(self, desc):
        super().__init__()
        st = desc["stem"]
        self.conv1 = nn.Conv2d(desc["in_channels"], st["out_channels"], st["kernel"], st["stride"],
                               st["padding"], bias=False)
        self.bn1 = nn.BatchNorm2d(st["out_channels"])
        self.max_pool = st["max_pool"]
        self.blocks = nn.ModuleList(Block(b) for b in desc["blocks"])
        c = desc["classifier"]
        self.fc = nn.Linear(c["in_features"], c["out_features"])

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        if self.max_pool:
            x = nn.functional.max_pool2d(x, 3, 2, 1)
        for b in self.blocks:
            x = b(x)
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def count(desc, size):
    model = ResNet(desc).eval()
    params = sum(p.numel() for p in model.parameters())
    macs = [0]

    def hook(m, inp, out):
        w = m.weight
        macs[0] += out.numel() * w.shape[1] * (w.shape[2] * w.shape[3] if w.dim() == 4 else 1)

    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.register_forward_hook(hook)
    with torch.no_grad():
        model(torch.zeros(1, desc["in_channels"], size, size))
    return params, macs[0]


def bench(paths, batches, size, reps, channels_last):
    models = []
    for p in paths:
        with open(p) as f:
            desc = json.load(f)
        models.append(ResNet(desc).eval())
    with open(paths[0]) as f:
        in_ch = json.load(f)["in_channels"]
    time_models(models, in_ch, batches, size, reps, channels_last)


def script(paths, batches, size, reps, channels_last, optimize=False):
    models = [torch.jit.load(p).eval() for p in paths]
    if optimize:
        models = [torch.jit.optimize_for_inference(torch.jit.freeze(m)) for m in models]
    time_models(models, 3, batches, size, reps, channels_last)


def time_models(models, in_ch, batches, size, reps, channels_last):
    results = {}
    cpu_results = {}
    if channels_last:
        models = [m.to(memory_format=torch.channels_last) for m in models]
    with torch.inference_mode():
        for b in batches:
            x = torch.randn(b, in_ch, size, size)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            times = [[] for _ in models]
            cpu_times = [[] for _ in models]
            for _ in range(2):  # warm-up (TorchScript's profiling executor optimises on the 2nd call)
                for m in models:
                    m(x)
            for _ in range(reps):
                for i, m in enumerate(models):  # interleaved: side by side in one run
                    t, c = time.perf_counter(), time.thread_time()
                    m(x)
                    times[i].append(time.perf_counter() - t)
                    cpu_times[i].append(time.thread_time() - c)
            results[str(b)] = [min(t) * 1e3 for t in times]
            cpu_results[str(b)] = [min(t) * 1e3 for t in cpu_times]
    print(json.dumps({"threads": torch.get_num_threads(), "best_ms": results, "best_cpu_ms": cpu_results}))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "count":
        with open(sys.argv[2]) as f:
            print(*count(json.load(f), int(sys.argv[3])))
    elif cmd in ("bench", "script"):
        args = sys.argv[2:]
        opts = {}
        paths = []
        it = iter(args)
        for a in it:
            if a.startswith("--"):
                opts[a[2:]] = next(it)
            else:
                paths.append(a)
        if "threads" in opts:
            torch.set_num_threads(int(opts["threads"]))
        layout = opts.get("memory-format", "contiguous")
        if layout not in ("contiguous", "channels_last"):
            sys.exit(f"--memory-format must be contiguous or channels_last, got {layout!r}")
        args = (paths, [int(b) for b in opts.get("batches", "1,32").split(",")],
                int(opts.get("size", "224")), int(opts.get("reps", "3")), layout == "channels_last")
        if opts.get("optimize", "0") == "1":
            if cmd != "script":
                sys.exit("--optimize applies to `script` only")
            script(*args, optimize=True)
        else:
            (bench if cmd == "bench" else script)(*args)
