"""Test-time augmentation for segmenters: average the class probabilities over flipped and turned
copies of the input, each mapped back before averaging.

The U-Net paper's ISBI 2012 entry (Ronneberger et al., arXiv:1505.04597, section 4) "averages over
7 rotated versions of the input data"; EM slices have no preferred orientation, so every one of the
eight symmetries of the square (the dihedral group D4: four quarter turns, each with and without a
mirror) is an equally good view. Natural photos keep their up and down: ``"flip"`` (the image and
its mirror) is the usual choice there (DeepLab, PSPNet).

:class:`TestTimeAugment` wraps a segmenter and keeps its contract (logits ``[B, K, H, W]`` at the
input's size): it returns the log of the averaged softmax, so ``argmax`` gives the averaged vote and
``softmax`` gives the averaged probabilities back.
"""

from __future__ import annotations

import torch
import torch.nn as nn

VIEWS = ("none", "flip", "d4")


def _views(kind: str) -> list[tuple[int, bool]]:
    """``(quarter turns, mirrored)`` of each view."""
    if kind == "none":
        return [(0, False)]
    if kind == "flip":
        return [(0, False), (0, True)]
    return [(k, m) for k in range(4) for m in (False, True)]


def _apply(x: torch.Tensor, turns: int, mirror: bool) -> torch.Tensor:
    x = x.flip(-1) if mirror else x
    return torch.rot90(x, turns, dims=(-2, -1)) if turns else x


def _undo(y: torch.Tensor, turns: int, mirror: bool) -> torch.Tensor:
    y = torch.rot90(y, -turns, dims=(-2, -1)) if turns else y
    return y.flip(-1) if mirror else y


class TestTimeAugment(nn.Module):
    """``model`` evaluated on the ``views`` of its input (``"flip"``: 2, ``"d4"``: 8 for square and
    non-square inputs alike; a fully convolutional segmenter takes the turned shape), the softmax
    averaged. Only for evaluation: gradients of an average of views are not what training wants."""

    __test__ = False  # not a pytest test class, despite its name

    def __init__(self, model: nn.Module, views: str = "d4") -> None:
        super().__init__()
        if views not in VIEWS:
            raise ValueError(f"views must be one of {', '.join(VIEWS)}, got {views!r}")
        self.model, self.views = model, views
        self.num_classes = model.num_classes
        self.card = getattr(model, "card", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            raise RuntimeError("TestTimeAugment is for evaluation: call .eval() (train the wrapped model itself)")
        probs = None
        for turns, mirror in _views(self.views):
            out = self.model(_apply(x, turns, mirror))
            p = _undo(getattr(out, "logits", out).float().softmax(1), turns, mirror)
            probs = p if probs is None else probs + p
        return (probs / len(_views(self.views))).clamp_min(1e-12).log()
