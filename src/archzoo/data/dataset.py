"""The dataset objects every loader returns: :class:`ImageDataset` and :class:`DatasetSplits`.

One interface for every task: ``ds[i]`` is ``(uint8 image [C, H, W], target)``, the target a
dict of tensors whose keys depend on ``ds.task``:

============== ===================================================================================
classification ``label`` int64 ``[]``
detection      ``boxes`` float32 ``[k, 4]`` ``(x1, y1, x2, y2)`` in pixels, ``labels`` int64 ``[k]``
segmentation   ``mask`` int64 ``[H, W]``: the class of each pixel, :data:`IGNORE_INDEX` (255) where
               a pixel is not scored (padding added by a crop, unlabelled borders)
============== ===================================================================================

Labels index ``class_names``; a segmentation set names its background class (usually class 0).
A dataset holds either the whole set decoded in memory (``images``: uint8 ``[N, C, H, W]``) or a
list of files decoded one item at a time (``images`` is ``None``). Its targets are tensors in
memory with one row per item, so a subset, a split or a cache keeps them: ``labels`` (int64
``[N]``) for classification, ``targets`` for the rest: detection ``boxes [N, K, 4]`` and
``labels [N, K]`` padded with label -1 (``ds[i]`` drops the padding), segmentation ``mask``
uint8 ``[N, H, W]`` (so class indices stay below 255). Further per-item tensors in ``targets``
(e.g. the object box of a one-object classification image) travel along and appear in ``ds[i]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch.utils.data import Dataset

TASKS = ("classification", "detection", "segmentation", "captioning")
IGNORE_INDEX = 255  # a segmentation mask's "not scored" value; the loss and the metrics skip it


class ImageDataset(Dataset):
    """Images with the targets of one ``task`` and the class names they index.

    Classification in memory: ``ImageDataset(class_names, labels, images=uint8 [N, C, H, W])``;
    lazy: ``ImageDataset(class_names, labels, files=[...], decode=fn)``, where ``decode(path)``
    returns a uint8 ``[C, H, W]`` tensor. Detection and segmentation:
    ``ImageDataset(class_names, images=..., task="segmentation", targets={"mask": uint8 [N, H, W]})``
    (see the module doc for the keys). ``transform``, when set, is applied by ``ds[i]`` (the
    engine applies its own instead): to the image alone for classification, as
    ``transform(image, target) -> (image, target)`` otherwise, so boxes and masks move with it.
    """

    def __init__(
        self,
        class_names: Sequence[str],
        labels: torch.Tensor | Sequence[int] | None = None,
        images: torch.Tensor | None = None,
        files: Sequence[str] | None = None,
        decode: Callable[[str], torch.Tensor] | None = None,
        transform: Callable | None = None,
        *,
        task: str = "classification",
        targets: dict[str, torch.Tensor] | None = None,
    ) -> None:
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        self.task = task
        self.class_names = list(class_names)
        if (images is None) == (files is None):
            raise ValueError("give either images (decoded in memory) or files with a decode function")
        if files is not None and decode is None:
            raise ValueError("lazy datasets need a decode function")
        if images is not None and (images.dtype != torch.uint8 or images.ndim != 4):
            raise ValueError(f"images must be uint8 [N, C, H, W], got {images.dtype} {tuple(images.shape)}")
        self.images = images
        self.files = list(files) if files is not None else None
        self.decode = decode
        self.transform = transform
        n = len(images) if images is not None else len(self.files)
        self.labels = None
        if task == "classification":
            if labels is None:
                raise ValueError("a classification dataset needs labels")
            self.labels = torch.as_tensor(labels, dtype=torch.int64).reshape(-1)
            _check_range(self.labels, len(self.class_names), "labels")
        elif labels is not None:
            raise ValueError(f"a {task} dataset keeps its labels in targets, not in labels")
        self.targets = dict(targets or {})
        for name, t in {"labels": self.labels, **self.targets}.items():
            if t is not None and len(t) != n:
                raise ValueError(f"{n} images but {len(t)} rows of {name}")
        self._check_targets()

    def _check_targets(self) -> None:
        t, k = self.targets, len(self.class_names)
        if self.task == "detection":
            if "boxes" not in t or "labels" not in t:
                raise ValueError("a detection dataset needs targets 'boxes' [N, K, 4] and 'labels' [N, K]")
            if t["boxes"].shape[:2] != t["labels"].shape or t["boxes"].shape[-1] != 4:
                raise ValueError(f"boxes {tuple(t['boxes'].shape)} do not match labels {tuple(t['labels'].shape)}")
            t["labels"] = t["labels"].to(torch.int64)
            t["boxes"] = t["boxes"].to(torch.float32)
            _check_range(t["labels"][t["labels"] >= 0], k, "box labels")
        elif self.task == "segmentation":
            mask = t.get("mask")
            if mask is None or mask.dtype != torch.uint8 or mask.ndim != 3:
                raise ValueError("a segmentation dataset needs targets 'mask': uint8 [N, H, W] class indices")
            if self.images is not None and mask.shape[1:] != self.images.shape[2:]:
                raise ValueError(f"masks {tuple(mask.shape[1:])} and images {tuple(self.images.shape[2:])} differ in size")
            if k > IGNORE_INDEX:
                raise ValueError(f"a segmentation dataset has at most {IGNORE_INDEX} classes, got {k}")
            _check_range(mask[mask != IGNORE_INDEX], k, "mask values")
        elif self.task == "captioning":  # archzoo.data.captions: token ids into class_names (the vocabulary)
            caps = t.get("captions")
            if caps is None or caps.dtype != torch.int64 or caps.ndim != 3:
                raise ValueError("a captioning dataset needs targets 'captions': int64 [N, R, T] token ids")
            _check_range(caps.flatten(), k, "caption tokens")

    def __len__(self) -> int:
        return len(self.images) if self.images is not None else len(self.files)

    def target(self, i: int) -> dict[str, torch.Tensor]:
        """The target of item ``i`` (see the module doc), with any further per-item tensors."""
        out = {k: v[i] for k, v in self.targets.items()}
        if self.task == "classification":
            out["label"] = self.labels[i]
        elif self.task == "detection":
            keep = out["labels"] >= 0
            per_object = self.targets["labels"].shape
            out = {k: v[keep] if self.targets[k].shape[:2] == per_object else v for k, v in out.items()}
        elif self.task == "segmentation":
            out["mask"] = out["mask"].long()
        return out

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        image = self.images[i] if self.images is not None else self.decode(self.files[i])
        target = self.target(i)
        if self.transform is not None:
            if self.task == "classification":
                image = self.transform(image)
            else:
                image, target = self.transform(image, target)
        return image, target

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
        """Items per class (classification), objects per class (detection), pixels per class (segmentation)."""
        if self.task == "classification":
            values = self.labels
        elif self.task == "detection":
            values = self.targets["labels"][self.targets["labels"] >= 0]
        elif self.task == "captioning":  # word occurrences
            values = self.targets["captions"].flatten()
        else:
            mask = self.targets["mask"]
            values = mask[mask != IGNORE_INDEX].long()
        return torch.bincount(values, minlength=self.num_classes)

    def _source(self, idx=None) -> dict:
        """The image arguments of a dataset holding the items ``idx`` (all: ``None``) of this one."""
        if idx is None:
            return dict(images=self.images) if self.images is not None else dict(files=self.files, decode=self.decode)
        if self.images is not None:
            return dict(images=self.images[idx])
        return dict(files=[self.files[i] for i in idx.tolist()], decode=self.decode)

    def _like(self, class_names, labels, targets, idx=None) -> ImageDataset:
        source = self._source(idx)
        return ImageDataset(class_names, labels, **source, transform=self.transform, task=self.task, targets=targets)

    def subset(self, indices: torch.Tensor | Sequence[int]) -> ImageDataset:
        """A new dataset of the items at ``indices``, targets included (images are copied, not
        views of the parent)."""
        idx = torch.as_tensor(indices, dtype=torch.int64)
        labels = self.labels[idx] if self.labels is not None else None
        return self._like(self.class_names, labels, {k: v[idx] for k, v in self.targets.items()}, idx)

    def remap_classes(self, class_names: Sequence[str], lut: torch.Tensor) -> ImageDataset:
        """The same items with class ``c`` renamed to ``class_names[lut[c]]``: labels, box labels
        or mask values are re-indexed (padding and :data:`IGNORE_INDEX` stay)."""
        lut = torch.as_tensor(lut, dtype=torch.int64)
        targets = dict(self.targets)
        if self.task == "detection":
            lab = targets["labels"]
            targets["labels"] = torch.where(lab >= 0, lut[lab.clamp(min=0)], lab)
        elif self.task == "segmentation":
            full = torch.full((256,), IGNORE_INDEX, dtype=torch.int64)
            full[: len(lut)] = lut
            targets["mask"] = full[targets["mask"].long()].to(torch.uint8)
        elif self.task == "captioning":
            targets["captions"] = lut[targets["captions"]]
        labels = lut[self.labels] if self.labels is not None else None
        return self._like(class_names, labels, targets)

    def __repr__(self) -> str:
        where = f"images={tuple(self.images.shape)}" if self.images is not None else f"files={len(self.files)} (lazy)"
        task = "" if self.task == "classification" else f"task={self.task}, "
        return f"ImageDataset(n={len(self)}, {task}classes={self.num_classes}, {where})"


def _check_range(values: torch.Tensor, k: int, what: str) -> None:
    if len(values) and (values.min() < 0 or values.max() >= k):
        raise ValueError(f"{what} must lie in [0, {k}), got {int(values.min())}..{int(values.max())}")


@dataclass
class DatasetSplits:
    """What :func:`archzoo.data.load_dataset` returns. ``bad_files`` lists the ``(path, reason)``
    pairs skipped under ``skip_bad=True``; ``description`` says what was read where the format
    was detected (detection sets: the format, images, classes and objects)."""

    train: ImageDataset
    val: ImageDataset | None
    class_names: list[str]
    bad_files: list[tuple[str, str]] = field(default_factory=list)
    description: str = ""


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
    """``(train, val)``; ``val`` is ``None`` when ``val_split`` is 0. Classification sets are
    split per class (:func:`stratified_split`); detection and segmentation sets, whose images
    hold several classes, by one seeded permutation (``round(val_split * n)`` items to val)."""
    if val_split == 0:
        return ds, None
    if ds.task == "classification":
        tr, va = stratified_split(ds.labels, val_split, seed)
    else:
        tr, va = stratified_split(torch.zeros(len(ds), dtype=torch.int64), val_split, seed)
    return ds.subset(tr), ds.subset(va)
