"""``archzoo info NAME [--json]``: a model's card, its tricks explained, measured size and features."""

from __future__ import annotations

from ..builder import create_model
from ..profile import model_stats
from ..registry import model_card
from ..tricks import get_trick
from .common import console, print_json, print_table


def register(sub) -> None:
    p = sub.add_parser("info", help="a model's card, tricks, params, GFLOPs and feature maps")
    p.add_argument("name")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def model_info(name: str) -> dict:
    import torch

    card = model_card(name)
    stats = model_stats(name)
    with torch.device("meta"):  # a detector's maps are its backbone's: none of its own
        info = getattr(create_model(name), "feature_info", [])
    return {
        **card.to_dict(),
        "mean": list(card.mean), "std": list(card.std), "num_classes": card.num_classes,  # of its default weights
        "params": stats["params"],
        "params_with_aux": stats["params_with_aux"],
        "gflops": None if stats["gflops"] is None else round(stats["gflops"], 4),
        "features": [dict(e) for e in info],
        "trick_details": [{"name": t, **{k: v for k, v in vars(get_trick(t)).items() if k != "name"}} for t in card.tricks],
    }


def run(args) -> int:
    info = model_info(args.name)
    if args.json:
        print_json(info)
        return 0
    out = console()
    out.print(f"[bold]{info['name']}[/bold]  ({info['family']}, {info['task']}, {info['year']})")
    out.print(f"paper:      {info['paper']}")
    out.print(f"reference:  {info['reference'] or 'the paper (no reference implementation)'}")
    c, h, w = info["input_size"]
    out.print(f"input:      {c}x{h}x{w} (smallest {'x'.join(map(str, info['min_input_size']))}), "
              f"mean {tuple(info['mean'])}, std {tuple(info['std'])}, {info['num_classes']} classes")
    aux = info["params_with_aux"] - info["params"]
    aux_note = f" (+{aux / 1e6:.2f}M in training-only auxiliary heads)" if aux else ""
    flops = ("no GFLOPs (not a tensor graph)" if info["gflops"] is None
             else f"{info['gflops']:.3f} GFLOPs (multiply-adds) at {h}x{w}")
    out.print(f"size:       {info['params'] / 1e6:.2f}M parameters{aux_note}, {flops}")
    if info["notes"]:
        out.print(f"notes:      {info['notes']}")
    print_table("tricks", ["trick", "what it is", "introduced by", "year"],
                [[t["name"], t["definition"], t["paper"], t["year"]] for t in info["trick_details"]])
    print_table("feature maps (features_only=True)", ["index", "channels", "stride", "module"],
                [[i, f["channels"], f["stride"], f["module"]] for i, f in enumerate(info["features"])],
                justify_right={"index", "channels", "stride"})
    return 0
