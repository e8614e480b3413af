"""Dense detection heads' shared pieces: the conv tower run on every pyramid level, the predictor
initialisation, and flattening a level's output to one row per anchor.

RetinaNet (Lin et al., arXiv:1708.02002, 2017) introduced the shape: one small fully
convolutional subnet per task (four 3x3 convolutions of the pyramid's width, ReLU), shared by all
levels, ending in a 3x3 convolution with ``A * K`` outputs; the class predictor's bias starts at
``-log((1 - pi) / pi)`` so every anchor first predicts the prior probability ``pi`` of an object
(0.01) and the background's flood of easy negatives does not swamp the first steps. FCOS
(arXiv:1904.01355) adds group norm to the tower.
"""

from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn as nn

from ..layers import ConvNormAct


def conv_tower(channels: int, num_convs: int = 4, norm: str | None = None) -> nn.Sequential:
    """``num_convs`` 3x3 conv (with bias) -> [norm] -> ReLU at constant width; ``norm``: None or
    ``"groupnorm"`` (32 groups, FCOS). Weights start at N(0, 0.01), biases at 0."""
    if norm not in (None, "groupnorm"):
        raise ValueError(f"head norm must be None or 'groupnorm', got {norm!r}")
    norm_layer = partial(nn.GroupNorm, 32) if norm == "groupnorm" else None
    tower = nn.Sequential(*(ConvNormAct(channels, channels, 3, bias=True, norm_layer=norm_layer)
                            for _ in range(num_convs)))
    for m in tower.modules():
        if isinstance(m, nn.Conv2d):
            init_predictor(m)
    return tower


def init_predictor(conv: nn.Conv2d, prior_probability: float | None = None) -> nn.Conv2d:
    """Weights N(0, 0.01); bias 0, or ``-log((1 - p) / p)`` so that sigmoid(output) starts at ``p``."""
    nn.init.normal_(conv.weight, std=0.01)
    bias = 0.0 if prior_probability is None else -math.log((1 - prior_probability) / prior_probability)
    nn.init.constant_(conv.bias, bias)
    return conv


def flatten_level(x: torch.Tensor, per_anchor: int) -> torch.Tensor:
    """``[N, A * K, H, W]`` -> ``[N, H * W * A, K]``: one row per (position, anchor), the anchors' order."""
    n, _, h, w = x.shape
    return x.view(n, -1, per_anchor, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, per_anchor)


def flatten_levels(maps: list[torch.Tensor], per_anchor: int) -> torch.Tensor:
    """Every level flattened and concatenated: ``[N, sum(H * W * A), K]``."""
    return torch.cat([flatten_level(m, per_anchor) for m in maps], dim=1)
