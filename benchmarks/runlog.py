"""Summarise a training run's JSON-lines log (``--log-json``): the one reader the benchmark scripts share.

    python benchmarks/runlog.py RUN.log [--epochs]     # JSON summary (and every epoch with --epochs)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def epochs(log: Path) -> list[dict]:
    """The per-epoch events of a log (none when the file is missing)."""
    log = Path(log)
    if not log.is_file():
        return []
    rows = (json.loads(line) for line in log.read_text().splitlines() if line.startswith("{"))
    return [r for r in rows if r.get("event") == "epoch"]


def summarise(log: Path) -> dict:
    """Epochs done, last and best held-out accuracy, median epoch time and images/s, the compile
    time (the first epoch's excess over the median) and when 90% held-out was first reached."""
    rows = epochs(log)
    if not rows:
        return {"epochs": 0}
    times = sorted(r["epoch_time"] for r in rows)
    median = times[len(times) // 2]
    elapsed, first90 = 0.0, None
    for r in rows:
        elapsed += r["epoch_time"]
        if first90 is None and (r.get("val_accuracy") or 0) >= 0.90:
            first90 = {"epoch": r["epoch"], "train_s": round(elapsed, 1)}
    best = max(rows, key=lambda r: r.get("val_accuracy") or 0)
    return {"epochs": rows[-1]["epoch"], "last": rows[-1].get("val_accuracy"), "best": best.get("val_accuracy"),
            "best_epoch": best["epoch"], "median_epoch_s": median,
            "median_images_per_s": sorted(r["images_per_s"] for r in rows)[len(rows) // 2],
            "first_epoch_s": rows[0]["epoch_time"], "compile_s": round(rows[0]["epoch_time"] - median, 1),
            "train_s": round(elapsed, 1), "first_90": first90, "last_train_accuracy": rows[-1].get("train_accuracy")}


if __name__ == "__main__":
    print(json.dumps(summarise(Path(sys.argv[1])), indent=2))
    if "--epochs" in sys.argv[2:]:
        for r in epochs(Path(sys.argv[1])):
            print(f"  epoch {r['epoch']}: {r['epoch_time']:.2f} s, held-out {r.get('val_accuracy')}")
