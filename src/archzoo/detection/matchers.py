"""Matchers: which ground-truth box (if any) each anchor learns from.

A matcher takes the IoU matrix ``[num_boxes, num_anchors]`` and returns, per anchor, the index
of its box, or ``BACKGROUND`` (-1, a negative) or ``IGNORE`` (-2, no loss at all).
"""

from __future__ import annotations

import torch

BACKGROUND, IGNORE = -1, -2


class IoUMatcher:
    """Max-IoU matching (Faster R-CNN, Ren et al. 2015; RetinaNet, Lin et al. 2017): an anchor takes
    the box it overlaps most when that IoU is ``>= high``; below ``low`` it is background, in
    between it is ignored.

    ``allow_low_quality``: each box also keeps the anchors that overlap it most even under
    ``high`` (otherwise a box between anchors would have none). ``force_best``: SSD's rule (Liu et
    al. 2016): each box's best anchor is matched to *that* box whatever its IoU, overriding the
    anchor's own best box.
    """

    def __init__(self, high: float, low: float | None = None, allow_low_quality: bool = False,
                 force_best: bool = False):
        low = high if low is None else low
        if not 0 <= low <= high <= 1:
            raise ValueError(f"need 0 <= low <= high <= 1, got low={low}, high={high}")
        self.high, self.low = high, low
        self.allow_low_quality, self.force_best = allow_low_quality, force_best

    def __call__(self, iou: torch.Tensor) -> torch.Tensor:
        num_boxes, num_anchors = iou.shape
        if num_boxes == 0:  # an image without objects: every anchor is a negative
            return torch.full((num_anchors,), BACKGROUND, dtype=torch.int64, device=iou.device)
        best_iou, matches = iou.max(dim=0)
        unfiltered = matches.clone()
        matches[best_iou < self.low] = BACKGROUND
        matches[(best_iou >= self.low) & (best_iou < self.high)] = IGNORE
        if self.allow_low_quality:
            best_per_box = iou.max(dim=1).values
            _, anchors = torch.where(iou == best_per_box[:, None])
            matches[anchors] = unfiltered[anchors]
        if self.force_best:
            best_anchor = iou.argmax(dim=1)
            matches[best_anchor] = torch.arange(num_boxes, dtype=matches.dtype, device=matches.device)
        return matches
