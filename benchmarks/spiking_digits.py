"""Spiking LeNet-5 on ``digits``: held-out accuracy against the number of time steps, spikes per
image (an energy proxy), beside the plain LeNet-5 trained the same way.

    python benchmarks/spiking_digits.py [--epochs 10] [--steps 5 10 25] [--codings direct rate]

Every model: Adam (lr 2e-3), batches of 64, ``--epochs`` epochs over the 1,437 training digits,
seed 0, one CPU thread; accuracy on the 360 held-out test digits (the fixed stratified split of
:mod:`archzoo.data.digits`). The spiking nets see intensities in [0, 1]; LeNet-5 its paper's
normalisation. "relu twin" is the spiking net itself with one time step and ReLUs for its LIF
neurons: the same network without spikes. Spikes per image: all LIF layers' spikes (input spikes not counted) in eval mode,
averaged over the test set. Prints a Markdown table (and ``--json`` writes the rows).
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F

import archzoo
from archzoo.data.digits import load_digits_dataset
from archzoo.models.spiking import LIF


def _data(subset: str):
    ds = load_digits_dataset(subset)
    return ds.images.float() / 255, ds.labels


def _normalise(model, x):
    mean, std = model.card.mean[0], model.card.std[0]
    return (x - mean) / std


def relu_twin() -> torch.nn.Module:
    """The spiking LeNet-5 without spikes: one time step, every LIF layer replaced by a ReLU."""
    model = archzoo.create_model("spiking_lenet5", num_steps=1)
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, LIF):
                setattr(module, child_name, torch.nn.ReLU())
    return model


def run_one(name: str, epochs: int, seed: int = 0, **kwargs) -> dict:
    x, y = _data("train")
    xt, yt = _data("test")
    torch.manual_seed(seed)
    model = relu_twin() if name == "relu twin" else archzoo.create_model(name, **kwargs)
    x, xt = _normalise(model, x), _normalise(model, xt)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(y)).split(64):
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    train_s = time.perf_counter() - start
    model.eval()
    correct, spikes, start = 0, 0.0, time.perf_counter()
    with torch.no_grad():
        for idx in torch.arange(len(yt)).split(120):
            correct += (model(xt[idx]).argmax(1) == yt[idx]).sum().item()
            spikes += (model.spike_count if name == "spiking_lenet5" else 0.0) * len(idx)
    infer_s = time.perf_counter() - start
    return {"model": name, **kwargs, "accuracy": correct / len(yt), "spikes_per_image": spikes / len(yt),
            "train_s": train_s, "ms_per_image": 1000 * infer_s / len(yt),
            "params": sum(p.numel() for p in model.parameters())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--steps", type=int, nargs="+", default=[5, 10, 25])
    ap.add_argument("--codings", nargs="*", default=["direct", "rate"], help="none: only the non-spiking rows")
    ap.add_argument("--json", help="write the rows to this file")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for name in ("lenet5", "relu twin"):
        rows.append(run_one(name, args.epochs))
        print(rows[-1], flush=True)
    for coding in args.codings:
        for steps in args.steps:
            rows.append(run_one("spiking_lenet5", args.epochs, num_steps=steps, coding=coding))
            print(rows[-1], flush=True)
    print("\n| model | coding | time steps | test accuracy | spikes / image | train s | ms / image |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r.get('coding', '-')} | {r.get('num_steps', '-')} | {100 * r['accuracy']:.1f}% | "
              f"{r['spikes_per_image']:.0f} | {r['train_s']:.0f} | {r['ms_per_image']:.2f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
