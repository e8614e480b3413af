"""Selective search -- Uijlings, van de Sande, Gevers & Smeulders, "Selective Search for Object
Recognition", IJCV 2013: the region proposals of R-CNN (arXiv:1311.2524) and Fast R-CNN
(arXiv:1504.08083).

Objects can be anywhere, at any size; instead of sliding a window over every position and scale,
selective search proposes a few thousand class-agnostic boxes bottom-up. The image is
over-segmented (Felzenszwalb & Huttenlocher's graph segmentation), then the two most similar
neighbouring regions are merged, again and again, until one region is left; similarity adds
colour- and texture-histogram intersection, a small-size bonus (small regions merge first) and
fill (how well the two fit in their joint box). Every region of that hierarchy is a candidate box.
*Diversification* repeats the grouping in several colour spaces, with several similarity
combinations and segmentation scales: "fast" uses 2 colour spaces x 2 similarity sets x 2 scales,
"quality" 5 x 4 x 4 (the paper's settings). Boxes are ranked by a pseudo-random order, the region's
position in its hierarchy times a random number, so that every strategy's large regions come early.

The grouping is OpenCV's (``cv2.ximgproc.segmentation``, from ``opencv-contrib-python-headless``);
what is ours is the handling around it:

* the image is shrunk so that its longer side is at most ``max_side`` (cost grows faster than the
  pixel count: at 500 px "fast" takes ~1-2 s on one core), the boxes are mapped back to the given
  image's pixels as float ``xyxy``, clipped, boxes thinner than ``min_size`` pixels and duplicates
  dropped, the first ``max_boxes`` kept (R-CNN: 2000);
* OpenCV ranks with the C library's ``rand()``: we seed it (``seed``) right before each run, so
  the same image gives the same boxes in the same order;
* :class:`ProposalCache` keeps each image's boxes in memory, keyed by a hash of its pixels and the
  settings, so that training epochs over the same images do not search again;
* :class:`SelectiveSearchProposer` is the proposer part of a two-stage detector
  (:mod:`archzoo.detection.two_stage`): the normalised batch in, boxes in each resized image's pixels
  out, no loss.
"""

from __future__ import annotations

import ctypes
import hashlib
import threading
from collections import OrderedDict
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn

MODES = ("fast", "quality")
_LOCK = threading.Lock()  # OpenCV's ranking draws from the process-wide rand(): one search at a time


def _segmentation():
    """``cv2.ximgproc.segmentation``, or an error that says what to install."""
    try:
        import cv2
    except ImportError as e:
        raise ImportError("selective search needs OpenCV with its contrib modules: "
                          "pip install opencv-contrib-python-headless") from e
    if not hasattr(cv2, "ximgproc"):
        raise ImportError(f"selective search needs cv2.ximgproc, which this OpenCV ({cv2.__version__}) lacks: "
                          "pip install opencv-contrib-python-headless (the contrib build; keep its version equal to "
                          "any opencv-python-headless installed beside it)")
    return cv2, cv2.ximgproc.segmentation


def _c_srand():
    """The C library's ``srand`` (the ``rand()`` OpenCV's ranking draws from), or ``None``."""
    for load in (lambda: ctypes.CDLL(None), lambda: ctypes.cdll.ucrtbase, lambda: ctypes.cdll.msvcrt):
        try:
            return load().srand
        except (OSError, AttributeError, TypeError):
            continue
    return None


_SRAND = _c_srand()


def to_rgb_uint8(image) -> np.ndarray:
    """An ``[H, W, 3]`` uint8 RGB array from a ``[C, H, W]`` tensor (float in 0..1 or uint8; C = 1 or
    3) or an ``[H, W, 3]`` uint8 array."""
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image: expected an [H, W, 3] uint8 RGB array, got {image.dtype} {image.shape}")
        return np.ascontiguousarray(image)
    if not isinstance(image, torch.Tensor) or image.dim() != 3 or image.shape[0] not in (1, 3):
        raise ValueError("image: expected a [3, H, W] (or [1, H, W]) tensor, got "
                         f"{tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__}")
    image = image.detach().cpu()
    if image.is_floating_point():
        if not torch.isfinite(image).all():
            raise ValueError("image: has non-finite values")
        image = (image.clamp(0, 1) * 255).round().to(torch.uint8)
    elif image.dtype != torch.uint8:
        raise ValueError(f"image: expected a float tensor in 0..1 or uint8, got {image.dtype}")
    return np.ascontiguousarray(image.expand(3, -1, -1).permute(1, 2, 0).numpy())


class ProposalCache:
    """Proposals by image content: an in-memory LRU map from a hash of the pixels (and the search
    settings) to the boxes; ``hits`` and ``misses`` count lookups."""

    def __init__(self, max_images: int = 4096):
        if max_images < 1:
            raise ValueError(f"max_images must be >= 1, got {max_images}")
        self.max_images = int(max_images)
        self._boxes: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.hits = self.misses = 0

    @staticmethod
    def key(pixels: np.ndarray, settings: tuple) -> str:
        digest = hashlib.blake2b(pixels.tobytes(), digest_size=16)
        digest.update(repr((pixels.shape, settings)).encode())
        return digest.hexdigest()

    def get(self, key: str) -> torch.Tensor | None:
        boxes = self._boxes.get(key)
        if boxes is None:
            self.misses += 1
            return None
        self.hits += 1
        self._boxes.move_to_end(key)
        return boxes.clone()

    def put(self, key: str, boxes: torch.Tensor) -> None:
        self._boxes[key] = boxes.clone()
        self._boxes.move_to_end(key)
        while len(self._boxes) > self.max_images:
            self._boxes.popitem(last=False)

    def clear(self) -> None:
        self._boxes.clear()
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._boxes)

    def __repr__(self) -> str:
        return f"ProposalCache({len(self)}/{self.max_images} images, {self.hits} hits, {self.misses} misses)"


def _check(mode: str, max_side: int, max_boxes: int, min_size: float) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if int(max_side) != max_side or max_side < 16:
        raise ValueError(f"max_side must be an integer >= 16 (pixels), got {max_side!r}")
    if int(max_boxes) != max_boxes or max_boxes < 1:
        raise ValueError(f"max_boxes must be an integer >= 1, got {max_boxes!r}")
    if not min_size >= 0:
        raise ValueError(f"min_size must be >= 0 (pixels), got {min_size!r}")


def selective_search(image, *, mode: str = "fast", max_side: int = 500, max_boxes: int = 2000,
                     min_size: float = 4.0, seed: int = 0, cache: ProposalCache | None = None) -> torch.Tensor:
    """Selective-search boxes ``[n, 4]`` (float32 ``xyxy``, the given image's pixels, best-ranked
    first, ``1 <= n <= max_boxes``) for one RGB ``image`` (see :func:`to_rgb_uint8`).

    ``mode``: ``"fast"`` or ``"quality"`` (the paper's two diversification settings). The search
    runs on the image shrunk to a longer side of at most ``max_side``. Boxes thinner than
    ``min_size`` pixels (either side) and duplicates are dropped; where nothing is left the whole
    image is the one proposal. ``seed`` fixes OpenCV's pseudo-random ranking. ``cache``: look the
    image up there first, and store what was computed.
    """
    _check(mode, max_side, max_boxes, min_size)
    pixels = to_rgb_uint8(image)
    settings = (mode, int(max_side), int(max_boxes), float(min_size), int(seed))
    key = None
    if cache is not None:
        key = cache.key(pixels, settings)
        found = cache.get(key)
        if found is not None:
            return found
    boxes = _search(pixels, *settings)
    if cache is not None:
        cache.put(key, boxes)
    return boxes


def _search(pixels: np.ndarray, mode: str, max_side: int, max_boxes: int, min_size: float, seed: int) -> torch.Tensor:
    cv2, segmentation = _segmentation()
    h, w = pixels.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    small = pixels
    if scale < 1.0:
        small = cv2.resize(pixels, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    sh, sw = small.shape[:2]
    search = segmentation.createSelectiveSearchSegmentation()
    search.setBaseImage(np.ascontiguousarray(small[:, :, ::-1]))  # OpenCV's colour conversions expect BGR
    (search.switchToSelectiveSearchFast if mode == "fast" else search.switchToSelectiveSearchQuality)()
    with _LOCK:
        if _SRAND is not None:
            _SRAND(int(seed) & 0xFFFFFFFF)
        rects = search.process()  # [n, 4] (x, y, w, h), ranked
    rects = np.asarray(rects, dtype=np.float64).reshape(-1, 4)
    boxes = np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:]], axis=1) * np.array([w / sw, h / sh] * 2)
    boxes = boxes.clip(0, [w, h, w, h])
    wide = (boxes[:, 2] - boxes[:, 0] >= max(min_size, 1e-3)) & (boxes[:, 3] - boxes[:, 1] >= max(min_size, 1e-3))
    boxes = boxes[wide]
    _, first = np.unique(boxes, axis=0, return_index=True)
    boxes = boxes[np.sort(first)][:max_boxes]  # duplicates out, the ranking kept
    if len(boxes) == 0:
        boxes = np.array([[0.0, 0.0, w, h]])
    return torch.from_numpy(boxes).float()


class SelectiveSearchProposer(nn.Module):
    """The proposer of R-CNN and Fast R-CNN: selective search on each image of the batch, nothing
    learnt (see :mod:`archzoo.detection.two_stage` for the interface).

    ``forward(batch, maps, targets)`` un-normalises each image (``x * std + mean``, cut to its size
    before padding), searches it (through ``self.cache``) and returns ``(proposals, {})``, one
    ``[n, 4]`` float tensor per image in that resized image's pixels. ``mean``/``std``: the
    detector's normalisation; the other arguments are :func:`selective_search`'s.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], mode: str = "fast", max_side: int = 500,
                 max_boxes: int = 2000, min_size: float = 4.0, seed: int = 0, cache_size: int = 4096):
        super().__init__()
        _check(mode, max_side, max_boxes, min_size)
        if len(mean) != len(std) or len(mean) not in (1, 3):
            raise ValueError(f"selective search needs 1 or 3 image channels; got mean {list(mean)} and std {list(std)}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(-1, 1, 1), persistent=False)
        self.mode, self.max_side, self.max_boxes, self.min_size, self.seed = mode, int(max_side), int(max_boxes), min_size, seed
        self.cache = ProposalCache(cache_size)

    def forward(self, batch, maps=None, targets=None) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
        proposals = []
        for i, (h, w) in enumerate(batch.image_sizes):
            image = batch.tensors[i, :, :h, :w].detach().float() * self.std + self.mean
            boxes = selective_search(image, mode=self.mode, max_side=self.max_side, max_boxes=self.max_boxes,
                                     min_size=self.min_size, seed=self.seed, cache=self.cache)
            proposals.append(boxes.to(batch.tensors.device, batch.tensors.dtype))
        return proposals, {}

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, max_side={self.max_side}, max_boxes={self.max_boxes}, min_size={self.min_size}"


__all__ = ["selective_search", "SelectiveSearchProposer", "ProposalCache", "to_rgb_uint8", "MODES"]
