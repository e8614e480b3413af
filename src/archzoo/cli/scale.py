"""``archzoo scale BASE --phi K [--alpha A --beta B --gamma G | --preset efficientnet] [--name NAME] [--json]``:
compound scaling of a block-string network (Tan & Le 2019, arXiv:1905.11946; :mod:`archzoo.scaling`).

``--search-coefficients`` instead runs the paper's small grid search for alpha, beta, gamma at
phi = 1 on a proxy task (``--data``, default the built-in digits) with the training engine.
"""

from __future__ import annotations

from ..scaling import PAPER_ALPHA, PAPER_BETA, PAPER_GAMMA, PRESETS, coefficient_grid, compound_scale, measure, \
    search_coefficients
from .common import non_negative_float, positive_int, print_json, print_table


def register(sub) -> None:
    p = sub.add_parser("scale", help="compound-scale a block-string network (EfficientNet's depth/width/resolution)")
    p.add_argument("base", help="a block-string network, e.g. efficientnet_b0 or mobilenet_v2")
    p.add_argument("--phi", type=non_negative_float, default=None, help="compound coefficient (required unless "
                   "--search-coefficients)")
    p.add_argument("--alpha", type=non_negative_float, default=PAPER_ALPHA, help=f"depth base (default {PAPER_ALPHA})")
    p.add_argument("--beta", type=non_negative_float, default=PAPER_BETA, help=f"width base (default {PAPER_BETA})")
    p.add_argument("--gamma", type=non_negative_float, default=PAPER_GAMMA, help=f"resolution base (default {PAPER_GAMMA})")
    p.add_argument("--preset", choices=PRESETS, default=None,
                   help="use a published table instead of alpha^phi... (efficientnet: B0..B7 for phi 0..7)")
    p.add_argument("--name", default=None, help="registered name of the result (default BASE_phiK)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    s = p.add_argument_group("--search-coefficients: grid search for alpha, beta, gamma at phi = 1")
    s.add_argument("--search-coefficients", action="store_true", help="run the grid search instead of scaling")
    s.add_argument("--grid", type=non_negative_float, nargs="+", default=[1.0, 1.1, 1.2, 1.3, 1.4],
                   help="values tried for each of alpha, beta, gamma (default 1.0 1.1 1.2 1.3 1.4)")
    s.add_argument("--tolerance", type=non_negative_float, default=0.1,
                   help="keep alpha*beta^2*gamma^2 within this fraction of 2 (default 0.1)")
    s.add_argument("--data", default="digits", help="proxy data (default digits)")
    s.add_argument("--image-size", type=positive_int, default=32, help="proxy side at phi = 0 (default 32)")
    s.add_argument("--epochs", type=positive_int, default=2, help="training epochs per candidate (default 2)")
    s.add_argument("--train-limit", type=positive_int, default=None, help="train on this many images")
    s.add_argument("--val-limit", type=positive_int, default=None, help="validate on this many images")
    s.add_argument("--seed", type=int, default=0, help="seed of every training run (default 0)")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.search_coefficients:
        return _search(args)
    if args.phi is None:
        raise ValueError("--phi is required (or --search-coefficients)")
    result = compound_scale(args.base, args.phi, args.alpha, args.beta, args.gamma, preset=args.preset, name=args.name)
    stats = measure(result)
    out = {**result.to_dict(), **{k: stats[k] for k in ("params", "gflops")},
           "create_model": f"create_model({result.base!r}, width_mult={result.width_mult!r}, "
                           f"depth_mult={result.depth_mult!r})"}
    if args.json:
        print_json(out)
        return 0
    how = f"preset {result.preset}" if result.preset else \
        f"alpha={result.alpha:g}, beta={result.beta:g}, gamma={result.gamma:g}"
    print(f"{result.name}: {result.base} at phi={result.phi:g} ({how})")
    print(f"  depth x{result.depth:.4g}, width x{result.width:.4g}, resolution x{result.resolution_factor:.4g} -> "
          f"{result.resolution}x{result.resolution} (predicted FLOPs x{result.flops_factor:.3g})")
    print(f"  {stats['params'] / 1e6:.2f}M parameters, {stats['gflops']:.3f} GFLOPs (multiply-adds) at "
          f"{result.resolution}x{result.resolution}")
    print_table("scaled stages (block strings)", ["stage", "blocks"],
                [[i, " ".join(stage)] for i, stage in enumerate(result.stages)], justify_right={"stage"})
    print(f"registered in this process only; elsewhere: archzoo train {result.base} --model-kwargs "
          f"width_mult={result.width_mult!r} depth_mult={result.depth_mult!r} --image-size {result.resolution} ...")
    return 0


def _search(args) -> int:
    grid = coefficient_grid(args.grid, args.grid, args.grid, tolerance=args.tolerance)
    if not grid:
        raise ValueError(f"--grid {' '.join(map(str, args.grid))} holds no (alpha, beta, gamma) within "
                         f"--tolerance {args.tolerance} of alpha*beta^2*gamma^2 = 2")

    def progress(row):
        if not args.json:
            tag = "base (phi=0)" if row["baseline"] else f"alpha={row['alpha']:g} beta={row['beta']:g} gamma={row['gamma']:g}"
            print(f"  {tag}: accuracy {row['val_accuracy']:.4f} at {row['image_size']}px ({row['seconds']:.1f}s)",
                  flush=True)

    if not args.json:
        print(f"grid search at phi=1: {len(grid)} candidates (+ the base) on {args.data}, {args.epochs} epochs each")
    rows = search_coefficients(args.base, grid, data=args.data, image_size=args.image_size, epochs=args.epochs,
                               train_limit=args.train_limit, val_limit=args.val_limit, seed=args.seed,
                               progress=progress)
    if args.json:
        print_json(rows)
        return 0
    print_table("candidates, best first", ["alpha", "beta", "gamma", "a*b^2*g^2", "px", "params (M)", "GFLOPs", "accuracy"],
                [["base" if r["baseline"] else f"{r['alpha']:g}", f"{r['beta']:g}", f"{r['gamma']:g}",
                  f"{r['flops_factor']:.3f}", r["image_size"], f"{r['params'] / 1e6:.2f}", f"{r['gflops']:.4f}",
                  f"{r['val_accuracy']:.4f}"] for r in rows],
                justify_right={"a*b^2*g^2", "px", "params (M)", "GFLOPs", "accuracy"})
    best = next(r for r in rows if not r["baseline"])
    print(f"best: alpha={best['alpha']:g} beta={best['beta']:g} gamma={best['gamma']:g}")
    return 0
