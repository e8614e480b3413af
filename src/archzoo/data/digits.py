"""``digits``: scikit-learn's handwritten digits, the dataset that needs no download.

1,797 real 8x8 grey images of the digits 0-9 written by 43 people (the UCI "Optical Recognition
of Handwritten Digits" set, Alpaydin & Kaynak 1998), shipped inside scikit-learn. Their 17 grey
levels (0-16) are scaled to 0-255 and bilinearly upsampled to 32x32, so CIFAR-sized networks
take them unchanged. A fixed stratified 20 % (seed 0, independent of the caller's seed) is the
``"test"`` subset; the rest is ``"train"``.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F

from .dataset import ImageDataset, stratified_split

CLASS_NAMES = [str(d) for d in range(10)]
SIZE = 32
TEST_FRACTION = 0.2
TEST_SEED = 0


@lru_cache(maxsize=4)
def _all(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:  # pragma: no cover - scikit-learn is a dependency
        raise ImportError("the built-in 'digits' dataset needs scikit-learn: pip install scikit-learn") from e
    d = load_digits()
    x = torch.as_tensor(d.images, dtype=torch.float32)[:, None] * (255.0 / 16.0)
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    images = x.round_().clamp_(0, 255).to(torch.uint8)
    return images, torch.as_tensor(d.target, dtype=torch.int64)


def load_digits_dataset(subset: str = "train", size: int | None = None) -> ImageDataset:
    """The ``subset`` (``"train"``, ``"test"`` or ``"all"``) of the digits as uint8 ``[N, 1, size, size]``."""
    images, labels = _all(size or SIZE)
    if subset == "all":
        idx = torch.arange(len(labels))
    elif subset in ("train", "test"):
        train, test = stratified_split(labels, TEST_FRACTION, TEST_SEED)
        idx = train if subset == "train" else test
    else:
        raise ValueError(f"digits has subsets 'train', 'test' and 'all', got {subset!r}")
    return ImageDataset(CLASS_NAMES, labels[idx], images=images[idx])
