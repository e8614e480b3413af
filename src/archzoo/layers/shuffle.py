"""The ShuffleNetV2 unit: channel split, a cheap branch, concatenation and channel shuffle.

Ma et al. 2018, "ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design",
arXiv:1807.11164 (Figure 3c, 3d). Channel shuffle itself is from ShuffleNet (Zhang et al. 2017,
arXiv:1707.01083): after grouped operations, interleave the groups' channels so the next layer
mixes information from all of them.

* Basic unit (stride 1): split the channels in two halves; one half passes unchanged, the other
  goes through 1x1 -> depthwise kxk -> 1x1 (equal widths in and out, guideline G1); concatenate
  and shuffle. No addition, no grouped 1x1s (guidelines G2, G4)::

      y = shuffle(concat(x_a, branch(x_b)))          x_a, x_b = the two halves of x

* Down-sampling unit (stride 2): both branches see all the input: a strided depthwise kxk -> 1x1
  ("proj") and 1x1 -> strided depthwise kxk -> 1x1 ("main"); concatenate and shuffle.

The depthwise convolutions have no activation after them; every 1x1 is followed by BN and ReLU.
ThunderNet's SNet (Qin et al. 2019, arXiv:1903.11752) uses the same units with 5x5 depthwise
kernels (``kernel_size=5``).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from .conv import ActLayer, ConvNormAct


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave the channels of ``groups`` equal groups: ``[a0 a1 .. b0 b1 ..] -> [a0 b0 a1 b1 ..]``."""
    b, c, h, w = x.shape
    if c % groups:
        raise ValueError(f"channel_shuffle: {c} channels do not split into groups={groups}")
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class ShuffleV2Block(nn.Module):
    """One ShuffleNetV2 unit: ``in_chs -> out_chs`` at ``stride`` 1 (basic) or 2 (down-sampling).

    Args:
        kernel_size: of the depthwise convolutions (3 in ShuffleNetV2, 5 in SNet).
        mid_chs: width inside the main branch; default ``out_chs // 2``.
        proj_chs: (stride 2) output width of the projection branch; the main branch gives the
            rest, ``out_chs - proj_chs``. Default ``in_chs``, as in the authors' code (Megvii's
            ShuffleNet-Series and ThunderNet); ``out_chs // 2`` splits evenly, as torchvision's
            ``shufflenet_v2_*`` do. Both agree except where ``in_chs != out_chs // 2`` (a
            network's first unit).
        dilation: of the depthwise convolutions (a dilated backbone, :mod:`archzoo.layers.dilation`).
        downsample: the two-branch unit (default: when ``stride == 2``); a dilated network keeps it
            at stride 1 where it gave up the stride (the first unit of a stage).

    Children: ``main`` (and ``proj`` at stride 2), each a ``Sequential`` of :class:`ConvNormAct`.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        stride: int = 1,
        kernel_size: int = 3,
        mid_chs: int | None = None,
        proj_chs: int | None = None,
        dilation: int = 1,
        downsample: bool | None = None,
        act_layer: ActLayer = nn.ReLU,
        norm_layer: Callable[..., nn.Module] = nn.BatchNorm2d,
    ):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"ShuffleV2Block: stride must be 1 or 2, got {stride}")
        if out_chs % 2:
            raise ValueError(f"ShuffleV2Block: out_chs must be even (concatenated halves are shuffled), got {out_chs}")
        self.downsample = stride == 2 if downsample is None else bool(downsample)
        if not self.downsample and in_chs != out_chs:
            raise ValueError(f"ShuffleV2Block: a basic (split) unit keeps its width, got in_chs={in_chs}, "
                             f"out_chs={out_chs}; pass downsample=True for a two-branch unit")
        if stride == 2 and not self.downsample:
            raise ValueError("ShuffleV2Block: a stride-2 unit is a down-sampling unit (downsample=True)")
        mid_chs = mid_chs or out_chs // 2
        if not self.downsample:
            branch_in = main_out = in_chs // 2
        else:
            proj_chs = in_chs if proj_chs is None else proj_chs
            if not 0 < proj_chs < out_chs:
                raise ValueError(f"ShuffleV2Block: proj_chs must lie in (0, out_chs={out_chs}), got {proj_chs}")
            branch_in, main_out = in_chs, out_chs - proj_chs
            self.proj = nn.Sequential(
                ConvNormAct(in_chs, in_chs, kernel_size, stride, dilation=dilation, groups=in_chs, norm_layer=norm_layer, act_layer=None),
                ConvNormAct(in_chs, proj_chs, 1, norm_layer=norm_layer, act_layer=act_layer),
            )
        self.main = nn.Sequential(
            ConvNormAct(branch_in, mid_chs, 1, norm_layer=norm_layer, act_layer=act_layer),
            ConvNormAct(mid_chs, mid_chs, kernel_size, stride, dilation=dilation, groups=mid_chs, norm_layer=norm_layer, act_layer=None),
            ConvNormAct(mid_chs, main_out, 1, norm_layer=norm_layer, act_layer=act_layer),
        )
        self.in_chs, self.out_chs = in_chs, out_chs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.downsample:
            keep, x = x.chunk(2, dim=1)
            out = torch.cat((keep, self.main(x)), dim=1)
        else:
            out = torch.cat((self.proj(x), self.main(x)), dim=1)
        return channel_shuffle(out, 2)
