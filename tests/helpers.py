"""Shared test utilities."""

from __future__ import annotations

import torch
import torch.nn as nn

from archzoo.weights import build_reference  # noqa: F401  (re-exported for the tests)


def randomize_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every norm layer random affine parameters and running statistics, so a converter that
    drops or misplaces one of them changes the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                if m.affine:
                    m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.2)
                if m.track_running_stats:
                    m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.2)
                    m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            elif isinstance(m, (nn.GroupNorm, nn.LayerNorm)) and m.weight is not None:
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.2)
    return model


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def sample_input(card, batch: int = 2, size: int | None = None, seed: int = 0) -> torch.Tensor:
    c, h, w = card.min_input_size
    if size is not None:
        h = w = max(size, h)
    return torch.randn(batch, c, h, w, generator=torch.Generator().manual_seed(seed))
