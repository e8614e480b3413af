"""The single funnel every model goes through: ``create_model``.

It looks the name up in the registry, builds the variant with the card's arguments plus the
caller's, adapts the class count and input channels, loads weights (ours, torchvision's or
timm's, a shipped tag), attaches the card, and wraps the model for ``features_only``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import torch
import torch.nn as nn

from .checkpoint import read_state_dict
from .features import FeatureExtractor
from .registry import get_entry


def create_model(
    name: str,
    *,
    num_classes: int | None = None,
    in_chans: int | None = None,
    features_only: bool = False,
    out_indices: Sequence[int] | None = None,
    out_strides: Sequence[int] | None = None,
    weights: str | Path | None = None,
    **kwargs,
) -> nn.Module:
    """Build a registered model.

    Args:
        name: a name from :func:`archzoo.list_models`.
        num_classes: classifier outputs (default: the card's); ``0`` removes the classifier.
        in_chans: input channels (default 3).
        features_only: return a backbone (:class:`~archzoo.features.FeatureExtractor`) giving the
            feature maps; it holds only the stages up to the deepest requested map.
        out_indices: which of ``model.feature_info`` to return (default: all).
        out_strides: or which by reduction, e.g. ``(8, 16, 32)`` (for each, the deepest map with it).
        weights: a ``.safetensors`` checkpoint, a ``.pth``/``.pt``/``.bin`` state dict (ours, or
            torchvision's/timm's, converted), or shipped weights as ``<tag>`` or ``<model>.<tag>``.
        kwargs: architecture arguments overriding the variant's (``drop_rate``, ``drop_path_rate`` ...);
            backbone options where the family has them: ``output_stride`` (8, 16: dilation instead
            of the last strides) and ``norm_layer`` (``"batchnorm"``, ``"frozen_batchnorm"``,
            ``"groupnorm"``). A family without an option refuses it with a ``ValueError``.
    """
    from .validate import check_model_args

    check_model_args(name, num_classes, in_chans, kwargs)
    entry = get_entry(name)
    card = entry.card
    if (out_indices is not None or out_strides is not None) and not features_only:
        raise ValueError("out_indices and out_strides are only meaningful with features_only=True")
    build_kwargs = {**card.kwargs, **_shipped_kwargs(name, weights), **kwargs}
    build_kwargs["num_classes"] = card.num_classes if num_classes is None else num_classes
    build_kwargs["in_chans"] = card.input_size[0] if in_chans is None else in_chans
    model = entry.builder(**build_kwargs)
    model.card = card
    model.build_args = {"model": name, "kwargs": _jsonable({**_shipped_kwargs(name, weights), **kwargs}), "num_classes": build_kwargs["num_classes"],
                        "in_chans": build_kwargs["in_chans"]}
    if weights is not None:
        load_weights(model, weights)
    if features_only:  # the model is ours alone: the backbone takes its modules over
        return FeatureExtractor(model, out_indices, out_strides=out_strides, copy=False)
    return model


def _shipped_kwargs(name: str, weights) -> dict:
    """The architecture arguments stored with shipped weights named by a tag (``unet.membrane`` is
    ``unet`` at ``base_width=16``): ``create_model("unet", weights="membrane")`` builds what they fit."""
    if weights is None or Path(str(weights)).expanduser().is_file():
        return {}
    from .checkpoint import read_metadata
    from .shipped import SHIPPED

    tag = str(weights).split(".", 1)[1] if str(weights).startswith(f"{name}.") else str(weights)
    if (name, tag) not in SHIPPED:
        return {}
    from .shipped import shipped_weights_path

    return dict(read_metadata(shipped_weights_path(name, tag)).get("kwargs") or {})


def _jsonable(kwargs: dict) -> dict:
    import json

    try:
        json.dumps(kwargs)
    except TypeError as e:
        raise TypeError(f"model arguments must be plain values (numbers, strings, lists): {e}") from None
    return dict(kwargs)


def load_weights(model: nn.Module, weights: str | Path) -> dict:
    """Load ``weights`` into ``model`` (built by :func:`create_model`); return the file's metadata.

    Foreign layouts are recognised by trying the converters of the card's architecture. Heads
    (``card.heads``) with another class count are left freshly initialised (with a warning); the
    weights of the convolutions that see the image (``card.input_convs``) trained on 3 channels are
    adapted to ``in_chans`` (summed for 1 channel, tiled and rescaled otherwise).
    """
    from .shipped import resolve_checkpoint
    from .weights import convert_weights, sources_for

    name = model.build_args["model"]
    card = model.card
    path = resolve_checkpoint(weights, model=name)
    state_dict, meta = read_state_dict(path)
    if meta.get("model") not in (None, name):
        raise ValueError(f"{path} holds weights for {meta['model']!r}, not {name!r}")
    ours = model.state_dict()
    state_dict = _drop_untracked(ours, _drop_absent_aux(model, state_dict))
    if set(state_dict) != set(ours):
        errors = [_key_diff(ours, state_dict, "as archzoo")]
        sources = sorted(sources_for(card.arch), key=lambda s: s != card.reference_source)
        for source in sources:
            try:
                converted = convert_weights(name, state_dict, source, check=False)
            except (KeyError, ValueError) as e:
                errors.append(f"as {source}: {e}")
                continue
            converted = _drop_untracked(ours, _drop_absent_aux(model, converted))
            if set(converted) == set(ours):
                state_dict = converted
                break
            errors.append(_key_diff(ours, converted, f"as {source}"))
        else:
            raise ValueError(f"{path} does not fit {name}: " + "; ".join(errors))
    state_dict = _adapt(model, card, state_dict, path)
    from .schema import check_state_dict  # dtypes and finite values (the metadata was checked on reading)

    model.load_state_dict(check_state_dict(ours, state_dict, path), strict=True)
    return meta


def _drop_absent_aux(model: nn.Module, state_dict: dict) -> dict:
    """Weights of auxiliary heads are not needed by a model built without them (``aux_logits=False``)."""
    if getattr(model, "aux_heads", "absent") is not None:
        return state_dict
    return {k: v for k, v in state_dict.items() if not k.startswith("aux_heads.")}


def _drop_untracked(ours: dict, state_dict: dict) -> dict:
    """A batch norm's step counter is not needed where our norm keeps running statistics but no
    counter (frozen batch norm)."""

    def unneeded(k: str) -> bool:
        norm, _, leaf = k.rpartition(".")
        return leaf == "num_batches_tracked" and k not in ours and f"{norm}.running_mean" in ours

    return {k: v for k, v in state_dict.items() if not unneeded(k)}


def _key_diff(ours: dict, theirs: dict, label: str) -> str:
    missing, unexpected = sorted(set(ours) - set(theirs)), sorted(set(theirs) - set(ours))
    return f"{label}: {len(missing)} missing (e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})"


def _adapt(model: nn.Module, card, state_dict: dict, path) -> dict:
    """Heads of another class count start fresh; input convolutions are adapted to ``in_chans``."""
    ours = model.state_dict()
    out = dict(state_dict)
    heads = [h for h in card.heads if f"{h}.weight" in ours]  # auxiliary heads may be built without
    head_keys = [k for k in ours if k.startswith(tuple(h + "." for h in heads))]
    if any(k not in out or out[k].shape != ours[k].shape for k in head_keys):
        warnings.warn(f"{path}: classifier shape differs from the model's ({model.num_classes} classes); "
                      f"{', '.join(heads)} left freshly initialised", stacklevel=3)
        for k in head_keys:
            out[k] = ours[k]
    input_weights = {f"{c}.weight" for c in card.input_convs}
    for k, v in out.items():
        want = ours.get(k)
        if want is None or v.shape == want.shape or k in head_keys:
            continue
        if k in input_weights and v.ndim == 4 and v.shape[0] == want.shape[0] and v.shape[2:] == want.shape[2:]:
            out[k] = adapt_input_conv(v, want.shape[1])
        else:
            raise ValueError(f"{path}: {k} has shape {tuple(v.shape)}, the model needs {tuple(want.shape)}")
    return out


def adapt_input_conv(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """Adapt first-conv weights trained on ``weight.shape[1]`` channels to ``in_chans`` channels
    so that a grey image replicated to RGB gives the same response."""
    src = weight.shape[1]
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)
    reps = -(-in_chans // src)
    return weight.repeat(1, reps, 1, 1)[:, :in_chans] * (src / in_chans)
