"""The path aggregation neck (PANet, Liu et al. 2018, arXiv:1803.01534) in the form of the YOLO
detectors since YOLOv4 (Bochkovskiy et al. 2020, arXiv:2004.10934): a top-down pass like FPN
(Lin et al. 2017, arXiv:1612.03144) followed by a bottom-up pass, so that fine localisation reaches
the coarse levels over a few layers. Each fusion *concatenates* the two maps and merges them with
a block (YOLOv8: a C2f without shortcuts, Jocher et al. 2023) instead of FPN's addition.

For three levels ``C3, C4, C5`` (strides 8, 16, 32)::

    T4 = block(cat(up(C5), C4))          top-down
    P3 = block(cat(up(T4), C3))
    P4 = block(cat(down(P3), T4))        bottom-up (down: 3x3 stride-2 conv)
    P5 = block(cat(down(P4), C5))

and in general the same for any number of levels. It takes only the backbone's channel list.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...layers.c2f import C2f, yolo_conv


class PAN(nn.Module):
    """Top-down then bottom-up fusion of ``len(in_channels)`` maps (shallow to deep).

    Args:
        in_channels: the backbone maps' channels, shallow to deep (strides doubling).
        out_channels: each output level's channels (the deepest level's top-down input is the
            backbone map itself, as in YOLOv8).
        depth: bottlenecks in each fusion block (C2f, no shortcut).
        norm_layer: the norm for every conv (default: batch norm, eps 1e-3, momentum 0.03).
    """

    def __init__(self, in_channels: Sequence[int], out_channels: Sequence[int], depth: int = 1, norm_layer=None):
        super().__init__()
        if len(in_channels) != len(out_channels) or len(in_channels) < 2:
            raise ValueError(f"PAN needs as many output as input levels (>= 2), got {in_channels} -> {out_channels}")
        conv, n = yolo_conv(norm_layer), len(in_channels)
        self.in_channels, self.out_channels = tuple(in_channels), tuple(out_channels)
        # top-down: level i (from n-2 down to 0) fuses up(level i+1) with the backbone's level i
        self.top_down = nn.ModuleList()
        above = in_channels[-1]
        for i in range(n - 2, -1, -1):
            self.top_down.append(C2f(above + in_channels[i], out_channels[i], depth, shortcut=False, norm_layer=norm_layer))
            above = out_channels[i]
        # bottom-up: level i (1..n-1) fuses down(output i-1) with the top-down map of level i (the input at the top)
        self.downsample, self.bottom_up = nn.ModuleList(), nn.ModuleList()
        for i in range(1, n):
            lateral = in_channels[i] if i == n - 1 else out_channels[i]
            self.downsample.append(conv(out_channels[i - 1], out_channels[i - 1], 3, 2))
            self.bottom_up.append(C2f(out_channels[i - 1] + lateral, out_channels[i], depth, shortcut=False,
                                      norm_layer=norm_layer))

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        n = len(feats)
        lateral = [None] * n
        lateral[-1] = x = feats[-1]
        for block, i in zip(self.top_down, range(n - 2, -1, -1)):
            x = block(torch.cat([F.interpolate(x, size=feats[i].shape[-2:], mode="nearest"), feats[i]], 1))
            lateral[i] = x
        outs = [x]
        for i, (down, block) in enumerate(zip(self.downsample, self.bottom_up), start=1):
            x = block(torch.cat([down(x), lateral[i]], 1))
            outs.append(x)
        return outs
