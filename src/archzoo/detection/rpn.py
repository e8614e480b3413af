"""The Region Proposal Network (Ren, He, Girshick, Sun, "Faster R-CNN: Towards Real-Time Object
Detection with Region Proposal Networks", arXiv:1506.01497, NIPS 2015).

Fast R-CNN (arXiv:1504.08083) classified a few thousand region proposals per image, but the
proposals came from selective search, two seconds per image on a CPU. The RPN proposes them from
the detector's own feature maps, nearly for free: a 3x3 convolution slides over each map and, at
every position, two sibling 1x1 convolutions score ``A`` anchors (object or not, one logit each)
and regress their boxes (4 deltas each, the R-CNN encoding of :class:`~archzoo.detection.boxes.BoxCoder`).

Training (section 3.1.2): an anchor is positive when its IoU with a box is >= 0.7 (or it is a
box's best anchor), negative below 0.3, ignored in between; 256 anchors per image, up to half
positive, are drawn (:class:`~archzoo.detection.samplers.BalancedSampler`); the loss is binary
cross-entropy over the drawn anchors plus smooth-L1 (beta 1/9) of the positives' deltas, divided
by the number drawn.

Proposals: each level's ``pre_nms_top_n`` best anchors, decoded, clipped to the image, boxes under
``min_size`` and scores under ``score_thresh`` dropped, NMS at 0.7 within each level, the
``post_nms_top_n`` best kept (2000/1000 in training/testing, torchvision's numbers; the paper, on
one map: 2000 after NMS in training, 300 at test). Proposals are detached: the RoI heads do not
back-propagate into the boxes (the "approximate joint training" of section 3.2).

Number for number torchvision's ``RegionProposalNetwork`` (its ``RPNHead`` is :class:`RPNHead`).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops import batched_nms, box_iou, clip_boxes_to_image, remove_small_boxes

from .anchors import AnchorGenerator
from .boxes import BoxCoder
from .heads import conv_tower, flatten_levels, init_predictor
from .matchers import IGNORE, IoUMatcher
from .postprocess import at_most
from .samplers import BalancedSampler
from .transform import ImageBatch


class RPNHead(nn.Module):
    """``num_convs`` 3x3 convolutions (ReLU) shared by all levels, then ``objectness`` (1x1, ``A``
    logits) and ``box_deltas`` (1x1, ``4 A``). Weights start at N(0, 0.01), biases at 0.

    ``forward(maps)`` returns ``(objectness, box_deltas)``, each a list with one ``[B, ., h, w]``
    map per level."""

    def __init__(self, channels: int, num_anchors: int, num_convs: int = 1):
        super().__init__()
        self.conv = conv_tower(channels, num_convs)
        self.objectness = init_predictor(nn.Conv2d(channels, num_anchors, 1))
        self.box_deltas = init_predictor(nn.Conv2d(channels, num_anchors * 4, 1))

    def forward(self, maps: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        hidden = [self.conv(m) for m in maps]
        return [self.objectness(h) for h in hidden], [self.box_deltas(h) for h in hidden]


class RegionProposalNetwork(nn.Module):
    """A proposer (see :mod:`archzoo.detection.two_stage`): ``forward(batch, maps, targets)`` returns
    the proposals of every image (``[n, 4]``, resized image's pixels) and, in training, the losses
    ``loss_objectness`` and ``loss_rpn_box_reg``.

    Args:
        anchor_generator: anchors for every level of ``maps`` (all of them are used).
        head: ``head(list of maps) -> (objectness, box_deltas)`` per level, as :class:`RPNHead`.
        fg_iou_thresh, bg_iou_thresh: anchor matching (0.7, 0.3).
        batch_size_per_image, positive_fraction: the anchors drawn for the loss (256, 0.5).
        pre_nms_top_n, post_nms_top_n: ``(training, testing)`` proposals kept per level before NMS
            and per image after it.
        nms_thresh: NMS IoU within a level (0.7). score_thresh: the least objectness probability kept.
        min_size: boxes narrower or lower than this (pixels) are dropped.
    """

    def __init__(self, anchor_generator: AnchorGenerator, head: nn.Module, fg_iou_thresh: float = 0.7,
                 bg_iou_thresh: float = 0.3, batch_size_per_image: int = 256, positive_fraction: float = 0.5,
                 pre_nms_top_n: tuple[int, int] = (2000, 1000), post_nms_top_n: tuple[int, int] = (2000, 1000),
                 nms_thresh: float = 0.7, score_thresh: float = 0.0, min_size: float = 1e-3):
        super().__init__()
        self.anchor_generator, self.head = anchor_generator, head
        self.box_coder = BoxCoder((1.0, 1.0, 1.0, 1.0))
        self.matcher = IoUMatcher(fg_iou_thresh, bg_iou_thresh, allow_low_quality=True)
        self.sampler = BalancedSampler(batch_size_per_image, positive_fraction)
        self.pre_nms_top_n, self.post_nms_top_n = tuple(pre_nms_top_n), tuple(post_nms_top_n)
        self.nms_thresh, self.score_thresh, self.min_size = nms_thresh, score_thresh, min_size

    def forward(self, batch: ImageBatch, maps: dict[str, torch.Tensor],
                targets: list[dict] | None = None) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
        features = list(maps.values())
        objectness, deltas = self.head(features)
        anchors = torch.cat(self.anchor_generator(batch.tensors.shape[-2:], [f.shape[-2:] for f in features],
                                                  dtype=features[0].dtype, device=features[0].device))
        per_level = [o[0].numel() for o in objectness]  # A * h * w anchors on each level
        objectness = flatten_levels(objectness, 1).squeeze(-1)  # [B, N]
        deltas = flatten_levels(deltas, 4)  # [B, N, 4]
        proposals = self.box_coder.decode(deltas.detach().reshape(-1, 4), anchors.repeat(len(deltas), 1))
        proposals = self.select(proposals.view(len(deltas), -1, 4), objectness.detach(), batch.image_sizes, per_level)
        losses = self.loss(objectness, deltas, anchors, targets) if self.training else {}
        return proposals, losses

    @torch.no_grad()
    def select(self, boxes: torch.Tensor, logits: torch.Tensor, image_sizes: list[tuple[int, int]],
               per_level: list[int]) -> list[torch.Tensor]:
        """The proposals of each image from all anchors' boxes ``[B, N, 4]`` and logits ``[B, N]``."""
        pre_nms, post_nms = (self.pre_nms_top_n[0], self.post_nms_top_n[0]) if self.training else \
            (self.pre_nms_top_n[1], self.post_nms_top_n[1])
        chosen, levels, offset = [], [], 0
        for level, level_logits in enumerate(logits.split(per_level, dim=1)):  # the best of every level
            top = level_logits.topk(at_most(pre_nms, level_logits, 1), dim=1).indices
            chosen.append(top + offset)
            levels.append(torch.full_like(top, level))
            offset += level_logits.shape[1]
        chosen, levels = torch.cat(chosen, dim=1), torch.cat(levels, dim=1)
        rows = torch.arange(len(boxes), device=boxes.device)[:, None]
        boxes, scores = boxes[rows, chosen], torch.sigmoid(logits[rows, chosen])
        proposals = []
        for img_boxes, img_scores, img_levels, size in zip(boxes, scores, levels, image_sizes):
            img_boxes = clip_boxes_to_image(img_boxes, size)
            keep = remove_small_boxes(img_boxes, self.min_size)
            keep = keep[img_scores[keep] >= self.score_thresh]
            img_boxes, img_scores, img_levels = img_boxes[keep], img_scores[keep], img_levels[keep]
            keep = batched_nms(img_boxes, img_scores, img_levels, self.nms_thresh)[:post_nms]
            proposals.append(img_boxes[keep])
        return proposals

    def loss(self, objectness: torch.Tensor, deltas: torch.Tensor, anchors: torch.Tensor,
             targets: list[dict] | None) -> dict[str, torch.Tensor]:
        """Binary cross-entropy over the drawn anchors, smooth-L1 of the positives' deltas; both over
        the whole batch, the box loss divided by the number of anchors drawn."""
        if targets is None:
            raise ValueError("the RPN in training mode needs targets")
        positives, negatives, box_targets = [], [], []
        for t, img_deltas in zip(targets, deltas):
            gt = t["boxes"].to(anchors.dtype)
            matches = self.matcher(box_iou(gt, anchors))  # no boxes: every anchor a negative
            labels = (matches >= 0).to(anchors.dtype)
            labels[matches == IGNORE] = -1.0
            pos, neg = self.sampler(labels)
            positives.append(pos)
            negatives.append(neg)
            box_targets.append(self.box_coder.encode(gt[matches[pos]], anchors[pos]))
        pos, neg = torch.cat(positives), torch.cat(negatives)
        objectness, deltas = objectness.reshape(-1), deltas.reshape(-1, 4)
        labels = pos.to(objectness.dtype)
        drawn = torch.cat([torch.where(pos)[0], torch.where(neg)[0]])  # positives first, as torchvision
        box_loss = F.smooth_l1_loss(deltas[pos], torch.cat(box_targets), beta=1 / 9, reduction="sum") / drawn.numel()
        objectness_loss = F.binary_cross_entropy_with_logits(objectness[drawn], labels[drawn])
        return {"loss_objectness": objectness_loss, "loss_rpn_box_reg": box_loss}
