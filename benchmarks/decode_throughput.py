"""How fast images reach the model: decoding, the decoded-tensor cache and augmentation.

    python benchmarks/decode_throughput.py --data /tmp/cifar10          # an ImageFolder tree
    python benchmarks/decode_throughput.py --data /tmp/cifar10 --json out.json

Reports images per second for

1. first decode: ``load_dataset`` on a cold cache (every file opened and decoded by Pillow);
2. cache read: ``load_dataset`` again, reading the ``.safetensors`` cache the first run wrote;
3. per-sample transforms: a ``DataLoader`` (no workers) over the in-memory dataset with
   ``build_transform(train=True)`` (pad-and-crop + flip + normalise, one image at a time);
4. ``BatchAugment``: the same augmentation applied to whole uint8 batches on the CPU.

The cache is written to a fresh temporary folder (``ARCHZOO_CACHE``), so nothing is reused from
earlier runs and nothing is left behind.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time


def _rate(n: int, seconds: float) -> dict:
    return {"images": n, "seconds": round(seconds, 3), "images_per_s": round(n / seconds, 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="an ImageFolder tree (or any load_dataset spec)")
    p.add_argument("--input-size", type=int, default=None, help="model input size (default: the images' size)")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--aug-images", type=int, default=10_000, help="images pushed through each augmentation path")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--json", default=None, help="also write the results to this file")
    args = p.parse_args(argv)

    import torch
    from torch.utils.data import DataLoader

    if args.threads:
        torch.set_num_threads(args.threads)
    from archzoo.data import build_transform, load_dataset
    from archzoo.data.gpu import BatchAugment

    results: dict = {
        "data": args.data, "python": platform.python_version(), "torch": torch.__version__,
        "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
    }
    with tempfile.TemporaryDirectory(prefix="archzoo-cache-") as cache:
        os.environ["ARCHZOO_CACHE"] = cache
        t = time.perf_counter()
        first = load_dataset(args.data, val_split=0, cache=True).train
        results["first_decode"] = _rate(len(first), time.perf_counter() - t)
        t = time.perf_counter()
        again = load_dataset(args.data, val_split=0, cache=True).train
        results["cache_read"] = _rate(len(again), time.perf_counter() - t)
        results["cache_bytes"] = sum(f.stat().st_size for f in __import__("pathlib").Path(cache).rglob("*.safetensors"))
    if first.images is None:
        print("the dataset is decoded lazily (images of several sizes or too large): no in-memory paths to time")
    else:
        assert torch.equal(first.images, again.images)
        ds = first
        c, h, _ = ds.images.shape[1:]
        size = args.input_size or h
        mean, std = (0.5,) * c, (0.25,) * c
        n = min(args.aug_images, len(ds))
        sub = ds.subset(torch.arange(n))

        sub.transform = build_transform(True, size, mean, std)
        loader = DataLoader(sub, batch_size=args.batch, shuffle=True, num_workers=0)
        t = time.perf_counter()
        for x, _y in loader:
            pass
        results["per_sample_transform"] = _rate(n, time.perf_counter() - t)

        aug = BatchAugment(size, mean, std, pad=4, flip=True, train=True, scale=None if size <= 64 else (0.08, 1.0))
        t = time.perf_counter()
        perm = torch.randperm(n)
        for i in range(0, n, args.batch):
            x = aug(sub.images[perm[i:i + args.batch]])
        results["batch_augment_cpu"] = _rate(n, time.perf_counter() - t)
        assert x.shape[1:] == (c, size, size)

    width = max(len(k) for k in results)
    for k, v in results.items():
        if isinstance(v, dict):
            print(f"{k:<{width}}  {v['images_per_s']:>10,.0f} images/s  ({v['images']:,} in {v['seconds']:.2f} s)")
        else:
            print(f"{k:<{width}}  {v}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
