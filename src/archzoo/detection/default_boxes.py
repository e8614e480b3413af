"""SSD's default boxes: a few boxes of one scale and several shapes at every position of every
prediction map (Liu et al., "SSD: Single Shot MultiBox Detector", arXiv:1512.02325, 2015, section
2.2 "Choosing scales and aspect ratios for default boxes").

Map ``k`` of ``m`` gets the scale ``s_k = s_min + (s_max - s_min) (k - 1) / (m - 1)`` (a fraction
of the image side), and at each of its positions, centred at ``((i + 0.5) / |f_k|, (j + 0.5) / |f_k|)``:

* a square of side ``s_k`` and one of side ``sqrt(s_k s_k+1)`` (the extra box, between this
  map's scale and the next's; after the last map ``s_m+1 = 1``),
* for each aspect ratio ``a`` of the map, the pair ``(s_k sqrt(a), s_k / sqrt(a))`` and its
  transpose (``a`` and ``1/a``).

Widths and heights are clipped to ``[0, 1]`` before the boxes are made. ``steps`` replaces
``|f_k|`` by ``image side / step`` (the Caffe SSD300's tiling: steps 8, 16, 32, 64, 100, 300).
Boxes are returned as ``(x1, y1, x2, y2)`` in the pixels of the (padded) batch, position-major and
box-minor, the order the heads' outputs are flattened in. Number for number
``torchvision.models.detection.anchor_utils.DefaultBoxGenerator``.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn


class DefaultBoxGenerator(nn.Module):
    """Default boxes for a list of feature maps.

    Args:
        aspect_ratios: per map, the ratios ``a`` (besides 1) whose boxes ``a`` and ``1/a`` it gets.
        min_ratio, max_ratio: ``s_min`` and ``s_max`` of the paper's scale rule.
        scales: the ``m + 1`` scales explicitly (SSD300: ``0.07, 0.15, ..., 1.05``), instead of the rule.
        steps: per map, the step in image pixels between box centres; ``None``: ``image side / map side``.
        clip: clip widths and heights to the image (``[0, 1]``).
    """

    def __init__(self, aspect_ratios: Sequence[Sequence[float]], min_ratio: float = 0.15, max_ratio: float = 0.9,
                 scales: Sequence[float] | None = None, steps: Sequence[float] | None = None, clip: bool = True):
        super().__init__()
        if steps is not None and len(steps) != len(aspect_ratios):
            raise ValueError(f"steps ({len(steps)}) and aspect_ratios ({len(aspect_ratios)}) need one entry per map")
        m = len(aspect_ratios)
        if scales is None:
            if m > 1:
                scales = [min_ratio + (max_ratio - min_ratio) * k / (m - 1.0) for k in range(m)] + [1.0]
            else:
                scales = [min_ratio, max_ratio]
        if len(scales) != m + 1:
            raise ValueError(f"need {m + 1} scales (one per map and one after the last), got {len(scales)}")
        self.aspect_ratios = [list(r) for r in aspect_ratios]
        self.scales, self.steps, self.clip = list(scales), (list(steps) if steps is not None else None), clip
        self.sizes = [self._sizes(k) for k in range(m)]  # per map: [boxes, 2] (w, h) as fractions of the image

    def _sizes(self, k: int) -> torch.Tensor:
        s, extra = self.scales[k], math.sqrt(self.scales[k] * self.scales[k + 1])
        wh = [[s, s], [extra, extra]]
        for a in self.aspect_ratios[k]:
            w, h = s * math.sqrt(a), s / math.sqrt(a)
            wh += [[w, h], [h, w]]
        return torch.as_tensor(wh, dtype=torch.float32, device="cpu")  # a constant table, also when built on meta

    def num_anchors_per_location(self) -> list[int]:
        return [2 + 2 * len(r) for r in self.aspect_ratios]

    def forward(self, image_size: Sequence[int], grid_sizes: Sequence[Sequence[int]],
                dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> torch.Tensor:
        """All default boxes ``[N, 4]`` (xyxy pixels) for a batch of ``image_size`` ``(h, w)`` whose
        prediction maps have ``grid_sizes`` ``[(h_k, w_k), ...]``."""
        if len(grid_sizes) != len(self.sizes):
            raise ValueError(f"{len(grid_sizes)} feature maps for default boxes of {len(self.sizes)} maps")
        h_img, w_img = int(image_size[0]), int(image_size[1])
        boxes = []
        for k, (fh, fw) in enumerate(grid_sizes):
            fh, fw = int(fh), int(fw)
            if self.steps is not None:
                per_x, per_y = w_img / self.steps[k], h_img / self.steps[k]
            else:
                per_x, per_y = fw, fh
            cx = ((torch.arange(0, fw, device=device) + 0.5) / per_x).to(dtype=dtype)
            cy = ((torch.arange(0, fh, device=device) + 0.5) / per_y).to(dtype=dtype)
            cy, cx = torch.meshgrid(cy, cx, indexing="ij")
            n = len(self.sizes[k])
            centres = torch.stack((cx.reshape(-1), cy.reshape(-1)) * n, dim=-1).reshape(-1, 2)
            sizes = self.sizes[k].clamp(min=0, max=1) if self.clip else self.sizes[k]
            boxes.append(torch.cat((centres, sizes.to(device=device, dtype=dtype).repeat(fh * fw, 1)), dim=1))
        boxes = torch.cat(boxes, dim=0)
        scale = torch.tensor([w_img, h_img], device=boxes.device)
        return torch.cat(((boxes[:, :2] - 0.5 * boxes[:, 2:]) * scale, (boxes[:, :2] + 0.5 * boxes[:, 2:]) * scale), -1)

    def extra_repr(self) -> str:
        return f"aspect_ratios={self.aspect_ratios}, scales={self.scales}, steps={self.steps}, clip={self.clip}"
