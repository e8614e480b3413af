"""The anchor-free YOLO of 2023: YOLOv8 (Jocher, Chaurasia & Qiu, Ultralytics YOLOv8, 2023,
https://github.com/ultralytics/ultralytics).

It puts together the one-stage ideas of 2019-2021 on a CSP backbone:

* **Backbone**: CSPDarknet with C2f stages and SPPF (:mod:`archzoo.models.cspdarknet`); any zoo
  classifier works instead (``backbone=``), through its maps at strides 8, 16, 32.
* **Neck**: the path aggregation network, top-down then bottom-up, fusing by concatenation and
  C2f blocks (:class:`~archzoo.detection.necks.pan.PAN`; PANet, arXiv:1803.01534).
* **Decoupled head** (YOLOX, Ge et al., arXiv:2107.08430, 2021): per level, a box branch and a
  class branch, each two 3x3 conv-BN-SiLU and a 1x1 conv. No anchor boxes and no objectness:
  every map position is an *anchor point* (its centre, strides 8/16/32) that predicts per-class
  sigmoid scores and the distances to the box's four sides, each as a distribution over
  ``reg_max = 16`` bins (Generalized Focal Loss, Li et al., arXiv:2006.04388, 2020) decoded as its
  expectation, in units of the stride.
* **Assignment**: task-aligned (TOOD, Feng et al., arXiv:2108.07755, 2021): for each object the 10
  points inside it with the best ``score^0.5 * CIoU^6`` (:class:`~archzoo.detection.assigners.TaskAlignedAssigner`).
* **Loss**: binary cross-entropy against the soft task-aligned scores, ``1 - CIoU`` of the positives'
  boxes and the distribution focal loss of their sides, all divided by the sum of the soft scores,
  with the published gains box 7.5, cls 0.5, dfl 1.5. (Ultralytics multiplies the total by the batch
  size to suit its SGD recipe; here the losses are per batch, like torchvision's detectors.)
* **Decoding**: sigmoid scores, the best (point, class) pairs over a threshold, per-class NMS
  (IoU 0.7), at most 300 detections.

The input is letterboxed: the longer side resized to ``image_size`` (640), padded to a multiple of
32, pixels scaled to 0..1 and not normalised further. Sizes n and s are the depth/width multiples
(0.33, 0.25) and (0.33, 0.50) with at most 1024 channels; YOLOv8-n/-s are published with 3.2M/11.2M
parameters and 8.7/28.6 GFLOPs at 640 (Ultralytics counts 2 FLOPs per multiply-add).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops import complete_box_iou_loss

from ..layers.c2f import scale_depth, scale_width, yolo_conv
from ..registry import family_card, register_variants
from .assigners import TaskAlignedAssigner
from .base import Detector
from .losses import distribution_expectation, distribution_focal_loss
from .necks.pan import PAN
from .postprocess import nms_detections, top_candidates
from .transform import DetectionTransform, ImageBatch


class DecoupledHead(nn.Module):
    """YOLOv8's head: per level a box branch (``box.i``: conv, conv, 1x1 to ``4 * reg_max``) and a
    class branch (``cls.i``: conv, conv, 1x1 to ``num_classes``). Branch widths follow Ultralytics:
    ``max(16, c0 / 4, 4 * reg_max)`` and ``max(c0, min(num_classes, 100))`` for the shallowest
    level's channels ``c0``."""

    def __init__(self, in_channels: Sequence[int], num_classes: int, reg_max: int = 16,
                 strides: Sequence[int] = (8, 16, 32), image_size: int = 640, norm_layer=None):
        super().__init__()
        conv = yolo_conv(norm_layer)
        box_w = max(16, in_channels[0] // 4, reg_max * 4)
        cls_w = max(in_channels[0], min(num_classes, 100))
        self.reg_max, self.num_classes = reg_max, num_classes
        self.box = nn.ModuleList(nn.Sequential(conv(c, box_w, 3), conv(box_w, box_w, 3), nn.Conv2d(box_w, 4 * reg_max, 1))
                                 for c in in_channels)
        self.cls = nn.ModuleList(nn.Sequential(conv(c, cls_w, 3), conv(cls_w, cls_w, 3), nn.Conv2d(cls_w, num_classes, 1))
                                 for c in in_channels)
        with torch.no_grad():  # Ultralytics' prior: box logits flat, about 5 objects per image-sized area
            for box, cls, s in zip(self.box, self.cls, strides):
                box[-1].bias.fill_(1.0)
                cls[-1].bias.fill_(math.log(5 / num_classes / (image_size / s) ** 2))

    def forward(self, feats: list[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(box(x), cls(x)) for x, box, cls in zip(feats, self.box, self.cls)]


def anchor_points(shapes: Sequence[tuple[int, int]], strides: Sequence[int], device=None,
                  dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """The centres of every map position in grid units ``[A, 2]`` (x, y), level by level in
    row-major order, and each one's stride ``[A, 1]``."""
    points, stride_of = [], []
    for (h, w), s in zip(shapes, strides):
        y, x = torch.meshgrid(torch.arange(h, device=device, dtype=dtype) + 0.5,
                              torch.arange(w, device=device, dtype=dtype) + 0.5, indexing="ij")
        points.append(torch.stack((x, y), -1).reshape(-1, 2))
        stride_of.append(torch.full((h * w, 1), float(s), device=device, dtype=dtype))
    return torch.cat(points), torch.cat(stride_of)


class YOLOv8(Detector):
    """Backbone (maps at strides 8/16/32) -> PAN -> decoupled DFL head (see the module doc).

    Args:
        depth, width, max_channels: the scale of the neck and head (and of the default backbone).
        backbone: any zoo classifier; its maps at strides 8, 16, 32 are used.
        norm_layer: passed to the backbone when given (``"frozen_batchnorm"`` ...).
        image_size: the letterbox size (longer side, padded to a multiple of 32).
        reg_max: bins of each side's distance distribution.
        score_thresh, nms_thresh, detections_per_img, topk_candidates: decoding.
        topk, alpha, beta: the task-aligned assigner; box_gain, cls_gain, dfl_gain: loss weights.
    """

    def __init__(self, depth: float = 0.33, width: float = 0.25, max_channels: int = 1024, num_classes: int = 80,
                 in_chans: int = 3, backbone: str = "cspdarknet_v8n", norm_layer: str | None = None,
                 image_size: int = 640, reg_max: int = 16, score_thresh: float = 0.05, nms_thresh: float = 0.7,
                 detections_per_img: int = 300, topk_candidates: int = 1000, topk: int = 10, alpha: float = 0.5,
                 beta: float = 6.0, box_gain: float = 7.5, cls_gain: float = 0.5, dfl_gain: float = 1.5):
        super().__init__()
        from ..builder import create_model

        self.num_classes, self.reg_max = num_classes, reg_max
        self.transform = DetectionTransform(image_size, image_size, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
                                            size_divisible=32)
        options = {"norm_layer": norm_layer} if norm_layer else {}
        self.backbone = create_model(backbone, features_only=True, out_strides=(8, 16, 32), in_chans=in_chans, **options)
        self.strides = tuple(self.backbone.feature_info.strides())
        widths = [scale_width(c, width, max_channels) for c in (256, 512, 1024)]
        self.neck = PAN(self.backbone.feature_info.channels(), widths, scale_depth(3, depth))
        self.head = DecoupledHead(widths, num_classes, reg_max, self.strides, image_size)
        self.assigner = TaskAlignedAssigner(topk, alpha, beta)
        self.score_thresh, self.nms_thresh = score_thresh, nms_thresh
        self.detections_per_img, self.topk_candidates = detections_per_img, topk_candidates
        self.gains = {"box": box_gain, "cls": cls_gain, "dfl": dfl_gain}

    def forward_batch(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per level ``(box logits [B, 4 * reg_max, h, w], class logits [B, C, h, w])``."""
        return self.head(self.neck(self.backbone(x)))

    def _flatten(self, outputs):
        """Class logits ``[B, A, C]``, side logits ``[B, A, 4, reg_max]``, points and strides."""
        b = outputs[0][0].shape[0]
        box = torch.cat([o[0].flatten(2) for o in outputs], 2).transpose(1, 2).reshape(b, -1, 4, self.reg_max)
        cls = torch.cat([o[1].flatten(2) for o in outputs], 2).transpose(1, 2)
        points, strides = anchor_points([o[0].shape[-2:] for o in outputs], self.strides, box.device, box.dtype)
        return cls, box, points, strides

    @staticmethod
    def _boxes(points: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
        return torch.cat((points - dist[..., :2], points + dist[..., 2:]), -1)

    def loss(self, outputs, batch: ImageBatch, targets: list[dict]) -> dict[str, torch.Tensor]:
        cls, box, points, strides = self._flatten(outputs)
        pred = self._boxes(points, distribution_expectation(box))  # grid units, [B, A, 4]
        scores = cls.detach().sigmoid()
        assigned = [self.assigner(scores[i], pred[i].detach() * strides, points * strides, t["boxes"], t["labels"])
                    for i, t in enumerate(targets)]
        fg = torch.stack([a.foreground for a in assigned])
        target_scores = torch.stack([a.scores for a in assigned])
        target_boxes = torch.stack([a.boxes for a in assigned]) / strides  # grid units
        norm = target_scores.sum().clamp(min=1)
        loss_cls = F.binary_cross_entropy_with_logits(cls, target_scores.to(cls.dtype), reduction="sum") / norm
        if fg.any():
            weight = target_scores.sum(-1)[fg]
            loss_box = (complete_box_iou_loss(pred[fg], target_boxes[fg], reduction="none", eps=1e-7) * weight).sum() / norm
            pts = points.expand_as(pred[..., :2])[fg]
            ltrb = torch.cat((pts - target_boxes[fg][:, :2], target_boxes[fg][:, 2:] - pts), -1)
            ltrb = ltrb.clamp(0, self.reg_max - 1 - 0.01)
            loss_dfl = (distribution_focal_loss(box[fg], ltrb).mean(-1) * weight).sum() / norm
        else:  # no object in the batch: zero, but still connected to every box parameter
            loss_box = loss_dfl = box.sum() * 0.0
        return {"box": self.gains["box"] * loss_box, "cls": self.gains["cls"] * loss_cls,
                "dfl": self.gains["dfl"] * loss_dfl}

    def detect(self, outputs, batch: ImageBatch) -> list[dict[str, torch.Tensor]]:
        cls, box, points, strides = self._flatten(outputs)
        boxes = self._boxes(points, distribution_expectation(box)) * strides
        results = []
        for scores, boxes_i, (h, w) in zip(cls.sigmoid(), boxes, batch.image_sizes):
            s, loc, labels = top_candidates(scores, self.score_thresh, self.topk_candidates)
            b = boxes_i[loc]
            b = torch.stack((b[:, 0].clamp(0, w), b[:, 1].clamp(0, h), b[:, 2].clamp(0, w), b[:, 3].clamp(0, h)), 1)
            results.append(nms_detections(b, s, labels, self.nms_thresh, self.detections_per_img))
        return results


_heads = ("head.cls.0.2", "head.cls.1.2", "head.cls.2.2")
card = family_card(
    family="yolo_v8",
    year=2023,
    paper="Jocher, Chaurasia & Qiu, Ultralytics YOLOv8 (2023), https://github.com/ultralytics/ultralytics",
    tricks=("cross_stage_partial", "swish", "batch_norm", "path_aggregation", "feature_pyramid", "anchor_free",
            "decoupled_head", "task_aligned_assignment", "distribution_focal_loss", "iou_loss",
            "non_maximum_suppression"),
    task="detection",
    dataset="COCO",
    num_classes=80,
    mean=(0.0, 0.0, 0.0),
    std=(1.0, 1.0, 1.0),
    input_size=(3, 640, 640),
    min_input_size=(3, 64, 64),
    heads=_heads,
    input_convs=("backbone.model.stem.conv",),
)

_NOTES = ("Its ideas come from the decoupled head of YOLOX (arXiv:2107.08430), the task-aligned assignment of "
          "TOOD (arXiv:2108.07755) and the distribution focal loss of GFL (arXiv:2006.04388); the tricks name them. "
          "Letterbox without centring: the image sits top-left and the padding is zero (Ultralytics centres it on "
          "grey 114). Losses are not multiplied by the batch size. 80 COCO classes, 0-based.")

register_variants(YOLOv8, [
    card("yolov8n", kwargs=dict(depth=0.33, width=0.25, max_channels=1024, backbone="cspdarknet_v8n"),
         notes=_NOTES),
    card("yolov8s", kwargs=dict(depth=0.33, width=0.50, max_channels=1024, backbone="cspdarknet_v8s"),
         notes=_NOTES),
])
