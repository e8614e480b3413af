"""Two-stage detectors: first propose regions, then classify and refine each one.

::

    images -> transform (normalise, resize, pad)                       DetectionTransform
           -> backbone [-> neck]  -> named maps {"0": ..., "pool": ...} features()
           -> proposer(batch, maps, targets) -> proposals, losses       RPN, selective search, ...
           -> roi_heads(maps, proposals, sizes, targets)                 RoIHeads: pool, box head, masks
              -> training: the proposer's and the heads' losses
                 eval: boxes (and masks pasted) in the original images' pixels

R-CNN (Girshick et al., arXiv:1311.2524, 2014) and Fast R-CNN (arXiv:1504.08083, 2015) took their
proposals from selective search; Faster R-CNN (arXiv:1506.01497, 2015) learns them with a Region
Proposal Network on the same maps; Mask R-CNN (arXiv:1703.06870, 2017) adds a mask head to the RoI
heads. So the proposer is a part of its own, with a small interface:

``proposer(batch, maps, targets) -> (proposals, losses)`` (or ``(proposals, losses, roi_maps)``):
``batch`` is the transform's :class:`~archzoo.detection.transform.ImageBatch` (normalised, resized,
padded); ``maps`` the named maps, fine to coarse; ``targets`` ``None`` in eval, else the targets
with boxes in the resized images' pixels. ``proposals`` is one ``[n, 4]`` tensor of boxes per image,
in the resized image's pixels, without gradient; ``losses`` a dict (empty when nothing is learnt);
the optional ``roi_maps`` replace ``maps`` for the RoI heads (ThunderNet's spatial attention
re-weights the map with the RPN's features).

This is torchvision's ``GeneralizedRCNN`` composition; torchvision's Faster and Mask R-CNN convert
to it number for number (:mod:`archzoo.detection.faster_rcnn`, :mod:`archzoo.detection.mask_rcnn`).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import Detector
from .roi_heads import RoIHeads, paste_masks
from .transform import DetectionTransform


class TwoStageDetector(Detector):
    """Args:
        num_classes: object classes K (labels 0..K-1; the RoI heads add the background).
        transform: the :class:`~archzoo.detection.transform.DetectionTransform`.
        backbone: ``x [B, C, H, W] -> list of maps`` (a zoo model with ``features_only=True``).
        proposer: see the module doc (:class:`~archzoo.detection.rpn.RegionProposalNetwork`).
        roi_heads: :class:`~archzoo.detection.roi_heads.RoIHeads`.
        neck: ``list of maps -> list of maps`` (an FPN) or ``None``.
        map_names: the names of the (neck's) maps, default ``"0", "1", ...``.

    ``forward(images, targets=None)``: training -> the losses (``loss_objectness``,
    ``loss_rpn_box_reg``, ``loss_classifier``, ``loss_box_reg``, ``loss_mask`` with a mask branch);
    eval -> per image ``boxes``, ``scores``, ``labels`` and with masks ``masks`` ``[n, 1, H, W]``,
    probabilities in the original image's pixels. Targets of a model with masks carry ``masks``
    ``[k, H, W]`` (bool or 0/1, the image's size), resized with the image.
    """

    def __init__(self, num_classes: int, transform: DetectionTransform, backbone: nn.Module, proposer: nn.Module,
                 roi_heads: RoIHeads, neck: nn.Module | None = None, map_names: Sequence[str] | None = None):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1 (object classes, without background), got {num_classes}")
        self.num_classes = num_classes
        self.transform, self.backbone, self.neck = transform, backbone, neck
        self.proposer, self.roi_heads = proposer, roi_heads
        self.map_names = tuple(map_names) if map_names is not None else None

    @property
    def has_mask(self) -> bool:
        return bool(getattr(self.roi_heads, "has_mask", False))

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The backbone's (and neck's) maps of a normalised, padded batch, by name."""
        maps = self.backbone(x)
        if self.neck is not None:
            maps = self.neck(maps)
        names = self.map_names or tuple(str(i) for i in range(len(maps)))
        if len(names) != len(maps):
            raise ValueError(f"{len(maps)} feature maps but {len(names)} map_names {names}")
        return dict(zip(names, maps))

    def forward_batch(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The maps the proposer and the RoI heads share (the dense part of the network)."""
        return self.features(x)

    def check_more_targets(self, targets: list[dict], images: list[torch.Tensor]) -> None:
        if self.has_mask:
            check_masks(targets, images)

    def forward(self, images, targets: list[dict] | None = None):
        batch, targets, original_sizes = self.prepare(images, targets)
        if targets is not None and self.has_mask:
            for t, size in zip(targets, batch.image_sizes):  # nearest neighbour, as the boxes were scaled
                t["masks"] = F.interpolate(t["masks"][:, None].float(), size=size)[:, 0].byte()
        maps = self.features(batch.tensors)
        proposals, losses, *rest = self.proposer(batch, maps, targets)
        detections, head_losses = self.roi_heads(rest[0] if rest else maps, proposals, batch.image_sizes, targets)
        if self.training:
            return {**losses, **head_losses}
        detections = self.transform.postprocess(detections, batch.image_sizes, original_sizes)
        for det, size in zip(detections, original_sizes):
            if "masks" in det:
                det["masks"] = paste_masks(det["masks"], det["boxes"], size)
        return detections


def check_masks(targets: list[dict], images: list[torch.Tensor]) -> None:
    """Each target of a model with masks needs ``masks`` ``[k, H, W]``: one per box, the image's size."""
    for i, (t, img) in enumerate(zip(targets, images)):
        if "masks" not in t:
            raise ValueError(f"targets[{i}]: a model with a mask branch needs 'masks' [k, H, W] in every target")
        masks = torch.as_tensor(t["masks"])
        want = (t["boxes"].shape[0], *img.shape[-2:])
        if masks.dim() != 3 or tuple(masks.shape) != want:
            raise ValueError(f"targets[{i}]: masks must be [k, H, W] = {list(want)} (one per box, the image's size), "
                             f"got {list(masks.shape)}")
        t["masks"] = masks
