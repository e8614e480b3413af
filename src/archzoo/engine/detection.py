"""Object detection as an engine task, for detectors shaped like torchvision's.

The contract a detector keeps (``torchvision.models.detection.GeneralizedRCNN`` keeps it too):

* training mode: ``model(images, targets)`` returns a dict of named losses; the task trains on
  their sum and logs it;
* eval mode: ``model(images)`` returns one dict per image: ``boxes`` ``[n, 4]`` (xyxy, in the
  input's pixels), ``scores`` ``[n]``, ``labels`` ``[n]`` (indices into the class names).

Targets are a list with one ``{"boxes": [k, 4], "labels": [k]}`` per image, since images hold
different numbers of objects; images are resized to one square input size, so they stack.
Batches come from a DataLoader: :class:`~archzoo.data.transforms.DenseTransform` moves the boxes
with each flip and crop (the ``augment`` recipe picks which: ``basic``, ``none``, or the detection
recipes ``ssd`` and ``scale-jitter``). The batch targets also carry ``difficult`` (VOC difficult,
COCO crowd) for the metric; the detector is given ``boxes`` and ``labels`` only. The metric is
COCO's box AP by pycocotools over every process's predictions (:class:`DetectionMeter`); the
monitored one is ``map50``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .metrics import DetectionMeter, LossMeter
from .task import Task


class DetectionTask(Task):
    """Train on the sum of the detector's losses; score COCO AP (``map``, ``map50``, ``map75``)."""

    name = "detection"
    monitor, monitor_mode = "map50", "max"
    train_fields = ("loss",)
    val_fields = ("map50",)

    def sample_transform(self, train, cfg, input_size, mean, std, in_chans):
        from ..data.transforms import DenseTransform

        return DenseTransform(train, input_size, mean, std, in_chans=in_chans, pad=cfg.pad, flip=cfg.flip, boxes=True,
                              recipe=cfg.augment if train else "basic")

    @staticmethod
    def collate(samples):
        def keep(t):
            out = {"boxes": t["boxes"], "labels": t["labels"]}
            out["difficult"] = t["difficult"] if "difficult" in t else torch.zeros(len(t["labels"]), dtype=torch.bool)
            return out

        return torch.stack([x for x, _ in samples]), [keep(t) for _, t in samples]

    def forward(self, model, images, targets):
        return model(images, [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets])

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
        return {k: metrics[k] for k in ("map", "map50", "map75", "per_class", "count")}

    def eval_tables(self, metrics):
        rows = [["mAP@[.5:.95]", f"{metrics['map']:.2%}"], ["mAP@0.5", f"{metrics['map50']:.2%}"],
                ["mAP@0.75", f"{metrics['map75']:.2%}"], ["images", metrics["count"]]]
        per_class = [[k, f"{v['map']:.1%}", f"{v['map50']:.1%}"] for k, v in metrics["per_class"].items()]
        return [(None, ["metric", "value"], rows), ("per class", ["class", "AP@[.5:.95]", "AP@0.5"], per_class)]

    @torch.no_grad()
    def predict(self, model, x, image_size, topk, score_threshold: float = 0.0):
        """``{"detections": [{"label", "index", "score", "box"}]}``: at most ``topk`` detections
        scoring ``score_threshold`` or more, best first, boxes ``[x1, y1, x2, y2]`` in the original
        image's pixels (clipped to it)."""
        det = model(x)[0]
        h, w = image_size
        scale = torch.tensor([w / x.shape[-1], h / x.shape[-2]] * 2)
        scores = det["scores"].detach().float().cpu()
        order = scores.argsort(descending=True)
        order = order[scores[order] >= score_threshold][:topk]
        boxes = det["boxes"].detach().float().cpu()[order] * scale
        boxes = torch.stack([boxes[:, 0].clamp(0, w), boxes[:, 1].clamp(0, h), boxes[:, 2].clamp(0, w),
                             boxes[:, 3].clamp(0, h)], 1) if len(boxes) else boxes.reshape(0, 4)
        labels = det["labels"].cpu()[order]
        return {"detections": [{"label": self.class_names[int(c)], "index": int(c), "score": round(float(s), 4),
                                "box": [round(float(v), 1) for v in b]}
                               for b, s, c in zip(boxes, scores[order], labels)]}


def draw_detections(image: torch.Tensor, detections: list[dict], class_names, path) -> Path:
    """``image`` (uint8 ``[C, H, W]``) with its ``detections`` (:meth:`DetectionTask.predict`)
    drawn as boxes labelled with class and score, one colour per class; written as PNG to ``path``."""
    from PIL import Image
    from torchvision.utils import draw_bounding_boxes

    from ..checkpoint import atomic_write
    from .report import _palette

    image = image.expand(3, -1, -1) if image.shape[0] == 1 else image
    if detections:
        palette = (_palette(len(class_names) + 1) * 255).round().to(torch.uint8)
        boxes = torch.tensor([d["box"] for d in detections], dtype=torch.float32)
        colours = [tuple(palette[d["index"] + 1].tolist()) for d in detections]
        side = min(image.shape[-2:])
        image = draw_bounding_boxes(image, boxes, labels=[f"{d['label']} {d['score']:.2f}" for d in detections],
                                    colors=colours, width=max(1, round(side / 200)), font=_font(),
                                    font_size=max(9, round(side / 40)), label_colors="white", fill_labels=True)
    picture = Image.fromarray(image.permute(1, 2, 0).contiguous().numpy())
    path = Path(path)
    atomic_write(path, lambda tmp: picture.save(tmp, format="PNG"))
    return path


def _font() -> str | None:
    """matplotlib's DejaVu Sans (a dependency that ships it), so labels scale with the image."""
    import os

    import matplotlib

    path = os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "fonts", "ttf", "DejaVuSans.ttf")
    return path if os.path.isfile(path) else None
