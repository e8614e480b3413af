"""Shared utilities for detector tests: a small ``shapes`` detection set, a short training loop
through the detector contract, COCO AP@0.5 with pycocotools, and output comparison."""

from __future__ import annotations

import contextlib
import io

import torch

from archzoo.data.shapes import generate


def shapes_detection(n: int, size: int = 64, subset: str = "train", objects=(1, 3), classes: int = 3,
                     masks: bool = False):
    """``n`` float images ``[3, size, size]`` in 0..1 and their targets (``boxes`` xyxy pixels, ``labels``;
    with ``masks`` also the instance masks ``[k, size, size]``, bool)."""
    data = generate(n, size=size, objects=objects, stream=subset, classes=classes)
    images = list((data.images.float() / 255).unbind(0))
    targets = []
    for i in range(n):
        t = data.target(i)
        targets.append({"boxes": t["boxes"].float(), "labels": t["labels"].long()})
        if masks:
            targets[-1]["masks"] = t["masks"]
    return images, targets


def train_briefly(model, images, targets, steps: int = 60, batch: int = 8, lr: float = 1e-3, seed: int = 0,
                  optimizer: str = "adamw") -> list[float]:
    """``steps`` optimizer steps on batches drawn in order from ``images``; the summed losses per step."""
    torch.manual_seed(seed)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr) if optimizer == "adamw" else torch.optim.SGD(params, lr=lr, momentum=0.9)
    losses = []
    for step in range(steps):
        idx = [(step * batch + j) % len(images) for j in range(batch)]
        out = model([images[j] for j in idx], [targets[j] for j in idx])
        loss = sum(out.values())
        assert torch.isfinite(loss), f"step {step}: loss {out}"
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        opt.step()
        losses.append(float(loss.detach()))
    return losses


@torch.no_grad()
def recalibrate_norms(model, images, targets, batch: int = 8) -> None:
    """Re-estimate batch-norm running statistics on ``images`` (one pass in training mode, a plain
    average over its batches): after a few dozen steps the running averages lag far behind the
    weights, and eval-mode outputs would measure that lag, not what was learned."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    for i in range(0, len(images), batch):
        model(images[i:i + batch], targets[i:i + batch])


@torch.no_grad()
def detect_all(model, images, batch: int = 16) -> list[dict]:
    model.eval()
    out = []
    for i in range(0, len(images), batch):
        out += model(images[i:i + batch])
    return out


def coco_map(detections: list[dict], targets: list[dict], num_classes: int, iou: float | None = 0.5) -> float:
    """COCO AP (pycocotools) of ``detections`` against ``targets``: at IoU ``iou`` (0.5 or 0.75),
    or averaged over 0.5:0.95 when ``iou`` is None. Boxes are xyxy pixels; labels are 0-based."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, anns, dets = [], [], []
    for i, (d, t) in enumerate(zip(detections, targets)):
        images.append({"id": i, "width": 10_000, "height": 10_000})
        for b, c in zip(t["boxes"].tolist(), t["labels"].tolist()):
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": int(c) + 1, "iscrowd": 0,
                         "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "area": (b[2] - b[0]) * (b[3] - b[1])})
        for b, s, c in zip(d["boxes"].tolist(), d["scores"].tolist(), d["labels"].tolist()):
            dets.append({"image_id": i, "category_id": int(c) + 1, "score": float(s),
                         "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]]})
    if not dets:
        return 0.0
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns,
                  "categories": [{"id": c + 1, "name": str(c)} for c in range(num_classes)]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[{None: 0, 0.5: 1, 0.75: 2}[iou]])


def assert_same_detections(ours: list[dict], theirs: list[dict], atol: float = 1e-4) -> None:
    """Equal detections: same count, labels, and boxes/scores within ``atol`` (relative to the scale)."""
    assert len(ours) == len(theirs)
    for i, (a, b) in enumerate(zip(ours, theirs)):
        assert b["boxes"].shape[0] > 0, f"image {i}: the reference detects nothing; raise the scores"
        assert a["boxes"].shape == b["boxes"].shape, f"image {i}: {a['boxes'].shape[0]} vs {b['boxes'].shape[0]} detections"
        assert torch.equal(a["labels"], b["labels"]), f"image {i}: labels differ"
        scale = max(1.0, float(b["boxes"].abs().max()))
        torch.testing.assert_close(a["boxes"], b["boxes"], atol=atol * scale, rtol=0, msg=f"image {i}: boxes")
        torch.testing.assert_close(a["scores"], b["scores"], atol=atol, rtol=0, msg=f"image {i}: scores")


def random_images(n: int, size=(3, 96, 128), seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(size, generator=g) for _ in range(n)]


__all__ = ["shapes_detection", "train_briefly", "recalibrate_norms", "detect_all", "coco_map", "assert_same_detections",
           "random_images"]
