"""What inference-time post-processing does to a trained segmenter: test-time augmentation
(``archzoo.segmentation.tta``: the image and its mirror, or all eight flips and quarter turns, the
softmax averaged) and the dense CRF (``archzoo.segmentation.crf``, DeepLab's settings), alone and
together, scored on the same images as ``archzoo eval`` scores them.

    python benchmarks/segmentation_postprocess.py unet.membrane --data /tmp/membrane/val
    python benchmarks/segmentation_postprocess.py runs/seg/best.safetensors --data shapes-seg --limit 50 --json out.json

Reported per variant: pixel error (1 - pixel accuracy, the ISBI 2012 measure for two classes),
mean IoU, Dice, and seconds per image on this machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402

from archzoo.cli.common import checkpoint_input  # noqa: E402
from archzoo.cli.eval import load_eval_data  # noqa: E402
from archzoo.engine.config import TrainConfig  # noqa: E402
from archzoo.engine.evaluate import match_classes, model_task  # noqa: E402
from archzoo.engine.loader import make_batches  # noqa: E402
from archzoo.io import load_model  # noqa: E402
from archzoo.segmentation.crf import BACKENDS, dense_crf  # noqa: E402
from archzoo.segmentation.tta import TestTimeAugment  # noqa: E402


@torch.no_grad()
def score(model, task, batches, mean, std, views: str, crf: str | None, crf_kwargs: dict) -> dict:
    net = TestTimeAugment(model, views).eval() if views != "none" else model
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    meter = task.meter(torch.device("cpu"), train=False)
    t0, n = time.perf_counter(), 0
    for x, y in batches.epoch(0):
        logits = net(x).float()
        if crf is not None:
            images = ((x * s + m) * 255).clamp(0, 255)
            logits = dense_crf(logits.softmax(1), images, backend=crf, **crf_kwargs).clamp_min(1e-12).log()
        meter.update(logits, y, None)
        n += len(x)
    out = meter.compute()
    return {"views": views, "crf": crf or "off", "pixel_error": 1 - out["pixel_accuracy"], "miou": out["miou"],
            "dice": out.get("dice"), "seconds_per_image": (time.perf_counter() - t0) / max(n, 1), "count": n}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="a segmenter's checkpoint, or <model>.<tag> of shipped weights")
    p.add_argument("--data", required=True, help="what archzoo eval reads (e.g. a held-out image/ + label/ folder)")
    p.add_argument("--views", nargs="+", default=["none", "flip", "d4"], help="TTA views to try")
    p.add_argument("--crf", nargs="+", default=["off", "torch"], choices=["off", *BACKENDS], help="CRF backends to try")
    p.add_argument("--crf-kwargs", type=json.loads, default={},
                   help="JSON of dense_crf's settings, e.g. '{\"bi_xy_std\": 5, \"bi_rgb_std\": 10}' (default: DeepLab's)")
    p.add_argument("--limit", type=int, help="score the first N images only")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--json", help="also write the rows to this file")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, meta = load_model(args.checkpoint, need_head=True)
    names = meta.get("class_names") or [str(i) for i in range(model.num_classes)]
    task = model_task(model, names)
    if task.name != "segmentation":
        raise SystemExit(f"{args.checkpoint} is a {task.name} model; this benchmark scores segmenters")
    data, _, _ = load_eval_data(args.data, meta, None, False, task=task.name)
    data = match_classes(data, meta.get("class_names"), model.num_classes)
    if args.limit:
        data = torch.utils.data.Subset(data, range(min(args.limit, len(data))))
        data.task = "segmentation"
    _, size, mean, std = checkpoint_input(model, meta)
    batches = make_batches(data, torch.device("cpu"), 1, train=False, cfg=TrainConfig(channels_last=False, workers=0),
                           task=task, input_size=size, mean=mean, std=std, in_chans=len(mean))
    rows = [score(model, task, batches, mean, std, views, None if crf == "off" else crf, args.crf_kwargs)
            for views in args.views for crf in args.crf]
    print(f"{meta.get('model')} ({args.checkpoint}) on {args.data}: {rows[0]['count']} images at {size}x{size}; "
          f"{platform.processor() or platform.machine()}, {args.threads} threads; CRF settings "
          f"{args.crf_kwargs or 'DeepLab v1 (dense_crf defaults)'}")
    print("| TTA views | CRF | pixel error | mIoU | Dice | s/image |\n|---|---|---|---|---|---|")
    for r in rows:
        dice = f"{r['dice']:.4f}" if r["dice"] is not None else "-"
        print(f"| {r['views']} | {r['crf']} | {r['pixel_error']:.4f} | {r['miou']:.4f} | {dice} | "
              f"{r['seconds_per_image']:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"checkpoint": args.checkpoint, "data": args.data,
                                                   "crf_kwargs": args.crf_kwargs, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
