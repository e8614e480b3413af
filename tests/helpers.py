"""Shared test utilities."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from archzoo.weights import build_reference


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


def max_rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """The largest absolute difference, relative to the largest magnitude in ``a`` (the reference)."""
    return ((a - b).abs().max() / a.abs().max().clamp_min(1e-12)).item()


def converted(name: str, source: str | None = None, ref_kwargs: dict | None = None, **kwargs):
    """``(reference, model)``: the reference implementation of ``name`` (from ``source``, default the
    card's reference; built with ``ref_kwargs``) with random weights and randomised norm statistics,
    and our model (built with ``kwargs``) holding its weights through ``archzoo.convert_weights``.
    Both in eval mode."""
    import archzoo
    from archzoo.io import build_with_state

    torch.manual_seed(0)
    card = archzoo.model_card(name)
    source = source or card.reference_source
    if not ref_kwargs:
        reference = build_reference(f"{source}:{card.reference_name}")
    elif source == "torchvision":
        import torchvision

        reference = torchvision.models.get_model(card.reference_name, weights=None, **ref_kwargs)
    else:
        import timm

        reference = timm.create_model(card.reference_name, pretrained=False, **ref_kwargs)
    randomize_norms(reference).eval()
    state_dict = archzoo.convert_weights(name, reference.state_dict(), source, check=not kwargs)
    return reference, build_with_state(name, state_dict, **kwargs).eval()


# --- real data beside the checkout ------------------------------------------------------------------

#: ``../shared/data``: small real datasets beside the checkout (see its README). A user's clone may
#: not have it, and those tests skip there; CI must have it (``CI=true``), and fails without it.
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CIFAR_TAR = "cifar10/train.tar.gz"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def shared_data(relpath: str) -> Path:
    """The path of ``relpath`` under ``../shared/data``. Missing: a skip on a user's clone, a
    failure under ``CI=true`` (a CI run without the real data proves nothing about it)."""
    path = SHARED_DATA / relpath
    if path.exists():
        return path
    what = f"{path} is missing" if SHARED_DATA.is_dir() else f"the folder {SHARED_DATA} is missing"
    if in_ci():
        pytest.fail(f"{what}: CI=true needs ../shared/data beside the checkout ({relpath})", pytrace=False)
    pytest.skip(f"{what} (real data beside the checkout; CI fails without it)")
