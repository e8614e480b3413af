"""Assigners: which ground-truth box each prediction learns from, decided with the predictions
themselves (dynamic assignment), unlike the fixed IoU rules of :mod:`.matchers`.

``TaskAlignedAssigner`` is TOOD's (Feng et al., "TOOD: Task-aligned One-stage Object Detection",
arXiv:2108.07755, 2021), in the form YOLOv8 uses (Jocher et al. 2023): for each box, the anchor
points inside it are scored by ``t = s^alpha * u^beta`` (``s``: the predicted score of the box's
class, ``u``: the IoU of the predicted box with it); the ``topk`` best are its positives (a point
claimed by several boxes keeps the one it overlaps most), and the soft class target of a positive
is ``t`` rescaled so that each box's best positive gets that box's best IoU.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torchvision.ops import box_iou, complete_box_iou


class Assignment(NamedTuple):
    """Per anchor point: ``foreground [A]`` (bool), ``boxes [A, 4]`` (the assigned box, xyxy;
    zeros for background), ``labels [A]`` (the assigned class, ``-1`` for background) and
    ``scores [A, C]`` (the soft classification target, zero for background)."""

    foreground: torch.Tensor
    boxes: torch.Tensor
    labels: torch.Tensor
    scores: torch.Tensor


class TaskAlignedAssigner:
    """TOOD's task-aligned assignment (see the module doc).

    Args:
        topk: positives per box (before points claimed twice are resolved).
        alpha, beta: exponents of the classification score and of the IoU.
        iou: ``"ciou"`` (YOLOv8: the complete IoU, clamped at 0) or ``"iou"`` (TOOD).
        eps: keeps divisions finite; a point must be further than ``eps`` inside a box.
    """

    def __init__(self, topk: int = 10, alpha: float = 0.5, beta: float = 6.0, iou: str = "ciou", eps: float = 1e-9):
        if iou not in ("ciou", "iou"):
            raise ValueError(f"iou must be 'ciou' or 'iou', got {iou!r}")
        self.topk, self.alpha, self.beta, self.iou, self.eps = topk, alpha, beta, iou, eps

    @torch.no_grad()
    def __call__(self, scores: torch.Tensor, pred_boxes: torch.Tensor, points: torch.Tensor,
                 gt_boxes: torch.Tensor, gt_labels: torch.Tensor) -> Assignment:
        """One image: ``scores [A, C]`` (probabilities), ``pred_boxes [A, 4]`` and ``points [A, 2]``
        in pixels, ``gt_boxes [n, 4]`` (xyxy pixels), ``gt_labels [n]`` (0-based)."""
        num_points, num_classes = scores.shape
        if gt_boxes.shape[0] == 0:  # an image without objects: everything is background
            return Assignment(torch.zeros(num_points, dtype=torch.bool, device=scores.device),
                              pred_boxes.new_zeros(num_points, 4),
                              torch.full((num_points,), -1, dtype=torch.int64, device=scores.device),
                              scores.new_zeros(num_points, num_classes))
        gt_boxes = gt_boxes.to(pred_boxes.dtype)
        # candidates: points strictly inside a box  [n, A]
        lt = points[None] - gt_boxes[:, None, :2]
        rb = gt_boxes[:, None, 2:] - points[None]
        inside = torch.cat([lt, rb], -1).amin(-1) > self.eps
        overlap = complete_box_iou(gt_boxes, pred_boxes) if self.iou == "ciou" else box_iou(gt_boxes, pred_boxes)
        overlap = overlap.clamp(min=0) * inside
        cls_score = scores[:, gt_labels].T  # [n, A]: each point's score for the box's class
        metric = cls_score.pow(self.alpha) * overlap.pow(self.beta) * inside
        # the topk points of each box by the alignment metric, among those inside it
        k = min(self.topk, num_points)
        top = metric.topk(k, dim=1).indices
        positive = torch.zeros_like(inside)
        positive.scatter_(1, top, True)
        positive &= inside
        # a point claimed by several boxes keeps the one it overlaps most
        claimed = positive.sum(0)
        if (claimed > 1).any():
            best = overlap.argmax(0)
            multi = claimed > 1
            positive[:, multi] = False
            positive[best[multi], multi.nonzero().squeeze(1)] = True
        foreground = positive.any(0)
        gt_index = positive.to(torch.uint8).argmax(0)  # [A]
        labels = torch.where(foreground, gt_labels[gt_index], torch.full_like(gt_index, -1))
        boxes = gt_boxes[gt_index] * foreground[:, None]
        # soft targets: t normalised so that each box's best positive gets the box's best IoU
        metric = metric * positive
        best_metric = metric.amax(1, keepdim=True)
        best_overlap = (overlap * positive).amax(1, keepdim=True)
        norm = (metric * best_overlap / (best_metric + self.eps)).amax(0)  # [A]
        target = torch.zeros_like(scores)
        fg = foreground.nonzero().squeeze(1)
        target[fg, labels[fg]] = norm[fg].to(target.dtype)
        return Assignment(foreground, boxes, labels, target)
