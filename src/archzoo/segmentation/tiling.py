"""Sliding-window (tiled) inference: logits of an image of any size with bounded memory.

An image larger than the network's input (a 4000x3000 photo, a whole-slide crop) is cut into
overlapping tiles; the model sees at most ``batch_size`` tiles at once and the tiles' logits are
blended, each weighted by a window that falls off towards the tile's edge, where a convolution
sees padding instead of context (U-Net's overlap-tile strategy, arXiv:1505.04597 fig. 2; the
Gaussian blending of nnU-Net, arXiv:1809.10486). An image smaller than a tile is padded by
reflection, as U-Net pads its borders.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import upsample_like

WINDOWS = ("gaussian", "linear", "constant")


def _pair(value, name: str) -> tuple[int, int]:
    pair = tuple(value) if isinstance(value, Sequence) else (value, value)
    if len(pair) != 2 or not all(isinstance(v, int) and v >= 1 for v in pair):
        raise ValueError(f"{name} must be a positive int or (height, width), got {value!r}")
    return pair  # type: ignore[return-value]


def tile_starts(size: int, tile: int, step: int) -> list[int]:
    """Top (left) edges of the tiles covering ``size`` pixels: every ``step``, the last one
    flush with the end (``size >= tile``)."""
    n = max(math.ceil((size - tile) / step), 0) + 1
    starts = [min(i * step, size - tile) for i in range(n)]
    return sorted(set(starts))


def blend_window(height: int, width: int, kind: str = "gaussian") -> torch.Tensor:
    """``[height, width]`` weights of a tile's pixels, 1 at its centre: ``gaussian`` (sigma 1/8 of
    the side, as nnU-Net), ``linear`` (a pyramid, ~``2/side`` at the edge) or ``constant`` (a plain
    average of the overlapping tiles). Never zero, so every pixel gets a weight."""
    def axis(n: int) -> torch.Tensor:
        centre = (torch.arange(n, dtype=torch.float64) + 0.5) / n - 0.5  # -0.5 .. 0.5
        if kind == "gaussian":
            return torch.exp(-0.5 * (centre * 8) ** 2)
        if kind == "linear":
            return 1.0 - 2 * centre.abs() + 1.0 / n
        return torch.ones(n, dtype=torch.float64)

    if kind not in WINDOWS:
        raise ValueError(f"window must be one of {', '.join(WINDOWS)}, got {kind!r}")
    w = axis(height)[:, None] * axis(width)[None, :]
    return (w / w.max()).float()


def reflect_pad(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``x`` ``[B, C, H, W]`` padded at the bottom and right to at least ``height x width`` by
    reflection (repeated while the image is narrower than the padding; replicated where a side
    is one pixel)."""
    while x.shape[-2] < height or x.shape[-1] < width:
        h, w = x.shape[-2:]
        ph, pw = min(height - h, h - 1) if h < height else 0, min(width - w, w - 1) if w < width else 0
        if (h < height and ph == 0) or (w < width and pw == 0):
            x = F.pad(x, (0, max(width - w, 0), 0, max(height - h, 0)), mode="replicate")
        else:
            x = F.pad(x, (0, max(pw, 0), 0, max(ph, 0)), mode="reflect")
    return x


@torch.no_grad()
def sliding_window(model: nn.Module, image: torch.Tensor, tile: int | Sequence[int], overlap: float = 0.25,
                   num_classes: int | None = None, batch_size: int = 4, *, window: str = "gaussian",
                   out_device: torch.device | str | None = None) -> torch.Tensor:
    """Logits ``[K, H, W]`` (``[B, K, H, W]`` for a batch) of ``image`` (the model's input:
    normalised, ``[C, H, W]`` or ``[B, C, H, W]``), computed tile by tile.

    ``tile``: the tile side (or ``(h, w)``), e.g. the model's training input size; ``overlap``:
    the fraction of a tile shared with its neighbour, in ``[0, 1)`` (tiles step ``tile * (1 -
    overlap)`` pixels, the last one flush with the border); ``batch_size``: tiles per forward
    pass, the memory bound (the model never sees more than ``batch_size`` tiles of ``tile``
    size); ``window``: how overlapping logits are blended (see :func:`blend_window`).
    ``num_classes``: the logits' channels (default: from the first forward). Tiles run on the
    model's device; the blended logits are kept on ``out_device`` (default: the image's), so a
    photo on the CPU needs only ``batch_size`` tiles of GPU memory. A model whose output is
    smaller than its input (a stride-8 head) is upsampled bilinearly per tile. Call it with the
    model in eval mode.
    """
    th, tw = _pair(tile, "tile")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be a fraction of the tile in [0, 1), got {overlap!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if image.ndim not in (3, 4):
        raise ValueError(f"image must be [C, H, W] or [B, C, H, W], got shape {tuple(image.shape)}")
    single = image.ndim == 3
    x = image[None] if single else image
    B, _, H, W = x.shape
    x = reflect_pad(x, th, tw)
    Hp, Wp = x.shape[-2:]
    step_h, step_w = max(round(th * (1 - overlap)), 1), max(round(tw * (1 - overlap)), 1)
    boxes = [(b, y, x0) for b in range(B) for y in tile_starts(Hp, th, step_h) for x0 in tile_starts(Wp, tw, step_w)]
    param = next(model.parameters(), None)
    device = param.device if param is not None else x.device
    out_device = torch.device(out_device) if out_device is not None else image.device
    win = blend_window(th, tw, window).to(device)
    weight = torch.zeros(B, 1, Hp, Wp, device=out_device)
    out = None if num_classes is None else torch.zeros(B, num_classes, Hp, Wp, device=out_device)
    for i in range(0, len(boxes), batch_size):
        chunk = boxes[i:i + batch_size]
        tiles = torch.stack([x[b, :, y:y + th, x0:x0 + tw] for b, y, x0 in chunk]).to(device)
        logits = model(tiles)
        logits = upsample_like(getattr(logits, "logits", logits).float(), (th, tw)) * win
        logits = logits.to(out_device)
        if out is None:
            out = torch.zeros(B, logits.shape[1], Hp, Wp, device=out_device)
        elif logits.shape[1] != out.shape[1]:
            raise ValueError(f"the model gives {logits.shape[1]} channels, num_classes is {out.shape[1]}")
        w = win.to(out_device)
        for (b, y, x0), t in zip(chunk, logits):
            out[b, :, y:y + th, x0:x0 + tw] += t
            weight[b, :, y:y + th, x0:x0 + tw] += w
    out = (out / weight)[..., :H, :W]
    return out[0] if single else out
