"""CIFAR-10 recipe benchmark: ResNet-20 trained through archzoo's engine on a held-out split.

    tar -xzf ../shared/data/cifar10/train.tar.gz -C /tmp/cifar10
    python benchmarks/cifar10.py --data /tmp/cifar10/train                 # 30 epochs
    python benchmarks/cifar10.py --data /tmp/cifar10/train --resume         # continue a stopped run
    python benchmarks/cifar10.py --data /tmp/cifar10/train --epochs 1 --train-limit 4500   # quick CPU check

The 50,000 training images are split by class with a seeded shuffle: 45,000 to train on, 5,000
(500 per class) held out and reported on. The default recipe (any option of ``archzoo train``
overrides it): SGD with Nesterov momentum, batch 512 with the learning rate scaled linearly
(0.1 x 512/128 = 0.4, Goyal et al. 2017, arXiv:1706.02677) after a 2-epoch warm-up, cosine decay,
label smoothing 0.1, weight decay 5e-4 (not on norms and biases), pad-4 crop and flip done on the
device by BatchAugment, an EMA of the weights, and on CUDA bf16 autocast and channels_last
(``--compile`` adds torch.compile). Checkpoints go to ``--out`` after every epoch.

Prints the time of every epoch, the total, the held-out accuracy, and with ``--train-limit`` the
time a full 45,000-image epoch would take at the measured speed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from archzoo.cli.train import add_recipe_arguments, recipe_options  # noqa: E402

RECIPE = dict(epochs=30, batch_size=512, lr=0.4, opt="sgd", nesterov=True, momentum=0.9, weight_decay=5e-4,
              sched="cosine", warmup_epochs=2, label_smoothing=0.1, ema=0.998, augment="basic", pad=4, flip=True,
              seed=0)
TRAIN_SIZE = 45_000


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="the ImageFolder tree of the CIFAR-10 training set")
    p.add_argument("--model", default="resnet20")
    p.add_argument("--out", default="runs/bench-cifar10", help="run folder (default runs/bench-cifar10)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--init", help="start from these weights (a checkpoint or model.tag), e.g. to continue a finished run")
    p.add_argument("--teacher", help="distil from this trained checkpoint (e.g. a wider net's last.safetensors)")
    p.add_argument("--val-split", type=float, default=0.1, help="held-out fraction (default 0.1: 5,000 images)")
    p.add_argument("--train-limit", type=int, help="train on a seeded subset of this many images (quick checks)")
    p.add_argument("--val-limit", type=int, help="score a seeded subset of this many held-out images (quick checks)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--log-json", action="store_true", help="JSON-lines events instead of the progress bar")
    add_recipe_arguments(p)
    args = p.parse_args(argv)

    import torch

    from archzoo.data import load_dataset
    from archzoo.engine import train

    t0 = time.perf_counter()
    splits = load_dataset(args.data, val_split=args.val_split, seed=0)
    load_s = time.perf_counter() - t0
    n_train = min(args.train_limit or len(splits.train), len(splits.train))
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    print(f"data: {len(splits.train)} train / {len(splits.val)} held out, {tuple(splits.train.images.shape[1:])} "
          f"(loaded in {load_s:.1f} s); training on {'the resumed run' if args.resume else n_train} on {device}"
          + (f" ({torch.cuda.get_device_name()})" if device.startswith("cuda") else f" ({torch.get_num_threads()} threads)"))
    options = {**RECIPE, **recipe_options(args)}
    common = dict(log="json" if args.log_json else "bar", device=args.device)
    if args.resume:
        summary = train(data=splits, resume=args.out, **common, **recipe_options(args))
    else:
        summary = train(args.model, splits, out=args.out, train_limit=args.train_limit, val_limit=args.val_limit,
                        overwrite=True, teacher=args.teacher, init=args.init, **common,
                        **options)
    n_train = summary["train_count"]
    epoch_times = [h["epoch_time"] for h in summary["history"]]
    full_epoch = summary["mean_epoch_time_s"] * TRAIN_SIZE / n_train
    result = {
        "model": summary["model"], "device": summary["device"], "train_images": n_train,
        "held_out_images": summary["val_count"], "held_out_accuracy": summary["val_accuracy"],
        "held_out_top5": summary["val_top5"], "epochs": len(epoch_times),
        "epoch_time_s": epoch_times, "mean_epoch_time_s": summary["mean_epoch_time_s"],
        "full_45k_epoch_time_s": full_epoch, "call_time_s": summary["time_s"],
        "train_time_all_epochs_s": sum(epoch_times), "data_load_s": load_s,
        "recipe": summary["recipe"],
    }
    (Path(args.out) / "benchmark.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"{summary['model']}: held-out accuracy {summary['val_accuracy']:.2%} on {summary['val_count']} images; "
          f"{summary['mean_epoch_time_s']:.2f} s per epoch of {n_train} images"
          + (f" (a 45,000-image epoch: {full_epoch:.1f} s)" if n_train != TRAIN_SIZE else "")
          + f"; {sum(epoch_times):.1f} s of training over {len(epoch_times)} epochs, {summary['time_s']:.1f} s this call")
    return 0


if __name__ == "__main__":
    sys.exit(main())
