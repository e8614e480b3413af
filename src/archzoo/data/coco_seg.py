"""COCO JSON segmentation sets (Lin et al. 2014, arXiv:1405.0312): the ``segmentation`` of every
annotation (polygons, or run-length encoding, RLE) rasterised with pycocotools into one class mask
per image, exactly as pycocotools' ``COCO.annToMask`` draws each object.

The file, the images and their checks are those of the detection reader (:mod:`.coco`:
``read_coco``); a ``bbox`` is not needed here. Classes: ``background`` (pixels no annotation
covers) then the categories in the order of their ids, so the class of category ``k`` is its
place in that order plus one; a category named ``background`` is the background instead (no class
is added). Overlaps: crowd regions (``iscrowd`` 1) are drawn first as
:data:`~archzoo.data.IGNORE_INDEX` (not scored: the objects in a crowd are not outlined one by
one), then the other objects from the largest to the smallest (ties: file order), so an object
lying on a larger one (a cup on a table) keeps its pixels and an object drawn over a crowd is
scored.

Bad, naming the JSON file and the annotation: no ``segmentation``; a polygon that is not a list
of 3 or more ``x, y`` pairs of finite numbers, or with a point more than
:data:`~archzoo.data.annotations.TOLERANCE` px outside the image; an RLE whose ``size`` is not the
image's or whose ``counts`` do not cover it; an image whose ``width``/``height`` differ from the
file's. Every mask is drawn once when the set is loaded (the checks, the class pixel counts) and,
for sets too large for memory, again when its item is read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..validate import UserError, shown
from .annotations import TOLERANCE, AnnotationError, Problems, number
from .coco import _fields, read_coco
from .dataset import IGNORE_INDEX
from .masks import Pair, ValueMap, finish

FORMAT = "COCO JSON segmentation"


def _segmentation(a: dict, what: str):
    """An annotation's ``segmentation``: polygons (lists of floats) or an RLE dict, checked for form."""
    _fields(a, ("segmentation",), what)
    seg = a["segmentation"]
    if isinstance(seg, list):
        if not seg:
            raise ValueError(f"{what}: segmentation is an empty list (no polygon)")
        polygons = []
        for j, poly in enumerate(seg):
            if not isinstance(poly, list) or len(poly) < 6 or len(poly) % 2:
                raise ValueError(f"{what}: segmentation[{j}] must be a polygon [x1, y1, x2, y2, ...] of 3 points or "
                                 f"more, got {str(poly)[:60]}")
            polygons.append([number(v, f"{what}: segmentation[{j}][{i}]") for i, v in enumerate(poly)])
        return polygons
    if isinstance(seg, dict):
        _fields(seg, ("size", "counts"), f"{what}: segmentation (RLE)")
        size, counts = seg["size"], seg["counts"]
        if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
            raise ValueError(f"{what}: RLE size must be [height, width], got {size!r}")
        if isinstance(counts, list):
            if not all(isinstance(c, int) and c >= 0 for c in counts) or sum(counts) != size[0] * size[1]:
                raise ValueError(f"{what}: RLE counts must be non-negative integers adding up to height x width "
                                 f"({size[0] * size[1]}), got {sum(c for c in counts if isinstance(c, int))}")
        elif not isinstance(counts, str):
            raise ValueError(f"{what}: RLE counts must be a list of run lengths or a compressed string")
        return {"size": list(size), "counts": counts}
    raise ValueError(f"{what}: segmentation must be polygons (a list) or RLE (a dict of size and counts), "
                     f"got {type(seg).__name__}")


def decode(seg, h: int, w: int) -> np.ndarray:
    """uint8 ``[h, w]`` 0/1 mask of one annotation's segmentation, as ``COCO.annToMask`` draws it."""
    from pycocotools import mask as mask_utils

    if isinstance(seg, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
    elif isinstance(seg["counts"], list):
        rle = mask_utils.frPyObjects(seg, h, w)
    else:
        rle = {"size": seg["size"], "counts": seg["counts"].encode("ascii")}
    return mask_utils.decode(rle)


class CocoMasks:
    """The mask source of a COCO set: ``read(image id, (h, w))`` draws the class mask (see the
    module doc); picklable for DataLoader workers."""

    def __init__(self, js: str, objects: dict, claimed: dict, background: int, shift: int) -> None:
        self.js, self.objects, self.claimed = js, objects, claimed
        self.background, self.shift = background, shift

    def name(self, key) -> str:
        return self.js

    def read(self, key, size: tuple[int, int]) -> np.ndarray:
        h, w = size
        claimed = self.claimed.get(key)
        if claimed is not None and tuple(claimed) != (w, h):
            raise AnnotationError(self.js, f"image id {key!r}: says the image is {claimed[0]}x{claimed[1]} pixels, "
                                           f"but the file is {w}x{h}")
        out = np.full((h, w), self.background, dtype=np.uint8)
        drawn = []
        for label, crowd, seg, what in self.objects.get(key, ()):
            if isinstance(seg, list):
                pts = np.concatenate([np.asarray(p, dtype=np.float64) for p in seg])  # x, y, x, y, ...
                (lo_x, hi_x), (lo_y, hi_y) = (pts[0::2].min(), pts[0::2].max()), (pts[1::2].min(), pts[1::2].max())
                if lo_x < -TOLERANCE or lo_y < -TOLERANCE or hi_x > w + TOLERANCE or hi_y > h + TOLERANCE:
                    raise AnnotationError(self.js, f"{what}: polygon reaches ({lo_x:g}..{hi_x:g}, {lo_y:g}..{hi_y:g}), "
                                                   f"outside the {w}x{h} image")
            elif seg["size"] != [h, w]:
                raise AnnotationError(self.js, f"{what}: RLE size {seg['size']} is not the image's [{h}, {w}]")
            try:
                m = decode(seg, h, w)
            except Exception as e:  # a corrupt compressed RLE string
                raise AnnotationError(self.js, f"{what}: segmentation cannot be decoded "
                                               f"({type(e).__name__}: {e})") from None
            drawn.append((crowd, -int(m.sum()), len(drawn), m, label))
        for crowd, _, _, m, label in sorted(drawn, key=lambda d: (not d[0], d[1], d[2])):
            out[m > 0] = IGNORE_INDEX if crowd else label + self.shift
        return out


def load_coco_seg(path: Path, subset: str = "train", *, skip_bad: bool = False, class_map=None):
    """``(dataset, bad items, description)`` of a COCO set read for segmentation (see the module doc)."""
    problems = Problems(skip_bad)
    js, _, names, items, objects = read_coco(Path(path), subset, problems, _segmentation)
    lower = [n.lower() for n in names]
    if "background" in lower:
        classes, background, shift = list(names), lower.index("background"), 0
    else:
        classes, background, shift = ["background", *names], 0, 1
    vm = ValueMap(list(range(len(classes))), classes, [IGNORE_INDEX],
                  rule="COCO categories in id order after the background; crowds are not scored")
    if class_map is not None:
        given = class_map if isinstance(class_map, ValueMap) else ValueMap.from_json(class_map)
        if given.names != classes:
            raise UserError(f"{shown(js)}: its classes {classes[:8]} are not the run's {given.names[:8]}")
    claimed = {iid: it.size for iid, it in items.items() if it.size is not None}
    source = CocoMasks(str(js), {k: v for k, v in objects.items() if k in items}, claimed, background, shift)
    pairs = [Pair(it.image, iid) for iid, it in items.items()]
    ds, text = finish(pairs, problems, FORMAT, js, source, lambda values: vm)
    return ds, problems.items, text
