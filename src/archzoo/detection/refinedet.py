"""RefineDet — Zhang, Wen, Bian, Lei, Li, "Single-Shot Refinement Neural Network for Object
Detection", arXiv:1711.06897 (CVPR 2018).

A one-stage detector with the two-step box regression of two-stage ones. Two interconnected
modules run on the same anchors (Figure 1):

* the **anchor refinement module** (ARM) predicts, per anchor of four backbone maps, a binary
  objectness (object vs background) and four offsets: it discards easy negatives and moves the
  anchors closer to the objects, like a region proposal network;
* **transfer connection blocks** (TCB, Figure 2) turn each ARM map into a detection map: two 3x3
  convolutions to 256 channels, plus the next coarser TCB's output upsampled by a 2x2 stride-2
  deconvolution (a top-down pyramid), then ReLU, a 3x3 convolution and ReLU;
* the **object detection module** (ODM) predicts, per *refined* anchor, the class scores (a
  softmax with a background logit) and offsets relative to the refined anchor.

Training (section 3.2): each module is matched and trained as SSD (IoU >= 0.5 with each box's best
anchor forced, hard negative mining 3:1, smooth L1; :class:`~archzoo.detection.ssd.SSD` supplies
it): the ARM on the anchors with every object as one class, the ODM on the refined anchors (the ARM
offsets decoded, without gradient). **Negative anchor filtering**: anchors whose ARM objectness is
below ``objectness_thresh`` (0.01: background confidence above 0.99) take no part in the ODM's
loss, neither as positives nor as negatives, and are dropped at inference. The loss is the sum of
the four terms, each divided by its module's number of positives.

RefineDet320/512 on VGG-16 (section 3.2, "Backbone Network"): the maps are conv4_3 and conv5_3
(both L2-normalised, ParseNet, initial scales 10 and 8), fc7 (fc6/fc7 as convolutions after the original 2x2 pool5:
a 3x3 with dilation 3 and a 1x1, 1024 channels) and conv6_2 (an added 1x1 to 256 and a stride-2
3x3 to 512): strides 8, 16, 32, 64. Per position three anchors of size 4 x stride (32 to 256
pixels) and ratios 0.5, 1, 2 (:class:`RefineDetAnchors`, SSD's default boxes without the extra
square). The VGG is the zoo's ``vgg16`` and the extra layers are SSD's parts
(:class:`~archzoo.detection.ssd.SSDNeck`, :class:`~archzoo.detection.ssd.SSDHead`,
:class:`~archzoo.detection.ssd.L2Norm`); ``backbone=`` takes any zoo classifier instead (its
stride-8, -16 and -32 maps and the same extra stride-64 layer, no L2 norm). Decoding: softmax,
per class at most 400 scores above 0.01, NMS at 0.45, the best 200 (section 3.2, "Inference").

Labels: ``num_classes`` object classes, 0-based; logit 0 is the background (as SSD's fresh models).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..registry import family_card, register_variants
from .default_boxes import DefaultBoxGenerator
from .ssd import SSD, VGG_MEAN, VGG_STD, L2Norm, SSDHead, SSDNeck, _check_size, _conv_relu, _xavier
from .transform import ImageBatch


class RefineDetAnchors(DefaultBoxGenerator):
    """SSD's default boxes without the extra square of side ``sqrt(s_k s_k+1)``: per position one
    square of scale ``s_k`` and, per aspect ratio ``a``, boxes ``a`` and ``1/a`` (RefineDet: 3)."""

    def _sizes(self, k: int) -> torch.Tensor:
        wh = super()._sizes(k)
        return torch.cat((wh[:1], wh[2:]))

    def num_anchors_per_location(self) -> list[int]:
        return [1 + 2 * len(r) for r in self.aspect_ratios]


class TransferConnection(nn.Module):
    """One TCB (Figure 2): ``relu(conv(relu(conv(x))) [+ deconv(coarser)])`` -> 3x3 conv -> ReLU."""

    def __init__(self, in_chs: int, chs: int = 256, top_down: bool = True):
        super().__init__()
        self.lateral = nn.Sequential(_conv_relu(in_chs, chs, 3, padding=1), nn.Conv2d(chs, chs, 3, padding=1))
        self.upsample = nn.ConvTranspose2d(chs, chs, 2, stride=2) if top_down else None
        self.output = _conv_relu(chs, chs, 3, padding=1)

    def forward(self, x: torch.Tensor, coarser: torch.Tensor | None = None) -> torch.Tensor:
        y = self.lateral(x)
        if self.upsample is not None:
            up = self.upsample(coarser)  # 2 ceil(n / 2) >= n: crop an odd map's extra row and column
            y = y + up[..., : y.shape[-2], : y.shape[-1]]
        return self.output(F.relu(y))


class RefineDet(SSD):
    """ARM (:class:`SSDHead` with 2 logits) on the backbone's maps, TCBs, ODM (``self.head``, an
    :class:`SSDHead` with ``num_classes + 1`` logits) on their outputs; see the module doc.

    Args: as :class:`~archzoo.detection.ssd.SSD` (``out_channels``: the backbone maps' channels),
    plus ``norms`` (per map an :class:`L2Norm` or ``None``), ``tcb_channels`` and
    ``objectness_thresh`` (negative anchor filtering)."""

    def __init__(self, backbone: nn.Module, neck: nn.Module, out_channels: Sequence[int],
                 norms: Sequence[nn.Module | None], head_block, default_boxes: DefaultBoxGenerator, num_classes: int,
                 image_size: tuple[int, int], mean: Sequence[float], std: Sequence[float], tcb_channels: int = 256,
                 objectness_thresh: float = 0.01, **kwargs):
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1 (object classes, without background), got {num_classes}")
        if not 0 <= objectness_thresh < 1:
            raise ValueError(f"objectness_thresh must be in [0, 1), got {objectness_thresh}")
        n = len(out_channels)
        super().__init__(backbone, neck, [tcb_channels] * n, head_block, default_boxes, num_classes, image_size, mean,
                         std, background_label0=False, **kwargs)
        self.norms = nn.ModuleList(m if m is not None else nn.Identity() for m in norms)
        anchors = default_boxes.num_anchors_per_location()
        self.arm = SSDHead(out_channels, anchors, 2, head_block)
        self.tcb = nn.ModuleList(TransferConnection(c, tcb_channels, top_down=i < n - 1)
                                 for i, c in enumerate(out_channels))
        _xavier(self.tcb)
        self.objectness_thresh = objectness_thresh

    def forward_batch(self, x: torch.Tensor):
        maps = [norm(m) for norm, m in zip(self.norms, self.neck(self.backbone(x)))]
        arm_logits, arm_codes = self.arm(maps)
        pyramid, coarser = [], None
        for m, tcb in zip(reversed(maps), reversed(self.tcb)):  # top-down: the coarsest map first
            coarser = tcb(m, coarser)
            pyramid.insert(0, coarser)
        odm_logits, odm_codes = self.head(pyramid)
        anchors = self.default_boxes(x.shape[-2:], [m.shape[-2:] for m in maps], dtype=maps[0].dtype, device=x.device)
        return arm_logits, arm_codes, odm_logits, odm_codes, anchors

    def refine(self, arm_logits: torch.Tensor, arm_codes: torch.Tensor, anchors: torch.Tensor):
        """The refined anchors ``[B, N, 4]`` (no gradient flows into them) and which of them the
        ODM keeps (objectness >= ``objectness_thresh``) ``[B, N]``."""
        arm_codes, arm_logits = arm_codes.detach(), arm_logits.detach()
        refined = torch.stack([self.box_coder.decode(c, anchors) for c in arm_codes])
        keep = arm_logits.softmax(-1)[..., 1] >= self.objectness_thresh
        return refined, keep

    def loss(self, outputs, batch: ImageBatch, targets: list[dict]) -> dict[str, torch.Tensor]:
        arm_logits, arm_codes, odm_logits, odm_codes, anchors = outputs
        # ARM: SSD's loss with every object as one class (label 0 -> logit 1, "object")
        objects = [{"boxes": t["boxes"], "labels": torch.zeros_like(t["labels"])} for t in targets]
        arm = super().loss((arm_logits, arm_codes, anchors), batch, objects)
        refined, keep = self.refine(arm_logits, arm_codes, anchors)
        # ODM: SSD's matching and hard negative mining on the refined anchors the ARM keeps
        odm = self.multibox_loss(odm_logits, odm_codes, refined, targets, usable=keep)
        return {"arm_bbox_regression": arm["bbox_regression"], "arm_classification": arm["classification"], **odm}

    def detect(self, outputs, batch: ImageBatch) -> list[dict[str, torch.Tensor]]:
        arm_logits, arm_codes, odm_logits, odm_codes, anchors = outputs
        refined, keep = self.refine(arm_logits, arm_codes, anchors)
        # a filtered anchor is background for sure: its class logits go to -inf (probability 0)
        is_class = torch.arange(odm_logits.shape[-1], device=odm_logits.device) > 0
        logits = odm_logits.masked_fill(~keep[..., None] & is_class, -float("inf"))
        results = []
        for i in range(logits.shape[0]):  # SSD's decoding, each image with its own (refined) anchors
            one = ImageBatch(batch.tensors[i:i + 1], batch.image_sizes[i:i + 1])
            results += super().detect((logits[i:i + 1], odm_codes[i:i + 1], refined[i]), one)
        return results


# --- RefineDet320 / RefineDet512 on VGG-16 -------------------------------------------------------

ANCHOR_RATIOS = ((2,), (2,), (2,), (2,))  # three anchors per position: 1, 2, 1/2
ANCHOR_SIZE = 4  # anchor side = 4 x the map's stride (32, 64, 128, 256 pixels)


def conv6(in_chs: int) -> nn.Sequential:
    """conv6_1 (1x1, 256) and conv6_2 (3x3, stride 2, 512): the extra stride-64 map."""
    return nn.Sequential(_conv_relu(in_chs, 256, 1), _conv_relu(256, 512, 3, stride=2, padding=1))


def refinedet(num_classes: int = 20, in_chans: int = 3, backbone: str = "vgg16", image_size=320,
              norm_layer: str | None = None, **kwargs) -> RefineDet:
    """RefineDet on ``backbone``'s stride-8, -16 and -32 maps plus conv6_2 (VGG-16: conv4_3 and
    conv5_3 L2-normalised, fc7 after pool5/fc6/fc7). ``image_size``: every image is resized to it
    (320 or 512 in the paper). ``kwargs`` go to :class:`RefineDet` (thresholds, ``objectness_thresh``)."""
    from ..builder import create_model

    size = _check_size(image_size)
    opts = {"norm_layer": norm_layer} if norm_layer else {}
    is_vgg = backbone.startswith("vgg")
    if is_vgg:  # its fully-connected head (120M weights) would be built and dropped
        opts.update(num_classes=0, hidden=())
    body = create_model(backbone, features_only=True, out_strides=(8, 16, 32), in_chans=in_chans, **opts)
    channels = body.feature_info.channels()
    norms: list[nn.Module | None] = [None, None, None, None]
    fc = None
    if is_vgg:  # fc6 (3x3, dilation 3) and fc7 (1x1) as convolutions after pool5
        fc = nn.Sequential(_conv_relu(channels[2], 1024, 3, padding=3, dilation=3), _conv_relu(1024, 1024, 1))
        channels[2] = 1024
        norms[:2] = [L2Norm(channels[0], 10.0), L2Norm(channels[1], 8.0)]
    neck = SSDNeck([conv6(channels[2])], fc=fc)
    _xavier(neck)
    channels.append(512)
    strides = (8, 16, 32, 64)
    scales = [ANCHOR_SIZE * s / min(size) for s in strides]
    boxes = RefineDetAnchors(ANCHOR_RATIOS, scales=scales + [1.0])  # the last scale only made SSD's extra box

    def head_block(c: int, out: int) -> nn.Module:
        conv = nn.Conv2d(c, out, 3, padding=1)
        _xavier(conv)
        return conv

    return RefineDet(body, neck, channels, norms, head_block, boxes, num_classes, size, VGG_MEAN, VGG_STD, **kwargs)


_HEADS = tuple(f"head.classification.{i}" for i in range(4))

card = family_card(
    family="refinedet",
    year=2017,
    paper="arXiv:1711.06897 Single-Shot Refinement Neural Network for Object Detection (Zhang et al.)",
    tricks=("anchor_refinement", "anchor_boxes", "multiscale_default_boxes", "hard_negative_mining",
            "feature_pyramid", "l2_normalization", "atrous_convolution", "non_maximum_suppression",
            "stacked_3x3_convs", "relu", "pointwise_conv"),
    task="detection",
    dataset="PASCAL VOC 2007+2012",
    num_classes=20,
    mean=VGG_MEAN,
    std=VGG_STD,
    min_input_size=(3, 64, 64),
    heads=_HEADS,
    input_convs=("backbone.model.stages.0.conv1.conv",),
)

_NOTES = ("Images are resized to image_size ({0}x{0}; sides that are multiples of 64 keep every map exact). "
          "20 classes as PASCAL VOC, 0-based, with a background logit of their own; the ARM's objectness "
          "filters anchors below objectness_thresh (0.01) out of the ODM's loss and detections.")

register_variants(refinedet, [
    card("refinedet320_vgg16", input_size=(3, 320, 320), kwargs=dict(backbone="vgg16", image_size=320),
         notes=_NOTES.format(320)),
    card("refinedet512_vgg16", input_size=(3, 512, 512), kwargs=dict(backbone="vgg16", image_size=512),
         notes=_NOTES.format(512)),
])
