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
    """Pixel confusion matrix -> mean IoU, pixel accuracy and each class's IoU.

    ``output``: logits ``[B, K, h, w]`` (upsampled bilinearly to the mask's size when smaller);
    ``target``: ``{"mask": [B, H, W]}``. Pixels marked ``ignore_index`` are not counted. IoU of
    class c = TP / (TP + FP + FN); the mean is over the classes that occur in the ground truth
    or the prediction (a class absent from both has no IoU, as in the VOC and Cityscapes code).
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
        iou = tp / union.clamp(min=1)
        seen = union > 0
        return {"loss": float(s["loss"]) / max(int(s["count"]), 1),
                "miou": float(iou[seen].mean()) if seen.any() else 0.0,
                "pixel_accuracy": float(tp.sum() / cm.sum().clamp(min=1)),
                "count": int(s["count"]), "confusion": s["confusion"].cpu().tolist(),
                "per_class_iou": {self.class_names[i]: float(iou[i]) for i in range(self.num_classes) if seen[i]}}


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
    """Average precision at IoU 0.5 for each class and its mean over the classes that have
    ground truth (``map50``), as in PASCAL VOC 2010+ (the area under the interpolated
    precision-recall curve; Everingham et al. 2010). Predictions: ``{"boxes" [n, 4], "scores"
    [n], "labels" [n]}``; targets: ``{"boxes" [k, 4], "labels" [k]}``, xyxy in the same pixels.
    COCO's mAP over IoU 0.5:0.95 (pycocotools) plugs in the same way."""

    def __init__(self, num_classes: int, class_names: Sequence[str] | None = None, iou: float = 0.5):
        super().__init__()
        self.num_classes, self.iou = num_classes, iou
        self.class_names = list(class_names or [str(i) for i in range(num_classes)])

    def score(self, predictions, targets):
        ap = {c: average_precision(predictions, targets, c, self.iou) for c in range(self.num_classes)}
        ap = {self.class_names[c]: v for c, v in ap.items() if v is not None}
        return {"map50": sum(ap.values()) / len(ap) if ap else 0.0, "count": len(targets), "ap50_per_class": ap}


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
