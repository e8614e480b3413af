"""``archzoo predict CKPT IMAGE...``: the most likely classes of each image.

    archzoo predict runs/c10/best.safetensors cat.jpg dog.png --topk 3
    archzoo predict resnet20.cifar10 img.png --json

Images are read, resized and normalised the way the checkpoint's run evaluated (its input size,
channels, mean and std, all stored in the checkpoint).
"""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    from ..validate import arg_type as T
    from ..validate import device_arg

    p = subparsers.add_parser("predict", help="classify image files with a checkpoint",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="a .safetensors checkpoint, or <model>.<tag> of shipped weights")
    p.add_argument("images", nargs="+", help="image files (JPEG, PNG, ...)")
    p.add_argument("--topk", type=T("topk"), default=5, help="classes to list per image (default 5)")
    p.add_argument("--device", type=device_arg, help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def predict_files(model, meta: dict, files: list[str], topk: int = 5, device=None) -> list[dict]:
    """``[{"file", "top": [{"class", "index", "probability"}, ...]}]`` for each image file (a
    segmenter's entries have a pixel ``share``, a detector's a ``score`` and a ``box``)."""
    import torch

    from ..data.folder import ImageDecoder
    from ..engine.evaluate import model_task
    from ..validate import check_input_files, check_option, resolve_device, shown
    from .common import checkpoint_input

    check_option("topk", topk)
    check_input_files(files)
    device = resolve_device(device, option="device")
    c, size, mean, std = checkpoint_input(model, meta)
    names = meta.get("class_names") or [str(i) for i in range(model.num_classes)]
    task = model_task(model, names)
    tf, decode = task.input_transform(size, mean, std, c), ImageDecoder(c)
    model = model.to(device).eval()
    out = []
    for f in files:
        image = decode(f)
        with torch.no_grad():
            out.append({"file": shown(f), **task.predict(model, tf(image)[None].to(device), tuple(image.shape[-2:]), topk)})
    return out


def run(args: argparse.Namespace) -> int:
    from ..shipped import load_checkpoint
    from .common import print_json, print_table

    from ..validate import check_input_files, shown

    check_input_files(args.images)  # before the checkpoint is read: the cheap checks first
    model, meta = load_checkpoint(args.checkpoint)
    preds = predict_files(model, meta, args.images, args.topk, args.device)
    if args.json:
        print_json({"checkpoint": shown(args.checkpoint), "model": meta.get("model"), "predictions": preds})
        return 0
    tops = [t for pr in preds for t in pr["top"]]
    columns = [k for k in tops[0] if k not in ("class", "index")] if tops else ["probability"]
    cell = lambda v: f"{v:.1%}" if isinstance(v, float) else str(v)
    rows = [[pr["file"] if rank == 0 else "", rank + 1, t["class"], *(cell(t[k]) for k in columns)]
            for pr in preds for rank, t in enumerate(pr["top"])]
    print_table(f"{meta.get('model')} predictions", ["image", "#", "class", *columns], rows,
                justify_right={"#", *columns})
    return 0
