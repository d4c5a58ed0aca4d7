"""PyTorch eager baseline of `scripts/gpu-check`: ResNet-50 training steps, bf16
autocast, channels-last, SGD Nesterov, a random batch kept on the GPU; the loss
is read back every step, as scop's epoch loop does. Prints one JSON object.
`--device cpu` runs the same steps on the CPU (the script's rehearsal)."""

import argparse
import json
import time

import torch
from torch import nn


class Bottleneck(nn.Module):
    """torchvision's ResNet-50 block (stride on the 3x3 conv)."""

    def __init__(self, cin, width, stride):
        super().__init__()
        cout = width * 4
        self.conv1, self.bn1 = nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width)
        self.conv3, self.bn3 = nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = torch.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return torch.relu(y + (x if self.downsample is None else self.downsample(x)))


def resnet50(classes):
    try:
        import torchvision

        return torchvision.models.resnet50(num_classes=classes)
    except ImportError:
        pass
    layers, cin = [], 64
    for width, blocks, stride in [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]:
        for i in range(blocks):
            layers.append(Bottleneck(cin, width, stride if i == 0 else 1))
            cin = width * 4
    return nn.Sequential(
        nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, 1), *layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, classes))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    a = p.parse_args()
    dev = a.device
    torch.backends.cudnn.benchmark = True
    model = resnet50(1000).to(dev).to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
    x = torch.randn(a.batch, 3, a.size, a.size, device=dev).to(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (a.batch,), device=dev)
    loss_fn = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev, dtype=torch.bfloat16):
            loss = loss_fn(model(x).float(), y)
        loss.backward()
        opt.step()
        return loss.item()

    def synchronize():
        if dev == "cuda":
            torch.cuda.synchronize()

    for _ in range(a.warmup):
        step()
    synchronize()
    start = time.perf_counter()
    for _ in range(a.steps):
        step()
    synchronize()
    seconds = (time.perf_counter() - start) / a.steps
    peak = torch.cuda.max_memory_allocated() / 2**20 if dev == "cuda" else None
    print(json.dumps({"seconds_per_step": seconds, "images_per_second": a.batch / seconds,
                      "max_memory_allocated_mib": peak}))


if __name__ == "__main__":
    main()
