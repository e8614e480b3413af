"""``archzoo nca --target IMAGE|smiley|heart --out DIR``: grow a picture with a neural cellular
automaton (Mordvintsev et al., "Growing Neural Cellular Automata", Distill 2020); see
:mod:`archzoo.nca`.

    archzoo nca --target smiley --out runs/nca --steps 2000
    archzoo nca --target my_emoji.png --out runs/nca2 --size 40
    archzoo nca --target smiley --out runs/nca --steps 4000 --resume   # continue a run

Writes ``nca.safetensors`` (checkpoint, every ``--checkpoint-every`` steps, atomically: a killed
run resumes from its last one), ``growth.png``/``.gif`` (from the seed cell),
``regrowth.png``/``.gif`` (after a disc is erased), ``target.png`` and ``report.json`` (the final
loss, the error after growth and after regrowth: MSE of RGBA against the target).
"""

from __future__ import annotations

import argparse
import sys

from .common import positive_int


def register(sub) -> None:
    p = sub.add_parser("nca", help="grow (and regrow) a picture with a neural cellular automaton",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", default="smiley", help="an image file (PNG with transparency works best) or a built-in "
                                                      "target: smiley, heart (default smiley)")
    p.add_argument("--out", required=True, help="the run folder (checkpoint, pictures, report.json)")
    p.add_argument("--steps", type=positive_int, default=2000, help="training iterations in all (default 2000)")
    p.add_argument("--size", type=positive_int, default=40, help="grid side in cells (default 40)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--pool-size", type=positive_int, default=256, help="sample pool (default 256; the paper: 1024)")
    p.add_argument("--batch-size", type=positive_int, default=8, help="samples per iteration (default 8)")
    p.add_argument("--ca-steps", type=positive_int, nargs=2, default=(64, 96), metavar=("MIN", "MAX"),
                   help="CA steps per iteration, drawn uniformly (default 64 96, the paper's)")
    p.add_argument("--checkpoint-every", type=positive_int, default=100, help="iterations between checkpoints (default 100)")
    p.add_argument("--threads", type=positive_int, default=1, help="CPU threads (default 1)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.add_argument("--quiet", action="store_true", help="print only the report")
    p.set_defaults(func=run)


def run(args) -> int:
    import torch

    from ..nca import NCAConfig, run_nca
    from ..validate import UserError, check_writable_dir
    from .common import print_json

    lo, hi = args.ca_steps
    if lo > hi:
        raise UserError(f"--ca-steps: MIN ({lo}) must not exceed MAX ({hi})")
    if not 0 <= args.seed < 2**63:
        raise UserError(f"--seed must be a whole number >= 0, got {args.seed}")
    if args.size < 8:
        raise UserError(f"--size must be at least 8 cells, got {args.size}")
    if args.batch_size > args.pool_size:
        raise UserError(f"--batch-size ({args.batch_size}) must not exceed --pool-size ({args.pool_size})")
    check_writable_dir(args.out)
    torch.set_num_threads(args.threads)
    cfg = NCAConfig(size=args.size, steps=args.steps, seed=args.seed, pool_size=args.pool_size,
                    batch_size=args.batch_size, min_iters=lo, max_iters=hi,
                    damaged=min(3, args.batch_size - 1), damage_after=0, checkpoint_every=args.checkpoint_every)
    log = None if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    report = run_nca(args.target, args.out, cfg, resume=args.resume, log=log)
    print_json(report)
    return 0
