"""``archzoo models [PATTERN] [--task T] [--trick K] [--family F] [--weights] [--json]``: the zoo as a table."""

from __future__ import annotations

import fnmatch

from ..shipped import list_shipped
from ..profile import model_stats
from ..registry import TASKS, list_models, model_card
from .common import print_json, print_table


def register(sub) -> None:
    p = sub.add_parser("models", help="list registered models with family, year and parameters")
    p.add_argument("pattern", nargs="?", default=None, help="fnmatch pattern, e.g. 'resnet*'")
    p.add_argument("--task", choices=list(TASKS))
    p.add_argument("--trick", help="only models using this trick (see `archzoo info`)")
    p.add_argument("--family")
    p.add_argument("--weights", action="store_true", help="list the weights shipped with archzoo instead")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.weights:
        return _run_weights(args)
    if args.family is not None:
        families = sorted({model_card(n).family for n in list_models()})
        if args.family not in families:
            raise ValueError(f"unknown family {args.family!r}; the families are {', '.join(families)}")
    names = list_models(args.pattern, task=args.task, trick=args.trick, family=args.family)
    rows = []
    for name in names:
        card = model_card(name)
        params = model_stats(name)["params"]
        rows.append({"name": name, "family": card.family, "task": card.task, "year": card.year,
                     "params": params, "reference": card.reference})
    if args.json:
        print_json(rows)
        return 0
    if not rows:
        print("no models match")
        return 0
    print_table(
        f"{len(rows)} models",
        ["name", "family", "year", "params (M)", "reference"],
        [[r["name"], r["family"], r["year"], f"{r['params'] / 1e6:.2f}", r["reference"] or "paper"] for r in rows],
        justify_right={"params (M)", "year"},
    )
    return 0


def _run_weights(args) -> int:
    entries = [w for w in list_shipped() if not args.pattern or fnmatch.fnmatch(w.model, args.pattern)]
    rows = [{"weights": f"{w.model}.{w.tag}", "model": w.model, "tag": w.tag, "dataset": w.dataset,
             "metrics": w.metrics, "recipe": w.recipe} for w in entries]
    if args.json:
        print_json(rows)
        return 0
    if not rows:
        print("no shipped weights match")
        return 0
    print_table("shipped weights", ["weights", "dataset", "metrics", "recipe"],
                [[r["weights"], r["dataset"], ", ".join(f"{k} {v}" for k, v in r["metrics"].items()), r["recipe"]] for r in rows])
    return 0
