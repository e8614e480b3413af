"""Checks of what users hand archzoo: option values, devices, output folders, input files, names.

One table, :data:`RANGES`, declares the valid range of every numeric option; the command line
(``type=arg_type(name)``), :class:`~archzoo.engine.config.TrainConfig` and the Python API
(:func:`archzoo.train`, :func:`archzoo.create_model`) all check values against it, so an option
is refused the same way wherever it comes from. Every check raises a :class:`UserError` (a
``ValueError``) whose message names the option, file or folder and what is wrong with it.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path


class UserError(ValueError):
    """Bad input from the user (an option, a file, a folder): the message says what and why."""


# --------------------------------------------------------------------------- option ranges


@dataclass(frozen=True)
class Range:
    """Valid values of a numeric option: ``kind`` (int or float) between ``lo`` and ``hi``
    (``None``: unbounded; ``*_open``: the bound itself excluded); ``optional``: ``None`` allowed."""

    kind: type
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    optional: bool = False

    def describe(self) -> str:
        what = "an integer" if self.kind is int else "a number"
        g = lambda x: f"{x:d}" if self.kind is int else f"{x:g}"  # noqa: E731
        if self.lo is not None and self.hi is not None:
            return f"{what} in {'(' if self.lo_open else '['}{g(self.lo)}, {g(self.hi)}{')' if self.hi_open else ']'}"
        if self.lo is not None:
            return f"{what} {'>' if self.lo_open else '>='} {g(self.lo)}"
        if self.hi is not None:
            return f"{what} {'<' if self.hi_open else '<='} {g(self.hi)}"
        return what

    def contains(self, v) -> bool:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return False
        if self.kind is int and not isinstance(v, int):
            return False
        if isinstance(v, float) and not math.isfinite(v):
            return False
        if self.lo is not None and not (v > self.lo if self.lo_open else v >= self.lo):
            return False
        return self.hi is None or (v < self.hi if self.hi_open else v <= self.hi)


def _f(lo=None, hi=None, **kw) -> Range:
    return Range(float, lo, hi, **kw)


def _i(lo=None, hi=None, **kw) -> Range:
    return Range(int, lo, hi, **kw)


RANGES: dict[str, Range] = {
    # the recipe (TrainConfig)
    "epochs": _i(1), "batch_size": _i(1), "lr": _f(0, optional=True), "momentum": _f(0, 1, hi_open=True),
    "weight_decay": _f(0, optional=True), "warmup_epochs": _f(0), "min_lr_ratio": _f(0, 1), "milestones": _f(0),
    "gamma": _f(0, 1, lo_open=True), "label_smoothing": _f(0, 1, hi_open=True), "mixup": _f(0), "cutmix": _f(0),
    "mix_prob": _f(0, 1), "ema": _f(0, 1, hi_open=True), "clip_grad": _f(0, lo_open=True, optional=True),
    "aux_weight": _f(0), "distill": _f(0, 1), "distill_temperature": _f(0, lo_open=True), "seed": _i(0, 2**32 - 1),
    "backbone_lr_scale": _f(0), "pad": _i(0, 1024), "crop_size": _i(1, 16384, optional=True), "erase": _f(0, 1), "workers": _i(0, 256, optional=True),
    "eval_every": _i(1),
    # the data and the model (archzoo.train, create_model)
    "val_split": _f(0, 1, hi_open=True), "image_size": _i(1, 16384, optional=True),
    "train_limit": _i(1, optional=True), "val_limit": _i(1, optional=True),
    "drop_rate": _f(0, 1, hi_open=True), "drop_path_rate": _f(0, 1, hi_open=True),
    "num_classes": _i(0, optional=True), "in_chans": _i(1, optional=True),
    # other commands
    "held_out": _f(0, 1, lo_open=True, hi_open=True, optional=True), "topk": _i(1, optional=True), "threads": _i(1, 1024),
    "score_threshold": _f(0, 1, optional=True), "tile": _i(1, 16384, optional=True),
    "repeats": _i(1),
}


def check_option(name: str, value, label: str | None = None):
    """``value`` if it lies in ``RANGES[name]`` (each item, for a list), else a :class:`UserError`
    naming the option as ``label`` (default ``name``)."""
    r = RANGES[name]
    if value is None and r.optional:
        return value
    items = value if isinstance(value, (list, tuple)) and name == "milestones" else [value]
    for v in items:
        if not r.contains(v):
            raise UserError(f"{label or name} must be {r.describe()}, got {v!r}")
    return value


def arg_type(name: str):
    """An argparse ``type=`` that parses and range-checks an option by ``RANGES[name]``."""
    r = RANGES[name]

    def parse(text: str):
        try:
            value = r.kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {r.describe()}, got {text!r}") from None
        if not r.contains(value):
            raise argparse.ArgumentTypeError(f"must be {r.describe()}, got {text}")
        return value

    parse.__name__ = r.kind.__name__
    return parse


# --------------------------------------------------------------------------- devices

_DEVICE = re.compile(r"^(cpu|cuda|mps)(?::(\d+))?$")


def resolve_device(spec=None, option: str = "--device"):
    """The ``torch.device`` for ``spec`` (``None``: cuda when available, else cpu), refusing
    malformed names and devices this machine does not have."""
    import torch

    if spec is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    m = _DEVICE.match(str(spec).strip())
    if m is None:
        raise UserError(f"{option} must be cpu, cuda, cuda:N or mps, got {str(spec)!r}")
    kind, index = m.group(1), m.group(2)
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"{option} {spec}: this machine has no CUDA device that torch can use "
                            "(torch.cuda.is_available() is False); use --device cpu")
        if index is not None and int(index) >= torch.cuda.device_count():
            raise UserError(f"{option} {spec}: there are only {torch.cuda.device_count()} CUDA devices "
                            f"(cuda:0..cuda:{torch.cuda.device_count() - 1})")
    if kind == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError(f"{option} {spec}: this machine has no MPS device; use --device cpu")
    return torch.device(str(spec).strip())


def device_arg(text: str) -> str:
    """argparse ``type=`` for ``--device``: the name, once :func:`resolve_device` accepts it."""
    try:
        resolve_device(text)
    except UserError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("--device ")) from None
    return text


# --------------------------------------------------------------------------- names and paths


def shown(text) -> str:
    """``text`` as valid Unicode for printing, JSON and pictures: bytes of a file name that are
    not UTF-8 (which Python keeps as lone surrogates) become ``\\xNN`` escapes."""
    text = str(text)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that no file-name byte produces
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def check_writable_dir(path, option: str = "--out") -> Path:
    """Refuse an output folder that cannot be written, before any work is done: a path that is a
    file or lies below one, or a folder where no file can be created (read-only, immutable, no
    permission). The check creates and deletes a probe file; folders it had to create for that are
    removed again."""
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise UserError(f"{option} {shown(p)} is a file, not a folder")
    missing = []
    anc = p
    while not anc.is_dir():
        if anc.exists() or anc.is_symlink():
            what = "a file" if anc.exists() else "a symbolic link that points nowhere (or in a loop)"
            raise UserError(f"{option} {shown(p)}: {shown(anc)} is {what}, so no folder can be made there")
        missing.append(anc)
        if anc.parent == anc:
            break
        anc = anc.parent
    try:
        for d in reversed(missing):
            d.mkdir()
        fd, probe = tempfile.mkstemp(dir=p, prefix=".archzoo-write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UserError(f"{option} {shown(p)} is not writable: {e.strerror or e}") from None
    finally:
        for d in missing:
            try:
                d.rmdir()
            except OSError:
                pass
    return p


def check_writable_file(path, option: str) -> Path:
    """Refuse an output file that cannot be written: a folder, or in a folder that is not writable."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise UserError(f"{option} {shown(p)} is a folder; give a file name (e.g. {shown(p / 'out.png')})")
    check_writable_dir(p.parent, option=f"{option} {shown(p)}: its folder")
    return p


def check_input_files(files, what: str = "image") -> list[str]:
    """Each of ``files`` must be a readable file: say which one is missing, a folder, a broken or
    looping link, or unreadable."""
    out = []
    for f in files:
        p = Path(f).expanduser()
        try:
            p.stat()
        except FileNotFoundError:
            if p.is_symlink():
                raise UserError(f"{what} {shown(f)} is a symbolic link to {shown(os.readlink(p))}, which does not exist") from None
            raise UserError(f"{what} {shown(f)} does not exist") from None
        except OSError as e:
            raise UserError(f"{what} {shown(f)} cannot be read: {e.strerror or e}") from None
        if p.is_dir():
            raise UserError(f"{what} {shown(f)} is a folder; give {what} files (e.g. {shown(f)}/*.jpg)")
        if not p.is_file():
            raise UserError(f"{what} {shown(f)} is not a regular file")
        if not os.access(p, os.R_OK):
            raise UserError(f"{what} {shown(f)} cannot be read: permission denied")
        out.append(str(f))
    return out


def check_input_size(model_or_card, size: int, hint: str = "") -> None:
    """Refuse an input side ``size`` below the model card's smallest input (``min_input_size``)."""
    card = getattr(model_or_card, "card", model_or_card)
    low = getattr(card, "min_input_size", None)
    if low is None:
        return
    h, w = low[-2:]
    if size < h or size < w:
        raise UserError(f"{card.name} needs inputs of at least {h}x{w} pixels (its smallest input), but it would "
                        f"get {size}x{size}{hint}; use an input size of at least {max(h, w)} "
                        f"(archzoo train --image-size {max(h, w)}, or image_size={max(h, w)})")


def plain_text_pictures():
    """A context in which matplotlib draws text as given: a class or file name such as ``$5`` or
    ``a_b^c`` is a label, not TeX (whose parser would fail on some names after a whole run)."""
    import contextlib

    try:
        import matplotlib
    except ImportError:
        return contextlib.nullcontext()
    return matplotlib.rc_context({"text.parse_math": False})


def check_model_args(name, num_classes, in_chans, kwargs: dict) -> None:
    """The arguments of :func:`archzoo.create_model` that every model shares, and that ``kwargs``
    are arguments the model takes (``out_indices`` / ``out_strides`` are checked where they are
    resolved, :func:`archzoo.features.resolve_out_indices`)."""
    if not isinstance(name, str):
        raise UserError(f"name must be a model name (a string), got {name!r}")
    from .registry import get_entry
    from .schema import unknown_arguments

    unknown = unknown_arguments(get_entry(name).builder, kwargs)
    if unknown:
        raise UserError(f"{name} takes no argument {', '.join(map(repr, unknown))}")
    check_option("num_classes", num_classes)
    check_option("in_chans", in_chans)
    for key in ("drop_rate", "drop_path_rate"):
        if key in kwargs:
            check_option(key, kwargs[key])
