"""Helpers shared by the commands: what a checkpoint expects as input, printing tables or JSON."""

from __future__ import annotations

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
    table = Table(title=title, show_lines=False)
    for col in columns:
        table.add_column(col, justify="right" if col in justify_right else "left")
    for row in rows:
        table.add_row(*[str(v) for v in row])
    console().print(table)


def checkpoint_input(model, meta: dict) -> tuple[int, int, list[float], list[float]]:
    """``(in_chans, input side, mean, std)`` of a loaded checkpoint: its run's, stored in ``meta``,
    else the model card's."""
    from ..engine.trainer import model_mean_std

    c = model.build_args["in_chans"]
    size = (meta.get("input_size") or list(model.card.input_size))[-1]
    mean, std = model_mean_std(model, c)
    return c, size, meta.get("mean", mean), meta.get("std", std)
