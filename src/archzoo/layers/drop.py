"""Drop-path / stochastic depth (Huang et al. 2016, arXiv:1603.09382).

During training each sample's residual branch is dropped with probability ``p`` and the kept
branches are scaled by ``1 / (1 - p)`` so the expectation is unchanged; at eval it is the identity.
"""

from __future__ import annotations

import torch
import torch.nn as nn


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
