"""The normalisation a backbone uses, chosen by name: ``create_model(..., norm_layer=...)``.

* ``"batchnorm"`` — batch normalisation (Ioffe & Szegedy 2015, arXiv:1502.03167): batch
  statistics in training, running averages at evaluation.
* ``"frozen_batchnorm"`` — batch norm turned into a fixed per-channel affine map: the running
  statistics and the scale/shift are buffers, never updated, in training or not (what
  torchvision's detectors and Detectron use for a pretrained backbone trained with small
  per-device batches). It loads batch-norm state dicts (``num_batches_tracked`` is dropped).
* ``"groupnorm"`` — group normalisation (Wu & He 2018, arXiv:1803.08494): statistics over groups
  of channels of each sample, independent of the batch size. Groups: ``gcd(32, channels)``, the
  paper's 32 wherever the width is a multiple of 32, the largest divisor of 32 that divides the
  width otherwise (16 channels: 16 groups, 24: 8).
"""

from __future__ import annotations

import math
from functools import partial
from typing import Callable

import torch.nn as nn
from torchvision.ops import FrozenBatchNorm2d

NORM_LAYERS = ("batchnorm", "frozen_batchnorm", "groupnorm")


def group_norm(channels: int, eps: float = 1e-5) -> nn.GroupNorm:
    """GroupNorm with ``gcd(32, channels)`` groups (see the module docstring)."""
    return nn.GroupNorm(math.gcd(32, channels), channels, eps=eps)


def create_norm_layer(kind: str = "batchnorm", eps: float = 1e-5, momentum: float = 0.1) -> Callable[[int], nn.Module]:
    """``norm(channels) -> module`` for ``kind`` in :data:`NORM_LAYERS`; ``eps`` and ``momentum``
    are batch norm's (``momentum`` is meaningless for the frozen and group norms)."""
    if kind == "batchnorm":
        return partial(nn.BatchNorm2d, eps=eps, momentum=momentum)
    if kind == "frozen_batchnorm":
        return partial(FrozenBatchNorm2d, eps=eps)
    if kind == "groupnorm":
        return partial(group_norm, eps=eps)
    raise ValueError(f"norm_layer must be one of {NORM_LAYERS}, got {kind!r}")
