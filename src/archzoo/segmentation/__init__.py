"""Semantic segmentation: the shared parts (the :class:`Segmenter` contract, decoders and heads,
losses, tiled inference, CRF post-processing) and the segmenters wired from them. Every
segmenter consumes the backbone contract (:mod:`archzoo.features`), so any zoo backbone that
gives the maps a decoder asks for works with it.

Importing this package registers the segmenters (``archzoo.list_models(task="segmentation")``).
"""

from __future__ import annotations

import importlib
import pkgutil

from .base import Segmenter, build_backbone, upsample_like

__all__ = ["Segmenter", "build_backbone", "upsample_like"]


def _register_segmenters() -> None:
    """Import every module of this package (and its subpackages) so their cards register."""
    for info in pkgutil.walk_packages(__path__, prefix=f"{__name__}."):
        importlib.import_module(info.name)
