"""Samplers: which of the matched anchors or proposals a two-stage detector learns from.

Faster R-CNN (Ren et al., arXiv:1506.01497, section 3.1.3) does not average its loss over every
anchor of an image: tens of thousands of easy negatives would swamp the few positives. It draws a
*mini-batch* per image instead, up to half positives (256 anchors for the RPN; Fast R-CNN, Girshick
arXiv:1504.08083, section 2.3: 25% of 128 RoIs per image, torchvision: of 512), filling the rest with
negatives. RetinaNet's focal loss (arXiv:1708.02002) is the one-stage answer to the same imbalance.
"""

from __future__ import annotations

import torch


class BalancedSampler:
    """Draw at most ``batch_size_per_image * positive_fraction`` positives at random, then negatives
    up to ``batch_size_per_image`` in all (fewer where an image has fewer).

    ``__call__(labels)`` takes one image's labels (``> 0`` positive, ``0`` negative, ``< 0``
    ignored) and returns two boolean masks of the same length, the sampled positives and negatives.
    The draw is ``torch.randperm`` of the positives, then of the negatives, on the labels' device:
    with the same seed it is torchvision's ``BalancedPositiveNegativeSampler`` draw for draw.
    """

    def __init__(self, batch_size_per_image: int, positive_fraction: float):
        if batch_size_per_image < 1 or not 0 <= positive_fraction <= 1:
            raise ValueError(f"need batch_size_per_image >= 1 and 0 <= positive_fraction <= 1, "
                             f"got {batch_size_per_image} and {positive_fraction}")
        self.batch_size_per_image, self.positive_fraction = batch_size_per_image, positive_fraction

    def __call__(self, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        positive = torch.where(labels >= 1)[0]
        negative = torch.where(labels == 0)[0]
        num_pos = min(positive.numel(), int(self.batch_size_per_image * self.positive_fraction))
        num_neg = min(negative.numel(), self.batch_size_per_image - num_pos)
        pos = positive[torch.randperm(positive.numel(), device=positive.device)[:num_pos]]
        neg = negative[torch.randperm(negative.numel(), device=negative.device)[:num_neg]]
        pos_mask = torch.zeros_like(labels, dtype=torch.bool)
        neg_mask = torch.zeros_like(labels, dtype=torch.bool)
        pos_mask[pos] = True
        neg_mask[neg] = True
        return pos_mask, neg_mask

    def __repr__(self) -> str:
        return f"BalancedSampler(batch_size_per_image={self.batch_size_per_image}, positive_fraction={self.positive_fraction})"
