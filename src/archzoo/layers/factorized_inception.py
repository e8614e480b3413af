"""Inception-v3's modules: factorized convolutions and efficient grid-size reduction.

Szegedy et al. 2015, "Rethinking the Inception Architecture for Computer Vision", arXiv:1512.00567.

* Section 3.1: a 5x5 convolution becomes two stacked 3x3 (:class:`InceptionA`, Figure 5).
* Section 3.2: an n x n convolution becomes a 1 x n followed by an n x 1 (:class:`InceptionC`,
  Figure 6, n = 7 on the 17x17 grid); on the coarsest grid the 1x3 and 3x1 run side by side to
  widen the output (:class:`InceptionE`, Figure 7).
* Section 5: to halve the grid without a representational bottleneck, stride-2 convolution
  branches run in parallel with a stride-2 pooling branch (:class:`InceptionB`, :class:`ReductionB`,
  Figure 10; Inception-v4 reuses the second with other widths).

Branch widths are those of the released TensorFlow model (and torchvision's port). Each block
takes ``conv_layer`` (default :class:`ConvNormAct`); Inception-v3 uses batch norm with ``eps=1e-3``.
"""

from __future__ import annotations

from typing import Callable

import torch.nn as nn

from .conv import ConvNormAct
from .inception import ConcatBranches, split_1x3_3x1

ConvLayer = Callable[..., nn.Module]


def _avg_pool_branch(conv_layer: ConvLayer, in_chs: int, out_chs: int) -> nn.Sequential:
    return nn.Sequential(nn.AvgPool2d(3, stride=1, padding=1), conv_layer(in_chs, out_chs, 1))


class InceptionA(ConcatBranches):
    """35x35 grid: 1x1 | 1x1 -> 5x5 | 1x1 -> 3x3 -> 3x3 | avg pool -> 1x1 (``pool_chs``)."""

    def __init__(self, in_chs: int, pool_chs: int, conv_layer: ConvLayer = ConvNormAct):
        c = conv_layer
        super().__init__(
            b1x1=nn.Sequential(c(in_chs, 64, 1)),
            b5x5=nn.Sequential(c(in_chs, 48, 1), c(48, 64, 5)),
            b3x3dbl=nn.Sequential(c(in_chs, 64, 1), c(64, 96, 3), c(96, 96, 3)),
            pool=_avg_pool_branch(c, in_chs, pool_chs),
        )
        self.out_chs = 64 + 64 + 96 + pool_chs


class InceptionB(ConcatBranches):
    """Grid reduction 35 -> 17: stride-2 3x3 | 1x1 -> 3x3 -> stride-2 3x3 | stride-2 max pool."""

    def __init__(self, in_chs: int, conv_layer: ConvLayer = ConvNormAct):
        c = conv_layer
        super().__init__(
            b3x3=nn.Sequential(c(in_chs, 384, 3, stride=2, padding=0)),
            b3x3dbl=nn.Sequential(c(in_chs, 64, 1), c(64, 96, 3), c(96, 96, 3, stride=2, padding=0)),
            pool=nn.MaxPool2d(3, stride=2),
        )
        self.out_chs = 384 + 96 + in_chs


class InceptionC(ConcatBranches):
    """17x17 grid, 7x7 factorized into 1x7 and 7x1: 1x1 | 1x1 -> 1x7 -> 7x1 |
    1x1 -> 7x1 -> 1x7 -> 7x1 -> 1x7 | avg pool -> 1x1; ``mid_chs`` inside the factorized branches."""

    def __init__(self, in_chs: int, mid_chs: int, conv_layer: ConvLayer = ConvNormAct):
        c, m = conv_layer, mid_chs
        super().__init__(
            b1x1=nn.Sequential(c(in_chs, 192, 1)),
            b7x7=nn.Sequential(c(in_chs, m, 1), c(m, m, (1, 7)), c(m, 192, (7, 1))),
            b7x7dbl=nn.Sequential(c(in_chs, m, 1), c(m, m, (7, 1)), c(m, m, (1, 7)), c(m, m, (7, 1)), c(m, 192, (1, 7))),
            pool=_avg_pool_branch(c, in_chs, 192),
        )
        self.out_chs = 4 * 192


class ReductionB(ConcatBranches):
    """Grid reduction 17 -> 8: 1x1 -> stride-2 3x3 | 1x1 -> 1x7 -> 7x1 -> stride-2 3x3 | stride-2 max pool.

    Inception-v3's second reduction (Figure 10; torchvision's ``InceptionD``) and Inception-v4's
    Reduction-B (arXiv:1602.07261, Figure 8) are this block with other widths: ``b3x3`` gives the
    two convolutions of the first branch, ``b7x7x3`` the four of the second. The defaults are
    Inception-v3's; Inception-v4 uses ``b3x3=(192, 192), b7x7x3=(256, 256, 320, 320)``.
    """

    def __init__(self, in_chs: int, b3x3: tuple[int, int] = (192, 320), b7x7x3: tuple[int, int, int, int] = (192, 192, 192, 192),
                 conv_layer: ConvLayer = ConvNormAct):
        c = conv_layer
        (r, w), (r7, a, b, w7) = b3x3, b7x7x3
        super().__init__(
            b3x3=nn.Sequential(c(in_chs, r, 1), c(r, w, 3, stride=2, padding=0)),
            b7x7x3=nn.Sequential(c(in_chs, r7, 1), c(r7, a, (1, 7)), c(a, b, (7, 1)), c(b, w7, 3, stride=2, padding=0)),
            pool=nn.MaxPool2d(3, stride=2),
        )
        self.out_chs = w + w7 + in_chs


class InceptionE(ConcatBranches):
    """8x8 grid, the expanded filter bank: 1x1 | 1x1 -> (1x3 | 3x1) | 1x1 -> 3x3 -> (1x3 | 3x1) |
    avg pool -> 1x1; the split branches concatenate their two halves."""

    def __init__(self, in_chs: int, conv_layer: ConvLayer = ConvNormAct):
        c = conv_layer
        super().__init__(
            b1x1=nn.Sequential(c(in_chs, 320, 1)),
            b3x3=nn.Sequential(c(in_chs, 384, 1), split_1x3_3x1(c, 384, 384)),
            b3x3dbl=nn.Sequential(c(in_chs, 448, 1), c(448, 384, 3), split_1x3_3x1(c, 384, 384)),
            pool=_avg_pool_branch(c, in_chs, 192),
        )
        self.out_chs = 320 + 2 * 384 + 2 * 384 + 192
