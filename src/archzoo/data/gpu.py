"""Batched on-device augmentation of uint8 image batches (``ds.images[idx].to(device)``).

With the whole dataset in memory as one uint8 tensor, a training step needs no DataLoader
workers: index a batch, move it to the device and let :class:`BatchAugment` pad, crop, flip and
normalise all of it with a handful of tensor operations (the per-sample transforms of
:mod:`archzoo.data.transforms`, vectorised). Training: resize to ``s x s`` if needed, zero-pad
by ``pad``, a random ``s x s`` crop and a random horizontal flip per image (He et al. 2015,
arXiv:1512.03385, section 4.2) — or, with ``scale=(lo, hi)``, a random-resized crop per image
(Szegedy et al. 2014, arXiv:1409.4842) through one ``grid_sample``. Evaluation: resize only.

A segmentation batch passes its masks along (``aug(images, masks)``): they get the same resize,
crop and flip, sampled nearest, and the pixels a crop pads are :data:`~archzoo.data.IGNORE_INDEX`.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .dataset import IGNORE_INDEX

_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, as PIL and torchvision convert RGB to grey


class BatchAugment(nn.Module):
    """uint8 ``[B, C, H, W]`` (on any device) -> normalised float32 ``[B, C', s, s]`` there;
    with ``masks`` (``[B, H, W]`` class indices), ``(images, masks [B, s, s])``.

    ``in_chans`` (default ``len(mean)``) replicates grey to RGB or converts RGB to grey.
    ``generator`` (a ``torch.Generator`` on the batch's device) makes the draws reproducible.
    """

    def __init__(
        self,
        input_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        pad: int = 4,
        flip: bool = True,
        train: bool = True,
        *,
        in_chans: int | None = None,
        scale: tuple[float, float] | None = None,
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        generator: torch.Generator | None = None,
        erase: float = 0.0,
    ) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise ValueError(f"mean and std differ in length: {len(mean)} vs {len(std)}")
        self.size = int(input_size)
        self.pad, self.flip = int(pad), bool(flip)
        self.train(train)  # ``aug.train()`` / ``aug.eval()`` switch modes like any module
        self.in_chans = in_chans or len(mean)
        self.scale, self.ratio, self.generator = scale, ratio, generator
        if not 0.0 <= erase <= 1.0:
            raise ValueError(f"erase is a probability in [0, 1], got {erase}")
        self.erase = float(erase)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1) * 255, persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1) * 255, persistent=False)

    def _rand(self, n: int, device) -> torch.Tensor:
        return torch.rand(n, device=device, generator=self.generator)

    def _log_uniform(self, lo: float, hi: float, n: int, device) -> torch.Tensor:
        return (math.log(lo) + (math.log(hi) - math.log(lo)) * self._rand(n, device)).exp()

    def _match_channels(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        if c == self.in_chans:
            return x
        if c == 1 and self.in_chans == 3:
            return x.expand(-1, 3, -1, -1)
        if c == 3 and self.in_chans == 1:
            w = torch.tensor(_LUMA, device=x.device, dtype=torch.float32).view(1, 3, 1, 1)
            return (x.float() * w).sum(1, keepdim=True).round_().to(x.dtype)
        raise ValueError(f"cannot convert {c}-channel images to {self.in_chans} channels")

    def _resize(self, x: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        if x.shape[-2:] == (self.size, self.size):
            return x, mask
        if mask is not None:  # nearest, as torchvision resizes a Mask
            mask = F.interpolate(mask[:, None].float(), size=(self.size, self.size), mode="nearest")[:, 0].to(mask.dtype)
        return F.interpolate(x.float(), size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True), mask

    def _pad_crop_flip(self, x: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One gather does the crop and the flip: per image, rows ``oy..oy+s`` and columns
        ``ox..ox+s`` of the padded image, the columns reversed for flipped images."""
        b, c, s, p = x.shape[0], x.shape[1], self.size, self.pad
        if p:
            x = F.pad(x, (p, p, p, p))
            mask = F.pad(mask, (p, p, p, p), value=IGNORE_INDEX) if mask is not None else None
        w = x.shape[-1]
        oy = (self._rand(b, x.device) * (2 * p + 1)).long().clamp_(max=2 * p)
        ox = (self._rand(b, x.device) * (2 * p + 1)).long().clamp_(max=2 * p)
        ar = torch.arange(s, device=x.device)
        rows = oy[:, None] + ar
        cols = ox[:, None] + ar
        if self.flip:
            flipped = self._rand(b, x.device) < 0.5
            cols = torch.where(flipped[:, None], cols.flip(1), cols)
        index = (rows[:, :, None] * w + cols[:, None, :]).view(b, 1, s * s)
        if mask is not None:
            mask = torch.gather(mask.reshape(b, 1, -1), 2, index).view(b, s, s)
        return torch.gather(x.reshape(b, c, -1), 2, index.expand(b, c, s * s)).view(b, c, s, s), mask

    def _resized_crop_flip(self, x: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Random-resized crop as an affine sampling grid: per image a box of area fraction
        ``U(scale)`` and log-uniform aspect ``ratio``, placed uniformly, mirrored for flips."""
        b, dev = x.shape[0], x.device
        lo, hi = self.scale
        area = lo + (hi - lo) * self._rand(b, dev)
        aspect = self._log_uniform(*self.ratio, b, dev)
        h, w = x.shape[-2:]
        # box width/height as fractions of the image side, aspect measured in pixels
        bw = (area * aspect * h / w).sqrt().clamp(max=1.0)
        bh = (area / aspect * w / h).sqrt().clamp(max=1.0)
        cx = (1 - bw) * (2 * self._rand(b, dev) - 1)
        cy = (1 - bh) * (2 * self._rand(b, dev) - 1)
        sx = bw * torch.where(self._rand(b, dev) < 0.5, -1.0, 1.0) if self.flip else bw
        theta = torch.zeros(b, 2, 3, device=dev)
        theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = sx, cx, bh, cy
        grid = F.affine_grid(theta, [b, x.shape[1], self.size, self.size], align_corners=False)
        if mask is not None:
            mask = F.grid_sample(mask[:, None].float(), grid, mode="nearest", padding_mode="border",
                                 align_corners=False)[:, 0].to(mask.dtype)
        return F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="border", align_corners=False), mask

    def _random_erase(self, x: torch.Tensor) -> torch.Tensor:
        """Random erasing (Zhong et al. 2017, arXiv:1708.04896), on normalised images: with
        probability ``erase`` per image, a box of area fraction U(0.02, 1/3) and log-uniform aspect
        in (0.3, 3.3), placed uniformly, is filled with standard-normal noise."""
        b, _, h, w = x.shape
        dev = x.device
        area = (0.02 + (1 / 3 - 0.02) * self._rand(b, dev)) * h * w
        aspect = self._log_uniform(0.3, 3.3, b, dev)
        bh = (area * aspect).sqrt().round().clamp(1, h)
        bw = (area / aspect).sqrt().round().clamp(1, w)
        top = (self._rand(b, dev) * (h - bh + 1)).floor()
        left = (self._rand(b, dev) * (w - bw + 1)).floor()
        on = self._rand(b, dev) < self.erase
        rows = torch.arange(h, device=dev).view(1, h, 1)
        cols = torch.arange(w, device=dev).view(1, 1, w)
        box = ((rows >= top.view(b, 1, 1)) & (rows < (top + bh).view(b, 1, 1))
               & (cols >= left.view(b, 1, 1)) & (cols < (left + bw).view(b, 1, 1)) & on.view(b, 1, 1))
        noise = torch.randn(x.shape, device=dev, generator=self.generator)
        return torch.where(box.unsqueeze(1), noise, x)

    def forward(self, x: torch.Tensor, masks: torch.Tensor | None = None):
        if x.ndim != 4:
            raise ValueError(f"BatchAugment takes [B, C, H, W] batches, got shape {tuple(x.shape)}")
        if masks is not None and masks.shape != (x.shape[0], *x.shape[2:]):
            raise ValueError(f"masks {tuple(masks.shape)} do not match images {tuple(x.shape)}")
        x = self._match_channels(x)
        if self.training and self.scale is not None:
            x, masks = self._resized_crop_flip(x, masks)
        else:
            x, masks = self._resize(x, masks)
            if self.training:
                x, masks = self._pad_crop_flip(x, masks)
        # (x / 255 - mean) / std as one multiply-add: buffers hold 255 * mean and 255 * std
        scale, shift = (1 / self.std).to(x.device), (-self.mean / self.std).to(x.device)
        x = torch.addcmul(shift, x.float(), scale)
        if self.training and self.erase > 0:
            x = self._random_erase(x)
        return x if masks is None else (x, masks)

    def extra_repr(self) -> str:
        mode = f"scale={self.scale}" if self.scale else f"pad={self.pad}"
        return (f"size={self.size}, {mode}, flip={self.flip}, erase={self.erase}, train={self.training}, "
                f"in_chans={self.in_chans}")
