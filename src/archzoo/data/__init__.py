"""Datasets and transforms: what the training engine, the explainers and the benchmarks read.

    from archzoo.data import load_dataset, build_transform
    splits = load_dataset("digits", val_split=0.1, seed=0)
    image, target = splits.train[0]         # uint8 [1, 32, 32], {"label": int64 tensor}
    splits.train.images                     # uint8 [N, C, H, W] when decoded in memory

``spec`` is ``"digits"`` or ``"shapes"`` (built in, no download: :mod:`.digits`,
:mod:`.shapes`) or a path to an ImageFolder tree (:mod:`.folder`), a CIFAR-10/100
python-batches folder (:mod:`.cifar`) or a folder of MNIST/Fashion-MNIST IDX files
(:mod:`.idx`); ``"shapes-det"`` and ``"shapes-seg"`` are the built-in detection and
segmentation sets (targets: :mod:`.dataset`). Detection sets on disk: Pascal VOC XML
(:mod:`.voc`), COCO JSON (:mod:`.coco`, also ``spec`` = the JSON file) and YOLO txt
(:mod:`.yolo_txt`), their checks in :mod:`.annotations`; the format is detected (and stated in
``DatasetSplits.description`` and the ``archzoo.data`` log), or forced with ``format=`` or a
``"voc:"``, ``"coco:"``, ``"yolo:"`` prefix of ``spec`` (which the command line's ``--data``
takes too). Every loader returns one :class:`ImageDataset`; :func:`load_dataset` then holds out
a seeded validation split (stratified by class for classification).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from .dataset import IGNORE_INDEX, TASKS, DatasetSplits, ImageDataset, split_dataset, stratified_split
from .transforms import build_transform

BUILTIN = ("digits", "shapes", "shapes-det", "shapes-seg")
DETECTION_FORMATS = ("voc", "coco", "yolo")  # format= / "<format>:" prefixes of a detection set on disk
_SHAPES_TASKS = {"shapes": "classification", "shapes-det": "detection", "shapes-seg": "segmentation"}
# digits, shapes, CIFAR and MNIST have a train and a test set only: a validation request reads the test set
_TEST_ALIASES = {"val": "test", "valid": "test", "validation": "test", "t10k": "test"}

__all__ = ["BUILTIN", "DETECTION_FORMATS", "IGNORE_INDEX", "TASKS", "DatasetSplits", "ImageDataset", "build_transform",
           "load_dataset", "split_format", "stratified_split"]


def load_dataset(
    spec: str | os.PathLike,
    *,
    val_split: float = 0.1,
    seed: int = 0,
    subset: str = "train",
    skip_bad: bool = False,
    image_size: int | None = None,
    cache: bool | None = None,
    format: str | None = None,
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
    2,000 images or more; see :mod:`.folder`). ``format``: ``"voc"``, ``"coco"`` or ``"yolo"``
    to read a detection set as that format (default: detected; ``spec`` may also carry it as
    a prefix, ``"voc:path"``).
    """
    bad: list[tuple[str, str]] = []
    description = ""
    name = str(spec)
    fmt, spec = split_format(spec, format)
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
        if not path.is_dir() and not (path.suffix.lower() == ".json" and fmt in (None, "coco")):
            raise ValueError(f"dataset path {path} is a file; give the folder that holds the data "
                             "(or the JSON file of a COCO set)")
        from . import cifar, folder, idx

        if fmt is None and (path.is_file() or not (cifar.is_cifar_dir(path) or idx.is_idx_dir(path))):
            fmt = detect_detection_format(path, subset)
        if fmt is not None:
            ds, bad, description = load_detection(path, fmt, subset, skip_bad)
        elif cifar.is_cifar_dir(path):
            ds, bad = cifar.load_cifar(path, official, skip_bad=skip_bad)
        elif idx.is_idx_dir(path):
            ds, bad = idx.load_idx(path, official, skip_bad=skip_bad)
        else:
            ds, bad = folder.load_image_folder(path, subset, skip_bad=skip_bad, image_size=image_size, cache=cache)
    if bad:
        warnings.warn(f"{name}: skipped {len(bad)} bad files, folders or items (listed in bad_files); "
                      f"first: {bad[0][0]}: {bad[0][1]}", stacklevel=2)
    train, val = split_dataset(ds, val_split, seed)
    return DatasetSplits(train=train, val=val, class_names=list(ds.class_names), bad_files=bad, description=description)


def split_format(spec, format: str | None = None) -> tuple[str | None, str | os.PathLike]:
    """``(format, spec)``: the detection format forced by ``format`` or a ``"<format>:"`` prefix."""
    text = str(spec)
    head, sep, rest = text.partition(":")
    if sep and head.lower() in DETECTION_FORMATS and rest:
        if format is not None and format != head.lower():
            raise ValueError(f"format={format!r} and the prefix {head}: of {text!r} disagree")
        format, spec = head.lower(), rest
    if format is not None and format not in DETECTION_FORMATS:
        raise ValueError(f"format must be one of {', '.join(DETECTION_FORMATS)}, got {format!r}")
    return format, spec


def detect_detection_format(path: Path, subset: str = "train") -> str | None:
    """``"voc"``, ``"coco"`` or ``"yolo"`` when ``path`` (or its ``subset`` split folder) holds a
    detection set of that format, ``None`` when none; several at once is an error (force one)."""
    from . import coco, voc, yolo_txt
    from .folder import resolve_root

    if path.is_file():
        return "coco" if path.suffix.lower() == ".json" else None
    try:
        root = resolve_root(path, subset)
    except ValueError:
        root = path
    found = [f for f, test in (("voc", voc.is_voc_dir), ("yolo", yolo_txt.is_yolo_dir), ("coco", coco.looks_like_coco))
             if test(root)]
    if len(found) > 1:
        from ..validate import UserError

        raise UserError(f"{path} looks like several detection formats ({', '.join(found)}); force one with a "
                        f"prefix, e.g. --data {found[0]}:{path} (format={found[0]!r})")
    return found[0] if found else None


def load_detection(path: Path, fmt: str, subset: str = "train", skip_bad: bool = False):
    """``(dataset, bad items, description)`` of a detection set of format ``fmt`` at ``path``."""
    from . import coco, voc, yolo_txt
    from .folder import resolve_root

    if fmt == "coco":
        root = path if path.is_file() else resolve_root(path, subset)
        return coco.load_coco(root, subset.lower(), skip_bad=skip_bad)
    if not path.is_dir():
        raise ValueError(f"a {fmt} dataset is a folder, not the file {path}")
    root = resolve_root(path, subset)
    loader = voc.load_voc if fmt == "voc" else yolo_txt.load_yolo
    return loader(root, subset.lower(), skip_bad=skip_bad)
