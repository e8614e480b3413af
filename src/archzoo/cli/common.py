"""Helpers shared by the commands: what a checkpoint expects as input, printing tables or JSON."""

from __future__ import annotations

import argparse
import json
import sys

from rich.console import Console
from rich.table import Table


def console() -> Console:
    # piped output (files, CI logs) gets a wide fixed width instead of rich's 80-column default
    return Console(soft_wrap=False, width=None if sys.stdout.isatty() else 200)


def print_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def print_table(title: str | None, columns: list[str], rows: list[list], justify_right: set[str] = frozenset()) -> None:
    """A table; cells are plain text (a file name with ``[...]`` is not markup, nor one that is not
    UTF-8 an encoding error)."""
    from rich.text import Text

    from ..validate import shown

    table = Table(title=Text(shown(title)) if title is not None else None, show_lines=False)
    for col in columns:
        table.add_column(col, justify="right" if col in justify_right else "left")
    for row in rows:
        table.add_row(*[Text(shown(v)) for v in row])
    console().print(table)


def checkpoint_input(model, meta: dict) -> tuple[int, int, list[float], list[float]]:
    """``(in_chans, input side, mean, std)`` of a loaded checkpoint: its run's, stored in ``meta``,
    else the model card's (normalisation averaged to one channel for a grey model). Refuses a
    model whose input is not an image (1 or 3 channels) or smaller than its card allows."""
    from ..engine.trainer import model_mean_std
    from ..validate import UserError, check_input_size

    c = model.build_args["in_chans"]
    if c not in (1, 3):
        raise UserError(f"{meta.get('model')} takes {c} input channels; image files give 1 (grey) or 3 (colour)")
    size = (meta.get("input_size") or list(model.card.input_size))[-1]
    check_input_size(model, size, hint=" (the checkpoint's input_size)")
    mean, std = model_mean_std(model, c)
    mean, std = meta.get("mean", mean), meta.get("std", std)
    if len(mean) != c or len(std) != c:  # a card's RGB statistics stored for a grey model
        mean, std = [sum(mean) / len(mean)] * c, [sum(std) / len(std)] * c
    return c, size, mean, std


def output_names(files: list[str], suffix: str = ".png") -> list[str]:
    """``<stem><suffix>`` for each input file; stems that repeat get ``-2``, ``-3`` ... so that no
    output overwrites another."""
    from pathlib import Path

    seen: dict[str, int] = {}
    names = []
    for f in files:
        stem = Path(f).stem
        seen[stem] = seen.get(stem, 0) + 1
        names.append(f"{stem}{suffix}" if seen[stem] == 1 else f"{stem}-{seen[stem]}{suffix}")
    return names


def positive_int(text: str) -> int:
    """An argparse ``type``: a whole number >= 1 (counts, sizes, steps), with a message that says so."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """An argparse ``type``: a finite number >= 0 (weights, tolerances, coefficients)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value
