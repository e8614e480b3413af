"""``archzoo export CKPT --web DIR``: a static folder that runs the model in the browser.

The folder holds the exported ONNX file (``model.onnx``), ``meta.json`` (its metadata: task,
classes, input size, preprocessing), a page (``index.html`` + ``app.js``) and onnxruntime-web's
WebAssembly build (``ort/``), copied from its npm package at export time, so nothing is downloaded
when the page runs. Serve the folder with any static server (``python -m http.server -d DIR``;
browsers do not load WebAssembly from ``file://``), open it, choose an image: the page resizes and
normalises it as the metadata says (in a canvas), runs the model with onnxruntime-web's WASM
backend, and shows the top-5 classes (classifiers), the boxes (detectors) or the classes' pixel
shares (segmenters).

Where onnxruntime-web comes from (:func:`find_ort_web`): ``$ARCHZOO_ORT_WEB`` (the package's
folder), else ``node_modules/onnxruntime-web`` in the current folder or one above it, else the
global npm folder (``npm root -g``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from importlib import resources
from pathlib import Path

from ..validate import UserError

ORT_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.wasm", "ort-wasm-simd-threaded.mjs")
PAGE_FILES = ("index.html", "app.js")
META_KEYS = ("model", "task", "input_size", "mean", "std", "class_names", "preprocessing", "dynamic", "outputs")
INSTALL_HINT = ("install it with `npm install onnxruntime-web` (in this folder or one above), or point "
                "ARCHZOO_ORT_WEB at the package's folder")


def _has_dist(folder: Path) -> bool:
    return all((folder / "dist" / f).is_file() for f in ORT_FILES)


def find_ort_web() -> Path:
    """The folder of an installed onnxruntime-web npm package (see the module doc), or
    :class:`~archzoo.validate.UserError` saying how to install one."""
    env = os.environ.get("ARCHZOO_ORT_WEB")
    if env:
        folder = Path(env).expanduser()
        if not _has_dist(folder):
            raise UserError(f"ARCHZOO_ORT_WEB={env} is not an onnxruntime-web package folder (it lacks "
                            f"dist/{', dist/'.join(ORT_FILES)}); {INSTALL_HINT}")
        return folder
    for parent in (Path.cwd(), *Path.cwd().parents):
        folder = parent / "node_modules" / "onnxruntime-web"
        if _has_dist(folder):
            return folder
    npm = shutil.which("npm")
    if npm:
        try:
            root = subprocess.run([npm, "root", "-g"], check=False, capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            root = ""
        if root and _has_dist(Path(root) / "onnxruntime-web"):
            return Path(root) / "onnxruntime-web"
    raise UserError(f"--web needs onnxruntime-web's files and none was found; {INSTALL_HINT}")


def _copy(src: Path, dst: Path) -> None:
    from ..checkpoint import atomic_write

    atomic_write(dst, lambda tmp: shutil.copyfile(src, tmp))


def write_web_folder(onnx_path: str | Path, out_dir: str | Path, meta: dict) -> Path:
    """Write the in-browser folder for ``onnx_path`` (an ONNX file from
    :func:`archzoo.deploy.export.export_onnx`; ``meta``: its metadata, as
    :func:`~archzoo.deploy.export.read_metadata` returns it) to ``out_dir``; returns ``out_dir``.
    Detectors whose graph needs region proposals (R-CNN, Fast R-CNN) are refused."""
    from ..checkpoint import atomic_write_text
    from ..validate import check_writable_dir

    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise UserError(f"ONNX file {onnx_path} does not exist")
    missing = [k for k in ("task", "input_size", "mean", "std", "class_names") if k not in meta]
    if missing:
        raise UserError(f"{onnx_path}: its metadata lacks {missing}; export it with archzoo export")
    if "proposals" in meta.get("inputs", {}):
        raise UserError(f"{meta.get('model')} takes region proposals from selective search, which the browser page "
                        "cannot compute; --web serves classifiers, segmenters and detectors without proposals")
    ort = find_ort_web()
    out = check_writable_dir(out_dir, "--web")
    (out / "ort").mkdir(parents=True, exist_ok=True)
    for name in ORT_FILES:
        _copy(ort / "dist" / name, out / "ort" / name)
    _copy(onnx_path, out / "model.onnx")
    page = resources.files(__package__).joinpath("web_page")
    for name in PAGE_FILES:
        atomic_write_text(out / name, page.joinpath(name).read_text(encoding="utf-8"))
    info = {k: meta[k] for k in META_KEYS if k in meta}
    version = json.loads((ort / "package.json").read_text()).get("version") if (ort / "package.json").is_file() else None
    info["onnxruntime_web"] = version
    atomic_write_text(out / "meta.json", json.dumps(info, indent=1))
    return out
