"""What a run tells the person (or the program) watching it, and what it leaves in the run folder.

* ``"bar"``: a rich progress bar per epoch (the task's running loss and metric, images/s, ETA)
  and a line per epoch; plain lines when the output is not a terminal.
* ``"json"``: one JSON object per line on stdout (``{"event": "epoch", ...}``) for programs.
* ``"quiet"``: nothing but errors.

:class:`RunLog` keeps ``metrics.csv`` and ``curves.png`` up to date after every epoch and, when
asked and installed, writes TensorBoard events. Only rank 0 of a distributed run reports.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import time
from pathlib import Path

from . import distributed as dist

def _fmt_time(s: float) -> str:
    s = int(s)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def _fmt(name: str, value: float, digits: int = 2) -> str:
    """A loss as a number, every other metric (accuracy, IoU, AP: fractions) as a percentage."""
    return f"{value:.4f}" if "loss" in name else f"{value:.{digits}%}"


class Progress:
    def __init__(self, mode: str = "bar", stream=None):
        if mode not in ("bar", "json", "quiet"):
            raise ValueError(f"log mode must be 'bar', 'json' or 'quiet', got {mode!r}")
        self.mode = mode if dist.is_main() else "quiet"
        self.stream = stream or sys.stderr
        self._bar = None
        self._task = None

    # --- events ---------------------------------------------------------------------------------
    def event(self, name: str, **fields) -> None:
        if self.mode == "json":
            sys.stdout.write(json.dumps({"event": name, **fields}, default=str) + "\n")
            sys.stdout.flush()

    def info(self, text: str) -> None:
        if self.mode == "bar":
            self._console().print(text, highlight=False)

    def _console(self):
        from rich.console import Console

        if not hasattr(self, "_con"):
            self._con = Console(file=self.stream, soft_wrap=True)
        return self._con

    # --- the bar --------------------------------------------------------------------------------
    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None:
        self._t0, self._epoch, self._epochs, self._steps = time.perf_counter(), epoch, epochs, steps
        if self.mode != "bar" or not self._console().is_terminal:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn, TimeRemainingColumn

        self._bar = RichProgress(TextColumn("[bold]epoch {task.fields[ep]}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[stats]}"), TextColumn("ETA"), TimeRemainingColumn(),
                                 console=self._console(), transient=True)
        self._bar.start()
        self._task = self._bar.add_task("train", total=steps, ep=f"{epoch}/{epochs}", stats="")

    def step(self, done: int, stats: dict[str, float], images_per_s: float) -> None:
        """``stats``: the task's running numbers (loss first)."""
        if self._bar is not None:
            text = "  ".join(f"{k} {_fmt(k, v, 1)}" for k, v in stats.items())
            self._bar.update(self._task, completed=done, stats=f"{text}  {images_per_s:,.0f} img/s")

    def end_epoch(self, row: dict) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        if self.mode == "json":
            self.event("epoch", **row)
        elif self.mode == "bar":
            text = f"epoch {row['epoch']}/{self._epochs}  lr {row['lr']:.4g}"
            for split in ("train", "val"):
                fields = [f"{k[len(split) + 1:]} {_fmt(k, v)}" for k, v in row.items()
                          if k.startswith(split + "_") and v is not None]
                if fields:
                    text += f"  {split} " + " ".join(fields)
            text += f"  {row['images_per_s']:,.0f} img/s  {_fmt_time(row['epoch_time'])}"
            self.info(text)


class RunLog:
    """``metrics.csv`` (``columns``), ``curves.png`` (the loss and ``metric``) and optional
    TensorBoard events in the run folder."""

    def __init__(self, out: Path | None, columns: tuple[str, ...], metric: str = "accuracy", tensorboard: bool = False):
        self.out = Path(out) if out is not None and dist.is_main() else None
        self.columns, self.metric = tuple(columns), metric
        self.tb = None
        if tensorboard and self.out is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:
                raise ValueError("--tensorboard needs the tensorboard package: pip install tensorboard") from e
            self.tb = SummaryWriter(str(self.out / "tensorboard"))

    def write(self, history: list[dict]) -> None:
        if self.out is None:
            return
        from ..checkpoint import atomic_write_text
        from .report import plot_curves

        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=self.columns, extrasaction="ignore")
        w.writeheader()
        for row in history:
            w.writerow({k: ("" if row.get(k) is None else row[k]) for k in self.columns})
        atomic_write_text(self.out / "metrics.csv", buf.getvalue())
        plot_curves(history, self.out / "curves.png", metric=self.metric)
        if self.tb is not None and history:
            row = history[-1]
            for k in self.columns[1:]:
                if row.get(k) is not None:
                    self.tb.add_scalar(k.replace("_", "/", 1) if k.startswith(("train", "val")) else k, row[k], row["epoch"])
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
