"""Checkpoints: one ``.safetensors`` file whose metadata holds what is needed to rebuild and use
the model. No pickled objects anywhere; writes are atomic (temporary file, fsync, rename), so a
crash mid-write leaves the previous file intact.

The metadata is a JSON object under the key ``"archzoo"``::

    {"schema": 1, "model": "resnet20", "kwargs": {...}, "num_classes": 10, "in_chans": 3,
     "class_names": [...], "input_size": [3, 32, 32], "mean": [...], "std": [...], ...}
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

SCHEMA_VERSION = 1
META_KEY = "archzoo"
_UMASK = os.umask(0)  # read once, at import (reading it means setting it)
os.umask(_UMASK)


def atomic_write(path: str | os.PathLike, write) -> None:
    """Call ``write(tmp_path)`` then atomically move the result to ``path``.

    The file gets the permissions any new file gets (``0o666`` less the umask), whatever mode
    ``write`` created it with. The file and, after the rename, its folder are synced, so the new
    file survives a power cut once this returns."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = str(path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows, where folders cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (readers see the old file or the new one, never half)."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Write ``tensors`` and the JSON-serialisable ``meta`` to ``path`` atomically."""
    meta = {"schema": SCHEMA_VERSION, **meta}
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={META_KEY: json.dumps(meta)}))


def read_tensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a checkpoint written by :func:`save_tensors`; the metadata is ``{}`` for a foreign file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        tensors = load_file(str(path))
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(META_KEY)
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"{path} is not a readable .safetensors file: {e}") from e
    return tensors, _parse_meta(raw, path)


def read_metadata(path: str | os.PathLike) -> dict:
    """The metadata of a checkpoint written by :func:`save_tensors`, without reading its tensors."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(META_KEY)
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"{path} is not a readable .safetensors file: {e}") from e
    return _parse_meta(raw, path)


def _parse_meta(raw: str | None, path: Path) -> dict:
    """The JSON metadata object, its ``schema`` version checked."""
    from .schema import check_schema_version

    try:
        meta = json.loads(raw) if raw else {}
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: its {META_KEY!r} metadata is not valid JSON: {e}") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: its {META_KEY!r} metadata is not a JSON object")
    check_schema_version(meta, path)
    return meta


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """A model checkpoint's tensors and metadata, the metadata checked against the checkpoint
    schema (:func:`archzoo.schema.validate_meta`) when it describes a model (has any model field);
    ``{}`` for a foreign ``.safetensors`` file. What ``load_model`` and ``create_model(weights=)`` read."""
    from .schema import validate_meta

    tensors, meta = read_tensors(path)
    if any(k in meta for k in ("model", "num_classes", "in_chans", "kwargs", "class_names")):
        meta = validate_meta(meta, path)
    return tensors, meta


def read_state_dict(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors and metadata from ``.safetensors`` or, for foreign files, ``.pth/.pt/.bin`` read with
    ``torch.load(weights_only=True)`` (never unpickling arbitrary objects)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return read_checkpoint(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError ...
        text = str(e).split("WeightsUnpickler error:")[-1]  # torch's reason, without its advice to unpickle
        why = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
        raise ValueError(f"{path} could not be read as a weights-only PyTorch file: "
                         f"{type(e).__name__}: {why[:300]}") from e
    for wrapper in ("state_dict", "model", "model_state_dict", "module"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    return {k.removeprefix("module."): v for k, v in obj.items()}, {}


def training_tensors(model: torch.nn.Module, opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """A model's weights (``model.*``) and its optimizer's per-parameter state (``opt.<i>.<key>``, by
    parameter position; 0-d tensors stored 1-d), for a small trainer's own safetensors checkpoint
    (``archzoo nca``, ``archzoo stylize --train``); :func:`load_training_tensors` reverses it."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    for i, p in enumerate(model.parameters()):
        for k, v in opt.state.get(p, {}).items():
            tensors[f"opt.{i}.{k}"] = v.reshape(-1) if v.ndim == 0 else v
    return tensors


def load_training_tensors(model: torch.nn.Module, opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    """Put back what :func:`training_tensors` saved (Adam's ``step`` becomes 0-d again)."""
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    for i, p in enumerate(model.parameters()):
        state = {k.split(".", 2)[2]: v for k, v in tensors.items() if k.startswith(f"opt.{i}.")}
        if state:
            state["step"] = state["step"].reshape(())
            opt.state[p] = state
