"""Baseline of `cargo xtask bench loader`, and the JPEG folder it reads.

    torchvision_loader.py generate ROOT --images N --classes C
    torchvision_loader.py measure ROOT --workers W --batch B --size S --batches K [--eval]

`generate` writes N photo-sized JPEGs (sizes 400-640 x 300-480, smooth colour
fields with noise, quality 90) under ROOT/train/<class>/, once. `measure` times
torchvision's ImageFolder + DataLoader (RandomResizedCrop, RandomHorizontalFlip,
ToTensor, Normalize; with --eval: Resize(S*256/224), CenterCrop(S), ToTensor,
Normalize) with W worker processes, pulling K batches as fast as it can, and
prints one JSON object."""

import argparse
import json
import os
import time

import numpy as np
import torch
from PIL import Image


def generate(root, images, classes):
    rng = np.random.default_rng(0)
    done = os.path.join(root, f".generated-{images}-{classes}")
    if os.path.exists(done):
        return
    for i in range(images):
        cls = os.path.join(root, "train", f"class{i % classes:02d}")
        os.makedirs(cls, exist_ok=True)
        h, w = int(rng.integers(300, 481)), int(rng.integers(400, 641))
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        base = rng.uniform(0, 255, 3).astype(np.float32)
        slope = rng.uniform(-0.4, 0.4, (3, 2)).astype(np.float32)
        img = np.stack([base[c] + slope[c, 0] * yy + slope[c, 1] * xx for c in range(3)], axis=-1)
        img += rng.normal(0, 18, img.shape).astype(np.float32)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(
            os.path.join(cls, f"img{i:05d}.jpg"), quality=90)
    open(done, "w").close()


def measure(root, workers, batch, size, batches, evaluation):
    from torchvision import datasets, transforms

    torch.set_num_threads(1)
    normalise = [transforms.ToTensor(), transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])]
    if evaluation:
        tf = transforms.Compose([transforms.Resize(size * 256 // 224), transforms.CenterCrop(size), *normalise])
    else:
        tf = transforms.Compose([transforms.RandomResizedCrop(size), transforms.RandomHorizontalFlip(), *normalise])
    data = datasets.ImageFolder(os.path.join(root, "train"), tf)
    loader = torch.utils.data.DataLoader(data, batch_size=batch, shuffle=True, num_workers=workers,
                                         drop_last=True, persistent_workers=True)
    start = time.perf_counter()
    taken = images = 0
    while taken < batches:
        for x, _ in loader:
            images += x.shape[0]
            taken += 1
            if taken == batches:
                break
    seconds = time.perf_counter() - start
    print(json.dumps({"images": images, "seconds": seconds, "images_per_second": images / seconds,
                      "workers": workers}))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["generate", "measure"])
    p.add_argument("root")
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batches", type=int, default=30)
    p.add_argument("--eval", action="store_true", help="the evaluation transform (Resize, CenterCrop)")
    a = p.parse_args()
    if a.mode == "generate":
        generate(a.root, a.images, a.classes)
    else:
        measure(a.root, a.workers, a.batch, a.size, a.batches, a.eval)


if __name__ == "__main__":
    main()
