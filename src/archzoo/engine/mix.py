"""Mixing two images and their labels.

* mixup — Zhang et al. 2017, arXiv:1710.09412: ``x = l * x_i + (1 - l) * x_j``, labels likewise.
* CutMix — Yun et al. 2019, arXiv:1905.04899: a box of ``x_j`` pasted into ``x_i``; the label
  weight is the box's share of the area.

``l ~ Beta(alpha, alpha)``. Pairs are a batch and its reversal, so no extra permutation is drawn.
Random numbers come from torch's CPU generator, whose state the checkpoints save.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_targets(labels: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    """One-hot targets with label smoothing (Szegedy et al. 2015, arXiv:1512.00567)."""
    off = smoothing / num_classes
    return F.one_hot(labels, num_classes).float() * (1.0 - smoothing) + off


def _beta(alpha: float) -> float:
    return float(torch.distributions.Beta(alpha, alpha).sample())


def mix_batch(x: torch.Tensor, labels: torch.Tensor, num_classes: int, mixup: float, cutmix: float,
              prob: float = 1.0, smoothing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the mixed images and soft targets ``[B, num_classes]``. With both ``mixup`` and
    ``cutmix`` set, each batch uses one of them with equal probability."""
    target = soft_targets(labels, num_classes, smoothing)
    if (mixup <= 0 and cutmix <= 0) or float(torch.rand(())) >= prob:
        return x, target
    use_cutmix = cutmix > 0 and (mixup <= 0 or float(torch.rand(())) < 0.5)
    lam = _beta(cutmix if use_cutmix else mixup)
    x_flip = x.flip(0)
    if use_cutmix:
        h, w = x.shape[-2:]
        cut = (1.0 - lam) ** 0.5
        ch, cw = int(h * cut), int(w * cut)
        cy, cx = int(torch.randint(h, ())), int(torch.randint(w, ()))
        y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
        x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
        x = x.clone()
        x[..., y0:y1, x0:x1] = x_flip[..., y0:y1, x0:x1]
        lam = 1.0 - (y1 - y0) * (x1 - x0) / (h * w)
    else:
        x = x * lam + x_flip * (1.0 - lam)
    return x, target * lam + target.flip(0) * (1.0 - lam)
