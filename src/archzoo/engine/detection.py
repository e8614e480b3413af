"""Object detection as an engine task, for detectors shaped like torchvision's.

The contract a detector keeps (``torchvision.models.detection.GeneralizedRCNN`` keeps it too):

* training mode: ``model(images, targets)`` returns a dict of named losses; the task trains on
  their sum and logs it;
* eval mode: ``model(images)`` returns one dict per image: ``boxes`` ``[n, 4]`` (xyxy, in the
  input's pixels), ``scores`` ``[n]``, ``labels`` ``[n]`` (indices into the class names), and, from
  a detector that predicts instance masks, ``masks`` ``[n, 1, H, W]``: per detection the
  probability that each pixel of the input is the object's (torchvision's Mask R-CNN contract).

Targets are a list with one ``{"boxes": [k, 4], "labels": [k]}`` per image, since images hold
different numbers of objects; images are resized to one square input size, so they stack.
Batches come from a DataLoader: :class:`~archzoo.data.transforms.DenseTransform` moves the boxes
with each flip and crop (the ``augment`` recipe picks which: ``basic``, ``none``, or the detection
recipes ``ssd`` and ``scale-jitter``). The batch targets also carry ``difficult`` (VOC difficult,
COCO crowd) for the metric; the detector is given ``boxes`` and ``labels`` only. The metric is
COCO's box AP by pycocotools over every process's predictions (:class:`DetectionMeter`); the
monitored one is ``map50``.

Instance masks: a detector whose card says ``instance_masks`` (Mask R-CNN; :func:`wants_masks`)
is trained and evaluated on data read with masks (``load_dataset(..., masks=True)``): targets
carry ``masks`` ``[k, H, W]`` (bool, one per box; the transforms move them with the image), the
detector is given them beside boxes and labels, and the meter adds COCO's mask AP (``mask_map``,
``mask_map50``, ``mask_map75``) where the results carry masks. Other detectors' data holds none.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .metrics import DetectionMeter, LossMeter, mask_rles
from .task import Task


class DetectionTask(Task):
    """Train on the sum of the detector's losses; score COCO AP (``map``, ``map50``, ``map75``)."""

    name = "detection"
    monitor, monitor_mode = "map50", "max"
    train_fields = ("loss",)
    val_fields = ("map50",)

    def sample_transform(self, train, cfg, input_size, mean, std, in_chans):
        from ..data.transforms import DenseTransform

        return DenseTransform(train, input_size, mean, std, in_chans=in_chans, pad=cfg.pad, flip=cfg.flip,
                              crop=cfg.crop_size if train else None, boxes=True,
                              recipe=cfg.augment if train else "basic")

    @staticmethod
    def collate(samples):
        def keep(t):
            out = {"boxes": t["boxes"], "labels": t["labels"]}
            out["difficult"] = t["difficult"] if "difficult" in t else torch.zeros(len(t["labels"]), dtype=torch.bool)
            if "masks" in t:  # only data read for a mask-predicting detector has them
                out["masks"] = t["masks"]
            return out

        return torch.stack([x for x, _ in samples]), [keep(t) for _, t in samples]

    def forward(self, model, images, targets):
        given = ("boxes", "labels", "masks")
        return model(images, [{k: t[k] for k in given if k in t} for t in targets])

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
        keys = ("map", "map50", "map75", *(k for k in MASK_KEYS if k in metrics), "per_class", "count")
        return {k: metrics[k] for k in keys}

    def eval_tables(self, metrics):
        rows = [["mAP@[.5:.95]", f"{metrics['map']:.2%}"], ["mAP@0.5", f"{metrics['map50']:.2%}"],
                ["mAP@0.75", f"{metrics['map75']:.2%}"]]
        masks = "mask_map" in metrics
        if masks:
            rows += [["mask mAP@[.5:.95]", f"{metrics['mask_map']:.2%}"], ["mask mAP@0.5", f"{metrics['mask_map50']:.2%}"],
                     ["mask mAP@0.75", f"{metrics['mask_map75']:.2%}"]]
        rows.append(["images", metrics["count"]])
        columns = ["class", "AP@[.5:.95]", "AP@0.5", *(["mask AP@[.5:.95]", "mask AP@0.5"] if masks else [])]
        per_class = [[k, f"{v['map']:.1%}", f"{v['map50']:.1%}",
                      *([f"{v['mask_map']:.1%}", f"{v['mask_map50']:.1%}"] if masks else [])]
                     for k, v in metrics["per_class"].items()]
        return [(None, ["metric", "value"], rows), ("per class", columns, per_class)]

    @torch.no_grad()
    def predict(self, model, x, image_size, topk, score_threshold: float = 0.0):
        """``{"detections": [{"label", "index", "score", "box"}]}``: at most ``topk`` detections
        scoring ``score_threshold`` or more, best first, boxes ``[x1, y1, x2, y2]`` in the original
        image's pixels (clipped to it). Where the detector predicts masks, each detection also has
        ``mask``: ``{"area", "size", "counts"}``, its mask in the original image's pixels
        (probabilities resized bilinearly, then above 0.5) as COCO's compressed RLE (``size`` is
        ``[height, width]``; ``pycocotools.mask.decode`` reads it) with its ``area`` in pixels."""
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
        found = [{"label": self.class_names[int(c)], "index": int(c), "score": round(float(s), 4),
                  "box": [round(float(v), 1) for v in b]} for b, s, c in zip(boxes, scores[order], labels)]
        if "masks" in det:
            probs = det["masks"].detach().float().cpu()[order]
            probs = probs.reshape(len(order), 1, *probs.shape[-2:])
            if len(order):
                probs = torch.nn.functional.interpolate(probs, size=(h, w), mode="bilinear", align_corners=False)
            for d, rle in zip(found, mask_rles(probs.reshape(len(order), h, w) > 0.5)):
                d["mask"] = {"area": rle.pop("area"), **rle}
        return {"detections": found}


MASK_KEYS = ("mask_map", "mask_map50", "mask_map75")  # what the meter adds where the results carry masks


def wants_masks(model) -> bool:
    """Whether ``model`` (a registered name or a module, also wrapped by DDP or ``torch.compile``)
    is a detector that predicts instance masks: its card says ``instance_masks`` (Mask R-CNN).
    Its data is then read with instance masks (``load_dataset(..., masks=True)``); other models'
    data is not (a mask per object costs a boolean image per box)."""
    if isinstance(model, str):
        from ..registry import model_card

        try:
            card = model_card(model)
        except (KeyError, ValueError):  # an unknown name: create_model says so
            return False
    else:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None) or model
        card = getattr(inner, "card", None) or getattr(model, "card", None)
    return bool(card is not None and card.task == "detection" and getattr(card, "instance_masks", False))


def has_masks(ds) -> bool:
    """Whether the items of detection set ``ds`` carry instance masks (``target["masks"]``)."""
    return len(ds) > 0 and "masks" in ds.target(0)


def draw_detections(image: torch.Tensor, detections: list[dict], class_names, path) -> Path:
    """``image`` (uint8 ``[C, H, W]``) with its ``detections`` (:meth:`DetectionTask.predict`)
    drawn as boxes labelled with class and score, one colour per class, over their masks (half
    transparent, in the same colour) where they have them; written as PNG to ``path``."""
    from PIL import Image
    from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

    from ..checkpoint import atomic_write
    from .report import _palette

    image = image.expand(3, -1, -1) if image.shape[0] == 1 else image
    if detections:
        palette = (_palette(len(class_names) + 1) * 255).round().to(torch.uint8)
        boxes = torch.tensor([d["box"] for d in detections], dtype=torch.float32)
        colours = [tuple(palette[d["index"] + 1].tolist()) for d in detections]
        with_mask = [(d["mask"], c) for d, c in zip(detections, colours) if d.get("mask")]
        if with_mask:
            from pycocotools import mask as mask_utils

            masks = torch.stack([torch.from_numpy(mask_utils.decode({"size": m["size"], "counts": m["counts"].encode()}))
                                 for m, _ in with_mask]).bool()
            if masks.shape[-2:] != image.shape[-2:]:
                raise ValueError(f"detection masks are {tuple(masks.shape[-2:])} pixels, the image "
                                 f"{tuple(image.shape[-2:])}")
            image = draw_segmentation_masks(image, masks, alpha=0.5, colors=[c for _, c in with_mask])
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
