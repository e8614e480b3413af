"""``archzoo eval CKPT --data DATA``: how well a saved classifier, detector or segmenter does on labelled data.

    archzoo eval runs/c10/best.safetensors --data path/to/test --json
    archzoo eval resnet20.cifar10 --data /data/cifar-10-batches-py
    archzoo eval runs/c10/best.safetensors --data /tmp/cifar10/train --held-out 0.1 --seed 0

``--held-out F`` scores the part of DATA that ``archzoo train --val-split F --seed S`` held out
for validation (the same seeded, per-class split), so a run trained on a tree can be checked on
the images it never saw.

``--json`` prints one object: ``accuracy`` (top-1, 0..1), ``top5``, ``loss``, ``count``,
``per_class_accuracy`` and, for up to 100 classes, ``confusion`` (rows: true class). Classes are
matched to the checkpoint's by name; a class the checkpoint does not know is an error.

A detector is scored on a detection set (``shapes-det``, Pascal VOC, COCO JSON, YOLO txt; see
``archzoo.data``) by pycocotools: ``map`` (AP at IoU 0.5:0.95), ``map50``, ``map75``,
``per_class`` (``{class: {"map", "map50"}}``) and ``count``; difficult (VOC) and crowd (COCO)
objects are ignored. ``data_description`` says which format was read and what it holds. A
detector that predicts instance masks (Mask R-CNN) is scored on its masks too, where the data
has them (``shapes-det``, COCO polygons or RLE): ``mask_map``, ``mask_map50``, ``mask_map75``
(COCO's mask AP, pycocotools ``segm``, masks above 0.5) and ``mask_map`` / ``mask_map50`` per class.

A segmenter is scored on a segmentation set (``shapes-seg``, image/mask folders ``masks:DIR``,
Pascal VOC ``vocseg:DIR``, COCO ``cocoseg:FILE``; see ``archzoo.data``; mask values mapped to
classes as the checkpoint's run mapped them) from the pixel confusion matrix, pixels marked 255
not counted: ``miou`` (mean IoU over the classes present in the truth or the prediction),
``pixel_accuracy``, ``dice`` (mean Dice, ``2 TP / (2 TP + FP + FN)``), ``pixel_error`` (1 -
pixel accuracy), ``per_class_iou`` and ``per_class_dice``, ``loss``, ``count`` (images) and, for
up to 100 classes, ``confusion`` (pixels; rows: true class).

A super-resolution model is scored on whole photos (``photos``: scikit-image's held-out sample
photos; a folder: every image in it, or with ``--held-out`` the photos its run held out), each
shrunk by the scale (bicubic) and upscaled back: ``psnr`` (dB) and ``ssim`` on the Y channel,
``scale`` border pixels shaved, with ``psnr_bicubic`` / ``ssim_bicubic`` of bicubic upsampling,
``count`` and ``per_image`` (:mod:`archzoo.superres.infer`).

A captioner is scored on images with captions (``shapes-cap``, a folder with ``captions.json`` or
``captions.csv``; words the checkpoint's vocabulary lacks are ``<unk>``): ``bleu1``..``bleu4``
(torchmetrics' corpus BLEU against all references), ``exact_match`` and, where the data marks
held-out compositions (``shapes-cap``'s test split), ``novel_exact_match`` / ``seen_exact_match``;
greedy decoding, or beam search with ``--beam K`` (docs/captioning.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    from ..validate import arg_type as T
    from ..validate import device_arg

    p = subparsers.add_parser("eval", help="evaluate a checkpoint on a labelled dataset",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="a .safetensors checkpoint, or <model>.<tag> of shipped weights")
    p.add_argument("--data", required=True, help="digits | shapes | shapes-det | shapes-seg | an ImageFolder tree | "
                                                 "CIFAR batches | MNIST IDX | Pascal VOC, COCO JSON or YOLO txt (force: "
                                                 "voc:DIR ...) | masks:DIR, vocseg:DIR, cocoseg:FILE")
    p.add_argument("--subset", help="the split to read where the data has several (default: test; a plain tree: itself)")
    p.add_argument("--held-out", type=T("held_out"), metavar="F",
                   help="score the validation part of DATA split off as by `train --val-split F`")
    p.add_argument("--seed", type=T("seed"), default=0, help="the split seed with --held-out (default 0)")
    p.add_argument("-b", "--batch-size", type=T("batch_size"), default=256, help="images per batch (default 256)")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable images instead of stopping")
    p.add_argument("--device", type=device_arg, help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--beam", type=int, metavar="K", help="captioners: decode by beam search of width K (default 1: greedy)")
    p.add_argument("--workers", type=T("workers"), help="DataLoader processes for folders not held in memory")
    p.add_argument("--confusion", metavar="PNG", help="also draw the confusion matrix to this file")
    p.add_argument("--tta", choices=("none", "flip", "d4"), default="none",
                   help="segmenters: average the softmax over the image and its mirror (flip) or all eight flips and "
                        "quarter turns (d4; archzoo.segmentation.tta); default none")
    p.add_argument("--scale", type=int, help="super-resolution: the factor the model must upscale by (a check)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def default_subset(spec: str) -> str:
    """``test`` where the data has a test split, else the tree itself (``train``)."""
    from ..data import BUILTIN, split_format

    if spec in BUILTIN:
        return "test"
    from ..data import cifar, folder, idx

    path = Path(split_format(spec)[1]).expanduser()
    if not path.is_dir():
        return "test"
    if cifar.is_cifar_dir(path) or idx.is_idx_dir(path):
        return "test"
    try:
        return "test" if folder.resolve_root(path, "test") != path else "train"
    except ValueError:
        return "train"


def load_eval_data(spec: str, meta: dict, subset: str | None, skip_bad: bool, held_out: float | None = None,
                   seed: int = 0, task: str | None = None, masks: bool = False):
    """``(dataset to score, skipped files, description)``, decoded the way the checkpoint's run
    decoded its data (for the model's ``task``; a segmentation set's mask values mapped to classes
    by the checkpoint's ``class_map`` where it has one; ``masks``: a detection set's instance masks
    too); with ``held_out``, the validation part of the seeded split."""
    from ..data import BUILTIN, load_dataset

    size = meta.get("input_size", [None, None, None])[-1]
    run_size = (meta.get("run") or {}).get("data_options", {}).get("image_size")
    image_size = size if spec in BUILTIN else run_size
    if held_out is not None:
        if not 0.0 < held_out < 1.0:
            raise ValueError(f"--held-out must be a fraction between 0 and 1, got {held_out}")
        splits = load_dataset(spec, val_split=held_out, seed=seed, subset=subset or "train", skip_bad=skip_bad,
                              image_size=image_size, task=task, class_map=meta.get("class_map"), masks=masks)
        return splits.val, splits.bad_files, splits.description
    splits = load_dataset(spec, val_split=0.0, subset=subset or default_subset(spec), skip_bad=skip_bad,
                          image_size=image_size, task=task, class_map=meta.get("class_map"), masks=masks)
    return splits.train, splits.bad_files, splits.description


def run(args: argparse.Namespace) -> int:
    from ..engine.detection import wants_masks
    from ..engine.evaluate import evaluate_model, model_task
    from ..io import load_model
    from ..validate import check_writable_file, shown
    from .common import checkpoint_input, console, print_json, print_table

    from ..superres.infer import checkpoint_is_super_resolution, eval_command

    if checkpoint_is_super_resolution(args.checkpoint):  # PSNR/SSIM on whole photos (archzoo.superres.infer)
        return eval_command(args)
    if args.confusion:
        check_writable_file(args.confusion, "--confusion")
    model, meta = load_model(args.checkpoint, need_head=True)
    if args.beam is not None:  # captioners: BLEU and exact match of beam-search captions
        from ..captioning.infer import set_beam

        set_beam(model, args.beam)
    names = meta.get("class_names") or [str(i) for i in range(model.num_classes)]
    task = model_task(model, names)  # the card's task decides what is read, measured and shown
    data, bad_files, description = load_eval_data(args.data, meta, args.subset, args.skip_bad, args.held_out, args.seed,
                                                  task.name, masks=wants_masks(model))
    _, size, mean, std = checkpoint_input(model, meta)
    if args.tta != "none":
        from ..segmentation.tta import TestTimeAugment
        from ..validate import UserError

        if task.name != "segmentation":
            raise UserError(f"--tta is for segmenters; {meta.get('model')} is a {task.name} model")
        model = TestTimeAugment(model, args.tta).eval()
    m = evaluate_model(model, data, input_size=size, mean=mean, std=std, class_names=meta.get("class_names"),
                       batch_size=args.batch_size, device=args.device, workers=args.workers, task=task)
    if args.confusion:
        from ..engine.report import plot_confusion
        from ..validate import UserError

        if "confusion" not in m:
            raise UserError(f"--confusion: a {task.name} model has no confusion matrix")
        plot_confusion(m["confusion"], names, args.confusion, unit="pixels" if task.name == "segmentation" else "images")
    result = {"checkpoint": shown(args.checkpoint), "model": meta.get("model"), "data": shown(args.data),
              "held_out": args.held_out, **({"tta": args.tta} if args.tta != "none" else {}), **task.eval_result(m), "skipped_files": len(bad_files),
              "skipped": [{"file": shown(f), "reason": shown(r)} for f, r in bad_files]}
    if description:
        result["data_description"] = description
    if args.json:
        print_json(result)
        return 0
    if description:
        console().print(description, highlight=False, markup=False)
    for title, columns, rows in task.eval_tables(m):
        print_table(title or f"{meta.get('model')} on {shown(args.data)}", columns, rows, justify_right={columns[-1]})
    if bad_files:
        console().print(f"skipped {len(bad_files)} unreadable files:", highlight=False)
        for f, r in bad_files:
            console().print(f"  {shown(f)}: {shown(r)}", highlight=False, markup=False)
    return 0
