"""ImageFolder trees: ``root/<class>/**/<image>``, one folder per class (sorted names = labels).

A root whose folders are all split names (``train``, ``val``, ``valid``, ``validation``,
``test``) is a tree per split; ``subset`` picks one (``load_dataset(root, subset="test")``;
``"val"`` falls back to ``test/``). A tree without split folders ignores ``subset``.

Images are read with Pillow, EXIF orientation applied, and converted to the dataset's channel
count — 1 when every image is grey, else 3:

* ``1`` (bilevel), ``L``: grey; replicated to 3 channels in a colour dataset.
* 16-bit and 32-bit integer grey (``I;16*``, ``I``): clipped to 0..65535 and divided by 257
  (rounded), i.e. the full 16-bit range maps onto 0..255. ``F`` (float): clipped to 0..255.
* alpha (``RGBA``, ``LA``, ``PA``, palette with a transparent colour): composited onto white.
* palette (``P``), ``CMYK``, ``YCbCr``, ``LAB``, ``HSV``, ``RGBX``: converted to RGB.

Files are taken by extension (:data:`IMAGE_EXTENSIONS`, any case); hidden files (``.name``) are
ignored and other extensions are ignored with one warning. Errors name the file: an empty file,
a file Pillow cannot identify (not an image, corrupt header), a file whose pixel data is
truncated or corrupt, an image over :data:`MAX_IMAGE_PIXELS` (a decompression-bomb guard,
checked from the header before any pixel is decoded; Pillow's own ``Image.MAX_IMAGE_PIXELS``
applies too), a class folder that is empty or holds no images. With ``skip_bad=True`` each is
skipped instead (an empty class is dropped from the class list) and listed in ``bad_files``.

Small images are decoded once into one uint8 ``[N, C, H, W]`` tensor: when all images have one
size (or ``image_size`` is given: shorter side resized to it, then the centre square cropped)
and the tensor fits in :data:`MAX_MEMORY_BYTES`. Otherwise items are decoded lazily (native
size, or resized as above) and ``ds.images`` is ``None``. Decoded trees are also cached on disk
(``cache``: ``None`` = for trees of :data:`DISK_CACHE_MIN_FILES` files or more) as one
``.safetensors`` file in ``$ARCHZOO_CACHE`` (default ``~/.cache/archzoo``)``/datasets``, keyed
by the tree's file list, sizes and modification times and the loading options; never pickled.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .dataset import ImageDataset

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm", ".pbm", ".pnm")
SPLIT_NAMES = ("train", "val", "valid", "validation", "test")
MAX_IMAGE_PIXELS = 89_478_485  # Pillow's default warning limit (about 0.25 GB of 24-bit pixels)
MAX_MEMORY_BYTES = 4 << 30
DISK_CACHE_MIN_FILES = 2000
CACHE_VERSION = 1
_GREY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}


class BadImageError(ValueError):
    """A file that cannot become a training image; ``path`` and ``reason`` say which and why."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason


# ---------------------------------------------------------------- one image


def _open(path: str | os.PathLike) -> Image.Image:
    """Open ``path`` (header only) and apply the size guard."""
    try:
        if os.path.getsize(path) == 0:
            raise BadImageError(path, "empty file (0 bytes)")
        img = Image.open(path)
    except BadImageError:
        raise
    except UnidentifiedImageError:
        raise BadImageError(path, "not an image Pillow can identify (corrupt header or another file type)") from None
    except Image.DecompressionBombError as e:
        raise BadImageError(path, f"refused by Pillow's decompression-bomb guard: {e}") from None
    except OSError as e:
        raise BadImageError(path, f"cannot be read: {e}") from None
    w, h = img.size
    if w * h > MAX_IMAGE_PIXELS:
        img.close()
        raise BadImageError(
            path,
            f"{w}x{h} = {w * h:,} pixels is over the limit of {MAX_IMAGE_PIXELS:,} (decompression-bomb guard); "
            "if the image is genuine, raise archzoo.data.folder.MAX_IMAGE_PIXELS",
        )
    if w == 0 or h == 0:
        img.close()
        raise BadImageError(path, f"image has no pixels ({w}x{h})")
    return img


def _to_array(img: Image.Image) -> np.ndarray:
    """Pillow image -> uint8 ``[H, W, 1 or 3]`` by the conversions in the module docstring."""
    mode = img.mode
    if mode.startswith("I") or mode == "F":
        a = np.asarray(img).astype(np.float64)
        a = np.clip(a, 0, 255) if mode == "F" else np.round(np.clip(a, 0, 65535) / 257.0)
        img = Image.fromarray(a.astype(np.uint8), "L")
    elif mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    elif mode in ("PA", "La"):
        img = img.convert("RGBA" if mode == "PA" else "LA")
    elif mode == "1":
        img = img.convert("L")
    elif mode not in ("L", "LA", "RGB", "RGBA"):
        img = img.convert("RGBA" if mode == "RGBa" else "RGB")
    a = np.asarray(img)
    if a.ndim == 2:
        a = a[:, :, None]
    if img.mode in ("LA", "RGBA"):  # composite onto white
        alpha = a[:, :, -1:].astype(np.float32) / 255.0
        a = np.round(a[:, :, :-1] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    return a


def _resize_crop(a: np.ndarray, size: int) -> np.ndarray:
    """Shorter side to ``size`` (Pillow's antialiased bilinear), then the centre ``size x size``."""
    h, w = a.shape[:2]
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    if (nw, nh) != (w, h):
        img = Image.fromarray(a[:, :, 0] if a.shape[2] == 1 else a).resize((nw, nh), Image.Resampling.BILINEAR)
        a = np.asarray(img).reshape(nh, nw, a.shape[2])
    top, left = (nh - size) // 2, (nw - size) // 2
    return a[top:top + size, left:left + size]


def decode_image(path: str | os.PathLike, channels: int | None = 3, image_size: int | None = None) -> np.ndarray:
    """Read ``path`` as uint8 ``[H, W, channels]`` (``None``: the image's own, 1 or 3), resized
    as in the module docstring when ``image_size`` is given; raises :class:`BadImageError`."""
    img = _open(path)
    try:
        if image_size and img.format == "JPEG":
            img.draft(img.mode, (image_size, image_size))  # let libjpeg decode at a reduced scale
        img.load()
        if "exif" in img.info or img.format in ("TIFF", "MPO"):  # orientation can only live there
            img = ImageOps.exif_transpose(img)
        a = _to_array(img)
    except BadImageError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise BadImageError(path, f"pixel data is truncated or corrupt: {e}") from None
    finally:
        img.close()
    if image_size:
        a = _resize_crop(a, image_size)
    if channels is not None and a.shape[2] != channels:
        a = np.repeat(a, 3, axis=2) if channels == 3 else np.asarray(Image.fromarray(a).convert("L"))[:, :, None]
    return a


class ImageDecoder:
    """``decoder(path)`` -> uint8 tensor ``[C, H, W]``: the per-item decode of lazy datasets
    (a plain class, so DataLoader worker processes can receive it)."""

    def __init__(self, channels: int, image_size: int | None = None) -> None:
        self.channels, self.image_size = channels, image_size

    def __call__(self, path: str) -> torch.Tensor:
        return torch.from_numpy(np.array(decode_image(path, self.channels, self.image_size).transpose(2, 0, 1)))


# ---------------------------------------------------------------- the tree


def resolve_root(root: Path, subset: str) -> Path:
    """``root/<subset>`` when every folder in ``root`` is a split name, else ``root`` itself.
    ``"val"`` also matches ``valid``/``validation`` and, when there is none, ``test``."""
    dirs = {d.name.lower(): d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")}
    if not dirs or not all(d in SPLIT_NAMES for d in dirs):
        return root
    wanted = subset.lower()
    names = ("val", "valid", "validation", "test") if wanted in ("val", "valid", "validation") else (wanted,)
    for name in names:
        if name in dirs:
            return dirs[name]
    raise ValueError(f"{root} holds the splits {sorted(d.name for d in dirs.values())}, not {subset!r}; "
                     "pass subset= one of them")


def _walk(folder: Path) -> list[os.DirEntry]:
    """All non-hidden files under ``folder``, recursively, sorted by path."""
    out: list[os.DirEntry] = []
    stack = [str(folder)]
    while stack:
        with os.scandir(stack.pop()) as it:
            for e in it:
                if e.name.startswith("."):
                    continue
                if e.is_dir(follow_symlinks=True):
                    stack.append(e.path)
                elif e.is_file(follow_symlinks=True):
                    out.append(e)
    return sorted(out, key=lambda e: e.path)


def scan_tree(root: Path, skip_bad: bool):
    """Class names, image files with their labels and ``(size, mtime_ns)`` stats, and the bad
    classes skipped. Raises for an empty class folder or one without images unless ``skip_bad``."""
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise ValueError(f"{root} has no class folders; an ImageFolder tree is {root}/<class>/<image files>")
    classes, files, labels, stats, bad = [], [], [], [], []
    ignored: Counter = Counter()
    for d in class_dirs:
        entries = _walk(d)
        images = []
        for e in entries:
            if e.name.lower().endswith(IMAGE_EXTENSIONS):
                images.append(e)
            else:
                ignored[Path(e.name).suffix.lower() or "(no extension)"] += 1
        if not images:
            others = ", ".join(sorted(e.name for e in entries)[:5]) + (", ..." if len(entries) > 5 else "")
            reason = f"class folder has no image files (only {others})" if entries else "empty class folder"
            if not skip_bad:
                raise ValueError(f"{d}: {reason}; remove it or pass skip_bad=True")
            bad.append((str(d), reason))
            continue
        for e in images:
            st = e.stat()
            files.append(e.path)
            stats.append((st.st_size, st.st_mtime_ns))
            labels.append(len(classes))
        classes.append(d.name)
    if not classes:
        raise ValueError(f"{root}: no class folder holds any image ({', '.join(IMAGE_EXTENSIONS)})")
    if ignored:
        warnings.warn(f"{root}: ignored {sum(ignored.values())} files that are not images by extension: "
                      + ", ".join(f"{n} {ext}" for ext, n in ignored.most_common()), stacklevel=3)
    return classes, files, labels, stats, bad


# ---------------------------------------------------------------- the disk cache


def cache_dir() -> Path:
    return Path(os.environ.get("ARCHZOO_CACHE") or Path.home() / ".cache" / "archzoo") / "datasets"


def _cache_key(root: Path, classes, files, stats, bad_classes, image_size, skip_bad) -> str:
    h = hashlib.sha256()
    head = {"v": CACHE_VERSION, "root": str(root.resolve()), "classes": classes, "bad": bad_classes,
            "image_size": image_size, "skip_bad": skip_bad, "max_pixels": MAX_IMAGE_PIXELS}
    h.update(json.dumps(head, sort_keys=True).encode())
    rootlen = len(str(root)) + 1
    for f, (size, mtime) in zip(files, stats):
        h.update(f"{f[rootlen:]}\0{size}\0{mtime}\n".encode())
    return h.hexdigest()[:40]


def _read_cache(path: Path):
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads(f.metadata()["archzoo_dataset"])
            return f.get_tensor("images"), f.get_tensor("labels"), meta
    except Exception as e:  # a damaged cache file is rebuilt, never trusted
        warnings.warn(f"ignoring unreadable dataset cache {path}: {e}", stacklevel=4)
        return None


def _write_cache(path: Path, images: torch.Tensor, labels: torch.Tensor, meta: dict) -> None:
    from safetensors.torch import save_file

    from ..checkpoint import atomic_write

    try:
        atomic_write(path, lambda tmp: save_file({"images": images, "labels": labels}, tmp,
                                                 metadata={"archzoo_dataset": json.dumps(meta)}))
    except OSError as e:
        warnings.warn(f"could not write the dataset cache {path}: {e}", stacklevel=4)


# ---------------------------------------------------------------- loading


def _decode_all(files: list[str], skip_bad: bool, image_size: int | None, bad: list):
    """One pass over ``files``. While every image has one size and the set fits in memory,
    decode each into one ``[N, 3, H, W]`` tensor; once that fails, only read headers (the
    dataset will decode lazily). Returns the kept indices, the tensor or ``None``, and whether
    every image is grey."""
    n, shape, images = len(files), None, None
    keep, grey, lazy = [], True, False
    for i, f in enumerate(files):
        try:
            if lazy:
                with _open(f) as img:
                    grey &= img.mode in _GREY_MODES
            else:
                a = decode_image(f, None, image_size)
                if shape is None:
                    shape = a.shape[:2]
                    lazy = n * 3 * shape[0] * shape[1] > MAX_MEMORY_BYTES
                    images = None if lazy else torch.empty(n, 3, *shape, dtype=torch.uint8)
                if a.shape[:2] != shape:  # differently sized images: decode them per item
                    lazy, images = True, None
                grey &= a.shape[2] == 1
                if images is not None:
                    images[len(keep)].numpy()[...] = a.transpose(2, 0, 1)  # grey broadcasts to 3 channels
            keep.append(i)
        except BadImageError as e:
            if not skip_bad:
                raise
            bad.append((e.path, e.reason))
    if images is not None:
        images = images[: len(keep), :1].clone() if grey else images[: len(keep)]
    return keep, images, grey


def _drop_unreadable_classes(root: Path, classes: list[str], labels: torch.Tensor, bad: list):
    """With ``skip_bad``, a class whose every file was skipped is dropped like an empty class
    folder (and listed in ``bad``), so no class stays in the list without a single image."""
    counts = torch.bincount(labels, minlength=len(classes)).tolist()
    kept = [i for i, n in enumerate(counts) if n]
    if len(kept) == len(classes):
        return classes, labels
    for i, n in enumerate(counts):
        if not n:
            bad.append((str(root / classes[i]), "class folder has no readable image"))
    remap = torch.full((len(classes),), -1, dtype=torch.int64)
    remap[kept] = torch.arange(len(kept))
    return [classes[i] for i in kept], remap[labels]


def load_image_folder(root: Path, subset: str = "train", *, skip_bad: bool = False, image_size: int | None = None,
                      cache: bool | None = None) -> tuple[ImageDataset, list[tuple[str, str]]]:
    """Read an ImageFolder tree (see the module docstring); returns the dataset and the bad files."""
    root = resolve_root(Path(root), subset)
    classes, files, labels, stats, bad = scan_tree(root, skip_bad)
    use_cache = len(files) >= DISK_CACHE_MIN_FILES if cache is None else cache
    cpath = None
    if use_cache:
        cpath = cache_dir() / f"{_cache_key(root, classes, files, stats, bad, image_size, skip_bad)}.safetensors"
        if cpath.is_file() and (hit := _read_cache(cpath)) is not None:
            images, labels_t, meta = hit
            return ImageDataset(meta["class_names"], labels_t, images=images), [tuple(b) for b in meta["bad_files"]]

    keep, images, grey = _decode_all(files, skip_bad, image_size, bad)
    if not keep:
        raise ValueError(f"{root}: none of the image files could be read (first: {bad[0][0]}: {bad[0][1]})")
    labels_t = torch.as_tensor([labels[i] for i in keep], dtype=torch.int64)
    classes, labels_t = _drop_unreadable_classes(root, classes, labels_t, bad)
    if images is None:
        decoder = ImageDecoder(1 if grey else 3, image_size)
        return ImageDataset(classes, labels_t, files=[files[i] for i in keep], decode=decoder), bad
    if cpath is not None:
        _write_cache(cpath, images, labels_t, {"class_names": classes, "bad_files": bad, "root": str(root)})
    return ImageDataset(classes, labels_t, images=images), bad
