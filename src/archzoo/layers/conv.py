"""Convolution building blocks: the conv -> norm -> activation unit every family reuses.

Batch norm after every convolution is Ioffe & Szegedy 2015 (arXiv:1502.03167); the pre-activation
order (norm -> activation -> conv) is He et al. 2016 (arXiv:1603.05027).
"""

from __future__ import annotations

from typing import Callable

import torch.nn as nn

ActLayer = Callable[..., nn.Module] | None


def get_padding(kernel_size: int, stride: int = 1, dilation: int = 1) -> int:
    """Symmetric padding that keeps ``ceil(size / stride)`` outputs for odd kernels."""
    return ((stride - 1) + dilation * (kernel_size - 1)) // 2


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None, round_limit: float = 0.9) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, never dropping below ``round_limit * value``.

    The channel-rounding rule of MobileNet/EfficientNet (Sandler et al. 2018, Tan & Le 2019).
    """
    min_value = min_value or divisor
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < round_limit * value:
        new_value += divisor
    return new_value


def create_act(act_layer: ActLayer, inplace: bool = True) -> nn.Module:
    """Instantiate an activation class (``nn.ReLU``, ``nn.SiLU`` ...); ``None`` gives ``Identity``."""
    if act_layer is None:
        return nn.Identity()
    try:
        return act_layer(inplace=inplace)
    except TypeError:  # activations without an inplace flag (Sigmoid, GELU, ...)
        return act_layer()


class ConvNormAct(nn.Sequential):
    """``act(norm(conv(x)))`` with children named ``conv``, ``bn`` and ``act``.

    ``norm_layer=None`` drops the norm (and gives the convolution a bias unless ``bias`` says
    otherwise); ``act_layer=None`` drops the activation (the last conv of a residual branch).
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int | tuple[int, int] = 3,
        stride: int = 1,
        padding: int | tuple[int, int] | None = None,
        dilation: int = 1,
        groups: int = 1,
        bias: bool | None = None,
        norm_layer: Callable[..., nn.Module] | None = nn.BatchNorm2d,
        act_layer: ActLayer = nn.ReLU,
        inplace: bool = True,
    ):
        if padding is None:
            if isinstance(kernel_size, tuple):
                padding = tuple(get_padding(k, stride, dilation) for k in kernel_size)
            else:
                padding = get_padding(kernel_size, stride, dilation)
        if bias is None:
            bias = norm_layer is None
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding, dilation, groups, bias=bias)
        if norm_layer is not None:
            self.bn = norm_layer(out_chs)
        if act_layer is not None:
            self.act = create_act(act_layer, inplace)
        self.in_chs, self.out_chs = in_chs, out_chs


class NormAct(nn.Sequential):
    """``act(norm(x))``: the pre-activation unit (He et al. 2016, arXiv:1603.05027)."""

    def __init__(self, chs: int, norm_layer: Callable[..., nn.Module] = nn.BatchNorm2d, act_layer: ActLayer = nn.ReLU):
        super().__init__()
        self.bn = norm_layer(chs)
        self.act = create_act(act_layer)
