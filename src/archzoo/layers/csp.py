"""Cross-stage partial stages (Wang et al. 2019, "CSPNet: A New Backbone that can Enhance Learning
Capability of CNN", arXiv:1911.11929) and the Darknet residual block they wrap in CSPDarknet.

A CSP stage splits its (expanded) input along channels into two halves. Only one half goes through
the stage's blocks; the other crosses the stage untouched, and the two are concatenated and fused
by a 1x1 "transition":

    x = expand(down(x));  [a, b] = split(x);  y = transition(cat(a, transition_b(blocks(b))))

Half the channels skip the blocks, so the stage costs about half, and the gradient reaching the
stage's input is not duplicated through every block. The Darknet block is YOLOv3's residual unit
(Redmon & Farhadi 2018, arXiv:1804.02767): ``x + conv3x3(conv1x1(x))`` with a halving 1x1.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .conv import ActLayer, ConvNormAct
from .drop import DropPath


class DarkBlock(nn.Module):
    """``x + conv2(conv1(x))``: 1x1 to ``mid_chs`` then 3x3 back to ``out_chs`` (both conv-BN-act);
    no activation after the sum."""

    def __init__(self, in_chs: int, out_chs: int, mid_chs: int, act_layer: ActLayer = nn.LeakyReLU, drop_path: float = 0.0):
        super().__init__()
        if in_chs != out_chs:
            raise ValueError(f"a Darknet block keeps its width, got {in_chs} -> {out_chs}")
        self.conv1 = ConvNormAct(in_chs, mid_chs, 1, act_layer=act_layer)
        self.conv2 = ConvNormAct(mid_chs, out_chs, 3, act_layer=act_layer)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_path(self.conv2(self.conv1(x)))


class CrossStagePartial(nn.Module):
    """One CSP stage: optional strided 3x3 ``conv_down``, 1x1 ``conv_exp`` to ``exp_chs``, split in
    halves, blocks on the second half, 1x1 ``conv_transition_b`` on it, concatenation, 1x1
    ``conv_transition`` to ``out_chs``.

    Args:
        in_chs, out_chs: stage input and output channels.
        stride: stride of ``conv_down`` (``1``: no down-sampling conv).
        exp_chs: channels after ``conv_exp`` (split evenly between the two paths).
        down_chs: output of ``conv_down`` (default ``in_chs``; CSPDarknet grows it to ``out_chs``).
        blocks: the modules applied to the partial path, in order; they take ``exp_chs // 2``
            channels and return ``block_chs``.
        block_chs: channels of the blocks' output (default ``exp_chs // 2``).
        cross_linear: no activation after ``conv_exp`` (CSPResNet).
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        exp_chs: int,
        blocks: list[nn.Module],
        stride: int = 2,
        down_chs: int | None = None,
        block_chs: int | None = None,
        cross_linear: bool = False,
        act_layer: ActLayer = nn.LeakyReLU,
    ):
        super().__init__()
        down_chs = down_chs or in_chs
        if stride != 1:
            self.conv_down = ConvNormAct(in_chs, down_chs, 3, stride, act_layer=act_layer)
        else:
            self.conv_down, down_chs = nn.Identity(), in_chs
        self.conv_exp = ConvNormAct(down_chs, exp_chs, 1, act_layer=None if cross_linear else act_layer)
        self.split_chs = exp_chs // 2
        self.blocks = nn.Sequential(*blocks)
        self.conv_transition_b = ConvNormAct(block_chs or self.split_chs, self.split_chs, 1, act_layer=act_layer)
        self.conv_transition = ConvNormAct(exp_chs, out_chs, 1, act_layer=act_layer)
        self.out_chs = out_chs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_exp(self.conv_down(x))
        cross, part = x.split(self.split_chs, dim=1)
        part = self.conv_transition_b(self.blocks(part))
        return self.conv_transition(torch.cat([cross, part], dim=1))

