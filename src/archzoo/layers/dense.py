"""Dense connectivity (Huang et al. 2016, "Densely Connected Convolutional Networks", arXiv:1608.06993).

Inside a dense block every layer sees the concatenation of all earlier feature maps and adds
``growth_rate`` new channels of its own:

    x_l = H_l([x_0, x_1, ..., x_{l-1}])        block output = [x_0, x_1, ..., x_L]

``H_l`` is pre-activation BN-ReLU-Conv3x3, optionally preceded by a BN-ReLU-Conv1x1 bottleneck to
``bn_size * growth_rate`` channels ("DenseNet-B"). Between blocks a transition layer
(BN-ReLU-Conv1x1-AvgPool2x2) halves the resolution and compresses the channels by ``compression``
("DenseNet-C"; both together: DenseNet-BC).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .conv import NormAct


class DenseLayer(nn.Module):
    """``H_l``: [BN-ReLU-Conv1x1 to ``bn_size * growth_rate``] -> BN-ReLU-Conv3x3 to ``growth_rate``.

    ``bn_size=0`` drops the bottleneck (the paper's plain DenseNet); ``drop_rate`` is dropout on the
    new features (the paper uses 0.2 on CIFAR without data augmentation).
    """

    def __init__(self, in_chs: int, growth_rate: int, bn_size: int = 4, drop_rate: float = 0.0):
        super().__init__()
        mid_chs = bn_size * growth_rate if bn_size else in_chs
        self.norm1 = NormAct(in_chs) if bn_size else None
        self.conv1 = nn.Conv2d(in_chs, mid_chs, 1, bias=False) if bn_size else None
        self.norm2 = NormAct(mid_chs)
        self.conv2 = nn.Conv2d(mid_chs, growth_rate, 3, padding=1, bias=False)
        self.drop_rate = drop_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv1 is not None:
            x = self.conv1(self.norm1(x))
        x = self.conv2(self.norm2(x))
        return F.dropout(x, self.drop_rate, self.training) if self.drop_rate > 0 else x


class DenseBlock(nn.Module):
    """``num_layers`` dense layers; each one's input is the concatenation of everything before it.

    The output has ``in_chs + num_layers * growth_rate`` channels (``out_chs``). ``layer``, when
    given, builds each layer as ``layer(in_chs, growth_rate)`` instead of :class:`DenseLayer`
    (SRDenseNet's post-activation Conv3x3-ReLU, without batch norm).
    """

    def __init__(self, in_chs: int, num_layers: int, growth_rate: int, bn_size: int = 4, drop_rate: float = 0.0,
                 layer: Callable[[int, int], nn.Module] | None = None):
        super().__init__()
        make = layer or (lambda chs, k: DenseLayer(chs, k, bn_size, drop_rate))
        self.layers = nn.ModuleList(make(in_chs + i * growth_rate, growth_rate) for i in range(num_layers))
        self.out_chs = in_chs + num_layers * growth_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.layers:
            features.append(layer(torch.cat(features, 1)))
        return torch.cat(features, 1)


class Transition(nn.Sequential):
    """BN-ReLU-Conv1x1 (``in_chs -> out_chs``, the compression) -> 2x2 average pooling."""

    def __init__(self, in_chs: int, out_chs: int):
        super().__init__()
        self.norm = NormAct(in_chs)
        self.conv = nn.Conv2d(in_chs, out_chs, 1, bias=False)
        self.pool = nn.AvgPool2d(2, stride=2)
        self.out_chs = out_chs
