"""Segmentation latency: archzoo's segmenters against their references with the same weights, side by
side in one process.

    python benchmarks/segmentation_latency.py                          # every segmenter with a reference
    python benchmarks/segmentation_latency.py deeplabv3_resnet50 --sizes 1x256x256 --threads 4 --json out.json

For each segmenter whose card names a reference (torchvision's FCN, DeepLab v3 and LR-ASPP; smp's
models where their cards name them), the reference is built with random weights, its state dict
converted into ours (so both compute the same function: the largest logit difference relative to
the logits' scale is printed as a check), and eval-mode forward passes under
``torch.inference_mode`` on the same batch are timed alternately (``latency.alternate``: which
goes first alternates between rounds). Both are built without auxiliary heads, so both compute
the same thing; ``--aux`` keeps torchvision's (``aux_loss=True``, as its published weights are
built), which it also runs in eval mode (``{"out", "aux"}``) while ours skips it there: what a user
loading those weights gets. Reported per model and batch size: median milliseconds and the
speed-up ``reference / ours`` (above 1: ours is faster).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402

import archzoo  # noqa: E402
from archzoo.weights import build_reference  # noqa: E402
from latency import alternate  # noqa: E402


def with_reference() -> list[str]:
    return [n for n in archzoo.list_models(task="segmentation") if archzoo.model_card(n).reference]


def _logits(output) -> torch.Tensor:
    return output["out"] if isinstance(output, dict) else output


def _without_aux(reference: torch.nn.Module) -> tuple[torch.nn.Module, dict]:
    """The reference and our build options without the auxiliary head."""
    if getattr(reference, "aux_classifier", None) is None:
        return reference, {}
    reference.aux_classifier = None
    return reference, {"aux_logits": False}


def pair(name: str, aux: bool = True) -> tuple[torch.nn.Module, torch.nn.Module]:
    """``(reference, ours)`` in eval mode, ours holding the reference's (random) weights."""
    from archzoo.io import build_with_state

    card = archzoo.model_card(name)
    torch.manual_seed(0)
    reference = build_reference(card.reference)
    state = archzoo.convert_weights(name, reference.state_dict(), source=card.reference_source)
    kwargs = {}
    if not aux:
        reference, kwargs = _without_aux(reference)
        state = {k: v for k, v in state.items() if not k.startswith("aux_heads.")}
    return reference.eval(), build_with_state(name, state, **kwargs).eval()


def measure(name: str, sizes: list[tuple[int, int, int]], rounds: int, warmup: int, aux: bool) -> list[dict]:
    reference, ours = pair(name, aux)
    rows = []
    for batch, h, w in sizes:
        x = torch.randn(batch, 3, h, w, generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            want, got = _logits(reference(x)), ours(x)
            diff = ((want - got).abs().max() / want.abs().max().clamp_min(1e-12)).item()
            a, b = alternate(lambda: ours(x), lambda: reference(x), rounds, warmup)
        rows.append({"model": name, "reference": archzoo.model_card(name).reference, "input": [batch, 3, h, w],
                     "ours_ms": round(a, 2), "reference_ms": round(b, 2), "speedup": round(b / a, 3),
                     "max_rel_diff": diff})
        print(f"  {name} {batch}x3x{h}x{w}: ours {a:.1f} ms, reference {b:.1f} ms", file=sys.stderr, flush=True)
    return rows


def _size(text: str) -> tuple[int, int, int]:
    try:
        batch, h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"sizes are BATCHxHEIGHTxWIDTH, e.g. 4x256x256; got {text!r}") from None
    if min(batch, h, w) < 1:
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    return batch, h, w


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="*", default=None, help="default: every segmenter whose card names a reference")
    p.add_argument("--sizes", nargs="+", type=_size, default=[(1, 256, 256), (4, 256, 256)],
                   help="input sizes BATCHxHEIGHTxWIDTH (default: 1x256x256 4x256x256)")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--aux", action="store_true", help="keep the auxiliary heads (torchvision runs its own in eval mode)")
    p.add_argument("--json", default=None, help="also write the results to this file")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    models = args.models or with_reference()
    unknown = [m for m in models if not archzoo.model_card(m).reference]
    if unknown:
        p.error(f"no reference implementation for {', '.join(unknown)}")
    rows = [r for m in models for r in measure(m, args.sizes, args.rounds, args.warmup, args.aux)]
    print(f"{'model':30} {'reference':42} {'input':>12} {'ours ms':>9} {'ref ms':>9} {'speed-up':>8} {'max diff':>9}")
    for r in rows:
        size = "x".join(map(str, r["input"][:1] + r["input"][2:]))
        print(f"{r['model']:30} {r['reference']:42} {size:>12} {r['ours_ms']:9.1f} {r['reference_ms']:9.1f} "
              f"{r['speedup']:8.3f} {r['max_rel_diff']:9.1e}")
    print(f"geometric mean speed-up (reference / ours): {statistics.geometric_mean(r['speedup'] for r in rows):.3f} "
          f"({torch.get_num_threads()} threads, torch {torch.__version__}, {platform.processor() or platform.machine()}"
          f"{', reference with its auxiliary head' if args.aux else ''})")
    if args.json:
        Path(args.json).write_text(json.dumps({"threads": torch.get_num_threads(), "torch": torch.__version__,
                                               "aux": args.aux, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
