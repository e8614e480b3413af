"""Shortcuts for residual blocks whose output shape differs from their input
(He et al. 2015, arXiv:1512.03385, section 3.3).

* option A, :class:`ZeroPadShortcut`: subsample and pad the new channels with zeros (no weights);
  used by the paper's CIFAR ResNets.
* option B, :func:`projection_shortcut`: a strided convolution (1x1 in the paper) plus norm.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .conv import ConvNormAct


class ZeroPadShortcut(nn.Module):
    """Identity with stride-``s`` subsampling and zero channels appended up to ``out_chs``."""

    def __init__(self, in_chs: int, out_chs: int, stride: int):
        super().__init__()
        if out_chs < in_chs:
            raise ValueError(f"zero-padding shortcut cannot shrink channels ({in_chs} -> {out_chs})")
        self.in_chs, self.out_chs, self.stride = in_chs, out_chs, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.out_chs - self.in_chs))

    def extra_repr(self) -> str:
        return f"{self.in_chs}, {self.out_chs}, stride={self.stride}"


def projection_shortcut(in_chs: int, out_chs: int, stride: int, kernel_size: int = 1,
                        norm_layer: Callable[[int], nn.Module] | None = nn.BatchNorm2d, dilation: int = 1) -> nn.Module:
    """Option B: ``norm(conv_k(x))`` with stride; ``norm_layer=None`` for pre-activation blocks.
    ``dilation`` only matters for kernels above 1 (SENet-154's 3x3 projections in a dilated stage)."""
    return ConvNormAct(in_chs, out_chs, kernel_size, stride, dilation=dilation if kernel_size > 1 else 1,
                       norm_layer=norm_layer, act_layer=None, bias=False)


def make_shortcut(kind: str, in_chs: int, out_chs: int, stride: int, kernel_size: int = 1,
                  norm_layer: Callable[[int], nn.Module] | None = nn.BatchNorm2d, dilation: int = 1) -> nn.Module | None:
    """The shortcut a block needs: ``None`` (identity) when shapes match, else option ``kind``
    (``"A"``: zero padding, ``"B"``: projection)."""
    if stride == 1 and in_chs == out_chs:
        return None
    if kind == "A":
        return ZeroPadShortcut(in_chs, out_chs, stride)
    if kind == "B":
        return projection_shortcut(in_chs, out_chs, stride, kernel_size, norm_layer, dilation)
    raise ValueError(f"shortcut kind must be 'A' or 'B', got {kind!r}")
