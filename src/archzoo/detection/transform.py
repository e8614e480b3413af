"""The first and last step of every detector: images in, detections back in the images' pixels.

``DetectionTransform`` normalises each image, resizes it (shorter side to ``min_size`` with the
longer side at most ``max_size``, or to a ``fixed_size``), pads the batch to a multiple of
``size_divisible``, and remembers every image's size so :meth:`DetectionTransform.postprocess`
can map boxes back. It follows ``torchvision.models.detection.transform.GeneralizedRCNNTransform``
number for number (bilinear resize with the same scale factor), so detectors converted from
torchvision see the same pixels.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F


class ImageBatch(NamedTuple):
    """A padded batch ``tensors [B, C, H, W]`` and each image's size before padding ``(h, w)``."""

    tensors: torch.Tensor
    image_sizes: list[tuple[int, int]]


def resize_boxes(boxes: torch.Tensor, old_size: Sequence[int], new_size: Sequence[int]) -> torch.Tensor:
    """Scale ``xyxy`` boxes from an image of ``old_size`` ``(h, w)`` to one of ``new_size``."""
    ratio_h = torch.tensor(new_size[0], dtype=torch.float32, device=boxes.device) / torch.tensor(
        old_size[0], dtype=torch.float32, device=boxes.device)
    ratio_w = torch.tensor(new_size[1], dtype=torch.float32, device=boxes.device) / torch.tensor(
        old_size[1], dtype=torch.float32, device=boxes.device)
    x1, y1, x2, y2 = boxes.unbind(1)
    return torch.stack((x1 * ratio_w, y1 * ratio_h, x2 * ratio_w, y2 * ratio_h), dim=1)


class DetectionTransform(nn.Module):
    """Normalise, resize and batch images; map detections back (see the module doc).

    Args:
        min_size: the shorter side after resizing; a tuple picks one at random per image in
            training (multi-scale training) and uses the last in eval.
        max_size: the longer side's limit.
        mean, std: per-channel normalisation of images given in 0..1.
        size_divisible: the padded batch's height and width are multiples of this (the
            backbone's total stride), so every feature level lines up with the image.
        fixed_size: ``(width, height)`` to resize every image to, ignoring ``min_size``/``max_size``
            (SSD's 300x300).
    """

    def __init__(self, min_size: int | Sequence[int], max_size: int, mean: Sequence[float], std: Sequence[float],
                 size_divisible: int = 32, fixed_size: tuple[int, int] | None = None):
        super().__init__()
        self.min_size = tuple(min_size) if isinstance(min_size, (list, tuple)) else (int(min_size),)
        self.max_size = int(max_size)
        self.mean, self.std = list(mean), list(std)
        self.size_divisible = int(size_divisible)
        self.fixed_size = tuple(fixed_size) if fixed_size is not None else None

    def forward(self, images: list[torch.Tensor], targets: list[dict] | None = None) -> tuple[ImageBatch, list[dict] | None]:
        images = list(images)
        targets = [dict(t) for t in targets] if targets is not None else None
        for i, image in enumerate(images):
            image = self.normalize(image)
            old = image.shape[-2:]
            image = self.resize(image)
            if targets is not None:
                targets[i]["boxes"] = resize_boxes(targets[i]["boxes"], old, image.shape[-2:])
            images[i] = image
        sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
        return ImageBatch(self.pad(images), sizes), targets

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        mean = torch.as_tensor(self.mean, dtype=image.dtype, device=image.device)
        std = torch.as_tensor(self.std, dtype=image.dtype, device=image.device)
        return (image - mean[:, None, None]) / std[:, None, None]

    def resize(self, image: torch.Tensor) -> torch.Tensor:
        if self.fixed_size is not None:
            size, scale = [self.fixed_size[1], self.fixed_size[0]], None
        else:
            shorter = self.min_size[-1]
            if self.training and len(self.min_size) > 1:
                shorter = self.min_size[int(torch.empty(1).uniform_(0.0, float(len(self.min_size))).item())]
            h, w = image.shape[-2:]
            size, scale = None, min(shorter / min(h, w), self.max_size / max(h, w))
        return F.interpolate(image[None], size=size, scale_factor=scale, mode="bilinear",
                             recompute_scale_factor=scale is not None or None, align_corners=False)[0]

    def pad(self, images: list[torch.Tensor]) -> torch.Tensor:
        """Zero-pad to one ``[B, C, H, W]`` whose H and W are multiples of ``size_divisible``."""
        c = max(img.shape[0] for img in images)
        h, w = (int(math.ceil(max(img.shape[d] for img in images) / self.size_divisible) * self.size_divisible)
                for d in (1, 2))
        batch = images[0].new_zeros((len(images), c, h, w))
        for img, slot in zip(images, batch):
            slot[: img.shape[0], : img.shape[1], : img.shape[2]].copy_(img)
        return batch

    def postprocess(self, detections: list[dict], image_sizes: list[tuple[int, int]],
                    original_sizes: list[tuple[int, int]]) -> list[dict]:
        """Boxes from the resized images' pixels back to the original images' pixels."""
        for det, size, original in zip(detections, image_sizes, original_sizes):
            det["boxes"] = resize_boxes(det["boxes"], size, original)
        return detections

    def extra_repr(self) -> str:
        size = f"fixed_size={self.fixed_size}" if self.fixed_size else f"min_size={self.min_size}, max_size={self.max_size}"
        return f"{size}, mean={self.mean}, std={self.std}, size_divisible={self.size_divisible}"
