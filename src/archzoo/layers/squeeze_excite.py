"""Squeeze-and-Excitation channel gating (Hu et al. 2017, arXiv:1709.01507).

    s = sigmoid(W2 act(W1 mean_hw(x)))      y = x * s

The two "fully-connected" layers are 1x1 convolutions so the weights keep their 4-d shape.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .conv import ActLayer, create_act


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
