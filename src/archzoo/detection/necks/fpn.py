"""The feature pyramid network (Lin et al., "Feature Pyramid Networks for Object Detection",
arXiv:1612.03144, CVPR 2017).

A backbone's deep maps are semantically strong but coarse, its shallow maps fine but weak. FPN
adds a top-down path: each map ``C_i`` gets a lateral 1x1 convolution to a common width, the
coarser level's sum is upsampled (nearest neighbour, 2x) and added, and a 3x3 convolution smooths
each sum into ``P_i``. RetinaNet (arXiv:1708.02002) adds two coarser levels: ``P6`` a stride-2
3x3 convolution, ``P7`` another after a ReLU; the paper computes P6 from ``C5``, torchvision's
RetinaNet and FCOS from ``P5`` (``extra_from``). Faster and Mask R-CNN with FPN (the FPN paper,
section 4.1) add a parameter-free ``P6`` instead, P5 subsampled with stride 2 (a 1x1 max pool,
torchvision's ``LastLevelMaxPool``), used by the RPN only (``pool_level``).

The neck knows only the channel list of the maps it is given, so any zoo backbone feeds it.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F


def _init(conv: nn.Conv2d) -> nn.Conv2d:
    nn.init.kaiming_uniform_(conv.weight, a=1)  # as Detectron and torchvision
    nn.init.zeros_(conv.bias)
    return conv


class FPN(nn.Module):
    """Args:
        in_channels: channels of the backbone maps, fine to coarse (e.g. C3, C4, C5).
        out_channels: the width of every pyramid level.
        extra_levels: coarser levels added after the last one (RetinaNet and FCOS: 2, P6 and P7).
        extra_from: ``"p5"`` (torchvision) or ``"c5"`` (the RetinaNet paper): the input of the first
            extra level.
        pool_level: one more level after all others, the last one subsampled by 2 (no parameters;
            Faster R-CNN's P6).

    ``forward(maps)`` returns ``len(in_channels) + extra_levels + pool_level`` maps of ``out_channels``,
    fine to coarse.
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int = 256, extra_levels: int = 0,
                 extra_from: str = "p5", pool_level: bool = False):
        super().__init__()
        if extra_from not in ("p5", "c5"):
            raise ValueError(f"extra_from must be 'p5' or 'c5', got {extra_from!r}")
        in_channels = list(in_channels)
        self.lateral = nn.ModuleList(_init(nn.Conv2d(c, out_channels, 1)) for c in in_channels)
        self.output = nn.ModuleList(_init(nn.Conv2d(out_channels, out_channels, 3, padding=1)) for _ in in_channels)
        first = out_channels if extra_from == "p5" else in_channels[-1]
        self.extra = nn.ModuleList(_init(nn.Conv2d(first if i == 0 else out_channels, out_channels, 3, stride=2, padding=1))
                                   for i in range(extra_levels))
        self.in_channels, self.out_channels, self.extra_from = in_channels, out_channels, extra_from
        self.pool_level = pool_level

    def forward(self, maps: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        if len(maps) != len(self.lateral):
            raise ValueError(f"FPN built for {len(self.lateral)} maps, got {len(maps)}")
        inner = self.lateral[-1](maps[-1])
        outs = [self.output[-1](inner)]
        for i in range(len(maps) - 2, -1, -1):
            lateral = self.lateral[i](maps[i])
            inner = lateral + F.interpolate(inner, size=lateral.shape[-2:], mode="nearest")
            outs.insert(0, self.output[i](inner))
        x = outs[-1] if self.extra_from == "p5" else maps[-1]
        for i, conv in enumerate(self.extra):
            x = conv(x if i == 0 else F.relu(x))
            outs.append(x)
        if self.pool_level:
            outs.append(F.max_pool2d(outs[-1], kernel_size=1, stride=2))
        return outs
