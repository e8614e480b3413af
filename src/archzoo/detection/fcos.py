"""FCOS (Tian, Shen, Chen, He, "FCOS: Fully Convolutional One-Stage Object Detection",
arXiv:1904.01355, ICCV 2019; the improvements of arXiv:2006.09214).

No anchor boxes: every feature-map location inside an object regresses the distances ``(l, t,
r, b)`` to its four sides (:class:`~archzoo.detection.boxes.DistanceBoxCoder`, in units of the
level's stride). The FPN levels P3-P7 split the work by object size: a location on level ``i``
takes an object only if its largest distance lies in ``(m_{i-1}, m_i]`` with ``m`` = 0, 64,
128, 256, 512, inf (4 and 8 strides); with *center sampling* only locations within 1.5 strides
of the box centre count; a location inside several boxes takes the smallest. A third output,
*centerness* ``sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b))``, learnt with binary cross
entropy on the positives, is multiplied into the score at test time (``sqrt(cls * ctr)``) so the
poor boxes of off-centre locations rank low. Losses: focal (classification, all locations),
GIoU (boxes, positives), BCE (centerness, positives), each divided by the batch's positives.

The heads are RetinaNet's two 4-conv towers with group norm (32 groups); the box tower also
predicts centerness (the later paper's placement). ``fcos_resnet50_fpn`` is torchvision's
``fcos_resnet50_fpn`` number for number: locations are the one anchor per position of size =
stride that :class:`~archzoo.detection.anchors.AnchorGenerator` gives (``size`` 8..128).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops import generalized_box_iou_loss, sigmoid_focal_loss

from ..registry import IMAGENET_MEAN, IMAGENET_STD, family_card, register_variants
from .anchors import AnchorGenerator
from .boxes import DistanceBoxCoder
from .dense import PyramidDetector
from .heads import conv_tower, flatten_level, flatten_levels, init_predictor
from .matchers import BACKGROUND


class FCOSHead(nn.Module):
    """``cls_tower`` -> ``cls_logits`` (K per location); ``box_tower`` -> ``box_reg`` (4 distances,
    ReLU: never negative) and ``centerness`` (1 logit)."""

    def __init__(self, channels: int, num_classes: int, num_convs: int = 4, prior_probability: float = 0.01,
                 norm: str | None = "groupnorm"):
        super().__init__()
        self.cls_tower = conv_tower(channels, num_convs, norm)
        self.cls_logits = init_predictor(nn.Conv2d(channels, num_classes, 3, padding=1), prior_probability)
        self.box_tower = conv_tower(channels, num_convs, norm)
        self.box_reg = init_predictor(nn.Conv2d(channels, 4, 3, padding=1))
        self.centerness = init_predictor(nn.Conv2d(channels, 1, 3, padding=1))

    def forward(self, maps: list[torch.Tensor]) -> dict[str, list[torch.Tensor]]:
        boxes = [self.box_tower(m) for m in maps]
        return {"cls_logits": [self.cls_logits(self.cls_tower(m)) for m in maps],
                "bbox_regression": [F.relu(self.box_reg(b)) for b in boxes],
                "bbox_ctrness": [self.centerness(b) for b in boxes]}


def center_sampling_assign(boxes: torch.Tensor, points: list[torch.Tensor], radius: float = 1.5,
                           size_range: tuple[float, float] = (4.0, 8.0)) -> torch.Tensor:
    """FCOS's assignment: per location (``points``, one ``[n_l, 4]`` square of stride size per level)
    the index of its box, or ``BACKGROUND``. A location takes a box when its centre lies inside
    the box and within ``radius`` strides of the box centre, and its largest distance to the sides
    lies in ``(size_range[0], size_range[1])`` strides (no lower bound on the finest level, no
    upper on the coarsest); among several boxes, the smallest."""
    anchors = torch.cat(points)
    if boxes.numel() == 0:
        return torch.full((anchors.shape[0],), BACKGROUND, dtype=torch.int64, device=anchors.device)
    centres = (anchors[:, :2] + anchors[:, 2:]) / 2
    stride = anchors[:, 2] - anchors[:, 0]
    box_centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    match = (centres[:, None, :] - box_centres[None]).abs().max(dim=2).values < radius * stride[:, None]
    x, y = centres[:, 0:1], centres[:, 1:2]
    dist = torch.stack([x - boxes[None, :, 0], y - boxes[None, :, 1], boxes[None, :, 2] - x, boxes[None, :, 3] - y], dim=2)
    match &= dist.min(dim=2).values > 0
    lower, upper = stride * size_range[0], stride * size_range[1]
    lower[: points[0].shape[0]] = 0
    upper[-points[-1].shape[0]:] = float("inf")
    largest = dist.max(dim=2).values
    match &= (largest > lower[:, None]) & (largest < upper[:, None])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    best, index = (match.to(torch.float32) * (1e8 - areas[None, :])).max(dim=1)  # the smallest box wins
    index[best < 1e-5] = BACKGROUND
    return index


class FCOS(PyramidDetector):
    """Args: as :class:`~archzoo.detection.retinanet.RetinaNet` (``num_classes``, ``backbone``,
    ``norm_layer``, transform sizes, thresholds), plus ``center_sampling_radius`` and the
    ``head_norm`` (``"groupnorm"`` or ``None``)."""

    def __init__(self, num_classes: int = 91, in_chans: int = 3, backbone: str = "resnet50",
                 norm_layer: str | None = None, fpn_channels: int = 256, extra_from: str = "p5",
                 strides=(8, 16, 32, 64, 128), head_convs: int = 4, head_norm: str | None = "groupnorm",
                 prior_probability: float = 0.01, center_sampling_radius: float = 1.5, alpha: float = 0.25,
                 gamma: float = 2.0, score_thresh: float = 0.2, nms_thresh: float = 0.6,
                 detections_per_img: int = 100, **kwargs):
        points = AnchorGenerator(tuple((s,) for s in strides), (1.0,))
        super().__init__(num_classes, in_chans, backbone, norm_layer, points, fpn_channels, extra_from,
                         score_thresh=score_thresh, nms_thresh=nms_thresh, detections_per_img=detections_per_img,
                         **kwargs)
        self.head = FCOSHead(fpn_channels, num_classes, head_convs, prior_probability, head_norm)
        self.box_coder = DistanceBoxCoder(normalize_by_size=True)
        self.center_sampling_radius, self.alpha, self.gamma = center_sampling_radius, alpha, gamma

    def loss(self, outputs, batch, targets):
        points = self.anchors(outputs, batch)
        anchors = torch.cat(points)
        logits = flatten_levels(outputs["cls_logits"], self.num_classes)
        codes = flatten_levels(outputs["bbox_regression"], 4)
        ctrness = flatten_levels(outputs["bbox_ctrness"], 1)[..., 0]
        fg, classes, gt_boxes = [], [], []
        for t in targets:
            matches = center_sampling_assign(t["boxes"], points, self.center_sampling_radius)
            fg.append(matches >= 0)
            classes.append(t["labels"][matches[matches >= 0]])
            gt_boxes.append(t["boxes"][matches[matches >= 0]])
        fg = torch.stack(fg)
        classes, gt_boxes = torch.cat(classes), torch.cat(gt_boxes)
        num_fg = max(1, int(fg.sum()))
        target = torch.zeros_like(logits)
        target[fg, classes] = 1.0
        loss_cls = sigmoid_focal_loss(logits, target, self.alpha, self.gamma, reduction="sum")
        fg_anchors = anchors[None].expand(len(targets), -1, -1)[fg]
        pred = self.box_coder.decode(codes[fg], fg_anchors)
        loss_box = generalized_box_iou_loss(pred, gt_boxes, reduction="sum")
        ltrb = self.box_coder.encode(gt_boxes, fg_anchors)
        lr, tb = ltrb[:, [0, 2]], ltrb[:, [1, 3]]
        centerness = torch.sqrt(lr.min(dim=1).values / lr.max(dim=1).values * tb.min(dim=1).values / tb.max(dim=1).values)
        loss_ctr = F.binary_cross_entropy_with_logits(ctrness[fg], centerness, reduction="sum")
        return {"classification": loss_cls / num_fg, "bbox_regression": loss_box / num_fg,
                "bbox_ctrness": loss_ctr / num_fg}

    def detect(self, outputs, batch):
        points = self.anchors(outputs, batch)
        results = []
        for i, size in enumerate(batch.image_sizes):
            scores = [torch.sqrt(torch.sigmoid(flatten_level(c[i:i + 1], self.num_classes)[0])
                                 * torch.sigmoid(flatten_level(z[i:i + 1], 1)[0]))
                      for c, z in zip(outputs["cls_logits"], outputs["bbox_ctrness"])]
            codes = [flatten_level(m[i:i + 1], 4)[0] for m in outputs["bbox_regression"]]
            decoders = [lambda loc, c=c, p=p: self.box_coder.decode(c[loc], p[loc]) for c, p in zip(codes, points)]
            results.append(self.decode(scores, decoders, size))
        return results


card = family_card(family="fcos", year=2019, task="detection",
                   paper="arXiv:1904.01355 FCOS: Fully Convolutional One-Stage Object Detection (Tian, Shen, Chen, He)",
                   tricks=("feature_pyramid", "anchor_free", "centerness", "iou_loss", "focal_loss",
                           "non_maximum_suppression"),
                   dataset="COCO-2017", num_classes=91, mean=IMAGENET_MEAN, std=IMAGENET_STD)

register_variants(FCOS, [
    card("fcos_resnet50_fpn", reference="torchvision:fcos_resnet50_fpn", input_size=(3, 800, 800),
         min_input_size=(3, 64, 64), heads=("head.cls_logits",), input_convs=("backbone.model.stem.conv.conv",),
         notes="Labels are the class logits' indices (torchvision's COCO models: 91, index 0 unused). Centerness is "
               "predicted from the box tower (torchvision, FCOS's later version), not the class tower of the paper.",
         kwargs=dict(backbone="resnet50")),
])
