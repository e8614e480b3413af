"""Residual blocks (He et al. 2015, arXiv:1512.03385): ``y = act(F(x) + shortcut(x))``.

:class:`BasicBlock` is two 3x3 convolutions; :class:`Bottleneck` is 1x1 reduce -> 3x3 -> 1x1
expand. The 3x3 may be grouped (ResNeXt, Xie et al. 2016, arXiv:1611.05431), the branch may be
gated by squeeze-excitation (Hu et al. 2017) and dropped by stochastic depth (Huang et al. 2016);
the 3x3s may be dilated (a backbone with a smaller output stride, :mod:`archzoo.layers.dilation`).
The pre-activation forms (He et al. 2016, arXiv:1603.05027) move norm and activation in front of
each convolution and leave the shortcut path untouched: ``y = F(x) + shortcut(x)``.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import torch
import torch.nn as nn

from .conv import ConvNormAct, NormAct, create_act
from .drop import DropPath

AttnLayer = Callable[[int], nn.Module] | None
NormLayer = Callable[[int], nn.Module]


class BasicBlock(nn.Module):
    """Two 3x3 conv-norm layers; the first strides. ``attn_layer(out_chs)`` gates the branch.

    ``dilation`` dilates both 3x3s, except that the first uses ``first_dilation`` when given (the
    block of a dilated stage that would have strided keeps the previous dilation there).
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        stride: int = 1,
        shortcut: nn.Module | None = None,
        attn_layer: AttnLayer = None,
        drop_path: float = 0.0,
        act_layer=nn.ReLU,
        dilation: int = 1,
        first_dilation: int | None = None,
        norm_layer: NormLayer = nn.BatchNorm2d,
    ):
        super().__init__()
        first_dilation = first_dilation or dilation
        self.conv1 = ConvNormAct(in_chs, out_chs, 3, stride, dilation=first_dilation, norm_layer=norm_layer, act_layer=act_layer)
        self.conv2 = ConvNormAct(out_chs, out_chs, 3, dilation=dilation, norm_layer=norm_layer, act_layer=None)
        self.se = attn_layer(out_chs) if attn_layer else nn.Identity()
        self.shortcut = shortcut if shortcut is not None else nn.Identity()
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.act = create_act(act_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.se(self.conv2(self.conv1(x)))
        return self.act(self.drop_path(f) + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 (``in -> reduce_chs``) -> 3x3 (``-> mid_chs``, strided, ``groups``, ``dilation``) -> 1x1 (``-> out_chs``).

    ``reduce_chs`` defaults to ``mid_chs``; SENet-154 widens inside the 3x3 and sets it apart.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        mid_chs: int,
        stride: int = 1,
        groups: int = 1,
        reduce_chs: int | None = None,
        shortcut: nn.Module | None = None,
        attn_layer: AttnLayer = None,
        drop_path: float = 0.0,
        act_layer=nn.ReLU,
        dilation: int = 1,
        norm_layer: NormLayer = nn.BatchNorm2d,
    ):
        super().__init__()
        reduce_chs = reduce_chs or mid_chs
        conv = partial(ConvNormAct, norm_layer=norm_layer, act_layer=act_layer)
        self.conv1 = conv(in_chs, reduce_chs, 1)
        self.conv2 = conv(reduce_chs, mid_chs, 3, stride, dilation=dilation, groups=groups)
        self.conv3 = conv(mid_chs, out_chs, 1, act_layer=None)
        self.se = attn_layer(out_chs) if attn_layer else nn.Identity()
        self.shortcut = shortcut if shortcut is not None else nn.Identity()
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.act = create_act(act_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.se(self.conv3(self.conv2(self.conv1(x))))
        return self.act(self.drop_path(f) + self.shortcut(x))


class PreActBasicBlock(nn.Module):
    """``conv(norm_act(conv(norm_act(x)))) + shortcut``; a projection shortcut sees the pre-activated input.

    ``dropout`` drops activations between the two convolutions (Wide ResNets, arXiv:1605.07146).
    """

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1, shortcut: nn.Module | None = None, drop_path: float = 0.0,
                 dropout: float = 0.0):
        super().__init__()
        self.norm1 = NormAct(in_chs)
        self.conv1 = nn.Conv2d(in_chs, out_chs, 3, stride, 1, bias=False)
        self.norm2 = NormAct(out_chs)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(out_chs, out_chs, 3, 1, 1, bias=False)
        self.shortcut = shortcut
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.norm1(x)
        shortcut = self.shortcut(pre) if self.shortcut is not None else x
        f = self.conv2(self.dropout(self.norm2(self.conv1(pre))))
        return self.drop_path(f) + shortcut


class PreActBottleneck(nn.Module):
    """Pre-activation bottleneck: norm-act -> 1x1 -> norm-act -> 3x3 (strided) -> norm-act -> 1x1."""

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        mid_chs: int,
        stride: int = 1,
        groups: int = 1,
        shortcut: nn.Module | None = None,
        drop_path: float = 0.0,
    ):
        super().__init__()
        self.norm1 = NormAct(in_chs)
        self.conv1 = nn.Conv2d(in_chs, mid_chs, 1, bias=False)
        self.norm2 = NormAct(mid_chs)
        self.conv2 = nn.Conv2d(mid_chs, mid_chs, 3, stride, 1, groups=groups, bias=False)
        self.norm3 = NormAct(mid_chs)
        self.conv3 = nn.Conv2d(mid_chs, out_chs, 1, bias=False)
        self.shortcut = shortcut
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.norm1(x)
        shortcut = self.shortcut(pre) if self.shortcut is not None else x
        f = self.conv1(pre)
        f = self.conv2(self.norm2(f))
        f = self.conv3(self.norm3(f))
        return self.drop_path(f) + shortcut
