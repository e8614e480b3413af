"""``archzoo eval`` and ``archzoo predict`` for super-resolution checkpoints.

* :func:`evaluate_photos`: every held-out photo whole: its Y (or RGB, for a 3-channel model)
  cropped to a multiple of the scale is the truth, its bicubic degradation the input; PSNR and
  SSIM (:func:`~.data.psnr_ssim`, on Y, ``scale`` border pixels shaved) of the model and of
  bicubic upsampling, per photo and averaged.
* :func:`predict_photo`: upscale a photo ``scale`` times. The net sees the Y channel (Cb and Cr
  are upsampled bicubically, as the paper does) or RGB, as it was built. With ``reference``,
  the photo is taken as the high-resolution original: it is first shrunk by the scale, and the
  result is scored against it. Writes ``<name>.x<scale>.png`` and ``<name>.compare.png``
  (bicubic | model | original, when there is one).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..validate import UserError, shown
from .data import bicubic, degrade, photo_files, psnr_ssim, read_photo, to_y, upscale


def checkpoint_is_super_resolution(arg) -> bool:
    """Whether ``arg`` (a checkpoint file or ``model.tag``) holds a super-resolution model."""
    from ..checkpoint import read_metadata
    from ..registry import model_card
    from ..shipped import resolve_checkpoint

    try:
        path = resolve_checkpoint(arg)
        meta = read_metadata(path) if Path(path).suffix == ".safetensors" else {}
        name = meta.get("model") or str(arg).split(".", 1)[0]
        return model_card(name).task == "super_resolution"
    except Exception:  # not ours to judge: the command's own loading says what is wrong
        return False


def _check_scale(model: nn.Module, scale: int | None) -> int:
    if scale is not None and scale != model.scale:
        raise UserError(f"--scale {scale}: {model.build_args['model']} upscales {model.scale}x (its deconvolutions are "
                        f"fixed); give --scale {model.scale} or a model trained for {scale}x")
    return model.scale


def _as_model_input(image: torch.Tensor, in_chans: int) -> torch.Tensor:
    """uint8 ``[1 or 3, H, W]`` -> float ``[1, in_chans, H, W]`` in [0, 1]: Y, or RGB."""
    if in_chans == 1:
        return to_y(image)[None].float() / 255
    rgb = image.expand(3, -1, -1) if image.shape[0] == 1 else image
    return rgb[None].float() / 255


def _y_of(x: torch.Tensor) -> torch.Tensor:
    """Y in [0, 1] of a float ``[1, 1 or 3, H, W]`` image (itself when it is Y)."""
    if x.shape[1] == 1:
        return x[0]
    return to_y((x[0].clamp(0, 1) * 255).round().to(torch.uint8)).float() / 255


@torch.no_grad()
def evaluate_photos(model: nn.Module, spec: str, *, subset: str = "test", held_out: float | None = None,
                    seed: int = 0, skip_bad: bool = False, device=None, scale: int | None = None) -> dict:
    """PSNR/SSIM of ``model`` and of bicubic upsampling on whole photos (see the module doc):
    ``{"psnr", "ssim", "psnr_bicubic", "ssim_bicubic", "count", "scale", "per_image": [...],
    "skipped": [...]}``. ``held_out``: the photos ``archzoo train --val-split F --seed S`` held out."""
    from ..validate import resolve_device

    scale = _check_scale(model, scale)
    device = resolve_device(device, option="device")
    model = model.to(device).eval()
    if held_out is not None:
        if not 0.0 < held_out < 1.0:
            raise UserError(f"--held-out must be a fraction between 0 and 1, got {held_out}")
        from .data import load_photos

        splits = load_photos(spec, val_split=held_out, seed=seed, subset="train", skip_bad=skip_bad)
        files, bad = splits.val.files, splits.bad_files
        files = [files[k] for k in sorted(set(splits.val.items))]
    else:
        files, _, bad = photo_files(spec, subset, skip_bad)
    rows = []
    for f in files:
        image = read_photo(f)
        hr, lr = degrade(_as_model_input(image, model.in_chans), scale)
        if min(lr.shape[-2:]) < 8:
            raise UserError(f"{shown(f)} is {image.shape[1]}x{image.shape[2]} pixels: too small to shrink {scale}x and score")
        sr = upscale(model, lr.to(device), scale).cpu()
        truth = _y_of(hr)
        p, s = psnr_ssim(_y_of(sr), truth, scale)
        pb, sb = psnr_ssim(_y_of(bicubic(lr, scale)), truth, scale)
        rows.append({"file": shown(f), "size": list(image.shape[1:]), "psnr": p, "ssim": s, "psnr_bicubic": pb,
                     "ssim_bicubic": sb})
    mean = lambda k: float(np.mean([r[k] for r in rows]))
    return {"psnr": mean("psnr"), "ssim": mean("ssim"), "psnr_bicubic": mean("psnr_bicubic"),
            "ssim_bicubic": mean("ssim_bicubic"), "count": len(rows), "scale": scale, "channel": "Y",
            "per_image": rows, "skipped": [{"file": shown(f), "reason": shown(r)} for f, r in bad]}


def eval_tables(result: dict) -> list[tuple[str | None, list[str], list[list]]]:
    """``archzoo eval``'s tables: the means, then one row per photo."""
    head = [["model", f"{result['psnr']:.2f}", f"{result['ssim']:.4f}"],
            ["bicubic", f"{result['psnr_bicubic']:.2f}", f"{result['ssim_bicubic']:.4f}"]]
    rows = [[Path(r["file"]).name, f"{r['psnr']:.2f}", f"{r['psnr_bicubic']:.2f}", f"{r['ssim']:.4f}",
             f"{r['ssim_bicubic']:.4f}"] for r in result["per_image"]]
    return [(None, ["", "PSNR (dB)", "SSIM"], head),
            ("per photo", ["photo", "PSNR", "bicubic", "SSIM", "bicubic"], rows)]


@torch.no_grad()
def predict_photo(model: nn.Module, path: str, out: str | Path | None = None, *, name: str | None = None,
                  reference: bool = False, device=None, scale: int | None = None) -> dict:
    """Upscale the photo at ``path`` (see the module doc); return ``{"file", "size", "output_size"}``
    plus, with ``reference``, PSNR/SSIM of the model and bicubic, and with ``out`` the files written."""
    from skimage.color import rgb2ycbcr, ycbcr2rgb

    from ..validate import resolve_device
    from .report import side_by_side, to_pil

    scale = _check_scale(model, scale)
    device = resolve_device(device, option="device")
    model = model.to(device).eval()
    image = read_photo(path)
    x = image.float()[None] / 255  # [1, 1 or 3, H, W]
    hr = None
    if reference:
        hr, x = degrade(x, scale)
    smallest = 8 * (scale if reference else 1)
    if min(x.shape[-2:]) < 8:
        raise UserError(f"{shown(path)} is {image.shape[1]}x{image.shape[2]} pixels; {model.build_args['model']} needs "
                        f"at least {smallest}x{smallest}{' (it is shrinking it ' + str(scale) + 'x first)' if reference else ''}")
    colour = x.shape[1] == 3
    if model.in_chans == 3:
        rgb = x.expand(-1, 3, -1, -1)
        sr = upscale(model, rgb.to(device), scale).cpu()
        sr = sr if colour else sr.mean(1, keepdim=True)
    elif colour:  # Y by the net; Cb, Cr bicubic (the paper's way)
        ycc = torch.from_numpy(rgb2ycbcr(x[0].permute(1, 2, 0).numpy())).permute(2, 0, 1)[None].float() / 255
        y = upscale(model, ycc[:, :1].to(device), scale).cpu()
        cbcr = bicubic(ycc[:, 1:], scale)
        ycc_hr = torch.cat([y, cbcr], 1)[0].permute(1, 2, 0).double().numpy() * 255
        sr = torch.from_numpy(np.clip(ycbcr2rgb(ycc_hr), 0, 1)).permute(2, 0, 1)[None].float()
    else:  # grey: its Y is 16 + 219 g
        y = upscale(model, (16 + 219 * x) / 255, scale).cpu()
        sr = ((y * 255 - 16) / 219).clamp(0, 1)
    bic = bicubic(x, scale)
    result = {"file": shown(path), "size": list(image.shape[1:]), "output_size": list(sr.shape[-2:]), "scale": scale}
    if reference:
        truth = _y_of(hr)
        (p, s), (pb, sb) = psnr_ssim(_y_of(sr), truth, scale), psnr_ssim(_y_of(bic), truth, scale)
        result.update(psnr=p, ssim=s, psnr_bicubic=pb, ssim_bicubic=sb)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        stem = name or Path(path).stem
        upscaled = out / f"{stem}.x{scale}.png"
        to_pil(sr).save(upscaled)
        panels = [("bicubic", to_pil(bic)), (model.build_args["model"], to_pil(sr))]
        if hr is not None:
            panels.append(("original", to_pil(hr)))
        result["output"] = str(upscaled)
        result["compare"] = str(side_by_side(panels, out / f"{stem}.compare.png"))
    return result


def eval_command(args) -> int:
    """``archzoo eval`` of a super-resolution checkpoint (``args``: the command's)."""
    from ..cli.common import console, print_json, print_table
    from ..io import load_model

    model, meta = load_model(args.checkpoint)
    if args.confusion or args.tta != "none":
        raise UserError(f"{'--confusion' if args.confusion else '--tta'} is for classifiers and segmenters; "
                        f"{meta.get('model')} is a super-resolution model")
    subset = args.subset or ("test" if args.data == "photos" else "train")
    result = evaluate_photos(model, args.data, subset=subset, held_out=args.held_out, seed=args.seed,
                             skip_bad=args.skip_bad, device=args.device, scale=getattr(args, "scale", None))
    result = {"checkpoint": shown(args.checkpoint), "model": meta.get("model"), "data": shown(args.data),
              "held_out": args.held_out, **result}
    if args.json:
        print_json(result)
        return 0
    for title, columns, rows in eval_tables(result):
        print_table(title or f"{meta.get('model')} on {shown(args.data)}: {result['count']} photos, {result['scale']}x, "
                    "Y channel", columns, rows, justify_right=set(columns[1:]))
    for s in result["skipped"]:
        console().print(f"skipped {s['file']}: {s['reason']}", highlight=False, markup=False)
    return 0


def predict_command(args) -> int:
    """``archzoo predict`` with a super-resolution checkpoint (``args``: the command's)."""
    from ..cli.common import output_names, print_json, print_table
    from ..io import load_model
    from ..validate import check_input_files, check_writable_dir

    model, meta = load_model(args.checkpoint)
    used = [k for k in ("topk", "score_threshold", "tile") if getattr(args, k, None) is not None]
    used += ["crf"] * bool(args.crf) + ["tta"] * (args.tta != "none")
    if used:
        raise UserError(f"--{used[0].replace('_', '-')} is not for a super-resolution model ({meta.get('model')})")
    check_input_files(args.images)
    if args.out is not None:
        check_writable_dir(args.out, "--out")
    names = [Path(n).stem for n in output_names(args.images)]
    preds = [predict_photo(model, f, args.out, name=n, reference=args.reference, device=args.device,
                           scale=args.scale) for f, n in zip(args.images, names)]
    if args.json:
        print_json({"checkpoint": shown(args.checkpoint), "model": meta.get("model"), "predictions": preds})
        return 0
    cols = ["image", "size", "upscaled"] + (["PSNR", "bicubic"] if args.reference else []) + \
        (["written"] if args.out else [])
    rows = [[p["file"], "x".join(map(str, p["size"])), "x".join(map(str, p["output_size"]))]
            + ([f"{p['psnr']:.2f}", f"{p['psnr_bicubic']:.2f}"] if args.reference else [])
            + ([f"{p['output']}, {p['compare']}"] if args.out else []) for p in preds]
    print_table(f"{meta.get('model')}: {model.scale}x", cols, rows)
    return 0
