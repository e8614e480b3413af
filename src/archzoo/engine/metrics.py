"""What a task measures over an epoch, behind one interface: :class:`Meter`.

``update(output, target, loss)`` after every batch (on the device, no host sync);
``running()`` a few device scalars for the progress bar; ``compute()`` once at the end, which is
a collective under torchrun (every process calls it, every process gets the same numbers).
Two ways to combine processes, both here:

* sums: counters and confusion matrices, added with ``all_reduce`` (:class:`SumMeter`);
* gathered predictions: each process keeps its images' predictions and targets on the CPU and
  ``compute`` collects them all with ``all_gather_object`` before scoring
  (:class:`GatheredMeter`) — what ranking metrics such as average precision need.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.distributed as td
import torch.nn.functional as F

from . import distributed as dist


class Meter:
    """Accumulates one pass over the data; see the module doc."""

    def update(self, output, target, loss: torch.Tensor | None) -> None:
        raise NotImplementedError

    def running(self) -> dict[str, torch.Tensor]:
        """Device scalars for the progress bar (at least ``loss`` while training)."""
        return {}

    def compute(self) -> dict:
        raise NotImplementedError


class SumMeter(Meter):
    """Device tensors ``sums`` that only ever grow; ``compute`` adds them over processes and
    hands them to :meth:`summarize`."""

    def __init__(self, sums: dict[str, torch.Tensor]):
        self.sums = sums

    def compute(self) -> dict:
        return self.summarize({k: dist.all_reduce_sum(v) for k, v in self.sums.items()})

    def summarize(self, sums: dict[str, torch.Tensor]) -> dict:
        raise NotImplementedError


def _zeros(device, *shape, dtype=torch.int64) -> torch.Tensor:
    return torch.zeros(shape, dtype=dtype, device=device)


def _bincount2d(truth: torch.Tensor, pred: torch.Tensor, k: int) -> torch.Tensor:
    """``[k, k]`` counts of (true class, predicted class) pairs."""
    return torch.bincount(truth * k + pred, minlength=k * k).view(k, k)


class LossMeter(SumMeter):
    """The mean loss per image and the image count: all a task measures when its model only
    returns losses in training (detectors)."""

    def __init__(self, device):
        super().__init__({"loss": _zeros(device, dtype=torch.float64), "count": _zeros(device)})

    def update(self, output, target, loss):
        n = len(target)
        self.sums["loss"] += (loss.detach() * n).double()
        self.sums["count"] += n

    def running(self):
        return {"loss": self.sums["loss"] / self.sums["count"].clamp(min=1)}

    def summarize(self, s):
        n = max(int(s["count"]), 1)
        return {"loss": float(s["loss"]) / n, "count": int(s["count"])}


class ClassificationMeter(SumMeter):
    """Loss, top-1 and top-5 accuracy and (``confusion=True``) the confusion matrix (rows: true
    class) with the accuracy of every class present. ``output`` is the logits ``[B, K]`` (of a
    training-mode ``AuxLogits``: its main logits), ``target`` the labels ``[B]`` or soft targets
    ``[B, K]`` (counted against their largest entry; of ``Distilled`` targets: its targets);
    without a ``loss``, cross-entropy is measured here."""

    def __init__(self, num_classes: int, device, confusion: bool = False, class_names: Sequence[str] | None = None):
        self.num_classes = num_classes
        self.class_names = list(class_names or [str(i) for i in range(num_classes)])
        sums = {"loss": _zeros(device, dtype=torch.float64), "correct": _zeros(device), "correct5": _zeros(device),
                "count": _zeros(device)}
        if confusion:
            sums["confusion"] = _zeros(device, num_classes, num_classes)
        super().__init__(sums)

    @torch.no_grad()
    def update(self, output, target, loss):
        logits, target = getattr(output, "logits", output), getattr(target, "targets", target)
        labels = target.argmax(-1) if target.ndim == 2 else target
        n = labels.shape[0]
        top = logits.topk(min(5, logits.shape[-1]), dim=-1).indices
        hits = top == labels[:, None]
        s = self.sums
        if loss is None:
            s["loss"] += F.cross_entropy(logits.float(), labels, reduction="sum").double()
        else:
            s["loss"] += (loss.detach() * n).double()
        s["correct"] += hits[:, 0].sum()
        s["correct5"] += hits.any(-1).sum()
        s["count"] += n
        if "confusion" in s:
            s["confusion"] += _bincount2d(labels, top[:, 0], self.num_classes)

    def running(self):
        n = self.sums["count"].clamp(min=1)
        return {"loss": self.sums["loss"] / n, "accuracy": self.sums["correct"] / n}

    def summarize(self, s):
        n = max(int(s["count"]), 1)
        out = {"loss": float(s["loss"]) / n, "accuracy": float(s["correct"]) / n, "top5": float(s["correct5"]) / n,
               "count": int(s["count"])}
        if "confusion" in s:
            cm = s["confusion"].cpu()
            out["confusion"] = cm.tolist()
            per_class = cm.diag().double() / cm.sum(1).clamp(min=1)
            out["per_class_accuracy"] = {self.class_names[i]: float(per_class[i])
                                         for i in range(self.num_classes) if cm[i].sum() > 0}
        return out


class SegmentationMeter(SumMeter):
    """Pixel confusion matrix -> mean IoU, mean Dice, pixel accuracy, pixel error and each class's
    IoU and Dice.

    ``output``: logits ``[B, K, h, w]`` (upsampled bilinearly to the mask's size when smaller);
    ``target``: ``{"mask": [B, H, W]}``. Pixels marked ``ignore_index`` are not counted. IoU of
    class c = TP / (TP + FP + FN), its Dice (F1) 2 TP / (2 TP + FP + FN); the means are over the
    classes that occur in the ground truth or the prediction (a class absent from both has no IoU,
    as in the VOC and Cityscapes code). Pixel error: 1 - pixel accuracy (the ISBI 2012 challenge's).
    Loss: the mean per image; without a ``loss``, pixel cross-entropy is measured here.
    """

    def __init__(self, num_classes: int, device, ignore_index: int, class_names: Sequence[str] | None = None):
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.class_names = list(class_names or [str(i) for i in range(num_classes)])
        super().__init__({"loss": _zeros(device, dtype=torch.float64), "count": _zeros(device),
                          "confusion": _zeros(device, num_classes, num_classes)})

    @torch.no_grad()
    def update(self, logits, target, loss):
        mask = target["mask"]
        logits = resize_logits(logits, mask)
        s, n = self.sums, mask.shape[0]
        if loss is None:
            loss = F.cross_entropy(logits.float(), mask, ignore_index=self.ignore_index)
        s["loss"] += (loss.detach() * n).double()
        s["count"] += n
        valid = mask != self.ignore_index
        s["confusion"] += _bincount2d(mask[valid], logits.argmax(1)[valid], self.num_classes)

    def running(self):
        cm = self.sums["confusion"]
        return {"loss": self.sums["loss"] / self.sums["count"].clamp(min=1),
                "pixel_accuracy": cm.diag().sum() / cm.sum().clamp(min=1)}

    def summarize(self, s):
        cm = s["confusion"].cpu().double()
        tp, truth, pred = cm.diag(), cm.sum(1), cm.sum(0)
        union = truth + pred - tp
        iou, dice = tp / union.clamp(min=1), 2 * tp / (truth + pred).clamp(min=1)
        seen = union > 0
        accuracy = float(tp.sum() / cm.sum().clamp(min=1))
        return {"loss": float(s["loss"]) / max(int(s["count"]), 1),
                "miou": float(iou[seen].mean()) if seen.any() else 0.0,
                "dice": float(dice[seen].mean()) if seen.any() else 0.0,
                "pixel_accuracy": accuracy, "pixel_error": 1.0 - accuracy if cm.sum() > 0 else 0.0,
                "count": int(s["count"]), "confusion": s["confusion"].cpu().tolist(),
                "per_class_iou": {self.class_names[i]: float(iou[i]) for i in range(self.num_classes) if seen[i]},
                "per_class_dice": {self.class_names[i]: float(dice[i]) for i in range(self.num_classes) if seen[i]}}


def resize_logits(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Dense logits at the mask's resolution (bilinear), e.g. the stride-8 output of a segmenter."""
    if logits.shape[-2:] == mask.shape[-2:]:
        return logits
    return F.interpolate(logits.float(), size=mask.shape[-2:], mode="bilinear", align_corners=False)


class GatheredMeter(Meter):
    """Keeps every image's prediction and target (on the CPU); ``compute`` gathers them from all
    processes and scores them with :meth:`score`. ``output`` and ``target`` are lists with one
    dict of tensors per image."""

    def __init__(self):
        self.predictions: list[dict] = []
        self.targets: list[dict] = []

    @torch.no_grad()
    def update(self, output, target, loss):
        cpu = lambda d: {k: v.detach().cpu() for k, v in d.items()}
        self.predictions += [cpu(p) for p in output]
        self.targets += [cpu(t) for t in target]

    def gather(self) -> tuple[list[dict], list[dict]]:
        """Every process's predictions and targets, in rank order (collective under torchrun)."""
        if not dist.enabled():
            return self.predictions, self.targets
        parts = [None] * dist.world_size()
        td.all_gather_object(parts, (self.predictions, self.targets))
        return [p for ps, _ in parts for p in ps], [t for _, ts in parts for t in ts]

    def compute(self) -> dict:
        return self.score(*self.gather())

    def score(self, predictions: list[dict], targets: list[dict]) -> dict:
        raise NotImplementedError


class DetectionMeter(GatheredMeter):
    """COCO box evaluation by pycocotools (Lin et al. 2014): ``map`` (AP averaged over IoU 0.5,
    0.55, ..., 0.95, and over the classes with ground truth), ``map50``, ``map75``, ``per_class``
    (``{name: {"map": AP@[.5:.95], "map50": AP@0.5}}`` of each class with ground truth, also in
    ``ap50_per_class`` as ``{name: AP@0.5}``) and ``count`` (images). Each AP is pycocotools' area
    under the 101-point interpolated precision-recall curve, all object sizes, at most 100
    detections per image; the numbers are those of ``COCOeval.summarize()`` on the same boxes.

    Predictions: ``{"boxes" [n, 4], "scores" [n], "labels" [n]}``; targets: ``{"boxes" [k, 4],
    "labels" [k]}`` and optionally ``"difficult"`` [k] (VOC difficult, COCO crowd), xyxy in the
    same pixels. Difficult objects are given to pycocotools as ``iscrowd``: a detection matching
    one (by its overlap over the detection's area) counts neither as a hit nor as a false
    positive, and the object is not needed for full recall. A class whose every object is
    difficult has no AP. With no ground truth at all every number is 0.

    Instance masks: where the predictions carry ``masks`` (``[n, 1, H, W]`` probabilities, or
    ``[n, H, W]``) and the targets ``masks`` (``[k, H, W]``, bool or 0/1, the same pixels), COCO's
    mask AP is added the same way (pycocotools, ``iouType="segm"``: overlaps of masks instead of
    boxes): ``mask_map``, ``mask_map50``, ``mask_map75`` and ``mask_map`` / ``mask_map50`` in each
    ``per_class`` entry. Predicted masks are binarised above 0.5, as torchvision's COCO evaluation
    does. Masks are kept as compressed RLE (``update`` encodes them), so memory stays small.
    """

    def __init__(self, num_classes: int, class_names: Sequence[str] | None = None):
        super().__init__()
        self.num_classes = num_classes
        self.class_names = list(class_names or [str(i) for i in range(num_classes)])

    @torch.no_grad()
    def update(self, output, target, loss):
        def keep(d):
            out = {k: v.detach().cpu() for k, v in d.items() if k != "masks"}
            if "masks" in d:
                m = d["masks"].detach()
                m = m.reshape(m.shape[0], *m.shape[-2:]) if m.dim() == 4 else m
                out["masks"] = mask_rles((m if m.dtype == torch.bool else m > 0.5).cpu())
            return out

        self.predictions += [keep(p) for p in output]
        self.targets += [keep(t) for t in target]

    def score(self, predictions, targets):
        result = self._score(predictions, targets, "bbox")
        if targets and all("masks" in r for r in (*predictions, *targets)):
            masks = self._score(predictions, targets, "segm")
            result.update({f"mask_{k}": masks[k] for k in ("map", "map50", "map75")})
            for name, v in result["per_class"].items():
                v.update(mask_map=masks["per_class"].get(name, {}).get("map", 0.0),
                         mask_map50=masks["per_class"].get(name, {}).get("map50", 0.0))
        return result

    def _score(self, predictions, targets, iou_type: str):
        import numpy as np

        precision = coco_precision(predictions, targets, self.num_classes, iou_type)  # [T, R, K]

        def mean(p):
            p = p[p > -1]
            return float(np.mean(p)) if p.size else None

        per_class = {}
        for k, name in enumerate(self.class_names):
            ap = mean(precision[:, :, k])
            if ap is not None:
                per_class[name] = {"map": ap, "map50": mean(precision[0, :, k])}
        return {"map": mean(precision) or 0.0, "map50": mean(precision[0]) or 0.0, "map75": mean(precision[5]) or 0.0,
                "count": len(targets), "per_class": per_class,
                "ap50_per_class": {k: v["map50"] for k, v in per_class.items()}}


def mask_rles(masks: torch.Tensor) -> list[dict]:
    """COCO compressed RLEs (``{"size": [h, w], "counts": str, "area": int}``) of boolean masks
    ``[n, H, W]`` (``pycocotools.mask``; ``counts`` as text, so results stay JSON and pickle)."""
    import numpy as np
    from pycocotools import mask as mask_utils

    if masks.dtype != torch.bool or masks.dim() != 3:
        raise ValueError(f"masks must be bool [n, H, W], got {masks.dtype} {tuple(masks.shape)}")
    if not len(masks):
        return []
    rles = mask_utils.encode(np.asfortranarray(masks.permute(1, 2, 0).numpy().astype(np.uint8)))
    areas = mask_utils.area(rles)
    return [{"size": [int(v) for v in r["size"]], "counts": r["counts"].decode("ascii"), "area": int(a)}
            for r, a in zip(rles, areas)]


def coco_precision(predictions: list[dict], targets: list[dict], num_classes: int, iou_type: str = "bbox"):
    """pycocotools' accumulated precision ``[T=10 IoU thresholds, R=101 recall points, K classes]``
    (all areas, 100 detections per image; -1 where a class has no ground truth) of these boxes, or
    with ``iou_type="segm"`` of their masks (``masks``: one compressed RLE dict per box, as
    :func:`mask_rles` writes them)."""
    import contextlib
    import io

    import numpy as np
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if iou_type not in ("bbox", "segm"):
        raise ValueError(f"iou_type must be 'bbox' or 'segm', got {iou_type!r}")
    segm = iou_type == "segm"
    sizes = {}  # image id -> (h, w): pycocotools reads a mask's image size from its image entry

    def annotations(rows, crowd=None, scores=None):
        out = []
        for i, r in enumerate(rows):
            boxes = r["boxes"].double().reshape(-1, 4).tolist()
            labels = r["labels"].reshape(-1).tolist()
            flags = r.get(crowd) if crowd else None
            flags = flags.reshape(-1).tolist() if flags is not None else [0] * len(boxes)
            sc = r["scores"].reshape(-1).tolist() if scores else [None] * len(boxes)
            masks = r["masks"] if segm else [None] * len(boxes)
            if len(masks) != len(boxes):
                raise ValueError(f"image {i}: {len(masks)} masks for {len(boxes)} boxes")
            for (x1, y1, x2, y2), c, f, s, m in zip(boxes, labels, flags, sc, masks):
                a = {"id": len(out) + 1, "image_id": i + 1, "category_id": int(c) + 1,  # ids from 1: pycocotools
                     "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": int(bool(f))}
                if m is not None:
                    size = tuple(m["size"])
                    if sizes.setdefault(i + 1, size) != size:
                        raise ValueError(f"image {i}: masks of {sizes[i + 1]} and {size} pixels (height, width); "
                                         "predicted and true masks must be in the same pixels")
                    a.update(segmentation={"size": list(size), "counts": m["counts"]}, area=float(m["area"]))
                if s is not None:  # treats a matched ground-truth id of 0 as no match
                    a["score"] = float(s)
                out.append(a)
        return out

    def coco(anns):
        c = COCO()
        images = [{"id": i + 1} for i in range(len(targets))]
        for im in images:
            if im["id"] in sizes:
                im["height"], im["width"] = sizes[im["id"]]
        c.dataset = {"images": images, "annotations": anns, "categories": [{"id": k + 1} for k in range(num_classes)]}
        c.createIndex()
        return c

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        truth_anns, det_anns = annotations(targets, crowd="difficult"), annotations(predictions, scores=True)
        truth, dets = coco(truth_anns), coco(det_anns)
        e = COCOeval(truth, dets, iou_type)
        e.evaluate()
        e.accumulate()
    if "precision" not in e.eval:  # pragma: no cover - no images
        return np.full((10, 101, num_classes), -1.0)
    return e.eval["precision"][:, :, :, 0, -1]


def average_precision(predictions: list[dict], targets: list[dict], cls: int, iou: float = 0.5) -> float | None:
    """AP of class ``cls`` over a set of images (``None`` when it has no ground-truth box):
    detections of all images sorted by score; one is a true positive when it overlaps an
    unmatched ground-truth box of its image by ``iou`` or more (the best-overlapping one, as
    COCO matches), else a false positive."""
    from torchvision.ops import box_iou

    n_truth = sum(int((t["labels"] == cls).sum()) for t in targets)
    if n_truth == 0:
        return None
    scores, hits = [], []
    for p, t in zip(predictions, targets):
        pb, ps = p["boxes"][p["labels"] == cls], p["scores"][p["labels"] == cls]
        tb = t["boxes"][t["labels"] == cls]
        order = ps.argsort(descending=True)
        pb, ps = pb[order], ps[order]
        taken = torch.zeros(len(tb), dtype=torch.bool)
        overlaps = box_iou(pb.float(), tb.float()) if len(tb) and len(pb) else torch.zeros(len(pb), 0)
        for i in range(len(pb)):
            o = overlaps[i].masked_fill(taken, -1.0)
            j = int(o.argmax()) if len(o) else -1
            hit = j >= 0 and float(o[j]) >= iou
            if hit:
                taken[j] = True
            hits.append(hit)
        scores.append(ps)
    if not hits:
        return 0.0
    order = torch.cat(scores).argsort(descending=True, stable=True)
    tp = torch.tensor(hits, dtype=torch.float64)[order].cumsum(0)
    precision = tp / torch.arange(1, len(tp) + 1, dtype=torch.float64)
    recall = tp / n_truth
    # the precision envelope (monotone from the right), integrated over recall steps
    envelope = precision.flip(0).cummax(0).values.flip(0)
    steps = torch.diff(recall, prepend=torch.zeros(1, dtype=torch.float64))
    return float((envelope * steps).sum())
