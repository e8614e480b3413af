"""Running a model for an explanation without changing it.

Explaining a model must leave it as it was: same training flags, same ``requires_grad`` flags,
same parameters and gradients, no hooks left behind. :func:`inspection_mode` puts the model in
eval mode with frozen parameters for the duration of a ``with`` block and restores every flag
afterwards, also when the block raises.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn as nn


@contextmanager
def inspection_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and frozen parameters inside the block; every module's training flag and every
    parameter's ``requires_grad`` restored on exit. Gradients then flow to the input and the
    activations only, so no parameter's ``.grad`` is touched."""
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training
        for p, flag in flags:
            p.requires_grad_(flag)


def check_classifier(model: nn.Module) -> None:
    """Raise a clear error unless ``model`` has the shared classifier API explanations rely on."""
    missing = [a for a in ("forward_features", "forward_head", "get_classifier") if not hasattr(model, a)]
    if missing:
        raise TypeError(f"{type(model).__name__} lacks {', '.join(missing)}: explanations need a classifier made by "
                        "archzoo.create_model (a features_only extractor has no classifier to explain)")


def model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def as_batch(images: torch.Tensor) -> torch.Tensor:
    """``[C, H, W]`` or ``[B, C, H, W]`` float images -> ``[B, C, H, W]``."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a tensor [B, C, H, W], got {type(images).__name__}")
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4:
        raise ValueError(f"images must be [B, C, H, W] (or one [C, H, W]), got shape {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(f"images must be normalised float model input, got {images.dtype} "
                         "(uint8 pictures go through the model's transform first)")
    return images


def resolve_targets(target, batch: int, num_classes: int) -> list[int] | None:
    """``None`` (each image's predicted class), one class for every image, or one per image."""
    if target is None:
        return None
    if isinstance(target, int) or (isinstance(target, torch.Tensor) and target.ndim == 0):
        targets = [int(target)] * batch
    else:
        targets = [int(t) for t in (target.tolist() if isinstance(target, torch.Tensor) else target)]
        if len(targets) != batch:
            raise ValueError(f"target lists {len(targets)} classes for {batch} images")
    bad = [t for t in targets if not 0 <= t < num_classes]
    if bad:
        raise ValueError(f"target class {bad[0]} is out of range: the model has {num_classes} classes (0..{num_classes - 1})")
    return targets


def normalise(maps: torch.Tensor) -> torch.Tensor:
    """Scale each map of ``[B, H, W]`` to [0, 1] (min to 0, max to 1); a constant map becomes 0."""
    flat = maps.flatten(1)
    lo = flat.amin(1)[:, None, None]
    span = flat.amax(1)[:, None, None] - lo
    return torch.where(span > 0, (maps - lo) / span.clamp_min(torch.finfo(maps.dtype).tiny), torch.zeros_like(maps))
