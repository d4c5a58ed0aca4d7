"""PyTorch-eager baseline for `cargo xtask bench train`.

Times training steps of a CIFAR-style ResNet-20 (three stages of BasicBlocks,
16/32/64 channels, 1x1 conv + BN shortcuts) with SGD Nesterov, and the SCOP
knockoff step with the reference's semantics (batch [real; knockoff], only the
per-channel beta trainable, Adam + clamp). Prints one JSON object per mode.

With `--arch-json A.json,B.json,...` it times instead the plain step of each
network scop describes there (dense or pruned, from `scop-worker bench-train
--arch-dir`), built by `xtask/src/bench/resnet_eager.py`, one JSON object per
file: PyTorch's pruned-vs-dense speed-up beside scop's.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F


class Unit(nn.Module):
    """conv + BN, optionally with the knockoff mixing of SCOP in training."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.beta = None

    def forward(self, x):
        y = self.conv(x)
        if self.beta is not None and self.training:
            real, knock = y.chunk(2)
            y = torch.cat([self.beta * real + (1 - self.beta) * knock, knock])
        return self.bn(y)


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.u1 = Unit(cin, cout, stride)
        self.u2 = Unit(cout, cout, 1)
        self.short = None
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.u1(x))
        out = self.u2(out)
        return F.relu(out + (x if self.short is None else self.short(x)))


class ResNet20(nn.Module):
    def __init__(self, in_channels, classes):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        layers, cin = [], 16
        for cout, stride in [(16, 1), (32, 2), (64, 2)]:
            for i in range(3):
                layers.append(Block(cin, cout, stride if i == 0 else 1))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(64, classes)

    def forward(self, x):
        x = F.relu(self.bn(self.conv(x)))
        x = self.layers(x)
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def units(model):
    return [m for m in model.modules() if isinstance(m, Unit)]


def plain_step(model, x, y):
    """One SGD Nesterov step of `model` on the batch (x, y), as a closure."""
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    return step


def time_steps(step, warmup, steps):
    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--in-channels", type=int, default=1)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--modes", default="plain,knockoff")
    p.add_argument("--channels-last", action="store_true", help="train with channels-last tensors")
    p.add_argument("--arch-json", default="", help="comma-separated scop arch.json files: time their plain steps")
    args = p.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    layout = torch.channels_last if args.channels_last else torch.contiguous_format
    x = torch.randn(args.batch, args.in_channels, args.size, args.size).contiguous(memory_format=layout)
    y = torch.randint(0, 10, (args.batch,))

    if args.arch_json:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src" / "bench"))
        from resnet_eager import ResNet

        for path in args.arch_json.split(","):
            with open(path) as f:
                model = ResNet(json.load(f)).train().to(memory_format=layout)
            seconds = time_steps(plain_step(model, x, y), args.warmup, args.steps)
            print(json.dumps({"mode": "plain", "arch": path, "seconds_per_step": seconds,
                              "images_per_second": args.batch / seconds, "channels_last": args.channels_last}))
        return

    for mode in args.modes.split(","):
        model = ResNet20(args.in_channels, 10).train().to(memory_format=layout)
        if mode == "plain":
            step = plain_step(model, x, y)
        else:
            for p_ in model.parameters():
                p_.requires_grad_(False)
            betas = []
            for u in units(model):
                u.beta = nn.Parameter(torch.full((1, u.conv.out_channels, 1, 1), 0.5))
                betas.append(u.beta)
            opt = torch.optim.Adam(betas, lr=0.004, betas=(0.5, 0.9))

            def step():
                knock = x[torch.randperm(args.batch)]
                opt.zero_grad(set_to_none=True)
                logits = model(torch.cat([x, knock]))
                F.cross_entropy(logits[: args.batch], y).backward()
                opt.step()
                with torch.no_grad():
                    for b in betas:
                        b.clamp_(0, 1)

        seconds = time_steps(step, args.warmup, args.steps)
        print(json.dumps({"mode": mode, "seconds_per_step": seconds, "images_per_second": args.batch / seconds,
                          "threads": torch.get_num_threads(), "channels_last": args.channels_last}))


if __name__ == "__main__":
    main()
