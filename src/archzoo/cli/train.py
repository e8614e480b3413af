"""``archzoo train MODEL --data DATA``: train (or fine-tune) a zoo model; see :mod:`archzoo.engine`.

    archzoo train resnet20 --data digits --epochs 30 --out runs/r20
    archzoo train resnet50 --data my_photos/ --init ckpt.safetensors --freeze backbone
    archzoo train --resume runs/r20 [--epochs 40]
    torchrun --nproc_per_node 2 -m archzoo train resnet20 --data digits ...
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

S = argparse.SUPPRESS  # options left out keep the recipe's value (the default, or the resumed run's)


def _defaults():
    from ..engine.config import TrainConfig

    return {f.name: f.default for f in fields(TrainConfig) if not callable(f.default_factory)}


def add_recipe_arguments(p: argparse.ArgumentParser) -> None:
    """The :class:`~archzoo.engine.config.TrainConfig` options, shared by ``train`` and benchmarks."""
    from ..engine.config import AUGMENT_RECIPES, COMPILE_MODES, FREEZE, OPTIMIZERS, SCHEDULES

    from ..validate import arg_type as T

    d = _defaults()
    B = argparse.BooleanOptionalAction
    g = p.add_argument_group("recipe (left out: the default, or the resumed run's value)")
    g.add_argument("--epochs", type=T("epochs"), default=S, help=f"epochs (default {d['epochs']})")
    g.add_argument("-b", "--batch-size", type=T("batch_size"), default=S,
                   help=f"global batch size, split across torchrun processes (default {d['batch_size']})")
    g.add_argument("--opt", choices=OPTIMIZERS, default=S, help="optimizer (default sgd, with Nesterov momentum)")
    g.add_argument("--lr", type=T("lr"), default=S, help="peak learning rate (default 0.1 x batch/128 for SGD, 1e-3 x batch/512 for AdamW)")
    g.add_argument("--momentum", type=T("momentum"), default=S, help=f"SGD momentum (default {d['momentum']})")
    g.add_argument("--nesterov", action=B, default=S, help="Nesterov momentum (default on)")
    g.add_argument("--weight-decay", "--wd", type=T("weight_decay"), default=S, dest="weight_decay",
                   help="weight decay, never on norms and biases (default 5e-4 SGD, 0.05 AdamW)")
    g.add_argument("--sched", choices=SCHEDULES, default=S, help="learning-rate schedule (default cosine)")
    g.add_argument("--warmup-epochs", type=T("warmup_epochs"), default=S, help="linear warm-up epochs (default 0)")
    g.add_argument("--min-lr-ratio", type=T("min_lr_ratio"), default=S, help="cosine/one-cycle floor relative to --lr (default 0)")
    g.add_argument("--milestones", type=T("milestones"), nargs="+", default=S, help="step schedule: epochs where lr *= --gamma (default 50%% and 75%% of the run)")
    g.add_argument("--gamma", type=T("gamma"), default=S, help=f"step schedule factor (default {d['gamma']})")
    g.add_argument("--label-smoothing", type=T("label_smoothing"), default=S, help="label smoothing (default 0)")
    g.add_argument("--loss", default=S, metavar="SPEC",
                   help="segmentation loss: a sum of [WEIGHT*]TERM, TERM one of ce, wce (median-frequency class "
                        "weights), unet (U-Net border weights), dice, focal; e.g. ce+dice, 0.5*ce+dice (default ce)")
    g.add_argument("--mixup", type=T("mixup"), default=S, help="mixup Beta alpha, e.g. 0.2 (default off)")
    g.add_argument("--cutmix", type=T("cutmix"), default=S, help="cutmix Beta alpha, e.g. 1.0 (default off)")
    g.add_argument("--mix-prob", type=T("mix_prob"), default=S, help="probability of mixing a batch (default 1)")
    g.add_argument("--ema", type=T("ema"), nargs="?", const=0.999, default=S,
                   help="keep (and evaluate) an EMA of the weights with this decay (bare flag: 0.999)")
    g.add_argument("--distill", type=T("distill"), default=S,
                   help="weight of the distillation loss with --teacher, 0..1 (default 0.5 with a teacher)")
    g.add_argument("--distill-temperature", type=T("distill_temperature"), default=S, help="distillation softmax temperature (default 4)")
    g.add_argument("--clip-grad", type=T("clip_grad"), default=S, help="clip the global gradient norm to this value")
    g.add_argument("--aux-weight", type=T("aux_weight"), default=S, help="weight of auxiliary-classifier losses (default 0.3)")
    g.add_argument("--amp", action=B, default=S, help="bf16 autocast (default: on for CUDA)")
    g.add_argument("--channels-last", action=B, default=S, help="channels_last memory format (default: on for CUDA)")
    g.add_argument("--compile", action=B, default=S, help="torch.compile the model (default off)")
    g.add_argument("--compile-mode", choices=COMPILE_MODES, default=S,
                   help="torch.compile mode; reduce-overhead adds CUDA graphs for small, launch-bound models (default: default)")
    g.add_argument("--seed", type=T("seed"), default=S, help="random seed (default 0)")
    g.add_argument("--deterministic", action=B, default=S, help="bit-for-bit repeatable training (default off)")
    g.add_argument("--freeze", choices=FREEZE, default=S, help="'backbone': train the classifier only (default none)")
    g.add_argument("--backbone-lr-scale", type=T("backbone_lr_scale"), default=S, help="learning-rate factor for everything but the classifier (default 1)")
    g.add_argument("--augment", choices=AUGMENT_RECIPES, default=S,
                   help="training augmentation (default basic: crop and flip; ssd, scale-jitter: detection only; "
                        "unet (flips, 90-degree and small turns, scale, elastic warp, brightness), pspnet (resize "
                        "0.5-2x, turn, crop, flip, blur): segmentation only)")
    g.add_argument("--pad", type=T("pad"), default=S, help=f"padding of the random crop of small images (default {d['pad']})")
    g.add_argument("--crop-size", type=T("crop_size"), default=S,
                   help="detection and segmentation: train on random crops of this side, cut after the augmentation "
                        "at --image-size scale (e.g. 256 crops of 512 slices); validation sees whole images (default off)")
    g.add_argument("--flip", action=B, default=S, help="random horizontal flips (default on)")
    g.add_argument("--erase", type=T("erase"), default=S,
                   help="random erasing: probability of blanking a random box of each training image with noise (default 0)")
    g.add_argument("--workers", type=T("workers"), default=S, help="DataLoader processes for data not held in memory")
    g.add_argument("--fast-path", action=B, default=S, help="augment in-memory data on the device in batches (default on)")
    g.add_argument("--eval-every", type=T("eval_every"), default=S, help="validate every N epochs (default 1)")


def recipe_options(args: argparse.Namespace) -> dict:
    """The recipe options the user gave explicitly."""
    from ..engine.config import TrainConfig

    names = {f.name for f in fields(TrainConfig)}
    return {k: v for k, v in vars(args).items() if k in names}


def register(subparsers) -> None:
    from ..validate import arg_type as T
    from ..validate import device_arg

    p = subparsers.add_parser("train", help="train or fine-tune a model on an image dataset",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", nargs="?", help="a model name (archzoo models); optional with --resume")
    data = p.add_argument_group("data")
    data.add_argument("--data", help="digits | shapes | shapes-det | shapes-seg | an ImageFolder tree | a CIFAR batches "
                                     "folder | an MNIST IDX folder | a detection set: Pascal VOC, COCO JSON, YOLO txt "
                                     "(force one: voc:DIR, coco:DIR, yolo:DIR) | a segmentation set: image/ + label/ "
                                     "mask folders, VOC SegmentationClass/, COCO polygons (force one: masks:DIR, "
                                     "vocseg:DIR, cocoseg:DIR; mask values -> classes from classes.txt if present)")
    data.add_argument("--val-data", help="a separate validation set (default: hold out --val-split of --data)")
    data.add_argument("--val-split", type=T("val_split"), default=0.1, help="fraction of every class held out for validation (default 0.1)")
    data.add_argument("--image-size", type=T("image_size"), help="model input side (default: the data's for in-memory sets, else the model's)")
    data.add_argument("--skip-bad", action="store_true", help="skip unreadable images instead of stopping")
    data.add_argument("--train-limit", type=T("train_limit"), help="train on a seeded random subset of this many images")
    data.add_argument("--val-limit", type=T("val_limit"), help="validate on a seeded random subset of this many images")
    m = p.add_argument_group("model and run")
    m.add_argument("--init", help="initial weights: our checkpoint, a torchvision/timm state dict, or <model>.<tag>")
    m.add_argument("--teacher", help="distil from this trained checkpoint (or <model>.<tag>) of the same classes")
    m.add_argument("--drop-rate", type=T("drop_rate"), help="dropout before the classifier")
    m.add_argument("--drop-path-rate", type=T("drop_path_rate"), help="stochastic depth rate")
    m.add_argument("--model-kwargs", nargs="+", metavar="KEY=VALUE", type=model_kwarg, default=[],
                   help="architecture arguments, e.g. base_width=16 output_stride=8 (values read as JSON, else text); "
                        "stored in the checkpoint")
    m.add_argument("--out", help="run folder (default: runs/<model>, numbered if taken)")
    m.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR where it stopped")
    m.add_argument("--overwrite", action="store_true", help="start afresh in an --out that holds a run")
    m.add_argument("--device", type=device_arg, help="cpu, cuda or cuda:N (default: cuda when available)")
    o = p.add_argument_group("output")
    o.add_argument("--quiet", action="store_true", help="print nothing but errors")
    o.add_argument("--log-json", action="store_true", help="JSON-lines events on stdout instead of the progress bar")
    o.add_argument("--tensorboard", action="store_true", help="also write TensorBoard events to RUN_DIR/tensorboard")
    add_recipe_arguments(p)
    p.set_defaults(func=run)


def model_kwarg(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` of ``--model-kwargs``: the value read as JSON (``16``, ``true``, ``[1, 2]``), else as text."""
    import json

    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE with KEY an argument name (e.g. base_width=16)")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def default_out(model: str) -> Path:
    base = Path("runs") / model
    out, i = base, 2
    while out.exists():
        out, i = Path(f"{base}-{i}"), i + 1
    return out


def run(args: argparse.Namespace) -> int:
    from ..engine import TrainingDiverged, train

    if args.resume is None and (args.model is None or args.data is None):
        raise ValueError("give a model and --data (or --resume RUN_DIR)")
    model_kwargs = dict(args.model_kwargs)
    for k, v in (("drop_rate", args.drop_rate), ("drop_path_rate", args.drop_path_rate)):
        if v is not None:
            if k in model_kwargs:
                raise ValueError(f"--model-kwargs {k}=... and --{k.replace('_', '-')} both set {k}; give one")
            model_kwargs[k] = v
    out = args.out if args.resume is None else None
    if out is None and args.resume is None:
        out = default_out(args.model)
    log = "quiet" if args.quiet else "json" if args.log_json else "bar"
    try:
        summary = train(args.model, args.data, out=out, val_data=args.val_data, resume=args.resume, init=args.init,
                        model_kwargs=model_kwargs or None, val_split=args.val_split, image_size=args.image_size,
                        skip_bad=args.skip_bad, train_limit=args.train_limit, val_limit=args.val_limit, log=log,
                        tensorboard=args.tensorboard, device=args.device, overwrite=args.overwrite, teacher=args.teacher,
                        **recipe_options(args))
    except TrainingDiverged as e:
        print(f"archzoo train: {e}", file=sys.stderr)
        return 1
    from ..engine import distributed as dist

    from ..validate import shown

    folder = args.resume or out
    skipped = summary.get("skipped_files") or []
    if skipped and not args.quiet and dist.is_main():
        from ..engine.api import SKIPPED_FILE

        names = ", ".join(s["file"] for s in skipped[:3]) + (", ..." if len(skipped) > 3 else "")
        print(f"archzoo train: skipped {len(skipped)} unreadable files or folders ({names}); all are listed in "
              f"{shown(Path(folder) / SKIPPED_FILE)}", file=sys.stderr)
    if log == "bar" and dist.is_main():
        acc = summary.get("val_accuracy")
        result = f"validation accuracy {acc:.2%} ({summary['val_count']} images)" if acc is not None else \
            f"training loss {summary['train_loss']:.4f}"
        if summary.get("val_bleu4") is not None:  # a captioner
            result = f"validation BLEU-4 {summary['val_bleu4']:.4f} ({summary['val_count']} images)"
        print(f"{summary['model']}: {result}; best epoch {summary['best_epoch']}; "
              f"{summary['time_s']:.0f} s; run folder {shown(folder)}")
    return 0
