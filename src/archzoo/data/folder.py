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

import errno
import hashlib
import json
import os
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..validate import shown
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

    def __init__(self, path: str | os.PathLike, reason: str = "") -> None:
        # one argument (a whole message) too: how DataLoader workers re-raise it in the main process
        super().__init__(f"{shown(path)}: {reason}" if reason else str(path))
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
    except Exception as e:  # Pillow's plugins raise many kinds of errors on malformed headers
        raise BadImageError(path, f"not a readable image ({type(e).__name__}: {e})") from None
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
    except Exception as e:  # OSError, ValueError, SyntaxError, struct.error, EOFError ... from the decoders
        raise BadImageError(path, f"pixel data is truncated or corrupt ({type(e).__name__}: {e})") from None
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


def _link_problem(entry: os.DirEntry | Path) -> str | None:
    """Why a symbolic link cannot be followed (dangling, or a loop), else ``None``."""
    path = entry.path if isinstance(entry, os.DirEntry) else str(entry)
    try:
        os.stat(path)
    except FileNotFoundError:
        return f"symbolic link to {shown(os.readlink(path))}, which does not exist"
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "symbolic link loop (the link points, directly or not, to itself)"
        return f"cannot be read: {e.strerror or e}"
    return None


def _is_cycle(real: str, chain: tuple[str, ...]) -> bool:
    """Whether the folder at real path ``real`` is on the walk already (``chain``) or above it:
    walking it would never end."""
    return any(c == real or c.startswith(real.rstrip(os.sep) + os.sep) for c in chain)


def _walk(folder: Path, chain: tuple[str, ...], bad: list, skip_bad: bool) -> list[os.DirEntry]:
    """All non-hidden files under ``folder``, recursively, sorted by path. Symbolic links are
    followed; one that dangles, loops, or leads back to a folder being walked (``chain``: the real
    paths above) raises, or with ``skip_bad`` is listed in ``bad``."""
    out: list[os.DirEntry] = []
    stack = [(str(folder), chain + (os.path.realpath(folder),))]
    while stack:
        path, above = stack.pop()
        try:
            with os.scandir(path) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            _bad(bad, skip_bad, path, f"folder cannot be read: {e.strerror or e}")
            continue
        for e in entries:
            if not _usable(e, above, bad, skip_bad):
                continue
            if e.is_dir(follow_symlinks=True):
                stack.append((e.path, above + (os.path.realpath(e.path),)))
            elif e.is_file(follow_symlinks=True):
                out.append(e)
            else:  # reading a FIFO would wait forever
                _bad(bad, skip_bad, e.path, "not a regular file (a FIFO, socket or device)")
    return sorted(out, key=lambda e: e.path)


def _usable(e: os.DirEntry, above: tuple[str, ...], bad: list, skip_bad: bool) -> bool:
    """Whether a walk may go on with ``e``: not hidden, no broken or looping link, no link to a
    folder in ``above`` (the real paths of the folders it lies in). Bad ones are recorded."""
    if e.name.startswith("."):
        return False
    if e.is_symlink():
        problem = _link_problem(e)
        if problem:
            _bad(bad, skip_bad, e.path, problem)
            return False
    if e.is_dir(follow_symlinks=True):
        real = os.path.realpath(e.path)
        if _is_cycle(real, above):
            _bad(bad, skip_bad, e.path, f"symbolic link to {shown(real)}, a folder above it: following it would never end")
            return False
    return True


def _bad(bad: list, skip_bad: bool, path: str, reason: str) -> None:
    if not skip_bad:
        raise BadImageError(path, reason + "; remove it or pass skip_bad=True (--skip-bad)")
    bad.append((path, reason))


def _class_dirs(root: Path, bad: list, skip_bad: bool) -> list[Path]:
    """The class folders of ``root`` (links followed), sorted; broken links and links back up are bad."""
    chain = (os.path.realpath(root),)
    dirs = []
    for e in sorted(os.scandir(root), key=lambda e: e.name):
        if _usable(e, chain, bad, skip_bad) and e.is_dir(follow_symlinks=True):
            dirs.append(Path(e.path))
    return dirs


def scan_tree(root: Path, skip_bad: bool):
    """Class names, image files with their labels and ``(size, mtime_ns)`` stats, and the bad
    classes skipped. Raises for an empty class folder or one without images unless ``skip_bad``.
    A class folder's name that is not UTF-8 becomes its printable form (``\\xNN`` escapes)."""
    bad: list = []
    class_dirs = _class_dirs(root, bad, skip_bad)
    if not class_dirs:
        raise ValueError(f"{shown(root)} has no class folders; an ImageFolder tree is {shown(root)}/<class>/<image files>")
    chain = (os.path.realpath(root),)
    classes, files, labels, stats = [], [], [], []
    ignored: Counter = Counter()
    for d in class_dirs:
        entries = _walk(d, chain, bad, skip_bad)
        images = []
        for e in entries:
            if e.name.lower().endswith(IMAGE_EXTENSIONS):
                images.append(e)
            else:
                ignored[Path(e.name).suffix.lower() or "(no extension)"] += 1
        if not images:
            others = ", ".join(sorted(shown(e.name) for e in entries)[:5]) + (", ..." if len(entries) > 5 else "")
            reason = f"class folder has no image files (only {others})" if entries else "empty class folder"
            if not skip_bad:
                raise ValueError(f"{shown(d)}: {reason}; remove it or pass skip_bad=True")
            bad.append((str(d), reason))
            continue
        for e in images:
            st = e.stat()
            files.append(e.path)
            stats.append((st.st_size, st.st_mtime_ns))
            labels.append(len(classes))
        classes.append(shown(d.name))
    if not classes:
        raise ValueError(f"{shown(root)}: no class folder holds any image ({', '.join(IMAGE_EXTENSIONS)})")
    dup = sorted({c for c in classes if classes.count(c) > 1})
    if dup:
        raise ValueError(f"{shown(root)}: the class folders {dup[:5]} have the same printable name "
                         "(one is not UTF-8); rename one")
    if ignored:
        warnings.warn(f"{shown(root)}: ignored {sum(ignored.values())} files that are not images by extension: "
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


def verify_image(path: str | os.PathLike) -> bool:
    """Decode ``path`` fully (JPEGs at 1/8 scale, which still reads every byte) to find truncated
    or corrupt pixel data now rather than mid-training; returns whether the image is grey.
    Raises :class:`BadImageError`."""
    img = _open(path)
    try:
        if img.format == "JPEG":
            img.draft(img.mode, (max(img.size[0] // 8, 1), max(img.size[1] // 8, 1)))
        img.load()
        return img.mode in _GREY_MODES
    except Exception as e:  # OSError, ValueError, SyntaxError, struct.error, EOFError ... from the decoders
        raise BadImageError(path, f"pixel data is truncated or corrupt ({type(e).__name__}: {e})") from None
    finally:
        img.close()


def _try_verify(path: str):
    try:
        return verify_image(path), None
    except BadImageError as e:
        return None, e


def _decode_all(files: list[str], skip_bad: bool, image_size: int | None, bad: list):
    """One pass over ``files``. While every image has one size and the set fits in memory,
    decode each into one ``[N, 3, H, W]`` tensor; once that fails, the rest are only verified
    (:func:`verify_image`, in threads) and the dataset decodes them lazily. Either way every
    file's pixels are read once here, so a bad one is reported (or skipped) before training.
    Returns the kept indices, the tensor or ``None``, and whether every image is grey."""
    n, shape, images = len(files), None, None
    keep, grey, lazy = [], True, False
    i = 0
    while i < n and not lazy:
        f = files[i]
        try:
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
        i += 1
    if i < n:
        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1))  # Pillow decodes without the GIL
        try:
            for j, (is_grey, err) in zip(range(i, n), pool.map(_try_verify, files[i:])):
                if err is not None:
                    if not skip_bad:
                        raise err
                    bad.append((err.path, err.reason))
                    continue
                grey &= is_grey
                keep.append(j)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
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
        raise ValueError(f"{shown(root)}: none of the image files could be read (first: {shown(bad[0][0])}: {bad[0][1]})")
    labels_t = torch.as_tensor([labels[i] for i in keep], dtype=torch.int64)
    classes, labels_t = _drop_unreadable_classes(root, classes, labels_t, bad)
    if images is None:
        decoder = ImageDecoder(1 if grey else 3, image_size)
        return ImageDataset(classes, labels_t, files=[files[i] for i in keep], decode=decoder), bad
    if cpath is not None:
        _write_cache(cpath, images, labels_t, {"class_names": classes, "bad_files": bad, "root": str(root)})
    return ImageDataset(classes, labels_t, images=images), bad
