"""The best found architecture against a hand-designed zoo model of the same size, on the same data
(issue 19's second measurement). The steps `benchmarks/search_gpu.sh` runs around ``archzoo search``
and ``archzoo train``:

    python benchmarks/search_vs_zoo.py proxy-data --data /tmp/c10/train --out /tmp/c10proxy --per-class 1000
    archzoo search --space cells --data /tmp/c10proxy --device cuda ... --out S     # the CIFAR proxy search
    python benchmarks/search_vs_zoo.py pick --best S/best.json --baseline resnet20 --out pick.json --budget 200
    archzoo train searched_cellnet --model-kwargs ... ; archzoo train resnet20 ...  # the same recipe
    python benchmarks/search_vs_zoo.py summary --pick pick.json --search S --runs searched=LOG1 resnet20=LOG2

``proxy-data`` writes the search's proxy set as an ImageFolder of PNGs drawn only from the training
part of the final split (``--val-split`` 0.1, seed 0, as ``archzoo train --val-split 0.1``): the
5,000 held-out images the winner is finally scored on are never seen by the search.
``pick`` scales the winning cell (``--num-normal`` cells per stage, filters F) to the parameter
count of ``--baseline`` (closest F), times a training step of both on the device and sizes one
epoch count for both so that the slower fits ``--budget`` seconds. ``summary`` prints the table.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from runlog import summarise  # noqa: E402  (benchmarks/runlog.py, the shared log reader)

TRAIN_IMAGES = 45_000


def proxy_data(args) -> None:
    import torch
    from PIL import Image

    from archzoo.data import load_dataset

    splits = load_dataset(args.data, val_split=args.val_split, seed=0)
    train = splits.train
    g = torch.Generator().manual_seed(args.seed)
    out = Path(args.out)
    n = 0
    for c, name in enumerate(splits.class_names):
        idx = torch.nonzero(train.labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)[:args.per_class]]
        (out / str(name)).mkdir(parents=True, exist_ok=True)
        for i in idx.tolist():
            Image.fromarray(train.images[i].permute(1, 2, 0).numpy()).save(out / str(name) / f"{i:05d}.png")
            n += 1
    print(f"proxy set: {n} images of the {len(train)}-image training split in {out} "
          f"(the {len(splits.val)} held-out images left out)")


def _params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def step_seconds(model, device: str, batch: int, steps: int) -> float:
    """Median seconds of one SGD training step (bf16 autocast and channels_last on CUDA, as
    ``archzoo train`` does there) on random 32x32 images."""
    import torch

    cuda = device.startswith("cuda")
    model = model.to(device).train()
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    x = torch.randn(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    times = []
    for i in range(steps + 3):
        t = time.perf_counter()
        with torch.autocast(device_type="cuda" if cuda else "cpu", dtype=torch.bfloat16, enabled=cuda):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if cuda:
            torch.cuda.synchronize()
        if i >= 3:
            times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def pick(args) -> None:
    import torch

    from archzoo import create_model

    torch.manual_seed(0)
    rows = json.loads(Path(args.best).read_text())
    if not rows:
        raise SystemExit(f"{args.best}: the search scored no architecture")
    win = rows[0]
    cells = {k: v for k, v in win["genotype"]["kwargs"].items() if k not in ("num_normal", "filters")}
    base = create_model(args.baseline, num_classes=10)
    target = _params(base)
    best = None
    for f in range(4, 129):
        p = _params(create_model("searched_cellnet", num_classes=10, num_normal=args.num_normal, filters=f, **cells))
        if best is None or abs(p - target) < abs(best[1] - target):
            best = (f, p)
        if p > 2 * target:
            break
    f, p = best
    kwargs = {**cells, "num_normal": args.num_normal, "filters": f}
    searched = create_model("searched_cellnet", num_classes=10, **kwargs)
    t_s = step_seconds(searched, args.device, args.batch, args.steps)
    t_b = step_seconds(base, args.device, args.batch, args.steps)
    per_epoch = max(t_s, t_b) * math.ceil(args.train_images / args.batch) * args.overhead
    epochs = max(args.min_epochs, min(args.max_epochs, int(args.budget / per_epoch)))
    out = {"proxy_score": win["score"], "proxy_slot": win["slot"], "proxy_params": win.get("params"),
           "searched": {"model": "searched_cellnet", "kwargs": kwargs, "params": p,
                        "tricks": win["genotype"]["tricks"], "step_s": round(t_s, 5)},
           "baseline": {"model": args.baseline, "kwargs": {}, "params": target, "step_s": round(t_b, 5)},
           "epochs": epochs, "batch": args.batch, "budget_s": args.budget, "estimated_epoch_s": round(per_epoch, 2),
           "device": args.device}
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))


def model_kwargs_args(kwargs: dict) -> str:
    """``KEY=JSON`` words for ``archzoo train --model-kwargs`` (one per line, for ``mapfile``)."""
    return "\n".join(f"{k}={json.dumps(v, separators=(',', ':'))}" for k, v in kwargs.items())


def summary(args) -> None:
    chosen = json.loads(Path(args.pick).read_text()) if args.pick and Path(args.pick).is_file() else {}
    result = {"pick": chosen, "runs": {}}
    if args.search:
        events = [json.loads(line) for line in (Path(args.search) / "events.jsonl").read_text().splitlines()
                  if line.startswith("{")] if (Path(args.search) / "events.jsonl").is_file() else []
        ends = [e for e in events if e["event"] == "trial_end"]
        secs = sorted(e["metrics"].get("seconds", 0) for e in ends if e.get("metrics"))
        scores = [e["score"] for e in ends if e.get("score") is not None]
        result["search"] = {"trials": len(ends), "best_proxy": max(scores, default=None),
                            "median_s_per_trial": secs[len(secs) // 2] if secs else None}
    print("| model | parameters | epochs done / planned | held-out top-1 (last) | best | median s / epoch | training s |")
    print("|---|---|---|---|---|---|---|")
    for spec in args.runs:
        name, _, log = spec.partition("=")
        s = summarise(Path(log))
        result["runs"][name] = s
        params = (chosen.get("searched") if name == "searched" else chosen.get("baseline") or {}) or {}
        cell = lambda v: f"{v:.2%}" if isinstance(v, float) else "-"  # noqa: E731
        print(f"| {name} ({params.get('model', '?')}) | {params.get('params', 0):,} | {s.get('epochs', 0)} / "
              f"{chosen.get('epochs', '?')} | {cell(s.get('last'))} | {cell(s.get('best'))} | "
              f"{s.get('median_epoch_s', '-')} | {s.get('train_s', '-')} |")
    if "search" in result:
        print(f"\nproxy search: {result['search']}")
    if chosen:
        print(f"winner: proxy score {chosen['proxy_score']:.4f}; cells {json.dumps(chosen['searched']['kwargs'])}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("proxy-data", help="the proxy set: an ImageFolder of PNGs from the final training split")
    d.add_argument("--data", required=True)
    d.add_argument("--out", required=True)
    d.add_argument("--per-class", type=int, default=1000)
    d.add_argument("--val-split", type=float, default=0.1, help="the final held-out fraction, left out (default 0.1)")
    d.add_argument("--seed", type=int, default=0)
    k = sub.add_parser("pick", help="scale the winner to the baseline's size; size the epochs to the budget")
    k.add_argument("--best", required=True, help="the search's best.json")
    k.add_argument("--baseline", default="resnet20")
    k.add_argument("--num-normal", type=int, default=2)
    k.add_argument("--device", default="cuda")
    k.add_argument("--batch", type=int, default=512)
    k.add_argument("--steps", type=int, default=10)
    k.add_argument("--train-images", type=int, default=TRAIN_IMAGES)
    k.add_argument("--overhead", type=float, default=1.6, help="epoch time / (steps x step time): augmentation, "
                   "EMA, evaluation, the two runs sharing the device (default 1.6)")
    k.add_argument("--budget", type=float, default=200.0, help="seconds of training for the slower model")
    k.add_argument("--min-epochs", type=int, default=3)
    k.add_argument("--max-epochs", type=int, default=60)
    k.add_argument("--out", required=True)
    a = sub.add_parser("kwargs", help="print pick.json's --model-kwargs words for one model, one per line")
    a.add_argument("pick")
    a.add_argument("which", choices=["searched", "baseline"])
    s = sub.add_parser("summary", help="the comparison table from the training logs")
    s.add_argument("--pick")
    s.add_argument("--search", help="the proxy search's folder")
    s.add_argument("--runs", nargs="*", default=[], help="NAME=LOG (JSON-lines logs of archzoo train --log-json)")
    s.add_argument("--json")
    args = p.parse_args()
    if args.cmd == "kwargs":
        print(model_kwargs_args(json.loads(Path(args.pick).read_text())[args.which]["kwargs"]))
        return
    {"proxy-data": proxy_data, "pick": pick, "summary": summary}[args.cmd](args)


if __name__ == "__main__":
    main()
