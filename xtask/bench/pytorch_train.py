"""PyTorch-eager baseline for `cargo xtask bench train`.

Times training steps of a CIFAR-style ResNet-20 (three stages of BasicBlocks,
16/32/64 channels, 1x1 conv + BN shortcuts) with SGD Nesterov, and the SCOP
knockoff step with the reference's semantics (batch [real; knockoff], only the
per-channel beta trainable, Adam + clamp). Prints one JSON object per mode.
"""

import argparse
import json
import time

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
    args = p.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    layout = torch.channels_last if args.channels_last else torch.contiguous_format
    x = torch.randn(args.batch, args.in_channels, args.size, args.size).contiguous(memory_format=layout)
    y = torch.randint(0, 10, (args.batch,))

    for mode in args.modes.split(","):
        model = ResNet20(args.in_channels, 10).train().to(memory_format=layout)
        if mode == "plain":
            opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)

            def step():
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(model(x), y).backward()
                opt.step()

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
