"""The training state: everything ``--resume`` needs to continue a run exactly.

One ``state.safetensors`` file in the run folder, written atomically after every epoch: the
model, the EMA, the optimizer's tensors and every process's random-number states as tensors;
the epoch, step, best metric, history, recipe and the optimizer's plain settings as JSON
metadata. No pickle. Because it is the only file resume reads, a kill at any moment leaves a
consistent state (the previous epoch's, or this one's).

The data order needs no state of its own: epoch ``e`` visits the permutation drawn from a
generator seeded with ``(seed, e)`` (see :mod:`archzoo.engine.loader`).
"""

from __future__ import annotations

import random
import warnings

import numpy as np
import torch

from ..checkpoint import read_tensors, save_tensors
from . import distributed as dist

STATE_FILE = "state.safetensors"


# --- random number generators ------------------------------------------------------------------

def rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    """torch (CPU and this process's CUDA device), numpy and python generator states, as tensors."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    out = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(keys.astype(np.int64)),
        "numpy_extra": torch.tensor([pos, has_gauss, gauss], dtype=torch.float64),
        "python": torch.tensor(py_state, dtype=torch.int64),
        "python_extra": torch.tensor([version, py_gauss is not None, py_gauss or 0.0], dtype=torch.float64),
    }
    if device.type == "cuda":
        out["cuda"] = torch.cuda.get_rng_state(device)
    return out


def set_rng_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    pos, has_gauss, gauss = state["numpy_extra"].tolist()
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), int(pos), int(has_gauss), gauss))
    version, has_py_gauss, py_gauss = state["python_extra"].tolist()
    random.setstate((int(version), tuple(state["python"].tolist()), py_gauss if has_py_gauss else None))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def gather_rng_states(device: torch.device) -> dict[str, torch.Tensor]:
    """Every process's generator states, keyed ``rng.<rank>.<name>`` (collective under torchrun)."""
    out = {}
    for name, t in rng_state(device).items():
        for r, g in enumerate(dist.all_gather(t.to(device) if dist.enabled() and device.type == "cuda" else t)):
            out[f"rng.{r}.{name}"] = g.cpu()
    return out


# --- optimizer ----------------------------------------------------------------------------------

def optimizer_to_flat(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = optimizer.state_dict()
    tensors, plain = {}, {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"optim.{idx}.{k}"] = v
            else:
                plain[f"{idx}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "state": plain}


def optimizer_from_flat(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        if key.startswith("optim."):
            _, idx, k = key.split(".", 2)
            state.setdefault(int(idx), {})[k] = v
    for key, v in meta["state"].items():
        idx, k = key.split(".", 1)
        state.setdefault(int(idx), {})[k] = v
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in meta["param_groups"]]
    optimizer.load_state_dict({"state": state, "param_groups": groups})


# --- the state file -----------------------------------------------------------------------------

def save_state(path, *, model, optimizer, ema, device, meta: dict) -> None:
    """Gather (on every process) and write (on rank 0) the full training state."""
    rng = gather_rng_states(device)
    if not dist.is_main():
        return
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    opt_tensors, opt_meta = optimizer_to_flat(optimizer)
    tensors.update(opt_tensors)
    if ema is not None:
        tensors.update({f"ema.{k}": v for k, v in ema.state_dict().items()})
    tensors.update(rng)
    save_tensors(path, tensors, {**meta, "kind": "train_state", "optimizer": opt_meta,
                                 "ema_updates": ema.updates if ema is not None else 0,
                                 "world_size": dist.world_size()})


# field -> the types its value may have (the training state's metadata schema)
_STATE_FIELDS = {"epoch": int, "step": int, "history": list, "best": (int, float, type(None)),
                 "best_epoch": (int, type(None)), "recipe": dict, "class_names": list, "data_order": dict, "run": dict,
                 "optimizer": dict}


def check_state_meta(meta: dict, path) -> dict:
    """The metadata of a ``state.safetensors``, checked before anything is built from it."""
    from ..validate import UserError, shown

    if meta.get("kind") != "train_state":
        raise UserError(f"{shown(path)} is not a training state written by archzoo train")
    for name, types in _STATE_FIELDS.items():
        if name not in meta:
            if name in ("best", "best_epoch", "class_names", "run", "data_order"):
                continue
            raise UserError(f"{shown(path)}: metadata field {name!r} is missing; the training state is damaged")
        v = meta[name]
        if not isinstance(v, types) or isinstance(v, bool) or (name in ("epoch", "step") and v < 0):
            raise UserError(f"{shown(path)}: metadata field {name!r} has the wrong type or range ({v!r:.80}); "
                            "the training state is damaged")
    if not all(isinstance(n, str) for n in meta.get("class_names", [])):
        raise UserError(f"{shown(path)}: metadata field 'class_names' must be a list of strings")
    run = meta.get("run", {})
    for name, types in (("model", (str, type(None))), ("data", (str, type(None))), ("val_data", (str, type(None))),
                        ("teacher", (str, type(None))), ("init", (str, type(None))), ("model_kwargs", (dict, type(None))),
                        ("data_options", dict)):
        if name in run and not isinstance(run[name], types):
            raise UserError(f"{shown(path)}: metadata field 'run.{name}' has the wrong type ({run[name]!r:.80})")
    return meta


def load_training_state(path, *, model, optimizer, ema, device) -> dict:
    """Restore model, optimizer, EMA and this process's generators; return the JSON metadata."""
    from ..validate import UserError, shown

    tensors, meta = read_tensors(path)
    check_state_meta(meta, path)
    try:
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise UserError(f"cannot resume from {shown(path)}: its model weights do not fit the model being trained "
                        f"({' '.join(first[1:3]).strip() if len(first) > 1 else first[0] if first else e})") from None
    optimizer_from_flat(optimizer, tensors, meta["optimizer"])
    ema_state = {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}
    if ema is not None:
        if ema_state:
            ema.load_state_dict(ema_state, meta.get("ema_updates", 0))
        else:
            warnings.warn(f"{path} has no EMA weights; the EMA restarts from the current weights", stacklevel=2)
            ema.module.load_state_dict(model.state_dict())
    prefix = f"rng.{dist.rank()}."
    mine = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    if mine:
        set_rng_state(mine, device)
    if meta.get("world_size", 1) != dist.world_size():
        warnings.warn(f"resuming a run of {meta.get('world_size', 1)} processes with {dist.world_size()}: "
                      "training continues, but not bit-for-bit", stacklevel=2)
    return meta
