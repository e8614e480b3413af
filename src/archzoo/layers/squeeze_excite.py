"""Squeeze-and-Excitation channel gating (Hu et al. 2017, arXiv:1709.01507).

    s = sigmoid(W2 act(W1 mean_hw(x)))      y = x * s

The two "fully-connected" layers are 1x1 convolutions so the weights keep their 4-d shape.

Mobile blocks size their SE from a ratio (a block string's ``seX``) in one of two styles
(:class:`SqueezeExciteStyle`): MnasNet/EfficientNet's (a fraction of the block's *input* width,
the block's activation, sigmoid gate) and MobileNetV3's (Howard et al. 2019, arXiv:1905.02244,
section 5.3: a fraction of the *expanded* width rounded to a multiple of 8, ReLU inside, and the
hard-sigmoid gate ``relu6(x + 3) / 6``, cheap on mobile hardware).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from .conv import ActLayer, create_act, make_divisible


class SqueezeExcite(nn.Module):
    """Gate each of ``channels`` channels by a small bottleneck MLP of its global average."""

    def __init__(self, channels: int, rd_channels: int, act_layer: ActLayer = nn.ReLU, gate_layer: ActLayer = nn.Sigmoid):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, rd_channels, kernel_size=1, bias=True)
        self.act = create_act(act_layer)
        self.fc2 = nn.Conv2d(rd_channels, channels, kernel_size=1, bias=True)
        self.gate = create_act(gate_layer, inplace=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)  # squeeze
        s = self.fc2(self.act(self.fc1(s)))  # excite
        return x * self.gate(s)


@dataclass(frozen=True)
class SqueezeExciteStyle:
    """How a mobile block builds its squeeze-excitation from a ratio ``r``.

    Args:
        from_expanded: ``r`` is a fraction of the gated (expanded) width, not of the block's input width.
        divisor: round the squeeze width to a multiple of ``divisor`` (:func:`make_divisible`);
            ``None``: truncate it (at least 1).
        act_layer: the activation between the two layers; ``None``: the block's own.
        gate_layer: the gate (``nn.Sigmoid``; ``nn.Hardsigmoid`` in MobileNetV3).
    """

    from_expanded: bool = False
    divisor: int | None = None
    act_layer: ActLayer = None
    gate_layer: ActLayer = nn.Sigmoid

    def squeeze_width(self, ratio: float, chs: int, in_chs: int) -> int:
        width = ratio * (chs if self.from_expanded else in_chs)
        return make_divisible(width, self.divisor) if self.divisor else max(1, int(width))

    def build(self, chs: int, in_chs: int, ratio: float | None, act_layer: ActLayer) -> nn.Module:
        """SE over ``chs`` channels of a block reading ``in_chs``; ``nn.Identity`` when ``ratio`` is unset."""
        if not ratio:
            return nn.Identity()
        return SqueezeExcite(chs, self.squeeze_width(ratio, chs, in_chs), act_layer=self.act_layer or act_layer,
                             gate_layer=self.gate_layer)


#: the named styles a network picks from (``MobileNetV3(se_style=...)``)
SE_STYLES = {
    "mnasnet": SqueezeExciteStyle(),
    "mobilenet_v3": SqueezeExciteStyle(from_expanded=True, divisor=8, act_layer=nn.ReLU, gate_layer=nn.Hardsigmoid),
}
