"""Helpers of the robustness tests (issue 13): tiny image trees, tiny checkpoints, and running the
command line in-process with a check that an error is a clean one-paragraph message. No tests here."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

import archzoo
from archzoo.cli.main import main

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
FAST = dict(epochs=1, batch_size=4, log="quiet", workers=0)  # archzoo.train options of a quick run


def write_tree(root: Path, classes=("a", "b"), n: int = 6, size: int = 16, sizes=None, fmt: str = "png",
               seed: int = 0) -> Path:
    """``root/<class>/<i>.<fmt>``: ``n`` random colour images per class, ``size`` px square (or
    cycling through ``sizes``, for a tree of mixed sizes). Class names may hold surrogate escapes."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    for c in classes:
        d = root / c
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            s = sizes[i % len(sizes)] if sizes else size
            Image.fromarray(rng.integers(0, 255, (s, s, 3), dtype=np.uint8)).save(d / f"{i}.{fmt}")
    return root


def truncate(path: Path, keep: float = 0.5) -> Path:
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: int(len(data) * keep)])
    return Path(path)


def save_checkpoint(path: Path, model: str = "resnet20", num_classes: int = 2, size: int = 16, **meta) -> Path:
    """A small valid checkpoint (random weights) as ``archzoo train`` writes it."""
    m = archzoo.create_model(model, num_classes=num_classes)
    c = m.build_args["in_chans"]
    info = {"class_names": [chr(97 + i) for i in range(num_classes)], "input_size": [c, size, size],
            "mean": [0.5] * c, "std": [0.25] * c, **meta}
    archzoo.save_model(m, path, **info)
    return Path(path)


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """``archzoo ARGV`` in this process: ``(exit status, stdout, stderr)``."""
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_clean_error(rc: int, err: str, *needles: str) -> None:
    """A user error: exit status 2 and one paragraph on stderr, no traceback, no "internal
    error", naming what it should (``needles``, case-insensitive)."""
    assert rc == 2, f"exit {rc}, stderr: {err}"
    text = err.strip()
    assert text and "Traceback" not in err and "internal error" not in err, err
    assert "\n\n" not in text, f"more than one paragraph: {err}"
    assert "error:" in text, err
    for n in needles:
        assert n.lower() in text.lower(), f"{n!r} not in: {err}"
