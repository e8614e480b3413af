"""``archzoo stylize``: style transfer on perceptual features of any zoo backbone (:mod:`archzoo.style`).

    archzoo stylize CONTENT STYLE --out out.png                 # Gatys et al.: optimise the picture
    archzoo stylize --train STYLE --data FOLDER --out RUN       # Johnson et al.: train a transformer net
    archzoo stylize CONTENT... --model RUN --out out.png|DIR    # apply it: one forward pass a picture

CONTENT and STYLE are image files or built-in pictures from scikit-image (nothing is downloaded):
photos astronaut, chelsea, coffee, rocket, camera, coins, clock, moon; styles hubble, ihc,
colorwheel, retina, gravel, brick, grass. ``--data builtin`` (the default) trains on the photos.

The perceptual network is any zoo classifier (``--backbone``, default VGG-19 for Gatys, VGG-16 for
training, as in the papers) with random weights unless ``--features-weights`` gives a file:
torchvision's pretrained VGG state dict (``vgg19-dcbb9e9d.pth``; read with
``torch.load(weights_only=True)`` and converted), an archzoo checkpoint, or shipped weights
(``--backbone resnet20 --features-weights cifar10``). Random or CIFAR features give much poorer
pictures than ImageNet VGG: see docs/style_transfer.md.

A training run writes RUN/model.safetensors (the net), RUN/state.safetensors (every
``--checkpoint-every`` steps, atomically: ``--resume`` continues a killed run exactly),
RUN/style.png, RUN/preview.png (photos and their stylised versions) and RUN/report.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..validate import arg_type
from .common import non_negative_float, positive_int

PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def register(sub) -> None:
    p = sub.add_parser("stylize", help="style transfer: Gatys optimisation, or train/apply a Johnson transformer net",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="*", metavar="IMAGE", help="CONTENT STYLE (Gatys), or CONTENT... (with --model)")
    p.add_argument("--out", required=True, help="the picture to write (Gatys, one CONTENT with --model), a folder "
                                                "(several CONTENTs), or the run folder (--train)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--train", metavar="STYLE", help="train a transformer net for this style picture")
    mode.add_argument("--model", help="apply a trained net: RUN/model.safetensors (or the RUN folder)")
    p.add_argument("--size", type=positive_int, help="longer side of the pictures (Gatys: default 256; --model: default "
                                                  "the picture's own) or the training crop (default 256)")
    p.add_argument("--steps", type=positive_int, help="Gatys: loss evaluations (default 300); --train: steps in all (default 2000)")
    p.add_argument("--optimizer", choices=("lbfgs", "adam"), help="Gatys: lbfgs (default, the paper's) or adam")
    p.add_argument("--lr", type=arg_type("lr"), help="learning rate (Gatys: L-BFGS 1, Adam 0.02; --train: 1e-3)")
    p.add_argument("--init", choices=("content", "noise"), help="Gatys: start from the content picture (default) or noise")
    p.add_argument("--backbone", help="the perceptual network: any zoo classifier (default vgg19 for Gatys, vgg16 for --train)")
    p.add_argument("--features-weights", metavar="FILE", help="its weights: torchvision .pth, archzoo .safetensors or a "
                                                              "shipped tag (default: random weights)")
    p.add_argument("--content-layer", help="content layer: relu4_2 (Gatys) / relu2_2 (--train) on VGG, else a "
                                           "feature-map index (default the middle one)")
    p.add_argument("--style-layers", nargs="+", help="style layers (default relu1_1..relu5_1 (Gatys) / relu1_2 relu2_2 "
                                                     "relu3_3 relu4_3 (--train) on VGG, else every feature map)")
    p.add_argument("--content-weight", type=non_negative_float, default=1.0, help="default 1")
    p.add_argument("--style-weight", type=non_negative_float, default=10.0, help="default 10 (losses are relative errors)")
    p.add_argument("--tv-weight", type=non_negative_float, default=0.01, help="total variation weight (default 0.01)")
    p.add_argument("--data", help="--train: a folder of content photos, or 'builtin' (scikit-image's; default)")
    p.add_argument("--batch-size", type=positive_int, help="--train: crops per step (default 4)")
    p.add_argument("--checkpoint-every", type=positive_int, help="--train: steps between checkpoints (default 100)")
    p.add_argument("--resume", action="store_true", help="--train: continue the run in --out")
    p.add_argument("--norm", choices=("instance", "batch"), help="--train: the net's norm, instance (default; Ulyanov "
                                                                 "et al.) or batch (the paper's)")
    p.add_argument("--compare", action="store_true", help="also write <out>_compare.png: content, style and result side by side")
    p.add_argument("--seed", type=arg_type("seed"), default=0, help="random seed (default 0)")
    p.add_argument("--threads", type=arg_type("threads"), default=1, help="CPU threads (default 1)")
    p.add_argument("--quiet", action="store_true", help="print only the report")
    p.set_defaults(func=run)


# options that mean something in one mode only: given elsewhere they are refused, not ignored
ONLY = {
    "optimizer": ("gatys",), "init": ("gatys",), "data": ("train",), "batch_size": ("train",),
    "checkpoint_every": ("train",), "resume": ("train",), "norm": ("train",), "backbone": ("gatys", "train"),
    "features_weights": ("gatys", "train"), "content_layer": ("gatys", "train"), "style_layers": ("gatys", "train"),
    "lr": ("gatys", "train"), "steps": ("gatys", "train"),
}


def run(args) -> int:
    import torch

    from ..validate import UserError

    mode = "train" if args.train else "apply" if args.model else "gatys"
    for option, modes in ONLY.items():
        if mode not in modes and getattr(args, option) not in (None, False):
            what = {"gatys": "the Gatys optimisation", "train": "--train", "apply": "--model"}
            raise UserError(f"--{option.replace('_', '-')} is for {' and '.join(what[m] for m in modes)}, not {what[mode]}")
    if mode != "apply" and args.content_weight == args.style_weight == 0:
        raise UserError("--content-weight and --style-weight are both 0: there is nothing to optimise")
    torch.set_num_threads(args.threads)
    log = None if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    from .common import print_json

    report = {"gatys": _gatys, "train": _train, "apply": _apply}[mode](args, log)
    print_json(report)
    return 0


def _picture_out(path: str, option: str = "--out") -> Path:
    from ..validate import UserError, check_writable_file

    out = check_writable_file(path, option)
    if out.suffix.lower() not in PICTURE_SUFFIXES:
        raise UserError(f"{option} {path}: give a picture file name ending in {', '.join(PICTURE_SUFFIXES)}")
    return out


def _weights(args):
    from ..style import LossWeights

    return LossWeights(args.content_weight, args.style_weight, args.tv_weight)


def _gatys(args, log) -> dict:
    from ..style import GatysConfig, PerceptualNet, StyleLoss, stylize
    from ..style.images import load_image, save_image, side_by_side
    from ..validate import UserError

    if len(args.images) != 2:
        raise UserError(f"give CONTENT and STYLE (two pictures) to stylize by optimisation, got {len(args.images)}; "
                        "or --train STYLE, or --model RUN with CONTENT pictures")
    out = _picture_out(args.out)
    size = args.size or 256
    content = load_image(args.images[0], "CONTENT", size)
    style = load_image(args.images[1], "STYLE", size)
    backbone = args.backbone or "vgg19"
    net = PerceptualNet(backbone, args.content_layer, args.style_layers, args.features_weights, method="gatys")
    cfg = GatysConfig(steps=args.steps or 300, optimizer=args.optimizer or "lbfgs", lr=args.lr, init=args.init or "content",
                      seed=args.seed, weights=_weights(args))
    image, report = stylize(content, StyleLoss(net, style, cfg.weights), cfg, log=log)
    save_image(image, out)
    report.update(content=args.images[0], style=args.images[1], size=list(image.shape[1:]), backbone=backbone,
                  features_weights=args.features_weights, content_layer=net.content_name, style_layers=net.style_names,
                  out=str(out))
    if args.compare:
        compare = out.with_name(f"{out.stem}_compare.png")
        save_image(side_by_side([content, style, image]), compare)
        report["compare"] = str(compare)
    return report


def _train(args, log) -> dict:
    from ..style.train import StyleTrainConfig, train_style
    from ..validate import UserError, check_writable_dir

    if args.images:
        raise UserError(f"--train takes its content photos from --data, not from IMAGE arguments ({' '.join(args.images)})")
    check_writable_dir(args.out)
    cfg = StyleTrainConfig(steps=args.steps or 2000, batch_size=args.batch_size or 4, size=args.size or 256,
                           lr=args.lr or 1e-3, seed=args.seed, backbone=args.backbone or "vgg16",
                           features_weights=args.features_weights, content_layer=args.content_layer,
                           style_layers=tuple(args.style_layers) if args.style_layers else None, weights=_weights(args),
                           checkpoint_every=args.checkpoint_every or 100, norm=args.norm or "instance")
    if cfg.size < 32:
        raise UserError(f"--size: training crops must be at least 32 pixels, got {cfg.size}")
    return train_style(args.train, args.data or "builtin", args.out, cfg, resume=args.resume, log=log)


def _apply(args, log) -> dict:
    import time

    from ..style.images import load_image, save_image, side_by_side
    from ..style.train import apply_model, load_style_model
    from ..validate import UserError, check_writable_dir
    from .common import output_names

    if not args.images:
        raise UserError("--model: give the CONTENT pictures to stylise")
    model, meta = load_style_model(args.model)
    if len(args.images) == 1:
        outs = [_picture_out(args.out)]
    else:
        folder = check_writable_dir(args.out)
        folder.mkdir(parents=True, exist_ok=True)
        outs = [folder / n for n in output_names(args.images)]
    results = []
    for spec, out in zip(args.images, outs):
        content = load_image(spec, "CONTENT", args.size)
        start = time.perf_counter()
        image = apply_model(model, content)
        seconds = time.perf_counter() - start
        save_image(image, out)
        row = {"content": spec, "out": str(out), "size": list(image.shape[1:]), "seconds": round(seconds, 3)}
        if args.compare:
            compare = out.with_name(f"{out.stem}_compare.png")
            save_image(side_by_side([content, image]), compare)
            row["compare"] = str(compare)
        results.append(row)
        if log:
            log(f"{spec} -> {out} ({seconds:.2f} s)")
    return {"method": "johnson", "model": args.model, "style": meta.get("style"), "results": results}
