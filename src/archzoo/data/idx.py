"""MNIST-style IDX files: MNIST (LeCun et al. 1998), Fashion-MNIST (Xiao et al. 2017,
arXiv:1708.07747) and look-alikes, plain or gzipped.

A folder with ``train-images-idx3-ubyte`` / ``train-labels-idx1-ubyte`` and ``t10k-...`` (also
``test-...``, ``.`` for the first ``-``, an optional ``.gz``, and any name prefix such as
``emnist-letters-``). An IDX file is a 4-byte magic (two zero bytes, a type code, the number of
dimensions), the dimensions as big-endian int32, then the data; images must be unsigned bytes
``[N, H, W]``, labels unsigned bytes ``[N]``. Class names come from a ``classes.txt`` in the
folder (one per line), else Fashion-MNIST's ten when the folder's path says "fashion", else the
digits 0-9. Wrong magic, a truncated file, mismatched counts and labels outside the class list
are errors naming the file (``skip_bad`` drops out-of-range labels instead).
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np
import torch

from .dataset import ImageDataset

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
DIGIT_CLASSES = [str(d) for d in range(10)]
_NAME = re.compile(r"(train|t10k|test)-(images|labels)[-.]idx(\d)-ubyte(\.gz)?$", re.IGNORECASE)
_SUBSETS = {"train": ("train",), "test": ("t10k", "test")}


def _files(path: Path) -> dict[tuple[str, str], Path]:
    """``(split, kind) -> file``; two candidates for one slot (say ``t10k-`` and ``test-``, or a
    plain and a gzipped copy) are an error rather than a silent pick."""
    out: dict[tuple[str, str], Path] = {}
    for f in sorted(path.iterdir()):
        m = _NAME.search(f.name)
        if m and f.is_file():
            key = ("train" if m.group(1).lower() == "train" else "test", m.group(2).lower())
            if key in out:
                raise ValueError(f"{path}: two {key[0]} {key[1]} files, {out[key].name} and {f.name}; "
                                 "keep one set of IDX files per folder")
            out[key] = f
    return out


def is_idx_dir(path: Path) -> bool:
    return bool(_files(path))


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """The unsigned-byte array of ``ndim`` dimensions stored in the IDX file ``path``."""
    try:
        if path.name.lower().endswith(".gz"):
            with gzip.open(path) as f:
                raw = f.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError) as e:
        raise ValueError(f"{path}: cannot be read ({e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an IDX file (bad magic number {raw[:4].hex() or 'empty'})")
    if raw[2] != 0x08 or raw[3] != ndim:
        raise ValueError(f"{path}: expected unsigned bytes in {ndim} dimensions (magic 0x0008{ndim:02x}), "
                         f"got type 0x{raw[2]:02x} in {raw[3]} dimensions")
    head = 4 + 4 * ndim
    if len(raw) < head:
        raise ValueError(f"{path}: truncated header")
    dims = [int(d) for d in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4)]
    need = int(np.prod(dims))
    if len(raw) - head != need:
        what = "truncated" if len(raw) - head < need else "longer than its header says"
        raise ValueError(f"{path}: {what}: dimensions {dims} need {need:,} bytes of data, found {len(raw) - head:,}")
    return np.frombuffer(raw, dtype=np.uint8, offset=head).reshape(dims)


def class_names_for(path: Path) -> list[str]:
    txt = path / "classes.txt"
    if txt.is_file():
        names = [line.strip() for line in txt.read_text(encoding="utf-8", errors="backslashreplace").splitlines()
                 if line.strip()]
        if names:
            return names
    return FASHION_CLASSES if "fashion" in str(path.resolve()).lower() else DIGIT_CLASSES


def load_idx(path: Path, subset: str = "train", *, skip_bad: bool = False) -> tuple[ImageDataset, list]:
    """The ``subset`` (``"train"`` or ``"test"``) of the IDX folder at ``path``: uint8 ``[N, 1, H, W]``."""
    if subset not in _SUBSETS:
        raise ValueError(f"IDX datasets have subsets 'train' and 'test' (t10k), got {subset!r}")
    files = _files(path)
    if (subset, "images") not in files or (subset, "labels") not in files:
        raise ValueError(f"{path}: no {subset} images and labels pair "
                         f"({'|'.join(_SUBSETS[subset])}-images-idx3-ubyte and ...-labels-idx1-ubyte, optionally .gz)")
    img_path, lab_path = files[(subset, "images")], files[(subset, "labels")]
    images, labels = read_idx(img_path, 3), read_idx(lab_path, 1).astype(np.int64)
    if len(images) != len(labels):
        raise ValueError(f"{img_path} has {len(images)} images but {lab_path} has {len(labels)} labels")
    classes = class_names_for(path)
    bad = []
    out = np.nonzero(labels >= len(classes))[0]
    if len(out):
        msg = f"label {labels[out[0]]} of item {out[0]} is outside the {len(classes)} classes"
        if not skip_bad:
            raise ValueError(f"{lab_path}: {msg}" + (f" (and {len(out) - 1} more)" if len(out) > 1 else "")
                             + "; name the classes in classes.txt")
        bad = [(f"{lab_path}#{i}", f"label {labels[i]} outside the {len(classes)} classes") for i in out]
        keep = np.ones(len(labels), bool)
        keep[out] = False
        images, labels = images[keep], labels[keep]
    return ImageDataset(classes, torch.from_numpy(labels), images=torch.from_numpy(images.copy())[:, None]), bad
