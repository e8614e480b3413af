"""Object detection: the shared parts (transform, box coders, anchors, matchers, necks, heads,
losses, decoding) and the detectors wired from them. Every detector consumes the backbone
contract (:mod:`archzoo.features`), so any zoo backbone works with any detector.

Importing this package registers the detectors (``archzoo.list_models(task="detection")``).
"""

from __future__ import annotations

import importlib
import pkgutil

from .base import Detector, as_image_list, check_targets
from .boxes import BoxCoder, DistanceBoxCoder
from .matchers import BACKGROUND, IGNORE, IoUMatcher
from .postprocess import nms_detections, top_candidates
from .transform import DetectionTransform, ImageBatch

__all__ = ["Detector", "DetectionTransform", "ImageBatch", "BoxCoder", "DistanceBoxCoder", "IoUMatcher",
           "BACKGROUND", "IGNORE", "top_candidates", "nms_detections", "as_image_list", "check_targets"]


def _register_detectors() -> None:
    """Import every module of this package (and its subpackages) so their cards register."""
    for info in pkgutil.walk_packages(__path__, prefix=f"{__name__}."):
        importlib.import_module(info.name)
