"""The R-CNN lineage on one backbone and one set of photos: where the time of a two-stage detector
goes, and what each step of the lineage bought.

    python benchmarks/rcnn_lineage.py --data ../shared/data/nuts/train                 # small default budget
    python benchmarks/rcnn_lineage.py --data DIR --steps 200 --proposals 2000 --warp 224 --json out.json

Four detectors share the backbone (``--backbone``, any zoo classifier; random weights: nothing is
downloaded), the images and the training budget:

* **R-CNN** (arXiv:1311.2524, ``rcnn_alexnet`` with ``backbone=``): selective search, then every
  region warped (16 px context at 224, scaled with ``--warp``) and run through the whole CNN;
* **Fast R-CNN** (arXiv:1504.08083, ``fast_rcnn_resnet50``): selective search, one backbone forward,
  7x7 RoI max pooling of the proposals from the stride-16 map, two FC layers;
* **Faster R-CNN** (arXiv:1506.01497, ``fasterrcnn_vgg16``'s layout: one stride-16 map, RoI max
  pooling): a region proposal network on that map replaces selective search;
* **Faster R-CNN + FPN** (arXiv:1612.03144, ``fasterrcnn_resnet50_fpn``): proposals and RoIAlign on
  a feature pyramid.

The data is a Pascal VOC folder (``N.jpg`` beside ``N.xml``, e.g. the nuts photos). The photos named
by ``--held-out`` are scored, the others trained on: ``--steps`` AdamW steps of ``--batch`` photos
each (drawn at random, seeded), the same for every detector; every second stage learns from 64
regions a photo, a quarter positive (R-CNN's 128-window and Fast R-CNN's 128-RoI mini-batch over
two photos). Reported per held-out photo, in eval mode (one pass, so selective search is not served
from its cache): seconds split into *proposals* (selective search on the CPU, or the RPN's head,
decoding and NMS), *network* (resize and normalise, backbone, RoI pooling or per-region CNN, heads)
and *post-processing* (box decoding, per-class NMS, mapping back to the photo's pixels); *CNN
inputs* per photo (R-CNN: one per region; the others: one image); proposals per photo; training
seconds per step; parameters; and COCO AP@0.5 (pycocotools, the engine's ``DetectionMeter``) on
the held-out photos. With random backbone weights and a budget of minutes, AP stays near zero:
the script compares costs; AP needs pretrained backbones or a long ``--steps``.

This script is not part of the package: it imports archzoo, never the other way round.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

import archzoo  # noqa: E402
from archzoo.data.voc import parse_voc  # noqa: E402
from archzoo.engine.metrics import DetectionMeter  # noqa: E402

DETECTORS = ("rcnn", "fast_rcnn", "faster_rcnn", "faster_rcnn_fpn")
NAMES = {"rcnn": "R-CNN", "fast_rcnn": "Fast R-CNN", "faster_rcnn": "Faster R-CNN", "faster_rcnn_fpn": "Faster R-CNN + FPN"}


# ---------------------------------------------------------------- data


def load_voc_folder(root: Path) -> tuple[list[str], list[dict]]:
    """Class names (sorted) and per photo ``{"id", "image" [3, H, W] in 0..1, "boxes", "labels"}``."""
    records = []
    for xml in sorted(root.glob("*.xml")):
        image = next((p for p in (xml.with_suffix(e) for e in (".jpg", ".jpeg", ".png", ".JPG")) if p.is_file()), None)
        if image is None:
            raise SystemExit(f"{xml}: no image of the same name beside it")
        objects, _ = parse_voc(xml)
        records.append((xml.stem, image, objects))
    if not records:
        raise SystemExit(f"--data {root}: no Pascal VOC annotations (N.xml beside N.jpg) there")
    names = sorted({o[0] for _, _, objs in records for o in objs})
    photos = []
    for stem, path, objects in records:
        pixels = np.asarray(Image.open(path).convert("RGB"))
        photos.append({"id": stem, "image": torch.from_numpy(pixels.copy()).permute(2, 0, 1).float() / 255,
                       "boxes": torch.tensor([o[1] for o in objects], dtype=torch.float32).reshape(-1, 4),
                       "labels": torch.tensor([names.index(o[0]) for o in objects], dtype=torch.int64)})
    return names, photos


# ---------------------------------------------------------------- the four detectors


def build(kind: str, args, num_classes: int) -> torch.nn.Module:
    common = dict(num_classes=num_classes, backbone=args.backbone, min_size=args.min_size, max_size=args.max_size)
    search = dict(proposals=args.proposals, search_mode=args.search_mode, search_max_side=args.search_max_side)
    if kind == "rcnn":
        # 64 regions a photo, 2 photos a step: the paper's mini-batch of 128 windows (32 positive)
        return archzoo.create_model("rcnn_alexnet", warp_size=args.warp, context_padding=round(16 * args.warp / 224),
                                    region_batch=args.region_batch, batch_size_per_image=64, **search, **common)
    if kind == "fast_rcnn":
        return archzoo.create_model("fast_rcnn_resnet50", representation_size=1024, **search, **common)
    rpn = dict(rpn_post_nms_top_n=(args.proposals, args.proposals), representation_size=1024,
               box_batch_size_per_image=64)
    if kind == "faster_rcnn":  # one stride-16 map, 15 anchors a position, RoI max pooling: the paper's layout
        return archzoo.create_model("fasterrcnn_vgg16", anchor_sizes=((32, 64, 128, 256, 512),), **rpn, **common)
    return archzoo.create_model("fasterrcnn_resnet50_fpn", **rpn, **common)


class Timer:
    """Seconds spent in the proposer and in post-processing; CNN inputs (regions or images)."""

    def __init__(self, model: torch.nn.Module, kind: str):
        self.proposals = self.post = 0.0
        self.cnn_inputs = self.num_proposals = 0
        model.proposer.register_forward_pre_hook(lambda m, inp: self._start())
        model.proposer.register_forward_hook(self._proposed)
        cnn = model.roi_heads.box_pool.cnn if kind == "rcnn" else model.backbone
        cnn.register_forward_hook(lambda m, inp, out: self._count(inp[0].shape[0]))
        for owner, name in ((model.roi_heads, "postprocess"), (model.transform, "postprocess")):
            setattr(owner, name, self._timed(getattr(owner, name)))

    def _start(self):
        self.t0 = time.perf_counter()

    def _proposed(self, module, inputs, output):
        self.proposals += time.perf_counter() - self.t0
        self.num_proposals += sum(len(p) for p in output[0])

    def _count(self, n: int):
        self.cnn_inputs += n

    def _timed(self, fn):
        def run(*a, **k):
            t0 = time.perf_counter()
            out = fn(*a, **k)
            self.post += time.perf_counter() - t0
            return out

        return run

    def reset(self):
        self.proposals = self.post = 0.0
        self.cnn_inputs = self.num_proposals = 0


def train(model, photos, args) -> float:
    """``args.steps`` AdamW steps of ``args.batch`` photos; seconds per step."""
    g = torch.Generator().manual_seed(args.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=1e-4)
    model.train()
    start = time.perf_counter()
    for step in range(args.steps):
        batch = [photos[int(i)] for i in torch.randperm(len(photos), generator=g)[:args.batch]]
        losses = model([p["image"] for p in batch], [{"boxes": p["boxes"], "labels": p["labels"]} for p in batch])
        loss = sum(losses.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        opt.step()
        if args.verbose:
            print(f"  step {step + 1}/{args.steps}: loss {loss.item():.3f}", flush=True)
    return (time.perf_counter() - start) / max(args.steps, 1)


def measure(kind: str, args, names: list[str], train_photos: list[dict], test_photos: list[dict]) -> dict:
    torch.manual_seed(args.seed)
    model = build(kind, args, len(names))
    timer = Timer(model, kind)
    step_s = train(model, train_photos, args) if args.steps else 0.0
    model.eval()
    if hasattr(model.proposer, "cache"):
        model.proposer.cache.clear()  # time the search itself, not the cache
    timer.reset()
    meter = DetectionMeter(len(names), names)
    total = 0.0
    with torch.inference_mode():
        for p in test_photos:
            t0 = time.perf_counter()
            (det,) = model([p["image"]])
            total += time.perf_counter() - t0
            meter.update([det], [{"boxes": p["boxes"], "labels": p["labels"]}], None)
    n = len(test_photos)
    return {"detector": NAMES[kind], "model": model.card.name, "proposals_s": timer.proposals / n,
            "network_s": (total - timer.proposals - timer.post) / n, "post_s": timer.post / n, "total_s": total / n,
            "cnn_inputs_per_image": timer.cnn_inputs / n, "proposals_per_image": timer.num_proposals / n,
            "train_s_per_step": step_s, "map50": meter.compute()["map50"],
            "params_m": sum(p.numel() for p in model.parameters()) / 1e6}


def table(rows: list[dict]) -> str:
    lines = ["| detector | proposals s/img | network s/img | post-proc. s/img | total s/img | CNN inputs/img | "
             "proposals/img | train s/step | params (M) | mAP@0.5 |", "|" + "---|" * 10]
    for r in rows:
        lines.append(f"| {r['detector']} | {r['proposals_s']:.3f} | {r['network_s']:.3f} | {r['post_s']:.4f} | "
                     f"{r['total_s']:.3f} | {r['cnn_inputs_per_image']:.0f} | {r['proposals_per_image']:.0f} | "
                     f"{r['train_s_per_step']:.2f} | {r['params_m']:.1f} | {r['map50']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, type=Path, help="a Pascal VOC folder (N.jpg beside N.xml), e.g. the nuts")
    p.add_argument("--held-out", default="3,7,17", help="ids (file stems) of the photos scored, comma-separated")
    p.add_argument("--models", nargs="+", default=list(DETECTORS), choices=DETECTORS)
    p.add_argument("--backbone", default="resnet18", help="the zoo classifier every detector uses (default resnet18)")
    p.add_argument("--steps", type=int, default=10, help="training steps for every detector (default 10)")
    p.add_argument("--batch", type=int, default=2, help="photos per step")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--min-size", type=int, default=320, help="the photos' shorter side in the detectors (paper: 600)")
    p.add_argument("--max-size", type=int, default=480, help="their longer side at most (paper: 1000)")
    p.add_argument("--proposals", type=int, default=300, help="proposals per photo, every detector (paper: 2000)")
    p.add_argument("--search-mode", default="fast", choices=("fast", "quality"))
    p.add_argument("--search-max-side", type=int, default=320, help="selective search runs at this longer side at most")
    p.add_argument("--warp", type=int, default=96, help="R-CNN's warped region side (paper: 227)")
    p.add_argument("--region-batch", type=int, default=64, help="R-CNN's regions per CNN call (1: the literal loop)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--verbose", action="store_true", help="print every training step's loss")
    p.add_argument("--json", default=None, help="also write the results to this file")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    names, photos = load_voc_folder(args.data)
    held = set(args.held_out.split(","))
    test_photos = [x for x in photos if x["id"] in held]
    train_photos = [x for x in photos if x["id"] not in held]
    missing = held - {x["id"] for x in test_photos}
    if missing or not train_photos:
        raise SystemExit(f"--held-out: {sorted(missing)} not in {args.data}" if missing else "nothing left to train on")
    print(f"{len(train_photos)} training photos, {len(test_photos)} held out ({', '.join(sorted(held))}), classes {names}; "
          f"backbone {args.backbone}, {args.steps} steps of {args.batch}, {args.proposals} proposals", flush=True)
    rows = []
    for kind in args.models:
        start = time.perf_counter()
        rows.append(measure(kind, args, names, train_photos, test_photos))
        print(f"{NAMES[kind]}: done in {time.perf_counter() - start:.0f} s", flush=True)
    machine = (f"{torch.get_num_threads()} threads, torch {torch.__version__}, {platform.processor() or platform.machine()}, "
               f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(table(rows))
    print(machine)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                                               "machine": machine, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
