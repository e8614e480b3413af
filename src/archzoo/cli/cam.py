"""``archzoo cam MODEL IMAGE...``: where the model looks, as heat maps over the images.

    archzoo cam runs/shapes/best.safetensors star.png ring.png --out overlays/
    archzoo cam resnet20.cifar10 cat.png --method gradcam --class cat
    archzoo cam vgg16 photo.jpg            # a zoo name: random weights, the map shows nothing learned

Writes, per image, ``OUT/<image>.<method>.png``: the image as the model sees it (resized and
cropped like ``archzoo predict``) and the class activation map blended over it, titled with the
explained class and its probability; for several images also ``OUT/grid.<method>.png``.

``--method auto`` (the default) is original CAM (Zhou et al. 2016, arXiv:1512.04150) where the
head is global average pooling + linear and Grad-CAM (Selvaraju et al. 2016, arXiv:1610.02391)
elsewhere; ``cam``, ``gradcam``, ``gradcam++``, ``hirescam``, ``xgradcam``, ``layercam``,
``eigencam`` and ``scorecam`` choose one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers) -> None:
    from ..explain import METHODS
    from ..validate import device_arg

    p = subparsers.add_parser("cam", help="class activation maps of image files (overlay PNGs)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="a .safetensors checkpoint, <model>.<tag> of shipped weights, or a zoo model name")
    p.add_argument("images", nargs="+", help="image files (JPEG, PNG, ...)")
    p.add_argument("--method", default="auto", choices=METHODS, help="explanation method (default auto: CAM where "
                   "the head allows, else Grad-CAM)")
    p.add_argument("--class", dest="target", metavar="K", help="explain class K (index or name) instead of the prediction")
    p.add_argument("--layer", help="module to explain instead of the model card's cam_layer (gradient methods)")
    p.add_argument("--out", default="overlays", help="folder for the PNGs (default ./overlays)")
    p.add_argument("--device", type=device_arg, help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def load_for_cam(arg: str):
    """``(model in eval mode, metadata, random)``: a checkpoint or shipped tag (resolved as
    ``archzoo predict`` does), or a registered name built with random weights."""
    from ..builder import create_model
    from ..io import load_model
    from ..registry import list_models

    if not Path(arg).expanduser().is_file() and arg in list_models():
        return create_model(arg).eval(), {"model": arg}, True
    model, meta = load_model(arg, need_head=True)
    return model, meta, False


def class_index(text: str | None, names: list[str]) -> int | None:
    if text is None:
        return None
    if text in names:
        return names.index(text)
    try:
        k = int(text)
    except ValueError:
        raise ValueError(f"--class {text!r} is neither a class index nor one of the classes "
                         f"({', '.join(names[:10])}{' ...' if len(names) > 10 else ''})") from None
    if not 0 <= k < len(names):
        raise ValueError(f"--class {k} is out of range: the model has {len(names)} classes (0..{len(names) - 1})")
    return k


def run(args: argparse.Namespace) -> int:
    import torch

    from ..data import build_transform
    from ..data.folder import ImageDecoder
    from ..explain import NotLinearHeadError, explain_method
    from ..explain.render import save_grid, save_overlay, to_display
    from ..explain.state import inspection_mode
    from .common import checkpoint_input, output_names, print_json, print_table

    from ..validate import check_input_files, check_writable_dir, resolve_device, shown

    check_input_files(args.images)
    check_writable_dir(args.out, "--out")
    model, meta, random_weights = load_for_cam(args.model)
    if random_weights:
        print(f"archzoo cam: warning: {args.model} has random weights (no checkpoint given), so the maps show "
              "nothing learned; pass a trained checkpoint for a meaningful explanation", file=sys.stderr)
    names = meta.get("class_names") or [str(i) for i in range(model.num_classes)]
    target = class_index(args.target, names)
    device = resolve_device(args.device)
    model = model.to(device).eval()
    c, size, mean, std = checkpoint_input(model, meta)
    tf, decode = build_transform(False, size, mean, std, in_chans=c), ImageDecoder(c)
    x = torch.stack([tf(decode(f)) for f in args.images]).to(device)

    try:
        heat, method = explain_method(model, x, args.method, target=target, layer=args.layer)
    except NotLinearHeadError as e:
        raise ValueError(f"{e} On the command line: --method gradcam (or auto).") from None
    with inspection_mode(model), torch.no_grad():
        probs = model(x).float().softmax(-1).cpu()
    out = Path(args.out)
    pictures = [to_display(xi, mean, std) for xi in x.cpu()]
    results, titles = [], []
    for i, (f, file_name) in enumerate(zip(args.images, output_names(args.images, f".{method}.png"))):
        pred = int(probs[i].argmax())
        k = pred if target is None else target
        title = f"{meta.get('model')} {method}: {names[k]} ({probs[i, k]:.1%})"
        if k != pred:
            title += f", predicted {names[pred]} ({probs[i, pred]:.1%})"
        path = save_overlay(out / file_name, pictures[i], heat[i].cpu(), title)
        titles.append(f"{names[k]} ({probs[i, k]:.0%})")
        results.append({"file": shown(f), "class": names[k], "index": k, "probability": float(probs[i, k]),
                        "predicted": names[pred], "overlay": shown(path)})
    grid = None
    if len(args.images) > 1:
        grid = save_grid(out / f"grid.{method}.png", pictures, heat.cpu(), titles)
    if args.json:
        print_json({"model": meta.get("model"), "method": method, "random_weights": random_weights,
                    "grid": shown(grid) if grid else None, "images": results})
        return 0
    print_table(f"{meta.get('model')}: {method}", ["image", "class", "probability", "overlay"],
                [[r["file"], r["class"], f"{r['probability']:.1%}", r["overlay"]] for r in results],
                justify_right={"probability"})
    if grid:
        print(f"grid: {shown(grid)}")
    return 0
