"""``archzoo eval CKPT --data DATA``: accuracy of a saved classifier on a labelled dataset.

    archzoo eval runs/c10/best.safetensors --data path/to/test --json
    archzoo eval resnet20.cifar10 --data /data/cifar-10-batches-py
    archzoo eval runs/c10/best.safetensors --data /tmp/cifar10/train --held-out 0.1 --seed 0

``--held-out F`` scores the part of DATA that ``archzoo train --val-split F --seed S`` held out
for validation (the same seeded, per-class split), so a run trained on a tree can be checked on
the images it never saw.

``--json`` prints one object: ``accuracy`` (top-1, 0..1), ``top5``, ``loss``, ``count``,
``per_class_accuracy`` and, for up to 100 classes, ``confusion`` (rows: true class). Classes are
matched to the checkpoint's by name; a class the checkpoint does not know is an error.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("eval", help="evaluate a checkpoint on a labelled dataset",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="a .safetensors checkpoint, or <model>.<tag> of shipped weights")
    p.add_argument("--data", required=True, help="digits | shapes | an ImageFolder tree | CIFAR batches | MNIST IDX")
    p.add_argument("--subset", help="the split to read where the data has several (default: test; a plain tree: itself)")
    p.add_argument("--held-out", type=float, metavar="F",
                   help="score the validation part of DATA split off as by `train --val-split F`")
    p.add_argument("--seed", type=int, default=0, help="the split seed with --held-out (default 0)")
    p.add_argument("-b", "--batch-size", type=int, default=256)
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable images instead of stopping")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--workers", type=int, help="DataLoader processes for folders not held in memory")
    p.add_argument("--confusion", metavar="PNG", help="also draw the confusion matrix to this file")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def default_subset(spec: str) -> str:
    """``test`` where the data has a test split, else the tree itself (``train``)."""
    from ..data import BUILTIN

    if spec in BUILTIN:
        return "test"
    from ..data import cifar, folder, idx

    path = Path(spec).expanduser()
    if not path.is_dir():
        return "test"
    if cifar.is_cifar_dir(path) or idx.is_idx_dir(path):
        return "test"
    try:
        return "test" if folder.resolve_root(path, "test") != path else "train"
    except ValueError:
        return "train"


def load_eval_data(spec: str, meta: dict, subset: str | None, skip_bad: bool, held_out: float | None = None,
                   seed: int = 0):
    """``(dataset to score, skipped files)``, decoded the way the checkpoint's run decoded its data;
    with ``held_out``, the validation part of the seeded split."""
    from ..data import BUILTIN, load_dataset

    size = meta.get("input_size", [None, None, None])[-1]
    run_size = (meta.get("run") or {}).get("data_options", {}).get("image_size")
    image_size = size if spec in BUILTIN else run_size
    if held_out is not None:
        if not 0.0 < held_out < 1.0:
            raise ValueError(f"--held-out must be a fraction between 0 and 1, got {held_out}")
        splits = load_dataset(spec, val_split=held_out, seed=seed, subset=subset or "train", skip_bad=skip_bad,
                              image_size=image_size)
        return splits.val, splits.bad_files
    splits = load_dataset(spec, val_split=0.0, subset=subset or default_subset(spec), skip_bad=skip_bad, image_size=image_size)
    return splits.train, splits.bad_files


def run(args: argparse.Namespace) -> int:
    from ..engine.evaluate import evaluate_model
    from ..hub import load_checkpoint
    from .common import checkpoint_input, console, print_json, print_table

    model, meta = load_checkpoint(args.checkpoint)
    data, bad_files = load_eval_data(args.data, meta, args.subset, args.skip_bad, args.held_out, args.seed)
    _, size, mean, std = checkpoint_input(model, meta)
    m = evaluate_model(model, data, input_size=size, mean=mean, std=std, class_names=meta.get("class_names"),
                       batch_size=args.batch_size, device=args.device, workers=args.workers)
    names = meta.get("class_names") or [str(i) for i in range(model.num_classes)]
    if args.confusion:
        from ..engine.report import plot_confusion

        plot_confusion(m["confusion"], names, args.confusion)
    result = {"checkpoint": str(args.checkpoint), "model": meta.get("model"), "data": str(args.data),
              "held_out": args.held_out,
              "accuracy": m["accuracy"], "top5": m["top5"], "loss": m["loss"], "count": m["count"],
              "per_class_accuracy": m["per_class_accuracy"], "skipped_files": len(bad_files)}
    if len(names) <= 100:
        result["confusion"] = m["confusion"]
    if args.json:
        print_json(result)
        return 0
    print_table(f"{meta.get('model')} on {args.data}", ["metric", "value"],
                [["top-1 accuracy", f"{m['accuracy']:.2%}"], ["top-5 accuracy", f"{m['top5']:.2%}"],
                 ["loss", f"{m['loss']:.4f}"], ["images", m["count"]]], justify_right={"value"})
    if len(m["per_class_accuracy"]) <= 30:
        print_table("per class", ["class", "accuracy"], [[k, f"{v:.1%}"] for k, v in m["per_class_accuracy"].items()],
                    justify_right={"accuracy"})
    if bad_files:
        console().print(f"skipped {len(bad_files)} unreadable files")
    return 0
