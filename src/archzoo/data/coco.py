"""COCO JSON detection sets (Lin et al. 2014): one annotation file and the images it names.

``--data`` is the JSON file itself, or a folder holding one ``*.json`` (e.g. Roboflow's
``_annotations.coco.json`` beside the images) or an ``annotations/`` folder of them; with several,
the one whose name contains the subset (``instances_val2017.json`` for ``val``). Images
(``file_name``) are looked up beside the JSON, in ``images/`` there, or, for a JSON in
``annotations/``, in the folder above, its ``images/`` and the split folder its name ends in
(``instances_val2017.json`` -> ``val2017/``).

Read: ``images`` (``id``, ``file_name``, optional ``width``/``height``, which must match the
image), ``categories`` (``id``, ``name``) and ``annotations`` (``id``, ``image_id``,
``category_id``, ``bbox`` ``[x, y, w, h]`` in pixels, optional ``iscrowd``: flagged difficult,
ignored by the evaluation). Categories become labels ``0..K-1`` in the order of their ids, names
kept (every category, also one without annotations). An image with no annotations is a
negative. Bad: malformed JSON, a missing field, duplicate image, annotation or category ids,
an annotation naming an unknown image or category, a bbox that is not 4 finite numbers, has no
width or height or lies outside the image, a missing or unreadable image, and, where the images
lie beside the JSON (one JSON per split folder), an image file the JSON does not list.

Instance masks (``masks=True``, for a detector that predicts them: Mask R-CNN): each object's
``segmentation``, polygons or RLE (compressed or not), becomes ``target["masks"]``, uint8 0/1
``[k, H, W]`` in the order of the boxes, drawn by ``pycocotools.mask`` as ``COCO.annToMask``
draws it (:func:`.coco_seg.decode`) when the item is read (:class:`CocoInstances`), so only the
outlines are held in memory. Crowds keep their (RLE) region as the mask and stay flagged
``difficult``: the evaluation ignores what matches them, as COCO's does. Also bad then, naming
the JSON file and the annotation: an object without a segmentation (``[]`` or none), a polygon
of fewer than 3 points or reaching more than :data:`~.annotations.TOLERANCE` px outside the
image, an RLE whose ``size`` is not the image's or whose counts do not decode or cover it, and a
mask with no pixel. A file none of whose annotations has a segmentation (a box-only export) is
read without masks (the description says so).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ..validate import shown
from .annotations import AnnotationError, Item, Problems, finish, number
from .dataset import ImageDataset

FORMAT = "COCO JSON"


def find_json(path: Path, subset: str = "train") -> Path | None:
    """The annotation file of a COCO set at ``path`` (a JSON file or a folder), else ``None``."""
    if path.is_file():
        return path if path.suffix.lower() == ".json" else None
    for folder in (path, path / "annotations"):
        if not folder.is_dir():
            continue
        jsons = sorted(p for p in folder.glob("*.json") if not p.name.startswith("."))
        if len(jsons) == 1:
            return jsons[0]
        if jsons:
            key = "val" if subset.lower().startswith("val") else subset.lower()
            hits = [p for p in jsons if key in p.stem.lower()]
            if len(hits) == 1:
                return hits[0]
            raise AnnotationError(folder, f"holds several annotation files ({', '.join(p.name for p in jsons[:6])}); "
                                          f"give --data the one to read")
    return None


def looks_like_coco(folder: Path) -> bool:
    """Whether ``folder`` holds a COCO annotation file: a JSON in ``annotations/``, or one beside
    the images named like one (``*coco*``, ``*annotation*``, ``instances_*``) or whose first 64 KB
    hold an ``"images"`` key (a stray JSON in an ImageFolder tree is no COCO set)."""
    if any((folder / "annotations").glob("*.json")):
        return True
    for js in folder.glob("*.json"):
        name = js.name.lower()
        if "coco" in name or "annotation" in name or name.startswith("instances"):
            return True
        try:
            with open(js, "rb") as f:
                if b'"images"' in f.read(1 << 16):
                    return True
        except OSError:
            continue
    return False


def _id(entry: dict, key: str, what: str):
    """``entry[key]``, an id: an integer or a string."""
    v = entry[key]
    if isinstance(v, bool) or not isinstance(v, (int, str)):
        raise ValueError(f"{what}: {key} must be an integer or a string, got {v!r}")
    return v


def _image_dirs(js: Path) -> list[Path]:
    here = js.parent
    dirs = [here, here / "images"]
    if here.name == "annotations":
        dirs += [here.parent, here.parent / "images"]
        split = js.stem.split("_")[-1]  # instances_val2017 -> val2017
        dirs += [here.parent / split, here.parent / "images" / split]
    return dirs


def _load_json(js: Path) -> dict:
    try:
        with open(js, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise AnnotationError(js, f"malformed JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise AnnotationError(js, f"cannot be read: {e}") from None
    if not isinstance(data, dict):
        raise AnnotationError(js, f"holds a JSON {type(data).__name__}, not a COCO object with images, annotations, categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise AnnotationError(js, f"has no list {key!r} (a COCO file has 'images', 'annotations' and 'categories')")
    return data


def _fields(entry, keys: tuple[str, ...], what: str) -> None:
    if not isinstance(entry, dict):
        raise ValueError(f"{what} is not an object")
    missing = [k for k in keys if k not in entry]
    if missing:
        raise ValueError(f"{what} has no {', '.join(map(repr, missing))}")


def _categories(js: Path, cats: list) -> tuple[dict, list[str]]:
    by_id = {}
    for k, c in enumerate(cats):
        try:
            _fields(c, ("id", "name"), f"categories[{k}]")
            _id(c, "id", f"categories[{k}]")
        except ValueError as e:
            raise AnnotationError(js, str(e)) from None
        if c["id"] in by_id:
            raise AnnotationError(js, f"duplicate category id {c['id']!r} (categories[{k}])")
        by_id[c["id"]] = str(c["name"])
    try:
        order = sorted(by_id)
    except TypeError:
        raise AnnotationError(js, "category ids mix numbers and text") from None
    names = [by_id[i] for i in order]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise AnnotationError(js, f"names the categories {dup[:5]} more than once")
    if not names:
        raise AnnotationError(js, "lists no categories")
    return {cid: i for i, cid in enumerate(order)}, names


def read_coco(path: Path, subset: str, problems: Problems, parse):
    """The checked parts of a COCO set that every task reads: ``(json file, category labels by id,
    class names, items by image id, objects by image id)``. ``parse(annotation, what)`` reads the
    task's own fields of one annotation (raising ``ValueError`` when they are bad); each image's
    objects are ``(label, iscrowd, parsed, what)`` in file order. See the module doc for the checks."""
    js = find_json(path, subset)
    if js is None:
        raise AnnotationError(path, "holds no COCO annotation file (*.json)")
    data = _load_json(js)
    label_of, names = _categories(js, data["categories"])
    images: dict = {}
    dropped: set = set()  # ids whose image is left out (listed already): their annotations go with them
    for k, im in enumerate(data["images"]):
        try:
            _fields(im, ("id", "file_name"), f"images[{k}]")
            _id(im, "id", f"images[{k}]")
        except ValueError as e:
            problems(js, str(e))
            continue
        if im["id"] in images:
            problems(js, f"duplicate image id {im['id']!r} (images[{k}], {shown(im['file_name'])}, and "
                         f"{shown(images[im['id']]['file_name'])})")
            dropped.add(im["id"])
            continue
        images[im["id"]] = im
    files = [str(im["file_name"]) for im in images.values()]
    dirs = _image_dirs(js)
    folder = next((d for d in dirs if any((d / f).is_file() for f in files[:50])), dirs[0])
    seen_files: dict[str, object] = {}
    items: dict = {}
    for iid, im in images.items():
        f = str(im["file_name"])
        if f in seen_files:
            problems(js, f"image ids {seen_files[f]!r} and {iid!r} name the same file {shown(f)}")
            dropped.update((iid, seen_files[f]))
            continue
        seen_files[f] = iid
        size = None
        if "width" in im and "height" in im:
            try:
                size = (int(number(im["width"], "width")), int(number(im["height"], "height")))
            except ValueError as e:
                problems(js, f"image id {iid!r}: {e}")
                dropped.add(iid)
                continue
        if not (folder / f).is_file():
            problems(folder / f, f"image is missing; {js.name} names it (image id {iid!r})")
            dropped.add(iid)
            continue
        items[iid] = Item(str(folder / f), str(js), size=size)
    for iid in dropped:
        items.pop(iid, None)
    ann_ids: dict = {}
    objects: dict = {}
    for k, a in enumerate(data["annotations"]):
        aid = a.get("id", f"#{k}") if isinstance(a, dict) and isinstance(a.get("id"), (int, str)) else f"#{k}"
        what = f"annotation id {aid!r}"
        try:
            _fields(a, ("id", "image_id", "category_id"), what)
            for key in ("id", "image_id", "category_id"):
                _id(a, key, what)
            if a["id"] in ann_ids:
                raise ValueError(f"duplicate annotation id {a['id']!r} (also on image id {ann_ids[a['id']]!r})")
            ann_ids[a["id"]] = a["image_id"]
            if a["image_id"] not in images:
                raise ValueError(f"{what}: image id {a['image_id']!r} is not in 'images' (an annotation without an image)")
            if a["category_id"] not in label_of:
                raise ValueError(f"{what}: unknown category id {a['category_id']!r} (not in 'categories')")
            parsed = parse(a, what)
            crowd = a.get("iscrowd", 0)
            if crowd not in (0, 1, True, False):
                raise ValueError(f"{what}: iscrowd is {crowd!r}, not 0 or 1")
        except ValueError as e:
            owner = a.get("image_id") if isinstance(a, dict) else None
            problems(js, str(e))
            if isinstance(owner, (int, str)) and owner in items:  # the image goes with its bad annotation
                dropped.add(owner)
            continue
        if a["image_id"] in items:  # else its image was bad, and is listed already
            objects.setdefault(a["image_id"], []).append((label_of[a["category_id"]], bool(crowd), parsed, what))
    items = {iid: it for iid, it in items.items() if iid not in dropped}
    if folder == js.parent:
        listed = {os.path.normpath(f) for f in files}
        from .folder import IMAGE_EXTENSIONS

        for e in sorted(os.scandir(folder), key=lambda e: e.name):
            if e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS) and not e.name.startswith(".") \
                    and e.name not in listed:
                problems(e.path, f"image not listed in {js.name} (an image with no objects is listed there "
                                 "with no annotations)")
    return js, label_of, names, items, objects


def _bbox(a: dict, what: str) -> list[float]:
    """An annotation's ``bbox`` ``[x, y, w, h]`` as ``[x1, y1, x2, y2]``."""
    _fields(a, ("bbox",), what)
    bb = a["bbox"]
    if not isinstance(bb, list) or len(bb) != 4:
        raise ValueError(f"{what}: bbox must be [x, y, width, height], got {bb!r}")
    x, y, w, h = (number(v, f"{what}: bbox[{j}]") for j, v in enumerate(bb))
    if w <= 0 or h <= 0:
        raise ValueError(f"{what}: bbox {bb} has no {'width' if w <= 0 else 'height'} (x2 <= x1 or y2 <= y1)")
    return [x, y, x + w, y + h]


def _bbox_and_outline(a: dict, what: str):
    """``(box, segmentation or None)``: the ``bbox`` and, where the annotation has one, its
    ``segmentation`` checked for form (:func:`.coco_seg._segmentation`)."""
    from .coco_seg import _segmentation

    seg = a.get("segmentation") if isinstance(a, dict) else None
    return _bbox(a, what), (None if seg is None or seg == [] else _segmentation(a, what))


def load_coco(path: Path, subset: str = "train", *, skip_bad: bool = False, masks: bool = False):
    """``(dataset, bad items, description)`` of a COCO set (see the module doc); with ``masks``,
    a :class:`CocoInstances` whose items carry instance masks, where the file has outlines."""
    problems = Problems(skip_bad)
    js, _, names, items, objects = read_coco(path, subset, problems, _bbox_and_outline if masks else _bbox)
    outlines = masks and any(parsed[1] is not None for objs in objects.values() for _, _, parsed, _ in objs)
    segmentations = {}
    for iid, it in items.items():
        segs = segmentations.setdefault(iid, [])
        for label, crowd, parsed, what in objects.get(iid, ()):
            box, seg = parsed if masks else (parsed, None)
            it.boxes.append(box)
            it.labels.append(label)
            it.difficult.append(crowd)
            it.where.append(what)
            segs.append(seg)
    if outlines:
        sizes = _check_outlines(js, items, segmentations, problems)
    ds, text = finish(list(items.values()), names, problems, FORMAT, js)
    if outlines:
        by_image = {it.image: iid for iid, it in items.items()}
        keys = [by_image[f] for f in ds.files]
        ds = CocoInstances(ds, [segmentations[k] for k in keys], [sizes[k] for k in keys])
        text += "; instance masks from the segmentations"
    elif masks:
        text += f"; no instance masks ({js.name} has no segmentation)"
    return ds, problems.items, text


def _check_outlines(js: Path, items: dict, segmentations: dict, problems: Problems) -> dict:
    """Check every object's outline against its image (see the module doc); the bad ones are
    ``problems`` (their images left out under ``skip_bad``). Returns each image's ``(h, w)``:
    the JSON's ``width``/``height`` (which :func:`finish` checks against the file), else the file's."""
    from pycocotools import mask as mask_utils

    from .annotations import TOLERANCE

    sizes = {}
    for iid, it in items.items():
        w, h = it.size if it.size is not None and all(it.size) else _file_size(it.image) or (0, 0)
        sizes[iid] = (h, w)
        if not h or not w:  # the image does not open: finish() names it
            continue
        for seg, what in zip(segmentations[iid], it.where):
            try:
                if seg is None:
                    raise ValueError(f"{what}: has no segmentation (polygons or RLE); a model that predicts masks "
                                     "needs the outline of every object")
                if isinstance(seg, list):
                    pts = [v for poly in seg for v in poly]
                    xs, ys = pts[0::2], pts[1::2]
                    if min(xs) < -TOLERANCE or min(ys) < -TOLERANCE or max(xs) > w + TOLERANCE or max(ys) > h + TOLERANCE:
                        raise ValueError(f"{what}: polygon reaches ({min(xs):g}..{max(xs):g}, {min(ys):g}..{max(ys):g}), "
                                         f"outside the {w}x{h} image")
                elif list(seg["size"]) != [h, w]:
                    raise ValueError(f"{what}: RLE size {seg['size']} (height, width) is not the image's [{h}, {w}]")
                elif isinstance(seg["counts"], str):  # pycocotools decodes bad counts to garbage, unchecked
                    runs = rle_counts(seg["counts"])
                    if runs is None or min(runs, default=0) < 0 or sum(runs) != h * w:
                        raise ValueError(f"{what}: RLE counts do not decode to runs covering the {w}x{h} image "
                                         f"(a corrupt or truncated string)")
                area = int(mask_utils.area(_rle(seg, h, w)))
                if area == 0:
                    raise ValueError(f"{what}: segmentation covers no pixel (an empty mask)")
            except ValueError as e:
                problems(js, str(e), key=it.image)
                break
    return sizes


def _rle(seg, h: int, w: int) -> dict:
    """One compressed RLE of an object's polygons or RLE (``pycocotools.mask``)."""
    from pycocotools import mask as mask_utils

    if isinstance(seg, list):
        return mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
    if isinstance(seg["counts"], list):
        return mask_utils.frPyObjects(seg, h, w)
    return {"size": list(seg["size"]), "counts": seg["counts"].encode("ascii")}


def rle_counts(s: str) -> list[int] | None:
    """The run lengths of COCO's compressed RLE string ``s`` (``None`` where it ends inside a
    number). Each number is written in 5-bit groups, low first, as characters from ``'0'`` (48)
    with bit 0x20 meaning "more follows" and bit 0x10 of the last group its sign; from the third
    number on, each is stored as its difference from the number two before it."""
    counts: list[int] = []
    p = 0
    while p < len(s):
        x = k = 0
        more = True
        while more:
            if p >= len(s):
                return None
            c = ord(s[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p, k = p + 1, k + 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        counts.append(x + counts[-2] if len(counts) > 2 else x)
    return counts


def _file_size(path: str) -> tuple[int, int] | None:
    """``(width, height)`` of an image file as decoded (EXIF orientation applied), else ``None``."""
    from .annotations import _probe

    size, _ = _probe(path)
    return size


class CocoInstances(ImageDataset):
    """A COCO detection set whose items also carry ``masks`` (uint8 0/1 ``[k, H, W]``, one per box),
    drawn from the objects' polygons or RLE when an item is read (see the module doc). Built from
    the box dataset ``ds`` with, per item, its objects' segmentations (in box order) and its
    image's ``(h, w)``; subsets, splits and class remaps keep them."""

    def __init__(self, ds: ImageDataset, segmentations: list[list], sizes: list[tuple[int, int]]) -> None:
        super().__init__(ds.class_names, **ds._source(), transform=ds.transform, task="detection", targets=ds.targets)
        if len(segmentations) != len(self) or len(sizes) != len(self):
            raise ValueError(f"{len(self)} images but {len(segmentations)} segmentation lists and {len(sizes)} sizes")
        self.segmentations, self.sizes = list(segmentations), list(sizes)

    def target(self, i: int) -> dict:
        from .coco_seg import decode

        out = super().target(i)
        h, w = self.sizes[i]
        segs = self.segmentations[i]
        masks = [torch.from_numpy(decode(seg, h, w)) for seg in segs]
        out["masks"] = torch.stack(masks) if masks else torch.zeros(0, h, w, dtype=torch.uint8)
        return out

    def _like(self, class_names, labels, targets, idx=None) -> CocoInstances:
        base = ImageDataset(class_names, labels, **self._source(idx), transform=self.transform, task=self.task,
                            targets=targets)
        pick = range(len(self)) if idx is None else idx.tolist()
        return CocoInstances(base, [self.segmentations[j] for j in pick], [self.sizes[j] for j in pick])
