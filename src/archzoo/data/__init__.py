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
takes too). Segmentation sets on disk (:mod:`.masks`, with the map from mask values to classes):
image/mask folder pairs (``"masks:"``), Pascal VOC ``SegmentationClass/`` (:mod:`.voc_seg`,
``"vocseg:"``) and COCO polygons/RLE (:mod:`.coco_seg`, ``"cocoseg:"``). ``task=`` (the task of
the model the data is for) settles a folder that holds both kinds: see :func:`load_dataset`.
``task="super_resolution"`` reads any folder of photos, and ``"photos"`` scikit-image's sample
photos, as :class:`archzoo.superres.data.PhotoSet` (their Y planes); ``task="captioning"`` a
folder of images with a captions file, and ``"shapes-cap"`` the built-in captioned shapes
(:mod:`.captions`, :mod:`.shapes_captions`). Every other loader returns one
:class:`ImageDataset`; :func:`load_dataset` then holds out a seeded validation split (stratified
by class for classification).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from .dataset import IGNORE_INDEX, TASKS, DatasetSplits, ImageDataset, split_dataset, stratified_split
from .transforms import build_transform

BUILTIN = ("digits", "shapes", "shapes-det", "shapes-seg", "photos", "shapes-cap")
DETECTION_FORMATS = ("voc", "coco", "yolo")  # format= / "<format>:" prefixes of a detection set on disk
SEGMENTATION_FORMATS = ("masks", "vocseg", "cocoseg")  # ... and of a segmentation set
FORMATS = DETECTION_FORMATS + SEGMENTATION_FORMATS
_FOR_SEGMENTATION = {"voc": "vocseg", "coco": "cocoseg"}  # the same files read for the other task
_SHAPES_TASKS = {"shapes": "classification", "shapes-det": "detection", "shapes-seg": "segmentation"}
# digits, shapes, CIFAR and MNIST have a train and a test set only: a validation request reads the test set
_TEST_ALIASES = {"val": "test", "valid": "test", "validation": "test", "t10k": "test"}

__all__ = ["BUILTIN", "DETECTION_FORMATS", "FORMATS", "IGNORE_INDEX", "SEGMENTATION_FORMATS", "TASKS", "DatasetSplits", "ImageDataset", "build_transform",
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
    task: str | None = None,
    class_map=None,
    masks: bool = False,
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
    a prefix, ``"voc:path"``); ``"masks"``, ``"vocseg"`` or ``"cocoseg"`` for a segmentation set.
    ``task``: the task of the model the data is for (``None``: the data's). A folder holding both a
    detection and a segmentation set (a VOC root with ``Annotations/`` and ``SegmentationClass/``)
    is read for ``task``, and without it is refused as ambiguous; a COCO file (which has boxes and
    outlines) is read for detection unless ``task="segmentation"`` or the ``cocoseg:`` prefix asks
    for its masks; ``voc:``/``coco:`` with ``task="segmentation"`` read the VOC/COCO masks.
    ``class_map``: a segmentation checkpoint's map from mask values to classes
    (:meth:`.masks.ValueMap.to_json`), so new data is read the way the model was trained.
    ``masks``: a detection set also carries instance masks (``target["masks"]``, ``[k, H, W]``, one
    per box) where the data has them (``shapes-det``; COCO polygons or RLE), for a detector that
    predicts masks (:func:`archzoo.engine.detection.wants_masks`); off, none are read or kept.
    """
    bad: list[tuple[str, str]] = []
    description = ""
    name = str(spec)
    if task == "super_resolution" or name == "photos":  # photos (Y planes) for super-resolution
        from ..superres.data import load_photos

        return load_photos(spec, val_split=val_split, seed=seed, subset=subset, skip_bad=skip_bad)
    if task == "captioning" or name == "shapes-cap":  # images with captions, and their vocabulary
        from .captions import load_caption_splits

        return load_caption_splits(spec, val_split=val_split, seed=seed, subset=subset, skip_bad=skip_bad,
                                   image_size=image_size)
    fmt, spec = split_format(spec, format)
    fmt = _format_for_task(fmt, task)
    official = _TEST_ALIASES.get(subset.lower(), subset.lower())  # formats with only train/test
    if name == "digits":
        from .digits import load_digits_dataset

        ds = load_digits_dataset(official, size=image_size)
    elif name in _SHAPES_TASKS:
        from .shapes import load_shapes_dataset

        ds = load_shapes_dataset(official, size=image_size, task=_SHAPES_TASKS[name], masks=masks)
    else:
        path = Path(spec).expanduser()
        if path.is_symlink() and not path.exists():
            from .folder import _link_problem

            raise ValueError(f"dataset path {path} is a {_link_problem(path)}")
        if not path.exists():
            raise FileNotFoundError(f"dataset {name!r} is neither a built-in ({', '.join(BUILTIN)}) nor an existing path")
        if not path.is_dir() and not (path.suffix.lower() == ".json" and fmt in (None, "coco", "cocoseg")):
            raise ValueError(f"dataset path {path} is a file; give the folder that holds the data "
                             "(or the JSON file of a COCO set)")
        from . import cifar, folder, idx

        if fmt is None and (path.is_file() or not (cifar.is_cifar_dir(path) or idx.is_idx_dir(path))):
            fmt = detect_detection_format(path, subset, task)
        if fmt is None and task == "segmentation":
            from ..validate import UserError

            raise UserError(f"{path} holds no segmentation set: image/ + label/ (mask) folders, a Pascal VOC "
                            "SegmentationClass/ folder or a COCO JSON file")
        if fmt in SEGMENTATION_FORMATS:
            ds, bad, description = load_segmentation(path, fmt, subset, skip_bad, class_map)
        elif fmt is not None:
            ds, bad, description = load_detection(path, fmt, subset, skip_bad, masks)
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
    """``(format, spec)``: the format forced by ``format`` or a ``"<format>:"`` prefix."""
    text = str(spec)
    head, sep, rest = text.partition(":")
    if sep and head.lower() in FORMATS and rest:
        if format is not None and format != head.lower():
            raise ValueError(f"format={format!r} and the prefix {head}: of {text!r} disagree")
        format, spec = head.lower(), rest
    if format is not None and format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    return format, spec


def _format_for_task(fmt: str | None, task: str | None) -> str | None:
    """``voc``/``coco`` read for segmentation are ``vocseg``/``cocoseg``; a segmentation format for
    another task is an error."""
    if task == "segmentation":
        return _FOR_SEGMENTATION.get(fmt, fmt)
    if task is not None and fmt in SEGMENTATION_FORMATS:
        from ..validate import UserError

        raise UserError(f"{fmt}: is a segmentation format; the model is a {task} model")
    return fmt


def detect_detection_format(path: Path, subset: str = "train", task: str | None = None) -> str | None:
    """The format of the set at ``path`` (or its ``subset`` split folder): detection (``"voc"``,
    ``"coco"``, ``"yolo"``) or segmentation (``"masks"``, ``"vocseg"``, ``"cocoseg"``), only those of
    ``task`` when given; ``None`` when none; several at once is an error (force one)."""
    from . import coco, masks, voc, voc_seg, yolo_txt
    from .folder import resolve_root

    if path.is_file():
        return ("cocoseg" if task == "segmentation" else "coco") if path.suffix.lower() == ".json" else None
    try:
        root = resolve_root(path, subset)
    except ValueError:
        root = path
    tests = []
    if task != "segmentation":
        tests += [("voc", voc.is_voc_dir), ("yolo", yolo_txt.is_yolo_dir), ("coco", coco.looks_like_coco)]
    if task != "detection":
        tests += [("masks", masks.is_mask_dir), ("vocseg", voc_seg.is_vocseg_dir)]
    if task == "segmentation":
        tests.append(("cocoseg", coco.looks_like_coco))
    found = [f for f, test in tests if test(root)]
    if "masks" in found and "yolo" in found:  # images/ + labels/ of image files: masks, not YOLO txt
        found.remove("yolo")
    if len(found) > 1:
        from ..validate import UserError

        kind = "detection " if set(found) <= set(DETECTION_FORMATS) else ""
        hint = " or give the model's task (task=)" if task not in ("detection", "segmentation") and not kind else ""
        raise UserError(f"{path} looks like several {kind}formats ({', '.join(found)}); force one with a "
                        f"prefix, e.g. --data {found[0]}:{path} (format={found[0]!r}){hint}")
    return found[0] if found else None


def load_segmentation(path: Path, fmt: str, subset: str = "train", skip_bad: bool = False, class_map=None):
    """``(dataset, bad items, description)`` of a segmentation set of format ``fmt`` at ``path``."""
    from .folder import resolve_root

    if fmt == "cocoseg":
        from .coco_seg import load_coco_seg

        return load_coco_seg(path if path.is_file() else resolve_root(path, subset), subset.lower(),
                             skip_bad=skip_bad, class_map=class_map)
    if not path.is_dir():
        raise ValueError(f"a {fmt} dataset is a folder, not the file {path}")
    if fmt == "vocseg":
        from .voc_seg import load_voc_seg

        return load_voc_seg(resolve_root(path, subset), subset.lower(), skip_bad=skip_bad, class_map=class_map)
    from .masks import load_mask_folders

    return load_mask_folders(path, subset.lower(), skip_bad=skip_bad, class_map=class_map)


def load_detection(path: Path, fmt: str, subset: str = "train", skip_bad: bool = False, masks: bool = False):
    """``(dataset, bad items, description)`` of a detection set of format ``fmt`` at ``path``
    (``masks``: with the instance masks of a COCO set's polygons or RLE; VOC and YOLO have none)."""
    from . import coco, voc, yolo_txt
    from .folder import resolve_root

    if fmt == "coco":
        root = path if path.is_file() else resolve_root(path, subset)
        return coco.load_coco(root, subset.lower(), skip_bad=skip_bad, masks=masks)
    if not path.is_dir():
        raise ValueError(f"a {fmt} dataset is a folder, not the file {path}")
    root = resolve_root(path, subset)
    loader = voc.load_voc if fmt == "voc" else yolo_txt.load_yolo
    return loader(root, subset.lower(), skip_bad=skip_bad)
