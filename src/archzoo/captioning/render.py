"""Pictures of captions: the attention of every word over the image, and a grid of captioned images."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F


def _rgb(image: torch.Tensor):
    """uint8 ``[C, H, W]`` -> float ``[H, W, 3]`` in 0..1 for matplotlib."""
    return image.float().div(255).expand(3, -1, -1).permute(1, 2, 0).numpy()


def attention_maps(attention: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Per-word attention ``[n, h, w]`` over the feature map, upsampled bilinearly to the image's
    ``size`` ``(H, W)`` and scaled so each word's largest weight is 1: ``[n, H, W]``."""
    if not len(attention):
        return attention.new_zeros(0, *size)
    up = F.interpolate(attention[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]
    return up / up.flatten(1).amax(1).clamp(min=1e-12)[:, None, None]


def attention_figure(image: torch.Tensor, words: Sequence[str], attention: torch.Tensor, path: str | Path,
                     title: str | None = None) -> Path:
    """``path`` (PNG): the image, then one panel per word with its attention map laid over the
    image (bright: where the model looked while emitting the word)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    maps = attention_maps(attention, tuple(image.shape[-2:]))
    n = len(words) + 1
    cols = min(n, 6)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.4 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    axes.flat[0].imshow(_rgb(image))
    axes.flat[0].set_title("image", fontsize=9)
    for k, (word, m) in enumerate(zip(words, maps), start=1):
        ax = axes.flat[k]
        ax.imshow(_rgb(image) * (0.25 + 0.75 * m.numpy()[:, :, None]))
        ax.imshow(m.numpy(), cmap="jet", alpha=0.35, vmin=0, vmax=1)
        ax.set_title(word, fontsize=10)
    fig.suptitle(title if title is not None else " ".join(words), fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def caption_grid(images: torch.Tensor, said: Sequence[str], truth: Sequence[str], path: str | Path) -> Path:
    """``path`` (PNG): each image with the model's caption (and, greyed, a reference caption)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(images)
    cols = min(n, 4)
    rows = max(-(-n // cols), 1)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.6 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, s, t in zip(axes.flat, images, said, truth):
        ax.imshow(_rgb(image))
        ax.set_title(f"{s}\n({t})", fontsize=8, color="black" if s == t else "darkred")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
