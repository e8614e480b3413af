"""``archzoo predict CKPT IMAGE...``: the most likely classes of each image.

    archzoo predict runs/c10/best.safetensors cat.jpg dog.png --topk 3
    archzoo predict resnet20.cifar10 img.png --json

Images are read, resized and normalised the way the checkpoint's run evaluated (its input size,
channels, mean and std, all stored in the checkpoint).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("predict", help="classify image files with a checkpoint",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="a .safetensors checkpoint, or <model>.<tag> of shipped weights")
    p.add_argument("images", nargs="+", help="image files (JPEG, PNG, ...)")
    p.add_argument("--topk", type=int, default=5, help="classes to list per image (default 5)")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def predict_files(model, meta: dict, files: list[str], topk: int = 5, device=None) -> list[dict]:
    """``[{"file", "top": [{"class", "index", "probability"}, ...]}]`` for each image file."""
    import torch

    from ..data import build_transform
    from ..data.folder import ImageDecoder
    from .common import checkpoint_input

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    c, size, mean, std = checkpoint_input(model, meta)
    names = meta.get("class_names") or [str(i) for i in range(model.num_classes)]
    tf, decode = build_transform(False, size, mean, std, in_chans=c), ImageDecoder(c)
    model = model.to(device).eval()
    out = []
    for f in files:
        if not Path(f).is_file():
            raise FileNotFoundError(f"image {f} does not exist")
        image = decode(f)
        with torch.no_grad():
            probs = model(tf(image)[None].to(device)).float().softmax(-1)[0].cpu()
        p, idx = probs.topk(min(topk, len(probs)))
        out.append({"file": str(f), "top": [{"class": names[i], "index": i, "probability": float(q)}
                                            for q, i in zip(p.tolist(), idx.tolist())]})
    return out


def run(args: argparse.Namespace) -> int:
    from ..hub import load_checkpoint
    from .common import print_json, print_table

    model, meta = load_checkpoint(args.checkpoint)
    preds = predict_files(model, meta, args.images, args.topk, args.device)
    if args.json:
        print_json({"checkpoint": str(args.checkpoint), "model": meta.get("model"), "predictions": preds})
        return 0
    rows = []
    for pr in preds:
        for rank, t in enumerate(pr["top"]):
            rows.append([pr["file"] if rank == 0 else "", rank + 1, t["class"], f"{t['probability']:.1%}"])
    print_table(f"{meta.get('model')} predictions", ["image", "#", "class", "probability"], rows,
                justify_right={"#", "probability"})
    return 0
