"""The mobile blocks: depthwise-separable convolution and the inverted residual (MBConv).

* Depthwise-separable convolution — a kxk convolution per channel, then a 1x1 convolution that
  mixes channels: about ``k^2`` times cheaper than a full convolution. Sifre & Mallat 2014;
  made the backbone of a network by MobileNets (Howard et al. 2017, arXiv:1704.04861).
* Inverted residual with linear bottleneck — Sandler et al. 2018 (MobileNetV2, arXiv:1801.04381):
  the residual connects the *narrow* ends, the block expands ``t`` times inside, filters with a
  depthwise kxk, and projects back with a 1x1 that has no activation (a non-linearity in a
  narrow space destroys information)::

      y = x + project(depthwise(expand(x)))          (shortcut when stride 1 and widths match)

* MBConv — the same block with squeeze-excitation on the expanded features (MnasNet, Tan et al.
  2018, arXiv:1807.11626), swish activations and stochastic depth (EfficientNet, Tan & Le 2019,
  arXiv:1905.11946). The squeeze width is a ratio of the block's *input* channels.
* MobileNetV3's variant (Howard et al. 2019, arXiv:1905.02244): an activation per block (ReLU
  early, hard-swish deeper) and SE with a hard-sigmoid gate whose squeeze width is a quarter of
  the *expanded* channels, rounded to a multiple of 8 (``se_style``,
  :class:`~archzoo.layers.squeeze_excite.SqueezeExciteStyle`).

In both blocks the SE gates the depthwise convolution's output (before the projection). Both take
a ``dilation`` for their depthwise convolution (a dilated backbone, :mod:`archzoo.layers.dilation`).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from .conv import ActLayer, ConvNormAct, make_divisible
from .drop import DropPath
from .squeeze_excite import SqueezeExciteStyle

NormLayer = Callable[..., nn.Module]
MNASNET_SE = SqueezeExciteStyle()


class _MobileBlock(nn.Module):
    """Shared shortcut logic: ``x + drop_path(branch(x))`` when the block keeps the shape."""

    has_skip: bool
    drop_path: nn.Module

    def _init_skip(self, in_chs: int, out_chs: int, stride: int, skip: bool, drop_path: float) -> None:
        self.has_skip = skip and stride == 1 and in_chs == out_chs
        self.drop_path = DropPath(drop_path) if self.has_skip and drop_path > 0 else nn.Identity()

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.has_skip:
            return x + self.drop_path(self.branch(x))
        return self.branch(x)


class DepthwiseSeparable(_MobileBlock):
    """Depthwise kxk (strided) -> optional SE -> pointwise 1x1 without activation.

    Children: ``depthwise`` and ``project`` (:class:`ConvNormAct`), ``se``. ``se_style`` sizes and
    gates the SE (default: MnasNet's, ``se_ratio`` times ``in_chs``).
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int = 3,
        stride: int = 1,
        se_ratio: float | None = None,
        act_layer: ActLayer = nn.ReLU,
        norm_layer: NormLayer = nn.BatchNorm2d,
        skip: bool = True,
        drop_path: float = 0.0,
        dilation: int = 1,
        se_style: SqueezeExciteStyle = MNASNET_SE,
    ):
        super().__init__()
        self.depthwise = ConvNormAct(in_chs, in_chs, kernel_size, stride, dilation=dilation, groups=in_chs,
                                     norm_layer=norm_layer, act_layer=act_layer)
        self.se = se_style.build(in_chs, in_chs, se_ratio, act_layer)
        self.project = ConvNormAct(in_chs, out_chs, 1, norm_layer=norm_layer, act_layer=None)
        self._init_skip(in_chs, out_chs, stride, skip, drop_path)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.se(self.depthwise(x)))


class InvertedResidual(_MobileBlock):
    """1x1 expand to ``make_divisible(in_chs * expansion)`` -> depthwise kxk (strided) -> optional SE
    -> 1x1 linear projection (the linear bottleneck).

    Children: ``expand``, ``depthwise``, ``project`` (:class:`ConvNormAct`), ``se``; each a module of
    its own, so a detector can read the expanded map ``expand`` gives (SSDLite's C4 on MobileNetV3).
    ``se_style`` sizes and gates the SE (default: MnasNet's, ``se_ratio`` times ``in_chs``).
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        expansion: float,
        kernel_size: int = 3,
        stride: int = 1,
        se_ratio: float | None = None,
        act_layer: ActLayer = nn.ReLU6,
        norm_layer: NormLayer = nn.BatchNorm2d,
        skip: bool = True,
        drop_path: float = 0.0,
        dilation: int = 1,
        se_style: SqueezeExciteStyle = MNASNET_SE,
    ):
        super().__init__()
        mid_chs = make_divisible(in_chs * expansion, 8)
        self.expand = ConvNormAct(in_chs, mid_chs, 1, norm_layer=norm_layer, act_layer=act_layer)
        self.depthwise = ConvNormAct(mid_chs, mid_chs, kernel_size, stride, dilation=dilation, groups=mid_chs,
                                     norm_layer=norm_layer, act_layer=act_layer)
        self.se = se_style.build(mid_chs, in_chs, se_ratio, act_layer)
        self.project = ConvNormAct(mid_chs, out_chs, 1, norm_layer=norm_layer, act_layer=None)
        self._init_skip(in_chs, out_chs, stride, skip, drop_path)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.se(self.depthwise(self.expand(x))))
