"""Segmentation sets on disk: images paired with class masks, and the map from mask values to classes.

Three formats read to one :class:`MaskDataset` (task ``"segmentation"``), each detected by
:func:`archzoo.data.load_dataset` or forced with a prefix of ``--data``:

* ``masks:DIR`` image/mask folder pairs (this module): ``DIR/image/N.png`` with ``DIR/label/N.png``
  (the U-Net membrane layout). The image folder is one of :data:`IMAGE_DIRS`, the mask folder one
  of :data:`MASK_DIRS` (any case); files pair by their path inside the folder without the
  extension (``image/a/3.jpg`` with ``label/a/3.png``). Split folders (``DIR/train/image``) as in
  :func:`~archzoo.data.folder.resolve_root`.
* ``vocseg:DIR`` Pascal VOC segmentation (:mod:`.voc_seg`); ``cocoseg:DIR`` COCO polygons and RLE
  (:mod:`.coco_seg`).

**Mask values -> classes** (:class:`ValueMap`, stated in the description and kept on the dataset as
``ds.value_map``, so a checkpoint can write predicted masks with the original values). A grey
mask's pixel values, a palette ("P") mask's palette indices; an RGB mask whose three channels are
equal is grey. The map is, in this order:

1. ``class_map=`` (a checkpoint's :meth:`ValueMap.to_json`): the run's map, so new data is read the
   way the model was trained;
2. a class file beside the masks (``classes.txt`` or ``labelmap.txt`` in ``DIR``, the mask folder
   or, for split folders, the root above ``DIR/train``), lines either ``name`` (the i-th line is
   value i), ``VALUE name`` (``255 cell``; ``VALUE ignore`` leaves those pixels unscored), or
   ``name:r,g,b`` (a colour labelmap, as CVAT exports: masks are then read as colours, an RGB
   mask's pixel by its colour);
3. inferred from the values found in all masks (read once, in threads, when the set is loaded):
   0 and 255 only (or one of them) -> binary masks, two classes ``value_0`` and ``value_255`` (the membrane labels:
   0 = membrane is class 0, 255 = cell is class 1); ``0..m`` (and 255) -> index masks, class i is
   value i, 255 is :data:`~archzoo.data.IGNORE_INDEX` (not scored, as in Pascal VOC); any other
   set -> every value its own class in increasing order (``{0, 128, 255}``: three classes).

Classes are named ``value_<v>`` unless a class file names them. A value outside the map is an
error naming the mask file and the value.

**Checks**, each an :class:`~archzoo.data.annotations.AnnotationError` naming the file (with
``skip_bad`` the pair is left out and listed, as for detection sets): an image without a mask or a
mask without an image; two files of one name (``3.png`` and ``3.jpg``); an image or a mask that is
missing, empty, truncated or not an image; a mask whose size differs from its image's (EXIF
orientation applied to both); a colour mask where indices are expected; a lossy JPEG mask
(compression invents values at the edges: save masks as PNG); a float mask, or a 16-bit one with a
colour labelmap; a value outside the class map. An empty folder, or one with nothing usable, is an
error naming it.

**Memory**: when every image has one size and the images and masks fit in
:data:`~archzoo.data.folder.MAX_MEMORY_BYTES`, both are decoded once into tensors (``ds.images``,
``ds.targets["mask"]``: the engine's on-device fast path); otherwise images and masks are read
per item (``ds.images`` is ``None``) and the per-class pixel counts found at loading are kept for
:meth:`~archzoo.data.ImageDataset.class_counts`.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..validate import UserError, shown
from .annotations import AnnotationError, Problems
from .dataset import IGNORE_INDEX, ImageDataset

IMAGE_DIRS = ("image", "images", "img", "imgs")
MASK_DIRS = ("label", "labels", "mask", "masks")
CLASS_FILES = ("classes.txt", "labelmap.txt")
IGNORE_NAME = "ignore"  # a class file's name for "not scored"
FORMAT = "image/mask folder pairs"
log = logging.getLogger("archzoo.data")


# ---------------------------------------------------------------- the value map


@dataclass
class ValueMap:
    """Mask values -> classes: class ``i`` is value ``values[i]`` (a packed ``0xRRGGBB`` colour when
    ``colour``), named ``names[i]``; values in ``ignore`` become :data:`IGNORE_INDEX`. ``rule``
    says how the map was chosen, ``source`` the class file it was read from (if any)."""

    values: list[int]
    names: list[str]
    ignore: list[int] = field(default_factory=list)
    colour: bool = False
    rule: str = ""
    source: str | None = None

    def __post_init__(self) -> None:
        where = shown(self.source) if self.source else "the class map"
        if len(self.values) != len(self.names):
            raise UserError(f"{where}: {len(self.values)} values but {len(self.names)} class names")
        if not self.values:
            raise UserError(f"{where}: no class")
        if len(self.values) > IGNORE_INDEX:
            raise UserError(f"{where}: {len(self.values)} classes; a segmentation set has at most {IGNORE_INDEX} "
                            "(if the masks are photos or lossy JPEGs, their values are no classes)")
        keys = [*self.values, *self.ignore]
        dup = sorted({v for v in keys if keys.count(v) > 1})
        if dup:
            raise UserError(f"{where}: the value {self._show(dup[0])} is mapped more than once")
        dup = sorted({n for n in self.names if self.names.count(n) > 1})
        if dup:
            raise UserError(f"{where}: names the classes {dup[:5]} more than once")
        order = np.argsort(np.asarray(keys, dtype=np.int64), kind="stable")
        self._keys = np.asarray(keys, dtype=np.int64)[order]
        self._classes = np.asarray([*range(len(self.values)), *[IGNORE_INDEX] * len(self.ignore)], np.uint8)[order]

    def _show(self, v: int) -> str:
        return f"({v >> 16}, {(v >> 8) & 255}, {v & 255})" if self.colour else str(v)

    def unknown(self, values: np.ndarray) -> list[int]:
        """The values of ``values`` that the map does not hold."""
        return [int(v) for v in np.setdiff1d(values, self._keys)]

    def apply(self, raw: np.ndarray, path=None) -> np.ndarray:
        """Raw mask values -> uint8 class indices (:data:`IGNORE_INDEX` where ignored); a value
        outside the map raises, naming ``path``."""
        if raw.dtype == np.uint8 and self._keys.max() < 256:
            lut = np.full(256, -1, dtype=np.int16)
            lut[self._keys] = self._classes
            out = lut[raw]
            bad = out < 0
        else:
            pos = np.clip(np.searchsorted(self._keys, raw), 0, len(self._keys) - 1)
            out, bad = self._classes[pos], self._keys[pos] != raw
        if bad.any():
            v = int(raw[bad].flat[0])
            raise AnnotationError(path or "a mask", f"value {self._show(v)} is not in the class map "
                                                    f"({self.describe(8)})")
        return out.astype(np.uint8, copy=False)

    def describe(self, limit: int = 12) -> str:
        """``0 -> value_0, 255 -> value_255 (binary masks: ...)``: the map in words."""
        parts = [f"{self._show(v)} -> {n}" for v, n in zip(self.values, self.names)]
        parts = parts[:limit] + (["..."] if len(parts) > limit else [])
        parts += [f"{self._show(v)} -> ignore" for v in self.ignore]
        why = self.rule + (f" from {shown(self.source)}" if self.source else "")
        return ", ".join(parts) + (f" ({why})" if why else "")

    def to_json(self) -> dict:
        """Plain data for a checkpoint's metadata; :meth:`from_json` reads it back."""
        return {"values": list(map(int, self.values)), "names": list(self.names), "ignore": list(map(int, self.ignore)),
                "colour": self.colour}

    @classmethod
    def from_json(cls, d: dict) -> ValueMap:
        try:
            return cls([int(v) for v in d["values"]], [str(n) for n in d["names"]],
                       [int(v) for v in d.get("ignore", [])], bool(d.get("colour", False)), rule="the checkpoint's map")
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise UserError(f"class_map must be a value map (values, names, ignore), got {d!r}: {e}") from None


def name_of(value: int) -> str:
    return f"value_{value}"


def infer_value_map(values: Sequence[int]) -> ValueMap:
    """The map of mask folders without a class file (see the module doc): binary 0/255, index
    masks ``0..m`` with 255 ignored, or every value its own class."""
    vals = sorted(int(v) for v in values)
    if not vals:
        raise UserError("no mask value found")
    if set(vals) <= {0, 255}:
        return ValueMap([0, 255], [name_of(0), name_of(255)], rule="binary masks: 0 and 255 are two classes")
    rest = [v for v in vals if v != 255]
    if rest == list(range(len(rest))):
        ignore = [255] if 255 in vals else []
        rule = f"index masks 0..{rest[-1]}" + ("; 255 is not scored, as in Pascal VOC" if ignore else "")
        return ValueMap(rest, [name_of(v) for v in rest], ignore, rule=rule)
    return ValueMap(vals, [name_of(v) for v in vals], rule="grey levels: every value a class")


_EXPLICIT = re.compile(r"^(\d+)\s*[:=]?\s+(\S.*)$|^(\d+)\s*[:=]\s*(\S.*)$")
_COLOUR = re.compile(r"^([^:]*):\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*(:.*)?$")


def read_class_file(path: Path) -> ValueMap:
    """A class file's map (see the module doc for the three line forms; ``#`` starts a comment
    line, blank lines are skipped)."""
    try:
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as e:
        raise AnnotationError(path, f"cannot be read as a UTF-8 class list: {e}") from None
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    if not lines:
        raise AnnotationError(path, "lists no class names")
    pairs: list[tuple[int, str]] = []
    colour = any(_COLOUR.match(ln) for ln in lines)
    explicit = not colour and all(_EXPLICIT.match(x) for x in lines)
    for k, ln in enumerate(lines):
        if colour:
            m = _COLOUR.match(ln)
            if not m or any(int(c) > 255 for c in m.group(2, 3, 4)):
                raise AnnotationError(path, f"line {ln!r} is not name:r,g,b (0..255 each), as the other lines are")
            r, g, b = (int(c) for c in m.group(2, 3, 4))
            pairs.append(((r << 16) | (g << 8) | b, m.group(1).strip()))
        elif explicit:
            m = _EXPLICIT.match(ln)
            value, name = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
            if int(value) > 65535:
                raise AnnotationError(path, f"line {ln!r}: a mask value is 0..65535")
            pairs.append((int(value), name.strip()))
        else:
            pairs.append((k, ln))
    kept = [(v, n) for v, n in pairs if n != IGNORE_NAME]
    ignore = [v for v, n in pairs if n == IGNORE_NAME]
    form = "colours" if colour else "values and names" if explicit else "names in value order"
    try:
        return ValueMap([v for v, _ in kept], [n for _, n in kept], ignore, colour, rule=form, source=str(path))
    except UserError as e:
        raise AnnotationError(path, str(e).split(": ", 1)[-1]) from None


def find_class_file(*folders: Path) -> Path | None:
    """The one class file (:data:`CLASS_FILES`) in the first of ``folders`` that holds one."""
    for folder in folders:
        found = [folder / n for n in CLASS_FILES if (folder / n).is_file()]
        if len(found) > 1:
            raise AnnotationError(folder, f"holds both {' and '.join(p.name for p in found)}; keep the one that "
                                          "maps the mask values to classes")
        if found:
            return found[0]
    return None


# ---------------------------------------------------------------- reading one mask


def read_mask(path: str, colour: bool = False) -> np.ndarray:
    """The raw values ``[H, W]`` of the mask file ``path`` (EXIF orientation applied): uint8 for
    8-bit grey and palette masks (palette indices), int32 for 16-bit ones, packed ``0xRRGGBB``
    colours when ``colour``. Raises :class:`~archzoo.data.folder.BadImageError` naming the file."""
    from PIL import ImageOps

    from .folder import BadImageError, _open

    if path.lower().endswith((".jpg", ".jpeg")):
        raise BadImageError(path, "a JPEG mask: lossy compression changes the class values at every edge; "
                                  "save masks as PNG")
    img = _open(path)
    try:
        img.load()
        if "exif" in img.info or img.format in ("TIFF", "MPO"):
            img = ImageOps.exif_transpose(img)
        return _values(img, colour, path)
    except BadImageError:
        raise
    except Exception as e:  # OSError, ValueError, SyntaxError ... from the decoders
        raise BadImageError(path, f"pixel data is truncated or corrupt ({type(e).__name__}: {e})") from None
    finally:
        img.close()


def _values(img, colour: bool, path: str) -> np.ndarray:
    from .folder import BadImageError

    mode = img.mode
    if mode == "1":
        img, mode = img.convert("L"), "L"
    if mode.startswith("I"):
        if colour:
            raise BadImageError(path, f"a 16-bit mask ({mode}) cannot hold the colours of a labelmap")
        a = np.asarray(img).astype(np.int32)
        if a.min() < 0:
            raise BadImageError(path, f"negative mask value {int(a.min())}")
        return a
    if mode in ("F", "CMYK", "YCbCr", "LAB", "HSV"):
        raise BadImageError(path, f"a {mode} mask: masks are grey, palette (P) or, with a colour labelmap, RGB images")
    if colour:
        a = np.asarray(img.convert("RGB"), dtype=np.int32)
        return (a[..., 0] << 16) | (a[..., 1] << 8) | a[..., 2]
    if mode in ("L", "P"):
        return np.asarray(img)
    if mode in ("LA", "PA"):
        return np.asarray(img.getchannel(0))
    a = np.asarray(img.convert("RGB") if mode != "RGB" else img)
    r, g, b = a[..., 0], a[..., 1], a[..., 2]
    if np.array_equal(r, g) and np.array_equal(r, b):
        return np.ascontiguousarray(r)
    i = np.argwhere((r != g) | (r != b))[0]
    raise BadImageError(path, f"a colour (RGB) mask where class indices are expected (pixel ({i[1]}, {i[0]}) is "
                              f"{tuple(int(c) for c in a[i[0], i[1], :3])}); save masks as grey or palette (P) PNGs "
                              "whose values are the classes, or name the colours in labelmap.txt (name:r,g,b)")


class FileMasks:
    """The mask source of mask files: ``read(path, size)`` -> raw values; picklable for DataLoader workers."""

    def __init__(self, colour: bool = False) -> None:
        self.colour = colour

    def read(self, key: str, size: tuple[int, int]) -> np.ndarray:
        from .folder import BadImageError

        raw = read_mask(key, self.colour)
        if raw.shape != tuple(size):
            raise BadImageError(key, f"mask is {raw.shape[1]}x{raw.shape[0]} pixels, but its image is "
                                     f"{size[1]}x{size[0]}")
        return raw

    def name(self, key) -> str:
        return str(key)


class MaskReader:
    """``reader((key, h, w))`` -> uint8 class-index mask tensor ``[h, w]`` of a lazy :class:`MaskDataset`
    (``lut``: a further class re-indexing, from :meth:`MaskDataset.remap_classes`)."""

    def __init__(self, source, value_map: ValueMap, lut: np.ndarray | None = None) -> None:
        self.source, self.value_map, self.lut = source, value_map, lut

    def __call__(self, key) -> torch.Tensor:
        k, h, w = key
        out = self.value_map.apply(self.source.read(k, (h, w)), self.source.name(k))
        if self.lut is not None:
            out = self.lut[out]
        return torch.from_numpy(np.ascontiguousarray(out))


# ---------------------------------------------------------------- the dataset


class MaskDataset(ImageDataset):
    """A segmentation :class:`~archzoo.data.ImageDataset` read from mask files or annotations.

    ``value_map`` (a :class:`ValueMap`) says which mask value each class is. In memory: ``images``
    and ``targets={"mask": uint8 [N, H, W]}`` as for any segmentation set. Lazy: ``files`` with
    ``decode`` and ``mask_keys`` with ``read_mask(key)`` -> uint8 ``[H, W]`` class indices, read per
    item; ``counts`` (int64 ``[N, K]``, pixels of each class per item) answers :meth:`class_counts`
    without reading the masks again.
    """

    def __init__(self, class_names, *, value_map: ValueMap, images=None, files=None, decode=None, targets=None,
                 mask_keys: Sequence | None = None, read_mask: Callable | None = None,
                 counts: torch.Tensor | None = None, transform=None) -> None:
        self.value_map = value_map
        self.mask_keys = list(mask_keys) if mask_keys is not None else None
        self.read_mask = read_mask
        self.counts = counts
        if self.mask_keys is not None and read_mask is None:
            raise ValueError("lazy masks need read_mask")
        super().__init__(class_names, images=images, files=files, decode=decode, transform=transform,
                         task="segmentation", targets=targets)
        if self.mask_keys is not None and len(self.mask_keys) != len(self):
            raise ValueError(f"{len(self)} images but {len(self.mask_keys)} masks")

    def _check_targets(self) -> None:
        mask = self.targets.get("mask")
        if self.mask_keys is None and mask is not None and mask.dtype == torch.uint8 and mask.ndim == 3:
            # the base check, with one histogram instead of a boolean index of every pixel (10x faster)
            found = torch.bincount(mask.flatten(), minlength=256)[len(self.class_names):IGNORE_INDEX].nonzero()
            if len(found):
                raise ValueError(f"mask values must lie in [0, {len(self.class_names)}) or be {IGNORE_INDEX}, "
                                 f"got {len(self.class_names) + int(found[0])}")
            if self.images is not None and mask.shape[1:] != self.images.shape[2:]:
                raise ValueError(f"masks {tuple(mask.shape[1:])} and images {tuple(self.images.shape[2:])} differ "
                                 "in size")
        elif self.mask_keys is None:
            return super()._check_targets()
        if len(self.class_names) > IGNORE_INDEX:
            raise ValueError(f"a segmentation dataset has at most {IGNORE_INDEX} classes, got {len(self.class_names)}")

    def target(self, i: int) -> dict[str, torch.Tensor]:
        if self.mask_keys is None:
            return super().target(i)
        out = {k: v[i] for k, v in self.targets.items()}
        out["mask"] = self.read_mask(self.mask_keys[i]).long()
        return out

    def class_counts(self) -> torch.Tensor:
        if self.mask_keys is None:
            return super().class_counts()
        if self.counts is None:  # not counted at loading: read every mask
            self.counts = torch.stack([torch.bincount(m[m != IGNORE_INDEX].long(), minlength=self.num_classes)
                                       for m in map(self.read_mask, self.mask_keys)])
        return self.counts.sum(0)

    def _like(self, class_names, labels, targets, idx=None, value_map=None, read_mask=None, counts=None):
        source = self._source(idx)
        keys = self.mask_keys
        if keys is not None and idx is not None:
            keys = [keys[i] for i in idx.tolist()]
        if counts is None and self.counts is not None:
            counts = self.counts if idx is None else self.counts[idx]
        return MaskDataset(class_names, value_map=value_map or self.value_map, **source, targets=targets,
                           mask_keys=keys, read_mask=read_mask or self.read_mask, counts=counts,
                           transform=self.transform)

    def remap_classes(self, class_names, lut) -> MaskDataset:
        lut = torch.as_tensor(lut, dtype=torch.int64)
        values, names = [None] * len(class_names), list(class_names)
        for c, v in enumerate(self.value_map.values):
            if values[int(lut[c])] is None:
                values[int(lut[c])] = v
        vm = self.value_map
        if None not in values:
            vm = ValueMap(values, names, list(vm.ignore), vm.colour, vm.rule, vm.source)
        if self.mask_keys is None:
            ds = super().remap_classes(class_names, lut)
            ds.value_map = vm
            return ds
        full = np.full(256, IGNORE_INDEX, dtype=np.uint8)
        full[: len(lut)] = lut.numpy()
        if getattr(self.read_mask, "lut", None) is not None:
            full = full[self.read_mask.lut]
        reader = MaskReader(self.read_mask.source, self.read_mask.value_map, full)
        counts = None
        if self.counts is not None:
            counts = torch.zeros(len(self), len(class_names), dtype=torch.int64).index_add_(1, lut, self.counts)
        return self._like(class_names, None, dict(self.targets), value_map=vm, read_mask=reader, counts=counts)


# ---------------------------------------------------------------- checking pairs and building the dataset


@dataclass
class Pair:
    """One image and its mask (``mask``: a file, or a key of the format's mask source)."""

    image: str
    mask: object


def _threads(fn, items: list) -> list:
    from concurrent.futures import ThreadPoolExecutor

    if len(items) < 4:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:  # Pillow decodes without the GIL
        return list(pool.map(fn, items))


def _head(path: str):
    """``((h, w), grey, None)`` from the header of ``path`` (EXIF orientation applied), or ``(None, None, error)``."""
    from .folder import _GREY_MODES, BadImageError, _open

    try:
        img = _open(path)
        try:
            w, h = img.size
            try:  # a PNG's getexif() decodes the pixels to find a late eXIf chunk: only look where the header has it
                if (img.format != "PNG" or "exif" in img.info) and img.getexif().get(0x0112, 1) in (5, 6, 7, 8):
                    w, h = h, w
            except Exception:  # a corrupt EXIF block: decode_image's exif_transpose ignores it too
                pass
            return (h, w), img.mode in _GREY_MODES, None
        finally:
            img.close()
    except BadImageError as e:
        return None, None, e


def _histogram(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if raw.dtype == np.uint8:
        bc = np.bincount(raw.ravel(), minlength=256)
        values = np.flatnonzero(bc)
        return values, bc[values]
    return np.unique(raw, return_counts=True)


def finish(pairs: list[Pair], problems: Problems, fmt: str, root, source, decide: Callable[[np.ndarray], ValueMap],
           ) -> tuple[MaskDataset, str]:
    """Check ``pairs`` (see the module doc), choose the value map (``decide(values found)``), leave
    out the bad pairs under ``skip_bad`` and build the dataset; returns it and a one-line description
    (also logged). ``source.read(key, (h, w))`` gives a mask's raw values."""
    from .folder import MAX_MEMORY_BYTES, BadImageError, ImageDecoder, decode_image, verify_image

    pairs = [p for p in pairs if p.image not in problems.bad_keys]
    heads = _threads(_head, [p.image for p in pairs])
    ok = []
    for p, (size, grey, err) in zip(pairs, heads):
        if err is not None:
            missing = not os.path.exists(p.image)
            problems(p.image, f"image {'is missing' if missing else 'cannot be decoded'} ({err.reason})", key=p.image)
        else:
            ok.append((p, size, grey))
    if not ok:
        _nothing(problems, root, fmt)
    channels = 1 if all(g for _, _, g in ok) else 3
    sizes = {s for _, s, _ in ok}
    h0, w0 = next(iter(sizes))
    in_memory = len(sizes) == 1 and len(ok) * (channels + 1) * h0 * w0 <= MAX_MEMORY_BYTES

    def check(item):
        p, size, _ = item
        try:
            image = decode_image(p.image, channels) if in_memory else verify_image(p.image)
        except BadImageError as e:
            return None, (p.image, f"image cannot be decoded ({e.reason})")
        if in_memory and image.shape[:2] != tuple(size):  # a PNG whose EXIF orientation follows its pixels
            return None, (p.image, "its EXIF orientation, stored after the pixels, turns the image; save it upright")
        try:
            raw = source.read(p.mask, size)
        except (BadImageError, AnnotationError) as e:
            return None, (e.path, e.reason)
        values, counts = _histogram(raw)
        return (image if in_memory else None, raw if in_memory else None, values, counts), None

    read = []
    for (p, size, _), (got, err) in zip(ok, _threads(check, ok)):
        if err is not None:
            problems(err[0], err[1], key=p.image)
        else:
            read.append((p, size, got))
    if not read:
        _nothing(problems, root, fmt)
    value_map = decide(np.unique(np.concatenate([g[2] for _, _, g in read])))
    kept = []
    for p, size, got in read:
        unknown = value_map.unknown(got[2])
        if unknown:
            hint = ""
            if value_map.source and not value_map.colour:
                hint = (f"; list it in {shown(Path(value_map.source).name)} ('{unknown[0]} name', or "
                        f"'{unknown[0]} {IGNORE_NAME}' to leave those pixels unscored)")
            problems(source.name(p.mask), f"value {value_map._show(unknown[0])} is not in the class map "
                                          f"({value_map.describe(8)}){hint}", key=p.image)
        else:
            kept.append((p, size, got))
    if not kept:
        _nothing(problems, root, fmt)
    n, k = len(kept), len(value_map.values)
    if in_memory:
        images = torch.empty(n, channels, h0, w0, dtype=torch.uint8)
        masks = torch.empty(n, h0, w0, dtype=torch.uint8)
        for i, (p, _, got) in enumerate(kept):
            images[i].numpy()[...] = got[0].transpose(2, 0, 1)
            masks[i].numpy()[...] = value_map.apply(got[1], source.name(p.mask))
        ds = MaskDataset(value_map.names, value_map=value_map, images=images, targets={"mask": masks})
    else:  # the pixels of each class, from the histograms taken above
        counts = torch.zeros(n, k, dtype=torch.int64)
        for i, (_, _, got) in enumerate(kept):
            cls = value_map.apply(got[2])
            scored = cls != IGNORE_INDEX
            counts[i].index_add_(0, torch.from_numpy(cls[scored].astype(np.int64)), torch.from_numpy(got[3][scored]))
        keys = [(p.mask, size[0], size[1]) for p, size, _ in kept]
        ds = MaskDataset(value_map.names, value_map=value_map, files=[p.image for p, _, _ in kept],
                         decode=ImageDecoder(channels),
                         mask_keys=keys, read_mask=MaskReader(source, value_map), counts=counts)
    shape = f"{w0}x{h0}" if len(sizes) == 1 else f"{len({s for _, s, _ in kept})} sizes"
    names = ", ".join(value_map.names[:10]) + (", ..." if k > 10 else "")
    text = (f"detected {fmt}: {n} images ({shape}, {'grey' if channels == 1 else 'colour'}), {k} classes ({names}); "
            f"mask values -> classes: {value_map.describe()}; {'in memory' if in_memory else 'read per item'}; "
            f"in {shown(root)}")
    if problems.items:
        text += f"; {len(problems.items)} bad items left out"
    log.info(text)
    return ds, text


def _nothing(problems: Problems, root, fmt: str):
    first = f" (first: {shown(problems.items[0][0])}: {problems.items[0][1]})" if problems.items else ""
    raise UserError(f"{shown(root)}: no usable image/mask pair in this {fmt} dataset{first}")


# ---------------------------------------------------------------- image/mask folder pairs


def pair_dirs(root: Path) -> tuple[Path, Path] | None:
    """The image and mask folders of ``root`` (see :data:`IMAGE_DIRS`, :data:`MASK_DIRS`), or ``None``."""
    try:
        dirs = {e.name.lower(): Path(e.path) for e in os.scandir(root) if e.is_dir() and not e.name.startswith(".")}
    except OSError:
        return None
    images = [dirs[n] for n in IMAGE_DIRS if n in dirs]
    masks = [dirs[n] for n in MASK_DIRS if n in dirs]
    if not images or not masks:
        return None
    for what, found in (("image", images), ("mask", masks)):
        if len(found) > 1:
            raise AnnotationError(root, f"holds several {what} folders ({', '.join(d.name for d in found)}); keep one")
    return images[0], masks[0]


def is_mask_dir(root: Path) -> bool:
    """Whether ``root`` holds an image folder and a mask folder of image files (a YOLO ``labels/``
    holds ``.txt`` files, not images)."""
    from .folder import IMAGE_EXTENSIONS

    try:
        found = pair_dirs(root)
    except AnnotationError:
        return True  # it is one; loading says what is wrong
    if found is None:
        return False
    for _, _, names in os.walk(found[1]):
        if any(n.lower().endswith(IMAGE_EXTENSIONS) and not n.startswith(".") for n in names):
            return True
    return False


def _by_stem(folder: Path, problems: Problems, skip_bad: bool) -> dict[str, list[str]]:
    """Image files under ``folder`` (recursively, links checked) by their path inside it without the extension."""
    from .folder import IMAGE_EXTENSIONS, _walk

    bad: list = []
    entries = _walk(folder, (os.path.realpath(folder),), bad, skip_bad)
    problems.items += bad
    out: dict[str, list[str]] = {}
    for e in entries:
        if e.name.lower().endswith(IMAGE_EXTENSIONS):
            stem = os.path.splitext(os.path.relpath(e.path, folder))[0].replace(os.sep, "/")
            out.setdefault(stem, []).append(e.path)
    return out


def load_mask_folders(root: Path, subset: str = "train", *, skip_bad: bool = False, class_map=None):
    """``(dataset, bad items, description)`` of image/mask folder pairs (see the module doc)."""
    from .folder import resolve_root

    top = Path(root)
    root = resolve_root(top, subset)
    found = pair_dirs(root)
    if found is None:
        raise AnnotationError(root, f"holds no image and mask folders (one of {'/'.join(IMAGE_DIRS)} and one of "
                                    f"{'/'.join(MASK_DIRS)}, with files of the same names)")
    image_dir, mask_dir = found
    problems = Problems(skip_bad)
    images, masks = _by_stem(image_dir, problems, skip_bad), _by_stem(mask_dir, problems, skip_bad)
    if not images:
        raise AnnotationError(image_dir, "holds no images (an empty image folder)")
    pairs = []
    for stem in sorted(set(images) | set(masks)):
        ims, ms = images.get(stem, []), masks.get(stem, [])
        for what, files in (("image", ims), ("mask", ms)):
            if len(files) > 1:
                problems(files[0], f"two {what}s of one name: {', '.join(Path(f).name for f in files)}; keep one",
                         key=ims[0] if ims else None)
        if ims and ims[0] in problems.bad_keys:
            continue
        if not ms:
            problems(ims[0], f"image without a mask (no {shown(mask_dir.name)}/{stem}.* beside it)", key=ims[0])
        elif not ims:
            problems(ms[0], f"mask without an image (no {shown(image_dir.name)}/{stem}.*)")
        else:
            pairs.append(Pair(ims[0], ms[0]))
    folders = (root, mask_dir) + ((top,) if top != root else ())  # DIR/classes.txt serves DIR/train and DIR/val
    class_file = None if class_map is not None else find_class_file(*folders)
    fixed = _fixed_map(class_map, class_file)
    source = FileMasks(colour=bool(fixed and fixed.colour))
    ds, text = finish(pairs, problems, FORMAT, root, source, lambda values: fixed or infer_value_map(values))
    return ds, problems.items, text


def _fixed_map(class_map, class_file: Path | None) -> ValueMap | None:
    """The map given (a checkpoint's), else the class file's, else ``None`` (inferred from the values)."""
    if class_map is not None:
        return class_map if isinstance(class_map, ValueMap) else ValueMap.from_json(class_map)
    return read_class_file(class_file) if class_file is not None else None
