"""Search strategies compared on equal budgets over seeds (issue 19): best proxy accuracy after
25 / 50 / 100 trials (mean and spread over seeds) and seconds per trial.

    python benchmarks/search_strategies.py                         # cells, 4 strategies, 5 seeds, 100 trials
    python benchmarks/search_strategies.py --seeds 2 --trials 25 --json out.json
    # one (strategy, seed) per process, stores kept; then one table from every store, finished or not
    python benchmarks/search_strategies.py --strategies rl --seeds 1 --first-seed 3 --keep runs/stores
    python benchmarks/search_strategies.py --seeds 0 --collect runs/stores --json all.json

Every (strategy, seed) is one ``archzoo search`` run (one worker) in a temporary folder, on the
same proxy task: digits at 8x8, ``--train-limit`` training images, ``--epochs`` epochs (no augmentation), NASNet cells of
``--blocks`` blocks and ``--filters`` filters. Wall time per trial includes building, profiling
and training. ``--keep DIR`` keeps every search in ``DIR/STRATEGY_SEED`` (a rerun resumes it);
``--collect DIR`` reads the trials of every search there, also of one that was killed (benchmarks/
search_gpu.sh runs the 4 x 5 searches as parallel processes under a deadline): a run short of a
budget counts only for the smaller budgets (the table gives ``n`` per cell).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from archzoo.search.runner import Settings, run_search
from archzoo.search.store import TrialStore

STRATEGY_OPTIONS = {"random": {}, "evolution": {"population": 10, "sample": 3}, "rl": {"lr": 2.0},
                    "pnas": {"beam": 5, "children": 16}}


def run_one(strategy: str, seed: int, args, root: Path) -> dict:
    out = root / f"{strategy}_{seed}"
    settings = Settings(out=str(out), space="cells", strategy=strategy, trials=args.trials, seed=seed,
                        space_options={"blocks": args.blocks, "num_normal": 1, "filters": args.filters},
                        strategy_options=STRATEGY_OPTIONS[strategy],
                        objective={"data": "digits", "epochs": args.epochs, "image_size": 8, "lr": args.lr,
                                   "train_limit": args.train_limit, "val_limit": args.val_limit, "batch_size": 32},
                        threads=args.threads, progress=False, report=False)
    run_search(settings)
    return read_run(out, strategy, seed)


def read_run(out: Path, strategy: str, seed: int) -> dict:
    """The trials of the search in ``out`` in slot order, up to the first slot not done (a killed
    search's later slots may be done while an earlier one is not)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name="archzoo-search", storage=f"sqlite:///{Path(out).resolve() / 'search.db'}")
    done = {t.user_attrs["slot"]: t for t in study.get_trials() if TrialStore.ends_slot(t) and "slot" in t.user_attrs}
    slots = []
    while len(slots) in done:
        slots.append(len(slots))
    scores = [done[s].value if done[s].state.name == "COMPLETE" else None for s in slots]
    seconds = [done[s].user_attrs.get("metrics", {}).get("seconds") for s in slots]
    best = max((s for s in slots if scores[s] is not None), key=lambda s: scores[s], default=None)
    return {"strategy": strategy, "seed": seed, "scores": scores, "seconds": [x for x in seconds if x is not None],
            "best_decisions": None if best is None else done[best].user_attrs.get("decisions")}


def collect(root: Path) -> list[dict]:
    """Every ``STRATEGY_SEED`` search kept under ``root``."""
    runs = []
    for db in sorted(Path(root).glob("*_*/search.db")):
        strategy, _, seed = db.parent.name.rpartition("_")
        if strategy in STRATEGY_OPTIONS and seed.isdigit():
            runs.append(read_run(db.parent, strategy, int(seed)))
    return runs


def best_after(scores, n):
    vals = [s for s in scores[:n] if s is not None]
    return max(vals) if vals and len(scores) >= n else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--strategies", nargs="+", default=list(STRATEGY_OPTIONS), choices=list(STRATEGY_OPTIONS))
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--merge", nargs="*", default=[], help="earlier --json files whose runs join the table")
    p.add_argument("--trials", type=int, default=100)
    p.add_argument("--blocks", type=int, default=2)
    p.add_argument("--filters", type=int, default=8)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--train-limit", type=int, default=512)
    p.add_argument("--val-limit", type=int, default=256)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", help="write the raw results here")
    p.add_argument("--budgets", type=int, nargs="+", default=[25, 50, 100], help="trial counts of the table's columns")
    p.add_argument("--keep", help="keep the searches in KEEP/STRATEGY_SEED (default: a temporary folder)")
    p.add_argument("--collect", help="also read every STRATEGY_SEED search kept in this folder, finished or not")
    args = p.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            for strategy in args.strategies:
                runs.append(run_one(strategy, seed, args, Path(args.keep or tmp)))
                r = runs[-1]
                scores = [s for s in r["scores"] if s is not None]
                print(f"{strategy} seed {seed}: best {max(scores, default=float('nan')):.4f}, "
                      f"{statistics.mean(r['seconds'] or [float('nan')]):.2f} s/trial", file=sys.stderr, flush=True)
    for path in args.merge:
        runs += json.loads(Path(path).read_text())["runs"]
    if args.collect:
        runs += collect(Path(args.collect))
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "runs": runs}, indent=1))
    budgets = [b for b in args.budgets if b <= args.trials]
    print("| strategy | " + " | ".join(f"best after {b} (mean ± sd)" for b in budgets) + " | s / trial |")
    print("|---|" + "---|" * (len(budgets) + 1))
    for strategy in args.strategies:
        mine = [r for r in runs if r["strategy"] == strategy]
        cells = []
        for b in budgets:
            vals = [v for v in (best_after(r["scores"], b) for r in mine) if v is not None]
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            cells.append(f"{statistics.mean(vals):.3f} ± {sd:.3f} (n={len(vals)})" if vals else "-")
        secs = [s for r in mine for s in r["seconds"]]
        print(f"| {strategy} | " + " | ".join(cells) + (f" | {statistics.mean(secs):.2f} |" if secs else " | - |"))
    winners = [r for r in runs if r.get("best_decisions")]
    if winners:  # the best architecture of all the runs (ties: the first run in the list)
        from archzoo.search.spaces import make_space

        top = max(winners, key=lambda r: max(v for v in r["scores"] if v is not None))
        space = make_space("cells", blocks=args.blocks, num_normal=1, filters=args.filters)
        print(f"\nbest of all {len(runs)} runs: {max(v for v in top['scores'] if v is not None):.4f} "
              f"({top['strategy']}, seed {top['seed']}): {json.dumps(space.genotype(top['best_decisions']))}")


if __name__ == "__main__":
    main()
