"""``archzoo export MODEL_OR_CKPT --format onnx|torchscript|pt2 --out FILE``: a deployable file, checked on the spot.

    archzoo export resnet20.cifar10 --out resnet20.onnx
    archzoo export runs/c10/best.safetensors --format torchscript --out model.pt --json
    archzoo export resnet20.cifar10 --out r20.int8.onnx --int8 --calib calib/ --eval held_out/ --max-drop 1
    archzoo export resnet20.cifar10 --out r20.onnx --web site/

MODEL_OR_CKPT is a checkpoint (``.safetensors``), shipped weights (``resnet20.cifar10``) or a
registered name (random weights, for trying the format). The exported file is loaded back
(onnxruntime, ``torch.jit.load``, ``torch.export.load``) and its outputs compared with PyTorch's;
the largest difference is printed, and a file that differs by more than ``--tolerance`` (relative
to the output's scale, default 1e-4) is not written (exit status 2). Its metadata holds the
preprocessing (input size, mean/std), the class names and the outputs' meaning (docs/deploy.md).

``--int8`` quantizes the ONNX file (onnxruntime static quantization, QDQ, per-channel weights),
calibrated on the images under ``--calib DIR``; ``--fp16`` stores it in half precision. Either is
then scored against the float file on the labelled images of ``--eval DATA`` (a dataset as
``archzoo eval`` reads it; default: the ``--calib`` folder, which is then not held out): top-1 for
classifiers, mean IoU for segmenters. When the score drops by more than ``--max-drop`` points
(default 1) nothing is written and both numbers are printed.

``--web DIR`` also writes a static folder that runs the ONNX model in the browser (archzoo.deploy.web).
"""

from __future__ import annotations

import argparse

from .common import non_negative_float, positive_int


def register(subparsers) -> None:
    from ..deploy.export import FORMATS

    p = subparsers.add_parser("export", help="export a model to ONNX / TorchScript / .pt2 (checked; INT8, FP16)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", metavar="MODEL_OR_CKPT",
                   help="a .safetensors checkpoint, <model>.<tag> of shipped weights, or a registered model name")
    p.add_argument("--format", choices=FORMATS, default="onnx", help="file format (default onnx)")
    p.add_argument("--out", required=True, metavar="FILE", help="the file to write")
    p.add_argument("--opset", type=positive_int, help="ONNX opset (default 17)")
    p.add_argument("--tolerance", type=non_negative_float,
                   help="largest accepted difference from PyTorch, relative to the output's scale (default 1e-4)")
    p.add_argument("--int8", action="store_true", help="ONNX: quantize to INT8 (needs --calib)")
    p.add_argument("--fp16", action="store_true", help="ONNX: store weights and compute in float16")
    p.add_argument("--calib", metavar="DIR", help="--int8: a folder of images to calibrate on")
    p.add_argument("--calib-count", type=positive_int, metavar="N",
                   help="--int8: calibrate on at most N images of --calib, evenly spread (default 256)")
    p.add_argument("--eval", metavar="DATA", help="--int8/--fp16: labelled held-out data the accuracy guard scores "
                                                 "(as archzoo eval reads it; default: --calib)")
    p.add_argument("--max-drop", type=non_negative_float, default=1.0, metavar="POINTS",
                   help="--int8/--fp16: refuse when top-1 (classifiers) or mean IoU (segmenters) drops by more "
                        "than this many points (default 1.0)")
    p.add_argument("--web", metavar="DIR", help="ONNX: also write a static folder that runs the model in a browser")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def load_for_export(arg: str):
    """``(model in eval mode, metadata)``: a checkpoint or shipped tag (as ``archzoo predict`` loads
    it), or a registered name built with random weights."""
    from pathlib import Path

    from ..builder import create_model
    from ..io import load_model
    from ..registry import list_models

    if not Path(arg).expanduser().is_file() and arg in list_models():
        return create_model(arg).eval(), {"model": arg}
    return load_model(arg, need_head=True)


def check_args(args: argparse.Namespace) -> None:
    """Refuse combinations that cannot work, before any model is loaded."""
    from pathlib import Path

    from ..validate import UserError, check_writable_dir, check_writable_file

    check_writable_file(args.out, "--out")
    onnx_only = {"--opset": args.opset is not None, "--int8": args.int8, "--fp16": args.fp16, "--web": args.web}
    for flag, given in onnx_only.items():
        if given and args.format != "onnx":
            raise UserError(f"{flag} is for --format onnx, not {args.format}")
    if args.int8 and args.fp16:
        raise UserError("--int8 and --fp16 exclude each other: choose one")
    if args.int8 and not args.calib:
        raise UserError("--int8 needs --calib DIR: a folder of images to calibrate the quantization on")
    quantized = args.int8 or args.fp16
    for flag, value in {"--calib": args.calib, "--calib-count": args.calib_count, "--eval": args.eval}.items():
        if value is not None and not quantized:
            raise UserError(f"{flag} is for --int8 or --fp16")
    if args.fp16 and args.calib is not None:
        raise UserError("--calib is for --int8 (FP16 needs no calibration)")
    if args.fp16 and args.eval is None:
        raise UserError("--fp16 needs --eval DATA: labelled images for the accuracy guard")
    if args.calib is not None and not Path(args.calib).expanduser().is_dir():
        raise UserError(f"--calib {args.calib} is not a folder")
    if args.web is not None:
        check_writable_dir(args.web, "--web")


def run(args: argparse.Namespace) -> int:
    from ..deploy.export import export_model
    from ..validate import shown
    from .common import print_json

    check_args(args)
    model, meta = load_for_export(args.checkpoint)
    if args.int8 or args.fp16:
        from ..deploy.quantize import quantize_model

        report = quantize_model(model, meta, args.out, mode="int8" if args.int8 else "fp16", calib=args.calib,
                                eval_data=args.eval, max_drop=args.max_drop, calib_count=args.calib_count,
                                opset=args.opset, tolerance=args.tolerance)
    else:
        options = {"tolerance": args.tolerance} | ({"opset": args.opset} if args.format == "onnx" else {})
        report = export_model(model, meta, args.out, args.format, **options)
    if args.web is not None:
        from ..deploy.web import write_web_folder

        report["web"] = shown(write_web_folder(report["path"], args.web, report["metadata"]))
    report = {"checkpoint": shown(args.checkpoint), "format": args.format, **report}
    if args.json:
        print_json(report)
        return 0
    print(f"wrote {shown(report['path'])} ({report['bytes']:,} bytes, {args.format}, {report['metadata']['task']}); "
          f"max difference from PyTorch {report['max_abs_diff']:.3g} (tolerance {report['tolerance']:g} of the "
          f"output's scale) on inputs {', '.join(str(c['input']) for c in report['checks'])}")
    guard = report.get("guard")
    if guard:
        print(f"{guard['metric']}: float {guard['float']:.4f}, {guard['mode']} {guard['quantized']:.4f} "
              f"(drop {guard['drop_points']:.2f} points, allowed {guard['max_drop']:g}) on {guard['count']} images")
    if "web" in report:
        print(f"wrote the in-browser page to {report['web']}")
    return 0
