"""Drop-path / stochastic depth (Huang et al. 2016, arXiv:1603.09382).

During training each sample's residual branch is dropped with probability ``p`` and the kept
branches are scaled by ``1 / (1 - p)`` so the expectation is unchanged; at eval it is the identity.
The probability grows linearly with depth (:func:`linear_drop_path`).
"""

from __future__ import annotations

import torch
import torch.nn as nn


def linear_drop_path(rate: float, index: int, total: int, endpoint: bool = True) -> float:
    """The drop probability of block ``index`` (from 0) of ``total``: linear in depth, from 0 at
    the first block (Huang et al.'s linear decay rule).

    ``endpoint=True``: ``rate * index / (total - 1)``, the last block drops with ``rate`` — timm's
    rule for ResNet, ResNetV2 and CSPNet (``linspace(0, rate, total)``). ``endpoint=False``:
    ``rate * index / total`` — the rule of torchvision's and timm's EfficientNet, whose last block
    drops with ``rate * (total - 1) / total``. Each family uses its reference's rule.
    """
    if endpoint:
        return rate * index / max(total - 1, 1)
    return rate * index / total


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    if p == 0.0 or not training:
        return x
    keep = 1.0 - p
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask / keep


class DropPath(nn.Module):
    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
