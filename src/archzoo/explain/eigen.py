"""Eigen-CAM — Muhammad & Yeasin 2020, "Eigen-CAM: Class Activation Map using Principal
Components", arXiv:2008.00299 — and the hook that lets any explainer read one map of a layer.

Eigen-CAM needs neither gradients nor a class: the map is the projection of every position's
activation vector (``C`` channels) onto the first principal direction of the layer's activations
(the first right singular vector of the centred ``[h w, C]`` matrix). So it explains any network
whose output is not one score per class — a detector's boxes, a segmenter's masks — as well as
classifiers. The projection is pytorch-grad-cam's ``get_2d_projection``; but a singular vector's
sign is arbitrary, and the library keeps whichever the SVD returns, so its rectified map shows
the background as often as the object. We orient the component towards the layer's response:
the projection is flipped when it correlates negatively with the activation vectors' norms, so
the positions where the layer responds most come out positive. (Flipping by the larger extreme,
as the library's ``get_2d_projection_with_sign_correction`` does, failed on 2 of 32 random
YOLOv8-n backbones with one object on a plain background; this rule on none.)
"""

from __future__ import annotations

from contextlib import contextmanager
from collections.abc import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from .state import normalise


def first_component(activations: torch.Tensor) -> torch.Tensor:
    """``[B, C, h, w]`` activations -> ``[B, h, w]``: each position's centred activation vector
    projected on the first principal direction, oriented as the module doc says (not rectified)."""
    if activations.ndim != 4:
        raise ValueError(f"Eigen-CAM needs a [B, C, h, w] feature map, got shape {tuple(activations.shape)}")
    b, _, h, w = activations.shape
    raw = activations.detach().float().nan_to_num(0.0).flatten(2).transpose(1, 2)  # [B, hw, C]
    a = raw - raw.mean(1, keepdim=True)
    _, _, vh = torch.linalg.svd(a, full_matrices=False)
    p = (a @ vh[:, 0, :, None])[..., 0]  # [B, hw]
    flip = (p * raw.norm(dim=-1)).sum(1) < 0
    return torch.where(flip[:, None], -p, p).view(b, h, w)


def eigen_maps(activations: torch.Tensor, size, crop=None) -> torch.Tensor:
    """Eigen-CAM maps ``[B, H, W]`` in [0, 1] at ``size`` from ``[B, C, h, w]`` activations:
    the rectified first component, upsampled bilinearly and scaled per image. ``crop``
    ``(rows, cols)``: the part of the map's extent, upsampled first to ``crop``'s frame
    ``(frame_h, frame_w, rows, cols)``, that covers the image (a detector pads its batch)."""
    maps = first_component(activations).relu()[:, None]
    if crop is not None:
        frame_h, frame_w, rows, cols = crop
        maps = F.interpolate(maps, size=(frame_h, frame_w), mode="bilinear", align_corners=False)[..., :rows, :cols]
    maps = F.interpolate(maps, size=tuple(size), mode="bilinear", align_corners=False)[:, 0]
    return normalise(maps)


@contextmanager
def tapped(module: nn.Module, select: int = -1) -> Iterator[nn.Module]:
    """Route ``module``'s output — or, where it returns a list or tuple of maps (a backbone),
    its map ``select`` (default the last, deepest) — through an identity module, yielded for the
    caller (or pytorch-grad-cam) to hook. The hook is removed on exit, also after an error."""
    tap = nn.Identity()

    def through_tap(_module, _inputs, out):
        if isinstance(out, torch.Tensor):
            return tap(out)
        if isinstance(out, (list, tuple)) and out and all(isinstance(t, torch.Tensor) for t in out):
            items = list(out)
            items[select] = tap(items[select])
            return items if isinstance(out, list) else tuple(items)
        raise TypeError(f"{type(module).__name__} returns {type(out).__name__}; an explanation needs a map "
                        "(a tensor, or a list of them): name another layer")

    handle = module.register_forward_hook(through_tap)
    try:
        yield tap
    finally:
        handle.remove()


@contextmanager
def captured(module: nn.Module, select: int = -1) -> Iterator[list[torch.Tensor]]:
    """The map ``module`` gives (see :func:`tapped`), appended to the yielded list on each forward pass."""
    seen: list[torch.Tensor] = []
    with tapped(module, select) as tap:
        handle = tap.register_forward_hook(lambda _m, _i, out: seen.append(out.detach()))
        try:
            yield seen
        finally:
            handle.remove()
