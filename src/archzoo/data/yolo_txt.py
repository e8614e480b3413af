"""YOLO txt detection sets (the Darknet / ultralytics layout): ``images/`` and ``labels/`` folders,
``labels/<path>.txt`` for ``images/<path>.<ext>``; or ``images/<split>/``, ``labels/<split>/``.

A label file holds one object a line: ``class cx cy w h``, the class an integer index into the
class names and the box its centre and size as fractions of the image's width and height.
Class names come from ``data.yaml`` (or ``dataset.yaml``: ``names:`` a list, or a dict
``{0: name, ...}`` with every index from 0) in the folder or the one above it, else from
``classes.txt`` or ``obj.names`` there or in ``labels/``; there is no default (a class index
could not be checked). An image with an empty label file is a negative, and so is an image with
no label file at all (ultralytics reads it so); a label file without an image is bad. Bad
lines (not 5 values, a value that is not a finite number, a class index that is not a known
class, a box with no width or height or more than 1 px outside the image) name the file and
line. Segment (polygon) lines are not read: they are an error.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..validate import shown
from .annotations import (
    AnnotationError,
    Item,
    Problems,
    check_names,
    finish,
    number,
    read_class_list,
)

FORMAT = "YOLO txt"
_NAME_FILES = ("classes.txt", "obj.names")
_YAML_FILES = ("data.yaml", "data.yml", "dataset.yaml", "dataset.yml")


def is_yolo_dir(path: Path) -> bool:
    return (path / "images").is_dir() and (path / "labels").is_dir()


def _folders(root: Path, subset: str) -> tuple[Path, Path]:
    from .folder import resolve_root

    images = resolve_root(root / "images", subset)
    return images, root / "labels" / images.relative_to(root / "images")


def _yaml_names(path: Path) -> list[str]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise AnnotationError(path, f"cannot be read as YAML: {e}") from None
    names = data.get("names") if isinstance(data, dict) else None
    if isinstance(names, dict):
        if sorted(names) != list(range(len(names))):
            raise AnnotationError(path, f"names: the keys must be the class indices 0..{len(names) - 1}, "
                                        f"got {list(names)[:8]}")
        names = [names[i] for i in range(len(names))]
    if not isinstance(names, list):
        raise AnnotationError(path, "has no 'names:' list (or dict of index: name)")
    names = [str(n) for n in names]
    check_names(names, path)
    return names


def class_names(root: Path, labels: Path) -> list[str]:
    """The class names of a YOLO set (see the module doc for where they are looked up)."""
    for folder in (root, root.parent):
        for name in _YAML_FILES:
            if (folder / name).is_file():
                return _yaml_names(folder / name)
    for folder in (root, labels, root / "labels", root.parent):
        for name in _NAME_FILES:
            if (folder / name).is_file():
                return read_class_list(folder / name)
    raise AnnotationError(root, "a YOLO set needs its class names: a data.yaml with 'names:', or classes.txt / "
                                "obj.names (one name a line), in this folder or the one above")


def _walk(folder: Path, keep) -> list[str]:
    """Relative paths of the non-hidden files under ``folder`` that ``keep(name)`` accepts, sorted."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel = os.path.relpath(dirpath, folder)
        out += [os.path.normpath(os.path.join(rel, f)) for f in filenames if not f.startswith(".") and keep(f)]
    return sorted(out)


def parse_line(text: str, k: int) -> tuple[int, list[float]]:
    """``(class index, [cx, cy, w, h])`` of one label line; raises ``ValueError`` saying what is wrong."""
    parts = text.split()
    if len(parts) != 5:
        what = "a segment (polygon), which is not read" if len(parts) > 5 else "not a box"
        raise ValueError(f"{len(parts)} values, expected 5 (class cx cy w h): {what}")
    c = number(parts[0], "the class index")
    if c != int(c) or c < 0 or c >= k:
        raise ValueError(f"unknown class {parts[0]!r}: the class index must be an integer in 0..{k - 1}")
    values = [number(v, name) for v, name in zip(parts[1:], ("cx", "cy", "w", "h"))]
    if values[2] <= 0 or values[3] <= 0:
        raise ValueError(f"box {parts[1:]} has no {'width' if values[2] <= 0 else 'height'} (x2 <= x1 or y2 <= y1)")
    return int(c), values


def load_yolo(root: Path, subset: str = "train", *, skip_bad: bool = False):
    """``(dataset, bad items, description)`` of a YOLO txt set (see the module doc)."""
    from .folder import IMAGE_EXTENSIONS

    images_dir, labels_dir = _folders(root, subset)
    names = class_names(root, labels_dir)
    problems = Problems(skip_bad)
    images = _walk(images_dir, lambda n: n.lower().endswith(IMAGE_EXTENSIONS))
    labels = set(_walk(labels_dir, lambda n: n.lower().endswith(".txt") and n not in _NAME_FILES)) \
        if labels_dir.is_dir() else set()
    by_stem: dict[str, list[str]] = {}
    for rel in images:
        by_stem.setdefault(os.path.splitext(rel)[0], []).append(rel)
    items = []
    for stem, rels in by_stem.items():
        label = stem + ".txt"
        labels.discard(label)
        if len(rels) > 1:
            problems(images_dir / rels[0], f"duplicate image id: {', '.join(rels)} would share the label file {label}")
            continue
        it = Item(str(images_dir / rels[0]), str(labels_dir / label))
        if (labels_dir / label).is_file():
            try:
                lines = (labels_dir / label).read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as e:
                problems(labels_dir / label, f"cannot be read as text: {e}")
                continue
            try:
                for n, line in enumerate(lines, 1):
                    if line.strip():
                        c, box = parse_line(line, len(names))
                        it.labels.append(c)
                        it.boxes.append(box)  # cx cy w h, normalised: finish() makes them pixels
                        it.difficult.append(False)
                        it.where.append(f"line {n}")
            except ValueError as e:
                problems(labels_dir / label, f"line {n}: {e}")
                continue
        items.append(it)
    for label in sorted(labels):
        problems(labels_dir / label, "label file without an image (no image of the same name in "
                                     f"{shown(images_dir)})")
    ds, text = finish(items, names, problems, FORMAT, root, normalised=True)
    return ds, problems.items, text
