"""Segmentation heads shared by the segmenters: FCN's head, atrous spatial pyramid pooling (ASPP),
DeepLabv3's head and MobileNetV3's Lite R-ASPP.

* :class:`FCNHead` — 3x3 conv to a quarter of the width -> norm -> ReLU -> dropout -> 1x1 classifier:
  the head of the dilated-ResNet FCNs (torchvision's reading of Long et al., arXiv:1411.4038) and
  the auxiliary head every DeepLab/PSPNet-style segmenter trains on an earlier stage.
* :class:`ASPP` — parallel branches on one map: a 1x1 conv, 3x3 convs at several atrous rates
  (DeepLab v2, Chen et al., arXiv:1606.00915) and image-level pooling (ParseNet, arXiv:1506.04579,
  added in DeepLab v3, arXiv:1706.05587), concatenated and projected by a 1x1 conv. Configurable:
  rates, width, separable 3x3 branches (DeepLab v3+, arXiv:1802.02611), pooling, dropout.
* :class:`DeepLabHead` — ASPP -> 3x3 conv -> 1x1 classifier (DeepLab v3, section 3.3).
* :class:`LRASPPHead` — Lite R-ASPP (MobileNetV3, arXiv:1905.02244, section 6.4): a 1x1 conv
  branch gated per channel by a pooled sigmoid branch, classified, upsampled and added to a
  classifier of the stride-8 map.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn as nn

from ..layers import ConvNormAct, create_norm_layer
from ..models.base import init_weights
from .base import upsample_like

NormLayer = Callable[[int], nn.Module]


def head_norm(norm: str | NormLayer | None) -> NormLayer:
    """A head's norm: a :data:`~archzoo.layers.NORM_LAYERS` name, a ``norm(channels)`` factory, or
    ``None`` for batch norm (torchvision's heads)."""
    if norm is None:
        return nn.BatchNorm2d
    return create_norm_layer(norm) if isinstance(norm, str) else norm


class FCNHead(nn.Sequential):
    """``conv`` (3x3 to ``mid_chs``, default ``in_chs // 4``, norm, ReLU) -> ``drop`` -> ``classifier`` (1x1)."""

    def __init__(self, in_chs: int, num_classes: int, mid_chs: int | None = None, dropout: float = 0.1,
                 norm_layer: str | NormLayer | None = None):
        super().__init__()
        mid_chs = mid_chs or in_chs // 4
        self.conv = ConvNormAct(in_chs, mid_chs, 3, norm_layer=head_norm(norm_layer))
        self.drop = nn.Dropout(dropout)
        self.classifier = nn.Conv2d(mid_chs, num_classes, 1)
        init_weights(self)


class SeparableConvNormAct(nn.Sequential):
    """A depthwise 3x3 conv (dilated; ``depthwise_norm``: followed by norm and ReLU, as DeepLab v3+'s
    TensorFlow code; without, as smp) -> 1x1 ``pointwise`` conv -> norm -> ReLU."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int = 3, dilation: int = 1,
                 norm_layer: NormLayer = nn.BatchNorm2d, depthwise_norm: bool = False):
        super().__init__()
        self.depthwise = ConvNormAct(in_chs, in_chs, kernel_size, dilation=dilation, groups=in_chs, bias=False,
                                     norm_layer=norm_layer if depthwise_norm else None,
                                     act_layer=nn.ReLU if depthwise_norm else None)
        self.pointwise = ConvNormAct(in_chs, out_chs, 1, norm_layer=norm_layer)


class ImagePooling(nn.Module):
    """Image-level features (ParseNet, arXiv:1506.04579): global average pool -> 1x1 ``conv`` (norm,
    ReLU) -> broadcast back to the map's size, so every position sees the whole image."""

    def __init__(self, in_chs: int, out_chs: int, norm_layer: NormLayer = nn.BatchNorm2d):
        super().__init__()
        self.conv = ConvNormAct(in_chs, out_chs, 1, norm_layer=norm_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.conv(x.mean((2, 3), keepdim=True))
        return pooled.expand(-1, -1, *x.shape[-2:])


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: ``branches`` (a 1x1 conv, a 3x3 conv per atrous rate, image
    pooling), concatenated -> 1x1 ``project`` (norm, ReLU) -> ``drop``.

    Args:
        in_chs: the input map's channels; ``out_chs``: every branch's and the output's width (256).
        rates: the 3x3 branches' dilations (DeepLab v3: 6, 12, 18 at output stride 16, doubled at 8;
            torchvision uses 12, 24, 36 for all its DeepLab v3 models).
        separable: depthwise-separable 3x3 branches (DeepLab v3+), see :class:`SeparableConvNormAct`;
            ``depthwise_norm`` adds norm and ReLU after their depthwise conv.
        pooling: include the image-pooling branch.
        dropout: after the projection (0.5 in torchvision; 0.1 in DeepLab v3+'s code).
        norm_layer: a norm name or factory (default batch norm).
    """

    def __init__(self, in_chs: int, out_chs: int = 256, rates: Sequence[int] = (12, 24, 36), separable: bool = False,
                 pooling: bool = True, dropout: float = 0.5, norm_layer: str | NormLayer | None = None,
                 depthwise_norm: bool = False):
        super().__init__()
        rates = tuple(rates)
        if any(not isinstance(r, int) or isinstance(r, bool) or r < 1 for r in rates):
            raise ValueError(f"atrous rates must be positive integers, got {rates!r}")
        norm = head_norm(norm_layer)
        branches: list[nn.Module] = [ConvNormAct(in_chs, out_chs, 1, norm_layer=norm)]
        for rate in rates:
            if separable:
                branches.append(SeparableConvNormAct(in_chs, out_chs, 3, rate, norm, depthwise_norm))
            else:
                branches.append(ConvNormAct(in_chs, out_chs, 3, dilation=rate, norm_layer=norm))
        if pooling:
            branches.append(ImagePooling(in_chs, out_chs, norm))
        self.branches = nn.ModuleList(branches)
        self.project = ConvNormAct(len(branches) * out_chs, out_chs, 1, norm_layer=norm)
        self.drop = nn.Dropout(dropout)
        self.out_chs = out_chs
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.project(torch.cat([branch(x) for branch in self.branches], dim=1)))


class DeepLabHead(nn.Sequential):
    """DeepLab v3's head: ``aspp`` -> ``conv`` (3x3, norm, ReLU) -> ``classifier`` (1x1). ``aspp_kwargs``
    configure the :class:`ASPP` (``out_chs``, ``rates``, ``separable`` ...)."""

    def __init__(self, in_chs: int, num_classes: int, norm_layer: str | NormLayer | None = None, **aspp_kwargs):
        super().__init__()
        self.aspp = ASPP(in_chs, norm_layer=norm_layer, **aspp_kwargs)
        chs = self.aspp.out_chs
        self.conv = ConvNormAct(chs, chs, 3, norm_layer=head_norm(norm_layer))
        self.classifier = nn.Conv2d(chs, num_classes, 1)
        init_weights(self)


class LRASPPHead(nn.Module):
    """Lite R-ASPP (MobileNetV3 section 6.4, Figure 10) on a stride-16 ``high`` and a stride-8 ``low`` map.

    ``branch``: 1x1 conv (norm, ReLU) of ``high`` to ``mid_chs`` (128); ``gate``: global average pool
    of ``high`` -> 1x1 conv -> sigmoid, a per-channel weight for it (the paper pools with a 49x49
    window at stride (16, 20) on 1024x2048 Cityscapes images; torchvision, and we, pool globally).
    The gated map is classified (``high_classifier``) and upsampled to ``low``'s size, where a 1x1
    ``low_classifier`` of ``low`` adds the finer detail. (torchvision upsamples the 128 channels and
    then classifies: the same function, as both steps are linear, but 6x more to upsample and 4x
    more positions to classify.)
    """

    def __init__(self, low_chs: int, high_chs: int, num_classes: int, mid_chs: int = 128,
                 norm_layer: str | NormLayer | None = None):
        super().__init__()
        self.branch = ConvNormAct(high_chs, mid_chs, 1, norm_layer=head_norm(norm_layer))
        self.gate = ConvNormAct(high_chs, mid_chs, 1, bias=False, norm_layer=None, act_layer=nn.Sigmoid)
        self.low_classifier = nn.Conv2d(low_chs, num_classes, 1)
        self.high_classifier = nn.Conv2d(mid_chs, num_classes, 1)
        init_weights(self)

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        x = self.branch(high) * self.gate(high.mean((2, 3), keepdim=True))
        return self.low_classifier(low) + upsample_like(self.high_classifier(x), low.shape[-2:])
