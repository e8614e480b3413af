"""Search strategies compared on equal budgets over seeds (issue 19): best proxy accuracy after
25 / 50 / 100 trials (mean and spread over seeds) and seconds per trial.

    python benchmarks/search_strategies.py                         # cells, 4 strategies, 5 seeds, 100 trials
    python benchmarks/search_strategies.py --seeds 2 --trials 25 --json out.json

Every (strategy, seed) is one ``archzoo search`` run (one worker) in a temporary folder, on the
same proxy task: digits at 8x8, ``--train-limit`` training images, ``--epochs`` epochs (no augmentation), NASNet cells of
``--blocks`` blocks and ``--filters`` filters. Wall time per trial includes building, profiling
and training.
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
    import optuna

    study = optuna.load_study(study_name=settings.study, storage=settings.storage_url())
    done = {t.user_attrs["slot"]: t for t in study.get_trials() if TrialStore.ends_slot(t) and "slot" in t.user_attrs}
    scores = [done[s].value if done[s].state.name == "COMPLETE" else None for s in sorted(done)]
    seconds = [done[s].user_attrs.get("metrics", {}).get("seconds") for s in sorted(done)]
    return {"strategy": strategy, "seed": seed, "scores": scores, "seconds": [x for x in seconds if x is not None]}


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
    args = p.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            for strategy in args.strategies:
                runs.append(run_one(strategy, seed, args, Path(tmp)))
                r = runs[-1]
                print(f"{strategy} seed {seed}: best {max(s for s in r['scores'] if s is not None):.4f}, "
                      f"{statistics.mean(r['seconds']):.2f} s/trial", file=sys.stderr, flush=True)
    for path in args.merge:
        runs += json.loads(Path(path).read_text())["runs"]
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "runs": runs}, indent=1))
    budgets = [b for b in (25, 50, 100) if b <= args.trials]
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
        print(f"| {strategy} | " + " | ".join(cells) + f" | {statistics.mean(secs):.2f} |")


if __name__ == "__main__":
    main()
