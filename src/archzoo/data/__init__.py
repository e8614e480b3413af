"""Datasets and transforms: what the training engine, the explainers and the benchmarks read.

    from archzoo.data import load_dataset, build_transform
    splits = load_dataset("digits", val_split=0.1, seed=0)
    image, target = splits.train[0]         # uint8 [1, 32, 32], {"label": int64 tensor}
    splits.train.images                     # uint8 [N, C, H, W] when decoded in memory

``spec`` is ``"digits"`` or ``"shapes"`` (built in, no download: :mod:`.digits`,
:mod:`.shapes`) or a path to an ImageFolder tree (:mod:`.folder`), a CIFAR-10/100
python-batches folder (:mod:`.cifar`) or a folder of MNIST/Fashion-MNIST IDX files
(:mod:`.idx`); ``"shapes-det"`` and ``"shapes-seg"`` are the built-in detection and
segmentation sets (targets: :mod:`.dataset`). Every loader returns one :class:`ImageDataset`;
:func:`load_dataset` then holds out a seeded validation split (stratified by class for
classification).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from .dataset import IGNORE_INDEX, TASKS, DatasetSplits, ImageDataset, split_dataset, stratified_split
from .transforms import build_transform

BUILTIN = ("digits", "shapes", "shapes-det", "shapes-seg")
_SHAPES_TASKS = {"shapes": "classification", "shapes-det": "detection", "shapes-seg": "segmentation"}
# digits, shapes, CIFAR and MNIST have a train and a test set only: a validation request reads the test set
_TEST_ALIASES = {"val": "test", "valid": "test", "validation": "test", "t10k": "test"}

__all__ = ["BUILTIN", "IGNORE_INDEX", "TASKS", "DatasetSplits", "ImageDataset", "build_transform", "load_dataset",
           "stratified_split"]


def load_dataset(
    spec: str | os.PathLike,
    *,
    val_split: float = 0.1,
    seed: int = 0,
    subset: str = "train",
    skip_bad: bool = False,
    image_size: int | None = None,
    cache: bool | None = None,
) -> DatasetSplits:
    """Load ``spec`` and split it into train and validation sets.

    ``val_split``: fraction of every class held out for validation (seeded by ``seed``; 0 gives
    ``val=None``). ``subset``: the official split to load where the format has one (CIFAR
    ``"train"``/``"test"``, MNIST ``"train"``/``"test"`` (t10k), an ImageFolder root holding
    ``train/``, ``val/``, ``test/`` folders, the fixed seeded split of ``digits``/``shapes``);
    ``"val"`` reads the test set of formats that have none. An ImageFolder tree without split
    folders is the same tree whatever ``subset`` says.
    ``skip_bad``: skip unreadable files and out-of-range labels, listing them in
    ``bad_files``, instead of raising. ``image_size``: for ImageFolder trees, resize (shorter
    side, then centre crop) to this size when decoding; for ``digits``/``shapes`` the generated
    size. ``cache``: the on-disk cache of decoded ImageFolder trees (``None``: for trees of
    2,000 images or more; see :mod:`.folder`).
    """
    bad: list[tuple[str, str]] = []
    name = str(spec)
    official = _TEST_ALIASES.get(subset.lower(), subset.lower())  # formats with only train/test
    if name == "digits":
        from .digits import load_digits_dataset

        ds = load_digits_dataset(official, size=image_size)
    elif name in _SHAPES_TASKS:
        from .shapes import load_shapes_dataset

        ds = load_shapes_dataset(official, size=image_size, task=_SHAPES_TASKS[name])
    else:
        path = Path(spec).expanduser()
        if path.is_symlink() and not path.exists():
            from .folder import _link_problem

            raise ValueError(f"dataset path {path} is a {_link_problem(path)}")
        if not path.exists():
            raise FileNotFoundError(f"dataset {name!r} is neither a built-in ({', '.join(BUILTIN)}) nor an existing path")
        if not path.is_dir():
            raise ValueError(f"dataset path {path} is a file; give the folder that holds the data")
        from . import cifar, folder, idx

        if cifar.is_cifar_dir(path):
            ds, bad = cifar.load_cifar(path, official, skip_bad=skip_bad)
        elif idx.is_idx_dir(path):
            ds, bad = idx.load_idx(path, official, skip_bad=skip_bad)
        else:
            ds, bad = folder.load_image_folder(path, subset, skip_bad=skip_bad, image_size=image_size, cache=cache)
    if bad:
        warnings.warn(f"{name}: skipped {len(bad)} bad files, folders or items (listed in bad_files); "
                      f"first: {bad[0][0]}: {bad[0][1]}", stacklevel=2)
    train, val = split_dataset(ds, val_split, seed)
    return DatasetSplits(train=train, val=val, class_names=list(ds.class_names), bad_files=bad)
