"""What the engine needs to know about a task, behind one interface: :class:`Task`.

The :class:`~archzoo.engine.trainer.Trainer` runs the loop (devices, precision, optimizer,
schedule, EMA, checkpoints, distribution, progress); a task says everything else:

* targets and batches: on-device augmentation of in-memory sets (:meth:`Task.batch_augment`,
  :attr:`Task.device_keys`, :meth:`Task.device_batch`) or a per-sample transform and a collate
  function for a DataLoader (:meth:`Task.sample_transform`, :meth:`Task.collate`);
* a step: :meth:`Task.train_batch` (e.g. mixup), :meth:`Task.forward`, :meth:`Task.loss`;
* measuring: :meth:`Task.meter` (see :mod:`.metrics`), the logged fields and the metric that
  picks ``best.safetensors``;
* the end of a run: :meth:`Task.report` (pictures); ``archzoo eval`` and ``archzoo predict``:
  :meth:`Task.eval_result`, :meth:`Task.eval_tables`, :meth:`Task.input_transform`, :meth:`Task.predict`.

:class:`ClassificationTask` is here; :class:`~archzoo.engine.segmentation.SegmentationTask` and
:class:`~archzoo.engine.detection.DetectionTask` plug in the same way; :func:`make_task` picks
one by name (a dataset's ``task``, a model card's ``task``).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .metrics import ClassificationMeter, Meter
from .mix import mix_batch


class Task:
    """The task-specific half of training; subclasses fill in what they need (see the module doc).

    ``train_fields`` / ``val_fields``: the metrics logged per epoch (as ``train_<f>`` /
    ``val_<f>``: columns of ``metrics.csv``, fields of the summary); ``monitor`` (one of the
    ``val_fields``) and ``monitor_mode`` pick ``best.safetensors``.
    """

    name = "task"
    monitor, monitor_mode = "loss", "min"
    train_fields: tuple[str, ...] = ("loss",)
    val_fields: tuple[str, ...] = ("loss",)
    device_keys: tuple[str, ...] = ()  # the per-item targets kept on the device; () = no on-device path

    def __init__(self, num_classes: int, class_names: list[str] | None = None):
        self.num_classes = num_classes
        self.class_names = list(class_names or [str(i) for i in range(num_classes)])

    # --- batches --------------------------------------------------------------------------------
    def batch_augment(self, train: bool, cfg, input_size: int, mean, std, in_chans: int):
        """A :class:`~archzoo.data.gpu.BatchAugment` for in-memory data, or ``None`` where the
        task (or this recipe) needs the per-sample path."""
        if not self.device_keys or (train and (cfg.augment not in ("basic", "none") or cfg.crop_size)):
            return None
        from ..data.gpu import BatchAugment

        small = input_size <= 64
        return BatchAugment(input_size, mean, std, pad=cfg.pad if small else 0, flip=cfg.flip,
                            train=train and cfg.augment == "basic", in_chans=in_chans,
                            scale=None if small else (0.08, 1.0), erase=cfg.erase if train else 0.0)

    def device_batch(self, augment, images: torch.Tensor, targets: dict[str, torch.Tensor]):
        """``(model input, batch target)`` from a uint8 batch and its ``device_keys`` targets."""
        raise NotImplementedError

    def sample_transform(self, train: bool, cfg, input_size: int, mean, std, in_chans: int):
        """``(uint8 image, target) -> (model input, target)``, for a DataLoader."""
        raise NotImplementedError

    def collate(self, samples: list) -> tuple[torch.Tensor, object]:
        """``(images [B, ...], batch target)`` from a list of transformed samples."""
        raise NotImplementedError

    # --- a step ---------------------------------------------------------------------------------
    def train_batch(self, images: torch.Tensor, targets) -> tuple[torch.Tensor, object]:
        """Last step before the forward pass in training (e.g. mixup); returns ``(inputs, targets)``."""
        return images, targets

    def forward(self, model: nn.Module, images: torch.Tensor, targets):
        """The training forward pass (a detector also takes the targets)."""
        return model(images)

    def loss(self, output, targets) -> torch.Tensor:
        raise NotImplementedError

    def meter(self, device: torch.device, train: bool) -> Meter:
        raise NotImplementedError

    # --- the end of a run, eval and predict ----------------------------------------------------
    def report(self, run_dir: Path, model: nn.Module, metrics: dict, data, preprocess) -> list[Path]:
        """Draw what a person wants to see at the end of a run from the validation ``metrics``
        and a few items of ``data`` (``preprocess``: uint8 batch -> model input, an eval-mode
        ``BatchAugment``); return the files written."""
        return []

    def eval_result(self, metrics: dict) -> dict:
        """The numbers ``archzoo eval --json`` prints."""
        return {k: v for k, v in metrics.items() if k != "confusion"}

    def eval_tables(self, metrics: dict) -> list[tuple[str | None, list[str], list[list]]]:
        """``(title, columns, rows)`` tables ``archzoo eval`` prints (title ``None``: the command's)."""
        rows = [[k, _fmt(k, v)] for k, v in metrics.items() if isinstance(v, (int, float))]
        return [(None, ["metric", "value"], rows)]

    def input_transform(self, input_size: int, mean, std, in_chans: int):
        """uint8 image ``[C, H, W]`` -> model input, the way this task evaluates."""
        from ..data.transforms import DenseTransform

        tf = DenseTransform(False, input_size, mean, std, in_chans=in_chans)
        return lambda image: tf(image, {})[0]

    def predict(self, model: nn.Module, x: torch.Tensor, image_size: tuple[int, int], topk: int) -> dict:
        """What ``archzoo predict`` reports for one image: ``{"top": [{"class", "index", ...}]}``
        (``x``: its model input ``[1, C, s, s]``; ``image_size``: the original ``(H, W)``)."""
        raise NotImplementedError


def _fmt(name: str, value) -> str:
    if isinstance(value, int):
        return str(value)
    return f"{value:.4f}" if "loss" in name else f"{value:.2%}"


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


class _ImageOnly:
    """A per-image transform as a ``(image, target)`` one: classification targets do not move."""

    def __init__(self, transform):
        self.transform = transform

    def __call__(self, image, target):
        return self.transform(image), target


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

    Batch targets are the labels ``[B]`` (a tensor, not a dict: the fast path stays lean).
    """

    name = "classification"
    monitor, monitor_mode = "accuracy", "max"
    train_fields = ("loss", "accuracy")
    val_fields = ("loss", "accuracy", "top5")
    device_keys = ("label",)

    def __init__(self, num_classes: int, class_names: list[str] | None = None, label_smoothing: float = 0.0,
                 mixup: float = 0.0, cutmix: float = 0.0, mix_prob: float = 1.0, aux_weight: float = 0.3,
                 teacher: nn.Module | None = None, distill: float = 0.0, temperature: float = 4.0):
        super().__init__(num_classes, class_names)
        self.label_smoothing = label_smoothing
        self.mixup, self.cutmix, self.mix_prob = mixup, cutmix, mix_prob
        self.aux_weight = aux_weight
        self.teacher, self.distill, self.temperature = teacher, distill, temperature

    # --- batches --------------------------------------------------------------------------------
    def device_batch(self, augment, images, targets):
        return augment(images), targets["label"]

    def sample_transform(self, train, cfg, input_size, mean, std, in_chans):
        from ..data import build_transform

        return _ImageOnly(build_transform(train, input_size, mean, std, augment=cfg.augment if train else "none",
                                          in_chans=in_chans, pad=cfg.pad, flip=cfg.flip, erase=cfg.erase))

    @staticmethod
    def collate(samples):
        return torch.stack([x for x, _ in samples]), torch.stack([t["label"] for _, t in samples])

    # --- a step ---------------------------------------------------------------------------------
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

    def meter(self, device, train: bool) -> ClassificationMeter:
        return ClassificationMeter(self.num_classes, device, confusion=not train, class_names=self.class_names)

    # --- the end of a run, eval and predict ----------------------------------------------------
    def report(self, run_dir, model, metrics, data, preprocess) -> list[Path]:
        from . import report

        files = []
        if metrics.get("confusion"):
            files.append(report.plot_confusion(metrics["confusion"], self.class_names, Path(run_dir) / "confusion.png"))
        if data is not None and len(data):
            images, targets = report.first_items(data, 16, preprocess.size)
            labels = torch.stack([t["label"] for t in targets])
            files.append(report.prediction_grid(model, images, labels, preprocess, class_names=self.class_names,
                                                path=Path(run_dir) / "predictions.png"))
        return files

    def eval_result(self, metrics):
        keys = ("accuracy", "top5", "loss", "count", "per_class_accuracy")
        out = {k: metrics[k] for k in keys}
        if self.num_classes <= 100:
            out["confusion"] = metrics["confusion"]
        return out

    def eval_tables(self, metrics):
        tables = [(None, ["metric", "value"], [["top-1 accuracy", f"{metrics['accuracy']:.2%}"],
                                               ["top-5 accuracy", f"{metrics['top5']:.2%}"],
                                               ["loss", f"{metrics['loss']:.4f}"], ["images", metrics["count"]]])]
        per_class = metrics["per_class_accuracy"]
        if len(per_class) <= 30:
            tables.append(("per class", ["class", "accuracy"], [[k, f"{v:.1%}"] for k, v in per_class.items()]))
        return tables

    def input_transform(self, input_size, mean, std, in_chans):
        from ..data import build_transform

        return build_transform(False, input_size, mean, std, in_chans=in_chans)

    @torch.no_grad()
    def predict(self, model, x, image_size, topk):
        probs = model(x).float().softmax(-1)[0].cpu()
        p, idx = probs.topk(min(topk, len(probs)))
        return {"top": [{"class": self.class_names[i], "index": i, "probability": float(q)}
                        for q, i in zip(p.tolist(), idx.tolist())]}


def make_task(name: str, class_names: list[str], *, num_classes: int | None = None, cfg=None,
              teacher: nn.Module | None = None, train_data=None, model: nn.Module | None = None) -> Task:
    """The task called ``name`` (``classification``, ``segmentation``, ``detection``) for these
    classes, configured from the recipe ``cfg`` (a :class:`~archzoo.engine.config.TrainConfig`).
    ``train_data``: the training set, whose class frequencies weigh the ``wce`` and ``unet`` losses;
    ``model``: the model (``super_resolution`` takes its ``scale``)."""
    from ..data.transforms import DETECTION_AUGMENTS, SEGMENTATION_AUGMENTS
    from ..validate import UserError
    from .config import TrainConfig

    cfg = cfg or TrainConfig()
    num_classes = num_classes or len(class_names)
    if cfg.crop_size and name == "classification":
        raise UserError("crop_size (--crop-size) crops detection and segmentation samples; a classifier's crops come "
                        "from --augment (random-resized or pad-and-crop)")
    if cfg.loss != "ce" and name not in ("segmentation", "super_resolution"):
        raise UserError(f"loss {cfg.loss!r}: --loss chooses a segmentation loss; a {name} run trains on "
                        f"{'cross-entropy' if name == 'classification' else 'its detector losses'} (leave --loss out)")
    if name == "classification":
        return ClassificationTask(num_classes, class_names, label_smoothing=cfg.label_smoothing, mixup=cfg.mixup,
                                  cutmix=cfg.cutmix, mix_prob=cfg.mix_prob, aux_weight=cfg.aux_weight, teacher=teacher,
                                  distill=cfg.distill, temperature=cfg.distill_temperature)
    recipes = {"detection": DETECTION_AUGMENTS, "segmentation": SEGMENTATION_AUGMENTS}.get(name, ())
    unsupported = {"mixup": cfg.mixup > 0, "cutmix": cfg.cutmix > 0, "erase": cfg.erase > 0,
                   "teacher": teacher is not None or cfg.distill > 0,
                   f"augment {cfg.augment}": cfg.augment not in ("basic", "none", *recipes)}
    if name == "detection":
        unsupported["label_smoothing"] = cfg.label_smoothing > 0
    bad = [k for k, on in unsupported.items() if on]
    if bad:
        augments = ", ".join(("basic", "none", *recipes))
        raise UserError(f"{', '.join(bad)}: not available for a {name} model (these options are classification's; "
                        f"--augment takes {augments} here)")
    if name == "segmentation":
        from ..segmentation.losses import CLASS_WEIGHTED, dataset_class_weights, parse_loss
        from .segmentation import SegmentationTask

        weights = None
        if any(term in CLASS_WEIGHTED for _, term in parse_loss(cfg.loss)):
            if train_data is None:
                raise ValueError(f"loss {cfg.loss!r} weighs classes by their frequency in the training set: "
                                 "pass train_data")
            weights = dataset_class_weights(train_data, num_classes)
        return SegmentationTask(num_classes, class_names, label_smoothing=cfg.label_smoothing,
                                aux_weight=cfg.aux_weight, loss=cfg.loss, class_weights=weights)
    if name == "detection":
        from .detection import DetectionTask

        return DetectionTask(num_classes, class_names)
    if name == "graph":  # superpixel-graph classifiers (archzoo.graph), trained on classification data
        from .graph import GraphTask

        if cfg.crop_size:
            raise UserError("crop_size (--crop-size): a graph model sees whole images (the superpixels of the image "
                            "at --image-size); leave --crop-size out")
        return GraphTask(num_classes, class_names, label_smoothing=cfg.label_smoothing)
    if name == "super_resolution":  # --loss l2 (the paper's; "ce", the recipe default, means it too) or l1
        from .super_resolution import SuperResolutionTask

        if cfg.crop_size:
            raise UserError("crop_size (--crop-size): a super-resolution run cuts patches of --image-size (the input "
                            "side) times the model's scale; leave --crop-size out")
        return SuperResolutionTask(getattr(model, "scale", 4), loss="l2" if cfg.loss == "ce" else cfg.loss)
    if name == "captioning":  # class_names: the vocabulary (archzoo.data.captions)
        from .captioning import CaptioningTask

        if cfg.crop_size or cfg.label_smoothing > 0:
            raise UserError("crop_size (--crop-size) and label_smoothing (--label-smoothing): not available for a "
                            "captioning model (it sees whole images and trains on cross-entropy of the next word)")
        return CaptioningTask(num_classes, class_names)
    raise ValueError(f"unknown task {name!r}; tasks: classification, segmentation, detection, graph, super_resolution, "
                     "captioning (style transfer trains with archzoo stylize --train)")

