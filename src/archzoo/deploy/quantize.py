"""INT8 and FP16 ONNX files, written only when they keep the float model's accuracy.

:func:`quantize_model` exports the float ONNX file (checked against PyTorch, :func:`.export.export_onnx`),
quantizes it, scores the float and the quantized file with onnxruntime on labelled held-out data
(top-1 for classifiers, mean IoU for segmenters, measured as ``archzoo eval`` measures them) and
writes the quantized file only when the score drops by at most ``max_drop`` points; otherwise it
raises :class:`~archzoo.validate.UserError` with both numbers, and nothing is written.

* INT8: onnxruntime's static post-training quantization (``quantize_static``) in the QDQ format,
  weights int8 per output channel, activations uint8 per tensor with ranges from calibration
  images (min/max). onnxruntime rather than ``torch.ao``: the result is the ONNX file that the
  same runtime (server, browser, phone) executes with its int8 kernels, the graph is the one
  already checked against PyTorch, and it needs no change to the model code (``torch.ao``'s eager
  mode needs quant stubs and fused modules in every family; its FX/PT2E flows trace the model
  again and produce a PyTorch model, not the deployable file).
* FP16: onnxruntime's float16 converter (``onnxruntime.transformers.float16``); the file keeps
  float32 inputs and outputs and casts inside (``keep_io_types``), so callers feed it the same arrays.

Detectors are not covered by the guard (their mAP needs the detection evaluation pipeline, which
runs on PyTorch models); quantizing one is refused.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..validate import UserError
from .export import export_onnx, model_meta, ort_session

DEFAULT_CALIB_COUNT = 256
MODES = ("int8", "fp16")


class OnnxModel(nn.Module):
    """An ONNX session behaving as the archzoo model it was exported from (same ``card`` and
    ``num_classes``), so :func:`archzoo.engine.evaluate.evaluate_model` scores it like the model."""

    def __init__(self, session, model: nn.Module):
        super().__init__()
        self.session, self.card, self.num_classes = session, model.card, model.num_classes
        self.input = session.get_inputs()[0].name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.session.run(None, {self.input: x.detach().cpu().float().numpy()})[0]
        return torch.from_numpy(out).float()


def calibration_images(folder: str | os.PathLike, meta: dict, task, count: int) -> list[np.ndarray]:
    """Up to ``count`` images under ``folder`` (recursively, sorted, evenly spread over the list),
    each preprocessed as ``archzoo predict`` does: ``[1, C, H, W]`` float32."""
    from ..data.folder import IMAGE_EXTENSIONS, ImageDecoder

    root = Path(folder).expanduser()
    if not root.is_dir():
        raise UserError(f"--calib {folder} is not a folder")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(root).parts))
    if not files:
        raise UserError(f"--calib {folder} holds no images ({', '.join(IMAGE_EXTENSIONS[:5])}, ...)")
    if len(files) > count:
        files = [files[round(i * (len(files) - 1) / (count - 1))] for i in range(count)] if count > 1 else files[:1]
    c, _, size = meta["input_size"]
    tf, decode = task.input_transform(size, meta["mean"], meta["std"], c), ImageDecoder(c)
    out = []
    for f in files:
        try:
            out.append(tf(decode(str(f)))[None].numpy().astype(np.float32))
        except Exception as e:  # a broken file among the images
            raise UserError(f"--calib: cannot read {f}: {e}") from e
    return out


class _Reader:
    """onnxruntime's ``CalibrationDataReader``: one preprocessed image per call."""

    def __init__(self, name: str, images: list[np.ndarray]):
        self.name, self.items = name, iter(images)

    def get_next(self):
        x = next(self.items, None)
        return None if x is None else {self.name: x}

    def rewind(self):  # pragma: no cover - not called by the min/max calibrator
        raise NotImplementedError


def quantize_int8(float_path: Path, out_path: Path, images: list[np.ndarray]) -> None:
    """Static QDQ quantization of ``float_path`` into ``out_path``: weights int8 per channel,
    activations uint8 with min/max ranges over ``images``."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = out_path.with_name(out_path.stem + ".prep.onnx")
    try:  # onnxruntime's recommended preparation: shape inference and graph optimisation (BN folded into convs)
        quant_pre_process(str(float_path), str(prepared), skip_symbolic_shape=True)
    except Exception:  # noqa: BLE001  (a graph its optimiser cannot take: quantize it as exported)
        prepared = float_path
    name = ort_session(str(prepared)).get_inputs()[0].name
    quantize_static(str(prepared), str(out_path), _Reader(name, images), quant_format=QuantFormat.QDQ,
                    per_channel=True, weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                    calibrate_method=CalibrationMethod.MinMax, extra_options={"ActivationSymmetric": False})


def convert_fp16(float_path: Path, out_path: Path) -> None:
    """``float_path`` with its weights and arithmetic in float16; float32 inputs and outputs."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    proto = convert_float_to_float16(onnx.load(str(float_path)), keep_io_types=True)
    onnx.save(proto, str(out_path))


def score(session, model: nn.Module, meta: dict, data, task) -> tuple[float, int]:
    """``(metric, count)`` of an ONNX session on a labelled dataset: top-1 accuracy or mean IoU."""
    from ..engine.evaluate import evaluate_model

    _, _, size = meta["input_size"]
    m = evaluate_model(OnnxModel(session, model), data, input_size=size, mean=meta["mean"], std=meta["std"],
                       class_names=meta["class_names"], batch_size=32, device="cpu", workers=0, task=task)
    key = "accuracy" if task.name == "classification" else "miou"
    count = m.get("count") or len(data)
    return float(m[key]), int(count)


def load_eval(spec, meta: dict, task):
    """The labelled dataset the guard scores: a dataset object as is, or a path read as ``archzoo eval`` reads it."""
    if not isinstance(spec, (str, os.PathLike)):
        return spec
    from ..cli.eval import load_eval_data

    data, _, _ = load_eval_data(str(spec), meta, None, False, task=task.name)
    return data


def quantize_model(model: nn.Module, meta: dict, out: str | os.PathLike, *, mode: str = "int8",
                   calib: str | os.PathLike | None = None, eval_data=None, max_drop: float = 1.0,
                   calib_count: int | None = None, opset: int | None = None, tolerance: float | None = None) -> dict:
    """Write ``model`` as an INT8 (``mode="int8"``, calibrated on the images under ``calib``) or
    FP16 ONNX file to ``out``, if its score on ``eval_data`` (labelled data: a path as ``archzoo
    eval`` reads it, or a dataset; default ``calib``) is at most ``max_drop`` points (percent)
    below the float file's. Returns :func:`.export.export_onnx`'s report of the float export with
    ``path``/``bytes`` of the written file and ``guard``: ``{"mode", "metric", "float",
    "quantized", "drop_points", "max_drop", "count", "calibration_images"}``. Raises
    :class:`~archzoo.validate.UserError` (nothing written) when the drop is larger."""
    from ..checkpoint import atomic_write
    from ..engine.evaluate import model_task
    from ..validate import check_writable_file

    if mode not in MODES:
        raise UserError(f"quantization mode must be one of {', '.join(MODES)}, got {mode!r}")
    out = check_writable_file(out, "--out")
    if not max_drop >= 0:
        raise UserError(f"--max-drop must be a number >= 0, got {max_drop}")
    full = model_meta(model, meta)
    if full["task"] == "detection":
        raise UserError(f"{full['model']} is a detector: the INT8/FP16 accuracy guard scores classifiers (top-1) "
                        "and segmenters (mean IoU) only; export it in float32")
    task = model_task(model, full["class_names"])
    if mode == "int8":
        if calib is None:
            raise UserError("--int8 needs --calib DIR: a folder of images to calibrate on")
        images = calibration_images(calib, full, task, calib_count or DEFAULT_CALIB_COUNT)
    eval_spec = eval_data if eval_data is not None else calib
    if eval_spec is None:
        raise UserError(f"--{mode} needs --eval DATA: labelled images for the accuracy guard")
    data = load_eval(eval_spec, full, task)
    with tempfile.TemporaryDirectory(prefix="archzoo-quant-") as tmp:
        float_path, q_path = Path(tmp) / "float.onnx", Path(tmp) / f"{mode}.onnx"
        report = export_onnx(model, meta, float_path, opset=opset, tolerance=tolerance)
        if mode == "int8":
            quantize_int8(float_path, q_path, images)
        else:
            convert_fp16(float_path, q_path)
        f_score, count = score(ort_session(str(float_path)), model, full, data, task)
        q_score, _ = score(ort_session(str(q_path)), model, full, data, task)
        metric = "top-1 accuracy" if task.name == "classification" else "mean IoU"
        drop = 100.0 * (f_score - q_score)
        guard = {"mode": mode, "metric": metric, "float": f_score, "quantized": q_score, "drop_points": drop,
                 "max_drop": float(max_drop), "count": count,
                 "calibration_images": len(images) if mode == "int8" else 0,
                 "held_out": eval_data is not None}
        if drop > max_drop:
            raise UserError(f"{mode.upper()} {full['model']} loses {drop:.2f} points of {metric} (float {f_score:.4f}, "
                            f"{mode} {q_score:.4f} on {count} images; --max-drop {max_drop:g}): nothing was written")
        _copy_metadata(float_path, q_path, guard)
        data_bytes = q_path.read_bytes()
    atomic_write(out, lambda t: Path(t).write_bytes(data_bytes))
    report.update(path=str(out), bytes=out.stat().st_size, guard=guard, float_bytes=report["bytes"])
    report["metadata"]["quantization"] = guard
    return report


def _copy_metadata(src: Path, dst: Path, guard: dict) -> None:
    """The float file's metadata on the quantized one, plus ``quantization`` (how, and the guard's scores)."""
    import json

    import onnx

    meta = onnx.load(str(src), load_external_data=False).metadata_props
    proto = onnx.load(str(dst))
    del proto.metadata_props[:]
    for p in meta:
        proto.metadata_props.add(key=p.key, value=p.value)
    mode = guard["mode"]
    info = {"tool": "onnxruntime", **guard}
    if mode == "int8":
        info.update(format="QDQ", weights="int8 per channel", activations="uint8 per tensor, min/max calibration")
    else:
        info.update(weights="float16", io="float32 (cast inside)")
    proto.metadata_props.add(key="quantization", value=json.dumps(info))
    onnx.save(proto, str(dst))
