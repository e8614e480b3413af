"""RetinaNet (Lin, Goyal, Girshick, He, Dollár, "Focal Loss for Dense Object Detection",
arXiv:1708.02002, ICCV 2017).

One-stage detectors evaluate ~100k anchors per image, almost all easy background; summed cross
entropy over them drowns the few objects. The focal loss ``-alpha_t (1 - p_t)^gamma log(p_t)``
(alpha 0.25, gamma 2) shrinks the loss of well-classified anchors, so a dense detector trains
without sampling or hard-negative mining and, for the first time, beats two-stage detectors.

The network: ResNet-50 -> FPN P3-P7 (:class:`~archzoo.detection.necks.FPN`) -> at every level
and position 9 anchors (sizes ``2^{0, 1/3, 2/3}`` x 32..512, ratios 1:2, 1:1, 2:1) -> two
4-conv subnets shared by all levels: ``K`` sigmoid class scores per anchor (bias at the prior
0.01) and 4 box deltas (:class:`~archzoo.detection.boxes.BoxCoder`). Anchors match boxes with IoU
>= 0.5, are background below 0.4 and ignored between; each box keeps its best anchors. The
classification loss is summed over non-ignored anchors, the L1 box loss over positives, both
divided by the number of positives (per image, then averaged, as torchvision does). Decoding:
per level the 1000 best scores above 0.05, boxes clipped to the image, per-class NMS at 0.5.

``retinanet_resnet50_fpn`` is torchvision's ``retinanet_resnet50_fpn`` number for number (P6
from P5 as there; the paper takes it from C5: ``extra_from="c5"``).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torchvision.ops import box_iou, sigmoid_focal_loss

from ..registry import IMAGENET_MEAN, IMAGENET_STD, family_card, register_variants
from .anchors import AnchorGenerator, octave_sizes
from .boxes import BoxCoder
from .dense import PyramidDetector
from .heads import conv_tower, flatten_level, flatten_levels, init_predictor
from .matchers import IGNORE, IoUMatcher


class RetinaNetHead(nn.Module):
    """The class subnet (``cls_tower`` -> ``cls_logits``, ``A * K``) and the box subnet
    (``box_tower`` -> ``box_reg``, ``A * 4``), each run on every pyramid level."""

    def __init__(self, channels: int, num_anchors: int, num_classes: int, num_convs: int = 4,
                 prior_probability: float = 0.01, norm: str | None = None):
        super().__init__()
        self.cls_tower = conv_tower(channels, num_convs, norm)
        self.cls_logits = init_predictor(nn.Conv2d(channels, num_anchors * num_classes, 3, padding=1), prior_probability)
        self.box_tower = conv_tower(channels, num_convs, norm)
        self.box_reg = init_predictor(nn.Conv2d(channels, num_anchors * 4, 3, padding=1))

    def forward(self, maps: list[torch.Tensor]) -> dict[str, list[torch.Tensor]]:
        return {"cls_logits": [self.cls_logits(self.cls_tower(m)) for m in maps],
                "bbox_regression": [self.box_reg(self.box_tower(m)) for m in maps]}


class RetinaNet(PyramidDetector):
    """Args: ``num_classes`` (object classes; torchvision's COCO models: 91 with index 0 unused),
    ``backbone`` (any zoo classifier with maps at strides 8, 16, 32), ``norm_layer`` (the
    backbone's; ``None``: its default), transform sizes ``min_size``/``max_size`` or a fixed
    ``image_size``, anchor ``base_sizes``/``scales_per_octave``/``aspect_ratios``, matching
    ``fg_iou_thresh``/``bg_iou_thresh``, focal ``alpha``/``gamma``, decoding ``score_thresh``,
    ``nms_thresh``, ``topk_candidates``, ``detections_per_img``."""

    def __init__(self, num_classes: int = 91, in_chans: int = 3, backbone: str = "resnet50",
                 norm_layer: str | None = None, fpn_channels: int = 256, extra_from: str = "p5",
                 base_sizes=(32, 64, 128, 256, 512), scales_per_octave: int = 3, aspect_ratios=(0.5, 1.0, 2.0),
                 head_convs: int = 4, prior_probability: float = 0.01, fg_iou_thresh: float = 0.5,
                 bg_iou_thresh: float = 0.4, alpha: float = 0.25, gamma: float = 2.0, **kwargs):
        anchors = AnchorGenerator(octave_sizes(base_sizes, scales_per_octave), aspect_ratios)
        super().__init__(num_classes, in_chans, backbone, norm_layer, anchors, fpn_channels, extra_from, **kwargs)
        self.head = RetinaNetHead(fpn_channels, anchors.num_anchors_per_location()[0], num_classes, head_convs,
                                  prior_probability)
        self.matcher = IoUMatcher(fg_iou_thresh, bg_iou_thresh, allow_low_quality=True)
        self.box_coder = BoxCoder((1.0, 1.0, 1.0, 1.0))
        self.alpha, self.gamma = alpha, gamma

    def loss(self, outputs, batch, targets):
        anchors = torch.cat(self.anchors(outputs, batch))
        logits = flatten_levels(outputs["cls_logits"], self.num_classes)
        codes = flatten_levels(outputs["bbox_regression"], 4)
        cls_losses, box_losses = [], []
        for t, img_logits, img_codes in zip(targets, logits, codes):
            boxes, labels = t["boxes"], t["labels"]
            matches = self.matcher(box_iou(boxes, anchors))
            fg = matches >= 0
            num_fg = max(1, int(fg.sum()))
            target = torch.zeros_like(img_logits)
            target[fg, labels[matches[fg]]] = 1.0
            valid = matches != IGNORE
            cls_losses.append(sigmoid_focal_loss(img_logits[valid], target[valid], self.alpha, self.gamma,
                                                 reduction="sum") / num_fg)
            regression = self.box_coder.encode(boxes[matches[fg]], anchors[fg])
            box_losses.append(nn.functional.l1_loss(img_codes[fg], regression, reduction="sum") / num_fg)
        n = len(targets)
        return {"classification": sum(cls_losses) / n, "bbox_regression": sum(box_losses) / n}

    def detect(self, outputs, batch):
        anchors = self.anchors(outputs, batch)
        results = []
        for i, size in enumerate(batch.image_sizes):
            scores = [torch.sigmoid(flatten_level(m[i:i + 1], self.num_classes)[0]) for m in outputs["cls_logits"]]
            codes = [flatten_level(m[i:i + 1], 4)[0] for m in outputs["bbox_regression"]]
            decoders = [lambda loc, c=c, a=a: self.box_coder.decode(c[loc], a[loc]) for c, a in zip(codes, anchors)]
            results.append(self.decode(scores, decoders, size))
        return results


card = family_card(family="retinanet", year=2017, task="detection",
                   paper="arXiv:1708.02002 Focal Loss for Dense Object Detection (Lin, Goyal, Girshick, He, Dollar)",
                   tricks=("feature_pyramid", "anchor_boxes", "focal_loss", "non_maximum_suppression"),
                   dataset="COCO-2017", num_classes=91, mean=IMAGENET_MEAN, std=IMAGENET_STD)

register_variants(RetinaNet, [
    card("retinanet_resnet50_fpn", reference="torchvision:retinanet_resnet50_fpn", input_size=(3, 800, 800),
         min_input_size=(3, 64, 64), heads=("head.cls_logits",), input_convs=("backbone.model.stem.conv.conv",),
         notes="Labels are the class logits' indices (torchvision's COCO models: 91, index 0 unused); P6 from P5 "
               "as torchvision (the paper: from C5, extra_from='c5').",
         kwargs=dict(backbone="resnet50")),
])
