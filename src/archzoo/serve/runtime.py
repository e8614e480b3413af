"""What ``archzoo serve`` runs: models loaded once, and one upload -> ``archzoo predict``'s answer.

:func:`load_served` loads a checkpoint, shipped weights (``resnet20.cifar10``) or a registered
name (random weights, for trying the page) and, with ``runtime="onnx"``, exports it to ONNX
(checked against PyTorch by :func:`archzoo.deploy.export.export_onnx`) and runs that file in
onnxruntime behind the same interface. :func:`predict_upload` checks an upload's bytes (empty,
not an image, dimensions over the limit, truncated pixels), then answers exactly as ``archzoo
predict --json`` does for that file (the same code, :func:`archzoo.cli.predict.predict_files`),
plus ``overlay_png``: the picture to show, base64 PNG (a CAM over the image for classifiers whose
head allows it, the drawn boxes for detectors, the mask overlay for segmenters).
"""

from __future__ import annotations

import base64
import io
import tempfile
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..validate import UserError

RUNTIMES = ("torch", "onnx")
DEFAULT_MAX_PIXELS = 40_000_000  # an upload's width x height above this is refused (decompression-bomb guard)


class BadUpload(UserError):
    """An upload that cannot be answered; ``status`` is the HTTP status to reply with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Served:
    """One loaded model: its name on the page, the model (PyTorch, or onnxruntime behind a module),
    the checkpoint's metadata, its task and runtime; ``lock`` serialises its use across threads."""

    name: str
    model: nn.Module
    meta: dict
    task: str
    runtime: str
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def describe(self) -> dict:
        meta = self.meta
        names = meta.get("class_names") or [str(i) for i in range(getattr(self.model, "num_classes", 0) or 0)]
        size = meta.get("input_size") or list(self.model.card.input_size)
        return {"name": self.name, "model": meta.get("model"), "task": self.task, "runtime": self.runtime,
                "input_size": list(size), "classes": list(names)}


class OnnxModule(nn.Module):
    """An exported ONNX file run by onnxruntime, posing as the PyTorch model it came from (same
    ``card``, ``build_args``, ``num_classes``), so :func:`predict_files` runs it unchanged.
    Classifiers and segmenters return the logits; detectors ``[{"boxes", "scores", "labels"}]``."""

    def __init__(self, session, torch_model: nn.Module, task: str) -> None:
        super().__init__()
        self.session, self.task = session, task
        self.card, self.num_classes = torch_model.card, torch_model.num_classes
        self.build_args = dict(getattr(torch_model, "build_args", {}))
        self.input_name = session.get_inputs()[0].name
        self.output_names = [o.name for o in session.get_outputs()]

    def forward(self, x: torch.Tensor):
        outs = self.session.run(None, {self.input_name: x.detach().cpu().float().numpy()})
        if self.task != "detection":
            return torch.from_numpy(outs[0])
        return [{k: torch.from_numpy(np.asarray(v)) for k, v in zip(self.output_names, outs)}]


def _load_torch(spec: str) -> tuple[nn.Module, dict]:
    """A checkpoint file or shipped weights (:func:`archzoo.io.load_model`), else a registered model name."""
    from .. import create_model, list_models
    from ..io import load_model

    path = Path(spec).expanduser()
    if not path.exists() and "/" not in spec and spec in list_models():
        return create_model(spec).eval(), {"model": spec}
    try:
        return load_model(spec, need_head=True)
    except FileNotFoundError as e:
        raise UserError(f"model {spec}: {e}; give a checkpoint file, shipped weights <model>.<tag> or a registered "
                        "model name (archzoo models)") from None


def load_served(spec: str, runtime: str = "torch", workdir: str | Path | None = None) -> Served:
    """Load ``spec`` once for serving; ``runtime="onnx"`` exports it to ``workdir`` and runs the file."""
    from ..engine.evaluate import model_task

    if runtime not in RUNTIMES:
        raise UserError(f"--runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    model, meta = _load_torch(spec)
    task = model_task(model, meta.get("class_names")).name
    name = Path(spec).stem if Path(spec).expanduser().is_file() else spec
    if runtime == "onnx":
        model = _as_onnx(model, meta, task, name, workdir)
    return Served(name, model, meta, task, runtime)


def _as_onnx(model: nn.Module, meta: dict, task: str, name: str, workdir) -> OnnxModule:
    from ..deploy.export import export_onnx, ort_session
    from ..deploy.graph import export_graph

    spec = export_graph(model)
    if (task == "detection" and spec.outputs != ["boxes", "scores", "labels"]) or spec.inputs != ["image"]:
        raise UserError(f"{name}: --runtime onnx serves classifiers, segmenters and box detectors; this detector's "
                        f"graph takes {spec.inputs} and gives {spec.outputs} (serve it with --runtime torch)")
    workdir = Path(workdir or tempfile.mkdtemp(prefix="archzoo-serve-"))
    out = workdir / f"{name.replace('/', '_')}.onnx"
    export_onnx(model, meta, out)
    return OnnxModule(ort_session(out), model, task).eval()


# ------------------------------------------------------------------ one upload


def check_image_bytes(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """``(width, height)`` of an upload, read from its header; :class:`BadUpload` when it is empty,
    not an image Pillow identifies, or over ``max_pixels`` (checked before any pixel is decoded)."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise BadUpload("field 'image' is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            w, h = img.size
    except UnidentifiedImageError:
        raise BadUpload("field 'image' is not an image (Pillow cannot identify its format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise BadUpload(f"field 'image' is too large: {e}", 413) from None
    except Exception as e:  # malformed headers raise many kinds of errors
        raise BadUpload(f"field 'image' is not a readable image ({type(e).__name__}: {e})") from None
    if w * h > max_pixels:
        raise BadUpload(f"field 'image' is {w}x{h} = {w * h:,} pixels, over the limit of {max_pixels:,} "
                        "(decompression-bomb guard; the server's --max-pixels)", 413)
    if w == 0 or h == 0:
        raise BadUpload(f"field 'image' has no pixels ({w}x{h})")
    return w, h


def _png_b64(array: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _cam_overlay(served: Served, path: str, index: int) -> np.ndarray | None:
    """The class activation map of class ``index`` over the picture the model saw, or ``None``
    where the model's head is not pooling + linear (or the model is an ONNX file)."""
    from ..cli.common import checkpoint_input
    from ..data.folder import ImageDecoder
    from ..engine.evaluate import model_task
    from ..explain.cam import NotLinearHeadError, class_activation_maps
    from ..explain.render import blend, to_display

    if isinstance(served.model, OnnxModule):
        return None
    c, size, mean, std = checkpoint_input(served.model, served.meta)
    task = model_task(served.model, served.meta.get("class_names"))
    x = task.input_transform(size, mean, std, c)(ImageDecoder(c)(path))
    try:
        maps, _ = class_activation_maps(served.model, x[None], target=index)
    except NotLinearHeadError:
        return None
    return blend(to_display(x, mean, std), maps[0])


def predict_upload(served: Served, data: bytes, filename: str = "upload", *, topk: int | None = None,
                   max_pixels: int = DEFAULT_MAX_PIXELS, overlay: bool = True) -> dict:
    """``archzoo predict --json``'s entry for ``data`` (``file`` is ``filename``), plus
    ``overlay_png`` (base64 PNG, or ``None`` where there is nothing to draw). Bad bytes raise
    :class:`BadUpload` with the reason."""
    from ..cli.predict import predict_files
    from ..data.folder import BadImageError

    check_image_bytes(data, max_pixels)
    with tempfile.TemporaryDirectory(prefix="archzoo-upload-") as tmp:
        path = str(Path(tmp) / "upload")
        Path(path).write_bytes(data)
        out = Path(tmp) / "out" if overlay and served.task != "classification" else None
        try:
            with served.lock:
                entry = predict_files(served.model, served.meta, [path], topk, "cpu", out=out)[0]
                cam = (_cam_overlay(served, path, entry["top"][0]["index"])
                       if overlay and served.task == "classification" and entry["top"] else None)
        except BadImageError as e:
            raise BadUpload(f"field 'image': {e.reason}") from None
        entry["file"] = filename
        picture = entry.pop("picture", None) or entry.pop("overlay", None)
        entry.pop("mask", None)
        if picture is not None:
            entry["overlay_png"] = base64.b64encode(Path(picture).read_bytes()).decode("ascii")
        else:
            entry["overlay_png"] = _png_b64(cam) if cam is not None else None
    return entry
