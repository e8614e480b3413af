"""Anchor boxes: reference boxes of set sizes and aspect ratios tiled over every feature map.

Faster R-CNN (Ren et al., arXiv:1506.01497, 2015) introduced them: at each position of a feature
map, ``A`` boxes centred there (one per size x aspect ratio) that the head regresses from and
classifies. RetinaNet (Lin et al., arXiv:1708.02002, 2017) puts three sizes
(``2^0, 2^(1/3), 2^(2/3)`` of a level's base size) and three ratios at each of P3-P7; FCOS
(Tian et al., arXiv:1904.01355, 2019) has no anchors, but treats each location as a box of one
stride's size, so the same generator gives its points.

Number for number torchvision's ``AnchorGenerator``: zero-centred cell anchors rounded to whole
pixels, shifted by ``position * stride`` with the stride ``padded image size // map size``
(integer division, as torchvision does, so P6/P7 of an image that is not a multiple of 128 get
the same slightly uneven stride).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn


def cell_anchors(sizes: Sequence[float], aspect_ratios: Sequence[float], dtype=torch.float32,
                 device=None) -> torch.Tensor:
    """The ``len(ratios) * len(sizes)`` zero-centred anchors ``[A, 4]`` (xyxy) of one level, ratio-major.

    An aspect ratio is height / width; each anchor keeps the area ``size^2``.
    """
    scales = torch.as_tensor(sizes, dtype=dtype, device=device)
    ratios = torch.as_tensor(aspect_ratios, dtype=dtype, device=device)
    h_ratios = torch.sqrt(ratios)
    w_ratios = 1 / h_ratios
    ws = (w_ratios[:, None] * scales[None, :]).reshape(-1)
    hs = (h_ratios[:, None] * scales[None, :]).reshape(-1)
    return (torch.stack([-ws, -hs, ws, hs], dim=1) / 2).round()


def octave_sizes(base_sizes: Sequence[int] = (32, 64, 128, 256, 512), scales_per_octave: int = 3) -> tuple[tuple[int, ...], ...]:
    """RetinaNet's anchor sizes: per level ``int(base * 2^(i / scales_per_octave))``, i = 0..n-1."""
    return tuple(tuple(int(b * 2 ** (i / scales_per_octave)) for i in range(scales_per_octave)) for b in base_sizes)


class AnchorGenerator(nn.Module):
    """Anchors for every position of every feature map of a padded batch.

    Args:
        sizes: per level, the anchor sizes (square-root areas) in input pixels.
        aspect_ratios: per level, the height/width ratios (one tuple is used for every level).

    ``forward(image_size, grid_sizes)`` returns one ``[h * w * A, 4]`` tensor per level, ordered
    by position (row-major), then by anchor: the order a head's ``[N, A * K, h, w]`` output has
    once flattened by :func:`archzoo.detection.heads.flatten_level`. The generator holds no state
    (nothing in the state dict).
    """

    def __init__(self, sizes: Sequence[Sequence[float]], aspect_ratios: Sequence[float] | Sequence[Sequence[float]] = (0.5, 1.0, 2.0)):
        super().__init__()
        sizes = tuple(tuple(s) if isinstance(s, (list, tuple)) else (s,) for s in sizes)
        if not isinstance(aspect_ratios[0], (list, tuple)):
            aspect_ratios = (tuple(aspect_ratios),) * len(sizes)
        if len(aspect_ratios) != len(sizes):
            raise ValueError(f"anchors: {len(sizes)} levels of sizes but {len(aspect_ratios)} of aspect ratios")
        self.sizes, self.aspect_ratios = sizes, tuple(tuple(a) for a in aspect_ratios)
        self._cells = [cell_anchors(s, a) for s, a in zip(self.sizes, self.aspect_ratios)]

    def num_anchors_per_location(self) -> list[int]:
        return [len(s) * len(a) for s, a in zip(self.sizes, self.aspect_ratios)]

    def forward(self, image_size: Sequence[int], grid_sizes: Sequence[Sequence[int]], dtype=torch.float32,
                device=None) -> list[torch.Tensor]:
        if len(grid_sizes) != len(self._cells):
            raise ValueError(f"anchors: {len(self._cells)} levels configured, {len(grid_sizes)} feature maps given")
        out = []
        for (gh, gw), cell in zip(grid_sizes, self._cells):
            stride_h, stride_w = int(image_size[0]) // int(gh), int(image_size[1]) // int(gw)
            shift_x = torch.arange(0, gw, dtype=torch.int64, device=device) * stride_w
            shift_y = torch.arange(0, gh, dtype=torch.int64, device=device) * stride_h
            sy, sx = torch.meshgrid(shift_y, shift_x, indexing="ij")
            sx, sy = sx.reshape(-1), sy.reshape(-1)
            shifts = torch.stack((sx, sy, sx, sy), dim=1)
            out.append((shifts.view(-1, 1, 4) + cell.to(dtype=dtype, device=device).view(1, -1, 4)).reshape(-1, 4))
        return out

    def extra_repr(self) -> str:
        return f"sizes={self.sizes}, aspect_ratios={self.aspect_ratios}"
