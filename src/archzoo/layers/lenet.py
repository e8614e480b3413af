"""The building blocks of LeNet-5 (LeCun, Bottou, Bengio & Haffner 1998, "Gradient-Based Learning
Applied to Document Recognition", Proceedings of the IEEE 86(11), section II.B and appendix A).

* :class:`ScaledTanh` — the squashing function ``f(a) = A tanh(S a)``, ``A = 1.7159``, ``S = 2/3``,
  so that ``f(1) = 1`` and ``f(-1) = -1``.
* :class:`TrainableSubsampling` — the S-layers: each unit adds its 2x2 inputs, multiplies the sum
  by a trainable coefficient and adds a trainable bias (one pair per feature map).
* :class:`ConnectionTableConv` — a convolution in which each output map sees only a chosen subset
  of the input maps (C3 and the paper's Table I): fewer weights, and broken symmetry.
* :class:`EuclideanRBF` — the output layer: each class is a fixed code vector of +-1 and its
  score is the (negated) squared Euclidean distance of the input to that code.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn


class ScaledTanh(nn.Module):
    """``amplitude * tanh(slope * x)`` (appendix A: 1.7159 and 2/3)."""

    def __init__(self, amplitude: float = 1.7159, slope: float = 2.0 / 3.0, inplace: bool = False):
        super().__init__()
        self.amplitude, self.slope = amplitude, slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.amplitude * torch.tanh(self.slope * x)

    def extra_repr(self) -> str:
        return f"amplitude={self.amplitude}, slope={self.slope:.4g}"


class TrainableSubsampling(nn.Module):
    """``weight[c] * sum_{k x k window}(x) + bias[c]`` with stride ``k``: 2 parameters per map."""

    def __init__(self, channels: int, kernel_size: int = 2):
        super().__init__()
        self.kernel_size = kernel_size
        self.weight = nn.Parameter(torch.full((channels,), 1.0 / kernel_size**2))  # starts as an average
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        window_sum = nn.functional.avg_pool2d(x, self.kernel_size) * self.kernel_size**2
        return window_sum * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class ConnectionTableConv(nn.Module):
    """Convolution where output map ``j`` sees only the input maps ``table[j]``.

    Consecutive output maps with the same number of inputs share one grouped convolution over
    their gathered inputs, so the weights are exactly ``sum_j (len(table[j]) k^2 + 1)``.
    """

    def __init__(self, in_chs: int, table: Sequence[Sequence[int]], kernel_size: int, padding: int = 0):
        super().__init__()
        if any(not 0 <= i < in_chs for row in table for i in row):
            raise ValueError(f"connection table refers to input maps outside 0..{in_chs - 1}")
        self.table = [tuple(row) for row in table]
        self.convs = nn.ModuleList()
        runs: list[list[tuple[int, ...]]] = []
        for row in self.table:
            if runs and len(runs[-1][0]) == len(row):
                runs[-1].append(row)
            else:
                runs.append([row])
        for i, rows in enumerate(runs):
            fan_in = len(rows[0])
            self.convs.append(nn.Conv2d(fan_in * len(rows), len(rows), kernel_size, padding=padding, groups=len(rows)))
            self.register_buffer(f"index{i}", torch.tensor([c for row in rows for c in row]), persistent=False)
        self.in_chs, self.out_chs = in_chs, len(self.table)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([conv(x.index_select(1, getattr(self, f"index{i}"))) for i, conv in enumerate(self.convs)], dim=1)

    def extra_repr(self) -> str:
        return f"{self.in_chs} -> {self.out_chs} maps, {sum(len(r) for r in self.table)} connections"


class EuclideanRBF(nn.Module):
    """``score_i = -||x - code_i||^2`` for fixed codes of +-1, one per class (a buffer, not trained).

    The paper drew its codes as 7x12 bitmaps of the characters and notes they could as well be
    random +-1 vectors; these are random (seeded by the global generator like any initialisation).
    """

    def __init__(self, in_features: int, num_classes: int):
        super().__init__()
        codes = torch.randint(0, 2, (num_classes, in_features)).float() * 2 - 1
        self.register_buffer("codes", codes)
        self.in_features, self.num_classes = in_features, num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -(x.unsqueeze(1) - self.codes).square().sum(-1)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, num_classes={self.num_classes}"
