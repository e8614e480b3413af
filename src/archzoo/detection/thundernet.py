"""ThunderNet — Qin, Li, Zhang, Bao, Yu, Peng, Sun, "ThunderNet: Towards Real-time Generic Object
Detection on Mobile Devices", arXiv:1903.11752, ICCV 2019.

A two-stage detector cheap enough for an ARM phone (24 fps): the first real-time two-stage
detector on mobile. Light-Head R-CNN's design (Li et al., arXiv:1711.07264) shrunk everywhere:

::

    image 320x320 -> SNet (:mod:`archzoo.models.snet`) -> C4 (stride 16), C5 (stride 32)
      -> Context Enhancement Module: 1x1(C4) + up2x(1x1(C5)) + 1x1(avgpool(C5)) -> 245 ch, stride 16
      -> light RPN: 5x5 depthwise + 1x1 (256) -> 25 anchors (sizes 32..512 x ratios 1:2 .. 2:1)
      -> Spatial Attention Module: CEM map * sigmoid(BN(1x1(RPN features)))
      -> PSRoIAlign 7x7 on the 245 = 5 x 7 x 7 channel map -> 245-d per region
      -> R-CNN subnet: one FC (1024) -> class scores, class-specific box deltas

* **CEM** (section 3.3): FPN's multi-scale context without its many convolutions — three 1x1
  convolutions and a sum; the global branch gives every position image-level context.
* **SAM** (section 3.4): the RPN is trained to tell objects from background, so its hidden map is
  a foreground prior; multiplying it into the CEM map suppresses background before pooling, and the
  R-CNN loss back-propagates into the RPN through it.
* **Light head**: the CEM map is thin (245 channels) and pooled position-sensitively (R-FCN, Dai et
  al., arXiv:1605.06409: cell ``(i, j)`` of a region reads its own 5 channels), so each region
  costs one 245 -> 1024 FC.

Built on the shared two-stage parts: :class:`~archzoo.detection.two_stage.TwoStageDetector` (the
CEM is its neck), :class:`~archzoo.detection.rpn.RegionProposalNetwork` (matching, sampling, losses,
proposals) and :class:`~archzoo.detection.roi_heads.RoIHeads`. Training settings follow the authors'
released configuration (github.com/qinzheng93/ThunderNet): RPN proposals 2000 before NMS (0.7),
1000 after in training and 200 at test; 512 RoIs per image, a quarter positive. Labels are
``num_classes`` object classes 0..K-1 with a background logit of their own. Not reproduced: the
soft-NMS of the authors' test configuration (plain NMS here) and their L1 box losses (smooth L1, as
Faster R-CNN).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops import ps_roi_align

from ..layers import ConvNormAct
from ..registry import IMAGENET_MEAN, IMAGENET_STD, family_card, register_variants
from .anchors import AnchorGenerator
from .faster_rcnn import make_backbone, make_transform
from .roi_heads import BoxPredictor, RoIHeads
from .rpn import RegionProposalNetwork, RPNHead
from .transform import ImageBatch
from .two_stage import TwoStageDetector


class ContextEnhancement(nn.Module):
    """CEM: ``[C4, C5] -> [1x1(C4) + upsample(1x1(C5)) + 1x1(global_avg(C5))]``, ``out_channels`` wide
    at C4's resolution (nearest upsampling; the global term broadcasts over every position)."""

    def __init__(self, in_channels: Sequence[int], out_channels: int = 245):
        super().__init__()
        if len(in_channels) != 2:
            raise ValueError(f"the context enhancement module takes two maps (C4, C5), got channels {list(in_channels)}")
        c4, c5 = in_channels
        self.lateral4 = nn.Conv2d(c4, out_channels, 1)
        self.lateral5 = nn.Conv2d(c5, out_channels, 1)
        self.glb = nn.Conv2d(c5, out_channels, 1)
        self.out_channels = out_channels

    def forward(self, maps: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        c4, c5 = maps
        up = F.interpolate(self.lateral5(c5), size=c4.shape[-2:], mode="nearest")
        return [self.lateral4(c4) + up + self.glb(c5.mean((2, 3), keepdim=True))]


class SpatialAttention(nn.Module):
    """SAM: ``cem * sigmoid(BN(1x1(rpn_hidden)))``, the RPN's features as a per-position, per-channel gate."""

    def __init__(self, rpn_channels: int = 256, channels: int = 245):
        super().__init__()
        self.gate = ConvNormAct(rpn_channels, channels, 1, act_layer=nn.Sigmoid)

    def forward(self, cem: torch.Tensor, rpn_hidden: torch.Tensor) -> torch.Tensor:
        return cem * self.gate(rpn_hidden)


class LightRPN(nn.Module):
    """The light RPN as a proposer (see :mod:`archzoo.detection.two_stage`), with the SAM.

    ``conv`` (5x5 depthwise -> BN -> ReLU -> 1x1 to ``rpn_channels`` -> BN -> ReLU) gives the RPN's
    hidden map; :class:`~archzoo.detection.rpn.RegionProposalNetwork` (``rpn``, its head only the two
    1x1 predictors) scores and regresses the anchors on it and proposes. ``forward(batch, maps,
    targets)`` returns ``(proposals, losses, roi_maps)``: ``roi_maps`` is the CEM map re-weighted by
    the SAM (without ``spatial_attention`` only ``(proposals, losses)``: the heads pool the CEM map).
    ``rpn_kwargs`` go to the ``RegionProposalNetwork`` (thresholds, sampling, top-n).
    """

    def __init__(self, channels: int, anchor_generator: AnchorGenerator, rpn_channels: int = 256,
                 kernel_size: int = 5, spatial_attention: bool = True, **rpn_kwargs):
        super().__init__()
        self.conv = nn.Sequential(
            ConvNormAct(channels, channels, kernel_size, groups=channels),
            ConvNormAct(channels, rpn_channels, 1),
        )
        num_anchors = anchor_generator.num_anchors_per_location()
        if len(num_anchors) != 1:
            raise ValueError(f"the light RPN runs on one map: give the anchor generator one level, got {len(num_anchors)}")
        head = RPNHead(rpn_channels, num_anchors[0], num_convs=0)  # the two 1x1 predictors on the hidden map
        self.rpn = RegionProposalNetwork(anchor_generator, head, **rpn_kwargs)
        self.sam = SpatialAttention(rpn_channels, channels) if spatial_attention else None

    def forward(self, batch: ImageBatch, maps: dict[str, torch.Tensor], targets: list[dict] | None = None):
        if len(maps) != 1:
            raise ValueError(f"the light RPN runs on one map (the CEM's), got {list(maps)}")
        (name, cem), = maps.items()
        hidden = self.conv(cem)
        proposals, losses = self.rpn(batch, {name: hidden}, targets)
        if self.sam is None:
            return proposals, losses
        return proposals, losses, {name: self.sam(cem, hidden)}


class PSRoIAlign(nn.Module):
    """Position-sensitive RoIAlign (``torchvision.ops.ps_roi_align``) from the map ``map_name``:
    ``C`` channels -> ``[N, C / S^2, S, S]``, cell ``(i, j)`` bilinearly pooled from its own group of
    ``C / S^2`` channels. The call of :class:`~archzoo.detection.roi_heads.RoIPool`."""

    def __init__(self, map_name: str, output_size: int = 7, spatial_scale: float = 1 / 16, sampling_ratio: int = 2):
        super().__init__()
        self.map_name, self.output_size = map_name, int(output_size)
        self.spatial_scale, self.sampling_ratio = float(spatial_scale), sampling_ratio

    def forward(self, maps: dict[str, torch.Tensor], boxes: list[torch.Tensor], image_sizes=None) -> torch.Tensor:
        x = maps[self.map_name]
        return ps_roi_align(x, [b.to(x.dtype) for b in boxes], self.output_size, self.spatial_scale,
                            self.sampling_ratio)

    def extra_repr(self) -> str:
        return f"{self.map_name!r}, output_size={self.output_size}, spatial_scale={self.spatial_scale}"


class OneFCHead(nn.Module):
    """The R-CNN subnet's single hidden layer: ``relu(fc(flatten(x)))``."""

    def __init__(self, in_features: int, representation_size: int = 1024):
        super().__init__()
        self.fc = nn.Linear(in_features, representation_size)
        self.out_features = representation_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.fc(x.flatten(1)))


class ThunderNet(TwoStageDetector):
    """Args:
        num_classes: object classes K (labels 0..K-1; the predictor adds a background logit).
        backbone: a zoo classifier; its stride-16 and (deepest) stride-32 maps feed the CEM.
        norm_layer, backbone_args, in_chans: backbone options.
        image_size: the fixed input side (320 in the paper), or ``(h, w)``.
        mean, std: the transform's normalisation.
        cem_channels: the CEM's width (245); must be ``alpha * roi_size^2`` (5 x 7 x 7).
        roi_size: the PSRoIAlign grid (7). representation_size: the R-CNN FC (1024).
        rpn_channels: the light RPN's 1x1 width (256); rpn_kernel_size: its depthwise kernel (5).
        anchor_sizes, aspect_ratios: the 25 anchors (sizes 32..512, ratios h/w 1:2, 3:4, 1:1, 4:3, 2:1).
        spatial_attention: the SAM (``False``: the heads pool the CEM map itself; an ablation).
        rpn_*: the RPN (see :class:`~archzoo.detection.rpn.RegionProposalNetwork`).
        box_*: the RoI heads (see :class:`~archzoo.detection.roi_heads.RoIHeads`).
    """

    def __init__(self, num_classes: int = 80, in_chans: int = 3, backbone: str = "snet146",
                 norm_layer: str | None = None, backbone_args: dict | None = None,
                 image_size: int | Sequence[int] = 320, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD, cem_channels: int = 245, roi_size: int = 7,
                 representation_size: int = 1024, rpn_channels: int = 256, rpn_kernel_size: int = 5,
                 anchor_sizes: Sequence[int] = (32, 64, 128, 256, 512),
                 aspect_ratios: Sequence[float] = (0.5, 0.75, 1.0, 4 / 3, 2.0), spatial_attention: bool = True,
                 rpn_pre_nms_top_n=(2000, 2000), rpn_post_nms_top_n=(1000, 200), rpn_nms_thresh: float = 0.7,
                 rpn_fg_iou_thresh: float = 0.7, rpn_bg_iou_thresh: float = 0.3, rpn_batch_size_per_image: int = 256,
                 rpn_positive_fraction: float = 0.5, box_score_thresh: float = 0.05, box_nms_thresh: float = 0.5,
                 box_detections_per_img: int = 100, box_fg_iou_thresh: float = 0.5, box_bg_iou_thresh: float = 0.5,
                 box_batch_size_per_image: int = 512, box_positive_fraction: float = 0.25):
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1 (object classes, without background), got {num_classes}")
        if cem_channels % (roi_size * roi_size):
            raise ValueError(f"cem_channels ({cem_channels}) must be a multiple of roi_size^2 ({roi_size}^2): "
                             "position-sensitive pooling gives each of the roi_size x roi_size cells its own channels")
        transform = make_transform(in_chans, 320, 320, image_size, mean, std)
        body, channels, strides = make_backbone(backbone, in_chans, norm_layer, (16, 32), backbone_args)
        cem = ContextEnhancement(channels, cem_channels)
        anchors = AnchorGenerator((tuple(anchor_sizes),), tuple(aspect_ratios))
        proposer = LightRPN(cem_channels, anchors, rpn_channels, rpn_kernel_size, spatial_attention,
                            fg_iou_thresh=rpn_fg_iou_thresh, bg_iou_thresh=rpn_bg_iou_thresh,
                            batch_size_per_image=rpn_batch_size_per_image, positive_fraction=rpn_positive_fraction,
                            pre_nms_top_n=rpn_pre_nms_top_n, post_nms_top_n=rpn_post_nms_top_n,
                            nms_thresh=rpn_nms_thresh)
        roi_heads = RoIHeads(
            PSRoIAlign("0", roi_size, 1.0 / strides[0]), OneFCHead(cem_channels, representation_size),
            BoxPredictor(representation_size, num_classes + 1), fg_iou_thresh=box_fg_iou_thresh,
            bg_iou_thresh=box_bg_iou_thresh, batch_size_per_image=box_batch_size_per_image,
            positive_fraction=box_positive_fraction, score_thresh=box_score_thresh, nms_thresh=box_nms_thresh,
            detections_per_img=box_detections_per_img)
        super().__init__(num_classes, transform, body, proposer, roi_heads, neck=cem, map_names=("0",))


# --- variants ---------------------------------------------------------------------------------

card = family_card(
    family="thundernet", year=2019, task="detection",
    paper="arXiv:1903.11752 ThunderNet: Towards Real-time Generic Object Detection on Mobile Devices (Qin et al.)",
    tricks=("context_enhancement", "spatial_attention_module", "position_sensitive_roi_pooling", "thin_feature_map",
            "region_proposal_network", "anchor_boxes", "depthwise_separable_conv", "large_kernel_depthwise",
            "channel_split", "channel_shuffle", "image_pooling", "multi_task_loss", "balanced_sampling",
            "non_maximum_suppression"),
    dataset="COCO-2017", num_classes=80, mean=IMAGENET_MEAN, std=IMAGENET_STD, input_size=(3, 320, 320),
    min_input_size=(3, 64, 64), heads=("roi_heads.box_predictor.cls_score", "roi_heads.box_predictor.bbox_pred"),
    input_convs=("backbone.model.stem.conv",))
_NOTE = ("The paper's {} at 320x320: SNet backbone, CEM (245 channels), light RPN with 25 anchors, SAM, "
         "PSRoIAlign 7x7 and one 1024-wide FC. No reference implementation to convert from: trained from scratch "
         "here (the paper starts from an ImageNet-trained SNet).")

register_variants(ThunderNet, [
    card("thundernet_snet49", kwargs=dict(backbone="snet49"), notes=_NOTE.format("fastest detector (SNet49)")),
    card("thundernet_snet146", kwargs=dict(backbone="snet146"), notes=_NOTE.format("main detector (SNet146)")),
    card("thundernet_snet535", kwargs=dict(backbone="snet535"), notes=_NOTE.format("most accurate detector (SNet535)")),
])
