"""Helpers shared by the commands: printing tables or JSON."""

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
