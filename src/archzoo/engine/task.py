"""What the engine needs to know about a task, behind one small interface.

The :class:`~archzoo.engine.trainer.Trainer` runs the loop (devices, precision, optimizer,
schedule, EMA, checkpoints, distribution); a :class:`Task` says how a batch becomes a loss, what
is measured, how samples are collated and what is drawn at the end. :class:`ClassificationTask`
is the one for classifiers; detection and segmentation plug in with their own.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import distributed as dist
from .mix import mix_batch


class Meter:
    """Sums measured on the device during an epoch (no host sync per step); ``compute()``
    reduces them over processes and returns plain numbers."""

    def __init__(self, sums: dict[str, torch.Tensor]):
        self.sums = sums

    def compute(self) -> dict:
        raise NotImplementedError


class Task:
    """The task-specific half of training. Subclasses define every method."""

    name = "task"
    collate_fn = None  # a DataLoader collate function, or None for the default
    monitor = "loss"  # the validation metric that picks best.safetensors
    monitor_mode = "min"

    def train_batch(self, images: torch.Tensor, targets) -> tuple[torch.Tensor, object]:
        """Last step before the forward pass in training (e.g. mixup); returns ``(inputs, targets)``."""
        return images, targets

    def loss(self, output, targets) -> torch.Tensor:
        raise NotImplementedError

    def meter(self, device: torch.device, train: bool) -> Meter:
        raise NotImplementedError

    def update(self, meter: Meter, output, targets, loss: torch.Tensor | None) -> None:
        raise NotImplementedError

    def report(self, run_dir: Path, model: nn.Module, metrics: dict, samples) -> list[Path]:
        """Draw what a person wants to see at the end of a run; return the files written."""
        return []


class Distilled(NamedTuple):
    """Training targets with the teacher's logits for the same (possibly mixed) images."""

    targets: torch.Tensor
    teacher_logits: torch.Tensor


def _is_aux(output) -> bool:
    from ..models.base import AuxLogits  # imported late: importing the engine does not load every family

    return isinstance(output, AuxLogits)


def _main_logits(output) -> torch.Tensor:
    """The main classifier's logits, also from a training-mode ``AuxLogits``."""
    return output.logits if _is_aux(output) else output


class ClassMeter(Meter):
    def compute(self) -> dict:
        s = {k: dist.all_reduce_sum(v) for k, v in self.sums.items()}
        n = max(int(s["count"]), 1)
        out = {"loss": float(s["loss"]) / n, "accuracy": float(s["correct"]) / n,
               "top5": float(s["correct5"]) / n, "count": int(s["count"])}
        if "confusion" in s:
            out["confusion"] = s["confusion"].tolist()
        return out


class ClassificationTask(Task):
    """Cross-entropy classification with label smoothing, mixup/cutmix and auxiliary heads.

    A model returning :class:`~archzoo.models.base.AuxLogits` in training mode (GoogLeNet,
    Inception-v3) is trained on ``loss(logits) + aux_weight * sum(loss(aux))``; the papers use
    0.3 (Szegedy et al. 2014, arXiv:1409.4842, section 5). Accuracy during training is measured
    against the dominant label of each (possibly mixed) target.

    With a ``teacher`` (a trained classifier of the same classes), knowledge distillation (Hinton
    et al. 2015, arXiv:1503.02531): the loss is ``(1 - distill) * CE(labels) + distill * T^2 *
    KL(softmax(teacher / T) || softmax(student / T))``, the teacher seeing the same augmented
    (and mixed) batch. ``T^2`` keeps the soft term's gradients on the scale of the hard one's.
    """

    name = "classification"
    monitor = "accuracy"
    monitor_mode = "max"

    def __init__(self, num_classes: int, class_names: list[str] | None = None, label_smoothing: float = 0.0,
                 mixup: float = 0.0, cutmix: float = 0.0, mix_prob: float = 1.0, aux_weight: float = 0.3,
                 teacher: nn.Module | None = None, distill: float = 0.0, temperature: float = 4.0):
        self.num_classes = num_classes
        self.class_names = class_names or [str(i) for i in range(num_classes)]
        self.label_smoothing = label_smoothing
        self.mixup, self.cutmix, self.mix_prob = mixup, cutmix, mix_prob
        self.aux_weight = aux_weight
        self.teacher, self.distill, self.temperature = teacher, distill, temperature

    def train_batch(self, images, targets):
        if self.mixup > 0 or self.cutmix > 0:
            images, targets = mix_batch(images, targets, self.num_classes, self.mixup, self.cutmix, self.mix_prob,
                                        self.label_smoothing)
        if self.teacher is not None:
            with torch.no_grad():
                out = self.teacher(images)
            # a copy: under CUDA graphs the teacher's output buffer is rewritten by its next replay
            targets = Distilled(targets, _main_logits(out).float().clone())
        return images, targets

    def _ce(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if targets.ndim == 2:  # soft targets from mixing (smoothing already applied)
            return torch.sum(-targets * F.log_softmax(logits, dim=-1), dim=-1).mean()
        return F.cross_entropy(logits, targets, label_smoothing=self.label_smoothing)

    def loss(self, output, targets) -> torch.Tensor:
        teacher = None
        if isinstance(targets, Distilled):
            targets, teacher = targets
        logits = _main_logits(output)
        loss = self._ce(logits, targets)
        if _is_aux(output):
            loss = loss + self.aux_weight * sum(self._ce(a, targets) for a in output.aux)
        if teacher is None:
            return loss
        t = self.temperature
        soft = F.kl_div(F.log_softmax(logits.float() / t, dim=-1), F.log_softmax(teacher / t, dim=-1),
                        reduction="batchmean", log_target=True) * t * t
        return (1 - self.distill) * loss + self.distill * soft

    def meter(self, device, train: bool) -> ClassMeter:
        sums = {k: torch.zeros((), dtype=torch.float64 if k == "loss" else torch.int64, device=device)
                for k in ("loss", "correct", "correct5", "count")}
        if not train:
            sums["confusion"] = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64, device=device)
        return ClassMeter(sums)

    @torch.no_grad()
    def update(self, meter, output, targets, loss):
        logits = _main_logits(output)
        if isinstance(targets, Distilled):
            targets = targets.targets
        labels = targets.argmax(-1) if targets.ndim == 2 else targets
        n = labels.shape[0]
        k = min(5, logits.shape[-1])
        top = logits.topk(k, dim=-1).indices
        hits = top == labels[:, None]
        s = meter.sums
        if loss is None:
            loss = F.cross_entropy(logits.float(), labels, reduction="sum")
        else:
            loss = loss.detach() * n
        s["loss"] += loss.double()
        s["correct"] += hits[:, 0].sum()
        s["correct5"] += hits.any(-1).sum()
        s["count"] += n
        if "confusion" in s:
            idx = labels * self.num_classes + top[:, 0]
            s["confusion"] += torch.bincount(idx, minlength=self.num_classes ** 2).view(self.num_classes, -1)

    def report(self, run_dir, model, metrics, samples) -> list[Path]:
        from . import report

        files = []
        if metrics.get("confusion"):
            files.append(report.plot_confusion(metrics["confusion"], self.class_names, Path(run_dir) / "confusion.png"))
        if samples is not None:
            files.append(report.prediction_grid(model, *samples, class_names=self.class_names,
                                                path=Path(run_dir) / "predictions.png"))
        return files
