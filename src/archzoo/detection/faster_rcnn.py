"""Faster R-CNN (Ren, He, Girshick, Sun, "Faster R-CNN: Towards Real-Time Object Detection with
Region Proposal Networks", arXiv:1506.01497, NIPS 2015), with and without a feature pyramid
(Lin et al., arXiv:1612.03144, CVPR 2017).

The lineage: R-CNN (arXiv:1311.2524) warps each of ~2000 selective-search proposals and runs a CNN
on it; Fast R-CNN (arXiv:1504.08083) runs the CNN once and pools each proposal's features from the
map (RoI pooling), training classification and box regression in one multi-task loss; Faster R-CNN
replaces selective search by a Region Proposal Network on the same map, so proposals cost ~10 ms
and the whole detector is one network trained end to end.

``fasterrcnn_vgg16`` is the paper's detector: VGG-16's conv5_3 (stride 16), an RPN with 9 anchors
per position (sizes 128, 256, 512; ratios 1:2, 1:1, 2:1), 7x7 RoI max pooling and VGG's fc6/fc7
(4096) as the box head.

``fasterrcnn_resnet50_fpn`` is torchvision's (the FPN paper's design): ResNet-50's C2-C5 -> FPN
P2-P5 (256 channels) and a parameter-free P6 (stride-2 subsampling of P5); one anchor size per
level (32 on P2 ... 512 on P6) with three ratios; the RPN's head shared by all levels; each RoI
pooled (RoIAlign 7x7, 2 samples per cell side) from one level by its size; two 1024-wide FC layers.
``fasterrcnn_mobilenet_v3_large_fpn`` is torchvision's mobile variant: MobileNetV3-Large's last
two maps (both at stride 32: the first block of the last resolution, 160 channels, and the last
1x1 conv, 960) -> FPN + P6, five anchor sizes x three ratios at each level, RPN proposals with an
objectness of at least 0.05; ``..._320_fpn`` runs it at 320 px with 150 proposals.

Weights convert from torchvision (:mod:`archzoo.weights.faster_rcnn`). Labels follow SSD's rule:
``num_classes=91`` (the COCO cards) is torchvision's layout, logit 0 the background and labels the
logit indices; any other count is K object classes, labels 0..K-1, with a background logit of
their own. ``backbone=`` takes any zoo classifier (its stride 4-32 maps for the FPN, its stride-16
map without; a zoo MobileNet for the mobile taps).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
from torchvision.ops import MultiScaleRoIAlign

from ..registry import IMAGENET_MEAN, IMAGENET_STD, family_card, register_variants
from .anchors import AnchorGenerator
from .necks import FPN
from .roi_heads import BoxPredictor, RoIHeads, RoIPool, TwoFCHead
from .rpn import RegionProposalNetwork, RPNHead
from .ssd import resolve_background
from .transform import DetectionTransform
from .two_stage import TwoStageDetector


class MobileNetLastTaps(nn.Module):
    """A zoo MobileNet's ``stem``, ``stages`` and ``conv_head`` (under ``model.``, its classifier's
    names) giving two maps: the output of the last strided block (the first block of the last
    resolution) and of the last layer -- torchvision's ``_mobilenet_extractor`` taps for an FPN."""

    def __init__(self, model: nn.Module):
        super().__init__()
        if not all(hasattr(model, a) for a in ("stem", "stages", "conv_head")):
            raise ValueError(f"{type(model).__name__}: the mobile taps need a zoo MobileNet (stem, stages, conv_head)")
        self.model = nn.ModuleDict({"stem": model.stem, "stages": model.stages, "conv_head": model.conv_head})
        blocks = [(i, j) for i, stage in enumerate(model.stages) for j in range(len(stage))]
        strided = [(i, j) for i, j in blocks if model.stages[i][j].depthwise.conv.stride[0] > 1]
        self.tap = strided[-1]
        block = model.stages[self.tap[0]][self.tap[1]]
        self.channels = [block.project.conv.out_channels, model.conv_head.out_chs]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.model["stem"](x)
        for i, stage in enumerate(self.model["stages"]):
            for j, block in enumerate(stage):
                x = block(x)
                if (i, j) == self.tap:
                    tapped = x
        return [tapped, self.model["conv_head"](x)]


class FasterRCNN(TwoStageDetector):
    """Args (defaults: torchvision's ``fasterrcnn_resnet50_fpn``):
        num_classes: object classes (91: torchvision's COCO layout, see the module doc);
            ``background_label0`` overrides that rule.
        backbone, norm_layer, in_chans: the zoo classifier and its options; ``backbone_args``: more of
            them (torchvision's mobile detectors: ``bn_eps=1e-5, bn_momentum=0.1``, plain batch norm).
        out_strides: the backbone maps used (FPN: (4, 8, 16, 32); one map: (16,)); ``"mobile"``:
            the MobileNet taps (:class:`MobileNetLastTaps`).
        fpn: an FPN of ``fpn_channels`` with the P6 pool level on the maps (else the map itself).
        min_size, max_size, image_size, mean, std: the transform (``image_size``: a fixed size).
        anchor_sizes, aspect_ratios: per level the RPN's anchor sizes; the ratios (every level).
        rpn_*: the RPN (see :class:`~archzoo.detection.rpn.RegionProposalNetwork`).
        roi_pool: ``"align"`` or ``"pool"`` (RoI max pooling); roi_size: its output (7).
        representation_size: the two FC layers' width.
        box_*: the RoI heads (see :class:`~archzoo.detection.roi_heads.RoIHeads`).
    """

    def __init__(self, num_classes: int = 91, in_chans: int = 3, backbone: str = "resnet50",
                 norm_layer: str | None = None, backbone_args: dict | None = None,
                 out_strides: Sequence[int] | str = (4, 8, 16, 32), fpn: bool = True,
                 fpn_channels: int = 256, background_label0: bool | None = None,
                 min_size: int | Sequence[int] = 800, max_size: int = 1333, image_size: int | Sequence[int] | None = None,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 anchor_sizes: Sequence[Sequence[int]] = ((32,), (64,), (128,), (256,), (512,)),
                 aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0), rpn_pre_nms_top_n=(2000, 1000),
                 rpn_post_nms_top_n=(2000, 1000), rpn_nms_thresh: float = 0.7, rpn_fg_iou_thresh: float = 0.7,
                 rpn_bg_iou_thresh: float = 0.3, rpn_batch_size_per_image: int = 256,
                 rpn_positive_fraction: float = 0.5, rpn_score_thresh: float = 0.0, roi_pool: str = "align",
                 roi_size: int = 7, representation_size: int = 1024, box_score_thresh: float = 0.05,
                 box_nms_thresh: float = 0.5, box_detections_per_img: int = 100, box_fg_iou_thresh: float = 0.5,
                 box_bg_iou_thresh: float = 0.5, box_batch_size_per_image: int = 512,
                 box_positive_fraction: float = 0.25):
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1 (object classes, without background), got {num_classes}")
        label_offset = 0 if resolve_background(num_classes, background_label0) else 1
        num_logits = num_classes + label_offset
        transform = make_transform(in_chans, min_size, max_size, image_size, mean, std)
        body, channels, strides = make_backbone(backbone, in_chans, norm_layer, out_strides, backbone_args)
        if fpn:
            neck = FPN(channels, fpn_channels, pool_level=True)
            pooled = [str(i) for i in range(len(channels))]
            names, channels = (*pooled, "pool"), fpn_channels
            box_pool = MultiScaleRoIAlign(pooled, roi_size, sampling_ratio=2)
        else:
            if len(channels) != 1:
                raise ValueError(f"without an FPN, out_strides must name one map, got {out_strides}")
            neck, names, channels = None, ("0",), channels[0]
            box_pool = RoIPool("0", roi_size, 1.0 / strides[0], roi_pool)
        if len(anchor_sizes) != len(names):
            raise ValueError(f"anchor_sizes: {len(anchor_sizes)} levels for {len(names)} maps {names}")
        anchors = AnchorGenerator(anchor_sizes, aspect_ratios)
        rpn = RegionProposalNetwork(
            anchors, RPNHead(channels, anchors.num_anchors_per_location()[0]), rpn_fg_iou_thresh, rpn_bg_iou_thresh,
            rpn_batch_size_per_image, rpn_positive_fraction, rpn_pre_nms_top_n, rpn_post_nms_top_n, rpn_nms_thresh,
            rpn_score_thresh)
        box_head = TwoFCHead(channels * roi_size ** 2, representation_size)
        roi_heads = RoIHeads(
            box_pool, box_head, BoxPredictor(representation_size, num_logits), fg_iou_thresh=box_fg_iou_thresh,
            bg_iou_thresh=box_bg_iou_thresh, batch_size_per_image=box_batch_size_per_image,
            positive_fraction=box_positive_fraction, score_thresh=box_score_thresh, nms_thresh=box_nms_thresh,
            detections_per_img=box_detections_per_img, label_offset=label_offset,
            **self.mask_branch(channels, num_logits, names[:len(names) - bool(fpn)], strides, fpn))
        super().__init__(num_classes, transform, body, rpn, roi_heads, neck=neck, map_names=names)

    def mask_branch(self, channels: int, num_logits: int, pooled: Sequence[str], strides: Sequence[int],
                    fpn: bool) -> dict:
        """The RoI heads' mask parts (none here; Mask R-CNN's :mod:`~archzoo.detection.mask_rcnn`)."""
        return {}


def make_transform(in_chans: int, min_size, max_size: int, image_size, mean, std) -> DetectionTransform:
    """torchvision's R-CNN transform (shorter side ``min_size``, longer at most ``max_size``,
    padded to multiples of 32), or a fixed ``image_size``; a grey (or extra) channel takes the
    mean normalisation of the colour ones."""
    if len(mean) != in_chans:
        mean, std = (sum(mean) / len(mean),) * in_chans, (sum(std) / len(std),) * in_chans
    fixed = None
    if image_size is not None:
        h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
        fixed = (int(w), int(h))
    return DetectionTransform(min_size, max_size, mean, std, size_divisible=32, fixed_size=fixed)


def make_backbone(backbone: str, in_chans: int, norm_layer: str | None, out_strides,
                  backbone_args: dict | None = None) -> tuple[nn.Module, list, list]:
    """The backbone module, its maps' channels and strides."""
    from ..builder import create_model

    options = {"norm_layer": norm_layer} if norm_layer is not None else {}
    options.update(backbone_args or {})
    if out_strides == "mobile":
        taps = MobileNetLastTaps(create_model(backbone, in_chans=in_chans, **options))
        return taps, taps.channels, [32, 32]
    body = create_model(backbone, features_only=True, out_strides=tuple(out_strides), in_chans=in_chans, **options)
    return body, body.feature_info.channels(), body.feature_info.strides()


_TV_NOTE = ("num_classes=91 is torchvision's COCO layout (logit 0 the background, labels the logit indices); "
            "any other count: object classes 0..K-1 with a background logit of their own.")

# the variants that are a later paper's Faster R-CNN cite that paper (and its year)
_FPN_PAPER = "arXiv:1612.03144 Feature Pyramid Networks for Object Detection (Lin, Dollar, Girshick, He, Hariharan, Belongie)"
_MNV3_PAPER = "arXiv:1905.02244 Searching for MobileNetV3 (Howard et al.), on Faster R-CNN arXiv:1506.01497"

card = family_card(family="faster_rcnn", year=2015, task="detection",
                   paper="arXiv:1506.01497 Faster R-CNN: Towards Real-Time Object Detection with Region Proposal "
                         "Networks (Ren, He, Girshick, Sun)",
                   tricks=("region_proposal_network", "anchor_boxes", "roi_align", "multi_task_loss",
                           "balanced_sampling", "non_maximum_suppression"),
                   dataset="COCO-2017", num_classes=91, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                   heads=("roi_heads.box_predictor.cls_score", "roi_heads.box_predictor.bbox_pred"),
                   input_convs=("backbone.model.stem.conv.conv",), min_input_size=(3, 64, 64))

register_variants(FasterRCNN, [
    card("fasterrcnn_resnet50_fpn", year=2016, paper=_FPN_PAPER, reference="torchvision:fasterrcnn_resnet50_fpn",
         input_size=(3, 800, 800), extra_tricks=("feature_pyramid",),
         notes="The FPN paper's Faster R-CNN (arXiv:1612.03144) as torchvision builds it. " + _TV_NOTE,
         kwargs=dict(backbone="resnet50")),
    card("fasterrcnn_mobilenet_v3_large_fpn", year=2019, paper=_MNV3_PAPER, reference="torchvision:fasterrcnn_mobilenet_v3_large_fpn",
         input_size=(3, 800, 800), extra_tricks=("feature_pyramid",), input_convs=("backbone.model.stem.conv",),
         notes="torchvision's mobile Faster R-CNN (MobileNetV3, arXiv:1905.02244): both FPN inputs at stride 32; "
               "the backbone's batch norm is plain nn.BatchNorm2d (eps 1e-5), as torchvision builds it. "
               + _TV_NOTE,
         kwargs=dict(backbone="mobilenet_v3_large", out_strides="mobile", anchor_sizes=((32, 64, 128, 256, 512),) * 3,
                     backbone_args=dict(bn_eps=1e-5, bn_momentum=0.1),
                     rpn_score_thresh=0.05)),
    card("fasterrcnn_mobilenet_v3_large_320_fpn", year=2019, paper=_MNV3_PAPER,
         reference="torchvision:fasterrcnn_mobilenet_v3_large_320_fpn", input_size=(3, 320, 320),
         extra_tricks=("feature_pyramid",), input_convs=("backbone.model.stem.conv",),
         notes="fasterrcnn_mobilenet_v3_large_fpn at 320 px with 150 proposals (torchvision's). " + _TV_NOTE,
         kwargs=dict(backbone="mobilenet_v3_large", out_strides="mobile", anchor_sizes=((32, 64, 128, 256, 512),) * 3,
                     backbone_args=dict(bn_eps=1e-5, bn_momentum=0.1),
                     rpn_score_thresh=0.05, min_size=320, max_size=640, rpn_pre_nms_top_n=(2000, 150),
                     rpn_post_nms_top_n=(2000, 150))),
    card("fasterrcnn_vgg16", input_size=(3, 600, 1000), tricks=(
            "region_proposal_network", "anchor_boxes", "roi_pooling", "multi_task_loss", "balanced_sampling",
            "non_maximum_suppression"),
         input_convs=("backbone.model.stages.0.conv1.conv",),
         notes="The paper's detector: VGG-16 conv5_3 (stride 16), 9 anchors, 7x7 RoI max pooling, fc6/fc7 4096 "
               "(shorter side 600, longer at most 1000). No reference implementation. " + _TV_NOTE,
         kwargs=dict(backbone="vgg16", out_strides=(16,), fpn=False, anchor_sizes=((128, 256, 512),),
                     roi_pool="pool", representation_size=4096, min_size=600, max_size=1000,
                     rpn_post_nms_top_n=(2000, 300))),
])
