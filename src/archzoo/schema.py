"""The checkpoint schema: what the ``archzoo`` metadata of a ``.safetensors`` checkpoint may hold,
and what its tensors must be for the model it describes.

:func:`validate_meta` checks the whole metadata against :data:`FIELDS` (one entry per field: its
type, range and meaning) plus the rules that tie fields together; :func:`check_state_dict`
checks the tensors against the model the metadata builds (names, shapes, dtypes, finite values).
``archzoo.load_model``, ``create_model(weights=...)``, ``eval``, ``predict`` and ``cam`` all go
through both, so a file that is well-formed but wrong is refused with an error that names the
file and the field (or tensor), never a traceback from deep inside the model.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping

import torch

from .checkpoint import SCHEMA_VERSION
from .validate import RANGES, UserError, shown

# create_model arguments the metadata sets through its own fields, never through "kwargs"
RESERVED_KWARGS = ("num_classes", "in_chans", "features_only", "out_indices", "weights")


class _Bad(Exception):
    """A field's value is wrong; the message completes "field X ..."."""


def _int(lo: int = 0, hi: int | None = None) -> Callable:
    def check(v):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi is not None and v > hi):
            raise _Bad(f"must be an integer {'in [%d, %d]' % (lo, hi) if hi is not None else '>= %d' % lo}, got {v!r}")
        return v
    return check


def _str(v):
    if not isinstance(v, str):
        raise _Bad(f"must be a string, got {v!r}")
    return v


def _opt_str(v):
    return None if v is None else _str(v)


def _dict(v):
    if not isinstance(v, dict):
        raise _Bad(f"must be a JSON object, got {v!r}")
    return v


def _numbers(positive: bool) -> Callable:
    def check(v):
        if not isinstance(v, list) or not v or not all(
                isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and (x > 0 or not positive)
                for x in v):
            raise _Bad(f"must be a non-empty list of finite {'positive ' if positive else ''}numbers, got {v!r}")
        return [float(x) for x in v]
    return check


def _model(v):
    from .registry import get_entry

    _str(v)
    try:
        get_entry(v)
    except KeyError:
        raise _Bad(f"names {shown(v)!r}, which is not a registered model (archzoo models lists them)") from None
    return v


def _kwargs(v):
    _dict(v)
    reserved = [k for k in v if k in RESERVED_KWARGS]
    if reserved:
        raise _Bad(f"must not hold {reserved}: they are fields of their own")
    for k in ("drop_rate", "drop_path_rate"):
        if k in v and not RANGES[k].contains(v[k]):
            raise _Bad(f"{k} must be {RANGES[k].describe()}, got {v[k]!r}")
    return v


def _class_names(v):
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise _Bad(f"must be a list of strings, got {v!r}"[:300])
    names = [shown(x) for x in v]  # names from non-UTF-8 folders: printable, drawable, valid JSON
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise _Bad(f"lists {dup[:5]} more than once")
    return names


def _input_size(v):
    if not isinstance(v, list) or len(v) != 3 or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in v):
        raise _Bad(f"must be [channels, height, width], three integers >= 1, got {v!r}")
    return v


def _out_indices(v):
    if v is None:
        return v
    if not isinstance(v, list) or not v or not all(isinstance(x, int) and not isinstance(x, bool) for x in v):
        raise _Bad(f"must be null or a non-empty list of integers, got {v!r}")
    return v


def _run(v):
    _dict(v)
    opts = v.get("data_options", {})
    if not isinstance(opts, dict):
        raise _Bad(f"data_options must be a JSON object, got {opts!r}")
    size = opts.get("image_size")
    if size is not None and not RANGES["image_size"].contains(size):
        raise _Bad(f"data_options.image_size must be {RANGES['image_size'].describe()} or null, got {size!r}")
    return v


# field -> (check returning the value to use, required)
FIELDS: dict[str, tuple[Callable, bool]] = {
    "schema": (_int(1, SCHEMA_VERSION), False),
    "model": (_model, True),
    "kwargs": (_kwargs, False),
    "num_classes": (_int(0), True),
    "in_chans": (_int(1, 4096), True),
    "class_names": (_class_names, False),
    "input_size": (_input_size, False),
    "mean": (_numbers(False), False),
    "std": (_numbers(True), False),
    "out_indices": (_out_indices, False),
    "task": (_str, False),
    "epoch": (_int(0), False),
    "metrics": (_dict, False),
    "recipe": (_dict, False),
    "run": (_run, False),
    "archzoo_version": (_opt_str, False),
}


def check_schema_version(meta: dict, path) -> None:
    """The ``schema`` field alone (every archzoo file has one): an integer this archzoo can read."""
    v = meta.get("schema", SCHEMA_VERSION)
    if isinstance(v, int) and not isinstance(v, bool) and v > SCHEMA_VERSION:
        raise UserError(f"{shown(path)} was written by a newer archzoo (schema {v} > {SCHEMA_VERSION}); upgrade archzoo")
    try:
        FIELDS["schema"][0](v)
    except _Bad as e:
        raise UserError(f"{shown(path)}: metadata field 'schema' {e}") from None


def validate_meta(meta: dict, path) -> dict:
    """The metadata of a model checkpoint, checked against :data:`FIELDS` and the rules between
    fields; returns it with values normalised (e.g. printable class names). Raises
    :class:`~archzoo.validate.UserError` naming the file and the field."""
    check_schema_version(meta, path)

    def bad(field: str, reason: str):
        return UserError(f"{shown(path)}: metadata field {field!r} {reason}")

    out = dict(meta)
    for name, (check, required) in FIELDS.items():
        if name not in meta:
            if required:
                raise bad(name, "is missing (every archzoo checkpoint has it)")
            continue
        try:
            out[name] = check(meta[name])
        except _Bad as e:
            raise bad(name, str(e)) from None
    from .registry import get_entry

    entry = get_entry(out["model"])
    card = entry.card
    unknown = unknown_arguments(entry.builder, out.get("kwargs", {}))
    if unknown:
        raise bad("kwargs", f"holds {unknown}, which {card.name} does not take")
    n = out["num_classes"]
    names = out.get("class_names")
    if names is not None and n > 0 and len(names) != n:
        raise bad("class_names", f"lists {len(names)} names for {n} classes (num_classes)")
    if "mean" in out and "std" in out and len(out["mean"]) != len(out["std"]):
        raise UserError(f"{shown(path)}: metadata fields 'mean' and 'std' differ in length "
                        f"({len(out['mean'])} and {len(out['std'])} values)")
    for field in ("mean", "std"):
        if field in out and len(out[field]) not in (1, 3, out["in_chans"]):
            raise bad(field, f"has {len(out[field])} values for {out['in_chans']} input channels")
    if "input_size" in out and out.get("out_indices") is None:
        h, w = out["input_size"][1:]
        mh, mw = card.min_input_size[1:]
        if h < mh or w < mw:
            raise bad("input_size", f"is {h}x{w}, below {card.name}'s smallest input {mh}x{mw}")
    return out


def unknown_arguments(builder, kwargs: dict) -> list[str]:
    """The keys of ``kwargs`` that ``builder`` has no parameter for (none if it takes ``**kwargs``)."""
    import inspect

    try:
        params = inspect.signature(builder).parameters.values()
    except (TypeError, ValueError):
        return []
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return []
    names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return sorted(k for k in kwargs if k not in names)


def check_state_dict(expected: Mapping[str, torch.Tensor], got: Mapping[str, torch.Tensor], path,
                     what: str = "") -> dict[str, torch.Tensor]:
    """``got`` checked against the model's ``expected`` state dict (on any device, ``meta``
    included): the same tensor names and shapes, floating point where the model is (cast to the
    model's dtype), and no NaN or infinity. Raises :class:`~archzoo.validate.UserError` naming
    the file and the tensor."""
    where = f"{shown(path)}{what}"
    missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
    if missing or extra:
        parts = ([f"{len(missing)} tensors missing (e.g. {missing[:3]})"] if missing else []) + \
                ([f"{len(extra)} unexpected tensors (e.g. {extra[:3]})"] if extra else [])
        raise UserError(f"{where} does not fit the model it describes: " + ", ".join(parts))
    out = {}
    for k, want in expected.items():
        t = got[k]
        if tuple(t.shape) != tuple(want.shape):
            raise UserError(f"{where}: tensor {k!r} has shape {tuple(t.shape)}, the model needs {tuple(want.shape)}")
        if want.is_floating_point():
            if not t.is_floating_point():
                raise UserError(f"{where}: tensor {k!r} is {str(t.dtype).removeprefix('torch.')}, "
                                f"the model needs floating point ({str(want.dtype).removeprefix('torch.')})")
            if not bool(torch.isfinite(t).all()):
                bad = "NaN" if bool(torch.isnan(t).any()) else "infinite values"
                raise UserError(f"{where}: tensor {k!r} holds {bad}; the weights are broken (a diverged or damaged "
                                "run), refusing to use them")
            t = t.to(want.dtype)
        elif t.is_floating_point() or t.is_complex() or t.dtype == torch.bool and want.dtype != torch.bool:
            raise UserError(f"{where}: tensor {k!r} is {str(t.dtype).removeprefix('torch.')}, "
                            f"the model needs {str(want.dtype).removeprefix('torch.')}")
        else:
            t = t.to(want.dtype)
        out[k] = t
    return out
