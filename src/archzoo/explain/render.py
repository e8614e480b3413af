"""Pictures of class activation maps: a heat map blended over the image, one per file or a grid.

matplotlib is used through its object API on the Agg canvas (no pyplot), so drawing works on a
machine without a display and leaves a notebook's backend alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

COLORMAP = "jet"


def to_display(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Normalised model input ``[C, H, W]`` -> the picture the model saw, float ``[H, W, 3]`` in [0, 1]."""
    c = x.shape[0]
    m = torch.as_tensor(list(mean), dtype=torch.float32).view(-1, 1, 1)
    s = torch.as_tensor(list(std), dtype=torch.float32).view(-1, 1, 1)
    img = (x.detach().float().cpu() * s + m).clamp(0, 1)
    if c == 1:
        img = img.expand(3, -1, -1)
    return img.permute(1, 2, 0).numpy()


def blend(image: np.ndarray, heat: torch.Tensor | np.ndarray, alpha: tuple[float, float] = (0.2, 0.55)) -> np.ndarray:
    """``image`` (float ``[H, W, 3]`` in [0, 1]) with ``heat`` (``[H, W]`` in [0, 1]) coloured by
    :data:`COLORMAP` and blended in: uint8 ``[H, W, 3]``. The colour's weight grows from
    ``alpha[0]`` where the map is 0 to ``alpha[1]`` where it is 1, so the image stays readable
    where the model does not look."""
    from matplotlib import colormaps

    h = np.clip(heat.detach().cpu().numpy() if isinstance(heat, torch.Tensor) else np.asarray(heat), 0, 1)
    coloured = colormaps[COLORMAP](h)[..., :3]
    a = (alpha[0] + (alpha[1] - alpha[0]) * h)[..., None]
    out = (1 - a) * image + a * coloured
    return (np.clip(out, 0, 1) * 255).round().astype(np.uint8)


def new_figure(w: float, h: float):
    """A ``w`` x ``h`` inch matplotlib figure on its own Agg canvas (no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, path: str | Path) -> Path:
    """Lay out ``fig`` and write it to ``path`` as a PNG, atomically."""
    from ..checkpoint import atomic_write

    path = Path(path)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    return path


def save_overlay(path: str | Path, image: np.ndarray, heat, title: str = "") -> Path:
    """One PNG: the image and the heat map blended over it side by side, ``title`` above."""
    fig = new_figure(6.4, 3.6)
    for i, (picture, caption) in enumerate(((image, "input"), (blend(image, heat), "class activation map"))):
        ax = fig.add_subplot(1, 2, i + 1)
        ax.imshow(picture, interpolation="nearest" if picture.shape[0] < 64 else "antialiased")
        ax.set_xlabel(caption, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=11)
    return save_figure(fig, path)


def save_grid(path: str | Path, images: Sequence[np.ndarray], heats, titles: Sequence[str],
              cols: int = 6, colors: Sequence[str] | None = None) -> Path:
    """One PNG: a grid of blended heat maps, each titled (e.g. "circle (97%)")."""
    n = len(images)
    cols = max(1, min(cols, n))
    rows = -(-n // cols)
    fig = new_figure(1.9 * cols, 2.1 * rows)
    for i in range(n):
        ax = fig.add_subplot(rows, cols, i + 1)
        picture = blend(images[i], heats[i])
        ax.imshow(picture, interpolation="nearest" if picture.shape[0] < 64 else "antialiased")
        ax.set_title(titles[i], fontsize=8, color=(colors[i] if colors else "black"))
        ax.set_xticks([])
        ax.set_yticks([])
    return save_figure(fig, path)
