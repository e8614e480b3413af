"""Pictures of super-resolution results: side-by-side panels with their names (and scores)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

LABEL_HEIGHT = 14
GAP = 4


def to_pil(x: torch.Tensor) -> Image.Image:
    """float ``[C, H, W]`` (or ``[1, C, H, W]``) in [0, 1], C 1 or 3 -> a Pillow image."""
    x = x[0] if x.ndim == 4 else x
    a = (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(a[:, :, 0] if a.shape[2] == 1 else a, "L" if a.shape[2] == 1 else "RGB")


def side_by_side(panels: list[tuple[str, Image.Image]], path: str | Path) -> Path:
    """Panels of equal height left to right, each named above; written to ``path`` (PNG)."""
    panels = [(t, im.convert("RGB")) for t, im in panels]
    width = sum(im.width for _, im in panels) + GAP * (len(panels) - 1)
    height = max(im.height for _, im in panels) + LABEL_HEIGHT
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    x = 0
    for title, im in panels:
        draw.text((x + 2, 1), title, fill="black")
        canvas.paste(im, (x, LABEL_HEIGHT))
        x += im.width + GAP
    path = Path(path)
    canvas.save(path)
    return path


def patch_grid(lr: torch.Tensor, sr: torch.Tensor, hr: torch.Tensor, scale: int, path: str | Path) -> Path:
    """One row per patch: bicubic | model | original (LR ``[B, C, s, s]``, SR and HR ``[B, C, S, S]``)."""
    from .data import bicubic

    bic = bicubic(lr.float(), scale)
    rows = []
    for i in range(len(sr)):
        row = np.concatenate([np.asarray(to_pil(t[i]).convert("RGB")) for t in (bic, sr, hr)], axis=1)
        rows.append(row)
    grid = np.concatenate(rows, axis=0)
    return side_by_side([("bicubic | model | original", Image.fromarray(grid))], path)
