"""CenterNet — Zhou, Wang & Krähenbühl 2019, "Objects as Points", arXiv:1904.07850.

An object is the peak of a per-class heatmap at its box centre; the size ``(w, h)`` and the
sub-pixel offset of the centre are regressed at that one location. No anchors, no NMS: decoding
keeps the local maxima of the heatmap (a 3x3 max-pool) and the 100 best.

::

    image -> backbone (ResNet-18, stride 32)
          -> deconvolution neck: 3 x [3x3 conv + 4x4 transposed conv, stride 2] -> stride 4, 64 channels
          -> heads (3x3 conv 64 + ReLU + 1x1): heatmap [C], size [2], offset [2]
          -> training: penalty-reduced focal loss on Gaussian-splatted heatmaps (alpha 2, beta 4)
                       + 0.1 * L1(size) + 1 * L1(offset) at the centres
             eval:     3x3 max-pool peaks -> top-100 -> boxes

The paper's ResNet-18 neck uses deformable 3x3 convolutions before each upsampling; this one
uses a plain 3x3 convolution there (the paper's "ResNet-18 w/o DCN" ablation). The transposed
convolutions start as bilinear upsampling, as in the authors' code.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..layers import ConvNormAct
from ..registry import IMAGENET_MEAN, IMAGENET_STD, family_card, register_variants
from .base import Detector
from .postprocess import at_most
from .transform import DetectionTransform, ImageBatch


class DeconvNeck(nn.Sequential):
    """Upsample the last backbone map with ``[3x3 conv -> BN -> ReLU -> 4x4 transposed conv /2 -> BN -> ReLU]``
    per entry of ``channels`` (Xiao et al.'s "Simple Baselines" head, which CenterNet adopts)."""

    def __init__(self, in_chs: int, channels=(256, 128, 64)):
        layers = []
        for i, c in enumerate(channels):
            up = nn.ConvTranspose2d(c, c, 4, stride=2, padding=1, bias=False)
            _bilinear_(up.weight)
            layers.append(nn.Sequential(ConvNormAct(in_chs, c, 3), up, nn.BatchNorm2d(c), nn.ReLU(inplace=True)))
            in_chs = c
        super().__init__(*layers)
        self.out_chs = in_chs


def _bilinear_(weight: torch.Tensor) -> None:
    """Initialise a 4x4 transposed convolution as per-channel bilinear upsampling."""
    k = weight.shape[-1]
    f = math.ceil(k / 2)
    c = (2 * f - 1 - f % 2) / (2.0 * f)
    r = torch.arange(k, dtype=torch.float32)
    w1 = 1 - (r / f - c).abs()
    with torch.no_grad():
        weight.zero_()
        n = min(weight.shape[0], weight.shape[1])
        weight[torch.arange(n), torch.arange(n)] = w1[:, None] * w1[None, :]


def _head(in_chs: int, out_chs: int, mid_chs: int, bias: float = 0.0) -> nn.Sequential:
    head = nn.Sequential(nn.Conv2d(in_chs, mid_chs, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(mid_chs, out_chs, 1))
    nn.init.constant_(head[2].bias, bias)
    return head


def gaussian_radius(h: torch.Tensor, w: torch.Tensor, min_overlap: float = 0.7) -> torch.Tensor:
    """CornerNet's radius (Law & Deng 2018, arXiv:1808.01244): the largest shift of a box's corners
    that keeps IoU >= ``min_overlap`` with the ground truth, as the smallest root of the three
    quadratics of the authors' code (shrunk, grown, and one corner inside)."""
    b1 = h + w
    c1 = w * h * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + torch.sqrt(b1 ** 2 - 4 * c1)) / 2
    b2 = 2 * (h + w)
    c2 = (1 - min_overlap) * w * h
    r2 = (b2 + torch.sqrt(b2 ** 2 - 16 * c2)) / 2
    a3 = 4 * min_overlap
    b3 = -2 * min_overlap * (h + w)
    c3 = (min_overlap - 1) * w * h
    r3 = (b3 + torch.sqrt(b3 ** 2 - 4 * a3 * c3)) / 2
    return torch.minimum(torch.minimum(r1, r2), r3)


def centre_targets(boxes: torch.Tensor, labels: torch.Tensor, num_classes: int, size: tuple[int, int], stride: int):
    """One image's training targets at the output resolution (``boxes`` in input pixels):
    the Gaussian-splatted heatmap ``[C, H, W]`` (peak 1 at each integer centre, ``sigma =
    (2r + 1) / 6`` within radius ``r``, the maximum where objects overlap), and per object its
    flat centre index, size ``(w, h)`` and offset in output pixels."""
    h, w = size
    heat = boxes.new_zeros((num_classes, h, w))
    b = boxes / stride
    bw, bh = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    centre = torch.stack(((b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2), dim=1)
    cell = centre.floor().clamp(min=0)
    cell[:, 0].clamp_(max=w - 1)
    cell[:, 1].clamp_(max=h - 1)
    radius = gaussian_radius(bh.ceil(), bw.ceil()).floor().clamp(min=0)
    sigma = (2 * radius + 1) / 6
    ys = torch.arange(h, dtype=boxes.dtype, device=boxes.device)
    xs = torch.arange(w, dtype=boxes.dtype, device=boxes.device)
    for k in range(boxes.shape[0]):
        dx, dy = xs - cell[k, 0], ys - cell[k, 1]
        g = torch.exp(-(dy[:, None] ** 2 + dx[None, :] ** 2) / (2 * sigma[k] ** 2))
        g = g * ((dy.abs() <= radius[k])[:, None] & (dx.abs() <= radius[k])[None, :])
        heat[labels[k]] = torch.maximum(heat[labels[k]], g)
    index = (cell[:, 1] * w + cell[:, 0]).long()
    return heat, index, torch.stack((bw, bh), dim=1), centre - cell


def penalty_reduced_focal_loss(pred: torch.Tensor, gt: torch.Tensor, alpha: float = 2.0, beta: float = 4.0) -> torch.Tensor:
    """The paper's eq. 1: a focal loss on every heatmap pixel, negatives near a centre down-weighted by
    ``(1 - Y)^beta``; normalised by the number of objects (peaks)."""
    pos = gt.eq(1).to(pred.dtype)
    pos_loss = torch.log(pred) * (1 - pred) ** alpha * pos
    neg_loss = torch.log(1 - pred) * pred ** alpha * (1 - gt) ** beta * (1 - pos)
    return -(pos_loss.sum() + neg_loss.sum()) / pos.sum().clamp(min=1)


class CenterNet(Detector):
    """Objects as points on any zoo backbone (its deepest map), with the deconvolution neck.

    Args:
        num_classes: object classes (heatmap channels; there is no background class).
        backbone: a zoo classifier name; its deepest feature map feeds the neck.
        deconv_channels: widths of the upsampling steps (each doubles the resolution).
        head_channels: width of each head's hidden 3x3 convolution.
        min_size, max_size: the transform's resizing (512 in the paper); ``image_size`` sets both.
        score_thresh: detections below are dropped (0: keep all ``max_detections`` peaks).
        max_detections: peaks kept per image (100).
        size_weight, offset_weight: loss weights (0.1 and 1).
        norm_layer: the backbone's norm.
    """

    def __init__(self, num_classes: int = 80, in_chans: int = 3, backbone: str = "resnet18",
                 deconv_channels=(256, 128, 64), head_channels: int = 64, min_size: int = 512, max_size: int = 512,
                 image_size: int | None = None,
                 score_thresh: float = 0.0, max_detections: int = 100, size_weight: float = 0.1,
                 offset_weight: float = 1.0, norm_layer: str = "batchnorm", mean=IMAGENET_MEAN, std=IMAGENET_STD):
        super().__init__()
        from ..builder import create_model

        if image_size is not None:  # a square input of this side, like the other detectors
            min_size = max_size = int(image_size)

        self.num_classes = num_classes
        self.backbone = create_model(backbone, features_only=True, out_indices=(-1,), in_chans=in_chans,
                                     norm_layer=norm_layer)
        info = self.backbone.feature_info[-1]
        self.neck = DeconvNeck(info["channels"], tuple(deconv_channels))
        self.stride = info["stride"] // 2 ** len(deconv_channels)
        self.heatmap = _head(self.neck.out_chs, num_classes, head_channels, bias=-2.19)  # sigmoid(-2.19) = 0.1
        self.size = _head(self.neck.out_chs, 2, head_channels)
        self.offset = _head(self.neck.out_chs, 2, head_channels)
        self.transform = DetectionTransform(min_size, max_size, mean, std, size_divisible=info["stride"])
        self.score_thresh, self.max_detections = score_thresh, max_detections
        self.size_weight, self.offset_weight = size_weight, offset_weight

    def forward_batch(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        y = self.neck(self.backbone(x)[-1])
        return {"heatmap": self.heatmap(y), "size": self.size(y), "offset": self.offset(y)}

    def loss(self, outputs, batch: ImageBatch, targets: list[dict]) -> dict[str, torch.Tensor]:
        heat_pred = outputs["heatmap"].sigmoid().clamp(1e-4, 1 - 1e-4)
        b, _, h, w = heat_pred.shape
        heats, size_pred, size_gt, off_pred, off_gt = [], [], [], [], []
        for i, t in enumerate(targets):
            heat, index, size, offset = centre_targets(t["boxes"], t["labels"], self.num_classes, (h, w), self.stride)
            heats.append(heat)
            size_pred.append(outputs["size"][i].flatten(1)[:, index].t())
            off_pred.append(outputs["offset"][i].flatten(1)[:, index].t())
            size_gt.append(size)
            off_gt.append(offset)
        num = 2 * sum(len(s) for s in size_gt) + 1e-4  # the authors' L1: per object and coordinate
        size_loss = F.l1_loss(torch.cat(size_pred), torch.cat(size_gt), reduction="sum") / num
        offset_loss = F.l1_loss(torch.cat(off_pred), torch.cat(off_gt), reduction="sum") / num
        return {"heatmap": penalty_reduced_focal_loss(heat_pred, torch.stack(heats)),
                "size": self.size_weight * size_loss, "offset": self.offset_weight * offset_loss}

    def detect(self, outputs, batch: ImageBatch) -> list[dict[str, torch.Tensor]]:
        heat = outputs["heatmap"].sigmoid()
        peaks = heat * (F.max_pool2d(heat, 3, stride=1, padding=1) == heat)
        b, c, h, w = heat.shape
        scores, flat = peaks.flatten(1).topk(at_most(self.max_detections, peaks.flatten(1), 1), dim=1)
        labels = torch.div(flat, h * w, rounding_mode="floor")
        pos = flat % (h * w)
        results = []
        for i in range(b):
            size = outputs["size"][i].flatten(1)[:, pos[i]]
            offset = outputs["offset"][i].flatten(1)[:, pos[i]]
            cx = (pos[i] % w).to(heat.dtype) + offset[0]
            cy = torch.div(pos[i], w, rounding_mode="floor").to(heat.dtype) + offset[1]
            boxes = torch.stack((cx - size[0] / 2, cy - size[1] / 2, cx + size[0] / 2, cy + size[1] / 2), 1) * self.stride
            ih, iw = batch.image_sizes[i]
            boxes = torch.stack((boxes[:, 0].clamp(0, iw), boxes[:, 1].clamp(0, ih),
                                 boxes[:, 2].clamp(0, iw), boxes[:, 3].clamp(0, ih)), 1)
            keep = scores[i] > self.score_thresh
            results.append({"boxes": boxes[keep], "scores": scores[i][keep], "labels": labels[i][keep]})
        return results


card = family_card(
    family="centernet", year=2019, task="detection",
    paper="arXiv:1904.07850 Objects as Points (Zhou, Wang, Krähenbühl)",
    tricks=("objects_as_points", "anchor_free", "deconvolution_upsampling", "focal_loss", "residual_shortcut",
            "batch_norm", "relu"),
    dataset="COCO", num_classes=80, mean=IMAGENET_MEAN, std=IMAGENET_STD,
)

register_variants(CenterNet, [
    card("centernet_resnet18", reference=None, input_size=(3, 512, 512), min_input_size=(3, 64, 64),
         heads=("heatmap.2",), input_convs=("backbone.model.stem.conv.conv",),
         notes="The paper's ResNet-18 with plain 3x3 convolutions where it uses deformable ones (its 'w/o DCN' "
               "ablation); ImageNet normalisation in RGB (the authors' code normalises BGR with COCO statistics).",
         kwargs=dict(backbone="resnet18")),
])
