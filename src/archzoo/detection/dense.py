"""What the one-stage pyramid detectors (RetinaNet, FCOS) share: a zoo backbone's C3-C5
(strides 8, 16, 32) -> FPN P3-P7 -> a dense head, the transform, per-level anchors and the
per-level decoding of torchvision's ``postprocess_detections`` (score threshold and top-k per
level, boxes clipped to the image, per-class NMS over all levels, the best kept).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torchvision.ops import clip_boxes_to_image

from .anchors import AnchorGenerator
from .base import Detector
from .necks import FPN
from .postprocess import nms_detections, top_candidates
from .transform import DetectionTransform, ImageBatch


class PyramidDetector(Detector):
    """Subclasses build ``self.head`` (``head(pyramid) -> {name: [per-level raw maps]}``) and
    implement ``loss`` and ``detect`` with :meth:`anchors` and :meth:`decode`."""

    def __init__(self, num_classes: int, in_chans: int, backbone: str, norm_layer: str | None,
                 anchor_generator: AnchorGenerator, fpn_channels: int = 256, extra_from: str = "p5",
                 min_size: int | Sequence[int] = 800, max_size: int = 1333,
                 image_size: int | Sequence[int] | None = None, mean: Sequence[float] = (0.485, 0.456, 0.406),
                 std: Sequence[float] = (0.229, 0.224, 0.225), score_thresh: float = 0.05, nms_thresh: float = 0.5,
                 detections_per_img: int = 300, topk_candidates: int = 1000):
        super().__init__()
        from ..builder import create_model

        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1 (object classes, without background), got {num_classes}")
        if len(mean) != in_chans:  # one grey (or extra) channel: the mean normalisation of the colour ones
            mean, std = (sum(mean) / len(mean),) * in_chans, (sum(std) / len(std),) * in_chans
        if image_size is not None:
            h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
            fixed = (int(w), int(h))
        else:
            fixed = None
        self.transform = DetectionTransform(min_size, max_size, mean, std, size_divisible=32, fixed_size=fixed)
        options = {"norm_layer": norm_layer} if norm_layer is not None else {}
        self.backbone = create_model(backbone, features_only=True, out_strides=(8, 16, 32), in_chans=in_chans, **options)
        levels = len(anchor_generator.num_anchors_per_location())
        self.neck = FPN(self.backbone.feature_info.channels(), fpn_channels, extra_levels=levels - 3, extra_from=extra_from)
        self.anchor_generator = anchor_generator
        self.num_classes = num_classes
        self.score_thresh, self.nms_thresh = score_thresh, nms_thresh
        self.detections_per_img, self.topk_candidates = detections_per_img, topk_candidates

    def forward_batch(self, x: torch.Tensor) -> dict[str, list[torch.Tensor]]:
        return self.head(self.neck(self.backbone(x)))

    def anchors(self, outputs: dict[str, list[torch.Tensor]], batch: ImageBatch) -> list[torch.Tensor]:
        """Per level ``[h * w * A, 4]`` anchors of the padded batch (the same for every image)."""
        maps = next(iter(outputs.values()))
        return self.anchor_generator(batch.tensors.shape[-2:], [m.shape[-2:] for m in maps],
                                     dtype=maps[0].dtype, device=maps[0].device)

    def decode(self, scores: list[torch.Tensor], boxes: list[Callable[[torch.Tensor], torch.Tensor]],
               image_size: tuple[int, int]) -> dict[str, torch.Tensor]:
        """One image's detections from per-level ``scores [h * w * A, K]`` (probabilities) and
        ``boxes[level](locations) -> [n, 4]``, the decoded boxes of chosen locations."""
        all_boxes, all_scores, all_labels = [], [], []
        for level_scores, level_boxes in zip(scores, boxes):
            s, loc, labels = top_candidates(level_scores, self.score_thresh, self.topk_candidates)
            all_boxes.append(clip_boxes_to_image(level_boxes(loc), image_size))
            all_scores.append(s)
            all_labels.append(labels)
        return nms_detections(torch.cat(all_boxes), torch.cat(all_scores), torch.cat(all_labels),
                              self.nms_thresh, self.detections_per_img)
