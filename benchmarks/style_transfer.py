"""Style transfer on a CPU: Gatys optimisation and the Johnson transformer net, with the perceptual
backbones available without a download, CPU times and losses; pictures written to ``--out``.

    python benchmarks/style_transfer.py [--part gatys|johnson|all] [--backbones vgg19 resnet20.cifar10]
        [--gatys-steps 100] [--train-steps 150] [--size 128] [--out /tmp/style_bench]

Gatys: content ``chelsea`` (scikit-image's cat), styles ``ihc`` and ``hubble``, ``--size`` pixels on
the longer side, L-BFGS for ``--gatys-steps`` loss evaluations from the content picture, loss
weights content 1, style 10, TV 0.01 (relative errors, :mod:`archzoo.style.perceptual`).
Johnson: a transformer net trained for ``ihc`` on the 8 built-in photos, ``--train-steps`` Adam steps
(lr 1e-3) of batch 4 random ``--size`` crops; then the time to stylise one 256x256 picture (mean of
5 after one warm-up). A backbone is a zoo name
(random weights: ``vgg19``, ``vgg16``) or ``<model>.<tag>`` for shipped weights
(``resnet20.cifar10``); VGG uses the papers' layers (Gatys: VGG-19 relu4_2 / relu1_1..relu5_1;
Johnson: VGG-16 relu2_2 / relu1_2, relu2_2, relu3_3, relu4_3), other backbones their feature maps.
One torch thread. Prints a Markdown table; ``--json`` writes the rows.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import archzoo
from archzoo.style import GatysConfig, PerceptualNet, StyleLoss, stylize
from archzoo.style.images import content_images, load_image, save_image, side_by_side
from archzoo.style.train import StyleTrainConfig, StyleTrainer, apply_model


def _backbone(spec: str, method: str) -> tuple[str, str | None]:
    name, _, tag = spec.partition(".")
    if method == "johnson" and spec == "vgg19":
        name = "vgg16"  # the paper's
    return name, tag or None


def gatys(spec: str, style_name: str, steps: int, size: int, out: Path) -> dict:
    name, tag = _backbone(spec, "gatys")
    content, style = load_image("chelsea", "content", size), load_image(style_name, "style", size)
    net = PerceptualNet(name, weights=tag, method="gatys")
    image, report = stylize(content, StyleLoss(net, style), GatysConfig(steps=steps))
    picture = out / f"gatys_{spec}_{style_name}.png"
    save_image(side_by_side([content, style, image], size), picture)
    return {"method": "gatys", "backbone": spec, "style": style_name, "size": list(content.shape[1:]),
            "steps": report["evaluations"], "seconds": report["seconds"],
            "s_per_step": round(report["seconds"] / report["evaluations"], 3),
            "first": report["first"], "final": report["final"], "picture": str(picture)}


def johnson(spec: str, steps: int, size: int, out: Path) -> dict:
    name, tag = _backbone(spec, "johnson")
    style = load_image("ihc", "style", size)
    cfg = StyleTrainConfig(steps=steps, batch_size=4, size=size, backbone=name, features_weights=tag)
    photos = content_images("builtin")
    trainer = StyleTrainer(style, [p for _, p in photos], cfg)
    start = time.perf_counter()
    while trainer.step < steps:
        trainer.train_step()
        if trainer.step % 10 == 0:
            print(f"# {spec} step {trainer.step}: loss {trainer.losses[-1]['loss']:.3f}", flush=True)
    train_s = time.perf_counter() - start
    model = trainer.model.eval()
    test = load_image("astronaut", "content", 256)  # not a training crop size: the whole picture
    apply_model(model, test)
    times = []
    for _ in range(5):
        t = time.perf_counter()
        styled = apply_model(model, test)
        times.append(time.perf_counter() - t)
    others = [load_image(n, "content", 256) for n in ("chelsea", "coffee")]
    picture = out / f"johnson_{name}{'.' + tag if tag else ''}_ihc.png"
    save_image(side_by_side([style, test, styled, *[t for o in others for t in (o, apply_model(model, o))]], 256), picture)
    L = trainer.losses
    avg = lambda rows: {k: round(sum(d[k] for d in rows) / len(rows), 4) for k in rows[0]}
    return {"method": "johnson", "backbone": f"{name}{'.' + tag if tag else ''}", "style": "ihc", "size": [size, size],
            "steps": steps, "seconds": round(train_s, 1), "s_per_step": round(train_s / steps, 3),
            "first": avg(L[:10]), "final": avg(L[-10:]), "ms_per_256px_image": round(1000 * sum(times) / len(times), 1),
            "picture": str(picture)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=("gatys", "johnson", "all"), default="all")
    p.add_argument("--backbones", nargs="+", default=["vgg19", "resnet20.cifar10"])
    p.add_argument("--styles", nargs="+", default=["ihc", "hubble"])
    p.add_argument("--gatys-steps", type=int, default=100)
    p.add_argument("--train-steps", type=int, default=150)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--out", default="/tmp/style_bench")
    p.add_argument("--json")
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for spec in args.backbones:
        if args.part in ("gatys", "all"):
            for style in args.styles:
                rows.append(gatys(spec, style, args.gatys_steps, args.size, out))
                print(json.dumps(rows[-1]), flush=True)
        if args.part in ("johnson", "all"):
            rows.append(johnson(spec, args.train_steps, args.size, out))
            print(json.dumps(rows[-1]), flush=True)
    print("\n| method | backbone | style | size | steps | wall s | s/step | loss first -> final (content, style) | ms / 256 px image |")
    print("|---|---|---|---|---:|---:|---:|---|---:|")
    for r in rows:
        f, g = r["first"], r["final"]
        print(f"| {r['method']} | {r['backbone']} | {r['style']} | {'x'.join(map(str, r['size']))} | {r['steps']} | "
              f"{r['seconds']} | {r['s_per_step']} | {f['loss']:.3f} ({f['content']:.3f}, {f['style']:.3f}) -> "
              f"{g['loss']:.3f} ({g['content']:.3f}, {g['style']:.3f}) | {r.get('ms_per_256px_image', '-')} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    _ = archzoo  # the registry (johnson_transformer_net) is loaded through archzoo


if __name__ == "__main__":
    main()
