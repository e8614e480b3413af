"""``archzoo search``: architecture search over the zoo's cells or block strings; see docs/search.md.

    archzoo search --space cells --strategy evolution --data digits --image-size 8 --trials 50 --out runs/s1
    archzoo search --space blocks --strategy pnas --data shapes --trials 40 --out runs/s2 --workers 2
    archzoo search ... --storage postgresql://user@host/db      # the same command on more machines joins
    archzoo search --out runs/s1 --report                        # rewrite the report from the store

Rerunning the same command resumes a search from its store (DIR/search.db by default): no trial
is lost or run twice, even after the search was killed.
"""

from __future__ import annotations

import argparse
import json
import os


def _number(kind, lo, what: str, lo_open: bool = False):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        if value < lo or (lo_open and value == lo):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


POS_INT = _number(int, 1, "a positive whole number")
NONNEG_INT = _number(int, 0, "a whole number >= 0")
POS_FLOAT = _number(float, 0, "a positive number", lo_open=True)


def register(subparsers) -> None:
    from ..search.spaces import SPACES
    from ..search.strategies import STRATEGIES

    p = subparsers.add_parser("search", help="architecture search (random, evolution, RL, PNAS) over cells or block strings",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="search folder: store, events.jsonl, report.md and pictures")
    p.add_argument("--space", choices=sorted(SPACES), default="cells", help="cells (NASNet) or blocks (MnasNet/EfficientNet-B0)")
    p.add_argument("--strategy", choices=sorted(STRATEGIES), default="evolution", help="search strategy (default evolution)")
    p.add_argument("--data", default="digits", help="proxy task: digits | shapes | an image folder | a CIFAR folder (default digits)")
    p.add_argument("--trials", type=POS_INT, default=20, help="architectures to evaluate (default 20)")
    p.add_argument("--seed", type=NONNEG_INT, default=0, help="random seed (default 0)")
    p.add_argument("--storage", help="trial store: a SQLAlchemy URL or journal:FILE (default sqlite:///OUT/search.db)")
    p.add_argument("--study", default="archzoo-search", help="study name inside the store (default archzoo-search)")
    p.add_argument("--workers", type=POS_INT, default=1, help="worker processes on this machine (default 1)")
    p.add_argument("--threads", type=POS_INT, help="CPU threads per worker (default: cores / workers)")
    p.add_argument("--report", action="store_true", help="only (re)write the report from the store")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--stale-after", type=POS_FLOAT, default=300.0,
                   help="seconds without a heartbeat after which another host's running trial is taken over (default 300)")
    o = p.add_argument_group("proxy task and objectives")
    o.add_argument("--epochs", type=POS_INT, default=1, help="training epochs per architecture (default 1)")
    o.add_argument("--image-size", type=POS_INT, help="image side for the proxy (e.g. 8 for digits at 8x8)")
    o.add_argument("--train-limit", type=POS_INT, help="train on a seeded subset of this many images")
    o.add_argument("--val-limit", type=POS_INT, help="score on a seeded subset of this many images")
    o.add_argument("--batch-size", type=POS_INT, default=64, help="proxy batch size (default 64)")
    o.add_argument("--lr", type=POS_FLOAT, help="proxy learning rate (default: the engine's)")
    o.add_argument("--device", default="cpu", help="where proxies train: cpu (default), cuda or cuda:N "
                   "(latency is measured on the CPU either way)")
    o.add_argument("--max-params", type=POS_INT, help="constraint: at most this many parameters")
    o.add_argument("--max-macs", type=POS_INT, help="constraint: at most this many multiply-adds")
    o.add_argument("--max-latency", type=POS_FLOAT, help="constraint: at most this CPU latency in ms (batch 1)")
    o.add_argument("--target-latency", type=POS_FLOAT,
                   help="multi-objective: score = accuracy * (latency / target) ** w (MnasNet), target in ms")
    o.add_argument("--latency-weight", type=float, default=-0.07, help="w of the MnasNet reward (default -0.07)")
    s = p.add_argument_group("search space")
    s.add_argument("--blocks", type=POS_INT, default=3, help="cells: blocks per cell (default 3; NASNet 5)")
    s.add_argument("--num-normal", type=POS_INT, default=1, help="cells: normal cells per stage (default 1)")
    s.add_argument("--filters", type=POS_INT, default=8, help="cells: filters per operation in stage 1 (default 8)")
    s.add_argument("--stages", type=POS_INT, default=7, help="blocks: searched stages of B0's table (default 7)")
    s.add_argument("--width", type=POS_FLOAT, default=1.0, help="blocks: width multiplier of the whole net (default 1)")
    g = p.add_argument_group("strategy")
    g.add_argument("--population", type=POS_INT, default=10, help="evolution: population size P (default 10)")
    g.add_argument("--sample", type=POS_INT, default=3, help="evolution: tournament sample size S (default 3)")
    g.add_argument("--rl-lr", type=POS_FLOAT, default=2.0, help="rl: policy learning rate (default 2)")
    g.add_argument("--beam", type=POS_INT, default=4, help="pnas: architectures trained per level K (default 4)")
    g.add_argument("--children", type=POS_INT, default=16, help="pnas: candidates per parent ranked by the surrogate (default 16)")
    p.set_defaults(func=run)


def settings_from_args(args):
    from ..search.runner import Settings

    space_options = ({"blocks": args.blocks, "num_normal": args.num_normal, "filters": args.filters}
                     if args.space == "cells" else {"stages": args.stages, "width_mult": args.width})
    strategy_options = {"evolution": {"population": args.population, "sample": args.sample},
                        "rl": {"lr": args.rl_lr}, "pnas": {"beam": args.beam, "children": args.children}}.get(args.strategy, {})
    objective = {"data": args.data, "epochs": args.epochs, "image_size": args.image_size, "train_limit": args.train_limit,
                 "val_limit": args.val_limit, "batch_size": args.batch_size, "lr": args.lr, "max_params": args.max_params,
                 "max_macs": args.max_macs, "max_latency_ms": args.max_latency, "target_latency_ms": args.target_latency,
                 "latency_weight": args.latency_weight, "device": args.device}
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.workers)
    return Settings(out=args.out, space=args.space, strategy=args.strategy, trials=args.trials, seed=args.seed,
                    storage=args.storage, study=args.study, workers=args.workers, space_options=space_options,
                    strategy_options=strategy_options, objective=objective, threads=threads,
                    stale_after=args.stale_after, progress=not args.no_progress)


def run(args) -> int:
    from ..search.runner import run_search
    from ..validate import check_writable_dir

    check_writable_dir(args.out, "--out")  # a file or an unwritable folder is refused before any work
    settings = settings_from_args(args)
    if args.report:
        return _report_only(settings)
    summary = run_search(settings)
    best = summary.get("best")
    print(f"{summary['done']}/{summary['budget']} trials done; report: {os.path.join(args.out, 'report.md')}")
    if best:
        print(f"best: trial {best['slot']}, score {best['score']:.4f}, {best.get('params', 0):,} params; "
              f"tricks: {', '.join(best['genotype']['tricks'])}")
        print(json.dumps({"model": best["genotype"]["model"], "kwargs": best["genotype"]["kwargs"]}))
    return 0


def _report_only(settings) -> int:
    from pathlib import Path

    from ..search.report import write_report
    from ..search.runner import _parts
    from ..search.store import TrialStore
    from ..validate import UserError

    if settings.storage is None and not (Path(settings.out) / "search.db").is_file():
        raise UserError(f"--out {settings.out}: no search store (search.db) there")
    space, strategy, objective = _parts(settings)
    store = TrialStore(settings.storage_url(), settings.config(space, strategy, objective), study=settings.study)
    write_report(store, space, Path(settings.out), multi_objective=objective.target_latency_ms is not None)
    print(f"report: {Path(settings.out) / 'report.md'}")
    return 0
