"""Detection losses that more than one detector uses and ``torchvision.ops`` does not have
(focal loss and the IoU-family box losses come from there).

Distribution focal loss (Li et al., "Generalized Focal Loss", arXiv:2006.04388, 2020): a box side
is predicted as a discrete distribution over ``reg_max`` distances ``0, 1, ..., reg_max - 1`` (in
units of the level's stride) and decoded as its expectation; training pushes the probability mass
onto the two integers around the target, weighted by closeness: for a target ``y`` between
``i = floor(y)`` and ``i + 1``, ``DFL = -((i + 1 - y) log p_i + (y - i) log p_{i+1})``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def distribution_focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """DFL of ``logits [..., reg_max]`` (one distribution per side) for real ``target [...]`` in
    ``[0, reg_max - 1)``; returns ``[...]`` (no reduction)."""
    reg_max = logits.shape[-1]
    left = target.long().clamp(max=reg_max - 2)
    w_left = (left + 1).to(target.dtype) - target
    log_p = F.log_softmax(logits.float(), dim=-1)
    lp_left = log_p.gather(-1, left[..., None]).squeeze(-1)
    lp_right = log_p.gather(-1, (left + 1)[..., None]).squeeze(-1)
    return -(lp_left * w_left + lp_right * (1 - w_left))


def distribution_expectation(logits: torch.Tensor) -> torch.Tensor:
    """The expected distance ``sum_i i * softmax(logits)_i`` of ``logits [..., reg_max]``."""
    bins = torch.arange(logits.shape[-1], dtype=logits.dtype, device=logits.device)
    return logits.softmax(-1) @ bins


__all__ = ["distribution_focal_loss", "distribution_expectation"]
