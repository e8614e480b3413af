"""Semantic segmentation as an engine task: a class for every pixel.

The model maps images ``[B, C, s, s]`` to logits ``[B, K, h, w]`` (any ``h, w``: a stride-8
output is upsampled to the mask, as FCN and DeepLab do); targets are ``{"mask": int64 [B, s, s]}``
(:data:`~archzoo.data.IGNORE_INDEX` where a pixel is not scored). In-memory sets train on the
device fast path: :class:`~archzoo.data.gpu.BatchAugment` crops and flips the masks with the images.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from ..data.dataset import IGNORE_INDEX
from .metrics import SegmentationMeter, resize_logits
from .task import Task


class SegmentationTask(Task):
    """Pixel-wise cross-entropy (Long et al. 2015, arXiv:1411.4038), pixels at ``ignore_index``
    left out; scored by mean IoU over the classes from the pixel confusion matrix.

    A model returning :class:`~archzoo.models.base.AuxLogits` in training mode (an auxiliary
    head on an earlier stage, as PSPNet and DeepLab train) is trained on ``loss(logits) +
    aux_weight * sum(loss(aux))``.
    """

    name = "segmentation"
    monitor, monitor_mode = "miou", "max"
    train_fields = ("loss", "pixel_accuracy")
    val_fields = ("loss", "miou", "pixel_accuracy")
    device_keys = ("mask",)

    def __init__(self, num_classes: int, class_names: list[str] | None = None, ignore_index: int = IGNORE_INDEX,
                 label_smoothing: float = 0.0, aux_weight: float = 0.3):
        super().__init__(num_classes, class_names)
        self.ignore_index, self.label_smoothing, self.aux_weight = ignore_index, label_smoothing, aux_weight

    # --- batches --------------------------------------------------------------------------------
    def device_batch(self, augment, images, targets):
        x, mask = augment(images, targets["mask"])
        return x, {"mask": mask.long()}

    def sample_transform(self, train, cfg, input_size, mean, std, in_chans):
        from ..data.transforms import DenseTransform

        return DenseTransform(train, input_size, mean, std, in_chans=in_chans, pad=cfg.pad, flip=cfg.flip)

    @staticmethod
    def collate(samples):
        return torch.stack([x for x, _ in samples]), {"mask": torch.stack([t["mask"] for _, t in samples])}

    # --- a step ---------------------------------------------------------------------------------
    def _ce(self, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(resize_logits(logits, mask).float(), mask, ignore_index=self.ignore_index,
                               label_smoothing=self.label_smoothing)

    def loss(self, output, targets):
        mask = targets["mask"]
        loss = self._ce(getattr(output, "logits", output), mask)
        for aux in getattr(output, "aux", ()):
            loss = loss + self.aux_weight * self._ce(aux, mask)
        return loss

    def meter(self, device, train):
        return SegmentationMeter(self.num_classes, device, self.ignore_index, self.class_names)

    # --- the end of a run, eval and predict ----------------------------------------------------
    def report(self, run_dir, model, metrics, data, preprocess):
        from . import report

        files = []
        if metrics.get("confusion"):
            files.append(report.plot_confusion(metrics["confusion"], self.class_names, Path(run_dir) / "confusion.png",
                                               unit="pixels"))
        if data is not None and len(data):
            images, targets = report.first_items(data, 8, preprocess.size)
            masks = torch.stack([t["mask"] for t in targets])
            files.append(report.segmentation_grid(model, images, masks, preprocess, self.class_names,
                                                  Path(run_dir) / "predictions.png", ignore_index=self.ignore_index))
        return files

    def eval_result(self, metrics):
        out = {k: metrics[k] for k in ("miou", "pixel_accuracy", "loss", "count", "per_class_iou")}
        if self.num_classes <= 100:
            out["confusion"] = metrics["confusion"]
        return out

    def eval_tables(self, metrics):
        rows = [["mean IoU", f"{metrics['miou']:.2%}"], ["pixel accuracy", f"{metrics['pixel_accuracy']:.2%}"],
                ["loss", f"{metrics['loss']:.4f}"], ["images", metrics["count"]]]
        tables = [(None, ["metric", "value"], rows)]
        if len(metrics["per_class_iou"]) <= 30:
            tables.append(("per class", ["class", "IoU"], [[k, f"{v:.1%}"] for k, v in metrics["per_class_iou"].items()]))
        return tables

    @torch.no_grad()
    def predict(self, model, x, image_size, topk):
        """The classes covering the most of the image (``share``: their fraction of its pixels;
        the logits are resized from the model's input size to the image's)."""
        logits = model(x).float()
        logits = F.interpolate(logits, size=tuple(image_size), mode="bilinear", align_corners=False)
        mask = logits.argmax(1)[0].cpu()
        share = torch.bincount(mask.flatten(), minlength=self.num_classes).double() / mask.numel()
        q, idx = share.topk(min(topk, self.num_classes))
        top = [{"class": self.class_names[i], "index": i, "share": float(v)} for v, i in zip(q.tolist(), idx.tolist()) if v > 0]
        return {"top": top}
