"""``archzoo compare NAME NAME ... [--json]``: params, GFLOPs, measured CPU latency, and which tricks
each model has and lacks."""

from __future__ import annotations

import torch

from ..builder import create_model
from ..profile import measure_latency, model_stats
from ..registry import model_card
from ..validate import arg_type
from .common import print_json, print_table


def register(sub) -> None:
    p = sub.add_parser("compare", help="compare models: params, GFLOPs, CPU latency, tricks")
    p.add_argument("names", nargs="+")
    p.add_argument("--repeats", type=arg_type("repeats"), default=10, help="timed batch-1 forward passes per model (median)")
    p.add_argument("--no-latency", action="store_true", help="skip the latency measurement")
    p.add_argument("--threads", type=arg_type("threads"), default=None, help="CPU threads for the latency measurement")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def compare(names: list[str], repeats: int = 10, latency: bool = True) -> list[dict]:
    cards = [model_card(n) for n in names]
    all_tricks = sorted({t for c in cards for t in c.tricks})
    rows = []
    for card in cards:
        stats = model_stats(card.name)
        row = {"name": card.name, "year": card.year, "params": stats["params"],
               "params_with_aux": stats["params_with_aux"], "gflops": None if stats["gflops"] is None else round(stats["gflops"], 4),
               "input_size": list(card.input_size), "tricks": list(card.tricks),
               "lacks": [t for t in all_tricks if t not in card.tricks]}
        if latency:
            model = create_model(card.name)
            row["latency_ms"] = round(measure_latency(model, card.input_size, repeats=repeats), 2)
            del model
        rows.append(row)
    return rows


def run(args) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = compare(args.names, args.repeats, latency=not args.no_latency)
    if args.json:
        print_json(rows)
        return 0
    columns = ["model", "year", "input", "params (M)", "GFLOPs"] + ([] if args.no_latency else ["CPU ms (b=1)"])
    table = []
    for r in rows:
        line = [r["name"], r["year"], f"{r['input_size'][1]}x{r['input_size'][2]}", f"{r['params'] / 1e6:.2f}",
                "-" if r["gflops"] is None else f"{r['gflops']:.3f}"]
        if not args.no_latency:
            line.append(f"{r['latency_ms']:.1f}")
        table.append(line)
    print_table(None, columns, table, justify_right={"year", "params (M)", "GFLOPs", "CPU ms (b=1)"})
    all_tricks = sorted({t for r in rows for t in r["tricks"]})
    marks = [[t] + ["x" if t in r["tricks"] else "." for r in rows] for t in all_tricks]
    print_table("tricks (x = uses it)", ["trick"] + [r["name"] for r in rows], marks)
    note = "Params count what inference uses (not training-only auxiliary heads); GFLOPs count multiply-adds, as torchvision and the papers do"
    if not args.no_latency:
        note += f"; latency is the median of {args.repeats} batch-1 forward passes on this CPU ({torch.get_num_threads()} threads)"
    print(note + ".")
    return 0
