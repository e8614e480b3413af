"""Do class activation maps point at the object? The pointing game on the built-in ``shapes``.

    python benchmarks/pointing_game.py                      # one large object per image (the shapes dataset)
    python benchmarks/pointing_game.py --objects small      # one small object anywhere in the image
    python benchmarks/pointing_game.py --json pointing.json --save r20.safetensors
    python benchmarks/pointing_game.py --load r20.safetensors --methods cam scorecam   # score a saved model

Trains a small CIFAR-style ResNet on generated one-object images (the class is the object's
shape; the box is known), then, on held-out images, counts a hit when the maximum of the map for
the true class falls inside the object's box — the pointing game of Zhang et al. 2016,
"Top-down Neural Attention by Excitation Backprop", arXiv:1608.00507. Reported strictly (no
margin) and with their 15-pixel margin at 224 pixels scaled to the image (2 px at 32), for
original CAM (Zhou et al. 2016, arXiv:1512.04150), Grad-CAM (Selvaraju et al. 2016,
arXiv:1610.02391), Grad-CAM++ and LayerCAM on the last feature map, and LayerCAM on the middle
stage (``layercam@stages.1``: a 16x16 map at 32x32), against two baselines that look at no
pixel: a uniformly random point (its expected hit rate is the mean box area fraction) and the
image centre. For a global-average-pool + linear head Grad-CAM of the last feature map equals
CAM, so those two rates agree up to ties.

``--objects large`` is the ``shapes`` classification set: objects of radius 0.24-0.46 of the
image, so the boxes are large and nearly always cover the centre — the centre baseline is
high there. ``--objects small`` (radius 0.10-0.24, one object drawn by the same generator,
anywhere in the image) tells a localising map from a centred blob.

The default (ResNet-20 at 32x32: an 8x8 final map) trains in about 6-7 minutes on one core of a
busy 2-core machine (10 epochs of 10,000 images); one intra-op thread is the default because
it is the fastest there. ``--size 64`` gives a 16x16 map at four times the cost.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import torch


def shapes_data(objects: str, subset: str, n: int, size: int):
    """``(ImageDataset, boxes [n, 4])``: ``n`` one-object images of the ``shapes`` generator."""
    import torch

    from archzoo.data import ImageDataset
    from archzoo.data import shapes

    if objects == "large":
        ds = shapes.load_shapes_dataset(subset, size=size)
        n = min(n, len(ds))
        return ImageDataset(ds.class_names, ds.labels[:n], images=ds.images[:n]), ds.targets["box"][:n]
    # small objects: the multi-object radii (0.10-0.24), one or two objects drawn; keep the images with one
    stream = {"train": 10, "test": 11}[subset]  # streams of their own, apart from the dataset's 0 and 1
    images, labels, boxes, kept, seed = [], [], [], 0, 0
    while kept < n:
        batch = shapes.generate(2 * (n - kept) + 256, size=size, objects=(1, 2), stream=stream, seed=seed)
        one = (batch.labels[:, 0] >= 0) & (batch.labels[:, 1] < 0)
        images.append(batch.images[one])
        labels.append(batch.labels[one, 0])
        boxes.append(batch.boxes[one, 0])
        kept, seed = kept + int(one.sum()), seed + 1
    images, labels, boxes = (torch.cat(t)[:n] for t in (images, labels, boxes))
    return ImageDataset(list(shapes.CLASS_NAMES), labels, images=images), boxes


def pointing_hits(maps, boxes, tolerance: float = 0.0):
    """Whether each map's maximum lies in its box (``x2``/``y2`` exclusive) grown by ``tolerance``
    pixels on every side: bool ``[N]``."""
    w = maps.shape[-1]
    flat = maps.flatten(1).argmax(1)
    row, col = flat // w, flat % w
    x1, y1, x2, y2 = (boxes - torch.tensor([tolerance, tolerance, -tolerance, -tolerance])).unbind(1)
    return (x1 <= col) & (col < x2) & (y1 <= row) & (row < y2)


METHODS = ["cam", "gradcam", "gradcam++", "layercam", "layercam@stages.1"]


def explain_all(model, images, labels, transform, specs: list[str], batch: int = 200):
    """Predictions and, per ``method[@layer]`` spec, maps of the true class: ``(pred [N], {spec: [N, H, W]})``."""
    from archzoo.explain import explain

    preds, maps = [], {spec: [] for spec in specs}
    for i in range(0, len(images), batch):
        x = transform(images[i:i + batch])
        with torch.no_grad():
            preds.append(model(x).argmax(-1))
        for spec in specs:
            method, _, layer = spec.partition("@")
            maps[spec].append(explain(model, x, method=method, target=labels[i:i + batch], layer=layer or None))
    return torch.cat(preds), {spec: torch.cat(parts) for spec, parts in maps.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--objects", choices=("large", "small"), default="large", help="object size (default large: the shapes dataset)")
    p.add_argument("--model", default="resnet20", help="a registered classifier (default resnet20)")
    p.add_argument("--kwargs", type=json.loads, default={}, help='architecture arguments as JSON, e.g. \'{"layers": [1, 1, 1]}\'')
    p.add_argument("--size", type=int, default=32, help="image side (default 32: ResNet-20's final map is 8x8)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--train-images", type=int, default=10_000)
    p.add_argument("--test-images", type=int, default=1_000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--methods", nargs="+", default=METHODS,
                   help="explanations to score, as method[@layer] (default: %(default)s; stages.1 is ResNet-20's "
                        "16x16 middle stage at 32x32)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    p.add_argument("--tolerance", type=float, default=None,
                   help="pixels a near miss may lie outside the box to count as well (default: 15 px at 224, "
                        "Zhang et al.'s margin, scaled to the image side)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the results to this file")
    p.add_argument("--save", default=None, help="also save the trained model here (.safetensors, for archzoo cam)")
    p.add_argument("--load", default=None, help="score this saved model (from --save) instead of training one")
    args = p.parse_args(argv)

    import archzoo
    from archzoo.data.gpu import BatchAugment
    from archzoo.engine import train
    from archzoo.engine.trainer import model_mean_std

    torch.set_num_threads(args.threads)
    size = args.size
    t0 = time.perf_counter()
    test_ds, boxes = shapes_data(args.objects, "test", args.test_images, size)
    if args.load:
        model, meta = archzoo.load_model(args.load)
        trained = {"checkpoint": args.load, "epochs": meta.get("epoch")}
    else:
        train_ds, _ = shapes_data(args.objects, "train", args.train_images, size)
        torch.manual_seed(args.seed)
        model = archzoo.create_model(args.model, num_classes=len(train_ds.class_names), **args.kwargs)
        summary = train(model, train_ds, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                        warmup_epochs=min(1, args.epochs - 1), seed=args.seed, log="bar")
        trained = {"epochs": args.epochs, "train_images": len(train_ds), "train_time_s": round(summary["time_s"], 1)}
    model.eval()
    mean, std = model_mean_std(model, 3)
    if args.save:
        archzoo.save_model(model, args.save, class_names=test_ds.class_names, input_size=[3, size, size],
                           mean=mean, std=std, epoch=args.epochs)
    tf = BatchAugment(size, mean, std, train=False)

    t1 = time.perf_counter()
    pred, maps = explain_all(model, test_ds.images, test_ds.labels, tf, args.methods)
    t_explain = time.perf_counter() - t1
    with torch.no_grad():
        final_map = list(model.forward_features(tf(test_ds.images[:1])).shape[-2:])
    correct = pred == test_ds.labels
    tol = round(15 * size / 224, 1) if args.tolerance is None else args.tolerance
    area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])) / size**2
    centre = torch.zeros(len(boxes), size, size)
    centre[:, size // 2, size // 2] = 1.0
    rate = lambda hits: round(float(hits.float().mean()), 4)  # noqa: E731
    result = {
        "model": model.build_args["model"], "kwargs": model.build_args["kwargs"], "objects": args.objects,
        "input": f"{size}x{size}", "final_map": final_map, **trained, "test_images": len(test_ds),
        "test_accuracy": rate(correct), "tolerance_px": tol,
        "hit_rate": {spec: rate(pointing_hits(m, boxes)) for spec, m in maps.items()},
        "hit_rate_correct_only": {spec: rate(pointing_hits(m[correct], boxes[correct])) for spec, m in maps.items()},
        "hit_rate_within_tolerance": {spec: rate(pointing_hits(m, boxes, tol)) for spec, m in maps.items()},
        "random_point": round(float(area.mean()), 4),
        "centre_point": rate(pointing_hits(centre, boxes)),
        "centre_point_within_tolerance": rate(pointing_hits(centre, boxes, tol)),
        "explain_time_s": round(t_explain, 1), "total_time_s": round(time.perf_counter() - t0, 1),
        "threads": args.threads, "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}",
    }
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
