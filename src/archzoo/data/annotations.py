"""What the detection file formats share (:mod:`.voc`, :mod:`.coco`, :mod:`.yolo_txt`): the checks
of boxes and images, the list of bad items, and the dataset they all build.

Every format reads to a list of :class:`Item` (one per image: its file and its objects), then
:func:`finish` checks each image (its pixels are decoded once, in threads, so a missing, truncated
or corrupt file is found now), checks every box against the image's size and builds one lazy
:class:`~archzoo.data.ImageDataset` of task ``"detection"``.

Checks, each an :class:`AnnotationError` (a :class:`~archzoo.validate.UserError`) naming the file
and, where there is one, the line, object or annotation id: a coordinate that is not a finite
number; ``x2 <= x1`` or ``y2 <= y1``; a box reaching more than :data:`TOLERANCE` (1 px) outside
the image (a box within it is clipped to the image: rounding in annotation tools); an unknown
class; an image that is missing or does not decode; an annotation without an image or an image
without an annotation (where the format says what a negative looks like: see each format).
With ``skip_bad`` an image with any bad part is left out whole, with all its objects (never only
the bad box, which would teach that the object is background), and listed as ``(path, reason)``.

Per-object targets: ``boxes`` (xyxy, pixels of the decoded image, EXIF orientation applied),
``labels`` and ``difficult`` (bool: VOC ``<difficult>1``, COCO ``iscrowd``). Difficult objects
are kept and trained on (as detectron2 does), and the evaluation ignores them
(:class:`~archzoo.engine.metrics.DetectionMeter`: pycocotools' ``iscrowd``).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..validate import UserError, shown
from .dataset import ImageDataset

TOLERANCE = 1.0  # pixels a box may reach past the image's edge (then clipped): annotation tools round
log = logging.getLogger("archzoo.data")


class AnnotationError(UserError):
    """A bad annotation or image of a detection dataset; ``path`` and ``reason`` say which and why."""

    def __init__(self, path, reason: str = "") -> None:
        super().__init__(f"{shown(path)}: {reason}" if reason else str(path))
        self.path, self.reason = str(path), reason


class Problems:
    """Bad items: the first raises an :class:`AnnotationError`, or with ``skip_bad`` each is listed
    in ``items`` as ``(path, reason)``; ``bad_keys`` holds the images (keys) to leave out."""

    def __init__(self, skip_bad: bool) -> None:
        self.skip_bad = skip_bad
        self.items: list[tuple[str, str]] = []
        self.bad_keys: set = set()

    def __call__(self, path, reason: str, key=None) -> None:
        if not self.skip_bad:
            raise AnnotationError(path, f"{reason}; fix it, or pass skip_bad=True (--skip-bad) to leave the image out")
        self.items.append((str(path), reason))
        if key is not None:
            self.bad_keys.add(key)


@dataclass
class Item:
    """One image and its objects as read from the annotations (boxes in the image's pixels)."""

    image: str
    source: str  # the annotation file, for messages
    boxes: list[list[float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    difficult: list[bool] = field(default_factory=list)
    where: list[str] = field(default_factory=list)  # each object as a message names it ("line 3", "object 2 'fig'")
    size: tuple[int, int] | None = None  # (width, height) the annotation claims, if any


def number(value, what: str) -> float:
    """``value`` (text or a JSON value) as a finite float, else a ``ValueError`` saying why."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{what} is {value!r}, not a number")
    try:
        x = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} is {value!r}, not a number") from None
    if not math.isfinite(x):
        raise ValueError(f"{what} is {value!r}, not a finite number")
    return x


def box_problem(box: list[float]) -> str | None:
    """Why ``(x1, y1, x2, y2)`` is no box (``x2 <= x1`` or ``y2 <= y1``), else ``None``."""
    x1, y1, x2, y2 = box
    if x2 <= x1:
        return f"x2 <= x1 (box {_fmt(box)}): the box has no width"
    if y2 <= y1:
        return f"y2 <= y1 (box {_fmt(box)}): the box has no height"
    return None


def _fmt(box) -> str:
    return "[" + ", ".join(f"{v:g}" for v in box) + "]"


def read_class_list(path: Path) -> list[str]:
    """Class names, one a line (``classes.txt``, ``obj.names``); blank lines are skipped."""
    try:
        names = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as e:
        raise AnnotationError(path, f"cannot be read as a UTF-8 class list: {e}") from None
    names = [n for n in names if n]
    check_names(names, path)
    return names


def check_names(names: list[str], path) -> None:
    if not names:
        raise AnnotationError(path, "lists no class names")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise AnnotationError(path, f"names the classes {dup[:5]} more than once")


def _probe(path: str):
    """``((width, height), None)`` of the decoded image, or ``(None, BadImageError)``."""
    from PIL import Image

    from .folder import BadImageError, _open, verify_image

    try:
        img = _open(path)
        try:
            w, h = img.size
            try:
                if img.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # EXIF orientations that swap the sides
                    w, h = h, w
            except Exception:  # a corrupt EXIF block: decode_image's exif_transpose ignores it too
                pass
        finally:
            img.close()
        verify_image(path)
        return (w, h), None
    except BadImageError as e:
        return None, e
    except Image.DecompressionBombError as e:  # pragma: no cover - _open already turns it into BadImageError
        return None, BadImageError(path, str(e))


def image_sizes(files: list[str]) -> list[tuple]:
    """:func:`_probe` of every file, in threads (Pillow decodes without the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    if len(files) < 4:
        return [_probe(f) for f in files]
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        return list(pool.map(_probe, files))


def finish(items: list[Item], class_names: list[str], problems: Problems, fmt: str, root,
           normalised: bool = False) -> tuple[ImageDataset, str]:
    """Check the images and boxes of ``items`` (see the module doc), leave out the bad ones under
    ``skip_bad`` and build the dataset; returns it with a one-line description (also logged).
    ``normalised``: the boxes are ``(cx, cy, w, h)`` fractions of the image's sides (YOLO)."""
    items = [it for it in items if it.image not in problems.bad_keys]
    sizes = image_sizes([it.image for it in items])
    kept: list[Item] = []
    for it, (size, err) in zip(items, sizes):
        if err is not None:
            problems(it.image, f"image {'is missing' if not os.path.exists(it.image) else 'cannot be decoded'} "
                               f"({err.reason}); it is named by {shown(it.source)}", key=it.image)
            continue
        w, h = size
        if it.size is not None and all(it.size) and tuple(it.size) != (w, h):
            turned = " (turned by its EXIF orientation?)" if tuple(it.size) == (h, w) else ""
            problems(it.source, f"says the image is {it.size[0]}x{it.size[1]} pixels, but {shown(it.image)} is "
                                f"{w}x{h}{turned}", key=it.image)
            continue
        if normalised:
            it.boxes = [[(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h]
                        for cx, cy, bw, bh in it.boxes]
        ok = True
        for k, box in enumerate(it.boxes):
            x1, y1, x2, y2 = box
            if x1 < -TOLERANCE or y1 < -TOLERANCE or x2 > w + TOLERANCE or y2 > h + TOLERANCE:
                problems(it.source, f"{it.where[k]}: box {_fmt(box)} lies outside the {w}x{h} image "
                                    f"(more than {TOLERANCE:g} px past its edge)", key=it.image)
                ok = False
                break
            it.boxes[k] = [min(max(x1, 0.0), w), min(max(y1, 0.0), h), min(max(x2, 0.0), w), min(max(y2, 0.0), h)]
        if ok:
            kept.append(it)
    if not kept:
        first = f" (first: {shown(problems.items[0][0])}: {problems.items[0][1]})" if problems.items else ""
        raise UserError(f"{shown(root)}: no usable image in this {fmt} dataset{first}")
    n, k = len(kept), max(1, max(len(it.labels) for it in kept))
    boxes = torch.zeros(n, k, 4)
    labels = torch.full((n, k), -1, dtype=torch.int64)
    difficult = torch.zeros(n, k, dtype=torch.bool)
    for i, it in enumerate(kept):
        m = len(it.labels)
        if m:
            boxes[i, :m] = torch.tensor(it.boxes, dtype=torch.float32)
            labels[i, :m] = torch.tensor(it.labels)
            difficult[i, :m] = torch.tensor(it.difficult)
    from .folder import ImageDecoder

    ds = ImageDataset(class_names, files=[it.image for it in kept], decode=ImageDecoder(3), task="detection",
                      targets={"boxes": boxes, "labels": labels, "difficult": difficult})
    objects = int((labels >= 0).sum())
    empty = sum(1 for it in kept if not it.labels)
    names = ", ".join(class_names[:10]) + (", ..." if len(class_names) > 10 else "")
    text = (f"detected {fmt}: {n} images ({empty} without objects), {len(class_names)} classes ({names}), "
            f"{objects} objects ({int(difficult.sum())} difficult) in {shown(root)}")
    if problems.items:
        text += f"; {len(problems.items)} bad items left out"
    log.info(text)
    return ds, text
