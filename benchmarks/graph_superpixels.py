"""Graph networks on superpixel graphs (GCN, GAT, gated GCN) beside a CNN of about the same size.

    python benchmarks/graph_superpixels.py --data digits --epochs 20
    tar -xzf ../shared/data/cifar10/train.tar.gz -C /tmp/cifar10
    python benchmarks/graph_superpixels.py --data /tmp/cifar10/train --train-limit 5000 --val-limit 1000 --epochs 10
    python benchmarks/graph_superpixels.py --data /tmp/cifar10/train --device cuda --epochs 100 --workers 16  # all 50,000

Every model is trained with ``archzoo.train`` on the same images: Adam(W) (lr 1e-3, no weight
decay), batches of 128, cosine schedule, seed 0, horizontal flips; the graph nets at their
defaults (150 SLIC superpixels, region adjacency, about 100k parameters; Dwivedi et al. 2020,
arXiv:2003.00982), the CNN is LeNet-5 (62k parameters on colour images). Held-out images:
``digits``' fixed test split (360 images); for a CIFAR-10 tree, ``--val-split`` (0.1) of it held
out by ``archzoo train``'s seeded per-class split (``--val-limit`` of those scored).

The graphs of all training and held-out images (and their mirror images) are built first, once,
by :meth:`archzoo.graph.SuperpixelGraphs.precompute` (``--workers`` processes), and timed apart
("graphs s"); every model then reads them from the cache. "CPU s" is the process CPU time of a
model's training run (the main process), "wall s" its wall time. Prints a Markdown table;
``--json`` writes the rows.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

import archzoo
from archzoo.engine.api import load_training_data
from archzoo.graph import SuperpixelGraphs

GRAPH_MODELS = ("gcn_superpixel", "gat_superpixel", "gatedgcn_superpixel")
PAPER = {"gcn_superpixel": "55.7", "gat_superpixel": "64.2", "gatedgcn_superpixel": "67.3"}  # CIFAR10, test %


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="digits")
    p.add_argument("--models", nargs="+", default=[*GRAPH_MODELS, "lenet5"])
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--train-limit", type=int)
    p.add_argument("--val-limit", type=int)
    p.add_argument("--val-split", type=float, default=0.1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--workers", type=int, default=0, help="processes building the graphs (default: in this one)")
    p.add_argument("--out", help="also keep each run folder under OUT/<model>")
    p.add_argument("--json", help="write the rows to this file")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    builtin = args.data == "digits"
    data_args = dict(val_data="digits" if builtin else None, val_split=args.val_split, train_limit=args.train_limit,
                     val_limit=args.val_limit)
    train, val, _, _ = load_training_data(args.data, seed=0, task="classification", **data_args)
    t0 = time.perf_counter()
    spec = SuperpixelGraphs()
    images = torch.cat([train.images, train.images.flip(-1), val.images])
    built = spec.precompute(images, workers=args.workers)
    graph_s = time.perf_counter() - t0
    nodes = [spec.graph(im).num_nodes for im in val.images[:500]]
    print(f"{args.data}: {len(train)} training / {len(val)} held-out images; built {built} graphs in {graph_s:.1f} s "
          f"({sum(nodes) / len(nodes):.1f} nodes per graph)", flush=True)

    rows = []
    for name in args.models:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        summary = archzoo.train(name, args.data, epochs=args.epochs, batch_size=args.batch_size, opt="adamw", lr=args.lr,
                                weight_decay=0.0, sched="cosine", seed=0, device=args.device, log="quiet", amp=False,
                                out=f"{args.out}/{name}" if args.out else None, overwrite=True, **data_args)
        row = {"model": name, "data": args.data, "train": summary["train_count"], "held_out": summary["val_count"],
               "epochs": args.epochs, "params": summary["params"], "val_accuracy": summary["val_accuracy"],
               "best_val_accuracy": summary["best_val_accuracy"], "cpu_s": time.process_time() - cpu0,
               "wall_s": time.perf_counter() - wall0, "graphs_s": graph_s if name in GRAPH_MODELS else None,
               "device": args.device, "paper_cifar10": PAPER.get(name)}
        rows.append(row)
        print(f"{name}: {row['val_accuracy']:.4f} ({row['params']} params, {row['cpu_s']:.0f} CPU s, "
              f"{row['wall_s']:.0f} wall s)", flush=True)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(rows, f, indent=2)

    print("\n| model | params | held-out accuracy (last epoch) | best epoch's | CPU s | wall s | paper (CIFAR10 superpixels) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| `{r['model']}` | {r['params']:,} | {r['val_accuracy']:.2%} | {r['best_val_accuracy']:.2%} | "
              f"{r['cpu_s']:.0f} | {r['wall_s']:.0f} | {r['paper_cifar10'] or '-'}{'%' if r['paper_cifar10'] else ''} |")
    return rows


if __name__ == "__main__":
    main()
