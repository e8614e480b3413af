"""From dense scores to a short list of detections: keep the confident candidates, then
non-maximum suppression (per class, from ``torchvision.ops.batched_nms``)."""

from __future__ import annotations

import torch
from torchvision.ops import batched_nms


def top_candidates(scores: torch.Tensor, score_thresh: float, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The at most ``k`` best (location, class) pairs of ``scores [N, C]`` above ``score_thresh``.

    Returns ``(scores, location indices, class indices)``, best first.
    """
    num_classes = scores.shape[-1]
    flat = scores.flatten()
    keep = flat > score_thresh
    flat, index = flat[keep], torch.where(keep)[0]
    flat, order = flat.topk(at_most(k, index))
    index = index[order]
    return flat, torch.div(index, num_classes, rounding_mode="floor"), index % num_classes


def at_most(k: int, x: torch.Tensor, dim: int = 0):
    """``min(k, x.shape[dim])``: how many of ``x``'s entries a ``topk`` can take. While the model is
    traced for export (``torch.onnx``, :mod:`archzoo.deploy`) it is computed in the graph, so a count
    that depends on the data (candidates above a threshold) is not frozen at the traced example's
    (torchvision's ``_topk_min`` does the same)."""
    if not torch.jit.is_tracing():
        return min(k, x.shape[dim])
    return torch.clamp(torch._shape_as_tensor(x)[dim], max=k)


def nms_detections(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, iou_thresh: float,
                   max_detections: int) -> dict[str, torch.Tensor]:
    """Per-class NMS, then the ``max_detections`` best: one image's ``{boxes, scores, labels}``."""
    keep = batched_nms(boxes, scores, labels, iou_thresh)[:max_detections]
    return {"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]}
