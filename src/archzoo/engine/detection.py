"""Object detection as an engine task, for detectors shaped like torchvision's.

The contract a detector keeps (``torchvision.models.detection.GeneralizedRCNN`` keeps it too):

* training mode: ``model(images, targets)`` returns a dict of named losses; the task trains on
  their sum and logs it;
* eval mode: ``model(images)`` returns one dict per image: ``boxes`` ``[n, 4]`` (xyxy, in the
  input's pixels), ``scores`` ``[n]``, ``labels`` ``[n]`` (indices into the class names).

Targets are a list with one ``{"boxes": [k, 4], "labels": [k]}`` per image, since images hold
different numbers of objects; images are resized to one square input size, so they stack.
Batches come from a DataLoader: :class:`~archzoo.data.transforms.DenseTransform` moves the boxes
with each flip and crop. The metric gathers every process's predictions (:class:`DetectionMeter`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from .metrics import DetectionMeter, LossMeter
from .task import Task


class DetectionTask(Task):
    """Train on the sum of the detector's losses; score AP at IoU 0.5 (``map50``)."""

    name = "detection"
    monitor, monitor_mode = "map50", "max"
    train_fields = ("loss",)
    val_fields = ("map50",)

    def sample_transform(self, train, cfg, input_size, mean, std, in_chans):
        from ..data.transforms import DenseTransform

        return DenseTransform(train, input_size, mean, std, in_chans=in_chans, pad=cfg.pad, flip=cfg.flip, boxes=True)

    @staticmethod
    def collate(samples):
        keep = ("boxes", "labels")
        return torch.stack([x for x, _ in samples]), [{k: t[k] for k in keep} for _, t in samples]

    def forward(self, model, images, targets):
        return model(images, targets)

    def loss(self, output: dict[str, torch.Tensor], targets) -> torch.Tensor:
        return sum(output.values())

    def meter(self, device, train):
        return LossMeter(device) if train else DetectionMeter(self.num_classes, self.class_names)

    def report(self, run_dir, model, metrics, data, preprocess):
        from . import report

        if data is None or not len(data):
            return []
        images, targets = report.first_items(data, 8, preprocess.size)
        return [report.detection_grid(model, images, targets, preprocess, self.class_names,
                                      Path(run_dir) / "predictions.png")]

    def eval_result(self, metrics):
        return {k: metrics[k] for k in ("map50", "count", "ap50_per_class")}

    def eval_tables(self, metrics):
        tables = [(None, ["metric", "value"], [["mAP@0.5", f"{metrics['map50']:.2%}"], ["images", metrics["count"]]])]
        tables.append(("per class", ["class", "AP@0.5"], [[k, f"{v:.1%}"] for k, v in metrics["ap50_per_class"].items()]))
        return tables

    @torch.no_grad()
    def predict(self, model, x, image_size, topk):
        """The ``topk`` highest-scoring boxes, in the original image's pixels."""
        det = model(x)[0]
        h, w = image_size
        scale = torch.tensor([w / x.shape[-1], h / x.shape[-2]] * 2)
        order = det["scores"].argsort(descending=True)[:topk].cpu()
        boxes, scores, labels = (det[k].cpu()[order] for k in ("boxes", "scores", "labels"))
        return {"top": [{"class": self.class_names[int(c)], "index": int(c), "score": float(s),
                         "box": [round(float(v), 1) for v in b * scale]} for b, s, c in zip(boxes, scores, labels)]}
