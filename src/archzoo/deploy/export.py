"""Export a model to ONNX, TorchScript or a ``torch.export`` program, and check the file on the spot.

Every export is verified before the file is written: the file is loaded back (ONNX by
onnxruntime, TorchScript by ``torch.jit.load``, ``.pt2`` by ``torch.export.load``) and its outputs
are compared with the PyTorch model's on random inputs: the traced batch and size, another
batch size where the batch may vary, and a second picture size where the network allows it.
An output passes when ``max |file - torch| <= tolerance * max(1, max |torch|)`` (default tolerance
1e-4: float32 kernels of two runtimes differ by rounding, ~1e-6 relative; a wrong graph by far
more). Detectors pass when they find the same detections (count, labels; boxes and scores within
the tolerance). A file that fails is not written, and :class:`~archzoo.validate.UserError` says by
how much it failed.

Which ONNX exporter: the TorchScript-based one (``torch.onnx.export(..., dynamo=False)``) first,
as it is about 5-10x faster and handles detectors' data-dependent shapes (their NMS); where it
cannot export a model at all (SegNet's unpooling to a traced size, AlexNet's adaptive pooling to a
grid that does not divide its map), the ``torch.export``-based one. Height and width are left
dynamic when the model runs at a second size in PyTorch and the exported file gives the same
outputs there; otherwise (a fully-connected head after a fixed pooling grid, shapes frozen by the
trace) the file takes the traced size only, and its metadata says so (``dynamic.size``).

The file's metadata (ONNX ``metadata_props``, TorchScript/pt2 extra file ``archzoo.json``) says how
to feed it: :func:`deploy_metadata`.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..validate import UserError
from .graph import GraphSpec, export_graph, register_onnx_ops

DEFAULT_OPSET = 17
DEFAULT_TOLERANCE = 1e-4
FORMATS = ("onnx", "torchscript", "pt2")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt", "pt2": ".pt2"}
META_FILE = "archzoo.json"  # TorchScript / pt2: the metadata's extra file


class Mismatch(Exception):
    """A loaded-back file's outputs differ from PyTorch's (the message says where and by how much)."""

    def __init__(self, message: str, diff: float = float("inf")):
        super().__init__(message)
        self.diff = diff


# --------------------------------------------------------------------------- metadata


def model_meta(model: nn.Module, meta: dict | None) -> dict:
    """``meta`` (what :func:`archzoo.io.load_model` returns) completed from the model and its card:
    ``model``, ``task``, ``num_classes``, ``input_size`` ``[C, H, W]``, ``mean``, ``std``,
    ``class_names`` (``"0"``... where unknown). A bare registered name has only ``{"model": name}``."""
    from ..engine.trainer import model_mean_std

    meta = dict(meta or {})
    card = model.card
    c = model.build_args["in_chans"] if hasattr(model, "build_args") else card.input_size[0]
    size = list(meta.get("input_size") or [c, *card.input_size[1:]])
    transform = getattr(model, "transform", None)
    if not meta.get("input_size") and transform is not None:  # a detector: the size its transform gives
        size = [c, *(transform.fixed_size or (transform.min_size[-1],) * 2)]
    mean, std = model_mean_std(model, c)
    mean, std = list(meta.get("mean", mean)), list(meta.get("std", std))
    if len(mean) != c or len(std) != c:  # a card's RGB statistics stored for a grey model
        mean, std = [sum(mean) / len(mean)] * c, [sum(std) / len(std)] * c
    num_classes = getattr(model, "num_classes", None) or meta.get("num_classes")
    names = meta.get("class_names") or [str(i) for i in range(num_classes or 0)]
    return {**meta, "model": meta.get("model", card.name), "task": card.task, "num_classes": num_classes,
            "input_size": [c, *size[-2:]], "mean": mean, "std": std, "class_names": list(names)}


def preprocessing(meta: dict) -> dict:
    """How a picture becomes the ``image`` input, as ``archzoo eval``/``predict`` do it."""
    c, h, w = meta["input_size"]
    if meta["task"] == "classification" and h > 64:
        resize = {"resize_shorter_side": int(h / 0.875), "center_crop": [h, w]}
    else:
        resize = {"resize": [h, w]}
    return {"channels": "RGB" if c == 3 else "grey", "layout": "NCHW", "dtype": "float32", **resize,
            "scale": "pixel / 255", "normalize": "(x - mean) / std per channel", "mean": meta["mean"], "std": meta["std"]}


def deploy_metadata(spec: GraphSpec, meta: dict, dynamic: dict) -> dict[str, str]:
    """The file's metadata, each value a JSON string: ``model``, ``task``, ``input_size``, ``mean``,
    ``std``, ``class_names``, ``preprocessing``, ``inputs``, ``outputs``, ``dynamic``, ``notes``,
    ``source`` (the checkpoint's metrics and dataset where it has them), ``archzoo_version``."""
    from .. import __version__

    outputs = {"classification": {"logits": "[N, classes], softmax gives probabilities"},
               "segmentation": {"logits": "[N, classes, H, W], argmax over classes gives each pixel's class"},
               "style_transfer": {"stylized": "[N, C, H, W], the stylised picture in 0..1"},
               "super_resolution": {"upscaled": "[N, C, scale*H, scale*W], the upscaled picture (Y or RGB) in 0..1"},
               "detection": {"boxes": "[n, 4] x1 y1 x2 y2 in the input's pixels", "scores": "[n]",
                             "labels": "[n] int64, indices into class_names",
                             "masks": "[n, 1, 28, 28] probabilities over each box"}}[spec.task]
    inputs = {"image": "float32 [N, C, H, W]: the picture after preprocessing"}
    if "proposals" in spec.inputs:
        inputs["proposals"] = "float32 [m, 4]: region proposals x1 y1 x2 y2 in the input's pixels (selective search)"
    source = {k: meta[k] for k in ("dataset", "metrics", "checkpoint") if k in meta}
    values = {"model": meta["model"], "task": spec.task, "input_size": meta["input_size"], "mean": meta["mean"],
              "std": meta["std"], "class_names": meta["class_names"], "preprocessing": preprocessing(meta),
              "inputs": inputs, "outputs": {k: v for k, v in outputs.items() if k in spec.outputs},
              "dynamic": dynamic, "notes": spec.notes, "source": source, "archzoo_version": __version__}
    return {k: json.dumps(v, default=str) for k, v in values.items()}


# --------------------------------------------------------------------------- checking


def check_inputs(spec: GraphSpec, size: tuple[int, int, int], spatial: bool) -> list[tuple[torch.Tensor, ...]]:
    """The inputs a file is checked on: the traced size (two batch sizes where the batch may vary,
    else two pictures) and, with ``spatial``, :func:`second_size`."""
    first = [spec.sample(size, 2 if spec.batch else 1, seed=1), spec.sample(size, 1, seed=2)]
    return first + ([spec.sample(second_size(size), 2 if spec.batch else 1, seed=3)] if spatial else [])


def second_size(size: tuple[int, int, int]) -> tuple[int, int, int]:
    """Another picture size (taller by 32, wider by 64: a multiple of every stride up to 32,
    not square, so a graph that swaps height and width fails)."""
    c, h, w = size
    return c, h + 32, w + 64


def trace_input(spec: GraphSpec, size) -> tuple[torch.Tensor, ...]:
    """The example traced: batch 2 where the batch may vary (so it is not taken for a constant 1)."""
    return spec.sample(size, 2 if spec.batch else 1, seed=0)


def _as_numpy(outputs) -> list[np.ndarray]:
    if isinstance(outputs, (torch.Tensor, np.ndarray)):
        outputs = [outputs]
    return [o.detach().cpu().numpy() if isinstance(o, torch.Tensor) else np.asarray(o) for o in outputs]


def compare(spec: GraphSpec, ref, got, tolerance: float) -> float:
    """Max abs difference of ``got`` (the file's outputs) from ``ref`` (PyTorch's); raises
    :class:`Mismatch` when an output differs by more than ``tolerance * max(1, max |ref|)``, has
    another shape, or (detectors) other detections."""
    ref, got = _as_numpy(ref), _as_numpy(got)
    if len(ref) != len(got):
        raise Mismatch(f"{len(got)} outputs, PyTorch gives {len(ref)}")
    if spec.task == "detection":
        return _compare_detections(spec, ref, got, tolerance)
    worst = 0.0
    for name, r, g in zip(spec.outputs, ref, got):
        if r.shape != g.shape:
            raise Mismatch(f"{name} has shape {list(g.shape)}, PyTorch gives {list(r.shape)}")
        finite = np.isfinite(r)
        if not np.array_equal(finite, np.isfinite(g)) or not np.array_equal(r[~finite], g[~finite]):
            raise Mismatch(f"{name}: not finite in other places than PyTorch's")
        if not finite.any():
            continue
        diff = float(np.abs(r[finite].astype(np.float64) - g[finite]).max())
        allowed = tolerance * max(1.0, float(np.abs(r[finite]).max()))
        worst = max(worst, diff)
        if diff > allowed:
            raise Mismatch(f"{name} differs by {diff:.3g} (allowed {allowed:.3g})", diff)
    return worst


def _compare_detections(spec: GraphSpec, ref: list[np.ndarray], got: list[np.ndarray], tolerance: float) -> float:
    """Same count and labels; each PyTorch detection has one in the file with its label and box,
    score (and mask) within the tolerance (matched greedily, so equal scores may come in any order)."""
    n, m = len(ref[0]), len(got[0])
    if n != m:
        raise Mismatch(f"{m} detections, PyTorch finds {n}")
    if n == 0:
        return 0.0
    allowed = [tolerance * max(1.0, float(np.abs(r).max())) for r in ref]
    rb, rs, rl = ref[0].astype(np.float64), ref[1].astype(np.float64), ref[2]
    gb, gs, gl = got[0], got[1], got[2]
    box_diff = np.abs(rb[:, None, :] - gb[None, :, :]).max(-1)  # [n, m]
    score_diff = np.abs(rs[:, None] - gs[None, :])
    ok = (rl[:, None] == gl[None, :]) & (box_diff <= allowed[0]) & (score_diff <= allowed[1])
    taken = np.zeros(m, dtype=bool)
    worst = 0.0
    for i in range(n):
        candidates = np.where(ok[i] & ~taken)[0]
        if not len(candidates):
            j = int(np.argmin(box_diff[i] + np.where(rl[i] == gl, 0, np.inf)))
            raise Mismatch(f"PyTorch's detection {i} (label {int(rl[i])}, score {rs[i]:.4f}) is not in the file's "
                           f"(closest box differs by {box_diff[i, j]:.3g}, allowed {allowed[0]:.3g})",
                           float(box_diff[i, j]))
        j = candidates[np.argmin(box_diff[i, candidates] + score_diff[i, candidates])]
        taken[j] = True
        worst = max(worst, float(box_diff[i, j]), float(score_diff[i, j]))
        for k in range(3, len(ref)):  # masks
            d = float(np.abs(ref[k][i].astype(np.float64) - got[k][j]).max())
            if d > allowed[k]:
                raise Mismatch(f"{spec.outputs[k]} of detection {i} differs by {d:.3g} (allowed {allowed[k]:.3g})", d)
            worst = max(worst, d)
    return worst


def verify(spec: GraphSpec, run, inputs: list[tuple[torch.Tensor, ...]], tolerance: float) -> tuple[float, list[dict]]:
    """Compare ``run(*inputs)`` (the loaded file) with the PyTorch graph on each input; returns the
    largest difference and one ``{"input", "max_abs_diff"}`` per input. Raises :class:`Mismatch`
    (its message names the input) or whatever running the file raised."""
    worst, checks = 0.0, []
    for args in inputs:
        shapes = [list(a.shape) for a in args]
        with torch.no_grad():
            ref = spec.module(*args)
        try:
            got = run(*args)
        except Exception as e:  # the runtime refuses this input (a shape frozen by the trace)
            raise Mismatch(f"input {shapes}: {type(e).__name__}: {_first_line(e)}") from e
        try:
            diff = compare(spec, ref, got, tolerance)
        except Mismatch as e:
            raise Mismatch(f"input {shapes}: {e}", e.diff) from None
        checks.append({"input": shapes, "max_abs_diff": diff})
        worst = max(worst, diff)
    return worst, checks


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:300] if text else type(e).__name__


def runs_at_second_size(spec: GraphSpec, size) -> bool:
    """Whether the PyTorch model runs at :func:`second_size` (a fixed-size head does not)."""
    try:
        with torch.no_grad():
            spec.module(*spec.sample(second_size(size), 1, seed=4))
        return True
    except Exception:  # noqa: BLE001  (any failure means: not at this size)
        return False


# --------------------------------------------------------------------------- the formats


def _onnx_bytes(spec: GraphSpec, example, opset: int, exporter: str, spatial: bool) -> bytes:
    """The ONNX file of ``spec`` traced on ``example`` by ``exporter`` (``"torchscript"`` or ``"dynamo"``)."""
    module = spec.module
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python values: the checks decide
        if exporter == "torchscript":
            register_onnx_ops(opset)
            f = io.BytesIO()
            torch.onnx.export(module, example, f, dynamo=False, opset_version=opset, input_names=spec.inputs,
                              output_names=spec.outputs, dynamic_axes=spec.dynamic_axes(spatial),
                              do_constant_folding=True)
            return f.getvalue()
        import logging

        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        program = torch.onnx.export(module, example, None, dynamo=True, opset_version=max(opset, 18),
                                    input_names=spec.inputs, output_names=spec.outputs,
                                    dynamic_shapes=_dynamic_shapes(spec, spatial), verbose=False)
        return program.model_proto.SerializeToString()


def _dynamic_shapes(spec: GraphSpec, spatial: bool):
    from torch.export import Dim

    image = ({0: Dim.AUTO} if spec.batch else {}) | ({2: Dim.AUTO, 3: Dim.AUTO} if spatial else {})
    return (image or None,) + ((({0: Dim.AUTO}),) if "proposals" in spec.inputs else ())


def ort_session(model: bytes | str | os.PathLike, threads: int | None = None):
    """An onnxruntime CPU session (``threads``: default torch's thread count)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.log_severity_level = 3
    # no busy-waiting between runs: spinning threads would take the CPU from PyTorch (or anything
    # else) running beside the session, as in the checks, the benchmarks and a shared server
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def _ort_runner(session, spec: GraphSpec):
    names = [i.name for i in session.get_inputs()]
    return lambda *args: session.run(None, {n: a.numpy() for n, a in zip(names, args)})


def _with_metadata(data: bytes, metadata: dict[str, str]) -> bytes:
    import onnx

    proto = onnx.load_from_string(data)
    del proto.metadata_props[:]
    for k, v in metadata.items():
        proto.metadata_props.add(key=k, value=v)
    proto.producer_name = "archzoo"
    return proto.SerializeToString()


def _check_out(out) -> Path:
    from ..validate import check_writable_file

    return check_writable_file(out, "--out")


def _prepare(model: nn.Module, meta: dict | None, tolerance: float | None):
    tolerance = DEFAULT_TOLERANCE if tolerance is None else float(tolerance)
    if not tolerance >= 0:
        raise UserError(f"tolerance must be a number >= 0, got {tolerance}")
    spec = export_graph(model)
    meta = model_meta(model, meta)
    size = tuple(int(v) for v in meta["input_size"])
    with torch.no_grad():
        spec.module(*trace_input(spec, size))  # a model that cannot run at this size says so here
    return spec, meta, size, tolerance


def _attempts(spec: GraphSpec, size, exporters: tuple[str, ...]) -> list[tuple[str, bool]]:
    """(exporter, dynamic height/width) to try in turn: each exporter with dynamic sizes (where PyTorch
    runs at a second size), then at the traced size, before the next (slower) exporter."""
    sizes = (True, False) if runs_at_second_size(spec, size) else (False,)
    return [(e, s) for e in exporters for s in sizes]


def _export_checked(fmt: str, name: str, spec: GraphSpec, size, tolerance: float, produce, load, exporters) -> dict:
    """Try each exporter and size mode until a file passes the checks; the passing file's bytes and
    how it was made. Numbers that differ at the traced size end the search (no exporter fixes them)."""
    failures = []
    for exporter, spatial in _attempts(spec, size, exporters):
        how = f"{exporter} exporter{', dynamic height and width' if spatial else ''}"
        try:
            data = produce(exporter, spatial)
            run = load(data)
        except Exception as e:  # noqa: BLE001  (this exporter cannot express the model, or the runtime cannot load it)
            failures.append(f"{how}: {type(e).__name__}: {_first_line(e)}")
            continue
        first, *rest = check_inputs(spec, size, spatial)
        try:
            worst, checks = verify(spec, run, [first], tolerance)
        except Mismatch as e:
            failures.append(f"{how}: {e}")
            if e.diff != float("inf"):  # wrong numbers, not a shape the trace froze
                break
            continue
        try:
            more, more_checks = verify(spec, run, rest, tolerance)
        except Mismatch as e:
            failures.append(f"{how}: {e}")
            continue
        return {"data": data, "exporter": exporter, "spatial": spatial, "max_abs_diff": max(worst, more),
                "checks": checks + more_checks}
    raise UserError(f"exporting {name} to {fmt} failed its check against PyTorch (tolerance {tolerance:g} of the "
                    f"output's scale), nothing was written:\n  " + "\n  ".join(failures))


def _report(path: Path, result: dict, spec: GraphSpec, size, tolerance: float, metadata: dict[str, str]) -> dict:
    c, h, w = size
    hw = ["height", "width"] if result["spatial"] else [h, w]
    inputs = {"image": ["batch" if spec.batch else 1, c, *hw]}
    if "proposals" in spec.inputs:
        inputs["proposals"] = ["proposals", 4]
    shapes = {"logits": ["batch", "classes"] if spec.task == "classification" else ["batch", "classes", *hw],
              "boxes": ["detections", 4], "scores": ["detections"], "labels": ["detections"],
              "masks": ["detections", 1, 28, 28], "stylized": ["batch", c, *hw],
              "upscaled": ["batch", c, "out_height", "out_width"]}
    return {"path": str(path), "max_abs_diff": result["max_abs_diff"], "tolerance": tolerance, "inputs": inputs,
            "outputs": {k: shapes[k] for k in spec.outputs}, "metadata": {k: json.loads(v) for k, v in metadata.items()},
            "exporter": result["exporter"], "checks": result["checks"], "bytes": path.stat().st_size}


def export_onnx(model: nn.Module, meta: dict, out: str | Path, *, opset: int | None = None,
                tolerance: float | None = None) -> dict:
    """Export ``model`` (an archzoo model in eval mode; ``meta``: what :func:`archzoo.io.load_model`
    returns, or ``{}`` for a bare registered model) to the ONNX file ``out``, checked by
    onnxruntime against PyTorch first (see the module doc; ``opset`` default 17, ``tolerance``
    default 1e-4 of the output's scale).

    Returns ``{"path", "max_abs_diff", "tolerance", "inputs", "outputs", "metadata", "exporter",
    "checks", "bytes"}`` (``inputs``/``outputs``: name -> shape, dynamic dimensions by name;
    ``metadata``: the file's metadata, decoded). Raises :class:`~archzoo.validate.UserError` when
    no exported file matches PyTorch (nothing is written then)."""
    from ..checkpoint import atomic_write

    out = _check_out(out)
    opset = DEFAULT_OPSET if opset is None else int(opset)
    if not 16 <= opset <= 23:
        raise UserError(f"opset must be between 16 (RoiAlign with half-pixel sampling) and 23, got {opset}")
    spec, meta, size, tolerance = _prepare(model, meta, tolerance)
    example = trace_input(spec, size)
    result = _export_checked("ONNX", meta["model"], spec, size, tolerance,
                             lambda exporter, spatial: _onnx_bytes(spec, example, opset, exporter, spatial),
                             lambda data: _ort_runner(ort_session(data), spec), ("torchscript", "dynamo"))
    metadata = deploy_metadata(spec, meta, {"batch": spec.batch, "size": result["spatial"]})
    data = _with_metadata(result["data"], metadata)
    atomic_write(out, lambda tmp: Path(tmp).write_bytes(data))
    return {**_report(out, result, spec, size, tolerance, metadata), "opset": opset}


def export_torchscript(model: nn.Module, meta: dict, out: str | Path, *, tolerance: float | None = None) -> dict:
    """Export ``model`` as TorchScript (``torch.jit.trace``) to ``out``, with the metadata as the extra
    file ``archzoo.json`` (``torch.jit.load(out, _extra_files={"archzoo.json": ""})`` reads it); checked
    by loading it back. Returns the report of :func:`export_onnx`."""
    from ..checkpoint import atomic_write

    out = _check_out(out)
    spec, meta, size, tolerance = _prepare(model, meta, tolerance)
    example = trace_input(spec, size)

    def produce(exporter, spatial):
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(spec.module, example, check_trace=False)
        f = io.BytesIO()
        torch.jit.save(traced, f)
        return f.getvalue()

    def load(data):
        loaded = torch.jit.load(io.BytesIO(data))
        return lambda *args: loaded(*args)

    result = _export_checked("TorchScript", meta["model"], spec, size, tolerance, produce, load, ("trace",))
    metadata = deploy_metadata(spec, meta, {"batch": spec.batch, "size": result["spatial"]})
    loaded = torch.jit.load(io.BytesIO(result["data"]))
    atomic_write(out, lambda tmp: torch.jit.save(loaded, tmp, _extra_files={META_FILE: json.dumps(metadata)}))
    return _report(out, result, spec, size, tolerance, metadata)


def export_pt2(model: nn.Module, meta: dict, out: str | Path, *, tolerance: float | None = None) -> dict:
    """Export ``model`` as a ``torch.export`` program (``.pt2``, ``torch.export.load(out).module()``
    runs it) with the metadata as the extra file ``archzoo.json``; checked by loading it back.
    Detectors cannot be: their NMS keeps a number of boxes known only at run time, which
    ``torch.export`` does not trace (use ONNX or TorchScript)."""
    from ..checkpoint import atomic_write

    out = _check_out(out)
    spec, meta, size, tolerance = _prepare(model, meta, tolerance)
    if spec.task == "detection":
        raise UserError(f"{meta['model']} is a detector: torch.export cannot trace its NMS (the number of boxes "
                        "kept depends on the data); use --format onnx or --format torchscript")
    example = trace_input(spec, size)

    def produce(exporter, spatial):
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            program = torch.export.export(spec.module, example, dynamic_shapes=_dynamic_shapes(spec, spatial))
        f = io.BytesIO()
        torch.export.save(program, f)
        return f.getvalue()

    def load(data):
        module = torch.export.load(io.BytesIO(data)).module()
        return lambda *args: module(*args)

    result = _export_checked("pt2", meta["model"], spec, size, tolerance, produce, load, ("torch.export",))
    metadata = deploy_metadata(spec, meta, {"batch": spec.batch, "size": result["spatial"]})
    program = torch.export.load(io.BytesIO(result["data"]))
    atomic_write(out, lambda tmp: torch.export.save(program, tmp, extra_files={META_FILE: json.dumps(metadata)}))
    return _report(out, result, spec, size, tolerance, metadata)


def export_model(model: nn.Module, meta: dict, out: str | Path, format: str = "onnx", **options) -> dict:
    """:func:`export_onnx`, :func:`export_torchscript` or :func:`export_pt2` by ``format``."""
    if format not in FORMATS:
        raise UserError(f"--format must be one of {', '.join(FORMATS)}, got {format!r}")
    fn = {"onnx": export_onnx, "torchscript": export_torchscript, "pt2": export_pt2}[format]
    return fn(model, meta, out, **options)


def read_metadata(path: str | Path) -> dict:
    """The archzoo metadata of an exported file (ONNX, TorchScript or pt2), decoded."""
    path = Path(path)
    if path.suffix == ".onnx":
        import onnx

        proto = onnx.load(str(path), load_external_data=False)
        return {p.key: json.loads(p.value) for p in proto.metadata_props}
    extra = {META_FILE: ""}
    if path.suffix == ".pt2":
        torch.export.load(str(path), extra_files=extra)
    else:
        torch.jit.load(str(path), _extra_files=extra)
    return {k: json.loads(v) for k, v in json.loads(extra[META_FILE]).items()}
