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

A segmenter is explained for one class's region: the score is the sum of the class's logit over
the pixels predicted as it (pytorch-grad-cam's ``SemanticSegmentationTarget``), by Grad-CAM
(``auto``) or another gradient method, or by ``eigencam``. ``--class`` names the class (default:
the class covering most of each image that is not the background); the layer is the card's
``cam_layer`` (default: the backbone's deepest map). The picture is the image at its own size
and the map over it, titled with the class and its share of the pixels.

A detector outputs boxes, not one score per class, so it is explained by Eigen-CAM (Muhammad &
Yeasin 2020, arXiv:2008.00299; ``auto`` chooses it, the only method for detectors): the first
principal component of the backbone's deepest map (or ``--layer``), gradient-free and
class-agnostic. The picture is the image with the map blended over it and the detections
scoring ``--score-threshold`` (default 0.3) or more drawn as boxes; ``--json`` lists them as
``archzoo predict`` does.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers) -> None:
    from ..explain import METHODS
    from ..validate import arg_type as T
    from ..validate import device_arg

    p = subparsers.add_parser("cam", help="class activation maps of image files (overlay PNGs)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="a .safetensors checkpoint, <model>.<tag> of shipped weights, or a zoo model name")
    p.add_argument("images", nargs="+", help="image files (JPEG, PNG, ...)")
    p.add_argument("--method", default="auto", choices=METHODS, help="explanation method (default auto: CAM where "
                   "the head allows, else Grad-CAM; segmenters: Grad-CAM; detectors: Eigen-CAM)")
    p.add_argument("--class", dest="target", metavar="K", help="explain class K (index or name) instead of the "
                   "prediction (segmenters: instead of the largest non-background class)")
    p.add_argument("--layer", help="module to explain instead of the model card's cam_layer (gradient methods; "
                   "detectors: instead of the backbone)")
    p.add_argument("--score-threshold", type=T("score_threshold"), metavar="S",
                   help="detectors: draw the detections scoring at least S (default 0.3)")
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
    task = getattr(getattr(model, "card", None), "task", "classification")
    if task != "classification":
        return run_dense(args, model, meta, random_weights, task)
    if args.score_threshold is not None:
        raise ValueError(f"--score-threshold is for detectors; {meta.get('model')} is a classification model")
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


def run_dense(args: argparse.Namespace, model, meta: dict, random_weights: bool, task_name: str) -> int:
    """``archzoo cam`` for a segmenter (a class's region) or a detector (Eigen-CAM with its boxes)."""
    import torch
    import torch.nn.functional as F

    from ..data.folder import ImageDecoder
    from ..engine.detection import draw_detections
    from ..engine.evaluate import model_task
    from ..explain import detection_cam, method_for, segmentation_cam
    from ..explain.render import blend, save_overlay
    from ..validate import UserError, resolve_device, shown
    from .common import checkpoint_input, output_names, print_json, print_table
    from .predict import SCORE_THRESHOLD

    names = meta.get("class_names") or [str(i) for i in range(model.num_classes)]
    method = method_for(task_name, args.method)
    detect = task_name == "detection"
    if args.score_threshold is not None and not detect:
        raise UserError(f"--score-threshold is for detectors; {meta.get('model')} is a {task_name} model")
    threshold = SCORE_THRESHOLD if args.score_threshold is None else args.score_threshold
    scored = f"score {threshold:g} or more"
    if detect and args.target is not None:
        raise UserError(f"--class: a detector is explained by Eigen-CAM, which is class-agnostic; "
                        f"drop --class (the picture shows every detection of {scored})")
    if method == "eigencam" and args.target is not None:
        raise UserError("--class: Eigen-CAM is class-agnostic; drop --class, or choose a gradient method (gradcam ...)")
    target = class_index(args.target, names)
    device = resolve_device(args.device)
    model = model.to(device).eval()
    c, size, mean, std = checkpoint_input(model, meta)
    task = model_task(model, names)
    tf, decode = task.input_transform(size, mean, std, c), ImageDecoder(c)
    x = torch.stack([tf(decode(f)) for f in args.images]).to(device)
    found = detection_cam(model, x, args.layer) if detect else segmentation_cam(model, x, method, target, args.layer,
                                                                                   names)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for i, (f, file_name) in enumerate(zip(args.images, output_names(args.images, f".{method}.png"))):
        image = ImageDecoder(3)(f)  # shown at its own size, in colour
        heat = F.interpolate(found.maps[i][None, None].float().cpu(), size=image.shape[-2:], mode="bilinear",
                             align_corners=False)[0, 0].clamp(0, 1)
        picture = image.permute(1, 2, 0).float().div(255).numpy()
        if detect:  # the same forward pass's detections, in the image's pixels, as `archzoo predict` lists them
            dets = task.predict(lambda _x, d=found.detections[i]: [d], x[i:i + 1], tuple(image.shape[-2:]), 100,
                                score_threshold=threshold)["detections"]
            path = draw_detections(torch.from_numpy(blend(picture, heat)).permute(2, 0, 1), dets, names,
                                   out / file_name)
            results.append({"file": shown(f), "detections": dets, "overlay": shown(path)})
            continue
        k, share, whole = found.classes[i], found.shares[i], found.whole_image[i]
        where = "not predicted anywhere: the whole image explained" if whole else f"{share:.1%} of the pixels"
        path = save_overlay(out / file_name, picture, heat, f"{meta.get('model')} {method}: {names[k]} ({where})")
        results.append({"file": shown(f), "class": names[k], "index": k, "share": share,
                        "region": "whole image" if whole else "predicted", "overlay": shown(path)})
    if args.json:
        print_json({"model": meta.get("model"), "method": method, "layer": found.layer,
                    "random_weights": random_weights, "images": results})
        return 0
    if detect:
        rows = [[r["file"], len(r["detections"]), r["overlay"]] for r in results]
        columns = ["image", f"detections ({scored})", "overlay"]
        print_table(f"{meta.get('model')}: {method} of {found.layer}", columns, rows, justify_right={columns[1]})
    else:
        rows = [[r["file"], r["class"], f"{r['share']:.1%}", r["overlay"]] for r in results]
        print_table(f"{meta.get('model')}: {method} of {found.layer}", ["image", "class", "pixels", "overlay"], rows,
                    justify_right={"pixels"})
    return 0

