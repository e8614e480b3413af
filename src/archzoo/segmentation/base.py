"""The segmenter contract, shared by every model of :mod:`archzoo.segmentation`.

A segmenter maps a normalised image batch ``[B, C, H, W]`` (the card's mean and std, as for a
classifier: the engine normalises) to class logits ``[B, K, H, W]`` at the input's resolution.
In training mode a segmenter with auxiliary heads (FCN's and DeepLab's head on an earlier stage)
returns :class:`~archzoo.models.base.AuxLogits` ``(logits, (aux, ...))``, each at input
resolution; in eval mode only the logits. The engine's
:class:`~archzoo.engine.segmentation.SegmentationTask` trains on ``loss(logits) + aux_weight *
sum(loss(aux))``.

A subclass builds its parts (usually ``self.backbone`` from :func:`build_backbone`, a decoder
and a head) and implements :meth:`Segmenter.forward_dense`, which returns logits at any stride
(or ``(logits, [aux, ...])``); :meth:`Segmenter.forward` brings them to the input's size.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models.base import AuxLogits


def upsample_like(x: torch.Tensor, size: Sequence[int], align_corners: bool = False) -> torch.Tensor:
    """``x`` resized bilinearly to ``size`` (H, W); unchanged when it already has that size."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=align_corners)


def build_backbone(backbone: str, in_chans: int = 3, *, out_indices: Sequence[int] | None = None,
                   out_strides: Sequence[int] | None = None, output_stride: int | None = None,
                   norm_layer: str | None = None, **kwargs) -> nn.Module:
    """A zoo classifier as a feature extractor (:class:`~archzoo.features.FeatureExtractor`):
    maps at ``out_indices`` or ``out_strides``, dilated to ``output_stride`` (8, 16) where the
    family supports it; ``norm_layer`` ``None`` keeps the family's default."""
    from ..builder import create_model

    options = dict(kwargs)
    if norm_layer is not None:
        options["norm_layer"] = norm_layer
    if output_stride is not None:
        options["output_stride"] = output_stride
    return create_model(backbone, features_only=True, out_indices=out_indices, out_strides=out_strides,
                        in_chans=in_chans, **options)


class Segmenter(nn.Module):
    """Base class of the segmenters: ``forward(x) -> logits [B, K, H, W]`` (see the module doc).

    ``align_corners``: how the final upsampling samples (torchvision's and most models: ``False``;
    smp's heads upsample with ``nn.UpsamplingBilinear2d``, which is ``True``).
    """

    num_classes: int
    align_corners: bool = False

    def forward_dense(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, Sequence[torch.Tensor]]:
        """Logits at the network's own output stride, or ``(logits, [aux logits, ...])``."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor | AuxLogits:
        size = x.shape[-2:]
        out = self.forward_dense(x)
        logits, aux = out if isinstance(out, tuple) else (out, ())
        logits = upsample_like(logits, size, self.align_corners)
        if self.training and len(aux):
            return AuxLogits(logits, tuple(upsample_like(a, size, self.align_corners) for a in aux))
        return logits
