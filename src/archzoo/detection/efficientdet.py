"""EfficientDet — Tan, Pang & Le 2019, "EfficientDet: Scalable and Efficient Object Detection",
arXiv:1911.09070.

EfficientNet backbone (levels P3-P5) -> P6, P7 by resampling -> BiFPN (:mod:`.necks.bifpn`) ->
class and box nets shared across levels (depthwise-separable convolutions, a batch norm per level)
-> 9 anchors per location (scales 2^0, 2^(1/3), 2^(2/3) x aspect ratios 1:1, 1.4:0.7, 0.7:1.4, of
size ``anchor_scale * stride``) -> focal loss (alpha 0.25, gamma 1.5) + 50 x Huber box loss
(delta 0.1); in eval the 5000 best (anchor, class) scores, per-class NMS at IoU 0.5, 100 kept.
Compound scaling (the paper's Table 1) grows backbone, BiFPN width/depth, head depth and input
resolution together: D0 ... D7.

Weights convert from the ``effdet`` package (Ross Wightman's port of the official TensorFlow
models), whose ``tf_`` models use TensorFlow "SAME" padding: the strided convolutions of the
backbone pad asymmetrically (``tf_padding``), and its batch norms use eps 1e-3. Box codes are
``(ty, tx, th, tw)``, TensorFlow's order. Class indices are 0-based (the reference adds 1).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torchvision.ops import box_iou, sigmoid_focal_loss

from ..layers.nas_cells import pad_same
from ..registry import IMAGENET_MEAN, IMAGENET_STD, family_card, register_variants
from .base import Detector
from .boxes import BoxCoder
from .matchers import IoUMatcher
from .necks.bifpn import BiFPN, SeparableConv
from .postprocess import nms_detections, top_candidates
from .transform import DetectionTransform, ImageBatch

ASPECTS = ((1.0, 1.0), (1.4, 0.7), (0.7, 1.4))  # (x, y) multipliers of the paper's ratios 1, 2, 1/2


class Conv2dSame(nn.Conv2d):
    """A convolution with TensorFlow "SAME" padding (asymmetric when the stride is 2)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(pad_same(x, self.kernel_size[0], self.stride[0]))


def tf_same_padding_(module: nn.Module) -> nn.Module:
    """Give every strided convolution of ``module`` TensorFlow "SAME" padding, in place (same
    parameters, same names); unstrided odd kernels already pad the same way."""
    for name, conv in list(module.named_modules()):
        if type(conv) is nn.Conv2d and conv.stride[0] > 1 and conv.kernel_size[0] > 1:
            same = Conv2dSame(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, 0, conv.dilation,
                              conv.groups, conv.bias is not None, device=conv.weight.device, dtype=conv.weight.dtype)
            same.weight = conv.weight
            same.bias = conv.bias
            parent, _, leaf = name.rpartition(".")
            setattr(module.get_submodule(parent) if parent else module, leaf, same)
    return module


class HeadNet(nn.Module):
    """``repeats`` separable 3x3 convs (shared across levels) each with its own batch norm per level
    and swish, then a separable 3x3 conv to ``num_anchors * num_outputs``."""

    def __init__(self, channels: int, num_outputs: int, num_anchors: int, repeats: int, num_levels: int,
                 bias: float = 0.0):
        super().__init__()
        self.convs = nn.ModuleList(SeparableConv(channels, channels, norm=False) for _ in range(repeats))
        self.norms = nn.ModuleList(nn.ModuleList(nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01) for _ in range(repeats))
                                   for _ in range(num_levels))
        self.act = nn.SiLU()
        self.predict = SeparableConv(channels, num_anchors * num_outputs, norm=False)
        self.num_outputs = num_outputs
        nn.init.constant_(self.predict.pointwise.bias, bias)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """All levels' outputs ``[B, sum(H * W * A), num_outputs]``, level by level, location-major."""
        out = []
        for x, norms in zip(feats, self.norms):
            for conv, norm in zip(self.convs, norms):
                x = self.act(norm(conv(x)))
            y = self.predict(x)
            out.append(y.permute(0, 2, 3, 1).reshape(y.shape[0], -1, self.num_outputs))
        return torch.cat(out, dim=1)


def efficientdet_anchors(sizes: list[tuple[int, int]], strides: list[int], anchor_scale: float, num_scales: int = 3,
                         aspects=ASPECTS, device=None) -> torch.Tensor:
    """``[sum(H * W * A), 4]`` xyxy anchors, per level, per location (row-major), per (scale, aspect)."""
    out = []
    for (h, w), s in zip(sizes, strides):
        half = torch.tensor([[anchor_scale * s * 2 ** (o / num_scales) * ax / 2, anchor_scale * s * 2 ** (o / num_scales) * ay / 2]
                             for o in range(num_scales) for ax, ay in aspects], dtype=torch.float64)
        ys = (torch.arange(h, dtype=torch.float64) + 0.5) * s
        xs = (torch.arange(w, dtype=torch.float64) + 0.5) * s
        cy, cx = torch.meshgrid(ys, xs, indexing="ij")
        centres = torch.stack((cx, cy), -1).reshape(-1, 1, 2)
        out.append(torch.cat((centres - half, centres + half), -1).reshape(-1, 4))
    return torch.cat(out).to(torch.float32).to(device)


def _yx(codes: torch.Tensor) -> torch.Tensor:
    """Swap (x, y, w, h) <-> (y, x, h, w) box codes (TensorFlow orders y first)."""
    return codes[..., [1, 0, 3, 2]]


class EfficientDet(Detector):
    """EfficientDet on any zoo backbone's stride-8/16/32 maps.

    Args:
        num_classes: object classes (sigmoid outputs; no background class).
        backbone: a zoo classifier name; ``backbone_args`` its arguments (default for EfficientNets: the
            TensorFlow batch-norm eps 1e-3 and drop-path 0.2); ``tf_padding``: TensorFlow "SAME" padding
            for its strided convolutions (default: for EfficientNets, as the reference's ``tf_`` models).
        fpn_channels, fpn_repeats, head_repeats, weighting: BiFPN width and layers, class/box net depth,
            node fusion (``"fast"`` normalised weights or ``"sum"``, D6/D7).
        image_size: the longer side images are resized to; ``min_size``/``max_size`` override it.
        anchor_scale, num_scales: anchors of ``anchor_scale * stride * 2^(i / num_scales)``.
        score_thresh, nms_thresh, candidates, max_detections: eval decoding.
        alpha, gamma, delta, box_loss_weight, match_thresh: training (focal loss, Huber delta, IoU match).
    """

    def __init__(self, num_classes: int = 90, in_chans: int = 3, backbone: str = "efficientnet_b0",
                 backbone_args: dict | None = None, tf_padding: bool | None = None, fpn_channels: int = 64,
                 fpn_repeats: int = 3, head_repeats: int = 3, weighting: str = "fast", image_size: int = 512,
                 min_size: int | None = None, max_size: int | None = None, num_levels: int = 5,
                 anchor_scale: float = 4.0, num_scales: int = 3, score_thresh: float = 0.0, nms_thresh: float = 0.5,
                 candidates: int = 5000, max_detections: int = 100, alpha: float = 0.25, gamma: float = 1.5,
                 delta: float = 0.1, box_loss_weight: float = 50.0, match_thresh: float = 0.5,
                 norm_layer: str = "batchnorm", mean=IMAGENET_MEAN, std=IMAGENET_STD):
        super().__init__()
        from ..builder import create_model

        efficientnet = backbone.startswith("efficientnet")
        if backbone_args is None:
            backbone_args = dict(bn_eps=1e-3, drop_path_rate=0.2) if efficientnet else {}
        self.num_classes = num_classes
        self.backbone = create_model(backbone, features_only=True, out_strides=(8, 16, 32), in_chans=in_chans,
                                     norm_layer=norm_layer, **backbone_args)
        if efficientnet if tf_padding is None else tf_padding:
            tf_same_padding_(self.backbone)
        self.neck = BiFPN(self.backbone.feature_info.channels(), fpn_channels, fpn_repeats, num_levels, weighting)
        self.strides = [8 * 2 ** i for i in range(num_levels)]
        self.num_anchors = num_scales * len(ASPECTS)
        self.class_net = HeadNet(fpn_channels, num_classes, self.num_anchors, head_repeats, num_levels,
                                 bias=-math.log((1 - 0.01) / 0.01))
        self.box_net = HeadNet(fpn_channels, 4, self.num_anchors, head_repeats, num_levels)
        self.anchor_scale, self.num_scales = anchor_scale, num_scales
        self.transform = DetectionTransform(min_size or image_size, max_size or image_size, mean, std,
                                            size_divisible=self.strides[-1])
        self.coder = BoxCoder((1.0, 1.0, 1.0, 1.0), clip=math.inf)
        self.matcher = IoUMatcher(match_thresh, force_best=True)
        self.score_thresh, self.nms_thresh = score_thresh, nms_thresh
        self.candidates, self.max_detections = candidates, max_detections
        self.alpha, self.gamma, self.delta, self.box_loss_weight = alpha, gamma, delta, box_loss_weight

    def forward_batch(self, x: torch.Tensor) -> dict:
        feats = self.neck(self.backbone(x))
        return {"cls": self.class_net(feats), "box": self.box_net(feats),
                "sizes": [tuple(f.shape[-2:]) for f in feats]}

    def anchors(self, outputs) -> torch.Tensor:
        return efficientdet_anchors(outputs["sizes"], self.strides, self.anchor_scale, self.num_scales,
                                    device=outputs["cls"].device)

    def loss(self, outputs, batch: ImageBatch, targets: list[dict]) -> dict[str, torch.Tensor]:
        anchors = self.anchors(outputs)
        cls_targets, box_targets, positives = [], [], []
        for t in targets:
            matches = self.matcher(box_iou(t["boxes"], anchors))
            pos = matches >= 0
            onehot = torch.zeros_like(outputs["cls"][0])
            onehot[pos, t["labels"][matches[pos]]] = 1.0
            codes = torch.zeros_like(anchors)
            if pos.any():
                codes[pos] = _yx(self.coder.encode(t["boxes"][matches[pos]], anchors[pos]))
            cls_targets.append(onehot)
            box_targets.append(codes)
            positives.append(pos)
        positives = torch.stack(positives)
        num_pos = positives.sum()
        # every anchor is a positive or a negative (the match threshold is one IoU, no ignore band)
        cls_loss = sigmoid_focal_loss(outputs["cls"], torch.stack(cls_targets), self.alpha, self.gamma,
                                      reduction="sum") / (num_pos + 1.0)
        box_targets = torch.stack(box_targets)
        err = (outputs["box"] - box_targets).abs()
        quadratic = err.clamp(max=self.delta)
        huber = 0.5 * quadratic ** 2 + self.delta * (err - quadratic)
        box_loss = (huber * (box_targets != 0)).sum() / (4.0 * (num_pos + 1.0))  # the reference normalises both by positives + 1
        return {"classification": cls_loss, "box_regression": self.box_loss_weight * box_loss}

    def detect(self, outputs, batch: ImageBatch) -> list[dict[str, torch.Tensor]]:
        anchors = self.anchors(outputs)
        results = []
        for logits, codes, (h, w) in zip(outputs["cls"], outputs["box"], batch.image_sizes):
            scores, where, labels = top_candidates(logits.sigmoid(), self.score_thresh, self.candidates)
            boxes = self.coder.decode(_yx(codes[where]), anchors[where])
            boxes = torch.stack((boxes[:, 0].clamp(0, w), boxes[:, 1].clamp(0, h),
                                 boxes[:, 2].clamp(0, w), boxes[:, 3].clamp(0, h)), 1)
            results.append(nms_detections(boxes, scores, labels, self.nms_thresh, self.max_detections))
        return results


# --- variants: the paper's Table 1 (effdet's tf_efficientdet_d0 .. d7) --------------------------

# name: (backbone, image size, BiFPN width, BiFPN layers, head layers, fusion, anchor scale)
EFFICIENTDET_VARIANTS = {
    "d0": ("efficientnet_b0", 512, 64, 3, 3, "fast", 4.0),
    "d1": ("efficientnet_b1", 640, 88, 4, 3, "fast", 4.0),
    "d2": ("efficientnet_b2", 768, 112, 5, 3, "fast", 4.0),
    "d3": ("efficientnet_b3", 896, 160, 6, 4, "fast", 4.0),
    "d4": ("efficientnet_b4", 1024, 224, 7, 4, "fast", 4.0),
    "d5": ("efficientnet_b5", 1280, 288, 7, 4, "fast", 4.0),
    "d6": ("efficientnet_b6", 1280, 384, 8, 5, "sum", 4.0),
    "d7": ("efficientnet_b6", 1536, 384, 8, 5, "sum", 5.0),
}

card = family_card(
    family="efficientdet", year=2019, task="detection",
    paper="arXiv:1911.09070 EfficientDet: Scalable and Efficient Object Detection (Tan, Pang, Le)",
    tricks=("weighted_bifpn", "feature_pyramid", "anchor_boxes", "focal_loss", "non_maximum_suppression",
            "compound_scaling", "depthwise_separable_conv", "swish", "batch_norm", "mbconv_se"),
    dataset="COCO", num_classes=90, mean=IMAGENET_MEAN, std=IMAGENET_STD,
)


def _variant(key: str):
    backbone, size, width, layers, head, fusion, scale = EFFICIENTDET_VARIANTS[key]
    notes = (f"Backbone {backbone} with TensorFlow 'SAME' padding and batch-norm eps 1e-3 (timm's tf_{backbone}); "
             f"BiFPN {width} x {layers}, heads {head} layers, {'unweighted sum' if fusion == 'sum' else 'fast normalised'} fusion, "
             f"anchor scale {scale:g}. 90 COCO classes, 0-based (effdet reports label + 1).")
    return card(f"tf_efficientdet_{key}", reference=f"effdet:tf_efficientdet_{key}", input_size=(3, size, size),
                min_input_size=(3, 128, 128), heads=("class_net.predict.pointwise",),
                input_convs=("backbone.model.stem.conv",), notes=notes,
                kwargs=dict(backbone=backbone, image_size=size, fpn_channels=width, fpn_repeats=layers,
                            head_repeats=head, weighting=fusion, anchor_scale=scale))


register_variants(EfficientDet, [_variant(key) for key in EFFICIENTDET_VARIANTS])
