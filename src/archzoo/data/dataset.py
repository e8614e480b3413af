"""The dataset objects every loader returns: :class:`ImageDataset` and :class:`DatasetSplits`.

An :class:`ImageDataset` yields ``(uint8 tensor [C, H, W], int label)``. It holds either the
whole set decoded in memory (``images``: uint8 ``[N, C, H, W]``) or a list of files decoded
one item at a time (``images`` is ``None``); ``labels`` (int64 ``[N]``) is always there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch.utils.data import Dataset


class ImageDataset(Dataset):
    """Images with integer labels and the class names they index.

    In memory: ``ImageDataset(class_names, labels, images=uint8 [N, C, H, W])``.
    Lazy: ``ImageDataset(class_names, labels, files=[...], decode=fn)``, where ``decode(path)``
    returns a uint8 ``[C, H, W]`` tensor. ``transform``, when set, is applied to each image
    returned by ``ds[i]`` (the engine usually applies its own instead).
    """

    def __init__(
        self,
        class_names: Sequence[str],
        labels: torch.Tensor | Sequence[int],
        images: torch.Tensor | None = None,
        files: Sequence[str] | None = None,
        decode: Callable[[str], torch.Tensor] | None = None,
        transform: Callable | None = None,
    ) -> None:
        self.class_names = list(class_names)
        self.labels = torch.as_tensor(labels, dtype=torch.int64).reshape(-1)
        if (images is None) == (files is None):
            raise ValueError("give either images (decoded in memory) or files with a decode function")
        if images is not None:
            if images.dtype != torch.uint8 or images.ndim != 4:
                raise ValueError(f"images must be uint8 [N, C, H, W], got {images.dtype} {tuple(images.shape)}")
            if len(images) != len(self.labels):
                raise ValueError(f"{len(images)} images but {len(self.labels)} labels")
        if files is not None:
            if decode is None:
                raise ValueError("lazy datasets need a decode function")
            files = list(files)
            if len(files) != len(self.labels):
                raise ValueError(f"{len(files)} files but {len(self.labels)} labels")
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= len(self.class_names)):
            raise ValueError(f"labels must lie in [0, {len(self.class_names)}), got {self.labels.min()}..{self.labels.max()}")
        self.images = images
        self.files = files
        self.decode = decode
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image = self.images[i] if self.images is not None else self.decode(self.files[i])
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[i])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def in_memory(self) -> bool:
        return self.images is not None

    @property
    def channels(self) -> int:
        """Channel count of the images (a lazy dataset decodes its first item to find out)."""
        if self.images is not None:
            return self.images.shape[1]
        return getattr(self.decode, "channels", None) or self.decode(self.files[0]).shape[0]

    def class_counts(self) -> torch.Tensor:
        return torch.bincount(self.labels, minlength=self.num_classes)

    def subset(self, indices: torch.Tensor | Sequence[int]) -> ImageDataset:
        """A new dataset of the items at ``indices`` (images are copied, not views of the parent)."""
        idx = torch.as_tensor(indices, dtype=torch.int64)
        if self.images is not None:
            return ImageDataset(self.class_names, self.labels[idx], images=self.images[idx], transform=self.transform)
        return ImageDataset(
            self.class_names, self.labels[idx], files=[self.files[i] for i in idx.tolist()],
            decode=self.decode, transform=self.transform,
        )

    def __repr__(self) -> str:
        where = f"images={tuple(self.images.shape)}" if self.images is not None else f"files={len(self.files)} (lazy)"
        return f"ImageDataset(n={len(self)}, classes={self.num_classes}, {where})"


@dataclass
class DatasetSplits:
    """What :func:`archzoo.data.load_dataset` returns. ``bad_files`` lists the ``(path, reason)``
    pairs skipped under ``skip_bad=True``."""

    train: ImageDataset
    val: ImageDataset | None
    class_names: list[str]
    bad_files: list[tuple[str, str]] = field(default_factory=list)


def stratified_split(labels: torch.Tensor, val_split: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices ``(train, val)``: ``round(val_split * n_c)`` items of every class ``c`` go to val,
    chosen by a permutation seeded with ``seed`` (at least one per class of two or more items
    when ``val_split > 0``). Both index lists are sorted, so item order follows the source."""
    if not 0.0 <= val_split < 1.0:
        raise ValueError(f"val_split must be in [0, 1), got {val_split}")
    g = torch.Generator().manual_seed(seed)
    train, val = [], []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        k = round(val_split * len(idx))
        if val_split > 0 and k == 0 and len(idx) >= 2:
            k = 1
        val.append(idx[:k])
        train.append(idx[k:])
    cat = lambda parts: torch.sort(torch.cat(parts)).values if parts else torch.empty(0, dtype=torch.int64)
    return cat(train), cat(val)


def split_dataset(ds: ImageDataset, val_split: float, seed: int) -> tuple[ImageDataset, ImageDataset | None]:
    """``(train, val)`` by :func:`stratified_split`; ``val`` is ``None`` when ``val_split`` is 0."""
    if val_split == 0:
        return ds, None
    tr, va = stratified_split(ds.labels, val_split, seed)
    return ds.subset(tr), ds.subset(va)
