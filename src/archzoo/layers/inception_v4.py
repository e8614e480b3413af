"""Inception-v4 and Inception-ResNet blocks.

Szegedy et al. 2016, "Inception-v4, Inception-ResNet and the Impact of Residual Connections on
Learning", arXiv:1602.07261.

* Inception-v4 makes the Inception-v3 design uniform: four Inception-A blocks on the 35x35 grid,
  seven Inception-B on 17x17, three Inception-C on 8x8 (Figures 4 to 6), joined by
  Reduction-A and Reduction-B (Figures 7, 8), with the factorized 1xn / nx1 convolutions of
  Inception-v3 (arXiv:1512.00567). Reduction-B is Inception-v3's second grid reduction with other
  widths: :class:`~archzoo.layers.factorized_inception.ReductionB`.
* Inception-ResNet makes every block residual (:class:`ResidualInception`): the concatenated
  branches are projected back to the input width by a linear 1x1 convolution, scaled down
  (0.1 to 0.3: section 3.3 finds that unscaled residuals of very wide blocks make training
  die) and added to the input.

Every block is a :class:`~archzoo.layers.inception.ConcatBranches` of convolution stacks built
with ``conv_layer`` (default :class:`ConvNormAct`; the released models use batch norm with
``eps=1e-3``). Convolutions are "same"-padded except those the paper's figures mark "V"
(valid, unpadded), which includes every strided one. Branch widths are those of the released
TensorFlow models (and timm's port), which differ from the figures in a few places.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from .conv import ConvNormAct
from .inception import ConcatBranches, split_1x3_3x1

ConvLayer = Callable[..., nn.Module]


def _avg_pool() -> nn.AvgPool2d:
    """3x3 average pooling that averages real pixels only (no padding counted)."""
    return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)


class InceptionV4A(ConcatBranches):
    """Inception-A, 35x35 grid (Figure 4): 1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 -> 3x3 | avg pool -> 1x1."""

    def __init__(self, in_chs: int = 384, conv_layer: ConvLayer = ConvNormAct):
        c = conv_layer
        super().__init__(
            b1x1=c(in_chs, 96, 1),
            b3x3=nn.Sequential(c(in_chs, 64, 1), c(64, 96, 3)),
            b3x3dbl=nn.Sequential(c(in_chs, 64, 1), c(64, 96, 3), c(96, 96, 3)),
            pool=nn.Sequential(_avg_pool(), c(in_chs, 96, 1)),
        )
        self.out_chs = 4 * 96


class InceptionV4B(ConcatBranches):
    """Inception-B, 17x17 grid (Figure 5), 7x7 factorized: 1x1 | 1x1 -> 1x7 -> 7x1 |
    1x1 -> 7x1 -> 1x7 -> 7x1 -> 1x7 | avg pool -> 1x1."""

    def __init__(self, in_chs: int = 1024, conv_layer: ConvLayer = ConvNormAct):
        c = conv_layer
        super().__init__(
            b1x1=c(in_chs, 384, 1),
            b7x7=nn.Sequential(c(in_chs, 192, 1), c(192, 224, (1, 7)), c(224, 256, (7, 1))),
            b7x7dbl=nn.Sequential(c(in_chs, 192, 1), c(192, 192, (7, 1)), c(192, 224, (1, 7)),
                                  c(224, 224, (7, 1)), c(224, 256, (1, 7))),
            pool=nn.Sequential(_avg_pool(), c(in_chs, 128, 1)),
        )
        self.out_chs = 384 + 256 + 256 + 128


class InceptionV4C(ConcatBranches):
    """Inception-C, 8x8 grid (Figure 6): 1x1 | 1x1 -> (1x3 | 3x1) | 1x1 -> 3x1 -> 1x3 -> (1x3 | 3x1) |
    avg pool -> 1x1."""

    def __init__(self, in_chs: int = 1536, conv_layer: ConvLayer = ConvNormAct):
        c = conv_layer
        super().__init__(
            b1x1=c(in_chs, 256, 1),
            b3x3=nn.Sequential(c(in_chs, 384, 1), split_1x3_3x1(c, 384, 256)),
            b3x3dbl=nn.Sequential(c(in_chs, 384, 1), c(384, 448, (3, 1)), c(448, 512, (1, 3)), split_1x3_3x1(c, 512, 256)),
            pool=nn.Sequential(_avg_pool(), c(in_chs, 256, 1)),
        )
        self.out_chs = 6 * 256


class ReductionA(ConcatBranches):
    """Reduction-A, 35x35 -> 17x17 (Figure 7): stride-2 3x3 (``n``) | 1x1 (``k``) -> 3x3 (``l``) ->
    stride-2 3x3 (``m``) | stride-2 max pool. Table 1 gives ``k, l, m, n``: 192, 224, 256, 384 for
    Inception-v4, 256, 256, 384, 384 for Inception-ResNet-v2."""

    def __init__(self, in_chs: int, k: int, l: int, m: int, n: int, conv_layer: ConvLayer = ConvNormAct):  # noqa: E741
        c = conv_layer
        super().__init__(
            b3x3=c(in_chs, n, 3, stride=2, padding=0),
            b3x3dbl=nn.Sequential(c(in_chs, k, 1), c(k, l, 3), c(l, m, 3, stride=2, padding=0)),
            pool=nn.MaxPool2d(3, stride=2),
        )
        self.out_chs = n + m + in_chs


class ReductionResNetB(ConcatBranches):
    """Inception-ResNet-v2's Reduction-B, 17x17 -> 8x8 (Figure 18): 1x1 -> stride-2 3x3 (twice,
    different widths) | 1x1 -> 3x3 -> stride-2 3x3 | stride-2 max pool."""

    def __init__(self, in_chs: int = 1088, conv_layer: ConvLayer = ConvNormAct):
        c = conv_layer
        super().__init__(
            b3x3a=nn.Sequential(c(in_chs, 256, 1), c(256, 384, 3, stride=2, padding=0)),
            b3x3b=nn.Sequential(c(in_chs, 256, 1), c(256, 288, 3, stride=2, padding=0)),
            b3x3dbl=nn.Sequential(c(in_chs, 256, 1), c(256, 288, 3), c(288, 320, 3, stride=2, padding=0)),
            pool=nn.MaxPool2d(3, stride=2),
        )
        self.out_chs = 384 + 288 + 320 + in_chs


class ResidualInception(nn.Module):
    """``y = act(x + scale * expand(branches(x)))``: an Inception block made residual.

    ``expand`` is a linear 1x1 convolution (with bias, no norm) from the branches' ``branch_chs``
    back to the ``chs`` of the input; ``apply_act=False`` leaves the sum unrectified (the last
    block of Inception-ResNet-v2).
    """

    def __init__(self, branches: nn.Module, branch_chs: int, chs: int, scale: float = 1.0, apply_act: bool = True):
        super().__init__()
        self.branches = branches
        self.expand = nn.Conv2d(branch_chs, chs, 1)
        self.scale = scale
        self.act = nn.ReLU() if apply_act else nn.Identity()
        self.out_chs = chs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.scale * self.expand(self.branches(x)))

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


class InceptionResNetA(ResidualInception):
    """Inception-ResNet-A, 35x35 grid (Figure 16): 1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 -> 3x3, residual."""

    def __init__(self, chs: int = 320, scale: float = 0.17, conv_layer: ConvLayer = ConvNormAct):
        c = conv_layer
        branches = ConcatBranches(
            b1x1=c(chs, 32, 1),
            b3x3=nn.Sequential(c(chs, 32, 1), c(32, 32, 3)),
            b3x3dbl=nn.Sequential(c(chs, 32, 1), c(32, 48, 3), c(48, 64, 3)),
        )
        super().__init__(branches, 32 + 32 + 64, chs, scale)


class InceptionResNetB(ResidualInception):
    """Inception-ResNet-B, 17x17 grid (Figure 17): 1x1 | 1x1 -> 1x7 -> 7x1, residual."""

    def __init__(self, chs: int = 1088, scale: float = 0.1, conv_layer: ConvLayer = ConvNormAct):
        c = conv_layer
        branches = ConcatBranches(
            b1x1=c(chs, 192, 1),
            b7x7=nn.Sequential(c(chs, 128, 1), c(128, 160, (1, 7)), c(160, 192, (7, 1))),
        )
        super().__init__(branches, 192 + 192, chs, scale)


class InceptionResNetC(ResidualInception):
    """Inception-ResNet-C, 8x8 grid (Figure 19): 1x1 | 1x1 -> 1x3 -> 3x1, residual."""

    def __init__(self, chs: int = 2080, scale: float = 0.2, apply_act: bool = True, conv_layer: ConvLayer = ConvNormAct):
        c = conv_layer
        branches = ConcatBranches(
            b1x1=c(chs, 192, 1),
            b3x3=nn.Sequential(c(chs, 192, 1), c(192, 224, (1, 3)), c(224, 256, (3, 1))),
        )
        super().__init__(branches, 192 + 256, chs, scale, apply_act)
