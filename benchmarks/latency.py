"""Inference latency of archzoo models against their references (torchvision or timm), side by side.

    python benchmarks/latency.py                                   # the classic eight, batch 1, CPU
    python benchmarks/latency.py resnet50 seresnet50 --batch 8 --rounds 20 --json out.json

For each model both networks are built with random weights, the reference's weights are converted
into ours (so both compute the same function; the largest output difference is printed as a
check), and forward passes in eval mode under ``torch.inference_mode`` are timed alternately (ours
first in even rounds, the reference first in odd ones), ``--rounds`` times after ``--warmup``
passes each. Reported: the median
milliseconds of each and their ratio (ours / reference: below 1 is faster). Alternating the two
spreads machine noise over both columns.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402

import archzoo  # noqa: E402
from archzoo.weights import build_reference  # noqa: E402

DEFAULT = ["alexnet", "vgg16", "googlenet", "resnet50", "densenet121", "squeezenet1_1", "mobilenet_v2", "efficientnet_b0"]


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


def median_ms(fn, rounds: int, warmup: int) -> float:
    """Median milliseconds of ``fn()`` over ``rounds`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    return statistics.median(_time(fn) for _ in range(rounds))


def alternate(ours, ref, rounds: int, warmup: int) -> tuple[float, float]:
    """Median milliseconds of the calls ``ours()`` and ``ref()``, ``rounds`` times each after
    ``warmup`` calls, alternating which goes first so neither always runs on a warmer cache."""
    for _ in range(warmup):
        ours(), ref()
    t_ours, t_ref = [], []
    for i in range(rounds):
        first, second = ((ref, t_ref), (ours, t_ours)) if i % 2 else ((ours, t_ours), (ref, t_ref))
        first[1].append(_time(first[0]))
        second[1].append(_time(second[0]))
    return statistics.median(t_ours), statistics.median(t_ref)


def measure(name: str, batch: int, rounds: int, warmup: int) -> dict:
    card = archzoo.model_card(name)
    if not card.reference:
        raise ValueError(f"{name} has no reference implementation to compare with")
    source = card.reference.split(":", 1)[0]
    ref = build_reference(card.reference).eval()
    ours = archzoo.create_model(name).eval()
    ours.load_state_dict(archzoo.convert_weights(name, ref.state_dict(), source=source))
    x = torch.randn(batch, *card.input_size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        diff = (ours(x) - ref(x)).abs().max().item()
        a, b = alternate(lambda: ours(x), lambda: ref(x), rounds, warmup)
    return {"model": name, "reference": card.reference, "batch": batch, "ours_ms": round(a, 2),
            "reference_ms": round(b, 2), "ratio": round(a / b, 3), "max_abs_diff": diff}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="*", default=DEFAULT)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--json", default=None, help="also write the results to this file")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = [measure(m, args.batch, args.rounds, args.warmup) for m in args.models]
    print(f"{'model':18} {'reference':28} {'ours ms':>9} {'ref ms':>9} {'ratio':>6} {'max diff':>9}")
    for r in rows:
        print(f"{r['model']:18} {r['reference']:28} {r['ours_ms']:9.2f} {r['reference_ms']:9.2f} {r['ratio']:6.3f} "
              f"{r['max_abs_diff']:9.2e}")
    ratios = [r["ratio"] for r in rows]
    print(f"geometric mean ratio: {statistics.geometric_mean(ratios):.3f} "
          f"(batch {args.batch}, {torch.get_num_threads()} threads, torch {torch.__version__}, {platform.processor() or platform.machine()})")
    if args.json:
        Path(args.json).write_text(json.dumps({"batch": args.batch, "threads": torch.get_num_threads(),
                                               "torch": torch.__version__, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
