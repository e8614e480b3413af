"""Classifier heads that are not "global average pool + linear".

* :class:`FCHead` — the fully-connected head of LeNet-5 (LeCun et al. 1998), AlexNet
  (Krizhevsky et al. 2012) and VGG (Simonyan & Zisserman 2014, arXiv:1409.1556): the last
  feature map, pooled to a fixed grid and flattened, goes through hidden fully-connected
  layers (with dropout in AlexNet and VGG) to the final layer.
* :class:`ConvPoolHead` — per-position class scores from a 1x1 convolution, then their global
  average (Network in Network, Lin et al. 2013, arXiv:1312.4400; SqueezeNet's classifier).

Both follow :class:`~archzoo.layers.ClassifierHead`'s interface: the final layer is ``fc``,
``reset(0)`` removes it, ``forward(x, pre_logits=True)`` stops just before it.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Sequence

import torch
import torch.nn as nn

from .conv import ActLayer, create_act


class FCHead(nn.Module):
    """``fc(pre_logits(flatten(pool(x))))`` where ``pre_logits`` is ``len(hidden)`` blocks of
    linear -> activation, each with dropout.

    Args:
        in_chs: channels of the feature map.
        hidden: widths of the hidden layers (4096, 4096 for AlexNet/VGG).
        pool_size: the grid the map is average-pooled to first (6 for AlexNet, 7 for VGG: the map
            size at 224x224, so pooling is the identity there).
        drop_rate: dropout probability.
        dropout_first: apply dropout to each hidden layer's input instead of its output
            (torchvision's AlexNet; the papers drop the hidden layers' outputs).
        fc_layer: the final layer's class, called as ``fc_layer(in_features, num_classes)``.
    """

    def __init__(
        self,
        in_chs: int,
        num_classes: int,
        hidden: Sequence[int] = (4096, 4096),
        pool_size: int | tuple[int, int] = 7,
        drop_rate: float = 0.5,
        dropout_first: bool = False,
        act_layer: ActLayer = nn.ReLU,
        fc_layer: Callable[[int, int], nn.Module] = nn.Linear,
    ):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(pool_size)
        h, w = (pool_size, pool_size) if isinstance(pool_size, int) else pool_size
        width = in_chs * h * w
        layers = []
        for i, out in enumerate(hidden, start=1):
            drop = [(f"drop{i}", nn.Dropout(drop_rate))] if drop_rate > 0 else []
            core = [(f"fc{i}", nn.Linear(width, out)), (f"act{i}", create_act(act_layer))]
            layers += drop + core if dropout_first else core + drop
            width = out
        self.pre_logits = nn.Sequential(OrderedDict(layers))
        self.hidden_size, self.fc_layer = width, fc_layer
        self.reset(num_classes)

    def reset(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.fc = self.fc_layer(self.hidden_size, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.pre_logits(self.pool(x).flatten(1))
        return x if pre_logits else self.fc(x)


class ConvPoolHead(nn.Module):
    """``flatten(global_pool(act(fc(drop(x)))))`` with ``fc`` a 1x1 convolution to class scores.

    With ``pre_logits=True`` (or no classes) the head returns the globally pooled features:
    the input the final layer would see if it were applied after pooling.
    """

    def __init__(self, in_chs: int, num_classes: int, drop_rate: float = 0.0, act_layer: ActLayer = nn.ReLU):
        super().__init__()
        self.in_chs = in_chs
        self.drop = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        self.act = create_act(act_layer)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.reset(num_classes)

    def reset(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.fc = nn.Conv2d(self.in_chs, num_classes, kernel_size=1) if num_classes > 0 else nn.Identity()
        if num_classes > 0:  # small initial scores, as in SqueezeNet's reference code
            nn.init.normal_(self.fc.weight, 0.0, 0.01)
            nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.drop(x)
        if pre_logits or self.num_classes <= 0:
            return self.global_pool(x).flatten(1)
        return self.global_pool(self.act(self.fc(x))).flatten(1)
