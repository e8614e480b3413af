"""RetinaNet on SpineNet-49 (Du et al., "SpineNet: Learning Scale-Permuted Backbone for Recognition
and Localization", arXiv:1912.05027, CVPR 2020).

SpineNet's output blocks are the pyramid itself (:mod:`archzoo.models.spinenet`): P3-P7 come out
of the backbone at 256 channels, so the detector is RetinaNet (:mod:`~archzoo.detection.retinanet`:
its head, focal loss, matching and decoding) with the backbone + FPN replaced by SpineNet and no
neck. As in the paper's RetinaNet setup, the anchors are 3 scales x 3 ratios per position with
base size 3 x stride (24 on P3, ``anchor_size`` 3 of the reference configuration), images are
resized so their longer side is 640 (``image_size``) and padded to a multiple of 128 (P7's stride).

Counted on COCO's 91-logit layout: 28.52M parameters and 85.28B multiply-adds at 640x640 (the
paper: 28.5M, 85.4B; the 0.14% gap is the same for SpineNet-96, presumably per-element work the
paper's profiler counts and ``archzoo.profile`` does not). The reference head has a batch norm per
level after each tower convolution (20k parameters); ours is torchvision's head without norms.
"""

from __future__ import annotations

import torch.nn as nn

from ..registry import IMAGENET_MEAN, IMAGENET_STD, family_card, register_variants
from .anchors import AnchorGenerator, octave_sizes
from .base import Detector
from .boxes import BoxCoder
from .matchers import IoUMatcher
from .retinanet import RetinaNet, RetinaNetHead
from .transform import DetectionTransform


class RetinaNetSpineNet(RetinaNet):
    """RetinaNet whose backbone gives the pyramid (SpineNet's P3-P7): no FPN.

    Args: ``backbone`` (a zoo model whose ``features_only`` maps are the pyramid, one width),
    ``norm_layer`` (its norm), ``image_size`` (the longer side; images keep their aspect ratio
    and are padded to a multiple of ``size_divisible``), ``anchor_size`` (base anchor = anchor_size
    x stride), ``backbone_kwargs`` (e.g. ``{"act": "swish", "drop_path_rate": 0.2}``), and RetinaNet's
    head, matching, loss and decoding options."""

    def __init__(self, num_classes: int = 91, in_chans: int = 3, backbone: str = "spinenet49",
                 norm_layer: str | None = None, image_size: int = 640, size_divisible: int = 128,
                 anchor_size: float = 3.0, scales_per_octave: int = 3, aspect_ratios=(0.5, 1.0, 2.0),
                 head_convs: int = 4, prior_probability: float = 0.01, fg_iou_thresh: float = 0.5,
                 bg_iou_thresh: float = 0.4, alpha: float = 0.25, gamma: float = 2.0, score_thresh: float = 0.05,
                 nms_thresh: float = 0.5, detections_per_img: int = 100, topk_candidates: int = 1000,
                 backbone_kwargs: dict | None = None):
        Detector.__init__(self)  # RetinaNet's own parts, but not PyramidDetector's backbone + FPN
        from ..builder import create_model

        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1 (object classes, without background), got {num_classes}")
        if not isinstance(image_size, int) or image_size < 1:
            raise ValueError(f"image_size must be a positive int (the longer side), got {image_size!r}")
        mean, std = IMAGENET_MEAN, IMAGENET_STD
        if in_chans != 3:
            mean, std = (sum(mean) / 3,) * in_chans, (sum(std) / 3,) * in_chans
        self.transform = DetectionTransform(image_size, image_size, mean, std, size_divisible=size_divisible)
        options = {**(backbone_kwargs or {}), **({"norm_layer": norm_layer} if norm_layer is not None else {})}
        self.backbone = create_model(backbone, features_only=True, in_chans=in_chans, **options)
        info = self.backbone.feature_info
        if len(set(info.channels())) != 1:
            raise ValueError(f"backbone {backbone!r}: its maps must share one width (a pyramid), got {info.channels()}")
        self.neck = nn.Identity()
        strides = info.strides()
        self.anchor_generator = AnchorGenerator(octave_sizes([anchor_size * s for s in strides], scales_per_octave),
                                                aspect_ratios)
        self.num_classes = num_classes
        self.score_thresh, self.nms_thresh = score_thresh, nms_thresh
        self.detections_per_img, self.topk_candidates = detections_per_img, topk_candidates
        self.head = RetinaNetHead(info.channels()[0], self.anchor_generator.num_anchors_per_location()[0], num_classes,
                                  head_convs, prior_probability)
        self.matcher = IoUMatcher(fg_iou_thresh, bg_iou_thresh, allow_low_quality=True)
        self.box_coder = BoxCoder((1.0, 1.0, 1.0, 1.0))
        self.alpha, self.gamma = alpha, gamma


card = family_card(family="spinenet", year=2019, task="detection",
                   paper="arXiv:1912.05027 SpineNet: Learning Scale-Permuted Backbone for Recognition and Localization "
                         "(Du et al.)",
                   tricks=("scale_permuted_backbone", "anchor_boxes", "focal_loss", "non_maximum_suppression",
                           "bottleneck", "residual_shortcut", "batch_norm"),
                   dataset="COCO-2017", num_classes=91, mean=IMAGENET_MEAN, std=IMAGENET_STD)

register_variants(RetinaNetSpineNet, [
    card("retinanet_spinenet49", input_size=(3, 640, 640), min_input_size=(3, 64, 64), heads=("head.cls_logits",),
         input_convs=("backbone.model.stem.conv.conv",), kwargs=dict(backbone="spinenet49"),
         notes="The paper's SpineNet-49 RetinaNet at 640 (28.5M parameters, 85.4B FLOPs), ReLU and no "
               "stochastic depth (the paper's first recipe; the 44.3 AP recipe adds swish and drop path: "
               "backbone_kwargs={'act': 'swish', 'drop_path_rate': 0.2}). 91 class logits as the reference's COCO "
               "labels; the head's towers have no norms (the reference: a batch norm per level)."),
])
