"""The fire module (Iandola et al. 2016, "SqueezeNet: AlexNet-level accuracy with 50x fewer
parameters and <0.5MB model size", arXiv:1602.07360, section 3.2).

A 1x1 "squeeze" layer cuts the channels the 3x3 filters see (strategy 2), then an "expand"
layer of 1x1 and 3x3 filters side by side (strategy 1: replace most 3x3 filters by 1x1)
restores the width; the two expand outputs are concatenated. No batch norm: every convolution
has a bias and a ReLU.
"""

from __future__ import annotations

import torch.nn as nn

from .conv import ConvNormAct
from .inception import ConcatBranches


class Fire(nn.Sequential):
    """``squeeze`` (1x1, ``squeeze_chs``) -> ``expand`` = ``[e1x1 (1x1) | e3x3 (3x3)]``."""

    def __init__(self, in_chs: int, squeeze_chs: int, expand1x1_chs: int, expand3x3_chs: int):
        super().__init__()
        self.squeeze = ConvNormAct(in_chs, squeeze_chs, 1, norm_layer=None)
        self.expand = ConcatBranches(
            e1x1=ConvNormAct(squeeze_chs, expand1x1_chs, 1, norm_layer=None),
            e3x3=ConvNormAct(squeeze_chs, expand3x3_chs, 3, norm_layer=None),
        )
        self.out_chs = expand1x1_chs + expand3x3_chs
