"""``archzoo predict CKPT IMAGE...``: the most likely classes of each image, a detector's boxes, or a segmenter's masks.

    archzoo predict runs/c10/best.safetensors cat.jpg dog.png --topk 3
    archzoo predict resnet20.cifar10 img.png --json
    archzoo predict runs/det/best.safetensors photos/*.jpg --out drawn/ --score-threshold 0.5 --json

Images are read, resized and normalised the way the checkpoint's run evaluated (its input size,
channels, mean and std, all stored in the checkpoint).

A detector lists, per image, the detections scoring ``--score-threshold`` (default 0.3) or more,
at most ``--topk`` (default 100): ``--json`` prints each image's ``file`` and ``detections``
(``label`` (class name), ``index``, ``score``, ``box`` ``[x1, y1, x2, y2]`` in the original
image's pixels). ``--out DIR`` writes each image with its boxes drawn to ``DIR/<name>.png``.
A detector that predicts instance masks (Mask R-CNN) adds to each detection its ``mask`` in the
original image's pixels: ``area`` (pixels), ``size`` ``[height, width]`` and ``counts``, COCO's
compressed run-length encoding (``pycocotools.mask.decode({"size": size, "counts": counts})``
gives the 0/1 mask back); ``--out`` draws the masks, half transparent, under the boxes.

A segmenter lists, per image, the classes covering it (``top``: ``class``, ``index``, ``share``
of its pixels, largest first; all of them unless ``--topk``). ``--out DIR`` writes
``DIR/<name>.mask.png`` (the class of every pixel at the image's own size: 8-bit indices with
the classes' colours as palette, as Pascal VOC's masks) and ``DIR/<name>.overlay.png`` (the image
with every class but the background blended in its colour); ``--json`` adds their paths as
``mask`` and ``overlay``. Images are resized to the model's input, as training and ``archzoo
eval`` see them; with ``--tile N`` (for a model trained on crops at the images' own scale) an
image larger than ``N`` is segmented at its own resolution by a sliding window of ``N``-pixel
tiles, so memory stays bounded whatever the image's size.
``--crf`` refines the masks with a fully connected CRF over the image's colours (DeepLab's
post-processing, :mod:`archzoo.segmentation.crf`).

A graph model (``gcn_superpixel``, :mod:`archzoo.graph`) lists classes as a classifier does;
``--out DIR`` writes ``DIR/<name>.graph.png``, the image with the superpixel graph the model
classified drawn over it (``--json`` adds its path as ``graph``).

A super-resolution model (``srdensenet_x4``) upscales each image by its scale (a colour photo's Y
by the net, Cb/Cr bicubic); ``--out DIR`` writes ``DIR/<name>.x4.png`` and ``DIR/<name>.compare.png``
(bicubic | model). With ``--reference`` each image is the high-resolution original: it is shrunk
first, and PSNR/SSIM against it are reported (the picture gets a third panel, the original).
See :mod:`archzoo.superres.infer`.

A captioner (``show_attend_tell_resnet18``) writes a caption per image (``caption``, ``words``,
``log_prob``), greedy or by beam search with ``--beam K``; ``--out DIR`` writes ``DIR/<name>.txt``
(the caption) and ``DIR/<name>.attention.png`` (the image, then each word's attention map over it).
See :mod:`archzoo.captioning.infer`.
"""

from __future__ import annotations

import argparse


SCORE_THRESHOLD = 0.3  # the detectors' default --score-threshold


def register(subparsers) -> None:
    from ..validate import arg_type as T
    from ..validate import device_arg

    p = subparsers.add_parser("predict", help="classify, detect or segment image files with a checkpoint",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="a .safetensors checkpoint, or <model>.<tag> of shipped weights")
    p.add_argument("images", nargs="+", help="image files (JPEG, PNG, ...)")
    p.add_argument("--topk", type=T("topk"), help="classes to list per image (default 5; detections: 100; "
                                                  "segmenters: every class present)")
    p.add_argument("--score-threshold", type=T("score_threshold"),
                   help=f"detectors: list and draw detections scoring at least this (default {SCORE_THRESHOLD})")
    p.add_argument("--out", metavar="DIR", help="detectors: write each image with its boxes drawn to DIR/<name>.png; "
                                               "segmenters: DIR/<name>.mask.png and DIR/<name>.overlay.png")
    p.add_argument("--tile", type=T("tile"), metavar="N", help="segmenters: segment images larger than N at "
                                                             "their own scale by a sliding window of N-pixel tiles "
                                                             "(default: resize to the model's input)")
    p.add_argument("--crf", action="store_true", help="segmenters: refine the masks with a dense CRF over the image's "
                                                      "colours (archzoo.segmentation.crf)")
    p.add_argument("--tta", choices=("none", "flip", "d4"), default="none",
                   help="segmenters: average the class probabilities over the image and its mirror (flip) or its "
                        "eight flips and quarter turns (d4; archzoo.segmentation.tta); default none")
    p.add_argument("--device", type=device_arg, help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--beam", type=int, metavar="K", help="captioners: beam search of width K (default 1: greedy); "
                                                         "--out DIR writes each word's attention over the image")
    p.add_argument("--scale", type=int, help="super-resolution: the factor the model must upscale by (a check)")
    p.add_argument("--reference", action="store_true",
                   help="super-resolution: each IMAGE is the high-resolution original: shrink it by the scale, upscale "
                        "that and score it (PSNR/SSIM); the side-by-side picture gets a third panel")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def predict_files(model, meta: dict, files: list[str], topk: int | None = None, device=None, *,
                  score_threshold: float | None = None, out=None, tile: int | None = None,
                  crf: bool = False, tta: str = "none") -> list[dict]:
    """``[{"file", "top": [{"class", "index", "probability"}, ...]}]`` for each image file; a
    segmenter's entries have a pixel ``share`` (and with ``out``, ``mask`` and ``overlay``: the
    PNGs written); a detector's are ``{"file", "detections": [{"label", "index", "score",
    "box"}]}`` (see the module doc), drawn to ``out/<name>.png`` when ``out`` is given.
    ``topk``: default 5 classes, 100 detections, every class a segmenter finds; ``tta``: a
    segmenter's test-time augmentation (``"flip"``, ``"d4"``; tiles and the CRF see its averages)."""
    import torch

    from ..data.folder import ImageDecoder
    from ..engine.evaluate import model_task
    from ..validate import UserError, check_input_files, check_option, check_writable_dir, resolve_device, shown
    from .common import checkpoint_input, output_names

    check_option("topk", topk)
    check_option("score_threshold", score_threshold)
    check_option("tile", tile)
    check_input_files(files)
    device = resolve_device(device, option="device")
    c, size, mean, std = checkpoint_input(model, meta)
    names = meta.get("class_names") or [str(i) for i in range(model.num_classes)]
    task = model_task(model, names)
    detect, segment = task.name == "detection", task.name == "segmentation"
    graph = task.name == "graph"
    misplaced = {"--out": (out is not None, detect or segment or graph, "detectors, segmenters and graph models"),
                 "--score-threshold": (score_threshold is not None, detect, "detectors"),
                 "--tile": (tile is not None, segment, "segmenters"), "--crf": (crf, segment, "segmenters"),
                 "--tta": (tta != "none", segment, "segmenters")}
    for flag, (given, fits, kind) in misplaced.items():
        if given and not fits:
            raise UserError(f"{flag} is for {kind}; {meta.get('model')} is a {task.name} model")
    if segment:
        check_tile(model, tile)
    if out is not None:
        out = check_writable_dir(out, "--out")
        out.mkdir(parents=True, exist_ok=True)
    tf, decode = task.input_transform(size, mean, std, c), ImageDecoder(c)
    model = model.to(device).eval()
    if tta != "none":
        from ..segmentation.tta import TestTimeAugment

        model = TestTimeAugment(model, tta).eval()
    results, pictures = [], output_names(files, "")
    for f, picture in zip(files, pictures):
        image = decode(f)
        x = tf(image)[None].to(device)
        with torch.no_grad():
            if detect:
                r = task.predict(model, x, tuple(image.shape[-2:]), topk or 100,
                                 score_threshold=SCORE_THRESHOLD if score_threshold is None else score_threshold)
            elif segment:
                r = task.predict(model, x, tuple(image.shape[-2:]), topk or task.num_classes, image=image, mean=mean,
                                 std=std, tile=tile, crf=crf)
            else:
                r = task.predict(model, x, tuple(image.shape[-2:]), topk or 5)
        mask = r.pop("mask", None)
        entry = {"file": shown(f), **r}
        if out is not None and detect:
            from ..engine.detection import draw_detections

            entry["picture"] = shown(draw_detections(ImageDecoder(3)(f), r["detections"], task.class_names,
                                                     out / f"{picture}.png"))
        elif out is not None and graph:  # the superpixel graph the model classified (archzoo.graph)
            from ..engine.report import save_picture

            entry["graph"] = shown(save_picture(task.draw(model, x), out / f"{picture}.graph.png"))
        elif out is not None and segment:
            from ..engine.report import mask_overlay, save_mask, save_picture

            entry["mask"] = shown(save_mask(mask, out / f"{picture}.mask.png", task.num_classes))
            entry["overlay"] = shown(save_picture(mask_overlay(image, mask, task.num_classes),
                                                  out / f"{picture}.overlay.png"))
        results.append(entry)
    return results


def check_tile(model, tile: int | None) -> None:
    """A ``--tile`` the model cannot take (below its card's smallest input) is refused."""
    from ..validate import UserError

    smallest = max(model.card.min_input_size[1:])
    if tile is not None and tile < smallest:
        raise UserError(f"--tile {tile} is smaller than the smallest input {model.card.name} takes ({smallest} px)")


def run(args: argparse.Namespace) -> int:
    from ..io import load_model
    from .common import print_json, print_table

    from ..validate import check_input_files, check_writable_dir, shown

    check_input_files(args.images)  # before the checkpoint is read: the cheap checks first
    from ..superres.infer import checkpoint_is_super_resolution, predict_command

    if checkpoint_is_super_resolution(args.checkpoint):  # upscaled photos (archzoo.superres.infer)
        return predict_command(args)
    if args.out is not None:
        check_writable_dir(args.out, "--out")
    model, meta = load_model(args.checkpoint, need_head=True)
    if model.card.task == "captioning" or args.beam is not None:  # captions (archzoo.captioning.infer)
        from ..captioning.infer import predict_command as caption_command

        return caption_command(args, model, meta)
    preds = predict_files(model, meta, args.images, args.topk, args.device, score_threshold=args.score_threshold,
                          out=args.out, tile=args.tile, crf=args.crf, tta=args.tta)
    if args.json:
        print_json({"checkpoint": shown(args.checkpoint), "model": meta.get("model"), "predictions": preds})
        return 0
    if preds and "detections" in preds[0]:
        rows = [[pr["file"] if rank == 0 else "", rank + 1, d["label"], f"{d['score']:.2f}",
                 " ".join(f"{v:g}" for v in d["box"])] for pr in preds for rank, d in enumerate(pr["detections"])]
        rows += [[pr["file"], "", "(nothing)", "", ""] for pr in preds if not pr["detections"]]
        print_table(f"{meta.get('model')} detections", ["image", "#", "class", "score", "box (x1 y1 x2 y2)"], rows,
                    justify_right={"#", "score"})
        return 0
    tops = [t for pr in preds for t in pr["top"]]
    columns = [k for k in tops[0] if k not in ("class", "index")] if tops else ["probability"]
    cell = lambda v: f"{v:.1%}" if isinstance(v, float) else str(v)
    rows = [[pr["file"] if rank == 0 else "", rank + 1, t["class"], *(cell(t[k]) for k in columns)]
            for pr in preds for rank, t in enumerate(pr["top"])]
    print_table(f"{meta.get('model')} predictions", ["image", "#", "class", *columns], rows,
                justify_right={"#", *columns})
    for pr in preds:
        if "mask" in pr:
            print(f"{pr['file']}: mask {pr['mask']}, overlay {pr['overlay']}")
        if "graph" in pr:
            print(f"{pr['file']}: superpixel graph {pr['graph']}")
    return 0
