"""CIFAR-10 / CIFAR-100 in their "python version" layout (Krizhevsky 2009), read safely.

``cifar-10-batches-py/`` holds ``data_batch_1`` .. ``data_batch_5``, ``test_batch`` and
``batches.meta``; ``cifar-100-python/`` holds ``train``, ``test`` and ``meta`` (the 100 fine
labels are used). Each file is a pickle of a dict with ``data`` (uint8 ``[N, 3072]``, channel-
major 32x32) and ``labels`` / ``fine_labels``. Pickles can run code when loaded, so these are
read by a restricted unpickler that builds only dicts, lists, strings, numbers and plain numpy
arrays (no object arrays) and refuses every other global: an untrusted file is never unpickled.
A label outside the class list is an error naming the file and the item (``skip_bad`` drops it).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from ..validate import shown
from .dataset import ImageDataset

try:  # numpy >= 2 moved the pickling helpers to numpy._core
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # pragma: no cover
    from numpy.core import multiarray as _multiarray
    from numpy.core import numeric as _numeric

LAYOUTS = {
    "cifar10": {"meta": "batches.meta", "names": "label_names", "labels": "labels",
                "train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]},
    "cifar100": {"meta": "meta", "names": "fine_label_names", "labels": "fine_labels",
                 "train": ["train"], "test": ["test"]},
}


# ---------------------------------------------------------------- the restricted unpickler


def _dtype(*args):
    dt = np.dtype(*args)
    if dt.hasobject:
        raise pickle.UnpicklingError("object arrays are refused")
    return dt


def _reconstruct(subtype, shape, dtype):
    if subtype is not np.ndarray:
        raise pickle.UnpicklingError("only plain numpy arrays are allowed")
    return _multiarray._reconstruct(np.ndarray, shape, _dtype(dtype))


def _frombuffer(buf, dtype, shape, order):
    return _numeric._frombuffer(buf, _dtype(dtype), shape, order)


def _scalar(dtype, data=None):
    return _multiarray.scalar(_dtype(dtype), data)


def _latin1(text, encoding="latin1"):
    # protocol-2 pickles written by Python 3 store bytes as _codecs.encode(text, "latin1")
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"refused codec {encoding!r}")
    return text.encode("latin1")


_SAFE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.multiarray", "scalar"): _scalar,
    ("numpy._core.multiarray", "scalar"): _scalar,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _dtype,
    ("_codecs", "encode"): _latin1,
}


class SafeUnpickler(pickle.Unpickler):
    """Builds builtin containers and plain numpy arrays; any other global is refused."""

    def find_class(self, module: str, name: str):
        fn = _SAFE_GLOBALS.get((module, name))
        if fn is None:
            raise pickle.UnpicklingError(f"refused to load the global {module}.{name}")
        return fn

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("persistent ids are refused")


def safe_load(path: Path) -> dict:
    """Read the pickled dict at ``path`` with :class:`SafeUnpickler`; keys become ``str``."""
    try:
        with open(path, "rb") as f:
            obj = SafeUnpickler(f, encoding="bytes").load()
    except Exception as e:  # UnpicklingError, EOFError, ValueError, ... all mean "not a CIFAR batch"
        raise ValueError(f"{path}: not a readable CIFAR batch ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


# ---------------------------------------------------------------- the layout


def find_cifar(path: Path) -> tuple[Path, str] | None:
    """``(folder, "cifar10" | "cifar100")`` for a batches folder or a folder holding exactly one."""
    for cand in [path, *sorted(p for p in path.iterdir() if p.is_dir())]:
        for kind, lay in LAYOUTS.items():
            if (cand / lay["meta"]).is_file() and (cand / lay["test"][0]).is_file():
                return cand, kind
        if cand is path and len([p for p in path.iterdir() if p.is_dir()]) != 1:
            break
    return None


def is_cifar_dir(path: Path) -> bool:
    return find_cifar(path) is not None


def _names(values) -> list[str]:
    """Class names, printable whatever the bytes (not UTF-8: ``\\xNN`` escapes)."""
    return [v.decode("utf-8", "backslashreplace") if isinstance(v, bytes) else shown(v) for v in values]


def load_cifar(path: Path, subset: str = "train", *, skip_bad: bool = False) -> tuple[ImageDataset, list]:
    """The ``subset`` (``"train"`` or ``"test"``) of the CIFAR folder at ``path``."""
    found = find_cifar(path)
    if found is None:
        raise ValueError(f"{path} is not a CIFAR-10/100 python-batches folder")
    folder, kind = found
    lay = LAYOUTS[kind]
    if subset not in ("train", "test"):
        raise ValueError(f"CIFAR has subsets 'train' and 'test', got {subset!r}")
    meta_path = folder / lay["meta"]
    meta = safe_load(meta_path)
    if lay["names"] not in meta:
        raise ValueError(f"{meta_path}: no {lay['names']!r} entry (has {sorted(meta)})")
    classes = _names(meta[lay["names"]])
    files = [folder / f for f in lay[subset] if (folder / f).is_file()]
    if not files:
        raise ValueError(f"{folder}: no {subset} batches ({', '.join(lay[subset])})")
    images, labels, bad = [], [], []
    for f in files:
        batch = safe_load(f)
        data, lab = batch.get("data"), batch.get(lay["labels"])
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
            got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
            raise ValueError(f"{f}: 'data' must be a uint8 array [N, 3072], got {got}")
        lab = np.asarray(lab if lab is not None else [], dtype=np.int64).reshape(-1)
        if len(lab) != len(data):
            raise ValueError(f"{f}: {len(data)} images but {len(lab)} {lay['labels']!r}")
        out = np.nonzero((lab < 0) | (lab >= len(classes)))[0]
        if len(out):
            msg = f"label {lab[out[0]]} of item {out[0]} is outside the {len(classes)} classes of {meta_path.name}"
            if not skip_bad:
                raise ValueError(f"{f}: {msg}" + (f" (and {len(out) - 1} more)" if len(out) > 1 else ""))
            bad += [(f"{f}#{i}", f"label {lab[i]} outside the {len(classes)} classes") for i in out]
            keep = np.ones(len(lab), bool)
            keep[out] = False
            data, lab = data[keep], lab[keep]
        images.append(torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()))
        labels.append(torch.from_numpy(lab))
    return ImageDataset(classes, torch.cat(labels), images=torch.cat(images)), bad
