"""What every detector shares: the data flow around its own parts.

::

    images (list of [3, H, W] in 0..1, or [B, 3, H, W])
      -> transform (normalise, resize, pad; remembers sizes)      DetectionTransform
      -> forward_batch: backbone -> neck -> head                  the detector's own parts
      -> training: loss(outputs, batch, targets) -> {name: loss}
         eval:     detect(outputs, batch) -> per image {boxes, scores, labels}
      -> boxes back in the original images' pixels               DetectionTransform.postprocess

This is torchvision's detector contract (``GeneralizedRCNN``, ``RetinaNet``, ``SSD``, ``FCOS``), so
converted models take the same inputs and give the same outputs. ``forward_batch`` maps a tensor
to tensors, which is what export and compile see.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .transform import DetectionTransform, ImageBatch


class Detector(nn.Module):
    """Base class: subclasses set ``self.transform`` and ``self.num_classes`` and implement
    :meth:`forward_batch`, :meth:`loss` and :meth:`detect`."""

    transform: DetectionTransform
    num_classes: int

    def forward(self, images, targets: list[dict] | None = None):
        batch, targets, original_sizes = self.prepare(images, targets)
        outputs = self.forward_batch(batch.tensors)
        if self.training:
            return self.loss(outputs, batch, targets)
        return self.transform.postprocess(self.detect(outputs, batch), batch.image_sizes, original_sizes)

    def prepare(self, images, targets: list[dict] | None):
        """The images as a resized, padded :class:`ImageBatch`, the targets checked (in training) and
        scaled with them, and the images' original sizes (to map detections back)."""
        images = as_image_list(images)
        if self.training:
            if targets is None:
                raise ValueError("a detector in training mode needs targets: model(images, targets)")
            targets = check_targets(targets, len(images), self.num_classes)
            self.check_more_targets(targets, images)
        original_sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
        batch, targets = self.transform(images, targets)
        return batch, targets, original_sizes

    def check_more_targets(self, targets: list[dict], images: list[torch.Tensor]) -> None:
        """What a subclass needs in its targets beyond boxes and labels (Mask R-CNN: masks)."""

    def forward_batch(self, x: torch.Tensor):
        """Head outputs for a normalised, padded batch ``[B, C, H, W]``."""
        raise NotImplementedError

    def loss(self, outputs, batch: ImageBatch, targets: list[dict]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def detect(self, outputs, batch: ImageBatch) -> list[dict[str, torch.Tensor]]:
        """Per image ``{boxes [n, 4] xyxy, scores [n], labels [n]}`` in the resized image's pixels."""
        raise NotImplementedError


def as_image_list(images) -> list[torch.Tensor]:
    """A list of ``[C, H, W]`` float images from a list or a ``[B, C, H, W]`` batch; clear errors otherwise."""
    if isinstance(images, torch.Tensor):
        if images.dim() == 3:
            raise ValueError("images: got one [C, H, W] tensor; pass a list of images or a [B, C, H, W] batch")
        if images.dim() != 4:
            raise ValueError(f"images: expected [B, C, H, W], got shape {tuple(images.shape)}")
        images = list(images.unbind(0))
    if not isinstance(images, (list, tuple)) or not images:
        raise ValueError("images: expected a non-empty list of [C, H, W] tensors or a [B, C, H, W] tensor")
    for i, img in enumerate(images):
        if not isinstance(img, torch.Tensor) or img.dim() != 3:
            raise ValueError(f"images[{i}]: expected a [C, H, W] tensor, got {getattr(img, 'shape', type(img))}")
        if not img.is_floating_point():
            raise ValueError(f"images[{i}]: expected a float image in 0..1, got {img.dtype}")
    return list(images)


def check_targets(targets, num_images: int, num_classes: int) -> list[dict]:
    """Each target is ``{"boxes": [k, 4] xyxy with x2 > x1, y2 > y1, finite; "labels": [k] in 0..C-1}``."""
    if not isinstance(targets, (list, tuple)) or len(targets) != num_images:
        raise ValueError(f"targets: expected a list of {num_images} dicts (one per image), got {type(targets).__name__}"
                         + (f" of {len(targets)}" if isinstance(targets, (list, tuple)) else ""))
    out = []
    for i, t in enumerate(targets):
        if not isinstance(t, dict) or "boxes" not in t or "labels" not in t:
            raise ValueError(f"targets[{i}]: expected a dict with 'boxes' and 'labels'")
        boxes, labels = torch.as_tensor(t["boxes"]), torch.as_tensor(t["labels"])
        if boxes.numel() == 0:
            boxes = boxes.reshape(0, 4)
        if boxes.dim() != 2 or boxes.shape[1] != 4 or labels.shape != boxes.shape[:1]:
            raise ValueError(f"targets[{i}]: boxes must be [k, 4] and labels [k], got {tuple(boxes.shape)} and {tuple(labels.shape)}")
        if not boxes.is_floating_point() or not torch.isfinite(boxes).all():
            raise ValueError(f"targets[{i}]: boxes must be finite floats")
        bad = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
        if bad.any():
            j = int(bad.nonzero()[0])
            raise ValueError(f"targets[{i}]: box {j} {boxes[j].tolist()} has no area (need x2 > x1 and y2 > y1)")
        if labels.dtype != torch.int64 or (labels.numel() and (labels.min() < 0 or labels.max() >= num_classes)):
            raise ValueError(f"targets[{i}]: labels must be int64 in 0..{num_classes - 1}")
        out.append({**t, "boxes": boxes, "labels": labels})
    return out
